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

It prints a table and writes JSON lines (`--output`).

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
import platform
import resource
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from tools.flops import text_encoder_flops  # noqa: E402
from tools.flops import vision_encoder_flops  # noqa: E402

# The SentencePiece model that ships inside the package (the embedded
# `tips_tiny_scenes` preset's): random presets need no file from elsewhere.
EMBEDDED_TOKENIZER = os.path.join(
    REPO_ROOT, "keras_tips", "preset_files", "tips_tiny_scenes", "assets",
    "tokenizer", "vocabulary.spm",
)
BACKENDS = ("jax", "tensorflow", "torch")
DTYPES = ("float32", "bfloat16")
# name: (variant size, image side)
MODELS = {
    "S14_224": ("S", 224),
    "B14_224": ("B", 224),
    "B14_448": ("B", 448),
}
TEXT_LENGTH = 64
# Tiny architecture of `--quick` (seconds per backend).
QUICK_VISION = {
    "hidden_dim": 32,
    "num_layers": 2,
    "num_heads": 2,
    "mlp_dim": 64,
    "ffn_layer": "mlp",
    "patch_size": 14,
    "position_grid_size": 4,
    "layer_scale_init": 1.0,
}
QUICK_TEXT = {
    "vocabulary_size": 100,
    "hidden_dim": 32,
    "num_layers": 2,
    "num_heads": 2,
    "mlp_dim": 64,
}
QUICK_IMAGE = 56
QUICK_MATMUL = 256
MATMUL_SIZE = 2048
_PREFIX = "BENCHMARK_RECORD "


# ----------------------------------------------------------------------------
# Worker: runs inside one backend's process.
# ----------------------------------------------------------------------------


def _best_time(run, repeats):
    """(first call seconds, best and median of `repeats` later calls)."""
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    times.sort()
    return first, times[0], times[len(times) // 2]


def matmul_roofline(backend, dtype, size, repeats):
    """Best GFLOP/s of a `size x size` matmul per variant of this backend.

    Returns a dict `{variant: GFLOP/s}`: `"jit"` (XLA for JAX and
    TensorFlow; plain `torch.matmul` for PyTorch, whose eager kernel is
    what a compiled graph calls too) and, for TensorFlow, `"eager"` (the
    oneDNN kernels TensorFlow graphs use without XLA).
    """
    import numpy as np

    host = np.random.RandomState(0).standard_normal((size, size))
    host = host.astype("float32")
    flops = 2 * size**3
    variants = {}
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        matmul = jax.jit(jnp.matmul)
        a = jnp.asarray(host, dtype)
        runs = {"jit": lambda: matmul(a, a).block_until_ready()}
    elif backend == "tensorflow":
        import tensorflow as tf

        matmul = tf.function(tf.matmul, jit_compile=True)
        a = tf.cast(host, dtype)
        runs = {
            "jit": lambda: matmul(a, a).numpy(),
            "eager": lambda: tf.matmul(a, a).numpy(),
        }
    elif backend == "torch":
        import torch

        a = torch.from_numpy(host).to(getattr(torch, dtype))

        def run_torch():
            with torch.inference_mode():
                torch.matmul(a, a)

        runs = {"jit": run_torch}
    else:
        raise ValueError(f"Unknown backend {backend!r}; expected {BACKENDS}.")
    for name, run in runs.items():
        _, best, _ = _best_time(run, repeats)
        variants[name] = flops / best / 1e9
    return variants


def _to_numpy(outputs):
    import keras

    if isinstance(outputs, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
    return keras.ops.convert_to_numpy(outputs)


def _relative_error(actual, reference):
    """(max abs error / max |reference|, ||error|| / ||reference||)."""
    import numpy as np

    actual = np.asarray(actual, "float64")
    reference = np.asarray(reference, "float64")
    error = actual - reference
    return (
        float(np.abs(error).max() / max(np.abs(reference).max(), 1e-30)),
        float(np.linalg.norm(error) / max(np.linalg.norm(reference), 1e-30)),
    )


def _throughput_record(kind, backend, name, dtype, batch, timing, flops):
    first, best, median = timing
    gflops = flops / best / 1e9
    return {
        "kind": kind,
        "backend": backend,
        "model": name,
        "dtype": dtype,
        "batch": batch,
        "items_per_s": batch / best,
        "seconds_per_batch": best,
        "median_seconds_per_batch": median,
        "first_call_s": first,
        "gflop_per_batch": flops / 1e9,
        "gflops": gflops,
    }


def _vision_config(model, quick):
    from keras_tips.variants import vision_config

    if quick:
        return dict(QUICK_VISION), QUICK_IMAGE
    size, image = MODELS[model]
    return vision_config(size), image


def _dinov2(config, image, dtype):
    import keras_hub

    return keras_hub.models.DINOV2Backbone(
        patch_size=config["patch_size"],
        num_layers=config["num_layers"],
        hidden_dim=config["hidden_dim"],
        num_heads=config["num_heads"],
        intermediate_dim=config["mlp_dim"],
        layer_scale_init_value=1.0,
        num_register_tokens=1,
        use_swiglu_ffn=config["ffn_layer"] == "swiglu",
        image_shape=(image, image, 3),
        position_embedding_shape=(image, image, 3),
        apply_layernorm=True,
        dtype=dtype,
    )


def _interleaved_times(runs, repeats):
    """`_best_time` for several callables, timed in turns.

    On a shared machine the load drifts; timing the candidates round-robin
    keeps their ratios fair. A callable may return the seconds it took
    itself (the official encoder, timed in its own process); otherwise the
    call is timed here. Returns `{name: (first, best, median, times)}`,
    `times` in round order, so that ratios can be taken round by round.
    """
    first, times = {}, {name: [] for name in runs}

    def timed(run):
        start = time.perf_counter()
        measured = run()
        elapsed = time.perf_counter() - start
        return measured if isinstance(measured, float) else elapsed

    for name, run in runs.items():
        first[name] = timed(run)
    for _ in range(max(1, repeats)):
        for name, run in runs.items():
            times[name].append(timed(run))
    return {
        name: (first[name], min(t), sorted(t)[len(t) // 2], t)
        for name, t in times.items()
    }


def _round_ratio(numerator_times, denominator_times):
    """Median over rounds of `numerator / denominator` (same round)."""
    ratios = sorted(n / d for n, d in zip(numerator_times, denominator_times))
    return ratios[len(ratios) // 2]


def _jit_settings(backend):
    """Compiled paths to measure: Keras' default, plus graph mode on TF.

    On TensorFlow, `jit_compile=True` (XLA, Keras' default) and
    `jit_compile=False` (a graph running oneDNN kernels) differ on CPU,
    so both are measured.
    """
    return [None, False] if backend == "tensorflow" else [None]


def bench_vision(backend, args, emit):
    """Vision encoder rows: every dtype, jit setting, DINOv2 and the official
    encoder of one model timed in the same round-robin, so that every
    ratio (bfloat16 / float32, TIPS / DINOv2, TIPS / official) compares
    calls made seconds apart."""
    import keras
    import numpy as np

    from keras_tips import TIPSVisionEncoder

    models = ["quick"] if args.quick else args.models
    for model in models:
        config, image = _vision_config(model, args.quick)
        images = np.random.RandomState(1).uniform(
            size=(args.batch, image, image, 3)
        ).astype("float32")
        flops = vision_encoder_flops(
            **config, image_size=(image, image), batch_size=args.batch
        )
        reference_weights = None
        candidates = {}  # (name, dtype) -> network
        for dtype in args.dtypes:
            for jit in _jit_settings(backend):
                suffix = "" if jit is None else " (no XLA)"
                keras.utils.set_random_seed(0)
                encoder = TIPSVisionEncoder(**config, dtype=dtype)
                if reference_weights is None:
                    reference_weights = encoder.get_weights()
                    reference_encoder = encoder
                else:
                    encoder.set_weights(reference_weights)
                if jit is not None:
                    encoder.jit_compile = jit
                candidates[(f"TIPS {model}{suffix}", dtype)] = encoder
                if not args.skip_dinov2:
                    keras.utils.set_random_seed(0)
                    peer = _dinov2(config, image, dtype)
                    if jit is not None:
                        peer.jit_compile = jit
                    candidates[(f"DINOv2 {model}{suffix}", dtype)] = peer
        official = None
        if args.official_tips:
            official = OfficialEncoder(args.official_tips)
            official.load(reference_encoder, config, image, args.batch)
        outputs = {}

        def runner(key, network):
            def run():
                outputs[key] = _to_numpy(network.predict_on_batch(images))

            return run

        runs = {key: runner(key, m) for key, m in candidates.items()}
        official_key = (f"official PyTorch {model}", "float32")
        if official is not None:
            runs[official_key] = official.run
        timings = _interleaved_times(runs, args.repeats)
        if official is not None:
            official_rss = official.peak_rss_mb()
            official.close()
        records = {}
        for key, network in candidates.items():
            name, dtype = key
            record = _throughput_record(
                "vision", backend, name, dtype, args.batch, timings[key][:3],
                flops,
            )
            record.update(
                image_size=image,
                path="predict_on_batch",
                jit_compile=bool(network.jit_compile),
            )
            records[key] = record
        reference = outputs.get((f"TIPS {model}", "float32"))
        for key, record in records.items():
            name, dtype = key
            same_float32 = (name, "float32")
            if dtype != "float32" and same_float32 in timings:
                record["speed_vs_float32"] = _round_ratio(
                    timings[same_float32][3], timings[key][3]
                )
            if not name.startswith("TIPS"):
                continue
            peer = (name.replace("TIPS", "DINOv2", 1), dtype)
            if peer in records:
                record["tips_over_dinov2"] = _round_ratio(
                    timings[peer][3], timings[key][3]
                )
            if official is not None:
                record["over_official"] = _round_ratio(
                    timings[official_key][3], timings[key][3]
                )
            if reference is not None and dtype != "float32":
                cls = _relative_error(
                    outputs[key]["cls_embeddings"],
                    reference["cls_embeddings"],
                )
                patches = _relative_error(
                    outputs[key]["patch_embeddings"],
                    reference["patch_embeddings"],
                )
                record["max_error_vs_float32"] = max(cls[0], patches[0])
                record["l2_error_vs_float32"] = max(cls[1], patches[1])
        for record in records.values():
            emit(record)
        if official is not None:
            record = _throughput_record(
                "official", backend, official_key[0], "float32", args.batch,
                timings[official_key][:3], flops,
            )
            record.update(
                image_size=image,
                path="torch.inference_mode() eager forward",
                implementation="google-deepmind/tips pytorch/image_encoder.py",
                peak_rss_mb=official_rss,
            )
            emit(record)
        candidates.clear()
        del reference_encoder


def bench_text(backend, args, emit):
    import keras
    import numpy as np

    from keras_tips import TIPSTextEncoder
    from keras_tips.variants import text_config

    sizes = ["quick"] if args.quick else sorted(
        {MODELS[m][0] for m in args.models}
    )
    length = 16 if args.quick else TEXT_LENGTH
    rng = np.random.RandomState(2)
    for size in sizes:
        config = dict(QUICK_TEXT) if args.quick else text_config(size)
        token_ids = rng.randint(
            1, config["vocabulary_size"], size=(args.batch, length)
        ).astype("int32")
        lengths = rng.randint(length // 4, length + 1, size=(args.batch,))
        padding_mask = (np.arange(length)[None] < lengths[:, None]).astype(
            "int32"
        )
        token_ids = token_ids * padding_mask
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        flops = text_encoder_flops(
            **config, sequence_length=length, batch_size=args.batch
        )
        for dtype in args.dtypes:
            keras.utils.set_random_seed(0)
            encoder = TIPSTextEncoder(**config, dtype=dtype)
            timing = _best_time(
                lambda: _to_numpy(encoder.predict_on_batch(inputs)),
                args.repeats,
            )
            record = _throughput_record(
                "text", backend, f"TIPS text {size}", dtype, args.batch,
                timing, flops,
            )
            record.update(sequence_length=length, path="predict_on_batch")
            emit(record)
            del encoder


class Roofline:
    """Matmul peak of this backend, re-sampled between model measurements.

    The machine may be shared, so the peak is sampled at the start and again
    before every model; the roofline is the best sample (a peak), and every
    throughput is compared with it only after all samples are in.
    """

    def __init__(self, backend, sizes, repeats):
        self.backend = backend
        self.sizes = sizes
        self.repeats = repeats
        self.samples = {}  # (dtype, size, variant) -> best GFLOP/s

    def sample(self, dtypes, sizes=None):
        for dtype in dtypes:
            for size in sizes or self.sizes:
                variants = matmul_roofline(
                    self.backend, dtype, size, self.repeats
                )
                for variant, value in variants.items():
                    key = (dtype, size, variant)
                    self.samples[key] = max(self.samples.get(key, 0), value)

    def peak(self, dtype):
        values = [v for (d, _, _), v in self.samples.items() if d == dtype]
        return max(values) if values else None

    def records(self):
        out = []
        for dtype in sorted({d for d, _, _ in self.samples}):
            best = max(
                (k for k in self.samples if k[0] == dtype),
                key=self.samples.get,
            )
            out.append(
                {
                    "kind": "roofline",
                    "backend": self.backend,
                    "dtype": dtype,
                    "gflops": self.samples[best],
                    "matmul_size": best[1],
                    "best_variant": best[2],
                    "samples": {
                        f"{size}/{variant}": value
                        for (d, size, variant), value in self.samples.items()
                        if d == dtype
                    },
                }
            )
        return out


def run_worker(args):
    """Measures everything of one backend; prints records as JSON lines."""
    import keras

    backend = keras.backend.backend()
    records = []
    sizes = [QUICK_MATMUL] if args.quick else [args.matmul_size, 2 * args.matmul_size]
    roofline = Roofline(backend, sizes, args.repeats + 2)
    roofline.sample(args.dtypes)

    def emit(record):
        records.append(record)
        # Re-sample the peak next to every measurement (shared machines).
        roofline.sample([record["dtype"]], sizes[:1])

    if "vision" in args.parts:
        bench_vision(backend, args, emit)
    if "text" in args.parts:
        bench_text(backend, args, emit)
    print(
        _PREFIX + json.dumps({"kind": "versions", "versions": _versions(backend)}),
        flush=True,
    )
    for record in roofline.records():
        print(_PREFIX + json.dumps(record), flush=True)
    for record in records:
        roof = roofline.peak(record["dtype"])
        record["roofline_gflops"] = roof
        record["roofline_fraction"] = record["gflops"] / roof if roof else None
        print(_PREFIX + json.dumps(record), flush=True)


# ----------------------------------------------------------------------------
# The official PyTorch encoder (google-deepmind/tips), in its own process.
# ----------------------------------------------------------------------------

def load_official_module(tips_path):
    """Imports `pytorch/image_encoder.py` of a google-deepmind/tips checkout.

    The file is loaded by path (the checkout is not a package on
    `sys.path`); xFormers is disabled (a CUDA library: on CPU the official
    model runs its plain PyTorch attention either way) and its import-time
    warnings are silenced. Nothing is copied into this repository.
    """
    import importlib.util
    import warnings

    path = os.path.join(tips_path, "pytorch", "image_encoder.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: --official-tips must be a checkout of "
            "https://github.com/google-deepmind/tips"
        )
    os.environ.setdefault("XFORMERS_DISABLED", "1")
    spec = importlib.util.spec_from_file_location(
        "official_tips_image_encoder", path
    )
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    return module


def build_official_encoder(tips_path, config, arrays=None):
    """The official encoder for a `TIPSVisionEncoder` config.

    Built as `vit_small`/`vit_base`/... of the official code build theirs
    (one register token, memory-efficient attention class, which without
    xFormers is the plain attention) with the arguments of the official
    `run_image_encoder_inference.py`; `arrays` (official-layout weights,
    `keras_tips.convert.official_arrays`) are loaded if given.
    """
    import functools

    import numpy as np
    import torch

    module = load_official_module(tips_path)
    model = module.VisionTransformer(
        img_size=config["patch_size"] * config["position_grid_size"],
        patch_size=config["patch_size"],
        embed_dim=config["hidden_dim"],
        depth=config["num_layers"],
        num_heads=config["num_heads"],
        mlp_ratio=config["mlp_dim"] / config["hidden_dim"],
        block_fn=functools.partial(module.Block, attn_class=module.MemEffAttention),
        num_register_tokens=1,
        ffn_layer=config.get("ffn_layer", "mlp"),
        block_chunks=0,
        init_values=1.0,
        interpolate_antialias=True,
        interpolate_offset=0.0,
    )
    if arrays is not None:
        model.load_state_dict(
            {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}
        )
    return model.eval()


def run_official_server(args):
    """Serves timed forward passes of the official encoder over stdin/stdout.

    Commands (one JSON object per line): `{"load": npz, "config": {...},
    "image": 224, "batch": 8}` builds the model with those weights and
    random images; `{"run": true}` runs one forward pass under
    `torch.inference_mode()` (outputs converted to NumPy, as ours are) and
    answers the seconds it took, measured here so that the pipe is not
    timed; `{"rss": true}` answers this process's peak resident memory.
    While the keras-tips worker runs, this process blocks on its pipe.
    """
    import numpy as np
    import torch

    state = {}
    for line in sys.stdin:
        command = json.loads(line)
        reply = {}
        if "load" in command:
            arrays = dict(np.load(command["load"]))
            state["model"] = build_official_encoder(
                args.official_tips, command["config"], arrays
            )
            images = np.random.RandomState(1).uniform(
                size=(command["batch"], command["image"], command["image"], 3)
            ).astype("float32")
            # The official code takes normalised NCHW images; keras-tips
            # normalises inside the model, so this side gets that for free.
            state["images"] = torch.from_numpy(
                np.ascontiguousarray(images.transpose(0, 3, 1, 2))
            )
            reply["threads"] = torch.get_num_threads()
        elif "run" in command:
            start = time.perf_counter()
            with torch.inference_mode():
                outputs = state["model"](state["images"])
                [o.numpy() for o in outputs]
            reply["seconds"] = time.perf_counter() - start
        elif "rss" in command:
            reply["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(reply), flush=True)


class OfficialEncoder:
    """Client of `run_official_server`, running in a subprocess."""

    def __init__(self, tips_path):
        env = dict(os.environ)
        env.pop("KERAS_BACKEND", None)
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--official-server",
             "--official-tips", tips_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=env, cwd=REPO_ROOT,
        )

    def _ask(self, command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the official encoder's process exited")
        return json.loads(line)

    def load(self, encoder, config, image, batch):
        import numpy as np

        from keras_tips import convert

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "vision.npz")
            np.savez(path, **convert.official_arrays(encoder))
            return self._ask(
                {"load": path, "config": config, "image": image,
                 "batch": batch}
            )

    def run(self):
        return self._ask({"run": True})["seconds"]

    def peak_rss_mb(self):
        return self._ask({"rss": True})["peak_rss_mb"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


# ----------------------------------------------------------------------------
# Time to first embedding (its own fresh process per backend).
# ----------------------------------------------------------------------------


def make_random_preset(directory, size="B", quick=False):
    """Writes a random-weight preset through the official-checkpoint path.

    Random official-layout `*_vision.npz` / `*_text.npz` files are converted
    with `keras_tips.convert.convert_to_preset` (with the SentencePiece
    model that ships inside the package, `EMBEDDED_TOKENIZER`), exactly as a downloaded checkpoint would be.
    """
    import keras
    import numpy as np

    from keras_tips import convert
    from keras_tips.text_encoder import TIPSTextEncoder
    from keras_tips.variants import text_config
    from keras_tips.vision_encoder import TIPSVisionEncoder

    tokenizer = EMBEDDED_TOKENIZER
    keras.utils.set_random_seed(0)
    if quick:
        vision_cfg = dict(QUICK_VISION)
        text_cfg = dict(QUICK_TEXT, vocabulary_size=32000)
    else:
        vision_cfg, _ = _vision_config(f"{size}14_224", False)
        text_cfg = text_config(size)
    vision = TIPSVisionEncoder(**vision_cfg)
    text = TIPSTextEncoder(**text_cfg)
    with tempfile.TemporaryDirectory() as staging:
        vision_path = os.path.join(staging, "random_vision.npz")
        text_path = os.path.join(staging, "random_text.npz")
        np.savez(vision_path, **convert.official_arrays(vision))
        np.savez(
            text_path,
            **convert.official_arrays(text),
            temperature=np.float32(0.07),
        )
        convert.convert_to_preset(
            vision_path,
            text_path,
            tokenizer,
            directory,
            num_heads=vision_cfg["num_heads"],
            image_size=224,
            overwrite=True,
        )
    return directory


def run_first_embedding(args):
    """Import, `from_preset`, first compiled call; prints one record."""
    start = time.perf_counter()
    import keras  # noqa: F401

    import keras_tips

    imported = time.perf_counter()
    backbone = keras_tips.TIPSBackbone.from_preset(args.preset)
    loaded = time.perf_counter()
    import numpy as np

    image = np.random.RandomState(3).uniform(size=(1, 224, 224, 3))
    outputs = backbone.vision_encoder.predict_on_batch(
        image.astype("float32")
    )
    np.asarray(outputs["cls_embeddings"])
    done = time.perf_counter()
    record = {
        "kind": "first_embedding",
        "backend": keras.backend.backend(),
        "model": "TIPS B14 preset" if not args.quick else "TIPS quick preset",
        "import_s": imported - start,
        "from_preset_s": loaded - imported,
        "first_call_s": done - loaded,
        "in_process_s": done - start,
        "peak_rss_mb": peak_rss_mb(),
    }
    print(_PREFIX + json.dumps(record), flush=True)


# ----------------------------------------------------------------------------
# Peak resident memory of inference (a fresh process per backend and model).
# ----------------------------------------------------------------------------


def _rss_mb():
    """Current resident memory of this process (MB), from /proc."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return None


def peak_rss_mb():
    """Peak resident memory of this process (MB).

    `VmHWM` of /proc/self/status: the high-water mark of this process's own
    address space. (`getrusage`'s `ru_maxrss` survives `fork` + `exec`, so
    in a subprocess it is never below the parent's memory at the fork.)
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_memory_probe(args):
    """Peak RSS of `predict_on_batch` of one model (float32), fresh process.

    Prints one record: the resident memory after the imports, and the peak
    (`peak_rss_mb`) after building the encoder and two calls (compilation
    and one steady-state call). With `--official-tips`, the official
    encoder runs the same two calls in its own fresh process, whose peak
    is reported alongside.
    """
    import keras
    import numpy as np

    from keras_tips import TIPSVisionEncoder

    imported = _rss_mb()
    model = args.models[0]
    config, image = _vision_config(model, args.quick)
    keras.utils.set_random_seed(0)
    encoder = TIPSVisionEncoder(**config)
    images = np.random.RandomState(1).uniform(
        size=(args.batch, image, image, 3)
    ).astype("float32")
    for _ in range(2):
        _to_numpy(encoder.predict_on_batch(images))
    record = {
        "kind": "memory",
        "backend": keras.backend.backend(),
        "model": f"TIPS {'quick' if args.quick else model}",
        "dtype": "float32",
        "batch": args.batch,
        "image_size": image,
        "rss_after_import_mb": imported,
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.official_tips:
        official = OfficialEncoder(args.official_tips)
        official.load(encoder, config, image, args.batch)
        for _ in range(2):
            official.run()
        record["official_peak_rss_mb"] = official.peak_rss_mb()
        official.close()
    print(_PREFIX + json.dumps(record), flush=True)


# ----------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def _versions(backend):
    import keras
    import keras_hub
    import numpy

    versions = {
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "numpy": numpy.__version__,
    }
    module = {"tensorflow": "tensorflow"}.get(backend, backend)
    versions[backend] = __import__(module).__version__
    return versions


def _subprocess(command, backend, timeout):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    return subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout,
    )


def _records(result):
    return [
        json.loads(line[len(_PREFIX):])
        for line in result.stdout.splitlines()
        if line.startswith(_PREFIX)
    ]


def _error_record(kind, backend, result):
    tail = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
    return {
        "kind": "error",
        "part": kind,
        "backend": backend,
        "returncode": result.returncode,
        "message": " | ".join(tail),
    }


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


def training_records(args):
    """Records of `tools/benchmark_training.py` on `args.backends`."""
    tool = os.path.join(REPO_ROOT, "tools", "benchmark_training.py")
    with tempfile.TemporaryDirectory() as tmp:
        output = os.path.join(tmp, "training.jsonl")
        command = [sys.executable, tool, "--output", output,
                   "--backends", *args.backends]
        if args.quick:
            command.append("--quick")
        result = _subprocess(command, "jax", timeout=args.timeout)
        records = []
        if os.path.exists(output):
            with open(output) as f:
                records = [json.loads(line) for line in f if line.strip()]
    if result.returncode != 0 or not records:
        records.append(_error_record("training", "all", result))
    return records


# Input pipeline sizes matching each training configuration's crops.
PIPELINE_ARGS = {
    "full": [],  # the real defaults: 224 + 6 x 98 crops, batch 32 (S14)
    "quick": [
        "--global-crop-size", "56", "--local-crop-size", "28",
        "--num-local-crops", "2", "--batch-size", "8", "--num-images", "64",
        "--num-shards", "2", "--image-size", "64", "--warmup-batches", "2",
        "--batches", "10",
    ],
}


def pipeline_record(args):
    """Images/s of the input pipeline alone (`tools/benchmark_data.py`).

    With the crops of the measured training configuration (the full S/14
    recipe, or the tiny one under `--quick`), so that the two rates can be
    compared: the pipeline must outrun what the training step consumes.
    """
    tool = os.path.join(REPO_ROOT, "tools", "benchmark_data.py")
    command = [sys.executable, tool, "--json"]
    command += PIPELINE_ARGS["quick" if args.quick else "full"]
    result = _subprocess(command, "tensorflow", timeout=args.timeout)
    lines = [
        line for line in result.stdout.splitlines() if line.startswith("{")
    ]
    if result.returncode != 0 or not lines:
        return _error_record("input_pipeline", "tensorflow", result)
    record = json.loads(lines[-1])
    record["kind"] = "input_pipeline"
    return record


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
        "machine": _machine(),
        "load_average_at_start": list(load),
        "args": {
            k: v for k, v in vars(args).items() if k not in ("output", "worker")
        },
        "versions": {},
    }
    records.append(meta)
    print(
        f"Benchmark on {meta['machine']['cpu']} ({meta['machine']['cores']} "
        f"cores), load average {load[0]:.2f}",
        flush=True,
    )
    script = os.path.abspath(__file__)
    for backend in args.backends:
        if {"vision", "text"} & set(args.parts):
            print(f"[{backend}] throughput ...", flush=True)
            result = _subprocess(
                [sys.executable, script, "--worker", *_worker_argv(args)],
                backend, timeout=args.timeout,
            )
            got = _records(result)
            for record in got:
                if record["kind"] == "versions":
                    meta["versions"][backend] = record["versions"]
            records += [r for r in got if r["kind"] != "versions"]
            if result.returncode != 0:
                records.append(_error_record("throughput", backend, result))
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
                result = _subprocess(command, backend, timeout=args.timeout)
                got = _records(result)
                records += got
                if result.returncode != 0 or not got:
                    records.append(_error_record("memory", backend, result))
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
                "import sys; from tools.benchmark import make_random_preset; "
                f"make_random_preset({preset!r}, quick={args.quick!r})"
            )
            result = _subprocess(
                [sys.executable, "-c", code], args.backends[0], args.timeout
            )
            if result.returncode != 0:
                records.append(_error_record("preset", "all", result))
        for backend in args.backends:
            print(f"[{backend}] time to first embedding ...", flush=True)
            command = [sys.executable, script, "--first-embedding",
                       "--preset", preset]
            if args.quick:
                command.append("--quick")
            start = time.perf_counter()
            result = _subprocess(command, backend, timeout=args.timeout)
            total = time.perf_counter() - start
            got = _records(result)
            for record in got:
                record["total_s"] = total  # interpreter start to exit
            records += got
            if result.returncode != 0 or not got:
                records.append(_error_record("first_embedding", backend, result))
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
