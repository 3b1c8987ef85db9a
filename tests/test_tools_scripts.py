"""`tools/` runs from a checkout, the way the README and the tools say.

Every documented command line (`python tools/x.py`, `python -m tools.x`)
names a tool of the checkout, and the benchmark scripts find their
`tools/benchmarking/` folder as run (the script's own folder is first on
`sys.path`), from any working directory and with no `PYTHONPATH`.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.backend_independent

_SCRIPT = re.compile(r"python tools/(\w+)\.py\b")
_MODULE = re.compile(r"python -m tools\.(\w+)\b")


def _documenting_files():
    tools = REPO_ROOT / "tools"
    return [REPO_ROOT / "README.md", *sorted(tools.glob("*.sh")),
            *sorted(tools.glob("*.py"))]


def _documented_tools():
    names = set()
    for path in _documenting_files():
        text = path.read_text()
        names.update(_SCRIPT.findall(text))
        names.update(_MODULE.findall(text))
    return names


def test_every_documented_tool_is_a_script_of_the_checkout():
    names = _documented_tools()
    assert {"benchmark", "benchmark_training", "make_scenes"} <= names
    missing = sorted(
        name for name in names
        if not (REPO_ROOT / "tools" / f"{name}.py").is_file()
    )
    assert not missing, missing


@pytest.mark.parametrize("script", ["benchmark.py", "benchmark_training.py"])
def test_benchmark_scripts_run_from_anywhere(script, tmp_path):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / script), "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:")


def _require_disk_space(folder, gib):
    return subprocess.run(
        ["bash", str(REPO_ROOT / "tools" / "require_disk_space.sh"),
         str(folder), str(gib), "the test environment"],
        capture_output=True, text=True, timeout=60,
    )


def test_disk_check_refuses_an_environment_that_cannot_fit(tmp_path):
    # The folder need not exist: the check looks at its nearest parent.
    result = _require_disk_space(tmp_path / "not" / "yet" / ".venv", 10**6)
    assert result.returncode == 1
    assert "not enough disk for the test environment" in result.stderr
    assert str(tmp_path / "not" / "yet" / ".venv") in result.stderr
    assert not (tmp_path / "not").exists()


def test_disk_check_passes_what_fits(tmp_path):
    result = _require_disk_space(tmp_path / ".venv", 0.001)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
