"""Shared test fixtures. The Keras backend comes from KERAS_BACKEND."""

import gc
import json
import os
from pathlib import Path

import keras
import pytest

# XLA:CPU compile settings of the test run. The tests' programs are small
# and most are compiled once, so compiling is much of their time. In the
# test processes, LLVM's expensive passes are off (compiles ~13% faster on
# the jax pass's model tests; the run time of the long fine-tuning test is
# unchanged). Subprocesses (CLI runs, resumed trainings, the benchmark's
# quick run) also compile at XLA's lowest optimisation level: they run
# each program a few times only (the benchmark's quick run 99 -> 89 s).
# Flags the caller sets in XLA_FLAGS are kept as they are.
TEST_PROCESS_XLA_FLAGS = "--xla_llvm_disable_expensive_passes=true"
SUBPROCESS_XLA_FLAGS = (
    "--xla_backend_optimization_level=0 "
    "--xla_llvm_disable_expensive_passes=true"
)


def _set_xla_flags():
    if "XLA_FLAGS" in os.environ:
        return
    if keras.backend.backend() == "jax":
        import jax

        os.environ["XLA_FLAGS"] = TEST_PROCESS_XLA_FLAGS
        jax.devices()  # XLA reads the flags once, as its CPU client starts
    os.environ["XLA_FLAGS"] = SUBPROCESS_XLA_FLAGS


_set_xla_flags()

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"  # see fixtures/README.md
PARITY = FIXTURES / "parity"
TOKENIZER_DIR = FIXTURES / "tokenizer"


def pytest_report_header(config):
    return f"keras backend: {keras.backend.backend()}"


def pytest_collection_finish(session):
    """Exempts what the imports made from every later garbage collection.

    Keras runs a full `gc.collect()` for each variable a layer drops
    (`quantize`) and in `clear_session`; with TensorFlow, JAX, torch
    and transformers imported, each pass walks over half a million objects
    that live as long as the process. Frozen after collection, they are
    skipped: the test run's garbage-collection time falls by more than half.
    """
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True, scope="module")
def _fresh_keras_state_per_module():
    """Drops each test module's models and compiled functions when it ends.

    Without it, Keras' global state and JAX's compilation caches keep every
    model built so far alive, and each later garbage collection walks them.
    """
    yield
    keras.backend.clear_session()
    if keras.backend.backend() == "jax":
        import jax

        jax.clear_caches()


@pytest.fixture(scope="session")
def parity_dir():
    if not PARITY.is_dir():
        pytest.fail(f"Parity fixtures not found at {PARITY}")
    return PARITY


@pytest.fixture(scope="session")
def manifest(parity_dir):
    return json.loads((parity_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def tokenizer_model():
    path = TOKENIZER_DIR / "tokenizer.model"
    if not path.exists():
        pytest.fail(f"Tokenizer fixture not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_preset(parity_dir, tokenizer_model, tmp_path_factory):
    """A tiny random-weight preset (56 px) converted from the parity fixtures."""
    from keras_tips.convert import convert_to_preset

    path = tmp_path_factory.getbasetemp() / "tiny_tips_preset"
    if not (path / "config.json").exists():
        convert_to_preset(
            parity_dir / "vit_mlp_vision.npz",
            parity_dir / "text_small_text.npz",
            tokenizer_model,
            path,
            num_heads=4,
            image_size=56,
            overwrite=True,
        )
    return str(path)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Named presets never touch the user's cache or the network in tests."""
    monkeypatch.setenv("KERAS_TIPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_TIPS_BASE_URL", "file:///nonexistent-tips-mirror")
    yield


@pytest.fixture
def official_mirror(tmp_path, monkeypatch, tokenizer_model):
    """A `file://` mirror of the official download layout, for named presets.

    `official_mirror(name)` writes a 1-layer random-weight model of released
    width S (vision and text `.npz` in the official layout) and the
    tokenizer where `KERAS_TIPS_BASE_URL` will look for preset `name`,
    points `KERAS_TIPS_BASE_URL` there and returns the Keras (vision, text)
    encoders the files were written from.
    """
    import numpy as np

    import keras_tips
    from keras_tips import convert
    from keras_tips import tips_presets

    mirror = tmp_path / "mirror"

    def make(name):
        spec = tips_presets.PRESETS[name]
        directory = mirror / os.path.dirname(spec["path"])
        directory.mkdir(parents=True, exist_ok=True)
        vision = keras_tips.TIPSVisionEncoder(
            hidden_dim=384, num_layers=1, num_heads=6, mlp_dim=1536,
            position_grid_size=2)
        text = keras_tips.TIPSTextEncoder(
            vocabulary_size=100, hidden_dim=384, num_layers=1, num_heads=6,
            mlp_dim=1536)
        checkpoint = spec["checkpoint"]
        np.savez(directory / f"{checkpoint}_vision.npz",
                 **convert.official_arrays(vision))
        np.savez(directory / f"{checkpoint}_text.npz",
                 temperature=np.float32(0.01), **convert.official_arrays(text))
        tokenizer = mirror / tips_presets.TOKENIZER_PATH
        tokenizer.parent.mkdir(parents=True, exist_ok=True)
        tokenizer.write_bytes(tokenizer_model.read_bytes())
        monkeypatch.setenv("KERAS_TIPS_BASE_URL", mirror.as_uri())
        return vision, text

    return make
