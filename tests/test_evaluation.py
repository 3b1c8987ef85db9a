"""Tests of `training.scenes.evaluation` on planted features and hand-counted cases.

The evaluation decides whether training "learned" anything, so each metric
is checked where its answer is known: perfect features score 1.0 (or the
grid ceiling), random features score near the trivial answers, and mIoU is
checked against a confusion matrix counted by hand.
"""

import json

import numpy as np
import pytest

from training.scenes import evaluation
from training.scenes.generator import BACKGROUND_COLORS
from training.scenes.generator import COLORS
from training.scenes.generator import SHAPES

pytestmark = pytest.mark.backend_independent

NUM_CLASSES = len(SHAPES) + 1
NUM_COLOR_CLASSES = len(COLORS) + 1


def _features(segmentation, patch_embeddings, value_patches=None, cls=None,
              captions=None, color_segmentation=None):
    n = len(segmentation)
    dim = patch_embeddings.shape[-1]
    rng = np.random.default_rng(0)
    return evaluation.SceneFeatures(
        cls_embeddings=rng.normal(size=(n, 2, dim)) if cls is None else cls,
        patch_embeddings=patch_embeddings,
        value_patches=patch_embeddings if value_patches is None else value_patches,
        caption_embeddings=(
            rng.normal(size=(n, dim)) if captions is None else captions),
        has_caption=np.ones(n, "float32"),
        segmentation=segmentation,
        color_segmentation=(
            np.zeros_like(segmentation) if color_segmentation is None
            else color_segmentation),
    )


def _block_scenes(n, grid=4, cell=14, seed=0, num_classes=NUM_CLASSES):
    """Scenes whose classes are constant on each patch cell."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=(n, grid, grid))
    # Every class appears somewhere.
    labels.reshape(-1)[:num_classes] = np.arange(num_classes)
    segmentation = np.repeat(np.repeat(labels, cell, axis=1), cell, axis=2)
    return labels, segmentation.astype("uint8")


def test_mean_iou_matches_a_hand_counted_confusion_matrix():
    targets = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predictions = np.array([0, 1, 0, 1, 2, 2, 2, 0])
    # Class 0: TP 2, FP 1 (last), FN 1 -> 2/4. Class 1: TP 1, FP 1, FN 1
    # -> 1/3. Class 2: TP 2, FP 1, FN 1 -> 2/4.
    expected = np.mean([2 / 4, 1 / 3, 2 / 4])
    assert evaluation.mean_iou(predictions, targets, 4) == pytest.approx(expected)
    # Class 3 never occurs in targets or predictions: left out, not zero.
    assert evaluation.mean_iou(targets, targets, 4) == 1.0
    iou = evaluation.class_iou(predictions, targets, 4)
    np.testing.assert_allclose(iou[:3], [2 / 4, 1 / 3, 2 / 4])
    assert np.isnan(iou[3])


def test_upsampled_logits_equal_the_separable_bilinear_sum():
    # Each output pixel is sum_hw rows[H, h] logits[h, w] cols[W, w]: the
    # two matrix products give the reference sum, for non-square grids too.
    from keras import ops

    from keras_tips.layers.position_embedding import antialiased_bilinear_weights

    logits = np.random.default_rng(0).normal(size=(3, 4, 5, 6)).astype("float32")
    rows = ops.convert_to_numpy(antialiased_bilinear_weights(28, 4))
    cols = ops.convert_to_numpy(antialiased_bilinear_weights(35, 5))
    reference = np.einsum("Hh,nhwc,Ww->nHWc", rows, logits, cols)
    upsampled = evaluation._upsample_logits(logits, (28, 35))
    assert upsampled.shape == (3, 28, 35, 6)
    np.testing.assert_allclose(upsampled, reference, rtol=1e-5, atol=1e-6)
    # A constant map stays constant (each weight row sums to 1).
    flat = evaluation._upsample_logits(np.full((1, 4, 5, 2), 3.0), (28, 35))
    np.testing.assert_allclose(flat, 3.0, rtol=1e-6)


def test_newton_solver_falls_back_to_lu_when_cholesky_fails():
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(6, 6))
    definite = basis @ basis.T + 0.1 * np.eye(6)
    indefinite = definite - 3.0 * np.linalg.eigvalsh(definite).max() * np.outer(
        basis[0], basis[0]) / (basis[0] @ basis[0])
    vector = rng.normal(size=6)
    for matrix in (definite, indefinite):
        np.testing.assert_allclose(
            evaluation._solve_positive_definite(matrix, vector),
            np.linalg.solve(matrix, vector), rtol=1e-8, atol=1e-10)
    assert np.linalg.eigvalsh(indefinite).min() < 0


def test_patch_labels_take_the_majority_of_each_cell():
    segmentation = np.zeros((1, 4, 4), "uint8")
    segmentation[0, :2, :2] = [[1, 1], [1, 0]]  # cell (0, 0): 3 of 4 are 1
    segmentation[0, 2:, 2:] = [[2, 3], [3, 2]]  # tie 2 / 3: smaller id
    labels = evaluation.patch_labels(segmentation, (2, 2), 4)
    np.testing.assert_array_equal(labels[0], [[1, 0], [0, 2]])


def test_perfect_features_score_one_and_random_features_do_not():
    labels, segmentation = _block_scenes(40)
    onehot = np.eye(NUM_CLASSES, dtype="float32")[labels]
    perfect = _features(segmentation, onehot)
    # Cell-aligned masks: only the bilinear upsampling of patch logits
    # costs pixels (at corners where two neighbours share a class), so
    # the ceiling is high but below 1, and perfect features reach it.
    ceiling = evaluation.patch_grid_ceiling_miou(segmentation, (4, 4), NUM_CLASSES)
    assert 0.9 < ceiling < 1.0
    half_ceiling = evaluation.patch_grid_ceiling_miou(
        segmentation[20:], (4, 4), NUM_CLASSES)
    # (The regularised probe's soft logits move a few corner pixels, either
    # way.)
    probe = evaluation.linear_probe_miou(onehot, segmentation, NUM_CLASSES)
    assert abs(probe - half_ceiling) < 0.02
    # Class 0 (the background) is one name here; the object classes 1..6.
    embeddings = np.eye(NUM_CLASSES, dtype="float32")
    assert evaluation.zero_shot_segmentation_miou(
        onehot, segmentation, embeddings[1:], embeddings[:1]
    ) == pytest.approx(ceiling)

    noise = np.random.default_rng(1).normal(size=onehot.shape).astype("float32")
    assert evaluation.linear_probe_miou(noise, segmentation, NUM_CLASSES) < 0.3
    assert evaluation.zero_shot_segmentation_miou(
        noise, segmentation, embeddings[1:], embeddings[:1]) < 0.3


def test_zero_shot_error_breakdown_by_hand():
    # One patch per scene (its logits cover the whole 4 x 4 mask), classes
    # 0 (background), 1 and 2.
    segmentation = np.zeros((3, 4, 4), "uint8")
    segmentation[1, :2] = 1  # scene 1: 8 pixels of class 1, 8 background
    segmentation[2] = 2  # scene 2: all class 2
    logits = np.array([
        [0.9, 0.1, 0.2],  # background everywhere: right
        [0.5, 0.2, 0.9],  # class 2 everywhere: background wrong, object
                          # found but misnamed
        [0.9, 0.1, 0.5],  # background: object missed, its best object
                          # class (2) right
    ], "float32").reshape(3, 1, 1, 3)
    breakdown = evaluation.zero_shot_error_breakdown(logits, segmentation)
    assert breakdown["background_recall"] == pytest.approx(16 / 24)
    assert breakdown["object_recall"] == pytest.approx(8 / 24)
    assert breakdown["object_class_accuracy"] == pytest.approx(16 / 24)
    # Given the object mask: background IoU 1, class 1 IoU 0 (called 2),
    # class 2 IoU 16 / 24.
    assert breakdown["miou_given_object_mask"] == pytest.approx(
        (1 + 0 + 16 / 24) / 3)
    # The prediction itself: background predicted on scenes 0 and 2 (32
    # pixels, 16 of them background) out of 24 background pixels -> 16 /
    # 40; class 1 never predicted -> 0; class 2 predicted on scene 1 (16
    # pixels, none class 2) and is all of scene 2 -> 0 / 32.
    named = evaluation.zero_shot_error_breakdown(
        logits, segmentation, class_names=("background", "one", "two"))
    assert named["iou_background"] == pytest.approx(16 / 40)
    assert named["iou_one"] == 0.0
    assert named["iou_two"] == 0.0
    assert named["miou"] == pytest.approx(np.mean([16 / 40, 0.0, 0.0]))
    assert "iou_one" not in breakdown
    with pytest.raises(ValueError, match="2 names for 3 classes"):
        evaluation.zero_shot_error_breakdown(
            logits, segmentation, class_names=("background", "one"))

    # Perfect features: every part near 1 (only the bilinear upsampling
    # costs a few corner pixels); noise: far from it.
    labels, blocks = _block_scenes(8)
    onehot = np.eye(NUM_CLASSES, dtype="float32")[labels]
    perfect = evaluation.zero_shot_error_breakdown(onehot, blocks)
    assert min(perfect.values()) > 0.9, perfect
    noise = np.random.default_rng(1).normal(size=onehot.shape).astype("float32")
    noisy = evaluation.zero_shot_error_breakdown(noise, blocks)
    assert noisy["object_class_accuracy"] < 0.4
    assert noisy["miou_given_object_mask"] < 0.6


def test_zero_shot_background_is_the_best_of_its_names():
    # One name per background colour of the scenes.
    assert len(evaluation.BACKGROUND_NAMES) == len(BACKGROUND_COLORS)
    assert evaluation.BACKGROUND_NAMES[:4] == (
        "a gray background", "a beige background", "a slate background",
        "an olive background")
    rng = np.random.default_rng(7)
    basis, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    objects, names = basis[:3], basis[3:6]  # classes 1..3; 3 background names
    patches = np.stack([
        names[1],  # the second background name
        5.0 * names[2],  # any norm: patches are normalised
        names[1] + 0.8 * objects[0],  # nearer a name than any object
        objects[0] + 0.8 * names[1],  # nearer object 1 than any name
        objects[1],
        objects[2] + 0.3 * names[0],
    ]).reshape(1, 2, 3, 16)
    expected = np.array([[[0, 0, 0], [1, 2, 3]]])
    logits = evaluation.zero_shot_patch_logits(patches, objects, names)
    assert logits.shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(logits.argmax(-1), expected)
    unit = patches / np.linalg.norm(patches, axis=-1, keepdims=True)
    np.testing.assert_allclose(
        logits[..., 0], (unit @ names.T).max(-1), atol=1e-6)
    np.testing.assert_allclose(logits[..., 1:], unit @ objects.T, atol=1e-6)
    # One averaged background embedding would lose patch 2 to object 1.
    mean_name = names.mean(0) / np.linalg.norm(names.mean(0))
    averaged = evaluation.zero_shot_patch_logits(
        patches, objects, mean_name[None])
    assert averaged.argmax(-1)[0, 0, 2] == 1

    # The mIoU scores these logits, upsampled, against the masks; with one
    # averaged name it would be lower.
    segmentation = np.repeat(np.repeat(expected, 14, axis=1), 14, axis=2)
    miou = evaluation.zero_shot_segmentation_miou(
        patches, segmentation, objects, names)
    assert miou == pytest.approx(
        evaluation.patch_logits_miou(logits, segmentation, 4))
    assert miou > evaluation.patch_logits_miou(averaged, segmentation, 4)
    with pytest.raises(ValueError, match="background_embeddings"):
        evaluation.zero_shot_patch_logits(patches, objects, names[:0])


def test_trivial_baselines_on_known_masks():
    labels, segmentation = _block_scenes(20)
    _, color_segmentation = _block_scenes(
        20, seed=1, num_classes=NUM_COLOR_CLASSES)
    features = _features(segmentation, np.zeros(labels.shape + (4,), "float32"),
                         color_segmentation=color_segmentation)
    baselines = evaluation.trivial_baselines(features)
    background = baselines["all_background"]
    ceiling = baselines["patch_grid_ceiling"]
    for suffix, masks, num_classes in (
        ("", segmentation, NUM_CLASSES),
        ("_color", color_segmentation, NUM_COLOR_CLASSES),
    ):
        # All background: IoU of class 0 is its pixel share, others 0 (every
        # class occurs in the masks).
        for key, scored in ((f"zero_shot_seg_miou{suffix}", masks),
                            (f"linear_probe_seg_miou{suffix}", masks[10:])):
            assert background[key] == pytest.approx(
                (scored == 0).mean() / num_classes), key
            assert ceiling[key] == pytest.approx(
                evaluation.patch_grid_ceiling_miou(scored, (4, 4), num_classes))
            assert ceiling[key] > 0.9
    assert background["zero_shot_seg_miou_color"] != pytest.approx(
        background["zero_shot_seg_miou"])
    assert background["retrieval_i2t@1_best"] == pytest.approx(1 / 20)


def test_retrieval_and_classification_on_planted_embeddings():
    labels, segmentation = _block_scenes(12)
    rng = np.random.default_rng(2)
    captions = rng.normal(size=(12, 16)).astype("float32")
    cls = np.stack([captions, captions], axis=1)  # each image == its caption
    features = _features(segmentation, np.zeros((12, 4, 4, 16), "float32"),
                         cls=cls, captions=captions)
    recall = evaluation.retrieval_recall(features)
    assert recall["first"]["i2t@1"] == 1.0 and recall["second"]["t2i@1"] == 1.0

    dominant = evaluation.dominant_shape_labels(segmentation)
    class_embeddings = rng.normal(size=(len(SHAPES), 16)).astype("float32")
    class_embeddings /= np.linalg.norm(class_embeddings, axis=1, keepdims=True)
    planted = np.stack([class_embeddings[dominant]] * 2, axis=1)
    features.cls_embeddings = planted
    accuracy = evaluation.zero_shot_accuracy(features, class_embeddings)
    assert accuracy == {"first": 1.0, "second": 1.0, "both": 1.0}


def test_probe_is_converged_and_independent_of_feature_noise_at_1e_6():
    """The same features up to float32 noise (as across backends) give the
    same probe mIoU: the probe is fitted to its unique optimum."""
    labels, segmentation = _block_scenes(30, seed=3)
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(NUM_CLASSES, 24))
    features = centres[labels] + 1.5 * rng.normal(size=labels.shape + (24,))
    scores = []
    for scale in (0.0, 1e-6):
        noisy = features + scale * rng.normal(size=features.shape)
        scores.append(evaluation.linear_probe_miou(
            noisy.astype("float32"), segmentation, NUM_CLASSES))
    assert 0.2 < scores[0] < 1.0
    assert abs(scores[0] - scores[1]) < 1e-3


def test_probe_regularisation_is_chosen_on_training_scenes_only():
    labels, segmentation = _block_scenes(30, seed=5)
    rng = np.random.default_rng(6)
    features = (np.eye(NUM_CLASSES)[labels] * 2.0
                + rng.normal(size=labels.shape + (NUM_CLASSES,)))
    chosen, scores = evaluation.choose_probe_l2(
        features[:15], labels[:15], NUM_CLASSES)
    assert chosen in evaluation.PROBE_L2_CANDIDATES
    assert set(scores) == set(evaluation.PROBE_L2_CANDIDATES)
    assert scores[chosen] == max(scores.values())


def test_zero_shot_class_iou_table_lists_each_class_per_model():
    from tools.evaluate import zero_shot_class_iou_table

    trained = {"zero_shot_iou_background_color": 0.75,
               "zero_shot_iou_red_color": 0.5,
               "zero_shot_iou_blue_color": float("nan")}
    table = zero_shot_class_iou_table(
        [("trained", trained), ("all background", {"zero_shot_seg_miou": 0.1})],
        "_color", ("red", "blue"))
    lines = table.splitlines()
    assert lines[0] == "| model | background | red | blue |"
    assert lines[2] == "| trained | 0.750 | 0.500 | nan |"
    assert len(lines) == 3  # the model without per-class keys is left out
    assert zero_shot_class_iou_table([("x", {})], "", ("circle",)) == ""


def test_metrics_with_absent_classes_are_written_as_strict_json():
    # Class 2 occurs in neither targets nor predictions: its IoU is NaN.
    iou = evaluation.class_iou(np.array([[0, 1]]), np.array([[0, 1]]), 3)
    assert np.isnan(iou[2])
    metrics = {
        "class_iou": [float(v) for v in iou],
        "nested": {"a": np.float32("nan"), "b": (1, np.float64(0.25))},
        "inf": float("inf"),
        "name": "trained",
        "count": np.int64(7),
    }
    ready = evaluation.strict_json_metrics(metrics)
    text = json.dumps(ready, allow_nan=False)
    assert json.loads(text) == {
        "class_iou": [1.0, 1.0, None],
        "nested": {"a": None, "b": [1, 0.25]},
        "inf": None,
        "name": "trained",
        "count": 7,
    }
    with pytest.raises(ValueError):
        json.dumps(metrics["class_iou"], allow_nan=False)
