"""The wheel: `keras_tips` with its data files and `training`, never `tools/`.

Builds the wheel with the project's own build backend (setuptools, offline,
no isolated environment) from a copy of the checkout and reads its file list.
"""

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.backend_independent

# What a build must not pick up from the checkout.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", "__pycache__", "*.egg-info", "build", "dist", "runs",
    "outputs", ".pytest_cache", ".hypothesis",
)


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory):
    """Names of the files in a wheel built from a copy of this checkout."""
    source = tmp_path_factory.mktemp("source") / "keras-tips"
    shutil.copytree(REPO_ROOT, source, ignore=_NOT_SOURCES)
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys; from setuptools import build_meta; "
         "print(build_meta.build_wheel(sys.argv[1]))", str(dist)],
        cwd=source, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _sources(package, keep):
    """Files of a package folder of the checkout, relative to the root."""
    root = REPO_ROOT / package
    return {
        path.relative_to(REPO_ROOT).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and keep(path)
    }


def test_wheel_has_only_the_library_and_the_pretraining_package(wheel_files):
    top_level = {
        name.split("/")[0]
        for name in wheel_files
        if not name.split("/")[0].endswith(".dist-info")
    }
    assert top_level == {"keras_tips", "training"}
    assert not any(name.startswith("tools/") for name in wheel_files)


def test_wheel_has_every_module_of_the_packages(wheel_files):
    for package in ("keras_tips", "training"):
        modules = _sources(package, lambda path: path.suffix == ".py")
        assert modules and modules <= wheel_files, modules - wheel_files


def test_wheel_has_the_data_files_of_keras_tips(wheel_files):
    # Embedded presets: config, weights and the SentencePiece model.
    data = _sources("keras_tips", lambda path: path.suffix != ".py")
    assert data <= wheel_files, data - wheel_files
    assert any(name.endswith(".weights.h5") for name in data)
    assert any(
        name.endswith("tokenizer/vocabulary.spm") for name in wheel_files
    )
