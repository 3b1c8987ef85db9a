"""Throughput of our encoders, next to keras-hub's DINOv2 and the official one.

`TIPSVisionEncoder` forward images/s through the compiled inference path
(`predict_on_batch`) in every dtype, with keras-hub's `DINOV2Backbone` of
the same shape and (with `--official-tips`) the official PyTorch encoder
timed in the same round-robin; `TIPSTextEncoder` texts/s. Runs inside one
backend's worker process.
"""

from .flops import text_encoder_flops
from .flops import vision_encoder_flops
from .official import OfficialEncoder
from .settings import MODELS
from .settings import QUICK_TEXT
from .settings import TEXT_LENGTH
from .settings import vision_setting
from .timing import best_time
from .timing import interleaved_times
from .timing import round_ratio
from .timing import throughput_record


def to_numpy(outputs):
    """A model's outputs (a tensor or a dict of them) as NumPy arrays."""
    import keras

    if isinstance(outputs, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
    return keras.ops.convert_to_numpy(outputs)


def relative_error(actual, reference):
    """(max abs error / max |reference|, ||error|| / ||reference||)."""
    import numpy as np

    actual = np.asarray(actual, "float64")
    reference = np.asarray(reference, "float64")
    error = actual - reference
    return (
        float(np.abs(error).max() / max(np.abs(reference).max(), 1e-30)),
        float(np.linalg.norm(error) / max(np.linalg.norm(reference), 1e-30)),
    )


def dinov2_peer(config, image, dtype):
    """keras-hub's DINOv2 of a vision config's shape (one register token)."""
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


# Recompilations torch's Dynamo allows per code object. Keras' layer
# machinery makes Dynamo compile every block of the encoder on its own, and
# with torch's default (8) the blocks after the eighth fall back to eager.
TORCH_COMPILE_RECOMPILE_LIMIT = 64


def jit_settings(backend):
    """Compiled paths to measure besides Keras' default.

    On TensorFlow, `jit_compile=True` (XLA, Keras' default) and
    `jit_compile=False` (a graph running oneDNN kernels) differ on CPU,
    so both are measured. On torch, Keras' default runs eagerly;
    `jit_compile=True` runs `predict` through `torch.compile` (Inductor),
    measured in float32 only (each compilation takes about a minute at
    B/14).

    Returns:
        `(jit_compile, row suffix, dtypes or None for all)` tuples, Keras'
        default (`jit_compile` None) first.
    """
    settings = [(None, "", None)]
    if backend == "tensorflow":
        settings.append((False, " (no XLA)", None))
    if backend == "torch":
        settings.append((True, " (torch.compile)", ("float32",)))
    return settings


def _allow_torch_recompiles():
    import torch

    config = torch._dynamo.config
    config.recompile_limit = max(
        config.recompile_limit, TORCH_COMPILE_RECOMPILE_LIMIT
    )


def bench_vision(backend, args, emit):
    """Vision encoder rows: every dtype, jit setting, DINOv2 and the official
    encoder of one model timed in the same round-robin, so that every
    ratio (bfloat16 / float32, TIPS / DINOv2, TIPS / official) compares
    calls made seconds apart."""
    import keras
    import numpy as np

    from keras_tips import TIPSVisionEncoder

    if backend == "torch":
        _allow_torch_recompiles()  # for the torch.compile rows
    models = ["quick"] if args.quick else args.models
    for model in models:
        config, image = vision_setting(model, args.quick)
        images = np.random.RandomState(1).uniform(
            size=(args.batch, image, image, 3)
        ).astype("float32")
        flops = vision_encoder_flops(
            **config, image_size=(image, image), batch_size=args.batch
        )
        reference_weights = None
        candidates = {}  # (name, dtype) -> network
        for dtype in args.dtypes:
            for jit, suffix, jit_dtypes in jit_settings(backend):
                if jit_dtypes is not None and dtype not in jit_dtypes:
                    continue
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
                # DINOv2 is compared on Keras' default paths only (under
                # torch.compile it would add another minute's compilation).
                if not args.skip_dinov2 and not (backend == "torch" and jit):
                    keras.utils.set_random_seed(0)
                    peer = dinov2_peer(config, image, dtype)
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
                outputs[key] = to_numpy(network.predict_on_batch(images))

            return run

        runs = {key: runner(key, m) for key, m in candidates.items()}
        official_key = (f"official PyTorch {model}", "float32")
        if official is not None:
            runs[official_key] = official.run
        timings = interleaved_times(runs, args.repeats)
        if official is not None:
            official_rss = official.peak_rss_mb()
            official.close()
        records = {}
        for key, network in candidates.items():
            name, dtype = key
            record = throughput_record(
                "vision", backend, name, dtype, args.batch, timings[key][:3],
                flops,
            )
            record.update(
                image_size=image,
                path="predict_on_batch",
                jit_compile=bool(network.jit_compile),
            )
            records[key] = record
        reference_key = (f"TIPS {model}", "float32")
        reference = outputs.get(reference_key)
        for key, record in records.items():
            name, dtype = key
            same_float32 = (name, "float32")
            if dtype != "float32" and same_float32 in timings:
                record["speed_vs_float32"] = round_ratio(
                    timings[same_float32][3], timings[key][3]
                )
            if not name.startswith("TIPS"):
                continue
            peer = (name.replace("TIPS", "DINOv2", 1), dtype)
            if peer in records:
                record["tips_over_dinov2"] = round_ratio(
                    timings[peer][3], timings[key][3]
                )
            if official is not None:
                record["over_official"] = round_ratio(
                    timings[official_key][3], timings[key][3]
                )
            if reference is not None and key != reference_key:
                cls = relative_error(
                    outputs[key]["cls_embeddings"],
                    reference["cls_embeddings"],
                )
                patches = relative_error(
                    outputs[key]["patch_embeddings"],
                    reference["patch_embeddings"],
                )
                record["max_error_vs_float32"] = max(cls[0], patches[0])
                record["l2_error_vs_float32"] = max(cls[1], patches[1])
        for record in records.values():
            emit(record)
        if official is not None:
            record = throughput_record(
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
    """Text encoder rows: texts/s at `TEXT_LENGTH` tokens in every dtype."""
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
            timing = best_time(
                lambda: to_numpy(encoder.predict_on_batch(inputs)),
                args.repeats,
            )
            record = throughput_record(
                "text", backend, f"TIPS text {size}", dtype, args.batch,
                timing, flops,
            )
            record.update(sequence_length=length, path="predict_on_batch")
            emit(record)
            del encoder
