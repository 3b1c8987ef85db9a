"""Evaluation of a TIPS model on held-out synthetic scenes.

Four measurements, each from frozen features of one model:
- zero-shot classification of each scene's dominant shape from the first,
  the second or both CLS embeddings, with an ensemble of prompt templates;
- image-text retrieval recall@1/5 against the scenes' synthetic captions;
- zero-shot semantic segmentation mIoU from value-attention patch
  embeddings against one text embedding per object class and, for the
  background, the best of the background colours' names
  (`BACKGROUND_NAMES`), with its errors split into finding the objects
  and naming them, and its IoU class by class (`zero_shot_error_breakdown`);
- linear-probe segmentation mIoU: a softmax classifier on frozen patch
  embeddings, fitted to convergence on one half of the scenes (its L2
  penalty chosen by cross-validation on that half only) and scored on the
  other.

Both segmentation metrics are measured twice: with the objects' shapes as
the classes (`segmentation`, `class_names()`; the keys without a suffix)
and with their colours (`color_segmentation`, `color_class_names()`; the
keys ending in `_color`). A patch inside a large object shows its colour
but rarely its shape, so the colour classes are the ones a per-patch
labelling can follow.

Beside a model's numbers, `trivial_baselines` gives what needs no model
(all-background segmentation, majority class, chance recall, and the
ceiling of a perfect per-patch labelling at the patch grid), and
`random_weights_like` the same architecture at initialisation.

The scenes are shards written by `training.scenes.shards` (with their
segmentation masks), read with `training.pipelines.make_eval_dataset`.
"""

import dataclasses
import functools
import json

import numpy as np
import scipy.linalg
from keras import ops

from keras_tips.layers.position_embedding import antialiased_bilinear_weights
from keras_tips.tasks.retrieval import recall_at_k
from keras_tips.tasks.zero_shot import ClassEmbeddingSimilarity
from keras_tips.tasks.zero_shot import class_text_embeddings
from keras_tips.normalization import l2_normalize_numpy
from training.pipelines import make_eval_dataset
from training.scenes.generator import BACKGROUND_COLORS
from training.scenes.generator import COLORS
from training.scenes.generator import SHAPES

SHAPE_PROMPTS = (
    "a {}.",
    "a photo of a {}.",
    "an image with a {}.",
    "a {} on a background.",
    "a picture showing a {}.",
)
COLOR_PROMPTS = (
    "a {} object.",
    "a {} shape.",
    "something {}.",
    "a {} thing on a background.",
)
# The background class is named by the background colours, one name each,
# and scored as the best of them (as SCLIP and ClearCLIP name VOC's
# background by a list of stuff classes). Names carry their article
# ("an olive background"), phrased as the captions phrase them.
BACKGROUND_NAMES = tuple(
    f"{'an' if name[0] in 'aeiou' else 'a'} {name} background"
    for name in BACKGROUND_COLORS
)
BACKGROUND_PROMPTS = ("{}.", "on {}.")
# The two segmentation class sets: metric-key suffix -> (the
# `SceneFeatures` field holding their masks, the object class names in
# mask order (mask value `k` is name `k - 1`), their prompt templates).
CLASS_SETS = {
    "": ("segmentation", SHAPES, SHAPE_PROMPTS),
    "_color": ("color_segmentation", tuple(COLORS), COLOR_PROMPTS),
}


@dataclasses.dataclass
class SceneFeatures:
    """Frozen features and labels of a set of evaluation scenes."""

    cls_embeddings: np.ndarray  # (N, 2, D)
    patch_embeddings: np.ndarray  # (N, h, w, D)
    value_patches: np.ndarray  # (N, h, w, D)
    caption_embeddings: np.ndarray  # (N, D), first synthetic caption
    has_caption: np.ndarray  # (N,)
    segmentation: np.ndarray  # (N, H, W) shape class ids, 0 = background
    color_segmentation: np.ndarray  # (N, H, W) colour class ids, 0 = background


def load_eval_batches(tokenizer, file_pattern, image_size, batch_size=32,
                      max_scenes=None):
    """Reads the evaluation shards once into a list of NumPy batches.

    Each batch holds `images`, the first synthetic caption's
    `synthetic_token_ids` / `synthetic_padding_mask` /
    `has_synthetic_caption` and the `segmentation` (shape classes) and
    `color_segmentation` (colour classes) masks. Several models
    are evaluated on the same batches (reading the shards again would
    re-create the tokenizer's in-graph resources).
    """
    sequence_length = int(getattr(tokenizer, "sequence_length", 64) or 64)
    dataset = make_eval_dataset(
        file_pattern, tokenizer, image_size, batch_size,
        sequence_length=sequence_length,
    )
    keys = ("images", "synthetic_token_ids", "synthetic_padding_mask",
            "has_synthetic_caption", "segmentation", "color_segmentation")
    batches, seen, unmasked = [], 0, {}
    for batch in dataset.as_numpy_iterator():
        batches.append({key: batch[key] for key in keys})
        seen += len(batch["images"])
        for key, _, _ in CLASS_SETS.values():
            missing = int((batch[f"has_{key}"] == 0).sum())
            unmasked[key] = unmasked.get(key, 0) + missing
        if max_scenes and seen >= max_scenes:
            break
    if not seen:
        raise ValueError(f"No evaluation scenes were read from {file_pattern!r}.")
    for key, missing in unmasked.items():
        if missing:
            raise ValueError(
                f"{missing} of the {seen} evaluation scenes read from "
                f"{file_pattern!r} have no `{key}` mask, which the scene "
                "metrics need. Shards written before colour masks existed "
                "lack `color_segmentation`; write them again with "
                "`python -m tools.make_scenes`."
            )
    return batches


def extract_features(backbone, batches, max_scenes=None):
    """Runs the model once over `batches` (from `load_eval_batches`)."""
    parts = {field.name: [] for field in dataclasses.fields(SceneFeatures)}
    vision = backbone.vision_encoder
    # Compiled inference (one trace per batch shape) rather than eager
    # calls, which on jax compile every op of the encoders separately.
    for batch in batches:
        images = batch["images"]
        outputs = vision.predict_on_batch(images)
        parts["cls_embeddings"].append(np.asarray(outputs["cls_embeddings"]))
        parts["patch_embeddings"].append(np.asarray(outputs["patch_embeddings"]))
        parts["value_patches"].append(
            ops.convert_to_numpy(vision.value_attention_patches(images)))
        text = backbone.text_encoder.predict_on_batch({
            "token_ids": batch["synthetic_token_ids"],
            "padding_mask": batch["synthetic_padding_mask"],
        })
        parts["caption_embeddings"].append(np.asarray(text))
        parts["has_caption"].append(batch["has_synthetic_caption"])
        parts["segmentation"].append(batch["segmentation"])
        parts["color_segmentation"].append(batch["color_segmentation"])
    features = {k: np.concatenate(v)[:max_scenes] for k, v in parts.items()}
    return SceneFeatures(**features)


def dominant_shape_labels(segmentation):
    """Index into `SHAPES` of the shape covering most pixels of each scene."""
    counts = np.stack(
        [(segmentation == k + 1).sum(axis=(1, 2)) for k in range(len(SHAPES))],
        axis=1,
    )
    return counts.argmax(axis=1)


def zero_shot_accuracy(features, class_embeddings):
    """Top-1 accuracy with the first, second and both CLS embeddings."""
    labels = dominant_shape_labels(features.segmentation)
    cls = l2_normalize_numpy(features.cls_embeddings)
    scores = {
        "first": cls[:, 0] @ class_embeddings.T,
        "second": cls[:, 1] @ class_embeddings.T,
    }
    scores["both"] = scores["first"] + scores["second"]
    return {
        name: float((score.argmax(axis=1) == labels).mean())
        for name, score in scores.items()
    }


def retrieval_recall(features):
    """Recall@1/5 both ways between images and their synthetic captions."""
    keep = features.has_caption > 0
    texts = l2_normalize_numpy(features.caption_embeddings[keep])
    results = {}
    for index, name in ((0, "first"), (1, "second")):
        images = l2_normalize_numpy(features.cls_embeddings[keep, index])
        similarity = images @ texts.T
        positives = np.arange(len(texts))
        image_to_text = recall_at_k(similarity, positives, ks=(1, 5))
        text_to_image = recall_at_k(similarity.T, positives, ks=(1, 5))
        results[name] = {
            "i2t@1": image_to_text[1], "i2t@5": image_to_text[5],
            "t2i@1": text_to_image[1], "t2i@5": text_to_image[5],
        }
    return results


@functools.lru_cache(maxsize=None)
def _resampling_matrix(output_size, input_size):
    """`antialiased_bilinear_weights` as a read-only NumPy array, computed
    once per size pair (every batch of every metric reuses it)."""
    matrix = ops.convert_to_numpy(
        antialiased_bilinear_weights(output_size, input_size))
    matrix.setflags(write=False)
    return matrix


def _upsample_logits(logits, size):
    """Bilinear resize of `(N, h, w, C)` logits to `size`, in NumPy.

    Uses the same resampling matrices on every backend (half-pixel centres,
    edge clamping), so metrics do not depend on the Keras backend.
    """
    n, h, w, c = logits.shape
    rows = _resampling_matrix(int(size[0]), h)
    cols = _resampling_matrix(int(size[1]), w)
    # Two matrix products (BLAS) instead of one four-operand einsum, which
    # NumPy evaluates in nested loops: the same sums, ~100x faster.
    tall = np.matmul(rows, logits.astype("float32").reshape(n, h, w * c))
    return np.matmul(cols, tall.reshape(n, size[0], w, c))


def class_iou(predictions, targets, num_classes):
    """Per-class IoU, `(num_classes,)` float64; NaN for a class that occurs
    in neither the targets nor the predictions."""
    confusion = np.bincount(
        targets.reshape(-1).astype("int64") * num_classes
        + predictions.reshape(-1).astype("int64"),
        minlength=num_classes * num_classes,
    ).reshape(num_classes, num_classes)
    intersection = np.diag(confusion).astype("float64")
    union = confusion.sum(0) + confusion.sum(1) - intersection
    iou = np.full(num_classes, np.nan)
    present = union > 0
    iou[present] = intersection[present] / union[present]
    return iou


def mean_iou(predictions, targets, num_classes):
    """mIoU over classes that occur in the targets or the predictions."""
    return float(np.nanmean(class_iou(predictions, targets, num_classes)))


def patch_logits_miou(patch_logits, segmentation, num_classes, batch=64):
    """mIoU of `(N, h, w, C)` patch logits against `(N, H, W)` masks.

    The logits are upsampled bilinearly to the masks' resolution (in
    batches of `batch` scenes) and arg-maxed per pixel: how every
    segmentation metric here turns patch scores into a prediction.
    """
    size = segmentation.shape[1:3]
    predictions = []
    for start in range(0, len(patch_logits), batch):
        chunk = _upsample_logits(patch_logits[start:start + batch], size)
        predictions.append(chunk.argmax(axis=-1))
    return mean_iou(np.concatenate(predictions), segmentation, num_classes)


def zero_shot_patch_logits(value_patches, class_embeddings,
                           background_embeddings):
    """Zero-shot patch logits: class 0 the background, then the objects.

    A patch's logit for object class `k` (1-based) is its cosine with
    `class_embeddings[k - 1]`; its background logit is its largest cosine
    with any of `background_embeddings`, one per name of the background.

    Args:
        value_patches: `(N, h, w, D)` patch embeddings (normalised here).
        class_embeddings: `(C - 1, D)` unit text embeddings of the object
            classes, in mask order (mask value `k` is row `k - 1`).
        background_embeddings: `(B, D)` unit text embeddings of the
            background's names (`BACKGROUND_NAMES`), `B >= 1`.

    Returns:
        `(N, h, w, C)` cosine logits.
    """
    if len(background_embeddings) < 1:
        raise ValueError("`background_embeddings` needs at least one name.")
    # The segmenter's own scoring: the background is a class named by
    # several synonyms (`TIPSZeroShotSegmenter(class_names=[[...], ...])`).
    similarity = ClassEmbeddingSimilarity(
        1 + len(class_embeddings),
        value_patches.shape[-1],
        names_per_class=[len(background_embeddings)]
        + [1] * len(class_embeddings),
    )
    similarity.set_class_embeddings(
        np.concatenate([background_embeddings, class_embeddings]))
    return ops.convert_to_numpy(similarity(value_patches.astype("float32")))


def zero_shot_segmentation_miou(value_patches, segmentation, class_embeddings,
                                background_embeddings):
    """mIoU of zero-shot segmentation from text embeddings, upsampled.

    The protocol: every patch's value-attention embedding is scored
    against the text embeddings by cosine (`zero_shot_patch_logits`):
    each object class by its own embedding, the background by the best of
    its names' embeddings (the scenes' backgrounds come in several colours,
    and each is named by its own). The patch logits are upsampled
    bilinearly to the masks' resolution and arg-maxed per pixel
    (`patch_logits_miou`).

    Args:
        value_patches: `(N, h, w, D)` value-attention patch embeddings.
        segmentation: `(N, H, W)` masks, 0 = background, `k` = object
            class `k`.
        class_embeddings: `(C - 1, D)` unit text embeddings of the object
            classes (mask values `1 .. C - 1`).
        background_embeddings: `(B, D)` unit text embeddings of the
            background's names.

    Returns:
        float, mIoU over the `C` classes.
    """
    logits = zero_shot_patch_logits(
        value_patches, class_embeddings, background_embeddings)
    return patch_logits_miou(logits, segmentation, logits.shape[-1])


def zero_shot_error_breakdown(patch_logits, segmentation, batch=64,
                              class_names=None):
    """Where zero-shot segmentation goes wrong: the object or its class.

    Splits the errors of the prediction that `zero_shot_segmentation_miou`
    scores (the same patch logits, class 0 the background, upsampled and
    arg-maxed per pixel) into finding the objects and naming them.

    Args:
        patch_logits: `(N, h, w, C)` logits (`zero_shot_patch_logits`).
        segmentation: `(N, H, W)` masks, 0 = background.
        batch: scenes upsampled at a time.
        class_names: optional names of the `C` classes, the background
            first; with them the dict also has each class's IoU.

    Returns:
        dict of floats:
        `miou`: the mIoU of the prediction (`patch_logits_miou`, computed
            from the same upsampling);
        `background_recall`: share of background pixels predicted
            background;
        `object_recall`: share of object pixels predicted as any object
            class;
        `object_class_accuracy`: share of object pixels whose best object
            class (the background's logit left out) is their own;
        `miou_given_object_mask`: the mIoU when the masks say which pixels
            are objects and the logits only name their class: what
            finding every object would give with the same naming.
        `iou_<name>` for each of `class_names`: that class's IoU in the
            prediction (NaN if the class is neither in the masks nor
            predicted); `miou` is their mean. Which classes a model names
            is what the mean hides.
    """
    size = segmentation.shape[1:3]
    num_classes = patch_logits.shape[-1]
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"`class_names` has {len(class_names)} names for "
            f"{num_classes} classes of logits.")
    counts = np.zeros(4, "int64")  # bg right, bg, object found, class right
    predictions, given_mask = [], []
    for start in range(0, len(patch_logits), batch):
        logits = _upsample_logits(patch_logits[start:start + batch], size)
        masks = segmentation[start:start + batch]
        predicted = logits.argmax(axis=-1)
        object_class = logits[..., 1:].argmax(axis=-1) + 1
        background = masks == 0
        counts += (
            int((background & (predicted == 0)).sum()),
            int(background.sum()),
            int((~background & (predicted > 0)).sum()),
            int((~background & (object_class == masks)).sum()),
        )
        predictions.append(predicted)
        given_mask.append(np.where(background, 0, object_class))
    objects = segmentation.size - counts[1]
    ious = class_iou(np.concatenate(predictions), segmentation, num_classes)
    per_class = {} if class_names is None else {
        f"iou_{name}": float(iou) for name, iou in zip(class_names, ious)}
    return {
        "miou": float(np.nanmean(ious)),
        "background_recall": float(counts[0] / max(counts[1], 1)),
        "object_recall": float(counts[2] / max(objects, 1)),
        "object_class_accuracy": float(counts[3] / max(objects, 1)),
        "miou_given_object_mask": mean_iou(
            np.concatenate(given_mask), segmentation, num_classes),
        **per_class,
    }


def patch_labels(segmentation, grid, num_classes=None):
    """Majority class of each patch cell of the segmentation masks.

    Ties go to the smaller class id. `num_classes` defaults to the largest
    id present plus one.
    """
    n, height, width = segmentation.shape
    gh, gw = grid
    cells = segmentation[:, : gh * (height // gh), : gw * (width // gw)]
    cells = cells.reshape(n, gh, height // gh, gw, width // gw)
    cells = cells.transpose(0, 1, 3, 2, 4).reshape(n, gh, gw, -1)
    if num_classes is None:
        num_classes = int(segmentation.max()) + 1
    counts = np.stack([(cells == k).sum(-1) for k in range(num_classes)], -1)
    return counts.argmax(-1)


PROBE_L2_CANDIDATES = (1e-4, 1e-3, 1e-2, 1e-1)
PROBE_FOLDS = 3


def _standardize(x):
    mean, std = x.mean(0), x.std(0)
    # Near-constant channels are not blown up into noise by standardizing.
    std = np.maximum(std, 1e-2 * std.max() + 1e-8)
    return mean, std


def _solve_positive_definite(matrix, vector):
    """`matrix^-1 vector` by Cholesky (half the work of LU), or by LU where
    rounding left the matrix a hair short of positive definite."""
    try:
        factor = scipy.linalg.cho_factor(matrix, check_finite=False)
    except np.linalg.LinAlgError:
        return np.linalg.solve(matrix, vector)
    return scipy.linalg.cho_solve(factor, vector, check_finite=False)


def _newton_softmax(z, onehot, sample_weight, penalty, weights, tolerance,
                    max_iterations):
    """Minimises the weighted, L2-penalised softmax cross-entropy.

    Newton's method with the exact Hessian (Cholesky) and backtracking:
    the problem is strictly convex, so it converges quadratically to the
    unique minimiser from any start (`weights`, `(P, C)`).
    """
    num_features, num_classes = weights.shape

    def loss_and_probs(w):
        logits = z @ w
        logits -= logits.max(1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        loss = -(sample_weight * (onehot * log_probs).sum(1)).sum()
        return loss + 0.5 * (penalty * w ** 2).sum(), np.exp(log_probs)

    loss, probs = loss_and_probs(weights)
    for _ in range(max_iterations):
        gradient = z.T @ ((probs - onehot) * sample_weight[:, None])
        gradient += penalty * weights
        if np.abs(gradient).max() < tolerance:
            return weights
        # The Hessian blocks Z^T diag(w p_a (1[a = b] - p_b)) Z in one
        # float32 product, their coefficients in float64 (an inexact Newton
        # step still converges to the float64 gradient's zero).
        pairs = [(a, b) for a in range(num_classes) for b in range(a, num_classes)]
        coefficients = np.stack([
            sample_weight * probs[:, a] * (float(a == b) - probs[:, b])
            for a, b in pairs
        ], axis=1)
        z32 = z.astype("float32")
        scaled = (z32[:, None, :] * coefficients[:, :, None].astype("float32"))
        blocks = scaled.reshape(len(z), -1).T @ z32
        blocks = blocks.reshape(len(pairs), num_features, num_features)
        hessian = np.zeros((num_classes, num_features, num_classes, num_features))
        for (a, b), block in zip(pairs, blocks.astype("float64")):
            hessian[a, :, b, :] = block
            hessian[b, :, a, :] = block.T
        hessian = hessian.reshape(num_classes * num_features, -1)
        hessian[np.diag_indices_from(hessian)] += np.tile(
            penalty[:, 0], num_classes)
        step = _solve_positive_definite(hessian, gradient.T.reshape(-1))
        step = step.reshape(num_classes, num_features).T
        decrease = (gradient * step).sum()
        size = 1.0
        while True:
            candidate = weights - size * step
            new_loss, new_probs = loss_and_probs(candidate)
            if new_loss <= loss - 1e-4 * size * decrease or size < 1e-10:
                break
            size *= 0.5
        weights, loss, probs = candidate, new_loss, new_probs
    raise RuntimeError(
        f"The linear probe did not converge in {max_iterations} Newton "
        f"steps (largest gradient entry {np.abs(gradient).max():.2e})."
    )


def fit_softmax_probe(x, y, num_classes, l2=1e-3, tolerance=1e-9,
                      max_iterations=100, initial=None, return_weights=False):
    """Class-balanced multinomial logistic regression, fitted to convergence.

    The problem is strictly convex (L2 penalty `l2` on the weights and,
    1000x weaker, on the biases, over standardized features), so it has one
    minimiser; Newton's method in float64 runs until the gradient's largest
    entry is below `tolerance` (a `RuntimeError` if `max_iterations` steps
    do not get there). The result therefore depends only on the features,
    not on the backend that computed them or on a step count.

    Args:
        x: `(M, D)` features.
        y: `(M,)` int labels in `[0, num_classes)`.
        num_classes: int.
        l2: float > 0, penalty per unit of squared weight (the data term is
            the class-balanced weighted mean cross-entropy).
        tolerance: float, convergence threshold of the gradient.
        max_iterations: int, Newton step cap.
        initial: optional `(D + 1, num_classes)` starting weights (a warm
            start; the minimiser does not depend on it).
        return_weights: also return the fitted weights (for warm starts).

    Returns:
        `features -> logits` callable (and the weights if asked).
    """
    x = np.asarray(x, "float64")
    y = np.asarray(y).astype("int64")
    mean, std = _standardize(x)
    z = np.concatenate([(x - mean) / std, np.ones((len(x), 1))], axis=1)
    onehot = np.eye(num_classes)[y]
    # Class-balanced weights so the background does not dominate.
    frequency = onehot.mean(0) + 1e-6
    sample_weight = (1.0 / frequency)[y]
    sample_weight /= sample_weight.sum()
    penalty = np.full((z.shape[1], 1), float(l2))
    penalty[-1] = 1e-3 * float(l2)
    weights = np.zeros((z.shape[1], num_classes)) if initial is None else initial
    weights = _newton_softmax(
        z, onehot, sample_weight, penalty, np.array(weights, "float64"),
        tolerance, max_iterations,
    )

    def predict(features):
        features = (np.asarray(features, "float64") - mean) / std
        return features @ weights[:-1] + weights[-1]

    return (predict, weights) if return_weights else predict


def choose_probe_l2(patches, labels, num_classes,
                    candidates=PROBE_L2_CANDIDATES, folds=PROBE_FOLDS):
    """The L2 penalty with the best cross-validated patch-grid mIoU.

    Cross-validation over `folds` contiguous groups of whole scenes of the
    probe's TRAINING scenes only; ties go to the stronger penalty.

    Args:
        patches: `(N, h, w, D)` features of the training scenes.
        labels: `(N, h, w)` patch labels (`patch_labels`).
        num_classes: int.

    Returns:
        `(l2, {l2: mean fold mIoU})`.
    """
    n, dim = len(patches), patches.shape[-1]
    bounds = np.linspace(0, n, folds + 1).astype(int)
    fold_scores = {l2: [] for l2 in candidates}
    for fold in range(folds):
        held = np.zeros(n, bool)
        held[bounds[fold]:bounds[fold + 1]] = True
        weights = None
        # Strong to weak penalty, each fit warm-started from the last.
        for l2 in sorted(candidates, reverse=True):
            probe, weights = fit_softmax_probe(
                patches[~held].reshape(-1, dim), labels[~held].reshape(-1),
                num_classes, l2=l2, initial=weights, return_weights=True,
            )
            predicted = probe(patches[held].reshape(-1, dim)).argmax(-1)
            fold_scores[l2].append(
                mean_iou(predicted, labels[held].reshape(-1), num_classes)
            )
    scores = {l2: float(np.mean(values)) for l2, values in fold_scores.items()}
    best = max(scores.values())
    chosen = max(l2 for l2, score in scores.items() if score >= best - 1e-12)
    return chosen, scores


def linear_probe_miou(patches, segmentation, num_classes, l2=None):
    """Fit on the first half of the scenes, score pixel mIoU on the second.

    The probe sees only the first half: its L2 penalty is chosen there by
    cross-validation (`choose_probe_l2`) unless `l2` is given, then it is
    refitted on the whole first half. Its patch logits on the second half
    are upsampled bilinearly to the masks' resolution.

    Args:
        patches: `(N, h, w, D)` frozen patch embeddings.
        segmentation: `(N, H, W)` class masks (shape or colour classes).
        num_classes: int, classes of the masks (background included).
        l2: optional float, the probe's L2 penalty (default: chosen by
            cross-validation on the first half).

    Returns:
        float, pixel mIoU on the second half of the scenes.
    """
    n, gh, gw, dim = patches.shape
    if n < 2 * PROBE_FOLDS:
        raise ValueError(
            f"The linear probe needs at least {2 * PROBE_FOLDS} scenes; "
            f"received {n}."
        )
    labels = patch_labels(segmentation, (gh, gw), num_classes)
    half = n // 2
    if l2 is None:
        l2, _ = choose_probe_l2(patches[:half], labels[:half], num_classes)
    probe = fit_softmax_probe(
        patches[:half].reshape(-1, dim), labels[:half].reshape(-1),
        num_classes, l2=l2,
    )
    logits = probe(patches[half:].reshape(-1, dim)).reshape(n - half, gh, gw, -1)
    return patch_logits_miou(logits, segmentation[half:], num_classes)


def all_background_miou(segmentation, num_classes):
    """mIoU of predicting class 0 (background) at every pixel."""
    return mean_iou(np.zeros_like(segmentation), segmentation, num_classes)


def patch_grid_ceiling_miou(segmentation, grid, num_classes):
    """mIoU of a perfect label per patch, upsampled like the probe's logits.

    Each patch gets its majority class; the one-hot patch labels are
    resized bilinearly to the masks' resolution and arg-maxed, exactly as
    the probe's and the zero-shot segmenter's patch logits are. It is the
    ceiling of per-patch labelling at this grid (soft logits can move a
    few boundary pixels either way, by about 0.01).
    """
    labels = patch_labels(segmentation, grid, num_classes)
    return patch_labelling_miou(labels, segmentation, num_classes)


def patch_labelling_miou(labels, segmentation, num_classes):
    """mIoU of hard `(N, h, w)` patch labels, upsampled like patch logits."""
    onehot = np.eye(num_classes, dtype="float32")[labels]
    return patch_logits_miou(onehot, segmentation, num_classes)


def evaluate_scenes(backbone, tokenizer, file_pattern, image_size,
                    batch_size=32, max_scenes=None):
    """All scene metrics for one model: `(flat dict of floats, features)`.

    To evaluate several models on scenes read once, use
    `load_eval_batches`, `extract_features` and `evaluate_features`.
    """
    batches = load_eval_batches(
        tokenizer, file_pattern, image_size, batch_size, max_scenes)
    features = extract_features(backbone, batches, max_scenes)
    return evaluate_features(backbone, tokenizer, features), features


def evaluate_features(backbone, tokenizer, features):
    """`evaluate_scenes` on features already extracted with `backbone`.

    Segmentation keys without a suffix score the shape classes
    (`features.segmentation`), keys ending in `_color` the colour classes
    (`features.color_segmentation`); shape names are embedded with
    `SHAPE_PROMPTS`, colour names with `COLOR_PROMPTS` and the background's
    names (`BACKGROUND_NAMES`) with `BACKGROUND_PROMPTS`. Zero-shot
    segmentation's per-class IoUs are `zero_shot_iou_<class><suffix>`
    (`zero_shot_iou_background_color`, `zero_shot_iou_red_color`, ...).
    """
    class_embeddings = {
        suffix: class_text_embeddings(backbone, tokenizer, list(names), prompts)
        for suffix, (_, names, prompts) in CLASS_SETS.items()
    }
    background_embeddings = class_text_embeddings(
        backbone, tokenizer, list(BACKGROUND_NAMES), BACKGROUND_PROMPTS)
    accuracy = zero_shot_accuracy(features, class_embeddings[""])
    retrieval = retrieval_recall(features)
    metrics = {
        "num_scenes": int(len(features.segmentation)),
        "zero_shot_acc_first_cls": accuracy["first"],
        "zero_shot_acc_second_cls": accuracy["second"],
        "zero_shot_acc_both_cls": accuracy["both"],
    }
    for suffix, (field, names, _) in CLASS_SETS.items():
        segmentation = getattr(features, field)
        embeddings = class_embeddings[suffix]
        # One upsampling of the logits gives the mIoU and its breakdown.
        breakdown = zero_shot_error_breakdown(
            zero_shot_patch_logits(
                features.value_patches, embeddings, background_embeddings),
            segmentation, class_names=("background",) + tuple(names))
        metrics[f"zero_shot_seg_miou{suffix}"] = breakdown.pop("miou")
        for key, value in breakdown.items():
            metrics[f"zero_shot_{key}{suffix}"] = value
        metrics[f"linear_probe_seg_miou{suffix}"] = linear_probe_miou(
            features.patch_embeddings, segmentation, len(embeddings) + 1)
    for cls_name, values in retrieval.items():
        for key, value in values.items():
            metrics[f"retrieval_{key}_{cls_name}_cls"] = value
    metrics["retrieval_i2t@1_best"] = max(
        retrieval["first"]["i2t@1"], retrieval["second"]["i2t@1"])
    return metrics


def trivial_baselines(features):
    """Scores that need no model, on the same scenes as `evaluate_features`.

    `all_background`: every pixel background (segmentation mIoU, shape
    and colour classes); the majority dominant shape for classification;
    chance recall@1 (one caption in `n`). `patch_grid_ceiling`: the
    perfect per-patch labelling at the features' patch grid
    (`patch_grid_ceiling_miou`), for both class sets. The probe's keys are
    scored on the second half of the scenes, as the probe is.
    """
    grid = features.patch_embeddings.shape[1:3]
    labels = dominant_shape_labels(features.segmentation)
    majority = float(np.bincount(labels, minlength=len(SHAPES)).max() / len(labels))
    num_captions = int((features.has_caption > 0).sum())
    half = len(features.segmentation) // 2
    baselines = {
        "all_background": {
            "zero_shot_acc_both_cls": majority,
            "retrieval_i2t@1_best": 1.0 / max(num_captions, 1),
            "retrieval_t2i@1_second_cls": 1.0 / max(num_captions, 1),
        },
        "patch_grid_ceiling": {},
    }
    for suffix, (field, names, _) in CLASS_SETS.items():
        segmentation = getattr(features, field)
        num_classes = len(names) + 1
        for key, masks in (
            (f"zero_shot_seg_miou{suffix}", segmentation),
            (f"linear_probe_seg_miou{suffix}", segmentation[half:]),
        ):
            baselines["all_background"][key] = all_background_miou(
                masks, num_classes)
            baselines["patch_grid_ceiling"][key] = patch_grid_ceiling_miou(
                masks, grid, num_classes)
    return baselines


def baseline_metrics(backbone, tokenizer, batches, features, max_scenes=None):
    """The rows to print beside a model's scene metrics.

    `random_weights`: `evaluate_features` of the same architecture at
    initialisation (`random_weights_like`) on the same `batches`; plus the
    entries of `trivial_baselines(features)`, where `features` are the
    model's own.
    """
    untrained = random_weights_like(backbone)
    untrained_features = extract_features(untrained, batches, max_scenes)
    return {
        "random_weights": evaluate_features(
            untrained, tokenizer, untrained_features),
        **trivial_baselines(features),
    }


def random_weights_like(backbone, seed=0):
    """A `TIPSBackbone` of the same architecture with fresh random weights.

    The baseline "at initialisation": built from `backbone.get_config()`
    with Keras' initializers under `keras.utils.set_random_seed(seed)`.
    """
    import keras

    keras.utils.set_random_seed(seed)
    return type(backbone).from_config(backbone.get_config())


def strict_json_metrics(metrics):
    """`metrics` with every non-finite float replaced by `None`.

    A class that occurs in neither the targets nor the predictions has a
    NaN IoU (`class_iou`); `json.dump` would write it as `NaN`, which
    strict JSON parsers (`JSON.parse`, `jq`, Go, Rust) reject. Written
    through this function it is `null`. Dicts, lists and tuples are
    walked; NumPy scalars become Python numbers.
    """
    if isinstance(metrics, dict):
        return {key: strict_json_metrics(value) for key, value in metrics.items()}
    if isinstance(metrics, (list, tuple)):
        return [strict_json_metrics(value) for value in metrics]
    if isinstance(metrics, np.generic):
        metrics = metrics.item()
    if isinstance(metrics, float) and not np.isfinite(metrics):
        return None
    return metrics


def write_metrics_json(path, metrics):
    """Writes `metrics` to `path` as strict JSON (`strict_json_metrics`)."""
    with open(path, "w") as file:
        json.dump(strict_json_metrics(metrics), file, indent=1, allow_nan=False)

