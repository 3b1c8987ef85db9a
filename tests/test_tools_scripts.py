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


def _run_setup_envs(tmp_path, main_status, tfdv_status):
    """`tools/setup_envs.sh` in a copy of `tools/` whose installers are stubs.

    Each stub records that it ran and sleeps a little, so that the two
    overlap only if they really run side by side. Both environments look
    installed (an executable `bin/python`), so the combined disk check has
    nothing to check.
    """
    tools = tmp_path / "tools"
    tools.mkdir()
    for venv in (".venv", ".venv-tfdv"):
        (tmp_path / venv / "bin").mkdir(parents=True)
        (tmp_path / venv / "bin" / "python").write_text("")
        (tmp_path / venv / "bin" / "python").chmod(0o755)
    for name in ("setup_envs.sh", "require_disk_space.sh"):
        (tools / name).write_text((REPO_ROOT / "tools" / name).read_text())
    for name, status in (("setup_env.sh", main_status),
                         ("setup_tfdv_env.sh", tfdv_status)):
        (tools / name).write_text(
            f"date +%s.%N > {tmp_path}/{name}.start\n"
            f"echo {name} says hello\nsleep 1\n"
            f"date +%s.%N > {tmp_path}/{name}.end\nexit {status}\n"
        )
    return subprocess.run(["bash", str(tools / "setup_envs.sh")],
                          capture_output=True, text=True, timeout=60)


def _seconds(path):
    return float(path.read_text())


def test_setup_envs_installs_both_environments_side_by_side(tmp_path):
    result = _run_setup_envs(tmp_path, 0, 0)
    assert result.returncode == 0, result.stderr
    assert "setup_env.sh says hello" in result.stdout
    assert "setup_tfdv_env.sh says hello" in result.stdout
    main, tfdv = "setup_env.sh", "setup_tfdv_env.sh"
    assert _seconds(tmp_path / f"{main}.start") < _seconds(
        tmp_path / f"{tfdv}.end")
    assert _seconds(tmp_path / f"{tfdv}.start") < _seconds(
        tmp_path / f"{main}.end")


@pytest.mark.parametrize("main_status,tfdv_status,named", [
    (3, 0, [".venv failed (tools/setup_env.sh, exit 3"]),
    (0, 4, [".venv-tfdv failed (tools/setup_tfdv_env.sh, exit 4"]),
    (3, 4, [".venv failed", ".venv-tfdv failed"]),
])
def test_setup_envs_names_the_install_that_failed(tmp_path, main_status,
                                                  tfdv_status, named):
    result = _run_setup_envs(tmp_path, main_status, tfdv_status)
    assert result.returncode == 1
    for text in named:
        assert text in result.stderr
    # The other install was not cut short.
    assert (tmp_path / "setup_env.sh.end").exists()
    assert (tmp_path / "setup_tfdv_env.sh.end").exists()
