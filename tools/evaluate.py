"""Evaluate a TIPS preset on held-out synthetic scenes.

Prints a results table (zero-shot classification, retrieval recall,
zero-shot and linear-probe segmentation mIoU with the objects' shapes and,
separately, their colours as the classes) with, in the same table, the
same metrics for the same architecture at initialisation (random weights),
the trivial answers (all background, majority class, chance recall) and the
ceiling of a perfect per-patch labelling at the model's patch grid; writes
the metrics as JSON and a PCA-of-patch-features picture of a few scenes.
A second table splits zero-shot segmentation's errors into finding the
objects (object and background recall) and naming them (the best object
class of object pixels, and the mIoU if the true object mask were given);
two more give zero-shot segmentation's IoU class by class, which shows
which classes the mean is made of. With `--train_dir` a last table gives
the self-distillation losses at the end of training against ln K (from
the run's `metrics.jsonl`).

Usage:
    python -m tools.evaluate --preset runs/main/train/preset \
        --data 'runs/main/data/eval-*.tfrecord' --output_dir runs/main/eval
"""

import argparse
import json
import os
import sys

import numpy as np


def format_table(rows, columns):
    """A GitHub-markdown table of `rows` (dicts) with `columns` (key, title)."""
    lines = [
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key, "")
            cells.append(f"{value:.3f}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


METRIC_COLUMNS = (
    ("zero_shot_seg_miou", "zero-shot seg mIoU (shapes)"),
    ("linear_probe_seg_miou", "linear-probe seg mIoU (shapes)"),
    ("zero_shot_seg_miou_color", "zero-shot seg mIoU (colours)"),
    ("linear_probe_seg_miou_color", "linear-probe seg mIoU (colours)"),
    ("retrieval_i2t@1_best", "image->text R@1"),
    ("retrieval_t2i@1_second_cls", "text->image R@1 (2nd CLS)"),
    ("zero_shot_acc_both_cls", "zero-shot acc (both CLS)"),
)

# Zero-shot segmentation's errors, split (`zero_shot_error_breakdown`):
# metric key without the class-set suffix, title.
ZERO_SHOT_BREAKDOWN_COLUMNS = (
    ("zero_shot_seg_miou", "zero-shot seg mIoU"),
    ("zero_shot_background_recall", "background pixels called background"),
    ("zero_shot_object_recall", "object pixels called an object"),
    ("zero_shot_object_class_accuracy", "object pixels, best object class right"),
    ("zero_shot_miou_given_object_mask", "mIoU given the true object mask"),
)


# What each class set of `evaluation.CLASS_SETS` calls its classes.
CLASS_SET_TITLES = {"": "shape", "_color": "colour"}


def zero_shot_breakdown_rows(models):
    """Rows of the zero-shot error table: each model, both class sets.

    `models` is a list of `(title, metrics)`; models without the breakdown
    keys (the trivial baselines) are left out.
    """
    rows = []
    for title, metrics in models:
        for suffix, kind in CLASS_SET_TITLES.items():
            if f"zero_shot_object_recall{suffix}" not in metrics:
                continue
            row = {"model": f"{title}, {kind}s"}
            for key, _ in ZERO_SHOT_BREAKDOWN_COLUMNS:
                row[key] = metrics[key + suffix]
            rows.append(row)
    return rows


def zero_shot_class_iou_table(models, suffix, names):
    """Table of each model's zero-shot IoU per class of one class set.

    `models` is a list of `(title, metrics)`; `names` the class set's
    object classes (the background comes first). Models without the
    per-class keys are left out. Returns "" when no model has them.
    """
    classes = ("background",) + tuple(names)
    rows = []
    for title, metrics in models:
        keys = [f"zero_shot_iou_{name}{suffix}" for name in classes]
        if not all(key in metrics for key in keys):
            continue
        row = {"model": title}
        for name, key in zip(classes, keys):
            row[name] = metrics[key]
        rows.append(row)
    if not rows:
        return ""
    return format_table(
        rows, (("model", "model"),) + tuple((n, n) for n in classes))


def save_pca_picture(features, path, count=4):
    """Scenes' masks and PCA pictures of their patch features, side by side."""
    from PIL import Image

    from keras_tips.visualization import pca_images

    count = min(count, len(features.segmentation))
    size = features.segmentation.shape[1:3]
    pca = pca_images(features.patch_embeddings[:count], image_size=size)
    palette = np.array(
        [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25],
         [0, 130, 200], [245, 130, 48], [145, 30, 180]], "uint8")
    masks = palette[np.clip(features.segmentation[:count], 0, len(palette) - 1)]
    grid = np.concatenate(
        [np.concatenate([m, p], axis=0) for m, p in zip(masks, pca)], axis=1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


def self_distillation_summary(train_dir, last=20):
    """Mean DINO and iBOT losses over the `last` logged steps, against ln K.

    Reads `<train_dir>/metrics.jsonl` and `<train_dir>/config.json`;
    returns {} when the run has no log.
    """
    import math

    from training.metrics_log import read_metrics

    path = os.path.join(train_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return {}
    steps = [r for r in read_metrics(path) if "distillation" in r][-last:]
    with open(os.path.join(train_dir, "config.json")) as file:
        config = json.load(file)
    if not steps:
        return {}
    if config.get("cls_num_prototypes") != config.get("patch_num_prototypes"):
        raise ValueError("The CLS and patch heads have different K.")
    ln_k = math.log(config["cls_num_prototypes"])
    summary = {"steps": f"{steps[0]['step']}-{steps[-1]['step']}", "ln_k": ln_k}
    for term in ("distillation", "masked"):
        value = float(np.mean([r[term] for r in steps]))
        summary[term] = value
        summary[f"{term}_over_ln_k"] = value / ln_k
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="preset dir or name")
    parser.add_argument("--data", required=True, help="eval TFRecord glob")
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--image_size", type=int, default=None,
                        help="default: the preset's image converter size")
    parser.add_argument("--max_scenes", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--train_dir", default=None,
                        help="training run directory (metrics.jsonl, config.json)")
    parser.add_argument("--no_baselines", action="store_true",
                        help="skip the random-weights and trivial rows")
    args = parser.parse_args(argv)

    import keras_tips
    from training.scenes import evaluation

    try:
        backbone = keras_tips.TIPSBackbone.from_preset(args.preset)
        tokenizer = keras_tips.TIPSTokenizer.from_preset(args.preset)
        tokenizer.official_padding_mask = False
        image_size = args.image_size
        if image_size is None:
            try:
                converter = keras_tips.TIPSImageConverter.from_preset(args.preset)
                image_size = int(converter.image_size[0])
            except Exception:  # presets without an image converter
                image_size = 224
        batches = evaluation.load_eval_batches(
            tokenizer, args.data, image_size, args.batch_size, args.max_scenes)
        features = evaluation.extract_features(backbone, batches, args.max_scenes)
        metrics = evaluation.evaluate_features(backbone, tokenizer, features)
        rows = [dict(metrics, model="trained")]
        if not args.no_baselines:
            baselines = evaluation.baseline_metrics(
                backbone, tokenizer, batches, features, args.max_scenes)
            for key, title in (
                ("random_weights", "random weights (same architecture)"),
                ("all_background", "all background / majority / chance"),
                ("patch_grid_ceiling", "perfect per-patch labels (ceiling)"),
            ):
                rows.append(dict(baselines[key], model=title))
            metrics["baselines"] = baselines
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_table(rows, (("model", "model"),) + METRIC_COLUMNS))
    print(f"{metrics['num_scenes']} held-out scenes; the linear probe fits "
          "on the first half and scores the second.")
    models = [("trained", metrics)]
    if "baselines" in metrics:
        models.append(("random weights", metrics["baselines"]["random_weights"]))
    print("\nZero-shot segmentation: finding the objects and naming them")
    print(format_table(zero_shot_breakdown_rows(models), (
        ("model", "model, classes"),) + ZERO_SHOT_BREAKDOWN_COLUMNS))
    for suffix, (_, names, _) in evaluation.CLASS_SETS.items():
        table = zero_shot_class_iou_table(models, suffix, names)
        if table:
            print("\nZero-shot segmentation IoU per "
                  f"{CLASS_SET_TITLES[suffix]} class")
            print(table)
    if args.train_dir:
        losses = self_distillation_summary(args.train_dir)
        if losses:
            metrics["final_losses"] = losses
            print(format_table([losses], (
                ("steps", "last steps"),
                ("distillation", "DINO loss"),
                ("masked", "iBOT loss"),
                ("ln_k", "ln K"),
                ("distillation_over_ln_k", "DINO / ln K"),
                ("masked_over_ln_k", "iBOT / ln K"),
            )))
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        evaluation.write_metrics_json(
            os.path.join(args.output_dir, "metrics.json"), metrics)
        picture = save_pca_picture(
            features, os.path.join(args.output_dir, "pca.png"))
        print(f"Metrics and PCA picture written to {args.output_dir} ({picture})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
