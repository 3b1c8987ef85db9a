"""The Keras ports reproduce the official implementation's outputs.

Fixtures: random-weight encoders in the official PyTorch checkpoint layout
and the official code's outputs for them (`tests/fixtures/parity`).
Tolerance: max abs error <= 1e-4 * max |reference|, on every backend.
"""

import json

import keras
import numpy as np
import pytest

from keras_tips import convert
from tests.conftest import PARITY

MANIFEST = json.loads((PARITY / "manifest.json").read_text())
VISION_CASES = [
    (spec["name"], i)
    for spec in MANIFEST["vision"]
    for i in range(len(spec["inputs"]))
]
_ENCODERS = {}


def _vision_encoder(name):
    if name not in _ENCODERS:
        spec = next(s for s in MANIFEST["vision"] if s["name"] == name)
        _ENCODERS[name] = convert.load_vision_encoder(
            PARITY / f"{name}_vision.npz", num_heads=spec["num_heads"]
        )
    return _ENCODERS[name]


def assert_close(actual, reference, what):
    actual = keras.ops.convert_to_numpy(actual)
    assert actual.shape == reference.shape, (what, actual.shape)
    error = np.abs(actual - reference).max()
    bound = 1e-4 * np.abs(reference).max()
    assert error <= bound, f"{what}: max abs error {error:.3g} > {bound:.3g}"


@pytest.mark.parametrize("name,index", VISION_CASES)
def test_vision_encoder_matches_official(name, index):
    golden = np.load(PARITY / f"{name}_golden.npz")
    images = golden[f"images_{index}"]
    encoder = _vision_encoder(name)
    outputs = encoder(images)
    assert_close(outputs["cls_embeddings"], golden[f"cls_{index}"], "cls")
    assert_close(outputs["patch_embeddings"], golden[f"patches_{index}"], "patches")
    assert_close(
        encoder.value_attention_patches(images),
        golden[f"value_patches_{index}"],
        "value_patches",
    )


def test_vision_architecture_inferred_from_arrays():
    for spec in MANIFEST["vision"]:
        encoder = _vision_encoder(spec["name"])
        assert encoder.hidden_dim == spec["embed_dim"]
        assert encoder.num_layers == spec["depth"]
        assert encoder.ffn_layer == spec["ffn_layer"]
        assert encoder.position_grid_size == spec["grid"]


@pytest.mark.parametrize("spec", MANIFEST["text"], ids=lambda s: s["name"])
def test_text_encoder_matches_official(spec):
    golden = np.load(PARITY / f"{spec['name']}_golden.npz")
    encoder = convert.load_text_encoder(
        PARITY / f"{spec['name']}_text.npz", num_heads=spec["num_heads"]
    )
    assert encoder.hidden_dim == spec["hidden_size"]
    assert encoder.num_layers == spec["num_layers"]
    embeddings = encoder(
        {"token_ids": golden["token_ids"], "padding_mask": golden["padding_mask"]}
    )
    assert_close(embeddings, golden["embeddings"], "text embeddings")


def test_text_temperature_read_from_checkpoint():
    value = convert.read_text_temperature(PARITY / "text_small_text.npz")
    stored = float(np.load(PARITY / "text_small_text.npz")["temperature"])
    assert value == pytest.approx(stored)
