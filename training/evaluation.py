"""Evaluation of a TIPS model on held-out synthetic scenes.

Four measurements, each from frozen features of one model:
- zero-shot classification of each scene's dominant shape from the first,
  the second or both CLS embeddings, with an ensemble of prompt templates;
- image-text retrieval recall@1/5 against the scenes' synthetic captions;
- zero-shot semantic segmentation mIoU from value-attention patch
  embeddings against one text embedding per class (background included);
- linear-probe segmentation mIoU: a softmax classifier on frozen patch
  embeddings, fitted on one half of the scenes and scored on the other.
"""

import dataclasses

import numpy as np
from keras import ops

from keras_tips.layers.position_embedding import antialiased_bilinear_weights
from keras_tips.tasks.retrieval import recall_at_k
from keras_tips.tasks.zero_shot import class_text_embeddings
from training.data import make_eval_dataset
from training.scenes import SHAPES

SHAPE_PROMPTS = (
    "a {}.",
    "a photo of a {}.",
    "an image with a {}.",
    "a {} on a background.",
    "a picture showing a {}.",
)
BACKGROUND_NAME = "plain background"


@dataclasses.dataclass
class SceneFeatures:
    """Frozen features and labels of a set of evaluation scenes."""

    cls_embeddings: np.ndarray  # (N, 2, D)
    patch_embeddings: np.ndarray  # (N, h, w, D)
    value_patches: np.ndarray  # (N, h, w, D)
    caption_embeddings: np.ndarray  # (N, D), first synthetic caption
    has_caption: np.ndarray  # (N,)
    segmentation: np.ndarray  # (N, H, W) class ids, 0 = background


def _unit(x, axis=-1):
    x = np.asarray(x, dtype="float32")
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-6)


def extract_features(backbone, tokenizer, file_pattern, image_size,
                     batch_size=32, max_scenes=None):
    """Runs the model once over the evaluation shards."""
    sequence_length = int(getattr(tokenizer, "sequence_length", 64) or 64)
    dataset = make_eval_dataset(
        file_pattern, tokenizer, image_size, batch_size,
        sequence_length=sequence_length,
    )
    parts = {field.name: [] for field in dataclasses.fields(SceneFeatures)}
    seen = 0
    vision = backbone.vision_encoder
    for batch in dataset.as_numpy_iterator():
        images = batch["images"]
        outputs = vision(images)
        parts["cls_embeddings"].append(ops.convert_to_numpy(outputs["cls_embeddings"]))
        parts["patch_embeddings"].append(ops.convert_to_numpy(outputs["patch_embeddings"]))
        parts["value_patches"].append(
            ops.convert_to_numpy(vision.value_attention_patches(images)))
        text = backbone.text_encoder({
            "token_ids": batch["synthetic_token_ids"],
            "padding_mask": batch["synthetic_padding_mask"],
        })
        parts["caption_embeddings"].append(ops.convert_to_numpy(text))
        parts["has_caption"].append(batch["has_synthetic_caption"])
        parts["segmentation"].append(batch["segmentation"])
        seen += len(images)
        if max_scenes and seen >= max_scenes:
            break
    if not seen:
        raise ValueError(f"No evaluation scenes were read from {file_pattern!r}.")
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
    cls = _unit(features.cls_embeddings)
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
    texts = _unit(features.caption_embeddings[keep])
    results = {}
    for index, name in ((0, "first"), (1, "second")):
        images = _unit(features.cls_embeddings[keep, index])
        similarity = images @ texts.T
        positives = np.arange(len(texts))
        image_to_text = recall_at_k(similarity, positives, ks=(1, 5))
        text_to_image = recall_at_k(similarity.T, positives, ks=(1, 5))
        results[name] = {
            "i2t@1": image_to_text[1], "i2t@5": image_to_text[5],
            "t2i@1": text_to_image[1], "t2i@5": text_to_image[5],
        }
    return results


def _upsample_logits(logits, size):
    """Bilinear resize of `(N, h, w, C)` logits to `size`, in NumPy.

    Uses the same resampling matrices on every backend (half-pixel centres,
    edge clamping), so metrics do not depend on the Keras backend.
    """
    rows = ops.convert_to_numpy(antialiased_bilinear_weights(size[0], logits.shape[1]))
    cols = ops.convert_to_numpy(antialiased_bilinear_weights(size[1], logits.shape[2]))
    return np.einsum("Hh,nhwc,Ww->nHWc", rows, logits.astype("float32"), cols)


def mean_iou(predictions, targets, num_classes):
    """mIoU over classes that occur in the targets or the predictions."""
    confusion = np.bincount(
        targets.reshape(-1).astype("int64") * num_classes
        + predictions.reshape(-1).astype("int64"),
        minlength=num_classes * num_classes,
    ).reshape(num_classes, num_classes)
    intersection = np.diag(confusion).astype("float64")
    union = confusion.sum(0) + confusion.sum(1) - intersection
    present = union > 0
    return float((intersection[present] / union[present]).mean())


def _segment(patch_logits, size, batch=64):
    predictions = []
    for start in range(0, len(patch_logits), batch):
        chunk = _upsample_logits(patch_logits[start:start + batch], size)
        predictions.append(chunk.argmax(axis=-1))
    return np.concatenate(predictions)


def zero_shot_segmentation_miou(features, class_embeddings):
    """mIoU of per-patch nearest class text embedding, upsampled."""
    patches = _unit(features.value_patches)
    logits = patches @ class_embeddings.T
    size = features.segmentation.shape[1:3]
    predictions = _segment(logits, size)
    return mean_iou(predictions, features.segmentation, len(class_embeddings))


def patch_labels(segmentation, grid):
    """Majority class of each patch cell of the segmentation masks."""
    n, height, width = segmentation.shape
    gh, gw = grid
    cells = segmentation[:, : gh * (height // gh), : gw * (width // gw)]
    cells = cells.reshape(n, gh, height // gh, gw, width // gw)
    cells = cells.transpose(0, 1, 3, 2, 4).reshape(n, gh, gw, -1)
    num_classes = int(segmentation.max()) + 1
    counts = np.stack([(cells == k).sum(-1) for k in range(num_classes)], -1)
    return counts.argmax(-1)


def fit_softmax_probe(x, y, num_classes, steps=300, learning_rate=0.5,
                      l2=1e-4):
    """Multinomial logistic regression by full-batch gradient descent."""
    mean, std = x.mean(0), x.std(0)
    # Near-constant channels are not blown up into noise by standardizing.
    std = np.maximum(std, 1e-2 * std.max() + 1e-8)
    x = (x - mean) / std
    weights = np.zeros((x.shape[1], num_classes), "float64")
    bias = np.zeros(num_classes, "float64")
    onehot = np.eye(num_classes)[y]
    # Class-balanced weights so the background does not dominate.
    frequency = onehot.mean(0) + 1e-6
    sample_weight = (1.0 / frequency)[y]
    sample_weight /= sample_weight.mean()
    for _ in range(steps):
        logits = x @ weights + bias
        logits -= logits.max(1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(1, keepdims=True)
        error = (probs - onehot) * sample_weight[:, None] / len(x)
        weights -= learning_rate * (x.T @ error + l2 * weights)
        bias -= learning_rate * error.sum(0)
    return lambda features: ((features - mean) / std) @ weights + bias


def linear_probe_miou(features, num_classes):
    """Fit on the first half of the scenes, score mIoU on the second."""
    patches = features.patch_embeddings
    n, gh, gw, dim = patches.shape
    if n < 4:
        raise ValueError("The linear probe needs at least 4 scenes.")
    labels = patch_labels(features.segmentation, (gh, gw))
    half = n // 2
    probe = fit_softmax_probe(
        patches[:half].reshape(-1, dim).astype("float64"),
        labels[:half].reshape(-1), num_classes,
    )
    logits = probe(patches[half:].reshape(-1, dim)).reshape(n - half, gh, gw, -1)
    size = features.segmentation.shape[1:3]
    predictions = _segment(logits.astype("float32"), size)
    return mean_iou(predictions, features.segmentation[half:], num_classes)


def evaluate_scenes(backbone, tokenizer, file_pattern, image_size,
                    batch_size=32, max_scenes=None):
    """All scene metrics for one model, as a flat dict of floats."""
    features = extract_features(
        backbone, tokenizer, file_pattern, image_size, batch_size, max_scenes)
    shape_embeddings = class_text_embeddings(
        backbone, tokenizer, list(SHAPES), SHAPE_PROMPTS)
    segmentation_classes = class_text_embeddings(
        backbone, tokenizer, [BACKGROUND_NAME, *SHAPES], SHAPE_PROMPTS)
    accuracy = zero_shot_accuracy(features, shape_embeddings)
    retrieval = retrieval_recall(features)
    metrics = {
        "num_scenes": int(len(features.segmentation)),
        "zero_shot_acc_first_cls": accuracy["first"],
        "zero_shot_acc_second_cls": accuracy["second"],
        "zero_shot_acc_both_cls": accuracy["both"],
        "zero_shot_seg_miou": zero_shot_segmentation_miou(
            features, segmentation_classes),
        "linear_probe_seg_miou": linear_probe_miou(
            features, len(SHAPES) + 1),
    }
    for cls_name, values in retrieval.items():
        for key, value in values.items():
            metrics[f"retrieval_{key}_{cls_name}_cls"] = value
    metrics["retrieval_i2t@1_best"] = max(
        retrieval["first"]["i2t@1"], retrieval["second"]["i2t@1"])
    return metrics, features
