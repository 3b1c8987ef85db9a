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
