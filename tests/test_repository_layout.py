"""The README's layout section names every module, folder and script."""

import re

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.backend_independent

# What the layout lists: package modules and sub-folders, scripts.
LISTED = (
    "keras_tips/*.py",
    "keras_tips/*/",
    "training/*.py",
    "training/*/",
    "tools/*.py",
    "tools/*.sh",
    "tools/*/",
)


def _layout_block():
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"^## Layout\n.*?^```\n(.*?)^```", readme,
                      re.DOTALL | re.MULTILINE)
    assert match, "README.md has no '## Layout' section with a tree"
    return match.group(1)


def _entries():
    for pattern in LISTED:
        folder, glob = pattern.split("/", 1)
        for path in sorted((REPO_ROOT / folder).glob(glob.rstrip("/"))):
            if path.name in ("__init__.py", "__pycache__"):
                continue
            if glob.endswith("/") != path.is_dir():
                continue
            yield path.relative_to(REPO_ROOT), path.name + ("/" if path.is_dir() else "")


def test_layout_names_every_module_and_folder():
    block = _layout_block()
    names = set(re.findall(r"[\w.]+/?", block))
    missing = [str(path) for path, name in _entries() if name not in names]
    assert not missing, f"README layout does not name: {missing}"


def test_every_module_says_what_it_is_for():
    import ast

    undocumented = []
    for folder in ("keras_tips", "training", "tools"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            if not ast.get_docstring(ast.parse(path.read_text())):
                undocumented.append(str(path.relative_to(REPO_ROOT)))
    assert not undocumented, f"modules without a docstring: {undocumented}"
