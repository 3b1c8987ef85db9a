"""Tests for `TIPSImageConverter` and `TIPSPreprocessor`.

Image references are computed independently with NumPy (scaling, channel
conversion, center padding) and `tf.image.resize` (resizing); token
references with TensorFlow Text, re-stating the official TIPS tokenizer.
"""

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from keras_tips.image_converter import TIPSImageConverter
from keras_tips.preprocessor import TIPSPreprocessor
from keras_tips.tokenizer import TIPSTokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROTO_PATH = FIXTURES / "tokenizer" / "tokenizer.model"

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(2, 20, 30, 3), dtype=np.uint8)
TEXTS = ["A photo of a CAT.", "the quick brown fox"]


def to_numpy(x):
    if isinstance(x, tf.Tensor):
        return x.numpy()
    return keras.ops.convert_to_numpy(x)


def official_tokenize(texts, max_len):
    """Official TIPS tokenization (1 = real token in the returned mask)."""
    tokenizer = tf_text.SentencepieceTokenizer(
        model=PROTO_PATH.read_bytes(), add_bos=False, add_eos=False
    )
    tokens = tokenizer.tokenize(tf.strings.lower(tf.constant(texts)))
    tokens = tokens.to_tensor()
    if tokens.shape[1] > max_len:
        ids = tokens[:, :max_len]
        is_padding = tf.zeros(ids.shape, tf.int32)
    else:
        ids = tf.pad(tokens, [[0, 0], [0, max_len - tokens.shape[1]]])
        is_padding = tf.cast(ids == 0, tf.int32)
    return ids.numpy(), 1 - is_padding.numpy()


def reference_center_pad(images, multiple):
    """NumPy re-statement of the official Flax `maybe_center_pad`."""
    height, width = images.shape[1:3]
    pad_h = -(-height // multiple) * multiple - height
    pad_w = -(-width // multiple) * multiple - width
    return np.pad(
        images,
        (
            (0, 0),
            (pad_h // 2, pad_h - pad_h // 2),
            (pad_w // 2, pad_w - pad_w // 2),
            (0, 0),
        ),
    )


def make_tokenizer(sequence_length=16, official_padding_mask=True):
    return TIPSTokenizer(
        proto=str(PROTO_PATH),
        sequence_length=sequence_length,
        official_padding_mask=official_padding_mask,
    )


# === TIPSImageConverter ======================================================


@pytest.mark.parametrize(
    "size, antialias",
    [((224, 224), True), ((224, 224), False), ((14, 28), True)],
)
def test_resize_matches_tf_image_resize(size, antialias):
    converter = TIPSImageConverter(image_size=size, antialias=antialias)
    outputs = to_numpy(converter(IMAGES))
    expected = tf.image.resize(
        IMAGES.astype("float32") / 255.0,
        size,
        method="bilinear",
        antialias=antialias,
    ).numpy()
    assert outputs.shape == (2, *size, 3)
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs, expected, atol=1e-4)


def test_downsampling_matches_tf_image_resize():
    images = RNG.integers(0, 256, size=(1, 100, 61, 3), dtype=np.uint8)
    outputs = to_numpy(TIPSImageConverter(image_size=(28, 42))(images))
    expected = tf.image.resize(
        images.astype("float32") / 255.0, (28, 42), antialias=True
    ).numpy()
    np.testing.assert_allclose(outputs, expected, atol=1e-4)


def test_same_size_is_exact_scaling():
    converter = TIPSImageConverter(image_size=(20, 30))
    outputs = to_numpy(converter(IMAGES))
    np.testing.assert_allclose(
        outputs, IMAGES.astype("float32") / 255.0, atol=1e-6
    )
    assert outputs.min() >= 0.0 and outputs.max() <= 1.0


def test_uint8_and_float_inputs_agree():
    converter = TIPSImageConverter(image_size=(28, 28))
    a = to_numpy(converter(IMAGES))
    b = to_numpy(converter(IMAGES.astype("float32")))
    c = to_numpy(converter(IMAGES.astype("int64")))
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)


def test_output_in_unit_range():
    images = np.zeros((2, 40, 50, 3), np.uint8)
    images[0] = 255
    outputs = to_numpy(TIPSImageConverter()(images))
    np.testing.assert_allclose(outputs[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(outputs[1], 0.0, atol=1e-6)


def test_scale_and_offset_per_channel():
    converter = TIPSImageConverter(
        image_size=(20, 30), scale=(1.0, 0.5, 2.0), offset=(0.0, 1.0, -1.0)
    )
    outputs = to_numpy(converter(IMAGES))
    expected = IMAGES.astype("float32") * np.array([1.0, 0.5, 2.0]) + np.array(
        [0.0, 1.0, -1.0]
    )
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-4)


def test_unbatched_image():
    converter = TIPSImageConverter(image_size=(28, 28))
    single = to_numpy(converter(IMAGES[0]))
    batch = to_numpy(converter(IMAGES))
    assert single.shape == (28, 28, 3)
    np.testing.assert_allclose(single, batch[0], atol=1e-6)


def test_grayscale_is_repeated_to_rgb():
    gray = IMAGES[..., :1]
    converter = TIPSImageConverter(image_size=(20, 30))
    outputs = to_numpy(converter(gray))
    expected = np.repeat(gray.astype("float32") / 255.0, 3, axis=-1)
    assert outputs.shape == (2, 20, 30, 3)
    np.testing.assert_allclose(outputs, expected, atol=1e-6)


def test_rgba_drops_alpha():
    alpha = RNG.integers(0, 256, size=(2, 20, 30, 1), dtype=np.uint8)
    rgba = np.concatenate([IMAGES, alpha], axis=-1)
    converter = TIPSImageConverter(image_size=(28, 28))
    np.testing.assert_allclose(
        to_numpy(converter(rgba)), to_numpy(converter(IMAGES)), atol=1e-6
    )


@pytest.mark.parametrize(
    "shape", [(2, 20, 30, 3), (1, 15, 29, 3), (1, 28, 14, 3)]
)
def test_no_resize_center_pads_to_multiple_of_14(shape):
    images = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    converter = TIPSImageConverter(image_size=None)
    outputs = to_numpy(converter(images))
    expected = reference_center_pad(images.astype("float32") / 255.0, 14)
    assert outputs.shape == expected.shape
    assert outputs.shape[1] % 14 == 0 and outputs.shape[2] % 14 == 0
    np.testing.assert_allclose(outputs, expected, atol=1e-6)


def test_center_pad_offsets():
    # 15 -> 28 rows: 6 on top, 7 below. 29 -> 42 columns: 6 left, 7 right.
    images = np.full((1, 15, 29, 1), 255, np.uint8)
    outputs = to_numpy(TIPSImageConverter(image_size=None)(images))[0, ..., 0]
    rows = np.flatnonzero(outputs.max(axis=1))
    cols = np.flatnonzero(outputs.max(axis=0))
    assert (rows[0], 27 - rows[-1]) == (6, 7)
    assert (cols[0], 41 - cols[-1]) == (6, 7)


def test_center_pad_in_tf_data_with_dynamic_shape():
    shapes = [(15, 29), (28, 14), (1, 1)]

    def generate():
        for height, width in shapes:
            yield RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)

    ds = tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec((None, None, 3), tf.uint8)
    )
    converter = TIPSImageConverter(image_size=None)
    for image in ds.map(converter).as_numpy_iterator():
        assert image.shape[0] % 14 == 0 and image.shape[1] % 14 == 0
        assert image.shape[-1] == 3


def test_tf_data_matches_eager():
    converter = TIPSImageConverter(image_size=(28, 28))
    eager = to_numpy(converter(IMAGES))
    batched = next(
        iter(tf.data.Dataset.from_tensor_slices(IMAGES).batch(2).map(converter))
    ).numpy()
    unbatched = np.stack(
        list(
            tf.data.Dataset.from_tensor_slices(IMAGES)
            .map(converter)
            .as_numpy_iterator()
        )
    )
    np.testing.assert_allclose(batched, eager, atol=1e-4)
    np.testing.assert_allclose(unbatched, eager, atol=1e-4)


@pytest.mark.parametrize(
    "shape",
    [(20, 30), (30,), (1, 2, 20, 30, 3)],
    ids=["rank2", "rank1", "rank5"],
)
def test_wrong_rank_raises(shape):
    with pytest.raises(ValueError, match="shape"):
        TIPSImageConverter()(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("channels", [2, 5])
def test_wrong_channels_raise(channels):
    with pytest.raises(ValueError, match="channels"):
        TIPSImageConverter()(np.zeros((1, 8, 8, channels), np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_raises(bad):
    images = np.zeros((1, 8, 8, 3), np.float32)
    images[0, 3, 4, 1] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        TIPSImageConverter()(images)


def test_non_finite_raises_in_tf_data():
    images = np.full((1, 8, 8, 3), np.nan, np.float32)
    ds = tf.data.Dataset.from_tensor_slices(images).map(TIPSImageConverter())
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        next(iter(ds))


def test_non_numeric_raises():
    with pytest.raises(TypeError, match="numeric"):
        TIPSImageConverter()(np.full((1, 2, 2, 3), "a"))
    with pytest.raises(TypeError, match="dict"):
        TIPSImageConverter()({"images": IMAGES})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 224}, "image_size"),
        ({"image_size": (224, 0)}, "image_size"),
        ({"image_size": (224, 224, 3)}, "image_size"),
        ({"pad_to_multiple_of": 0}, "pad_to_multiple_of"),
        ({"scale": (1.0, 2.0)}, "scale"),
        ({"data_format": "channels_first"}, "channels"),
    ],
)
def test_invalid_converter_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TIPSImageConverter(**kwargs)


def test_converter_config_round_trip():
    converter = TIPSImageConverter(
        image_size=None, antialias=False, pad_to_multiple_of=16
    )
    config = converter.get_config()
    json.dumps(config)
    restored = TIPSImageConverter.from_config(config)
    assert restored.image_size is None
    assert restored.antialias is False
    assert restored.pad_to_multiple_of == 16
    assert to_numpy(restored(IMAGES)).shape == (2, 32, 32, 3)
    serialized = keras.saving.serialize_keras_object(converter)
    assert serialized["registered_name"] == "keras_tips>TIPSImageConverter"


# === TIPSPreprocessor ========================================================


def make_preprocessor(**kwargs):
    return TIPSPreprocessor(
        tokenizer=make_tokenizer(**kwargs),
        image_converter=TIPSImageConverter(image_size=(28, 28)),
    )


@pytest.mark.parametrize("text_key", ["prompts", "texts"])
def test_preprocessor_images_and_texts(text_key):
    preprocessor = make_preprocessor()
    outputs = preprocessor({"images": IMAGES, text_key: TEXTS})
    assert set(outputs) == {"images", "token_ids", "padding_mask"}
    images = to_numpy(outputs["images"])
    token_ids = to_numpy(outputs["token_ids"])
    padding_mask = to_numpy(outputs["padding_mask"])
    assert images.shape == (2, 28, 28, 3) and images.dtype == np.float32
    assert token_ids.shape == (2, 16) and token_ids.dtype == np.int32
    assert padding_mask.shape == (2, 16) and padding_mask.dtype == np.int32
    expected_images = tf.image.resize(
        IMAGES.astype("float32") / 255.0, (28, 28), antialias=True
    ).numpy()
    np.testing.assert_allclose(images, expected_images, atol=1e-4)
    expected_ids, expected_mask = official_tokenize(TEXTS, 16)
    np.testing.assert_array_equal(token_ids, expected_ids)
    np.testing.assert_array_equal(padding_mask, expected_mask)


def test_preprocessor_quirk_and_per_token_mask():
    long_text = "a green star next to a purple ring " * 4
    texts = [long_text, "a cat"]
    expected_ids, expected_mask = official_tokenize(texts, 16)
    assert expected_mask.min() == 1  # The official quirk.
    official = make_preprocessor()({"prompts": texts})
    per_token = make_preprocessor(official_padding_mask=False)(
        {"prompts": texts}
    )
    np.testing.assert_array_equal(
        to_numpy(official["padding_mask"]), expected_mask
    )
    np.testing.assert_array_equal(
        to_numpy(per_token["padding_mask"]), (expected_ids != 0)
    )
    np.testing.assert_array_equal(
        to_numpy(per_token["token_ids"]), expected_ids
    )


def test_preprocessor_single_modalities():
    preprocessor = make_preprocessor()
    images_only = preprocessor({"images": IMAGES})
    assert set(images_only) == {"images"}
    texts_only = preprocessor({"prompts": TEXTS})
    assert set(texts_only) == {"token_ids", "padding_mask"}
    with_none = preprocessor({"images": IMAGES, "prompts": None})
    assert set(with_none) == {"images"}
    single = preprocessor({"images": IMAGES[0], "prompts": TEXTS[0]})
    assert to_numpy(single["images"]).shape == (28, 28, 3)
    assert to_numpy(single["token_ids"]).shape == (16,)
    np.testing.assert_array_equal(
        to_numpy(single["token_ids"]), to_numpy(texts_only["token_ids"])[0]
    )


def test_preprocessor_image_only_without_tokenizer():
    preprocessor = TIPSPreprocessor(image_converter=TIPSImageConverter())
    assert preprocessor.sequence_length is None
    outputs = preprocessor({"images": IMAGES})
    assert to_numpy(outputs["images"]).shape == (2, 224, 224, 3)
    with pytest.raises(ValueError, match="tokenizer"):
        preprocessor({"prompts": TEXTS})


def test_preprocessor_labels_pass_through():
    preprocessor = make_preprocessor()
    x, y = preprocessor({"prompts": TEXTS}, np.array([1, 0]))
    np.testing.assert_array_equal(to_numpy(y), [1, 0])
    assert set(x) == {"token_ids", "padding_mask"}


@pytest.mark.parametrize("batch_first", [True, False])
def test_preprocessor_in_tf_data(batch_first):
    preprocessor = make_preprocessor(official_padding_mask=False)
    ds = tf.data.Dataset.from_tensor_slices(
        {"images": IMAGES, "prompts": TEXTS}
    )
    ds = ds.batch(2).map(preprocessor) if batch_first else ds.map(
        preprocessor
    ).batch(2)
    graph = next(iter(ds))
    eager = preprocessor({"images": IMAGES, "prompts": TEXTS})
    np.testing.assert_allclose(
        graph["images"].numpy(), to_numpy(eager["images"]), atol=1e-4
    )
    for key in ("token_ids", "padding_mask"):
        assert graph[key].dtype == tf.int32
        np.testing.assert_array_equal(
            graph[key].numpy(), to_numpy(eager[key])
        )


def test_preprocessor_sequence_length():
    preprocessor = make_preprocessor()
    assert preprocessor.sequence_length == 16  # From the tokenizer.
    short = preprocessor({"prompts": TEXTS}, sequence_length=4)
    assert to_numpy(short["token_ids"]).shape == (2, 4)
    np.testing.assert_array_equal(
        to_numpy(short["token_ids"]), official_tokenize(TEXTS, 4)[0]
    )
    preprocessor = TIPSPreprocessor(
        tokenizer=make_tokenizer(), sequence_length=8
    )
    assert preprocessor.sequence_length == 8
    outputs = preprocessor({"prompts": TEXTS})
    np.testing.assert_array_equal(
        to_numpy(outputs["token_ids"]), official_tokenize(TEXTS, 8)[0]
    )
    preprocessor.sequence_length = 5
    assert to_numpy(preprocessor({"prompts": TEXTS})["token_ids"]).shape == (
        2,
        5,
    )


@pytest.mark.parametrize(
    "inputs, error, match",
    [
        (IMAGES, TypeError, "dict"),
        ("a cat", TypeError, "dict"),
        ({"image": IMAGES}, ValueError, "unknown input keys"),
        ({"prompts": TEXTS, "texts": TEXTS}, ValueError, "both"),
        ({}, ValueError, "no inputs"),
        ({"prompts": [1, 2]}, TypeError, "string"),
        ({"images": np.zeros((8, 8), np.uint8)}, ValueError, "shape"),
    ],
    ids=[
        "array",
        "string",
        "unknown_key",
        "both_text_keys",
        "empty",
        "int_texts",
        "bad_image",
    ],
)
def test_preprocessor_bad_inputs(inputs, error, match):
    with pytest.raises(error, match=match):
        make_preprocessor()(inputs)


def test_preprocessor_bad_arguments():
    with pytest.raises(ValueError, match="neither"):
        TIPSPreprocessor()
    with pytest.raises(ValueError, match="sequence_length"):
        TIPSPreprocessor(tokenizer=make_tokenizer(), sequence_length=0)


def test_preprocessor_config_round_trip():
    preprocessor = TIPSPreprocessor(
        tokenizer=make_tokenizer(official_padding_mask=False),
        image_converter=TIPSImageConverter(image_size=(28, 28)),
        sequence_length=8,
    )
    config = keras.saving.serialize_keras_object(preprocessor)
    json.dumps(config)
    assert config["registered_name"] == "keras_tips>TIPSPreprocessor"
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, TIPSPreprocessor)
    assert restored.sequence_length == 8
    assert restored.image_converter.image_size == (28, 28)
    assert restored.tokenizer.official_padding_mask is False
    restored.tokenizer.set_proto(PROTO_PATH.read_bytes())
    a = preprocessor({"images": IMAGES, "prompts": TEXTS})
    b = restored({"images": IMAGES, "prompts": TEXTS})
    for key in a:
        np.testing.assert_allclose(to_numpy(a[key]), to_numpy(b[key]))


def test_preprocessor_save_to_preset_from_preset(tmp_path):
    pytest.importorskip("keras_tips.backbone")
    preset_dir = str(tmp_path)
    preprocessor = TIPSPreprocessor(
        tokenizer=make_tokenizer(official_padding_mask=False),
        image_converter=TIPSImageConverter(image_size=None),
    )
    preprocessor.save_to_preset(preset_dir)
    # Presets are keyed by the backbone class named in `config.json`.
    with open(os.path.join(preset_dir, "config.json"), "w") as file:
        json.dump(
            {
                "module": "keras_tips.backbone",
                "class_name": "TIPSBackbone",
                "config": {},
                "registered_name": "keras_tips>TIPSBackbone",
            },
            file,
        )
    restored = TIPSPreprocessor.from_preset(preset_dir)
    assert restored.tokenizer.proto == PROTO_PATH.read_bytes()
    assert restored.image_converter.image_size is None
    a = preprocessor({"images": IMAGES, "prompts": TEXTS})
    b = restored({"images": IMAGES, "prompts": TEXTS})
    for key in a:
        np.testing.assert_allclose(to_numpy(a[key]), to_numpy(b[key]))
    converter = TIPSImageConverter.from_preset(preset_dir)
    assert converter.image_size is None
    assert TIPSTokenizer.from_preset(preset_dir).sequence_length == 16
