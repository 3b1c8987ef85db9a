"""Downstream tasks: zero-shot classification and segmentation, retrieval,
dense heads (DPT decoder, linear probe) and PCA visualisation."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_tips
from keras_tips.tasks import DPTDecoder
from keras_tips.tasks import IMAGENET_PROMPT_TEMPLATES
from keras_tips.tasks import TIPSDensePredictor
from keras_tips.tasks import TIPSLinearProbe
from keras_tips.tasks import TIPSZeroShotClassifier
from keras_tips.tasks import TIPSZeroShotSegmenter
from keras_tips.tasks import class_text_embeddings
from keras_tips.tasks import cosine_similarity_matrix
from keras_tips.tasks import image_to_text_retrieval
from keras_tips.tasks import intermediate_layer_features
from keras_tips.tasks import recall_at_k
from keras_tips.tasks import text_to_image_retrieval
from keras_tips.tasks import top_k_retrieval
from keras_tips.tasks.dense_task import depth_from_bins
from keras_tips.tasks.dpt_weights import load_dpt_weights
from keras_tips.tasks.intermediate_features import default_layer_indices
from keras_tips.tasks.segmentation import sliding_windows
from keras_tips.visualization import PatchPCA
from keras_tips.visualization import pca_images
from keras_tips.visualization import pca_rgb

CLASSES = ["cat", "dog", "red car"]
# On jax, eager code compiles op by op: tests dominated by that are slow.
SLOW_ON_JAX = (
    [pytest.mark.slow] if keras.backend.backend() == "jax" else []
)


def slow_on_jax(test):
    return pytest.mark.slow(test) if SLOW_ON_JAX else test
TEMPLATES = ("a photo of a {}.", "art of the {}.")


@pytest.fixture(scope="module")
def backbone(tiny_preset):
    return keras_tips.TIPSBackbone.from_preset(tiny_preset)


@pytest.fixture(scope="module")
def preprocessor(tiny_preset):
    return keras_tips.TIPSPreprocessor.from_preset(tiny_preset)


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _reference_class_embeddings(backbone, tokenizer, names, templates):
    """Each prompt tokenized and embedded on its own; NumPy averaging."""
    rows = []
    for name in names:
        vectors = []
        for template in templates:
            prompt = template.format(name)
            tokens = tokenizer.tokenize_with_padding_mask([prompt])
            vectors.append(
                _np(backbone.text_encoder(
                    {k: ops.convert_to_tensor(v) for k, v in tokens.items()}
                ))[0]
            )
        rows.append(_unit(np.mean(_unit(np.stack(vectors)), axis=0)))
    return np.stack(rows)


# ---------------------------------------------------------------------------
# Zero-shot classification
# ---------------------------------------------------------------------------


def test_class_text_embeddings_match_per_prompt_reference(backbone,
                                                          preprocessor):
    tokenizer = preprocessor.tokenizer
    embeddings = class_text_embeddings(
        backbone, tokenizer, CLASSES, TEMPLATES, batch_size=4
    )
    expected = _reference_class_embeddings(
        backbone, tokenizer, CLASSES, TEMPLATES
    )
    assert embeddings.shape == (3, 64)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0,
                               atol=1e-6)


@pytest.mark.parametrize("cls_token", ["first", "second", "both"])
def test_zero_shot_logits_follow_chosen_class_token(backbone, preprocessor,
                                                    cls_token):
    classifier = TIPSZeroShotClassifier(
        backbone, CLASSES, preprocessor=preprocessor,
        prompt_templates=TEMPLATES, cls_token=cls_token,
    )
    images = np.random.default_rng(0).uniform(size=(2, 56, 56, 3))
    images = images.astype("float32")
    logits = _np(classifier(images))

    cls = _unit(_np(backbone.vision_encoder(images)["cls_embeddings"]))
    text = _reference_class_embeddings(
        backbone, preprocessor.tokenizer, CLASSES, TEMPLATES
    )
    cosine = np.einsum("btd,cd->btc", cls, text)
    chosen = {"first": cosine[:, 0], "second": cosine[:, 1],
              "both": cosine.mean(axis=1)}[cls_token]
    temperature = float(_np(backbone.temperature))
    np.testing.assert_allclose(logits, chosen / temperature, atol=1e-3,
                               rtol=1e-5)


def test_classify_ranks_classes_from_raw_images(backbone, preprocessor):
    classifier = TIPSZeroShotClassifier(
        backbone, CLASSES, preprocessor=preprocessor, prompt_templates=TEMPLATES
    )
    raw = np.random.default_rng(1).integers(0, 256, (2, 70, 90, 3))
    results = classifier.classify(raw.astype("uint8"), top_k=2)
    pixels = _np(preprocessor.image_converter(raw.astype("uint8")))
    probabilities = _softmax(_np(classifier(pixels)))
    assert len(results) == 2
    for result, row in zip(results, probabilities):
        assert len(result) == 2
        best = np.argsort(-row)[:2]
        assert [name for name, _ in result] == [CLASSES[i] for i in best]
        np.testing.assert_allclose([p for _, p in result], row[best],
                                   atol=1e-5)
    logits = classifier.predict(raw.astype("uint8"), verbose=0)
    np.testing.assert_allclose(logits, _np(classifier(pixels)), atol=1e-4)


def test_zero_shot_classifier_saves_and_loads(backbone, preprocessor,
                                              tmp_path):
    classifier = TIPSZeroShotClassifier(
        backbone, CLASSES, preprocessor=preprocessor,
        prompt_templates=TEMPLATES, cls_token="second",
    )
    config = classifier.get_config()
    assert config["class_names"] == CLASSES
    assert config["cls_token"] == "second"
    assert config["prompt_templates"] == list(TEMPLATES)
    path = tmp_path / "classifier.keras"
    classifier.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, TIPSZeroShotClassifier)
    assert restored.class_names == CLASSES
    np.testing.assert_allclose(restored.class_embeddings,
                               classifier.class_embeddings, atol=1e-6)
    images = np.random.default_rng(2).uniform(size=(1, 56, 56, 3))
    np.testing.assert_allclose(
        _np(restored(images.astype("float32"))),
        _np(classifier(images.astype("float32"))),
        atol=1e-4,
    )
    # The restored preprocessor has its vocabulary back.
    assert restored.preprocessor.tokenizer.proto is not None


def test_zero_shot_classifier_rejects_bad_arguments(backbone, preprocessor):
    with pytest.raises(ValueError, match="empty"):
        TIPSZeroShotClassifier(backbone, [], preprocessor=preprocessor)
    with pytest.raises(ValueError, match="duplicates"):
        TIPSZeroShotClassifier(backbone, ["a", "a"], preprocessor=preprocessor)
    with pytest.raises(ValueError, match=r"exactly one '\{\}'"):
        TIPSZeroShotClassifier(backbone, ["a"], preprocessor=preprocessor,
                               prompt_templates=("no slot",))
    with pytest.raises(ValueError, match="cls_token"):
        TIPSZeroShotClassifier(backbone, ["a"], preprocessor=preprocessor,
                               cls_token="third")
    with pytest.raises(ValueError, match="tokenizer"):
        TIPSZeroShotClassifier(backbone, ["a"], preprocessor=None)
    with pytest.raises(TypeError, match="TIPSBackbone"):
        TIPSZeroShotClassifier(backbone.vision_encoder, ["a"])
    classifier = TIPSZeroShotClassifier(
        backbone, ["a", "b"], class_embeddings=np.ones((2, 64))
    )
    with pytest.raises(ValueError, match="top_k"):
        classifier.classify(np.zeros((1, 56, 56, 3), "float32"), top_k=0)
    assert IMAGENET_PROMPT_TEMPLATES[0].count("{}") == 1


# ---------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------


def test_top_k_retrieval_matches_brute_force():
    rng = np.random.default_rng(3)
    images = rng.normal(size=(5, 8)).astype("float32") * 3.0
    texts = rng.normal(size=(7, 8)).astype("float32")
    cosine = np.array(
        [[np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) for b in texts]
         for a in images]
    )
    np.testing.assert_allclose(cosine_similarity_matrix(images, texts),
                               cosine, atol=1e-6)
    scores, indices = image_to_text_retrieval(
        images, ops.convert_to_tensor(texts), k=3
    )
    for row in range(5):
        expected = sorted(range(7), key=lambda j: -cosine[row, j])[:3]
        assert indices[row].tolist() == expected
        np.testing.assert_allclose(scores[row], cosine[row, expected],
                                   atol=1e-6)
    scores_t, indices_t = text_to_image_retrieval(texts, images, k=5)
    assert indices_t.shape == (7, 5)
    assert np.all(np.diff(scores_t, axis=1) <= 1e-7)
    assert indices_t[:, 0].tolist() == np.argmax(cosine.T, axis=1).tolist()


def test_recall_at_k_counts_queries_with_a_hit_in_top_k():
    similarity = np.array(
        [
            [0.9, 0.1, 0.0, 0.2],  # positive 0 at rank 0
            [0.1, 0.2, 0.8, 0.7],  # positive 3 at rank 1
            [0.5, 0.4, 0.3, 0.2],  # positive 3 at rank 3
        ]
    )
    assert recall_at_k(similarity, [0, 3, 3], ks=(1, 2, 4)) == {
        1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 4: 1.0,
    }
    # Several positives per query (e.g. five captions per image).
    assert recall_at_k(similarity, [[1, 2], [0], [1, 3]], ks=1) == {
        1: 0.0
    }
    assert recall_at_k(similarity, [[1, 2], [0], [1, 3]], ks=(2, 3)) == {
        2: pytest.approx(1 / 3), 3: pytest.approx(2 / 3),
    }
    mask = np.zeros((3, 4), bool)
    mask[[0, 1, 2], [0, 2, 0]] = True
    assert recall_at_k(similarity, mask, ks=1)[1] == 1.0


def test_retrieval_rejects_bad_inputs():
    with pytest.raises(ValueError, match="widths differ"):
        cosine_similarity_matrix(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="larger than the gallery"):
        top_k_retrieval(np.ones((2, 3)), np.ones((2, 3)), k=3)
    with pytest.raises(ValueError, match="2D"):
        top_k_retrieval(np.ones((3,)), np.ones((2, 3)), k=1)
    with pytest.raises(ValueError, match="outside the gallery"):
        recall_at_k(np.ones((2, 3)), [0, 5])
    with pytest.raises(ValueError, match="no correct gallery item"):
        recall_at_k(np.ones((2, 3)), np.zeros((2, 3), bool), ks=1)
    with pytest.raises(ValueError, match="entries for 2 queries"):
        recall_at_k(np.ones((2, 3)), [0], ks=1)


# ---------------------------------------------------------------------------
# Zero-shot segmentation
# ---------------------------------------------------------------------------


def _bilinear_upsample(x, height, width):
    """Half-pixel bilinear resize of (h, w, C) with edge clamping (NumPy)."""

    def axis_weights(out_size, in_size):
        weights = np.zeros((out_size, in_size))
        for i in range(out_size):
            src = min(max((i + 0.5) * in_size / out_size - 0.5, 0.0),
                      in_size - 1)
            low = int(np.floor(src))
            high = min(low + 1, in_size - 1)
            weights[i, low] += 1.0 - (src - low)
            weights[i, high] += src - low
        return weights

    rows = axis_weights(height, x.shape[0])
    cols = axis_weights(width, x.shape[1])
    return np.einsum("oh,hwc,pw->opc", rows, x, cols)


def _reference_window_probabilities(backbone, text, window):
    """Softmax of value-attention cosines, upsampled (sides % 14 == 0)."""
    patches = _np(backbone.vision_encoder.value_attention_patches(window))[0]
    cosine = _unit(patches) @ text.T
    up = _bilinear_upsample(cosine, window.shape[1], window.shape[2])
    return _softmax(up)


@pytest.fixture(scope="module")
def segmenter(backbone, preprocessor):
    return TIPSZeroShotSegmenter(
        backbone, CLASSES, preprocessor=preprocessor, prompt_templates=TEMPLATES
    )


def test_sliding_windows_cover_the_image_like_the_official_layout():
    windows = sliding_windows(100, 60, 56, 42)
    assert [w[0] for w in windows[::2]] == [0, 42, 44]
    assert [w[2] for w in windows[:2]] == [0, 4]
    covered = np.zeros((100, 60), int)
    for top, bottom, left, right in windows:
        assert bottom - top == 56 and right - left == 56
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1
    assert sliding_windows(30, 40, 56, 42) == [(0, 30, 0, 40)]


def test_whole_image_segmentation_matches_reference(backbone, preprocessor,
                                                    segmenter):
    image = np.random.default_rng(4).uniform(size=(1, 56, 84, 3))
    image = image.astype("float32")
    text = _reference_class_embeddings(
        backbone, preprocessor.tokenizer, CLASSES, TEMPLATES
    )
    probabilities = segmenter.segment(image)
    expected = _reference_window_probabilities(backbone, text, image)
    assert probabilities.shape == (1, 56, 84, 3)
    np.testing.assert_allclose(probabilities[0], expected, atol=1e-5)
    patch_cosine = _np(segmenter(image))
    assert patch_cosine.shape == (1, 4, 6, 3)


def test_sliding_window_segmentation_averages_window_probabilities(
    backbone, preprocessor, segmenter
):
    image = np.random.default_rng(5).uniform(size=(1, 70, 100, 3))
    image = image.astype("float32")
    text = _reference_class_embeddings(
        backbone, preprocessor.tokenizer, CLASSES, TEMPLATES
    )
    calls = []
    probabilities = segmenter.segment(
        image, window_size=56, stride=28,
        callback=lambda done, total: calls.append((done, total)),
    )
    total = np.zeros((70, 100, 3))
    count = np.zeros((70, 100, 1))
    for top, left in [(0, 0), (0, 28), (0, 44), (14, 0), (14, 28), (14, 44)]:
        window = image[:, top : top + 56, left : left + 56]
        total[top : top + 56, left : left + 56] += (
            _reference_window_probabilities(backbone, text, window)
        )
        count[top : top + 56, left : left + 56] += 1
    np.testing.assert_allclose(probabilities[0], total / count, atol=1e-5)
    assert calls == [(i, 6) for i in range(1, 7)]


def test_segment_masks_have_input_size_for_any_image_size(segmenter):
    image = np.random.default_rng(6).integers(0, 256, (45, 61, 3))
    probabilities = segmenter.segment(
        image.astype("uint8"), short_side=56, window_size=50
    )
    assert probabilities.shape == (1, 45, 61, 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    masks = segmenter.segment_masks(image.astype("uint8"), short_side=28)
    assert masks.shape == (1, 45, 61) and masks.dtype == np.int32
    assert masks.min() >= 0 and masks.max() < 3
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        segmenter.segment(np.full((1, 28, 28, 3), 3.0, "float32"))
    with pytest.raises(ValueError, match="RGB"):
        segmenter.segment(np.zeros((28, 28), "uint8"))
    with pytest.raises(ValueError, match="window_size"):
        segmenter.segment(image.astype("uint8"), window_size=0)


def test_segmenter_scores_a_class_named_by_synonyms_by_its_best_name(
    backbone, preprocessor, tmp_path
):
    image = np.random.default_rng(7).uniform(size=(2, 56, 42, 3))
    image = image.astype("float32")
    patches = _unit(_np(backbone.vision_encoder.value_attention_patches(image)))
    # The synonyms listed worst first (by mean cosine over the patches), so
    # that scoring by the first name alone would fail.
    synonyms = ["cat", "kitten", "tabby"]
    text = _reference_class_embeddings(
        backbone, preprocessor.tokenizer, synonyms, TEMPLATES
    )
    synonyms = [synonyms[i] for i in np.argsort((patches @ text.T).mean((0, 1, 2)))]
    groups = [synonyms, "dog", ["red car"]]
    names = synonyms + ["dog", "red car"]
    assert keras_tips.tasks.flat_class_names(groups) == names
    segmenter = TIPSZeroShotSegmenter(
        backbone, groups, preprocessor=preprocessor, prompt_templates=TEMPLATES
    )
    text = _reference_class_embeddings(
        backbone, preprocessor.tokenizer, names, TEMPLATES
    )
    np.testing.assert_allclose(segmenter.class_embeddings, text, atol=1e-5)
    cosine = patches @ text.T
    expected = np.stack(
        [cosine[..., :3].max(-1), cosine[..., 3], cosine[..., 4]], -1
    )
    assert (expected[..., 0] > cosine[..., 0] + 1e-3).all()
    np.testing.assert_allclose(_np(segmenter(image)), expected, atol=1e-5)
    assert segmenter.segment(image).shape == (2, 56, 42, 3)
    path = tmp_path / "segmenter.keras"
    segmenter.save(path)
    restored = keras.saving.load_model(path)
    assert restored.class_names == groups
    np.testing.assert_allclose(_np(restored(image)), expected, atol=1e-5)


def test_classifier_with_synonyms_reports_first_names(backbone, preprocessor):
    classifier = TIPSZeroShotClassifier(
        backbone, [["cat", "kitten"], "dog"], preprocessor=preprocessor,
        prompt_templates=TEMPLATES,
    )
    assert classifier.class_embeddings.shape == (3, backbone.hidden_dim)
    image = np.random.default_rng(8).uniform(size=(1, 56, 56, 3))
    result = classifier.classify(image.astype("float32"), top_k=2)
    assert sorted(name for name, _ in result[0]) == ["cat", "dog"]
    with pytest.raises(ValueError, match="empty list of synonyms"):
        TIPSZeroShotClassifier(backbone, [[], "dog"],
                               preprocessor=preprocessor)
    with pytest.raises(ValueError, match="duplicates"):
        TIPSZeroShotClassifier(backbone, [["cat", "dog"], "dog"],
                               preprocessor=preprocessor)
    with pytest.raises(ValueError, match="shape"):
        TIPSZeroShotClassifier(backbone, [["cat", "kitten"], "dog"],
                               class_embeddings=np.ones((2, 64)))


# ---------------------------------------------------------------------------
# Dense heads
# ---------------------------------------------------------------------------

DPT_WIDTH = 64
DPT_CHANNELS = 16
DPT_LEVELS = (8, 16, 32, 64)


def _random_dpt_weights(out_channels, seed=0):
    """Official PyTorch-layout DPT arrays (decoders.py state_dict names)."""
    rng = np.random.default_rng(seed)
    d, c, levels = DPT_WIDTH, DPT_CHANNELS, DPT_LEVELS
    shapes = {}
    for i, ch in enumerate(levels):
        shapes[f"dpt.reassemble.out_projections.{i}.weight"] = (ch, d, 1, 1)
        shapes[f"dpt.reassemble.out_projections.{i}.bias"] = (ch,)
        shapes[f"dpt.reassemble.readout_projects.{i}.weight"] = (d, 2 * d)
        shapes[f"dpt.reassemble.readout_projects.{i}.bias"] = (d,)
        shapes[f"dpt.convs.{i}.weight"] = (c, ch, 3, 3)
    for i, k in ((0, 4), (1, 2), (3, 3)):
        ch = levels[i]
        shapes[f"dpt.reassemble.resize_layers.{i}.weight"] = (ch, ch, k, k)
        shapes[f"dpt.reassemble.resize_layers.{i}.bias"] = (ch,)
    for i in range(4):
        units = ["main_unit"] + (["residual_unit"] if i else [])
        for unit in units:
            for conv in ("conv1", "conv2"):
                shapes[f"dpt.fusion_blocks.{i}.{unit}.{conv}.weight"] = (
                    c, c, 3, 3)
        shapes[f"dpt.fusion_blocks.{i}.out_conv.weight"] = (c, c, 1, 1)
        shapes[f"dpt.fusion_blocks.{i}.out_conv.bias"] = (c,)
    shapes["dpt.project.weight"] = (c, c, 3, 3)
    shapes["dpt.project.bias"] = (c,)
    shapes["head.weight"] = (out_channels, c)
    shapes["head.bias"] = (out_channels,)
    return {
        key: (rng.normal(size=shape) * 0.1).astype("float32")
        for key, shape in shapes.items()
    }


def _torch_dpt_reference(weights, features):
    """The TIPSv2 DPT forward pass written with torch.nn.functional."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    w = {key: torch.from_numpy(value) for key, value in weights.items()}

    def unit(x, prefix):
        y = functional.conv2d(torch.relu(x), w[prefix + ".conv1.weight"],
                              padding=1)
        y = functional.conv2d(torch.relu(y), w[prefix + ".conv2.weight"],
                              padding=1)
        return x + y

    levels = []
    for i, (cls, patches) in enumerate(features):
        x = torch.from_numpy(np.transpose(patches, (0, 3, 1, 2)))
        b, d, h, wd = x.shape
        flat = x.flatten(2).transpose(1, 2)
        readout = torch.from_numpy(cls)[:, None, :]
        readout = readout.expand(-1, flat.shape[1], -1)
        p = f"dpt.reassemble.readout_projects.{i}"
        mixed = functional.gelu(
            functional.linear(torch.cat([flat, readout], -1), w[p + ".weight"],
                              w[p + ".bias"]),
            approximate="tanh",
        )
        x = mixed.transpose(1, 2).reshape(b, d, h, wd)
        p = f"dpt.reassemble.out_projections.{i}"
        x = functional.conv2d(x, w[p + ".weight"], w[p + ".bias"])
        p = f"dpt.reassemble.resize_layers.{i}"
        if i == 0:
            x = functional.conv_transpose2d(x, w[p + ".weight"], w[p + ".bias"],
                                            stride=4)
        elif i == 1:
            x = functional.conv_transpose2d(x, w[p + ".weight"], w[p + ".bias"],
                                            stride=2)
        elif i == 3:
            x = functional.conv2d(x, w[p + ".weight"], w[p + ".bias"],
                                  stride=2, padding=1)
        levels.append(
            functional.conv2d(x, w[f"dpt.convs.{i}.weight"], padding=1)
        )

    def fuse(i, x, residual=None):
        p = f"dpt.fusion_blocks.{i}"
        if residual is not None:
            if residual.shape != x.shape:
                residual = functional.interpolate(
                    residual, size=x.shape[2:], mode="bilinear",
                    align_corners=False,
                )
            x = x + unit(residual, p + ".residual_unit")
        x = unit(x, p + ".main_unit")
        x = functional.interpolate(x, scale_factor=2, mode="bilinear",
                                   align_corners=True)
        return functional.conv2d(x, w[p + ".out_conv.weight"],
                                 w[p + ".out_conv.bias"])

    out = fuse(0, levels[3])
    for i in range(1, 4):
        out = fuse(i, out, levels[3 - i])
    out = functional.conv2d(out, w["dpt.project.weight"], w["dpt.project.bias"],
                            padding=1)
    out = functional.linear(out.permute(0, 2, 3, 1), w["head.weight"],
                            w["head.bias"])
    return out.numpy()


@pytest.fixture(scope="module")
def dpt_decoder():
    decoder = DPTDecoder(DPT_WIDTH, 5, channels=DPT_CHANNELS,
                         post_process_channels=DPT_LEVELS)
    decoder.build([((None, DPT_WIDTH), (None, None, None, DPT_WIDTH))] * 4)
    return decoder


# Building and running the decoder op by op compiles every op under jax.
@pytest.mark.parametrize(
    "grid",
    [
        pytest.param((5, 3), marks=SLOW_ON_JAX),
        pytest.param((4, 4), marks=pytest.mark.slow),
    ],
)
def test_dpt_decoder_matches_torch_reference(dpt_decoder, grid):
    rng = np.random.default_rng(7)
    features = [
        (rng.normal(size=(2, DPT_WIDTH)).astype("float32"),
         rng.normal(size=(2, *grid, DPT_WIDTH)).astype("float32"))
        for _ in range(4)
    ]
    weights = _random_dpt_weights(out_channels=5)
    decoder = dpt_decoder
    load_dpt_weights(decoder, weights)
    outputs = _np(decoder(features))
    expected = _torch_dpt_reference(weights, features)
    # 8x the grid for even sides; an odd side gives 16 * ceil(side / 2).
    assert outputs.shape == expected.shape
    height, width = (16 * -(-side // 2) for side in grid)
    assert expected.shape == (2, height, width, 5)
    np.testing.assert_allclose(outputs, expected, atol=2e-4, rtol=1e-4)


@slow_on_jax
def test_load_dpt_weights_checks_keys_and_shapes(dpt_decoder):
    decoder = dpt_decoder
    weights = _random_dpt_weights(out_channels=5)
    missing = dict(weights)
    del missing["dpt.project.bias"]
    with pytest.raises(ValueError, match="missing DPT weight 'dpt.project"):
        load_dpt_weights(decoder, missing)
    wrong = dict(weights, **{"head.weight": np.zeros((7, DPT_CHANNELS))})
    with pytest.raises(ValueError, match="head.weight"):
        load_dpt_weights(decoder, wrong)
    extra = dict(weights, unexpected=np.zeros(3))
    with pytest.raises(ValueError, match="unexpected"):
        load_dpt_weights(decoder, extra)


def test_depth_from_bins_is_expected_bin_centre():
    logits = np.random.default_rng(8).normal(size=(2, 3, 4, 16))
    depth = _np(depth_from_bins(logits.astype("float32"), 0.5, 8.0))
    weights = np.maximum(logits, 0) + 0.5
    weights /= weights.sum(-1, keepdims=True)
    expected = (weights * np.linspace(0.5, 8.0, 16)).sum(-1, keepdims=True)
    np.testing.assert_allclose(depth, expected, atol=1e-5)


def test_intermediate_layer_features_end_with_encoder_outputs(backbone):
    assert default_layer_indices(12) == [2, 5, 8, 11]
    assert default_layer_indices(24) == [5, 11, 17, 23]
    assert default_layer_indices(27) == [6, 13, 20, 26]
    assert default_layer_indices(40) == [9, 19, 29, 39]
    images = np.random.default_rng(9).uniform(size=(2, 42, 56, 3))
    images = images.astype("float32")
    features = intermediate_layer_features(backbone.vision_encoder, images,
                                           [0, 1])
    outputs = backbone.vision_encoder(images)
    np.testing.assert_allclose(_np(features[1][0]),
                               _np(outputs["cls_embeddings"])[:, 0], atol=1e-5)
    np.testing.assert_allclose(_np(features[1][1]),
                               _np(outputs["patch_embeddings"]), atol=1e-5)
    assert _np(features[0][1]).shape == (2, 3, 4, 64)
    assert not np.allclose(_np(features[0][1]), _np(features[1][1]))
    with pytest.raises(ValueError, match="outside the encoder"):
        intermediate_layer_features(backbone.vision_encoder, images, [2])


def _weights_of(layer):
    return [_np(v).copy() for v in layer.weights]


@pytest.fixture(scope="module")
def frozen_backbone(tiny_preset):
    """A separate backbone: the dense tasks freeze its vision encoder."""
    return keras_tips.TIPSBackbone.from_preset(tiny_preset)


@pytest.mark.parametrize(
    "task,num_classes,target_shape",
    [
        # Compiling the ViT + DPT train step takes long on CPU with jax.
        pytest.param("segmentation", 4, (2, 28, 28), marks=SLOW_ON_JAX),
        pytest.param("depth", None, (2, 28, 28, 1), marks=pytest.mark.slow),
        pytest.param("normals", None, (2, 28, 28, 3), marks=pytest.mark.slow),
    ],
)
def test_dense_predictor_trains_decoder_with_frozen_encoder(
    frozen_backbone, task, num_classes, target_shape
):
    model = TIPSDensePredictor(
        frozen_backbone, task=task, num_classes=num_classes,
        image_size=(28, 28), channels=8, num_depth_bins=8,
    )
    rng = np.random.default_rng(10)
    images = rng.uniform(size=(2, 28, 28, 3)).astype("float32")
    outputs = _np(model(images))
    if task == "segmentation":
        assert outputs.shape == (2, 28, 28, 4)
        targets = rng.integers(0, 4, target_shape)
    elif task == "depth":
        assert outputs.shape == (2, 28, 28, 1)
        assert outputs.min() >= 1e-3 - 1e-6 and outputs.max() <= 10.0 + 1e-5
        targets = rng.uniform(0.5, 5.0, target_shape).astype("float32")
    else:
        assert outputs.shape == (2, 28, 28, 3)
        np.testing.assert_allclose(np.linalg.norm(outputs, axis=-1), 1.0,
                                   atol=1e-4)
        targets = rng.normal(size=target_shape).astype("float32")
    encoder_before = _weights_of(frozen_backbone.vision_encoder)
    decoder_before = _weights_of(model.decoder)
    history = model.fit(images, targets, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for before, after in zip(encoder_before,
                             _weights_of(frozen_backbone.vision_encoder)):
        np.testing.assert_array_equal(before, after)
    changed = [not np.array_equal(b, a) for b, a in
               zip(decoder_before, _weights_of(model.decoder))]
    assert any(changed)


def test_linear_probe_fits_and_reads_out_depth(frozen_backbone):
    rng = np.random.default_rng(11)
    images = rng.uniform(size=(4, 28, 28, 3)).astype("float32")
    probe = TIPSLinearProbe(frozen_backbone, task="segmentation",
                            num_classes=3, image_size=(28, 28))
    labels = rng.integers(0, 3, (4, 28, 28))
    before = _weights_of(probe.classifier)
    history = probe.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.array_equal(before[0], _weights_of(probe.classifier)[0])
    assert _np(probe(images)).shape == (4, 28, 28, 3)

    depth_probe = TIPSLinearProbe(
        frozen_backbone, task="depth", image_size=(28, 28),
        use_batch_norm=False, num_depth_bins=4, min_depth=1.0, max_depth=4.0,
    )
    patches = _np(frozen_backbone.vision_encoder(images)["patch_embeddings"])
    kernel, bias = (_np(v) for v in depth_probe.classifier.weights)
    expected_low = _np(depth_from_bins(patches @ kernel + bias, 1.0, 4.0))
    depth = _np(depth_probe(images))
    assert depth.shape == (4, 28, 28, 1)
    # Bilinear upsampling keeps the patch-level values within their range.
    assert depth.min() >= expected_low.min() - 1e-5
    assert depth.max() <= expected_low.max() + 1e-5
    with pytest.raises(ValueError, match="num_classes"):
        TIPSLinearProbe(frozen_backbone, task="segmentation", image_size=28)
    with pytest.raises(ValueError, match="task"):
        TIPSLinearProbe(frozen_backbone, task="normals", image_size=28)
    with pytest.raises(ValueError, match="multiples of 14"):
        TIPSDensePredictor(frozen_backbone, task="depth", image_size=(30, 28))


# ---------------------------------------------------------------------------
# PCA visualisation
# ---------------------------------------------------------------------------


def _eigen_reference(vectors, count=3):
    centered = vectors - vectors.mean(axis=0)
    covariance = centered.T @ centered / (len(vectors) - 1)
    values, vecs = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][:count]
    components = vecs[:, order].T
    largest = np.argmax(np.abs(components), axis=1)
    components *= np.sign(components[np.arange(count), largest])[:, None]
    return components, values[order]


def test_patch_pca_matches_covariance_eigenvectors():
    rng = np.random.default_rng(12)
    scales = np.array([5.0, 3.0, 2.0] + [0.5] * 13)
    vectors = rng.normal(size=(400, 16)) * scales
    pca = PatchPCA(whiten=True).fit(vectors)
    components, variances = _eigen_reference(vectors)
    np.testing.assert_allclose(pca.components, components, atol=1e-8)
    np.testing.assert_allclose(pca.explained_variance, variances, rtol=1e-8)
    projected = pca.transform(vectors)
    np.testing.assert_allclose(projected.std(axis=0, ddof=1), 1.0, atol=1e-8)
    rgb = pca.to_rgb(vectors)
    expected = 1.0 / (1.0 + np.exp(
        -2.0 * ((vectors - vectors.mean(0)) @ components.T) / np.sqrt(variances)
    ))
    np.testing.assert_allclose(rgb, expected, atol=1e-6)


def test_pca_rgb_is_consistent_across_a_batch(backbone):
    images = np.random.default_rng(13).uniform(size=(3, 56, 42, 3))
    patches = _np(backbone.vision_encoder(images.astype("float32"))[
        "patch_embeddings"])
    rgb = pca_rgb(patches)
    assert rgb.shape == (3, 4, 3, 3) and rgb.dtype == np.float32
    assert rgb.min() > 0.0 and rgb.max() < 1.0
    joint = PatchPCA().fit(patches.reshape(-1, 64))
    np.testing.assert_allclose(rgb[1], joint.to_rgb(patches[1]), atol=1e-6)
    # Fitting on one image alone colours it differently in general.
    alone = pca_rgb(patches[1])
    assert not np.allclose(alone, rgb[1], atol=1e-3)
    pictures = pca_images(patches, image_size=(56, 42))
    assert pictures.shape == (3, 56, 42, 3) and pictures.dtype == np.uint8
    np.testing.assert_array_equal(
        pictures[0, :14, :14],
        np.broadcast_to(np.round(rgb[0, 0, 0] * 255).astype("uint8"),
                        (14, 14, 3)),
    )
    with pytest.raises(ValueError, match="NaN"):
        pca_rgb(np.full((2, 2, 4), np.nan))
    with pytest.raises(ValueError, match=r"\(h, w, D\)"):
        pca_rgb(np.zeros((2, 4)))
