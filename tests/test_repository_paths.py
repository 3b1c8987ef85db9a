"""The repository is self-contained: no file refers to a path outside it.

A fresh clone has nothing beside it (no fixtures folder next to the
checkout, no developer's home directory), so every path that code, scripts or docs name
must resolve inside the checkout. The scan covers every text file git
tracks, or every file of the tree when git is not available.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

REPO_ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve()
SKIPPED_DIRS = {".git", ".venv", ".venv-tfdv", "__pycache__", "runs", "build"}

# The folder our own machines keep beside the checkout. The name is put
# together here so that this file never spells out a path to it.
SIBLING = "sha" + "red"

# Ways a file can reach out of the checkout.
OUTSIDE_PATTERNS = {
    "the sibling fixtures folder": re.compile(
        rf"""\.\./{SIBLING}\b|["']\.\.["']\s*,\s*["']{SIBLING}["']"""
        rf"""|["']{SIBLING}["']\s*[,/]\s*["']fixtures["']"""
    ),
    "the parent of the repository root": re.compile(
        r"REPO_ROOT\)?\.parent\b|dirname\(\s*_?REPO_ROOT\s*\)"
        r"|REPO_ROOT\s*,\s*[\"']\.\.[\"']"
    ),
    "an absolute path of a developer's machine": re.compile(
        r"(?<![\w.:/])/(?:work|root|home/\w+|Users/\w+)/"
    ),
}
# `../x` written in a file, checked by resolving it from the file's folder.
RELATIVE_PATH = re.compile(r"(?<![\w.])((?:\.\./)+[\w][\w.\-/]*)")


def _repository_files():
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True,
            check=True,
        ).stdout.decode().split("\0")
        files = [REPO_ROOT / name for name in listed if name]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for folder, dirs, names in os.walk(REPO_ROOT):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
            files.extend(Path(folder) / name for name in names)
    return [path for path in files if path.is_file() and path != THIS_FILE]


def _text(path):
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary: weights, pictures, npz files
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_scan_finds_the_repository_files():
    files = {p.relative_to(REPO_ROOT).as_posix() for p in _repository_files()}
    assert "README.md" in files
    assert "tests/conftest.py" in files
    assert "tests/fixtures/parity/manifest.json" in files


def test_no_file_refers_to_a_path_outside_the_repository():
    problems = []
    for path in _repository_files():
        text = _text(path)
        if text is None:
            continue
        name = path.relative_to(REPO_ROOT).as_posix()
        for line_number, line in enumerate(text.splitlines(), 1):
            for what, pattern in OUTSIDE_PATTERNS.items():
                if pattern.search(line):
                    problems.append(f"{name}:{line_number}: {what}: {line.strip()}")
            for relative in RELATIVE_PATH.findall(line):
                target = (path.parent / relative).resolve()
                if not target.is_relative_to(REPO_ROOT):
                    problems.append(
                        f"{name}:{line_number}: {relative!r} resolves to "
                        f"{target}, outside the repository"
                    )
    assert not problems, "Paths outside the repository:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "line",
    [
        f'FIXTURES = Path(__file__).parents[2] / "../{SIBLING}/fixtures"',
        f'os.path.join(REPO_ROOT, "..", "{SIBLING}", "fixtures")',
        "TOKENIZER = REPO_ROOT.parent / 'tokenizer.model'",
        "tokenizer = os.path.dirname(REPO_ROOT)",
        'open("/work/main/tests/fixtures/x.npz")',
    ],
)
def test_patterns_catch_outside_references(line):
    assert any(p.search(line) for p in OUTSIDE_PATTERNS.values()), line


def test_relative_paths_that_leave_the_repository_are_caught():
    (escaping,) = RELATIVE_PATH.findall("see ../../../elsewhere/file.txt")
    assert not (REPO_ROOT / "tests" / escaping).resolve().is_relative_to(REPO_ROOT)
    (inside,) = RELATIVE_PATH.findall("see ../keras_tips/presets.py")
    assert (REPO_ROOT / "tests" / inside).resolve().is_relative_to(REPO_ROOT)
