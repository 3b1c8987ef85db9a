"""Shared test fixtures. The Keras backend comes from KERAS_BACKEND."""

import json
import os
from pathlib import Path

import keras
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"  # see fixtures/README.md
PARITY = FIXTURES / "parity"
TOKENIZER_DIR = FIXTURES / "tokenizer"


def pytest_report_header(config):
    return f"keras backend: {keras.backend.backend()}"


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
