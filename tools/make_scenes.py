"""Writes the offline synthetic scene dataset as TFRecord shards.

Usage:

```
python -m tools.make_scenes --output_dir /tmp/scenes \
    --num_train 20000 --num_eval 1000 --num_shards 8 --seed 0 --image_size 112
```

Writes `train-*-of-*.tfrecord` and `eval-*-of-*.tfrecord` (see
`training.scenes.shards.write_scene_shards` for the features) plus a
`{split}-info.json` per split, then prints the counts and throughput.
"""

import argparse
import sys
import time


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m tools.make_scenes",
        description="Generate synthetic 2D scenes with captions and masks.",
    )
    parser.add_argument("--output_dir", required=True, help="Output directory.")
    parser.add_argument(
        "--num_train", type=int, default=10000, help="Training scenes."
    )
    parser.add_argument(
        "--num_eval", type=int, default=1000, help="Evaluation scenes."
    )
    parser.add_argument(
        "--num_shards",
        type=int,
        default=8,
        help="Shards for the train split (eval gets max(1, num_shards // 4)).",
    )
    parser.add_argument(
        "--num_eval_shards",
        type=int,
        default=None,
        help="Shards for the eval split (default max(1, num_shards // 4)).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Dataset seed.")
    parser.add_argument(
        "--image_size", type=int, default=112, help="Image side, multiple of 14."
    )
    parser.add_argument(
        "--max_objects", type=int, default=4, help="Most objects per scene."
    )
    parser.add_argument(
        "--object_scale", type=float, default=1.0,
        help="Factor on every object radius (larger objects span more patches).",
    )
    parser.add_argument(
        "--image_format",
        choices=("png", "jpeg"),
        default="png",
        help="Encoding of the `image` feature.",
    )
    parser.add_argument(
        "--num_workers",
        type=int,
        default=None,
        help="Generator processes (default: min(shards, CPUs) for big jobs).",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    from training.scenes.generator import SceneConfig
    from training.scenes.shards import write_scene_shards

    for name in ("num_train", "num_eval"):
        if getattr(args, name) < 0:
            raise SystemExit(f"--{name} must be >= 0, got {getattr(args, name)}.")
    try:
        config = SceneConfig(
            image_size=args.image_size,
            max_objects=args.max_objects,
            object_scale=args.object_scale,
            image_format=args.image_format,
        )
    except (TypeError, ValueError) as error:
        raise SystemExit(f"Bad scene settings: {error}")
    num_eval_shards = args.num_eval_shards or max(1, args.num_shards // 4)
    splits = (
        ("train", args.num_train, args.num_shards),
        ("eval", args.num_eval, num_eval_shards),
    )
    for split_name, count, shards in splits:
        if count == 0:
            print(f"{split_name}: skipped (0 scenes)")
            continue
        start = time.perf_counter()
        paths = write_scene_shards(
            args.output_dir,
            num_scenes=count,
            num_shards=shards,
            seed=args.seed,
            config=config,
            split_name=split_name,
            num_workers=args.num_workers,
        )
        seconds = time.perf_counter() - start
        print(
            f"{split_name}: {count} scenes in {len(paths)} shards, "
            f"{seconds:.1f} s, {count / max(seconds, 1e-9) * 60:.0f} scenes/min "
            f"-> {args.output_dir}/{split_name}-*.tfrecord"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
