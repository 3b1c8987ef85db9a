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
    # uv is made once, before the two installs start.
    (tools / "setup_uv.sh").write_text(
        f"date +%s.%N > {tmp_path}/setup_uv.sh.end\necho /stub/uv\n")
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
    uv_made = _seconds(tmp_path / "setup_uv.sh.end")
    assert uv_made <= _seconds(tmp_path / f"{main}.start")
    assert uv_made <= _seconds(tmp_path / f"{tfdv}.start")


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


def _stub_python(tmp_path):
    """A `PYTHON` for tools/setup_uv.sh that makes stub venvs and a stub uv.

    `-m venv DIR` writes `DIR/bin/python`; that python's `-m pip install
    uv==X` sleeps a moment, logs the install and writes `DIR/bin/uv`, which
    prints `uv X (stub)`.
    """
    log = tmp_path / "installs.log"
    python = tmp_path / "python3"
    python.write_text(f"""#!/usr/bin/env bash
set -e
if [[ "$1" == "-c" ]]; then
  exec {sys.executable} "$@"
fi
if [[ "$1 $2" == "-m venv" ]]; then
  mkdir -p "$3/bin"
  cat > "$3/bin/python" <<'INNER'
#!/usr/bin/env bash
set -e
bin="$(dirname "$0")"
spec="${{@: -1}}"
sleep 0.5
echo "$spec" >> {log}
printf '#!/usr/bin/env bash\\necho "uv %s (stub)"\\n' "${{spec#uv==}}" > "$bin/uv"
chmod +x "$bin/uv"
INNER
  chmod +x "$3/bin/python"
fi
""")
    python.chmod(0o755)
    return python, log


def _setup_uv(tmp_path, python, background=False, path=None):
    env = dict(os.environ, PYTHON=str(python),
               UV_VENV=str(tmp_path / "uv-venv"))
    if path is not None:
        env["PATH"] = path
    command = ["bash", str(REPO_ROOT / "tools" / "setup_uv.sh")]
    if background:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=60)


def test_setup_uv_installs_once_and_prints_the_executable(tmp_path):
    python, log = _stub_python(tmp_path)
    first = _setup_uv(tmp_path, python)
    assert first.returncode == 0, first.stderr
    uv = tmp_path / "uv-venv" / "bin" / "uv"
    assert first.stdout == f"{uv}\n"
    pinned = log.read_text().split()
    assert len(pinned) == 1 and pinned[0].startswith("uv==")
    second = _setup_uv(tmp_path, python)
    assert second.stdout == first.stdout
    assert log.read_text().split() == pinned  # nothing installed again


def test_setup_uv_replaces_another_version(tmp_path):
    python, log = _stub_python(tmp_path)
    uv = tmp_path / "uv-venv" / "bin" / "uv"
    uv.parent.mkdir(parents=True)
    uv.write_text('#!/usr/bin/env bash\necho "uv 0.0.1 (stub)"\n')
    uv.chmod(0o755)
    result = _setup_uv(tmp_path, python)
    assert result.returncode == 0, result.stderr
    assert len(log.read_text().split()) == 1
    assert "0.0.1" not in subprocess.run(
        [str(uv), "--version"], capture_output=True, text=True).stdout


def test_setup_uv_calls_started_together_install_once(tmp_path):
    python, log = _stub_python(tmp_path)
    runs = [_setup_uv(tmp_path, python, background=True) for _ in range(3)]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    assert len({out for out, _ in outputs}) == 1
    assert len(log.read_text().split()) == 1


def _path_without_flock(tmp_path):
    """A PATH folder with every command of this machine's PATH but `flock`
    (as on macOS, which has no util-linux)."""
    folder = tmp_path / "no-flock-bin"
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            link = folder / name
            if (name != "flock" and not os.path.lexists(link)
                    and os.access(target, os.X_OK)):
                link.symlink_to(target)
    return str(folder)


def test_setup_uv_without_flock_still_installs_once(tmp_path):
    python, log = _stub_python(tmp_path)
    path = _path_without_flock(tmp_path)
    assert subprocess.run(["bash", "-c", "command -v flock"],
                          env={"PATH": path}).returncode != 0
    runs = [_setup_uv(tmp_path, python, background=True, path=path)
            for _ in range(3)]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    assert len({out for out, _ in outputs}) == 1
    assert len(log.read_text().split()) == 1
