"""Ship a trained scenes preset inside the package as `tips_tiny_scenes`.

Evaluates the preset on a fixed held-out set of scenes (generated from a
fixed seed, so any machine can regenerate it), copies the preset into
`keras_tips/preset_files/tips_tiny_scenes/` and records the held-out
metrics beside it (`heldout_metrics.json`), which the tests check.

Usage:
    python -m tools.embed_preset --preset runs/ablation/e/preset
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

HELDOUT_SEED = 1234
HELDOUT_SCENES = 64
PRESET_NAME = "tips_tiny_scenes"
# The main job's scenes (tools/main_job.sh).
SCENE_SETTINGS = {"image_size": 112, "max_objects": 3, "object_scale": 1.7}


def heldout_metrics(preset, work_dir, baselines=False):
    """Scene metrics of `preset` on the fixed held-out scenes.

    With `baselines`, also those of the same architecture with random
    weights and the trivial answers, under `"baselines"`.
    """
    import keras_tips
    from training.scenes import evaluation
    from training.scenes.generator import SceneConfig
    from training.scenes.shards import write_scene_shards

    write_scene_shards(work_dir, HELDOUT_SCENES, 1, HELDOUT_SEED,
                       config=SceneConfig(**SCENE_SETTINGS),
                       split_name="heldout", num_workers=1)
    backbone = keras_tips.TIPSBackbone.from_preset(preset)
    tokenizer = keras_tips.TIPSTokenizer.from_preset(preset)
    tokenizer.official_padding_mask = False
    image_size = keras_tips.TIPSImageConverter.from_preset(preset).image_size[0]
    batches = evaluation.load_eval_batches(
        tokenizer, os.path.join(work_dir, "heldout-*.tfrecord"),
        int(image_size))
    features = evaluation.extract_features(backbone, batches)
    metrics = evaluation.evaluate_features(backbone, tokenizer, features)
    if baselines:
        metrics["baselines"] = evaluation.baseline_metrics(
            backbone, tokenizer, batches, features)
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    args = parser.parse_args(argv)
    from keras_tips.tips_presets import EMBEDDED_DIR
    from training.scenes.evaluation import strict_json_metrics
    from training.scenes.evaluation import write_metrics_json

    with tempfile.TemporaryDirectory() as work_dir:
        metrics = heldout_metrics(args.preset, work_dir, baselines=True)
    target = os.path.join(EMBEDDED_DIR, PRESET_NAME)
    staging = tempfile.mkdtemp(prefix=".embedding-", dir=os.path.dirname(target)
                               if os.path.isdir(os.path.dirname(target))
                               else None)
    shutil.rmtree(staging)
    shutil.copytree(args.preset, staging)
    write_metrics_json(os.path.join(staging, "heldout_metrics.json"), metrics)
    if os.path.exists(target):
        shutil.rmtree(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(staging, target)
    # Strict JSON on stdout too (a NaN class IoU prints as null).
    print(json.dumps(strict_json_metrics(metrics), indent=1, allow_nan=False))
    print(f"Embedded {args.preset} as {PRESET_NAME} at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
