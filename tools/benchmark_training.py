"""Training throughput of `TIPSPretrainer` (images/s) on each Keras backend.

For each backend (each in its own subprocess, since `KERAS_BACKEND` is fixed
per process) and each configuration, the tool builds the pretrainer with
the full recipe (student, EMA teacher, CLS and patch heads, every loss),
trains with `fit` on in-memory random batches (so the input pipeline is not
measured; see `tools/benchmark_data.py` for that) and times the steps after
the first ones (compilation and warm-up):

* `tiny`: `PretrainConfig.tiny()` (width 32, 2 layers, 56 px global crop,
  2 local crops of 28 px, heads of 1,024 prototypes), batch 8;
* `tiny_scenes`: the configuration the main job trains
  (`configs/tiny_scenes.json`: width 96, 4 layers, 112 px global crop,
  2 local crops of 56 px, heads of 256 prototypes, 512-token vocabulary),
  batch 32 as there;
* `S14`: ViT-S/14 and its text encoder at 224 px with the full TIPS recipe
  (6 local crops of 98 px, 65,536 CLS and 32,768 patch prototypes, head
  width 2,048), batch 4 by default.

It prints a table (configurations by backends) and one JSON line per
measurement (also to `--output`). The matmul roofline, peak memory and FLOP
counts are `tools/benchmark.py`'s, from `tools/benchmarking/` beside it.

Usage:
    python tools/benchmark_training.py
    python tools/benchmark_training.py --configs tiny --backends jax torch
    python tools/benchmark_training.py --quick          # tiny only, seconds
    python tools/benchmark_training.py --configs S14 --batch_size 8 --steps 5
    # JAX: what keras_tips' residual gradient barrier buys, 3 rounds
    python tools/benchmark_training.py --configs tiny_scenes S14 \
        --compare_gradient_barrier 3
    # What keeping freed memory in the process (training/allocator.py,
    # on by default for torch and JAX training) buys, per backend, 2 rounds
    python tools/benchmark_training.py --configs S14 --compare_allocator 2

Each worker sets up the allocator as `training.train.run_training` does
(freed memory kept in the process on torch and JAX, glibc's defaults on
TensorFlow).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from benchmarking.flops import pretraining_step_flops
from benchmarking.memory import peak_rss_mb
from benchmarking.roofline import matmul_roofline
from benchmarking.settings import BACKENDS
from benchmarking.settings import MATMUL_SIZE
from benchmarking.settings import REPO_ROOT

CONFIGS = ("tiny", "tiny_scenes", "S14")
DEFAULT_BATCH = {"tiny": 8, "tiny_scenes": 32, "S14": 4}
VOCABULARY_SIZE = 32000
# The main job's configuration and the vocabulary of its tokenizer.
TINY_SCENES_CONFIG = os.path.join(REPO_ROOT, "configs", "tiny_scenes.json")
VOCABULARY_SIZES = {"tiny_scenes": 512}


def _config(name, recipe, batch_size, steps):
    from training.config import PretrainConfig

    common = {"batch_size": batch_size, "total_steps": max(steps, 10)}
    common["warmup_steps"] = 1
    if name == "tiny":
        return PretrainConfig.tiny(recipe, **common)
    if name == "tiny_scenes":
        with open(TINY_SCENES_CONFIG) as f:
            values = json.load(f)
        # Its own schedule lengths (the learning-rate warm-up is part of
        # the steps the main job runs); only the batch size is replaced.
        values["batch_size"] = batch_size
        values["total_steps"] = max(values["total_steps"], steps)
        return PretrainConfig.from_dict(values)
    return PretrainConfig.for_recipe(recipe, model_variant="S/14", **common)


def _random_batches(config, count, seed=0, vocabulary_size=VOCABULARY_SIZE):
    import numpy as np

    rng = np.random.default_rng(seed)
    size, local = config.global_crop_size, config.local_crop_size
    grid = size // config.patch_size
    length = config.text_max_length
    batches = []
    for _ in range(count):
        b = config.batch_size
        mask = rng.uniform(size=(b, grid, grid)) < config.mask_ratio
        padding = (np.arange(length) < rng.integers(4, length, (b, 1))).astype(
            "int32"
        )
        batches.append(
            {
                "global_images": rng.uniform(size=(b, size, size, 3)).astype(
                    "float32"
                ),
                "local_images": rng.uniform(
                    size=(b, config.num_local_crops, local, local, 3)
                ).astype("float32"),
                "patch_mask": mask,
                "noisy_token_ids": rng.integers(1, vocabulary_size, (b, length))
                .astype("int32")
                * padding,
                "noisy_padding_mask": padding,
                "synthetic_token_ids": rng.integers(
                    1, vocabulary_size, (b, length)
                ).astype("int32")
                * padding,
                "synthetic_padding_mask": padding,
                "has_noisy_caption": np.ones((b,), "float32"),
                "has_synthetic_caption": np.ones((b,), "float32"),
            }
        )
        if config.phrase_text_weight > 0:
            # As `training.pipelines` gives them: `(B, P, L)` int32 ids and
            # mask, `(B, P)` float32 flags, some phrases absent.
            phrases, phrase_length = config.max_phrases, config.phrase_length
            phrase_padding = (
                np.arange(phrase_length)
                < rng.integers(2, phrase_length, (b, phrases, 1))
            ).astype("int32")
            has_phrase = (
                np.arange(phrases) < rng.integers(1, phrases + 1, (b, 1))
            ).astype("float32")
            phrase_padding *= has_phrase[..., None].astype("int32")
            batches[-1]["phrase_token_ids"] = (
                rng.integers(1, vocabulary_size, (b, phrases, phrase_length))
                .astype("int32")
                * phrase_padding
            )
            batches[-1]["phrase_padding_mask"] = phrase_padding
            batches[-1]["has_phrase"] = has_phrase
    return batches


def run_worker(args):
    """Measures one configuration on this process's backend; prints JSON."""
    import keras
    import numpy as np
    import tensorflow as tf

    from training import train as train_lib
    from training.models import build_backbone
    from training.optimizers import build_optimizer
    from training.pretrainer import TIPSPretrainer

    backend = keras.backend.backend()
    from training import allocator

    retained = allocator.setup(
        {"training": None, "retain": True, "default": False}[args.allocator]
    )
    if args.no_gradient_barrier:
        from keras_tips.layers import gradient_barrier

        gradient_barrier._ENABLED = False
    config = _config(
        args.configs[0], args.recipe, args.batch_size, args.warmup + args.steps
    )
    train_lib.seed_weight_initialization(0)
    started = time.perf_counter()
    vocabulary_size = VOCABULARY_SIZES.get(args.configs[0], VOCABULARY_SIZE)
    backbone = build_backbone(config, vocabulary_size)
    pretrainer = TIPSPretrainer(backbone, config)
    pretrainer.compile(optimizer=build_optimizer(config, pretrainer))
    build_seconds = time.perf_counter() - started
    batches = _random_batches(config, 2, vocabulary_size=vocabulary_size)
    stacked = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
    dataset = tf.data.Dataset.from_tensor_slices(stacked).repeat().prefetch(2)

    class StepTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = []
            self.losses = []

        def on_train_begin(self, logs=None):
            self.begin = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            # Reading the loss waits for the step to finish (async backends).
            self.losses.append(float(np.asarray(logs["loss"])))
            self.ends.append(time.perf_counter())

    times = StepTimes()
    pretrainer.fit(
        dataset,
        epochs=1,
        steps_per_epoch=args.warmup + args.steps,
        verbose=0,
        callbacks=[times],
    )
    first_step = times.ends[0] - times.begin
    timed = times.ends[args.warmup - 1 :]
    seconds = (timed[-1] - timed[0]) / max(len(timed) - 1, 1)
    step_flops = pretraining_step_flops(
        backbone.vision_encoder.get_config(),
        backbone.text_encoder.get_config(),
        config,
        config.batch_size,
        contrastive_on_masked_view=pretrainer.contrastive_on_masked_view,
    )
    # The float32 matmul peak of this backend, measured in this process
    # right after the steps (the machine may be shared).
    roofline = max(
        matmul_roofline(backend, "float32", MATMUL_SIZE, repeats=5).values()
    )
    gflops = step_flops / seconds / 1e9
    record = {
        "kind": "training",
        "config": args.configs[0],
        "recipe": config.recipe,
        "backend": backend,
        "gradient_barrier": not args.no_gradient_barrier,
        "retained_freed_memory": retained,
        "batch_size": config.batch_size,
        "global_crop_size": config.global_crop_size,
        "num_local_crops": config.num_local_crops,
        "cls_num_prototypes": config.cls_num_prototypes,
        "patch_num_prototypes": config.patch_num_prototypes,
        "parameters": int(
            sum(np.prod(v.shape) for v in pretrainer.trainable_variables)
        ),
        "timed_steps": len(timed) - 1,
        "seconds_per_step": seconds,
        "images_per_second": config.batch_size / seconds,
        "gflop_per_step": step_flops / 1e9,
        "gflops": gflops,
        "roofline_gflops": roofline,
        "fraction_of_roofline": gflops / roofline,
        "first_step_seconds": first_step,
        "build_seconds": build_seconds,
        "final_loss": times.losses[-1],
        # Peak resident memory of this fresh process: build, compilation,
        # the steps and the roofline matmuls.
        "peak_rss_mb": peak_rss_mb(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    print("RESULT " + json.dumps(record), flush=True)


def _run_one(backend, config, args, gradient_barrier=True, allocator="training"):
    env = dict(os.environ, KERAS_BACKEND=backend)
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--configs",
        config,
        "--recipe",
        args.recipe,
        "--batch_size",
        str(args.batch_size or DEFAULT_BATCH[config]),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--allocator",
        allocator,
    ] + ([] if gradient_barrier else ["--no_gradient_barrier"])
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=args.timeout,
        )
    except subprocess.TimeoutExpired:
        return {
            "kind": "training",
            "config": config,
            "backend": backend,
            "status": "error",
            "reason": f"timed out after {args.timeout} s",
        }
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {
        "kind": "training",
        "config": config,
        "backend": backend,
        "status": "error",
        "returncode": completed.returncode,
        "stderr_tail": completed.stderr.strip().splitlines()[-8:],
    }


def _append_records(path, records):
    """Appends JSON lines to `path` (`--output`); nothing if it is None."""
    if path:
        with open(path, "a") as file:
            for record in records:
                file.write(json.dumps(record) + "\n")


def _alternating_rounds(backend, config, args, rounds, variants):
    """`rounds` dicts `{variant: record}`, the variants run in turn.

    `variants` maps a name to the `_run_one` keyword arguments of that
    variant; each record is printed and appended to `--output` as it comes.
    """
    for _ in range(rounds):
        records = {}
        for name, options in variants.items():
            record = _run_one(backend, config, args, **options)
            print(json.dumps(record), flush=True)
            _append_records(args.output, [record])
            if "seconds_per_step" not in record:
                raise SystemExit(f"{config}: the {backend} worker failed.")
            records[name] = record
        yield records


def _compare_gradient_barrier(args):
    """JAX step times without / with the barrier, alternating per round."""
    lines = []
    variants = {False: {"gradient_barrier": False}, True: {}}
    for config in args.configs:
        ratios = []
        rounds = _alternating_rounds(
            "jax", config, args, args.compare_gradient_barrier, variants
        )
        for round_index, records in enumerate(rounds):
            seconds = {k: r["seconds_per_step"] for k, r in records.items()}
            ratios.append(seconds[False] / seconds[True])
            lines.append(
                f"{config} round {round_index + 1}: without"
                f" {seconds[False]:.3f} s, with {seconds[True]:.3f} s per"
                f" step, {ratios[-1]:.2f}x"
            )
        lines.append(f"{config}: median speed-up {statistics.median(ratios):.2f}x")
    print()
    print("jax training step without / with the residual gradient barrier")
    print("\n".join(lines))


def _compare_allocator(args):
    """Step times with glibc's defaults / freed memory kept, alternating."""
    lines = []
    variants = {"default": {"allocator": "default"},
                "retain": {"allocator": "retain"}}
    for config in args.configs:
        for backend in args.backends:
            ratios = []
            rounds = _alternating_rounds(
                backend, config, args, args.compare_allocator, variants
            )
            for round_index, records in enumerate(rounds):
                default, retain = records["default"], records["retain"]
                ratios.append(
                    default["seconds_per_step"] / retain["seconds_per_step"]
                )
                lines.append(
                    f"{config} {backend} round {round_index + 1}: default"
                    f" {default['seconds_per_step']:.3f} s"
                    f" ({default['peak_rss_mb'] / 1024:.1f} GB),"
                    f" freed memory kept {retain['seconds_per_step']:.3f} s"
                    f" ({retain['peak_rss_mb'] / 1024:.1f} GB) per step,"
                    f" {ratios[-1]:.2f}x"
                )
            lines.append(
                f"{config} {backend}: median speed-up"
                f" {statistics.median(ratios):.2f}x"
            )
    print()
    print("training step with glibc's defaults / with freed memory kept"
          " (peak RSS)")
    print("\n".join(lines))


def _table(records, configs, backends):
    width = 30
    lines = [
        "training images/s (seconds per step; first step incl. compilation;"
        " % of the float32 matmul roofline)",
        "config".ljust(13) + "".join(b.ljust(width) for b in backends),
    ]
    for config in configs:
        cells = []
        for backend in backends:
            found = [
                r
                for r in records
                if r.get("config") == config and r.get("backend") == backend
            ]
            if not found or "images_per_second" not in found[0]:
                cells.append("error".ljust(width))
                continue
            r = found[0]
            cells.append(
                f"{r['images_per_second']:.2f} ({r['seconds_per_step']:.2f}s;"
                f" {r['first_step_seconds']:.0f}s;"
                f" {100 * r['fraction_of_roofline']:.0f}%)".ljust(width)
            )
        lines.append(config.ljust(13) + "".join(cells))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python tools/benchmark_training.py",
        description="TIPSPretrainer training throughput per backend.",
    )
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--recipe", default="tips", choices=["tips", "tips_v2"])
    parser.add_argument(
        "--batch_size", type=int, default=None, help="Default: tiny 8, S14 4."
    )
    parser.add_argument("--steps", type=int, default=3, help="Timed steps.")
    parser.add_argument(
        "--warmup", type=int, default=2, help="Untimed first steps (>= 1)."
    )
    parser.add_argument("--quick", action="store_true", help="tiny only.")
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--output", default=None, help="JSON lines file.")
    parser.add_argument(
        "--compare_gradient_barrier", type=int, default=0, metavar="ROUNDS",
        help="JAX only: time each config ROUNDS times without and with "
        "keras_tips' residual gradient barrier, alternately, and print "
        "the step-time ratios.",
    )
    parser.add_argument(
        "--compare_allocator", type=int, default=0, metavar="ROUNDS",
        help="Time each config and backend ROUNDS times with glibc's "
        "allocator defaults and with freed memory kept in the process "
        "(training/allocator.py), alternately, and print the ratios.",
    )
    parser.add_argument(
        "--no_gradient_barrier", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--allocator", default="training",
        choices=["training", "default", "retain"], help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for backend in args.backends:
        if backend not in BACKENDS:
            parser.error(f"unknown backend {backend!r}; choose from {BACKENDS}")
    for config in args.configs:
        if config not in CONFIGS:
            parser.error(f"unknown config {config!r}; choose from {CONFIGS}")
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1")
    if args.worker:
        run_worker(args)
        return
    if args.quick:
        args.configs = ["tiny"]
        args.steps = max(args.steps, 5)

    if args.compare_gradient_barrier:
        _compare_gradient_barrier(args)
        return
    if args.compare_allocator:
        _compare_allocator(args)
        return
    records = []
    for config in args.configs:
        for backend in args.backends:
            record = _run_one(backend, config, args)
            records.append(record)
            print(json.dumps(record), flush=True)
    print()
    print(_table(records, args.configs, args.backends))
    _append_records(args.output, records)


if __name__ == "__main__":
    main()
