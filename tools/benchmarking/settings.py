"""What the inference benchmark measures: backends, dtypes, model sizes.

The released sizes (`MODELS`), the tiny architecture of `--quick`, the
matmul sizes of the roofline, and where the benchmark finds its script and
the SentencePiece model of its random presets.
"""

import os

TOOLS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(TOOLS_DIR)
# The script whose hidden flags run the fresh-process measurements.
BENCHMARK_SCRIPT = os.path.join(TOOLS_DIR, "benchmark.py")
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
# Marks the lines of a worker's stdout that are records (JSON).
RECORD_PREFIX = "BENCHMARK_RECORD "


def vision_setting(model, quick):
    """(vision encoder config, image side) of a `MODELS` name or `--quick`."""
    from keras_tips.variants import vision_config

    if quick:
        return dict(QUICK_VISION), QUICK_IMAGE
    size, image = MODELS[model]
    return vision_config(size), image
