"""The named TIPS presets, as plain data: names, sources and descriptions.

`PRESETS` lists every released checkpoint of the official repository (where
its `.npz` files lie under `OFFICIAL_BASE_URL`, its size and image size);
`EMBEDDED_PRESETS` the presets that ship inside the package, under
`EMBEDDED_DIR`. Nothing here downloads, converts or imports a model class:
`keras_tips.presets` loads what this table names.
"""

import os

OFFICIAL_BASE_URL = "https://storage.googleapis.com/tips_data"
TOKENIZER_PATH = "v1_0/checkpoints/tokenizer.model"
EMBEDDED_DIR = os.path.join(os.path.dirname(__file__), "preset_files")
# The SentencePiece model of the embedded `tips_tiny_scenes` preset: a
# tokenizer any tool can use from a plain clone.
EMBEDDED_TOKENIZER = os.path.join(
    EMBEDDED_DIR, "tips_tiny_scenes", "assets", "tokenizer", "vocabulary.spm"
)
MODEL_CARD = "https://github.com/google-deepmind/tips"


def _official(release, checkpoint, size, image_size, description):
    folder = {"v1": "v1_0", "v2": "v2_0"}[release]
    return {
        "checkpoint": checkpoint,
        "path": f"{folder}/checkpoints/pytorch/{checkpoint}",
        "size": size,
        "image_size": image_size,
        "description": description,
    }


# Every released checkpoint of the official repository.
PRESETS = {
    "tips_v1_s14_highres": _official(
        "v1", "tips_oss_s14_highres_distilled", "S", 448,
        "TIPS v1 ViT-S/14, high resolution, distilled from g/14."),
    "tips_v1_b14_highres": _official(
        "v1", "tips_oss_b14_highres_distilled", "B", 448,
        "TIPS v1 ViT-B/14, high resolution, distilled from g/14."),
    "tips_v1_l14_highres": _official(
        "v1", "tips_oss_l14_highres_distilled", "L", 448,
        "TIPS v1 ViT-L/14, high resolution, distilled from g/14."),
    "tips_v1_so400m14_highres": _official(
        "v1", "tips_oss_so400m14_highres_largetext_distilled", "So400m", 448,
        "TIPS v1 SoViT-400m/14 with the 27-layer text tower, distilled."),
    "tips_v1_g14_lowres": _official(
        "v1", "tips_oss_g14_lowres", "g", 224,
        "TIPS v1 ViT-g/14 (SwiGLU), 224 px."),
    "tips_v1_g14_highres": _official(
        "v1", "tips_oss_g14_highres", "g", 448,
        "TIPS v1 ViT-g/14 (SwiGLU), 448 px."),
    "tips_v2_b14": _official(
        "v2", "tips_v2_oss_b14", "B", 448, "TIPSv2 ViT-B/14."),
    "tips_v2_l14": _official(
        "v2", "tips_v2_oss_l14", "L", 448, "TIPSv2 ViT-L/14."),
    "tips_v2_so400m14": _official(
        "v2", "tips_v2_oss_so14", "So400m", 448, "TIPSv2 SoViT-400m/14."),
    "tips_v2_g14": _official(
        "v2", "tips_v2_oss_g14", "g", 448, "TIPSv2 ViT-g/14 (SwiGLU)."),
}

# Presets that ship inside the package (no download).
EMBEDDED_PRESETS = {
    "tips_tiny_scenes": (
        "A tiny TIPS trained by this repository's offline pipeline on "
        "synthetic scenes; for demos and tests."
    ),
}


def list_presets():
    """Names and descriptions of every named preset."""
    listing = {name: spec["description"] for name, spec in PRESETS.items()}
    listing.update(EMBEDDED_PRESETS)
    return listing
