"""Time to first embedding: import, `from_preset`, first compiled call.

Measured in a fresh process per backend (`python tools/benchmark.py
--first-embedding`) on a preset written once by `make_random_preset`, a
random-weight B/14 converted through the official-checkpoint path.
"""

import json
import os
import tempfile
import time

from .memory import peak_rss_mb
from .settings import EMBEDDED_TOKENIZER
from .settings import QUICK_TEXT
from .settings import QUICK_VISION
from .settings import RECORD_PREFIX
from .settings import vision_setting


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
        vision_cfg, _ = vision_setting(f"{size}14_224", False)
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
    print(RECORD_PREFIX + json.dumps(record), flush=True)
