"""Tests for `keras_tips.tokenizer.TIPSTokenizer`.

Reference values come from the official TIPS tokenizer: the golden `.npz`
fixtures were produced by `pytorch/text_encoder.py` (class `Tokenizer`), and
`official_tokenize` below re-states that code (TensorFlow Text) to compare
against on inputs the fixtures do not cover.
"""

import functools
import io
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_tips.tokenizer import TIPSTokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKENIZER_DIR = FIXTURES / "tokenizer"
PROTO_PATH = TOKENIZER_DIR / "tokenizer.model"


@functools.lru_cache(maxsize=None)
def proto_bytes():
    return PROTO_PATH.read_bytes()


@functools.lru_cache(maxsize=None)
def official_sentencepiece():
    return tf_text.SentencepieceTokenizer(
        model=proto_bytes(), add_bos=False, add_eos=False
    )


def official_tokenize(texts, max_len):
    """The official TIPS tokenization, mask returned as 1 = real token."""
    tokens = official_sentencepiece().tokenize(
        tf.strings.lower(tf.constant(texts, dtype=tf.string))
    )
    tokens = tokens.to_tensor()
    if tokens.shape[1] > max_len:
        ids = tokens[:, :max_len]
        is_padding = tf.zeros(ids.shape, tf.int32)
    else:
        ids = tf.pad(tokens, [[0, 0], [0, max_len - tokens.shape[1]]])
        is_padding = tf.cast(ids == 0, tf.int32)
    return ids.numpy(), 1 - is_padding.numpy()


def load_golden(length):
    data = np.load(TOKENIZER_DIR / f"tokenizer_golden_len{length}.npz")
    return [str(t) for t in data["texts"]], data["token_ids"], data[
        "padding_mask"
    ]


@functools.lru_cache(maxsize=None)
def cached_tokenizer(sequence_length=64, official_padding_mask=True):
    return TIPSTokenizer(
        proto=str(PROTO_PATH),
        sequence_length=sequence_length,
        official_padding_mask=official_padding_mask,
    )


def to_numpy(x):
    if isinstance(x, tf.Tensor):
        return x.numpy()
    return keras.ops.convert_to_numpy(x)


def run_in_tf_data(tokenizer, texts, batch_size=None):
    """Tokenize `texts` inside a `tf.data` pipeline; return NumPy arrays."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string))
    if batch_size:
        ds = ds.batch(batch_size)
    ds = ds.map(tokenizer.tokenize_with_padding_mask)
    outputs = list(ds.as_numpy_iterator())
    if batch_size:
        return outputs
    return {
        key: np.stack([o[key] for o in outputs]) for key in outputs[0]
    }


# --- Golden reproduction ----------------------------------------------------


@pytest.mark.parametrize("length", [16, 64])
def test_golden_official_mask_eager(length):
    texts, golden_ids, golden_mask = load_golden(length)
    # The fixtures exercise the quirk: one text is longer than `length`.
    assert golden_mask.min() == 1
    outputs = cached_tokenizer(length).tokenize_with_padding_mask(texts)
    np.testing.assert_array_equal(to_numpy(outputs["token_ids"]), golden_ids)
    np.testing.assert_array_equal(
        to_numpy(outputs["padding_mask"]), golden_mask
    )
    assert to_numpy(outputs["token_ids"]).dtype == np.int32
    assert to_numpy(outputs["padding_mask"]).dtype == np.int32


@pytest.mark.parametrize("length", [16, 64])
def test_golden_official_mask_tf_data(length):
    texts, golden_ids, golden_mask = load_golden(length)
    (outputs,) = run_in_tf_data(
        cached_tokenizer(length), texts, batch_size=len(texts)
    )
    np.testing.assert_array_equal(outputs["token_ids"], golden_ids)
    np.testing.assert_array_equal(outputs["padding_mask"], golden_mask)


@pytest.mark.parametrize("length", [16, 64])
def test_golden_per_token_mask(length):
    texts, golden_ids, _ = load_golden(length)
    tokenizer = cached_tokenizer(length, official_padding_mask=False)
    eager = tokenizer.tokenize_with_padding_mask(texts)
    (graph,) = run_in_tf_data(tokenizer, texts, batch_size=len(texts))
    for outputs in (eager, graph):
        ids = to_numpy(outputs["token_ids"])
        mask = to_numpy(outputs["padding_mask"])
        np.testing.assert_array_equal(ids, golden_ids)
        np.testing.assert_array_equal(mask, (golden_ids != 0).astype("int32"))
    # The empty text has no real token at all.
    assert to_numpy(eager["padding_mask"])[texts.index("")].sum() == 0


@pytest.mark.parametrize("length", [16, 64])
def test_call_returns_golden_ids(length):
    texts, golden_ids, _ = load_golden(length)
    np.testing.assert_array_equal(
        to_numpy(cached_tokenizer(length)(texts)), golden_ids
    )
    np.testing.assert_array_equal(
        to_numpy(cached_tokenizer(length).tokenize(texts)), golden_ids
    )


# --- The official mask quirk around the boundary ------------------------------


def text_with_tokens(num_tokens):
    """A text whose tokenization has exactly `num_tokens` ids."""
    base = "a red circle in the top left of the image next to a square " * 4
    for end in range(len(base) + 1):
        text = base[:end]
        ids = official_sentencepiece().tokenize(tf.constant([text]))
        if len(ids.to_list()[0]) == num_tokens:
            return text
    raise AssertionError(f"No prefix with {num_tokens} tokens.")


@pytest.mark.parametrize("longest", [5, 8, 9, 30])
@pytest.mark.parametrize("official_padding_mask", [True, False])
def test_quirk_matches_official_code(longest, official_padding_mask):
    length = 8
    texts = [text_with_tokens(longest), "the fox", ""]
    reference_ids, reference_mask = official_tokenize(texts, length)
    tokenizer = cached_tokenizer(length, official_padding_mask)
    eager = tokenizer.tokenize_with_padding_mask(texts)
    (graph,) = run_in_tf_data(tokenizer, texts, batch_size=len(texts))
    expected_mask = (
        reference_mask
        if official_padding_mask
        else (reference_ids != 0).astype("int32")
    )
    for outputs in (eager, graph):
        np.testing.assert_array_equal(
            to_numpy(outputs["token_ids"]), reference_ids
        )
        np.testing.assert_array_equal(
            to_numpy(outputs["padding_mask"]), expected_mask
        )
    if official_padding_mask:
        # All ones exactly when the longest text overflows `length`.
        assert (to_numpy(eager["padding_mask"]).min() == 1) == (
            longest > length
        )


# --- Single strings, batches and input types ---------------------------------


def test_single_string_matches_batch():
    tokenizer = cached_tokenizer(16)
    texts = ["A red circle.", "the quick brown fox", ""]
    batch = tokenizer.tokenize_with_padding_mask(texts)
    for i, text in enumerate(texts):
        single = tokenizer.tokenize_with_padding_mask(text)
        assert to_numpy(single["token_ids"]).shape == (16,)
        assert to_numpy(single["padding_mask"]).shape == (16,)
        np.testing.assert_array_equal(
            to_numpy(single["token_ids"]), to_numpy(batch["token_ids"])[i]
        )
        np.testing.assert_array_equal(
            to_numpy(single["padding_mask"]),
            to_numpy(batch["padding_mask"])[i],
        )


def test_unbatched_tf_data_map_matches_eager():
    texts = ["A red circle in the TOP LEFT.", "", "the quick brown fox"]
    tokenizer = cached_tokenizer(16, official_padding_mask=False)
    graph = run_in_tf_data(tokenizer, texts)
    eager = tokenizer.tokenize_with_padding_mask(texts)
    for key in ("token_ids", "padding_mask"):
        np.testing.assert_array_equal(graph[key], to_numpy(eager[key]))
    # Direct mapping of the layer returns ids only.
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(3).map(tokenizer)
    np.testing.assert_array_equal(
        next(iter(ds)).numpy(), to_numpy(eager["token_ids"])
    )


def test_official_quirk_is_decided_per_call():
    # Mapped over single examples, the quirk applies per example: only the
    # overflowing text gets an all-ones mask.
    texts = ["A red circle in the TOP LEFT of the image.", "", "the fox"]
    graph = run_in_tf_data(cached_tokenizer(16), texts)
    for i, text in enumerate(texts):
        reference_ids, reference_mask = official_tokenize([text], 16)
        np.testing.assert_array_equal(graph["token_ids"][i], reference_ids[0])
        np.testing.assert_array_equal(
            graph["padding_mask"][i], reference_mask[0]
        )
    assert graph["padding_mask"][0].min() == 1
    assert graph["padding_mask"][1].max() == 0


def test_tf_data_with_unknown_static_shape():
    tokenizer = cached_tokenizer(16)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(texts):
        return tokenizer.tokenize_with_padding_mask(texts)

    outputs = tokenize(tf.constant(["a cat", "the quick brown fox"]))
    assert outputs["token_ids"].shape == (2, 16)
    reference_ids, reference_mask = official_tokenize(
        ["a cat", "the quick brown fox"], 16
    )
    np.testing.assert_array_equal(outputs["token_ids"].numpy(), reference_ids)
    np.testing.assert_array_equal(
        outputs["padding_mask"].numpy(), reference_mask
    )


@pytest.mark.parametrize(
    "inputs",
    [
        ["a cat", "The dog"],
        ("a cat", "The dog"),
        [b"a cat", b"The dog"],
        np.array(["a cat", "The dog"]),
        np.array([b"a cat", b"The dog"], dtype=object),
        tf.constant(["a cat", "The dog"]),
    ],
    ids=["list", "tuple", "bytes", "np_str", "np_object", "tf"],
)
def test_batch_input_types(inputs):
    expected, _ = official_tokenize(["a cat", "The dog"], 16)
    np.testing.assert_array_equal(
        to_numpy(cached_tokenizer(16)(inputs)), expected
    )


@pytest.mark.parametrize(
    "text",
    ["The dog", b"The dog", np.str_("The dog"), tf.constant("The dog")],
    ids=["str", "bytes", "np_str", "tf_scalar"],
)
def test_single_input_types(text):
    expected, _ = official_tokenize(["The dog"], 16)
    outputs = to_numpy(cached_tokenizer(16)(text))
    np.testing.assert_array_equal(outputs, expected[0])


def test_python_and_tensorflow_paths_agree():
    texts = ["A RED circle", "Ünïcode — 🙂", "", "x" * 200, "a\x00b"]
    python_path = cached_tokenizer(16)
    tf_path = TIPSTokenizer(
        proto=str(PROTO_PATH), sequence_length=16, _allow_python_workflow=False
    )
    a = python_path.tokenize_with_padding_mask(texts)
    b = tf_path.tokenize_with_padding_mask(texts)
    for key in ("token_ids", "padding_mask"):
        np.testing.assert_array_equal(to_numpy(a[key]), to_numpy(b[key]))


def test_sequence_length_override():
    tokenizer = cached_tokenizer(64)
    texts = ["the quick brown fox jumps over the lazy dog", "a"]
    outputs = tokenizer.tokenize_with_padding_mask(texts, sequence_length=4)
    reference_ids, reference_mask = official_tokenize(texts, 4)
    np.testing.assert_array_equal(
        to_numpy(outputs["token_ids"]), reference_ids
    )
    np.testing.assert_array_equal(
        to_numpy(outputs["padding_mask"]), reference_mask
    )
    assert tokenizer.sequence_length == 64


def test_empty_string_and_empty_batch():
    tokenizer = cached_tokenizer(8)
    outputs = tokenizer.tokenize_with_padding_mask("")
    np.testing.assert_array_equal(to_numpy(outputs["token_ids"]), [0] * 8)
    np.testing.assert_array_equal(to_numpy(outputs["padding_mask"]), [0] * 8)
    empty = tokenizer.tokenize_with_padding_mask([])
    assert to_numpy(empty["token_ids"]).shape == (0, 8)
    assert to_numpy(empty["padding_mask"]).shape == (0, 8)


def test_invalid_utf8_maps_to_unknown_without_error():
    texts = [b"\xff\xfeabc", b"ab\xc3", b"\x80"]
    tokenizer = cached_tokenizer(16, official_padding_mask=False)
    reference_ids, _ = official_tokenize(texts, 16)
    eager = tokenizer.tokenize_with_padding_mask(texts)
    (graph,) = run_in_tf_data(tokenizer, texts, batch_size=3)
    for outputs in (eager, graph):
        np.testing.assert_array_equal(
            to_numpy(outputs["token_ids"]), reference_ids
        )
    unknown_id = spm.SentencePieceProcessor(model_proto=proto_bytes()).unk_id()
    assert (to_numpy(eager["token_ids"]) == unknown_id).any(axis=1).all()
    # A `str` with a lone surrogate is not valid UTF-8 either; no error.
    lone = to_numpy(tokenizer("a\ud800b"))
    assert lone.shape == (16,)
    assert unknown_id in lone


def test_lowercasing_is_ascii_only():
    # A word-level vocabulary where "Ü" and "ü" are different tokens.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["über Über the cat"] * 10),
        model_writer=model,
        vocab_size=20,
        model_type="WORD",
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=2,
        user_defined_symbols=["Ü", "ü"],
        hard_vocab_limit=False,
        normalization_rule_name="identity",
        minloglevel=2,
    )
    proto = model.getvalue()
    processor = spm.SentencePieceProcessor(model_proto=proto)
    upper = processor.encode("Ü")
    lower = processor.encode("ü")
    assert upper != lower
    tokenizer = TIPSTokenizer(proto=proto, sequence_length=4)
    # Non-ASCII capitals keep their case (like `tf.strings.lower`) ...
    np.testing.assert_array_equal(
        to_numpy(tokenizer("Ü"))[: len(upper)], upper
    )
    ds = tf.data.Dataset.from_tensor_slices(["Ü"]).batch(1).map(tokenizer)
    graph_ids = next(iter(ds)).numpy()[0]
    np.testing.assert_array_equal(graph_ids[: len(upper)], upper)
    # ... while ASCII capitals are lowercased.
    np.testing.assert_array_equal(
        to_numpy(tokenizer("THE CAT")), to_numpy(tokenizer("the cat"))
    )
    assert processor.encode("THE") != processor.encode("the")


def test_detokenize_round_trip():
    tokenizer = cached_tokenizer(16)
    ids = to_numpy(tokenizer("The Quick brown fox"))
    assert tokenizer.detokenize(ids) == "the quick brown fox"


# --- Errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs",
    [
        3,
        1.5,
        None,
        [1, 2],
        ["a", 2],
        np.array([1, 2]),
        tf.constant([1, 2]),
    ],
    ids=["int", "float", "none", "int_list", "mixed", "np_int", "tf_int"],
)
def test_non_string_input_raises_type_error(inputs):
    with pytest.raises(TypeError, match="string"):
        cached_tokenizer(16)(inputs)


def test_backend_tensor_input_raises_type_error():
    with pytest.raises(TypeError, match="string"):
        cached_tokenizer(16)(keras.ops.ones((2,), dtype="int32"))


def test_non_string_input_in_tf_data_raises_type_error():
    ds = tf.data.Dataset.from_tensor_slices([1, 2]).batch(2)
    with pytest.raises(TypeError, match="string"):
        ds.map(cached_tokenizer(16))


@pytest.mark.parametrize(
    "inputs",
    [np.array([["a", "b"]]), tf.constant([["a", "b"]])],
    ids=["numpy", "tf"],
)
def test_rank_2_input_raises_value_error(inputs):
    with pytest.raises(ValueError, match="rank 1"):
        cached_tokenizer(16)(inputs)


@pytest.mark.parametrize("sequence_length", [0, -3, None, 2.5, True])
def test_invalid_sequence_length(sequence_length):
    with pytest.raises(ValueError, match="sequence_length"):
        TIPSTokenizer(proto=str(PROTO_PATH), sequence_length=sequence_length)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="add_bos"):
        TIPSTokenizer(proto=str(PROTO_PATH), add_bos=True)
    with pytest.raises(ValueError, match="dtype"):
        TIPSTokenizer(proto=str(PROTO_PATH), dtype="string")
    with pytest.raises(ValueError, match="proto"):
        TIPSTokenizer(proto=123)
    with pytest.raises(ValueError, match="vocabulary"):
        TIPSTokenizer(proto=None)("a cat")


# --- Serialization -----------------------------------------------------------


def test_get_config_from_config_with_proto():
    tokenizer = TIPSTokenizer(
        proto=str(PROTO_PATH), sequence_length=16, official_padding_mask=False
    )
    config = tokenizer.get_config()
    assert config["proto"] is None  # The proto is an asset, not config.
    assert config["sequence_length"] == 16
    assert config["official_padding_mask"] is False
    json.dumps(config)
    restored = TIPSTokenizer.from_config(config)
    assert restored.sequence_length == 16
    assert restored.official_padding_mask is False
    restored.set_proto(proto_bytes())
    texts = load_golden(16)[0]
    a = tokenizer.tokenize_with_padding_mask(texts)
    b = restored.tokenize_with_padding_mask(texts)
    for key in ("token_ids", "padding_mask"):
        np.testing.assert_array_equal(to_numpy(a[key]), to_numpy(b[key]))


def test_keras_serialization_round_trip():
    tokenizer = cached_tokenizer(16)
    config = keras.saving.serialize_keras_object(tokenizer)
    assert config["registered_name"] == "keras_tips>TIPSTokenizer"
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, TIPSTokenizer)
    assert restored.sequence_length == 16


def test_save_and_load_assets(tmp_path):
    tokenizer = cached_tokenizer(16)
    tokenizer.save_assets(str(tmp_path))
    restored = TIPSTokenizer.from_config(tokenizer.get_config())
    restored.load_assets(str(tmp_path))
    assert restored.proto == proto_bytes()
    texts = load_golden(16)[0]
    np.testing.assert_array_equal(
        to_numpy(restored(texts)), load_golden(16)[1]
    )


def write_backbone_config(preset_dir):
    """A `config.json` naming `TIPSBackbone`, which presets are keyed by."""
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


def test_save_to_preset_from_preset(tmp_path):
    pytest.importorskip("keras_tips.backbone")
    import keras_hub

    preset_dir = str(tmp_path)
    tokenizer = TIPSTokenizer(
        proto=str(PROTO_PATH), sequence_length=16, official_padding_mask=False
    )
    tokenizer.save_to_preset(preset_dir)
    write_backbone_config(preset_dir)
    assert os.path.isfile(
        os.path.join(preset_dir, "assets", "tokenizer", "vocabulary.spm")
    )
    for cls in (TIPSTokenizer, keras_hub.tokenizers.Tokenizer):
        restored = cls.from_preset(preset_dir)
        assert isinstance(restored, TIPSTokenizer)
        assert restored.proto == proto_bytes()
        assert restored.sequence_length == 16
        assert restored.official_padding_mask is False
        texts, golden_ids, _ = load_golden(16)
        outputs = restored.tokenize_with_padding_mask(texts)
        np.testing.assert_array_equal(
            to_numpy(outputs["token_ids"]), golden_ids
        )
        np.testing.assert_array_equal(
            to_numpy(outputs["padding_mask"]), (golden_ids != 0)
        )


# --- Properties --------------------------------------------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(text=st.text(max_size=120))
def test_property_single_unicode_string(text):
    tokenizer = cached_tokenizer(16)
    outputs = tokenizer.tokenize_with_padding_mask(text)
    ids = to_numpy(outputs["token_ids"])
    mask = to_numpy(outputs["padding_mask"])
    assert ids.shape == (16,) and mask.shape == (16,)
    assert ids.dtype == np.int32
    assert ((ids >= 0) & (ids < tokenizer.vocabulary_size())).all()
    assert set(np.unique(mask)) <= {0, 1}
    # Padding only at the end.
    nonzero = np.flatnonzero(ids)
    if nonzero.size:
        assert (ids[: nonzero[-1] + 1] != 0).all()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    texts=st.lists(
        st.one_of(st.text(max_size=60), st.binary(max_size=40)),
        min_size=1,
        max_size=4,
    ),
    official_padding_mask=st.booleans(),
)
def test_property_batch_matches_official(texts, official_padding_mask):
    tokenizer = cached_tokenizer(8, official_padding_mask)
    reference_ids, reference_mask = official_tokenize(
        [t.encode("utf-8") if isinstance(t, str) else t for t in texts], 8
    )
    if not official_padding_mask:
        reference_mask = (reference_ids != 0).astype("int32")
    outputs = tokenizer.tokenize_with_padding_mask(texts)
    np.testing.assert_array_equal(
        to_numpy(outputs["token_ids"]), reference_ids
    )
    np.testing.assert_array_equal(
        to_numpy(outputs["padding_mask"]), reference_mask
    )
