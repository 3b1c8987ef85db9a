"""The TIPS paper's ablations, in miniature, on synthetic scenes.

Same data and steps for every run; only the loss weights change:
(a) contrastive on noisy captions only, (b) on synthetic captions only,
(c) dual embedding with both, (d) (c) + self-distillation, (e) (d) +
masked image modeling (full TIPS), all as in the TIPS paper's Table 1C
(iBOT's patch loss on the masked patches only, whatever the config's
`patch_visible_weight`, and neither the `patch_text_weight` nor the
`phrase_text_weight` term, which are not in TIPS). Rows (d) and (e) give
the self-distillation terms the paper's weights (DINO 1.0, iBOT 2.0) by
default, or, with `--self_distillation_weights config`, the
`distillation_weight` and `masked_weight` of `--config` (the main job's
1/20 of them), so that row (e) is the main job's recipe without its
phrase-grounding term. Each row is trained with every seed of
`--seeds` (weights and data order); the table gives the mean and, in
brackets, the range (min-max) over the seeds of zero-shot and linear-probe
segmentation mIoU (shape classes and colour classes), retrieval recall@1
and zero-shot accuracy, and the wall time of the whole run.

Usage:
    python -m tools.run_ablation --data 'runs/main/data/train-*.tfrecord' \
        --eval_data 'runs/main/data/eval-*.tfrecord' \
        --tokenizer runs/main/tokenizer.model --output_dir runs/ablation
"""

import argparse
import json
import os
import sys

ABLATIONS = (
    ("a", "noisy captions only", dict(contrastive_noisy_weight=1.0,
        contrastive_synthetic_weight=0.0, distillation_weight=0.0,
        masked_weight=0.0)),
    ("b", "synthetic captions only", dict(contrastive_noisy_weight=0.0,
        contrastive_synthetic_weight=1.0, distillation_weight=0.0,
        masked_weight=0.0)),
    ("c", "dual (noisy + synthetic)", dict(contrastive_noisy_weight=0.5,
        contrastive_synthetic_weight=0.5, distillation_weight=0.0,
        masked_weight=0.0)),
    ("d", "(c) + self-distillation", dict(contrastive_noisy_weight=0.5,
        contrastive_synthetic_weight=0.5, distillation_weight=1.0,
        masked_weight=0.0)),
    ("e", "(d) + masked modeling (TIPS)", dict(contrastive_noisy_weight=0.5,
        contrastive_synthetic_weight=0.5, distillation_weight=1.0,
        masked_weight=2.0)),
)
# Beyond the paper's Table 1C, off in every row: iBOT++'s visible
# patches, the patch-text and phrase-grounding terms and image-text terms
# kept to the last blocks.
OFF_IN_EVERY_ROW = dict(patch_visible_weight=0.0, patch_text_weight=0.0,
                        phrase_text_weight=0.0, image_text_last_blocks=0)
SELF_DISTILLATION_WEIGHTS = ("recipe", "config")


def ablation_config(base, key, self_distillation_weights="recipe"):
    """The `PretrainConfig` of ablation row `key` ("a"-"e") from `base`.

    Args:
        base: `PretrainConfig`, the configuration every row starts from.
        key: str, the row, one of "a"-"e".
        self_distillation_weights: `"recipe"` (rows (d) and (e) weigh DINO
            1.0 and iBOT 2.0, as in the paper) or `"config"` (they keep
            `base.distillation_weight` and `base.masked_weight`; the terms a
            row leaves out stay at 0).
    """
    if self_distillation_weights not in SELF_DISTILLATION_WEIGHTS:
        raise ValueError(
            "`self_distillation_weights` must be one of "
            f"{SELF_DISTILLATION_WEIGHTS}. Received: "
            f"{self_distillation_weights!r}."
        )
    rows = {row_key: weights for row_key, _, weights in ABLATIONS}
    if key not in rows:
        raise ValueError(
            f"Unknown ablation row {key!r}; the rows are {sorted(rows)}."
        )
    weights = dict(rows[key], **OFF_IN_EVERY_ROW)
    if self_distillation_weights == "config":
        for field in ("distillation_weight", "masked_weight"):
            if weights[field] > 0:
                if getattr(base, field) <= 0:
                    raise ValueError(
                        f"Row ({key}) trains with `{field}` > 0, but the "
                        f"config gives it {getattr(base, field)}: use "
                        "self_distillation_weights='recipe' or a config "
                        "that weighs the term."
                    )
                weights[field] = getattr(base, field)
    return base.replace(**weights)


def check_run_dir(run_dir, config):
    """Refuses to resume `run_dir` if it holds a run of another config.

    The ablation resumes interrupted runs; a directory trained with other
    weights (say, the recipe's instead of the config's) would otherwise be
    taken for a finished run of this one.
    """
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as file:
        stored = json.load(file)
    current = json.loads(config.to_json())
    changed = sorted(k for k in set(stored) | set(current)
                     if stored.get(k) != current.get(k))
    if changed:
        raise ValueError(
            f"{run_dir} holds a run of another configuration ("
            + ", ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}"
                        for k in changed)
            + "); choose another --output_dir."
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny_scenes.json")
    parser.add_argument("--data", required=True)
    parser.add_argument("--eval_data", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--only", default=None, help="e.g. 'ce' to run (c), (e)")
    parser.add_argument("--seeds", default="0,1,2",
                        help="comma-separated seeds, one run per seed and row")
    parser.add_argument(
        "--self_distillation_weights", default="recipe",
        choices=SELF_DISTILLATION_WEIGHTS,
        help="weights of the DINO and iBOT terms in rows (d) and (e): the "
             "paper's 1.0 and 2.0 (recipe) or those of --config (config)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or "") - {key for key, _, _ in ABLATIONS})
    if unknown:
        parser.error(f"--only names unknown rows {unknown}; the rows are "
                     "a, b, c, d and e")
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    if not seeds:
        parser.error("--seeds names no seed")

    import time

    import numpy as np

    import keras_tips
    from tools.evaluate import METRIC_COLUMNS
    from tools.evaluate import format_table
    from training.config import PretrainConfig
    from training.scenes.evaluation import evaluate_scenes
    from training.scenes.evaluation import write_metrics_json
    from training.train import load_tokenizer
    from training.train import run_training

    with open(args.config) as file:
        base = PretrainConfig.from_dict(json.load(file))
    if args.steps:
        base = base.replace(total_steps=args.steps,
                            warmup_steps=min(base.warmup_steps, args.steps))
    tokenizer = load_tokenizer(args.tokenizer, base.text_max_length)
    started = time.time()
    rows = []
    for key, title, _ in ABLATIONS:
        if args.only and key not in args.only:
            continue
        per_seed = []
        for seed in seeds:
            run_dir = os.path.join(args.output_dir, key, f"seed{seed}")
            config = ablation_config(
                base, key, args.self_distillation_weights).replace(seed=seed)
            check_run_dir(run_dir, config)
            result = run_training(config, run_dir, data=args.data,
                                  tokenizer=tokenizer, resume=True,
                                  checkpoint_every=0, verbose=0)
            backbone = keras_tips.TIPSBackbone.from_preset(result.preset_dir)
            eval_tokenizer = keras_tips.TIPSTokenizer.from_preset(result.preset_dir)
            eval_tokenizer.official_padding_mask = False
            metrics, _ = evaluate_scenes(backbone, eval_tokenizer,
                                         args.eval_data,
                                         config.global_crop_size)
            write_metrics_json(
                os.path.join(run_dir, "eval_metrics.json"), metrics)
            per_seed.append(metrics)
        row = {"run": f"({key}) {title}"}
        for column, _ in METRIC_COLUMNS:
            values = np.array([m[column] for m in per_seed])
            row[column] = (f"{values.mean():.3f} ({values.min():.3f}-"
                           f"{values.max():.3f})")
        rows.append(row)
    table = format_table(rows, (("run", "run"),) + METRIC_COLUMNS)
    table += (f"\n\nMean (min-max) over seeds {seeds}; self-distillation "
              f"weights of rows (d) and (e): {args.self_distillation_weights}"
              f"; wall time "
              f"{(time.time() - started) / 60:.1f} min.")
    print(table)
    with open(os.path.join(args.output_dir, "ablation.md"), "w") as file:
        file.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
