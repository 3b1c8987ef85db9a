"""Bad input fails with one clear message; nothing is half-loaded or NaN."""

import json
import shutil

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_tips

_ENCODER = None


def encoder():
    global _ENCODER
    if _ENCODER is None:
        _ENCODER = keras_tips.TIPSVisionEncoder(
            hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32,
            position_grid_size=2)
    return _ENCODER


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 2),
    height=st.integers(1, 60),
    width=st.integers(1, 60),
    channels=st.sampled_from([1, 3, 4]),
    dtype=st.sampled_from(["float32", "float16", "uint8", "int32"]),
)
def test_image_shapes_and_dtypes(batch, height, width, channels, dtype):
    images = np.zeros((batch, height, width, channels), dtype)
    valid = (height % 14 == 0 and width % 14 == 0 and channels == 3
             and dtype.startswith("float"))
    if valid:
        out = encoder()(images)
        assert tuple(out["patch_embeddings"].shape) == (
            batch, height // 14, width // 14, 16)
        assert np.isfinite(keras.ops.convert_to_numpy(out["cls_embeddings"])).all()
    else:
        with pytest.raises((ValueError, TypeError)) as info:
            encoder()(images)
        message = str(info.value)
        assert any(word in message for word in (
            "multiple of the patch size", "channels", "float images"))


@settings(max_examples=15, deadline=None)
@given(value=st.sampled_from([np.nan, np.inf, -np.inf, 2.0, -0.5, 255.0]))
def test_non_finite_or_out_of_range_pixels(value):
    images = np.zeros((1, 28, 28, 3), "float32")
    images[0, 3, 5, 1] = value
    with pytest.raises(ValueError, match="NaN|\\[0, 1\\]"):
        encoder()(images)


def test_preprocessor_fixes_what_the_encoder_rejects(tokenizer_model):
    converter = keras_tips.TIPSImageConverter(image_size=None)
    gray = np.random.default_rng(0).integers(0, 255, (1, 30, 40, 1)).astype("uint8")
    rgba = np.random.default_rng(1).integers(0, 255, (1, 30, 40, 4)).astype("uint8")
    for images in (gray, rgba):
        converted = keras.ops.convert_to_numpy(converter(images))
        assert converted.shape == (1, 42, 42, 3)
        assert 0.0 <= converted.min() and converted.max() <= 1.0
        out = encoder()(converted)
        assert tuple(out["patch_embeddings"].shape) == (1, 3, 3, 16)


@pytest.fixture
def saved_preset(tmp_path):
    text = keras_tips.TIPSTextEncoder(vocabulary_size=20, hidden_dim=16,
                                      num_layers=1, num_heads=2, mlp_dim=32)
    backbone = keras_tips.TIPSBackbone(encoder(), text)
    path = tmp_path / "preset"
    backbone.save_to_preset(str(path))
    return path


def test_preset_of_another_model_is_named(saved_preset):
    config = json.loads((saved_preset / "config.json").read_text())
    config["class_name"] = "DINOV2Backbone"
    (saved_preset / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="DINOV2Backbone"):
        keras_tips.TIPSBackbone.from_preset(str(saved_preset))


def test_preset_from_newer_keras_hub_is_named(saved_preset):
    metadata = json.loads((saved_preset / "metadata.json").read_text())
    metadata["keras_hub_version"] = "99.1.0"
    (saved_preset / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="99.1.0.*upgrade"):
        keras_tips.TIPSBackbone.from_preset(str(saved_preset))


def test_directory_without_config_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        keras_tips.TIPSBackbone.from_preset(str(tmp_path / "empty"))


def test_truncated_weights_fail_loudly(saved_preset):
    weights = saved_preset / "model.weights.h5"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3])
    with pytest.raises(OSError, match="truncated") as info:
        keras_tips.TIPSBackbone.from_preset(str(saved_preset))
    assert str(saved_preset) in str(info.value)
