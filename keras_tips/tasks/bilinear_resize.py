"""Bilinear resizing as matrix products, like PyTorch's `interpolate`.

The dense heads resize feature maps and read-outs with these instead of
`keras.ops.image.resize`: the same weights on every backend, both
`align_corners` modes of the official TIPSv2 decoders, and sizes that may
be symbolic tensors.
"""

from keras import ops


def bilinear_resize_matrix(output_size, input_size, align_corners=False):
    """Linear-interpolation weights `(output_size, input_size)` along one axis.

    `align_corners=False` places samples at pixel centres (half-pixel) and
    `align_corners=True` maps the corner samples onto each other, both like
    `torch.nn.functional.interpolate(mode="bilinear")` without antialiasing;
    source positions are clamped to the input.

    Args:
        output_size: int or scalar integer tensor.
        input_size: int or scalar integer tensor.
        align_corners: bool.
    """
    out_f = ops.cast(output_size, "float32")
    in_f = ops.cast(input_size, "float32")
    positions = ops.cast(ops.arange(output_size), "float32")
    if align_corners:
        scale = (in_f - 1.0) / ops.maximum(out_f - 1.0, 1.0)
        source = positions * scale
    else:
        source = (positions + 0.5) * (in_f / out_f) - 0.5
    source = ops.clip(source, 0.0, in_f - 1.0)
    taps = ops.cast(ops.arange(input_size), "float32")
    return ops.relu(1.0 - ops.abs(source[:, None] - taps[None, :]))


def resize_bilinear(x, size, align_corners=False):
    """Bilinear resize of channels-last `(B, H, W, C)` to `size` `(h, w)`.

    Matches `torch.nn.functional.interpolate(mode="bilinear",
    align_corners=...)`; `size` entries may be ints or scalar tensors.
    """
    shape = ops.shape(x)
    rows = bilinear_resize_matrix(size[0], shape[1], align_corners)
    cols = bilinear_resize_matrix(size[1], shape[2], align_corners)
    x = ops.einsum("oh,bhwc->bowc", ops.cast(rows, x.dtype), x)
    return ops.einsum("pw,bowc->bopc", ops.cast(cols, x.dtype), x)


def same_static_size(a, b):
    """Whether two `(B, H, W, C)` tensors have the same known `(H, W)`."""
    sa, sb = tuple(a.shape[1:3]), tuple(b.shape[1:3])
    return None not in sa + sb and sa == sb
