"""The TIPS paper's ablations, in miniature, on synthetic scenes.

Same data and steps for every run; only the loss weights change:
(a) contrastive on noisy captions only, (b) on synthetic captions only,
(c) dual embedding with both, (d) (c) + self-distillation, (e) (d) +
masked image modeling (full TIPS), all as in the TIPS paper's Table 1C
(iBOT's patch loss on the masked patches only, whatever the config's
`patch_visible_weight`). Each row is trained with every seed of
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
        masked_weight=0.0, patch_visible_weight=0.0)),
    ("b", "synthetic captions only", dict(contrastive_noisy_weight=0.0,
        contrastive_synthetic_weight=1.0, distillation_weight=0.0,
        masked_weight=0.0, patch_visible_weight=0.0)),
    ("c", "dual (noisy + synthetic)", dict(contrastive_noisy_weight=0.5,
        contrastive_synthetic_weight=0.5, distillation_weight=0.0,
        masked_weight=0.0, patch_visible_weight=0.0)),
    ("d", "(c) + self-distillation", dict(contrastive_noisy_weight=0.5,
        contrastive_synthetic_weight=0.5, distillation_weight=1.0,
        masked_weight=0.0, patch_visible_weight=0.0)),
    ("e", "(d) + masked modeling (TIPS)", dict(contrastive_noisy_weight=0.5,
        contrastive_synthetic_weight=0.5, distillation_weight=1.0,
        masked_weight=2.0, patch_visible_weight=0.0)),
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
    args = parser.parse_args(argv)
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
    for key, title, weights in ABLATIONS:
        if args.only and key not in args.only:
            continue
        per_seed = []
        for seed in seeds:
            run_dir = os.path.join(args.output_dir, key, f"seed{seed}")
            config = base.replace(seed=seed, **weights)
            result = run_training(config, run_dir, data=args.data,
                                  tokenizer=tokenizer, resume=True,
                                  checkpoint_every=0, verbose=0)
            backbone = keras_tips.TIPSBackbone.from_preset(result.preset_dir)
            eval_tokenizer = keras_tips.TIPSTokenizer.from_preset(result.preset_dir)
            eval_tokenizer.official_padding_mask = False
            metrics, _ = evaluate_scenes(backbone, eval_tokenizer,
                                         args.eval_data,
                                         config.global_crop_size)
            with open(os.path.join(run_dir, "eval_metrics.json"), "w") as file:
                json.dump(metrics, file, indent=1)
            per_seed.append(metrics)
        row = {"run": f"({key}) {title}"}
        for column, _ in METRIC_COLUMNS:
            values = np.array([m[column] for m in per_seed])
            row[column] = (f"{values.mean():.3f} ({values.min():.3f}-"
                           f"{values.max():.3f})")
        rows.append(row)
    table = format_table(rows, (("run", "run"),) + METRIC_COLUMNS)
    table += (f"\n\nMean (min-max) over seeds {seeds}; wall time "
              f"{(time.time() - started) / 60:.1f} min.")
    print(table)
    with open(os.path.join(args.output_dir, "ablation.md"), "w") as file:
        file.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
