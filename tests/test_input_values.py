"""Every public entry point: a clear error or a finite, valid result.

Property-based tests (hypothesis) over integer ranges, dtypes, shapes and
special values, on tiny random models, for the text and vision encoders,
the backbone, tokenizer, preprocessor, tasks, checkpoint conversion,
presets, the CLI and the SavedModel signatures. A "clear error" is a
`ValueError` / `TypeError` whose message names the argument; anything else
(NaN, an error from inside a layer) fails the test.
"""

import os

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_tips
from keras_tips import convert
from keras_tips import tasks
from keras_tips.layers.text_embedding import TIPSTextEmbedding

BACKEND = keras.backend.backend()
VOCABULARY = 20
WIDTH = 16
SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow,
                           HealthCheck.function_scoped_fixture],
)
_MODELS = {}


def backbone():
    if "backbone" not in _MODELS:
        keras.utils.set_random_seed(0)
        vision = keras_tips.TIPSVisionEncoder(
            hidden_dim=WIDTH, num_layers=1, num_heads=2, mlp_dim=32,
            position_grid_size=2)
        text = keras_tips.TIPSTextEncoder(
            vocabulary_size=VOCABULARY, hidden_dim=WIDTH, num_layers=1,
            num_heads=2, mlp_dim=32)
        _MODELS["backbone"] = keras_tips.TIPSBackbone(vision, text)
    return _MODELS["backbone"]


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def assert_finite(x, shape=None):
    x = to_numpy(x)
    assert np.isfinite(x).all()
    if shape is not None:
        assert x.shape == shape


# ---------------------------------------------------------------------------
# Text encoder: token ids and padding masks.

TOKEN_DTYPES = ["int32", "int64", "uint8", "int16", "float32", "bool"]
MASK_VALUES = [0, 1, 2, -1, 0.5, np.nan]


@SETTINGS
@given(
    batch=st.integers(0, 3),
    length=st.integers(1, 6),
    low=st.integers(-1000, VOCABULARY + 5),
    span=st.integers(0, 1000),
    dtype=st.sampled_from(TOKEN_DTYPES),
    mask_value=st.sampled_from(MASK_VALUES),
    as_tensor=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_text_encoder_token_ids_and_masks(
    batch, length, low, span, dtype, mask_value, as_tensor, seed
):
    rng = np.random.default_rng(seed)
    ids = rng.integers(low, low + span + 1, size=(batch, length))
    if dtype == "uint8":
        ids = np.clip(ids, 0, 255)
    ids = ids.astype(dtype)
    mask = np.ones((batch, length), "float32")
    if batch:
        mask[:, -1] = mask_value
    mask_dtype = "float32" if isinstance(mask_value, float) else "int32"
    mask = mask.astype(mask_dtype)
    inputs = {"token_ids": ids, "padding_mask": mask}
    if as_tensor and dtype != "uint8":
        inputs = {k: keras.ops.convert_to_tensor(v) for k, v in inputs.items()}

    values = ids.astype("int64")
    bad_dtype = dtype in ("float32", "bool")
    bad_ids = batch > 0 and ((values < 0) | (values >= VOCABULARY)).any()
    bad_mask = batch > 0 and not (mask_value in (0, 1))
    encoder = backbone().text_encoder
    if bad_dtype or bad_ids or bad_mask:
        with pytest.raises((ValueError, TypeError)) as info:
            encoder(inputs)
        message = str(info.value)
        assert "token_ids" in message or "padding_mask" in message
        if bad_dtype:
            assert "integers" in message
        elif bad_ids:
            assert f"[0, {VOCABULARY})" in message
    else:
        assert_finite(encoder(inputs), (batch, WIDTH))


@SETTINGS
@given(
    token=st.integers(-(2**31), 2**31 - 1),
    dtype=st.sampled_from(["int32", "int64"]),
)
def test_out_of_range_ids_in_graphs_are_the_unknown_token(token, dtype):
    # The layer itself (what compiled graphs and SavedModels run) maps an
    # id outside the vocabulary to the unknown-token id on every backend.
    # (Beyond int32, JAX without x64 wraps int64 inputs before any layer
    # runs; the encoder's eager check sees them first, see below.)
    layer = backbone().text_encoder.embedding
    ids = np.array([[3, token, 5]], dtype)
    expected_token = token if 0 <= token < VOCABULARY else 2
    expected = layer(np.array([[3, expected_token, 5]], "int32"))
    assert np.array_equal(to_numpy(layer(ids)), to_numpy(expected))


@pytest.mark.parametrize("token", [2**31, 2**32 + 5, -(2**40)])
def test_int64_ids_beyond_int32_are_rejected(token):
    with pytest.raises(ValueError, match=str(token)):
        backbone().text_encoder({
            "token_ids": np.array([[1, token]], "int64"),
            "padding_mask": np.ones((1, 2), "int32"),
        })


def test_unknown_token_id_is_checked_and_saved():
    with pytest.raises(ValueError, match="unknown_token_id"):
        TIPSTextEmbedding(vocabulary_size=2, hidden_dim=4)
    layer = TIPSTextEmbedding(vocabulary_size=8, hidden_dim=4,
                              unknown_token_id=5)
    assert TIPSTextEmbedding.from_config(
        layer.get_config()).unknown_token_id == 5
    encoder = backbone().text_encoder
    assert encoder.get_config()["unknown_token_id"] == 2


@pytest.mark.skipif(BACKEND == "torch",
                    reason="torch predicts eagerly: the values are checked")
def test_compiled_predict_defines_bad_values():
    # Inside a compiled graph nothing can raise: an out-of-range id is the
    # unknown token and any non-zero mask value is a real token.
    encoder = backbone().text_encoder
    bad = encoder.predict_on_batch({
        "token_ids": np.array([[4, 612, -3, 7]], "int32"),
        "padding_mask": np.array([[1, 2, -1, 0]], "int32"),
    })
    good = encoder.predict_on_batch({
        "token_ids": np.array([[4, 2, 2, 7]], "int32"),
        "padding_mask": np.array([[1, 1, 1, 0]], "int32"),
    })
    assert np.isfinite(bad).all()
    np.testing.assert_allclose(bad, good, atol=1e-6)


# ---------------------------------------------------------------------------
# Vision encoder and backbone: eager tensors, special values, empty batches.

SPECIAL_PIXELS = [np.nan, np.inf, -np.inf, 1.5, -0.2, 255.0, 0.0, 1.0, 0.5]


@SETTINGS
@given(
    batch=st.integers(0, 2),
    value=st.sampled_from(SPECIAL_PIXELS),
    dtype=st.sampled_from(["float32", "float16", "float64"]),
    as_tensor=st.booleans(),
    entry=st.sampled_from(["call", "encode", "value_attention", "backbone",
                           "predict_on_batch"]),
)
def test_images_special_values(batch, value, dtype, as_tensor, entry):
    images = np.full((batch, 28, 28, 3), 0.25, dtype)
    if batch:
        images[-1, 3, 4, 1] = value
    if as_tensor:
        images = keras.ops.convert_to_tensor(images)
    model = backbone()
    vision = model.vision_encoder
    run = {
        "call": lambda: vision(images)["cls_embeddings"],
        "encode": lambda: vision.encode(images)["cls_embeddings"],
        "value_attention": lambda: vision.value_attention_patches(images),
        "backbone": lambda: model({
            "images": images,
            "token_ids": np.ones((batch, 3), "int32"),
            "padding_mask": np.ones((batch, 3), "int32"),
        })["cls_embeddings"],
        "predict_on_batch": lambda: vision.predict_on_batch(images)[
            "cls_embeddings"],
    }[entry]
    valid = batch == 0 or (np.isfinite(value) and 0.0 <= value <= 1.0)
    if entry == "predict_on_batch" and BACKEND != "torch" and batch:
        # Compiled: values are not checked; NaN propagates, never raises.
        out = to_numpy(run())
        assert out.shape == (batch, 2, WIDTH)
        return
    if valid:
        out = to_numpy(run())
        assert out.shape[0] == batch
        assert np.isfinite(out).all()
    else:
        with pytest.raises(ValueError, match=r"NaN or Inf|\[0, 1\]"):
            run()


def test_training_steps_check_shapes_not_values():
    # Training steps (eager on torch, compiled elsewhere) behave alike: the
    # data pipeline and the NaN-loss guard own the values.
    model = backbone()
    images = np.full((1, 28, 28, 3), np.nan, "float32")
    out = model.vision_encoder.encode(images, training=True)
    assert not np.isfinite(to_numpy(out["cls_embeddings"])).any()
    text = model.text_encoder({"token_ids": np.array([[3, 612]], "int32"),
                               "padding_mask": np.array([[1, 2]], "int32")},
                              training=True)
    unknown = model.text_encoder({"token_ids": np.array([[3, 2]], "int32"),
                                  "padding_mask": np.array([[1, 1]], "int32")})
    np.testing.assert_allclose(to_numpy(text), to_numpy(unknown), atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        model.vision_encoder(np.zeros((1, 28, 28, 4), "float32"),
                             training=True)


@pytest.mark.parametrize("height,width", [(0, 28), (28, 0), (13, 28)])
def test_images_without_a_patch(height, width):
    with pytest.raises(ValueError, match="positive multiple of the patch"):
        backbone().vision_encoder(np.zeros((1, height, width, 3), "float32"))


def test_empty_batches_everywhere():
    model = backbone()
    vision, text = model.vision_encoder, model.text_encoder
    images = np.zeros((0, 28, 42, 3), "float32")
    tokens = {"token_ids": np.zeros((0, 5), "int32"),
              "padding_mask": np.zeros((0, 5), "int32")}
    shapes = {
        "cls": (0, 2, WIDTH), "patches": (0, 2, 3, WIDTH), "text": (0, WIDTH),
    }
    for out in (vision(images), vision.encode(images),
                vision.predict(images, verbose=0),
                vision.predict_on_batch(images)):
        assert to_numpy(out["cls_embeddings"]).shape == shapes["cls"]
        assert to_numpy(out["patch_embeddings"]).shape == shapes["patches"]
    assert to_numpy(
        vision.value_attention_patches(images)).shape == shapes["patches"]
    for out in (text(tokens), text.predict(tokens, verbose=0),
                model.encode_texts(**tokens)):
        assert to_numpy(out).shape == shapes["text"]
    out = model({"images": images, **tokens})
    assert to_numpy(out["text_embeddings"]).shape == shapes["text"]
    assert to_numpy(out["patch_embeddings"]).shape == shapes["patches"]
    features = tasks.intermediate_layer_features(vision, images)
    assert to_numpy(features[0][1]).shape == shapes["patches"]


# ---------------------------------------------------------------------------
# Tokenizer and preprocessor.


@pytest.fixture(scope="module")
def tokenizer(tokenizer_model):
    return keras_tips.TIPSTokenizer(proto=str(tokenizer_model),
                                    sequence_length=8)


@SETTINGS
@given(
    texts=st.lists(st.text(max_size=30), max_size=3),
    sequence_length=st.integers(-2, 10),
)
def test_tokenizer_outputs_fit_the_vocabulary(tokenizer, texts,
                                              sequence_length):
    if sequence_length < 1:
        with pytest.raises(ValueError, match="sequence_length"):
            tokenizer.tokenize_with_padding_mask(
                texts, sequence_length=sequence_length)
        return
    out = tokenizer.tokenize_with_padding_mask(
        texts, sequence_length=sequence_length)
    ids, mask = to_numpy(out["token_ids"]), to_numpy(out["padding_mask"])
    assert ids.shape == mask.shape == (len(texts), sequence_length)
    assert ((ids >= 0) & (ids < tokenizer.vocabulary_size())).all()
    assert set(np.unique(mask)) <= {0, 1}


@SETTINGS
@given(
    batch=st.integers(0, 2),
    height=st.integers(1, 40),
    channels=st.sampled_from([1, 3, 4]),
    dtype=st.sampled_from(["uint8", "float32"]),
    value=st.sampled_from([0.0, 0.5, 1.0, np.nan, np.inf, -1.0, 300.0]),
    texts=st.none() | st.lists(st.text(max_size=10), min_size=0, max_size=2),
)
def test_preprocessor_then_backbone(tokenizer, batch, height, channels,
                                    dtype, value, texts):
    preprocessor = keras_tips.TIPSPreprocessor(
        tokenizer=tokenizer,
        image_converter=keras_tips.TIPSImageConverter(image_size=(28, 28)))
    images = np.full((batch, height, 20, channels), 0.5, "float32")
    if batch:
        images[0, 0, 0, 0] = value
    if dtype == "uint8":
        images = np.clip(np.nan_to_num(images), 0, 1).astype("uint8")
    inputs = {"images": images}
    if texts is not None and len(texts) == batch:
        inputs["prompts"] = texts
    if dtype == "float32" and batch and not (
        np.isfinite(value) and 0 <= value <= 255
    ):
        # Caught before resizing, which would blur the value into range.
        with pytest.raises(ValueError, match=r"NaN or Inf|\[0, 255\]"):
            preprocessor(inputs)
        return
    out = preprocessor(inputs)
    assert to_numpy(out["images"]).shape == (batch, 28, 28, 3)
    embeddings = backbone().encode_images(out["images"])["cls_embeddings"]
    assert_finite(embeddings, (batch, 2, WIDTH))
    if "prompts" in inputs:
        text = backbone().text_encoder
        # The fixture tokenizer's 64 ids exceed this tiny model's 20: the
        # mismatch is named, never embedded as garbage.
        ids = to_numpy(out["token_ids"])
        if (ids >= VOCABULARY).any():
            with pytest.raises(ValueError, match="vocabulary"):
                text({"token_ids": out["token_ids"],
                      "padding_mask": out["padding_mask"]})
        else:
            assert_finite(text({"token_ids": out["token_ids"],
                                "padding_mask": out["padding_mask"]}),
                          (batch, WIDTH))


# ---------------------------------------------------------------------------
# Tasks.


def classifier(tokenizer):
    if "classifier" not in _MODELS:
        embeddings = np.eye(3, WIDTH, dtype="float32")
        _MODELS["classifier"] = tasks.TIPSZeroShotClassifier(
            backbone(), ["a", "b", "c"], class_embeddings=embeddings)
    return _MODELS["classifier"]


def dense_predictor():
    if "dense" not in _MODELS:
        _MODELS["dense"] = tasks.TIPSLinearProbe(
            backbone(), task="segmentation", num_classes=3, image_size=28)
    return _MODELS["dense"]


@SETTINGS
@given(
    batch=st.integers(0, 2),
    value=st.sampled_from([0.0, 0.7, np.nan, np.inf, 2.0, -0.5]),
    task=st.sampled_from(["classifier", "dense"]),
    entry=st.sampled_from(["call", "predict_on_batch", "predict"]),
)
def test_tasks_on_special_images(tokenizer, batch, value, task, entry):
    model = classifier(tokenizer) if task == "classifier" else (
        dense_predictor())
    images = np.full((batch, 28, 28, 3), 0.5, "float32")
    if batch:
        images[0, 1, 1, 2] = value
    run = {
        "call": lambda: model(images),
        "predict_on_batch": lambda: model.predict_on_batch(images),
        "predict": lambda: model.predict(images, verbose=0),
    }[entry]
    expected_shape = (batch, 3) if task == "classifier" else (
        batch, 28, 28, 3)
    bad = batch and not (np.isfinite(value) and 0 <= value <= 1)
    # Values are checked wherever they are concrete: `__call__`, and on
    # torch (which predicts eagerly) `predict` too. Compiled jax/tensorflow
    # predictions cannot raise: NaN in gives NaN out, never a wrong number.
    checked = entry == "call" or BACKEND == "torch"
    if bad and checked:
        with pytest.raises(ValueError, match=r"NaN or Inf|\[0, 1\]"):
            run()
        return
    out = to_numpy(run())
    assert out.shape == expected_shape
    if not bad:
        assert np.isfinite(out).all()


@SETTINGS
@given(
    queries=st.integers(0, 3),
    gallery=st.integers(0, 4),
    k=st.integers(-1, 5) | st.sampled_from([True, 2.0]),
    special=st.sampled_from([None, np.nan, np.inf]),
)
def test_retrieval(queries, gallery, k, special):
    rng = np.random.default_rng(queries * 10 + gallery)
    q = rng.normal(size=(queries, 8)).astype("float32")
    g = rng.normal(size=(gallery, 8)).astype("float32")
    if special is not None and queries:
        q[0, 0] = special
    valid = (
        special is None or queries == 0
    ) and isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= gallery
    if not valid:
        with pytest.raises((ValueError, TypeError)):
            tasks.top_k_retrieval(q, g, k=k)
        return
    scores, indices = tasks.top_k_retrieval(q, g, k=k)
    assert scores.shape == indices.shape == (queries, k)
    assert np.isfinite(scores).all()
    assert ((indices >= 0) & (indices < gallery)).all()
    if queries:
        positives = rng.integers(0, gallery, size=queries)
        recall = tasks.recall_at_k(q @ g.T, positives, ks=(k,))[k]
        assert 0.0 <= recall <= 1.0
    else:
        with pytest.raises(ValueError, match="no queries"):
            tasks.recall_at_k(q @ g.T, np.zeros(0, "int64"), ks=(k,))


@SETTINGS
@given(case=st.sampled_from([
    ([0, 1], True), ([[0, 1], [2]], True), (np.array([2, 0]), True),
    ([0, -1], False), ([0, 5], False), ([0.0, 1.0], False),
    ([[0], []], False), ([[0], [1.5]], False), ([True, False], False),
    (np.array([0.5, 1.0]), False),
]))
def test_recall_positives(case):
    positives, valid = case
    similarity = np.arange(6, dtype="float32").reshape(2, 3)
    if valid:
        assert 0 <= tasks.recall_at_k(similarity, positives, ks=1)[1] <= 1
    else:
        with pytest.raises((ValueError, TypeError), match="positives|Queries"):
            tasks.recall_at_k(similarity, positives, ks=1)


# ---------------------------------------------------------------------------
# Checkpoints and presets.


@SETTINGS
@given(
    file=st.sampled_from(["vit_mlp_vision.npz", "text_small_text.npz"]),
    index=st.integers(0, 10_000),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_checkpoint_with_non_finite_values_names_the_key(
    parity_dir, tmp_path_factory, file, index, value
):
    arrays = convert.read_npz(parity_dir / file)
    float_keys = sorted(k for k, v in arrays.items() if v.dtype.kind == "f")
    key = float_keys[index % len(float_keys)]
    broken = arrays[key].copy()
    broken.reshape(-1)[index % broken.size] = value
    arrays[key] = broken
    path = tmp_path_factory.mktemp("broken") / file
    np.savez(path, **arrays)
    files = {"vision": parity_dir / "vit_mlp_vision.npz",
             "text": parity_dir / "text_small_text.npz"}
    files["vision" if "vision" in file else "text"] = path
    with pytest.raises(convert.CheckpointError) as info:
        convert.load_backbone(files["vision"], files["text"], num_heads=4)
    message = str(info.value)
    assert f"'{key}'" in message and str(path) in message
    assert "NaN or Inf" in message or "positive finite" in message


@pytest.mark.parametrize("num_heads", [0, -1, 3, 2.5, True])
def test_convert_num_heads_is_checked(parity_dir, num_heads):
    with pytest.raises(ValueError, match="num_heads"):
        convert.load_text_encoder(parity_dir / "text_small_text.npz",
                                  num_heads=num_heads)


def test_preset_with_non_finite_weight_names_it(tmp_path, tokenizer):
    model = backbone()
    path = tmp_path / "preset"
    variable = model.text_encoder.final_norm.gamma
    original = to_numpy(variable)
    try:
        variable.assign(np.full(original.shape, np.nan, original.dtype))
        model.save_to_preset(str(path))
    finally:
        variable.assign(original)
    tokenizer.save_to_preset(str(path))
    keras_tips.TIPSImageConverter(image_size=(28, 28)).save_to_preset(
        str(path))
    with pytest.raises(ValueError, match="final_norm") as info:
        keras_tips.TIPSBackbone.from_preset(str(path))
    assert "NaN or Inf" in str(info.value)
    with pytest.raises(ValueError, match="NaN or Inf"):
        tasks.TIPSZeroShotClassifier.from_preset(
            str(path), class_names=["a"], class_embeddings=np.ones(
                (1, WIDTH), "float32"))


# ---------------------------------------------------------------------------
# Command line.


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])
@given(
    top_k=st.integers(-2, 3),
    image_size=st.sampled_from([None, 0, -14, 13, 28]),
)
def test_cli_classify_arguments(tiny_preset, tmp_path_factory, capsys,
                                top_k, image_size):
    from keras_tips.cli import main

    image = tmp_path_factory.mktemp("cli") / "image.png"
    from PIL import Image

    Image.fromarray(np.full((30, 40, 3), 120, "uint8")).save(image)
    argv = ["classify", str(image), "--labels", "cat", "dog",
            "--templates", "single", "--top-k", str(top_k),
            "--preset", tiny_preset]
    if image_size is not None:
        argv += ["--image-size", str(image_size)]
    code = main(argv)
    captured = capsys.readouterr()
    valid = top_k >= 1 and (image_size is None or image_size == 28)
    if valid:
        assert code == 0, captured.err
    else:
        assert code == 1
        assert "error:" in captured.err and len(captured.err.splitlines()) == 1
        assert "--top-k" in captured.err or "--image-size" in captured.err


def test_cli_convert_names_the_broken_key(parity_dir, tokenizer_model,
                                          tmp_path, capsys):
    from keras_tips.cli import main

    arrays = convert.read_npz(parity_dir / "text_small_text.npz")
    arrays["ln_final.weight"] = np.full_like(arrays["ln_final.weight"], np.inf)
    np.savez(tmp_path / "text.npz", **arrays)
    code = main(["convert", "--vision", str(parity_dir / "vit_mlp_vision.npz"),
                 "--text", str(tmp_path / "text.npz"),
                 "--tokenizer", str(tokenizer_model),
                 "--output", str(tmp_path / "preset"), "--num-heads", "4"])
    assert code == 1
    assert "'ln_final.weight'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "preset")


# ---------------------------------------------------------------------------
# SavedModel signatures (values unknown: defined, backend-independent).


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if BACKEND not in ("jax", "tensorflow"):
        pytest.skip("torch exports through a tensorflow subprocess")
    import tensorflow as tf

    path = tmp_path_factory.mktemp("saved") / "model"
    keras_tips.export.export_saved_model(backbone(), str(path), image_size=28)
    return tf.saved_model.load(str(path))


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=4),
    mask=st.lists(st.sampled_from([0, 1, 2, -7]), min_size=4, max_size=4),
)
def test_saved_model_token_ids_are_defined(served, ids, mask):
    import tensorflow as tf

    length = len(ids)
    mask = np.array([mask[:length]], "int32")
    ids = np.array([ids], "int32")
    out = served.embed_token_ids(tf.constant(ids), tf.constant(mask))
    out = out["text_embeddings"].numpy()
    assert np.isfinite(out).all()
    clean_ids = np.where((ids >= 0) & (ids < VOCABULARY), ids, 2)
    clean = backbone().text_encoder({
        "token_ids": clean_ids.astype("int32"),
        "padding_mask": (mask != 0).astype("int32"),
    })
    clean = to_numpy(clean)
    clean = clean / np.maximum(np.linalg.norm(clean, axis=-1, keepdims=True),
                               1e-12)
    np.testing.assert_allclose(out, clean, atol=1e-5)


def test_saved_model_empty_batches(served):
    import tensorflow as tf

    empty = served.embed_images(tf.zeros((0, 28, 42, 3)))
    assert tuple(empty["cls_embeddings"].shape) == (0, 2, WIDTH)
    assert tuple(empty["patch_embeddings"].shape) == (0, 2, 3, WIDTH)
    empty = served.embed_token_ids(tf.zeros((0, 5), tf.int32),
                                   tf.zeros((0, 5), tf.int32))
    assert tuple(empty["text_embeddings"].shape) == (0, WIDTH)
    assert tuple(served.embed_image_bytes(
        tf.constant([], tf.string))["cls_embeddings"].shape) == (0, 2, WIDTH)
    full = served.embed_images(tf.fill((1, 28, 28, 3), 0.5))
    assert np.isfinite(full["cls_embeddings"].numpy()).all()


# ---------------------------------------------------------------------------
# Pretraining data path (pure tf.data: run once, on the jax job).


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    import io

    import tensorflow as tf
    from PIL import Image

    from training import records

    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 50, 3), 90, "uint8")).save(buffer, "PNG")

    def example(caption):
        return records.make_example({
            records.IMAGE: [buffer.getvalue()],
            records.CAPTION_NOISY: [caption],
            records.CAPTION_SYNTHETIC: [caption],
            records.ID: [b"x"],
        }).SerializeToString()

    path = str(tmp_path_factory.mktemp("shard") / "train-0.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for caption in (b"a red circle", b"two blue squares"):
            writer.write(example(caption))
    return path


DATA_SMALL = dict(global_crop_size=28, local_crop_size=14, num_local_crops=1,
                  sequence_length=6, shuffle_buffer=0, seed=0)


def _hashing_tokenizer(offset, dtype="int32", vocabulary_size=None):
    """Word-hash tokenizer whose ids start at `offset`."""
    import tensorflow as tf

    class Tokenizer:
        def __call__(self, texts):
            words = tf.strings.split(texts)
            ids = tf.ragged.map_flat_values(
                lambda w: tf.strings.to_hash_bucket_fast(w, 10) + offset,
                words)
            return tf.cast(ids.to_tensor(), dtype)

    tokenizer = Tokenizer()
    if vocabulary_size is not None:
        tokenizer.vocabulary_size = lambda: vocabulary_size
    return tokenizer


@pytest.mark.backend_independent
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.function_scoped_fixture])
@given(
    batch_size=st.sampled_from([-1, 0, 1, 2, True, 1.5]),
    probability=st.sampled_from([0.0, 0.5, 1.0, -0.1, 1.5, np.nan]),
    shuffle_buffer=st.sampled_from([0, 3, -1, True]),
    seed=st.sampled_from([0, None, 2.5, True]),
)
def test_pretraining_arguments(shard, batch_size, probability,
                               shuffle_buffer, seed):
    from training import pipelines
    from training.data_config import DataConfig

    valid = (
        batch_size in (1, 2) and not isinstance(batch_size, bool)
        and 0.0 <= probability <= 1.0
        and shuffle_buffer in (0, 3) and not isinstance(shuffle_buffer, bool)
        and (seed is None or (seed == 0 and not isinstance(seed, bool)))
    )
    arguments = dict(DATA_SMALL, shuffle_buffer=shuffle_buffer, seed=seed)

    def build():
        config = DataConfig(batch_size=batch_size,
                            global_blur_probability=probability, **arguments)
        return pipelines.make_pretraining_dataset(
            shard, _hashing_tokenizer(1), config)

    if not valid:
        with pytest.raises((ValueError, TypeError)):
            build()
        return
    batch = next(iter(build()))
    assert batch["global_images"].shape[0] == batch_size
    ids = batch["noisy_token_ids"].numpy()
    assert (ids >= 0).all() and set(np.unique(
        batch["noisy_padding_mask"].numpy())) <= {0, 1}


@pytest.mark.backend_independent
@pytest.mark.parametrize("offset,vocabulary_size", [(-20, None), (5, 8)])
def test_pretraining_token_ids_outside_the_vocabulary_stop(
    shard, offset, vocabulary_size
):
    import tensorflow as tf

    from training import pipelines
    from training.data_config import DataConfig

    dataset = pipelines.make_pretraining_dataset(
        shard, _hashing_tokenizer(offset, vocabulary_size=vocabulary_size),
        DataConfig(batch_size=2, **DATA_SMALL))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="token ids outside"):
        next(iter(dataset))


@pytest.mark.backend_independent
def test_pretraining_float_token_ids_are_rejected(shard):
    from training import pipelines
    from training.data_config import DataConfig

    with pytest.raises(TypeError, match="integer token ids"):
        pipelines.make_pretraining_dataset(
            shard, _hashing_tokenizer(1, dtype="float32"),
            DataConfig(batch_size=2, **DATA_SMALL))


@pytest.mark.parametrize("special", [np.nan, np.inf, 0.0])
def test_class_embeddings_and_temperature_values(special):
    embeddings = np.eye(2, WIDTH, dtype="float32")
    embeddings[1] = special
    with pytest.raises(ValueError, match="class_embeddings"):
        tasks.TIPSZeroShotClassifier(backbone(), ["a", "b"],
                                     class_embeddings=embeddings)
    with pytest.raises(ValueError, match="temperature"):
        backbone().temperature_layer.set_temperature(special)
