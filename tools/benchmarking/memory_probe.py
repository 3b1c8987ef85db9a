"""Peak resident memory of inference, measured in a fresh process.

`python tools/benchmark.py --memory-probe` runs `run_memory_probe` once per
backend and image size, so that no earlier model inflates the peak.
"""

import json

from .encoders import to_numpy
from .memory import peak_rss_mb
from .memory import rss_mb
from .official import OfficialEncoder
from .settings import RECORD_PREFIX
from .settings import vision_setting


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

    imported = rss_mb()
    model = args.models[0]
    config, image = vision_setting(model, args.quick)
    keras.utils.set_random_seed(0)
    encoder = TIPSVisionEncoder(**config)
    images = np.random.RandomState(1).uniform(
        size=(args.batch, image, image, 3)
    ).astype("float32")
    for _ in range(2):
        to_numpy(encoder.predict_on_batch(images))
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
    print(RECORD_PREFIX + json.dumps(record), flush=True)
