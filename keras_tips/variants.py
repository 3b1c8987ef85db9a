"""Architectures of the released TIPS v1 and TIPSv2 encoders."""

# Vision and text towers share width, heads and MLP width per size.
# name: (hidden_dim, vision depth, num_heads, mlp_dim, ffn_layer, text depth)
_SIZES = {
    "S": (384, 12, 6, 1536, "mlp", 12),
    "B": (768, 12, 12, 3072, "mlp", 12),
    "L": (1024, 24, 16, 4096, "mlp", 12),
    "So400m": (1152, 27, 16, 4304, "mlp", 27),
    "g": (1536, 40, 24, 6144, "swiglu", 12),
}

VOCABULARY_SIZE = 32000
PATCH_SIZE = 14
MAX_TEXT_LENGTH = 64


def variant_names():
    """Size names of the released variants: S, B, L, So400m, g."""
    return list(_SIZES)


def vision_config(size, position_grid_size=16):
    """`TIPSVisionEncoder` constructor arguments for a released size.

    Args:
        size: one of `variant_names()`.
        position_grid_size: 16 for TIPS v1 (224 px training), 32 for TIPSv2.
    """
    hidden, depth, heads, mlp, ffn, _ = _lookup(size)
    return {
        "hidden_dim": hidden,
        "num_layers": depth,
        "num_heads": heads,
        "mlp_dim": mlp,
        "ffn_layer": ffn,
        "patch_size": PATCH_SIZE,
        "position_grid_size": position_grid_size,
        "layer_scale_init": 1.0,
    }


def text_config(size):
    """`TIPSTextEncoder` constructor arguments for a released size."""
    hidden, _, heads, mlp, _, text_depth = _lookup(size)
    return {
        "vocabulary_size": VOCABULARY_SIZE,
        "hidden_dim": hidden,
        "num_layers": text_depth,
        "num_heads": heads,
        "mlp_dim": mlp,
    }


def num_heads_for_width(hidden_dim):
    """Head count of the released variant with this width, or None."""
    for hidden, _, heads, _, _, _ in _SIZES.values():
        if hidden == hidden_dim:
            return heads
    return None


def _lookup(size):
    if size not in _SIZES:
        raise ValueError(
            f"Unknown TIPS size {size!r}; expected one of {variant_names()}."
        )
    return _SIZES[size]


def parameter_count(vision, text):
    """Number of weights of a `TIPSBackbone` built from these arguments.

    Counted from the architecture, without building the model (a g/14 has
    over a billion weights).

    Args:
        vision: `TIPSVisionEncoder` arguments (as `vision_config` returns).
        text: `TIPSTextEncoder` arguments (as `text_config` returns).

    Returns:
        int: vision and text weights plus the temperature.
    """
    from keras_tips.layers.feed_forward import swiglu_hidden_dim

    width = vision["hidden_dim"]
    patch = vision.get("patch_size", PATCH_SIZE)
    grid = vision.get("position_grid_size", 16)
    mlp = vision["mlp_dim"]
    if vision.get("ffn_layer", "mlp") == "swiglu":
        inner = swiglu_hidden_dim(mlp)
        ffn = width * 2 * inner + 2 * inner + inner * width + width
    else:
        ffn = 2 * width * mlp + mlp + width
    attention = 4 * width * width + 4 * width  # fused qkv and output
    vision_block = attention + ffn + 6 * width  # two norms, two LayerScales
    vision_count = (
        3 * patch * patch * width + width  # patch projection
        + 3 * width  # class, register and mask tokens
        + (1 + grid * grid) * width  # position table
        + vision["num_layers"] * vision_block
        + 2 * width  # final norm
    )
    text_width = text["hidden_dim"]
    text_mlp = text["mlp_dim"]
    text_block = (
        4 * text_width * text_width + 4 * text_width
        + 2 * text_width * text_mlp + text_mlp + text_width
        + 4 * text_width
    )
    text_count = (
        text["vocabulary_size"] * text_width
        + text["num_layers"] * text_block
        + 2 * text_width
    )
    return vision_count + text_count + 1
