"""What the pretraining architecture can learn about the scenes' classes.

Trains the vision encoder of a pretraining config, from scratch, with the
segmentation labels themselves (a linear layer on the patch embeddings,
cross-entropy against each patch's majority class) for a number of steps
like the pretraining's, then scores held-out mIoU exactly as
`training.scenes.evaluation` scores the linear probe (patch logits upsampled
bilinearly). Self-supervised features cannot be expected to beat full
supervision of the same model for the same number of steps, so this bounds
what a pretraining run of that budget can show on these classes: the
objects' shapes (`--classes shape`, the default, the `segmentation` masks)
or their colours (`--classes color`, the `color_segmentation` masks).

The table also has two labellings that need no model: a perfect
foreground/background split with every foreground patch labelled as the
most frequent training class (what knowing *where* objects are, but not
*which*, scores), and the perfect per-patch labelling (the grid's ceiling).

Usage:
    python tools/supervised_ceiling.py --config configs/tiny_scenes.json \
        --train_data 'runs/main/data/train-*.tfrecord' \
        --eval_data 'runs/main/data/eval-*.tfrecord' --steps 500 \
        --classes color
"""

import argparse
import json
import os
import time

import numpy as np

from training.scenes import generator


# Each `--classes`: the masks of `load_eval_batches` that hold it, its
# number of classes (background included) and its name in the table.
CLASS_SETS = {
    "shape": ("segmentation", len(generator.class_names()), "shape classes"),
    "color": (
        "color_segmentation", len(generator.color_class_names()),
        "colour classes",
    ),
}


def _read_scenes(tokenizer, pattern, image_size, mask_key):
    from training.scenes import evaluation

    batches = evaluation.load_eval_batches(tokenizer, pattern, image_size, 64)
    images = np.concatenate([b["images"] for b in batches])
    masks = np.concatenate([b[mask_key] for b in batches])
    return images, masks


def foreground_only_miou(train_labels, masks, grid, num_classes):
    """Perfect foreground/background per patch, one class for all objects.

    Every foreground patch gets the most frequent foreground class of
    `train_labels` (patch labels); upsampled like the probe's logits.
    """
    from training.scenes import evaluation

    counts = np.bincount(train_labels.reshape(-1), minlength=num_classes)
    majority = int(np.argmax(counts[1:]) + 1)
    labels = evaluation.patch_labels(masks, grid, num_classes)
    labels = np.where(labels > 0, majority, 0)
    return evaluation.patch_labelling_miou(labels, masks, num_classes)


def run(config, train_pattern, eval_pattern, tokenizer_path, steps,
        learning_rate, batch_size, seed, classes="shape"):
    """Trains the supervised model; returns a dict of metrics.

    `classes` is a key of `CLASS_SETS`: `"shape"` or `"color"`.
    """
    import keras

    from training.scenes import evaluation
    from training import models
    from training import train

    if classes not in CLASS_SETS:
        raise ValueError(
            f"`classes` must be one of {sorted(CLASS_SETS)}, got {classes!r}."
        )
    mask_key, num_classes, _ = CLASS_SETS[classes]
    image_size = config.global_crop_size
    grid = (image_size // config.patch_size,) * 2
    tokenizer = train.load_tokenizer(tokenizer_path, config.text_max_length)
    train_images, train_masks = _read_scenes(
        tokenizer, train_pattern, image_size, mask_key)
    eval_images, eval_masks = _read_scenes(
        tokenizer, eval_pattern, image_size, mask_key)
    train_labels = evaluation.patch_labels(train_masks, grid, num_classes)

    keras.utils.set_random_seed(seed)
    backbone = models.build_backbone(config, tokenizer.vocabulary_size())
    encoder = backbone.vision_encoder
    images = keras.Input((image_size, image_size, 3))
    logits = keras.layers.Dense(num_classes)(encoder(images)["patch_embeddings"])
    model = keras.Model(images, logits)
    model.compile(
        keras.optimizers.AdamW(learning_rate, weight_decay=0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    steps_per_epoch = len(train_images) // batch_size
    epochs = max(1, round(steps / steps_per_epoch))
    start = time.time()
    history = model.fit(
        train_images, train_labels, batch_size=batch_size, epochs=epochs,
        steps_per_epoch=steps_per_epoch, verbose=2,
    )
    seconds = time.time() - start
    eval_logits = model.predict(eval_images, batch_size=64, verbose=0)
    return {
        "classes": classes,
        "steps": epochs * steps_per_epoch,
        "train_seconds": round(seconds, 1),
        "final_train_loss": float(history.history["loss"][-1]),
        "supervised_miou": evaluation.patch_logits_miou(
            eval_logits, eval_masks, num_classes),
        "foreground_only_miou": foreground_only_miou(
            train_labels, eval_masks, grid, num_classes),
        "all_background_miou": evaluation.all_background_miou(
            eval_masks, num_classes),
        "patch_grid_ceiling_miou": evaluation.patch_grid_ceiling_miou(
            eval_masks, grid, num_classes),
        "num_train_scenes": int(len(train_images)),
        "num_eval_scenes": int(len(eval_images)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True,
                        help="pretraining config JSON (architecture, crop)")
    parser.add_argument("--train_data", required=True)
    parser.add_argument("--eval_data", required=True)
    parser.add_argument("--tokenizer",
                        help="SentencePiece model (only to read the records; "
                        "default: the embedded tips_tiny_scenes preset's)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", choices=sorted(CLASS_SETS),
                        default="shape",
                        help="segmentation classes: the objects' shapes "
                        "(default) or their colours")
    parser.add_argument("--output", help="write the metrics here as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch_size must be positive")
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from keras_tips.tips_presets import EMBEDDED_TOKENIZER
    from training.config import PretrainConfig

    if args.tokenizer is None:
        args.tokenizer = EMBEDDED_TOKENIZER

    with open(args.config) as f:
        config = PretrainConfig.from_dict(json.load(f))
    metrics = run(config, args.train_data, args.eval_data, args.tokenizer,
                  args.steps, args.learning_rate, args.batch_size, args.seed,
                  args.classes)
    rows = (
        ("same architecture, supervised per-patch labels, "
         f"{metrics['steps']} steps", metrics["supervised_miou"]),
        ("perfect foreground/background, one class for every object",
         metrics["foreground_only_miou"]),
        ("all background", metrics["all_background_miou"]),
        ("perfect per-patch labels (ceiling)",
         metrics["patch_grid_ceiling_miou"]),
    )
    title = CLASS_SETS[args.classes][2]
    print(f"| held-out segmentation ({title}) | mIoU |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.3f} |")
    print(f"final training loss {metrics['final_train_loss']:.4f}, "
          f"{metrics['train_seconds']:.0f} s")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(metrics, f, indent=1)


if __name__ == "__main__":
    main()
