"""Inference benchmark of keras-tips against the machine's matmul roofline.

One run measures, side by side on the same machine and for each backend
(every backend in its own subprocess, since `KERAS_BACKEND` is fixed per
process):

- the matrix-multiply peak (GFLOP/s) for float32 and bfloat16: a large
  square matmul, jit-compiled (and, where the backend has one, through its
  eager kernel library), best of N; the best variant is the roofline;
- `TIPSVisionEncoder` forward images/s (S/14 and B/14 at 224, B/14 at 448,
  batch 8) in float32 and bfloat16, through the compiled inference path
  (`predict_on_batch`), with the analytic FLOP count, the achieved GFLOP/s
  and the fraction of the roofline of the same dtype; for bfloat16 also
  the error of the outputs relative to float32 with the same weights;
  besides Keras' default path, tensorflow's graph path
  (`jit_compile=False`, rows "(no XLA)") and, in float32, torch's
  `torch.compile` path (`jit_compile=True`, rows "(torch.compile)"), each
  with its error relative to the default float32 row;
- keras-hub's `DINOV2Backbone` with one register token and the same
  width, depth, heads and MLP width (same token count, same FLOPs), and the
  ratio TIPS / DINOv2;
- `TIPSTextEncoder` texts/s at 64 tokens;
- with `--official-tips PATH` (a checkout of google-deepmind/tips), the
  official PyTorch encoder (`pytorch/image_encoder.py`, eager, same
  weights) in its own process, timed in the same round-robin as the
  float32/bfloat16 rows; `x official` is the median of per-round ratios;
- peak resident memory of B/14 float32 inference (a fresh process per
  backend and image size; the official encoder's in its own process);
- time to first embedding for B/14 (a fresh process: import, `from_preset`
  of a locally converted random-weight B/14 preset, first call including
  compilation) and its peak resident memory;
- training images/s from `tools/benchmark_training.py` when that tool
  exists (otherwise a "not measured" line).

On a machine with a CUDA GPU every side runs there (Keras places its arrays
on the GPU itself; the official encoder and the torch matmul roofline
follow `torch.cuda.is_available()`); the run record names each backend's
device, and both sides copy host images in and return host arrays per call.

It prints a table and writes JSON lines (`--output`). This file is the
command line, the driver and the report table; the measurements are in
`tools/benchmarking/`, imported as this script's sibling folder.

Usage:
    python tools/benchmark.py --output benchmark.jsonl
    python tools/benchmark.py --backends jax --models B14_224 --repeats 5
    python tools/benchmark.py --quick --backends jax  # tiny sizes, seconds
    python tools/benchmark.py --official-tips ../tips --models B14_224 B14_448 \
        --parts vision memory --skip-dinov2
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

from benchmarking.first_embedding import run_first_embedding
from benchmarking.machine import describe_machine
from benchmarking.memory_probe import run_memory_probe
from benchmarking.official import run_official_server
from benchmarking.processes import error_record
from benchmarking.processes import read_records
from benchmarking.processes import run_in_backend
from benchmarking.settings import BACKENDS
from benchmarking.settings import DTYPES
from benchmarking.settings import MATMUL_SIZE
from benchmarking.settings import MODELS
from benchmarking.training_throughput import pipeline_record
from benchmarking.training_throughput import training_records
from benchmarking.worker import run_worker


def _worker_argv(args):
    argv = [
        "--batch", str(args.batch),
        "--repeats", str(args.repeats),
        "--matmul-size", str(args.matmul_size),
        "--models", *args.models,
        "--dtypes", *args.dtypes,
        "--parts", *[p for p in args.parts if p in ("vision", "text")],
    ]
    if args.quick:
        argv.append("--quick")
    if args.skip_dinov2:
        argv.append("--skip-dinov2")
    if args.official_tips:
        argv += ["--official-tips", os.path.abspath(args.official_tips)]
    return argv


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(records, out=sys.stdout):
    roof = {
        (r["backend"], r["dtype"]): r["gflops"]
        for r in records
        if r["kind"] == "roofline"
    }
    print("\nMatmul roofline (GFLOP/s):", file=out)
    for (backend, dtype), value in sorted(roof.items()):
        print(f"  {backend:<11} {dtype:<9} {value:8.1f}", file=out)
    rows = [
        r for r in records if r["kind"] in ("vision", "text", "official")
    ]
    if rows:
        header = (
            f"\n{'backend':<11}{'model':<32}{'dtype':<10}{'items/s':>9}"
            f"{'GFLOP/s':>9}{'roof%':>7}{'x official':>11}{'vs f32':>8}"
            f"{'vs DINOv2':>10}{'err vs f32':>11}"
        )
        print(header, file=out)
        for r in rows:
            fraction = r.get("roofline_fraction")
            backend = r["backend"]
            if r["kind"] == "official":
                backend = f"({backend})"
            print(
                f"{backend:<11}{r['model']:<32}{r['dtype']:<10}"
                f"{r['items_per_s']:9.2f}{r['gflops']:9.1f}"
                f"{_fmt(None if fraction is None else 100 * fraction, '6.1f'):>7}"
                f"{_fmt(r.get('over_official'), '10.2f'):>11}"
                f"{_fmt(r.get('speed_vs_float32'), '7.2f'):>8}"
                f"{_fmt(r.get('tips_over_dinov2'), '9.2f'):>10}"
                f"{_fmt(r.get('max_error_vs_float32'), '10.1e'):>11}",
                file=out,
            )
        if any(r["kind"] == "official" for r in rows):
            print(
                "(backend) rows: the official PyTorch encoder, timed in the "
                "same round-robin as that backend's rows; x official and vs "
                "f32 are medians of per-round ratios",
                file=out,
            )
    for r in records:
        if r["kind"] == "memory":
            official = r.get("official_peak_rss_mb")
            print(
                f"\npeak RSS {r['backend']:<11} {r['model']} float32 batch "
                f"{r['batch']} inference: {r['peak_rss_mb']:.0f} MB (after "
                f"imports {_fmt(r['rss_after_import_mb'], '.0f')} MB)"
                + ("" if official is None else
                   f"; official PyTorch encoder {official:.0f} MB"),
                file=out,
            )
    for r in records:
        if r["kind"] == "first_embedding":
            print(
                f"\nfirst embedding {r['backend']:<11} {r['model']}: "
                f"{r['total_s']:.1f} s (import {r['import_s']:.1f}, "
                f"from_preset {r['from_preset_s']:.1f}, first call "
                f"{r['first_call_s']:.1f}), peak RSS {r['peak_rss_mb']:.0f} MB",
                file=out,
            )
        elif r["kind"] == "training" and "images_per_second" in r:
            ratio = r.get("input_pipeline_over_training")
            print(
                f"\ntraining {r['backend']:<11} {r['config']} batch "
                f"{r['batch_size']}: {r['images_per_second']:.2f} img/s, "
                f"{r['gflops']:.1f} GFLOP/s = "
                f"{100 * r['fraction_of_roofline']:.0f}% of the float32 "
                f"roofline; input pipeline alone "
                f"{_fmt(ratio, '.1f')}x faster; peak RSS "
                f"{_fmt(r.get('peak_rss_mb'), '.0f')} MB",
                file=out,
            )
        elif r["kind"] == "input_pipeline":
            print(
                f"\ninput pipeline alone: {r['images_per_s']:.1f} img/s "
                f"(global {r['global_crop_size']} + {r['num_local_crops']} x "
                f"{r['local_crop_size']} crops, batch {r['batch_size']})",
                file=out,
            )
        elif r["kind"] == "training":
            print(f"\ntraining: {json.dumps(r)}", file=out)
        elif r["kind"] == "error":
            print(f"\nERROR {r['part']} {r['backend']}: {r['message']}", file=out)


def run_driver(args):
    records = []
    load = os.getloadavg()
    meta = {
        "kind": "run",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": describe_machine(),
        "load_average_at_start": list(load),
        "args": {
            k: v for k, v in vars(args).items() if k not in ("output", "worker")
        },
        "versions": {},
    }
    records.append(meta)
    gpus = meta["machine"]["gpus"]
    print(
        f"Benchmark on {meta['machine']['cpu']} ({meta['machine']['cores']} "
        f"cores{', GPUs: ' + ', '.join(gpus) if gpus else ''}), "
        f"load average {load[0]:.2f}",
        flush=True,
    )
    script = os.path.abspath(__file__)
    for backend in args.backends:
        if {"vision", "text"} & set(args.parts):
            print(f"[{backend}] throughput ...", flush=True)
            result = run_in_backend(
                [sys.executable, script, "--worker", *_worker_argv(args)],
                backend, timeout=args.timeout,
            )
            got = read_records(result)
            for record in got:
                if record["kind"] == "versions":
                    meta["versions"][backend] = record["versions"]
                    meta.setdefault("devices", {})[backend] = record["device"]
                    print(f"[{backend}] runs on {record['device']}", flush=True)
            records += [r for r in got if r["kind"] != "versions"]
            if result.returncode != 0:
                records.append(error_record("throughput", backend, result))
            _log_partial(args, records)
    if "memory" in args.parts:
        models = ["quick"] if args.quick else [
            m for m in args.models if m.startswith("B14")
        ] or args.models[:1]
        for backend in args.backends:
            for model in models:
                print(f"[{backend}] peak memory {model} ...", flush=True)
                command = [sys.executable, script, "--memory-probe",
                           "--batch", str(args.batch)]
                if args.quick:
                    command.append("--quick")
                else:
                    command += ["--models", model]
                if args.official_tips:
                    command += ["--official-tips",
                                os.path.abspath(args.official_tips)]
                result = run_in_backend(command, backend, timeout=args.timeout)
                got = read_records(result)
                records += got
                if result.returncode != 0 or not got:
                    records.append(error_record("memory", backend, result))
    if "first_embedding" in args.parts:
        preset = args.preset
        if preset is None:
            preset = os.path.join(
                tempfile.gettempdir(),
                "keras_tips_benchmark",
                "random_quick" if args.quick else "random_b14",
            )
        if not os.path.isdir(preset):
            print(f"writing random preset to {preset} ...", flush=True)
            code = (
                "from tools.benchmarking.first_embedding import "
                "make_random_preset; "
                f"make_random_preset({preset!r}, quick={args.quick!r})"
            )
            result = run_in_backend(
                [sys.executable, "-c", code], args.backends[0], args.timeout
            )
            if result.returncode != 0:
                records.append(error_record("preset", "all", result))
        for backend in args.backends:
            print(f"[{backend}] time to first embedding ...", flush=True)
            command = [sys.executable, script, "--first-embedding",
                       "--preset", preset]
            if args.quick:
                command.append("--quick")
            start = time.perf_counter()
            result = run_in_backend(command, backend, timeout=args.timeout)
            total = time.perf_counter() - start
            got = read_records(result)
            for record in got:
                record["total_s"] = total  # interpreter start to exit
            records += got
            if result.returncode != 0 or not got:
                records.append(error_record("first_embedding", backend, result))
    if "training" in args.parts:
        print("training (tools/benchmark_training.py) ...", flush=True)
        training = training_records(args)
        print("input pipeline (tools/benchmark_data.py) ...", flush=True)
        pipeline = pipeline_record(args)
        for record in training:
            same_crops = all(
                record.get(key) == pipeline.get(key)
                for key in ("global_crop_size", "num_local_crops")
            )
            if "images_per_second" in record and same_crops:
                record["input_pipeline_over_training"] = (
                    pipeline["images_per_s"] / record["images_per_second"]
                )
        records += training + [pipeline]
    meta["load_average_at_end"] = list(os.getloadavg())
    print_table(records)
    print(
        f"\nload average at start {load[0]:.2f}, at end "
        f"{meta['load_average_at_end'][0]:.2f}"
    )
    if args.output:
        with open(args.output, "a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
        print(f"wrote {len(records)} records to {args.output}")
        if os.path.exists(args.output + ".partial"):
            os.remove(args.output + ".partial")
    return records


def _log_partial(args, records):
    """Keeps finished backends' records on disk while a long run goes on."""
    if args.output:
        with open(args.output + ".partial", "w") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS),
                        choices=BACKENDS)
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        choices=list(MODELS))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES),
                        choices=DTYPES)
    parser.add_argument(
        "--parts", nargs="+",
        default=["vision", "text", "memory", "first_embedding", "training"],
        choices=["vision", "text", "memory", "first_embedding", "training"],
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed calls after the warm-up call; best is kept")
    parser.add_argument("--matmul-size", type=int, default=MATMUL_SIZE)
    parser.add_argument("--skip-dinov2", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (for tests)")
    parser.add_argument("--output", help="append JSON lines to this file")
    parser.add_argument("--preset", help="preset directory for first embedding"
                        " (default: a random B/14 preset, written once)")
    parser.add_argument("--timeout", type=int, default=3600,
                        help="seconds per subprocess")
    parser.add_argument(
        "--official-tips", metavar="PATH",
        help="a checkout of github.com/google-deepmind/tips: its PyTorch "
        "encoder is timed in the same run, interleaved with keras-tips "
        "(float32 vision rows)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--official-server", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("--memory-probe", action="store_true",
                        help=argparse.SUPPRESS)
    parser.add_argument("--first-embedding", action="store_true",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.official_server:
        run_official_server(args)
    elif args.memory_probe:
        run_memory_probe(args)
    elif args.worker:
        run_worker(args)
    elif args.first_embedding:
        run_first_embedding(args)
    else:
        run_driver(args)


if __name__ == "__main__":
    main()
