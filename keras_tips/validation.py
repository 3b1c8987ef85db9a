"""Input checks shared by the encoders: one clear message per problem."""

import numpy as np
from keras import ops


def _static_shape(x):
    shape = getattr(x, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(None if d is None else int(d) for d in shape)
    except Exception:  # symbolic dimensions (tf, jax2tf) stay unknown
        dims = []
        for d in shape:
            try:
                dims.append(None if d is None else int(d))
            except Exception:
                dims.append(None)
        return tuple(dims)


def check_encoder_images(images, patch_size):
    """Validates images for `TIPSVisionEncoder`; returns them unchanged.

    Checks what can be known without running the model: rank 4, three
    channels, height and width multiples of `patch_size`, a float dtype and,
    for NumPy inputs, finite values inside `[0, 1]`.

    Raises:
        ValueError or TypeError naming the problem and the fix.
    """
    if isinstance(images, (list, tuple)):
        images = np.asarray(images)
    shape = _static_shape(images)
    if shape is None:
        raise TypeError(
            "TIPSVisionEncoder expects an image array of shape (B, H, W, 3). "
            f"Received an object of type {type(images).__name__}."
        )
    if len(shape) != 4:
        raise ValueError(
            "TIPSVisionEncoder expects images of shape (batch, height, width, "
            f"3); received shape {shape}. Add a batch axis for a single image."
        )
    if shape[-1] is not None and shape[-1] != 3:
        raise ValueError(
            f"TIPSVisionEncoder expects 3 (RGB) channels; received {shape[-1]} "
            f"(shape {shape}). TIPSImageConverter / TIPSPreprocessor convert "
            "grayscale and RGBA images to RGB."
        )
    for axis, size in (("height", shape[1]), ("width", shape[2])):
        if size is not None and size % patch_size:
            raise ValueError(
                f"Image {axis} {size} is not a multiple of the patch size "
                f"{patch_size} (shape {shape}). Resize or pad the images; "
                "TIPSImageConverter(image_size=None) center-pads to a multiple."
            )
    dtype = str(getattr(images, "dtype", ""))
    if "int" in dtype or "bool" in dtype:
        raise TypeError(
            f"TIPSVisionEncoder expects float images in [0, 1]; received dtype "
            f"{dtype}. Divide by 255 (or use TIPSImageConverter) first."
        )
    if isinstance(images, np.ndarray) and images.size:
        if not np.isfinite(images).all():
            raise ValueError(
                "Images contain NaN or Inf values; the encoder needs finite "
                "pixels in [0, 1]."
            )
        low, high = float(images.min()), float(images.max())
        if low < -1e-3 or high > 1.0 + 1e-3:
            raise ValueError(
                f"TIPSVisionEncoder expects pixel values in [0, 1]; received "
                f"values in [{low:g}, {high:g}]. For 0-255 images divide by "
                "255 or use TIPSImageConverter."
            )
    return images


def check_text_inputs(inputs):
    """Validates `{"token_ids", "padding_mask"}` for `TIPSTextEncoder`."""
    if not isinstance(inputs, dict):
        raise TypeError(
            "TIPSTextEncoder expects a dict with 'token_ids' and "
            f"'padding_mask'; received {type(inputs).__name__}. Use "
            "TIPSTokenizer / TIPSPreprocessor to make them from strings."
        )
    missing = {"token_ids", "padding_mask"} - set(inputs)
    if missing:
        raise ValueError(
            f"TIPSTextEncoder inputs lack {sorted(missing)}; received keys "
            f"{sorted(inputs)}."
        )
    ids_shape = _static_shape(inputs["token_ids"])
    mask_shape = _static_shape(inputs["padding_mask"])
    if ids_shape is None or len(ids_shape) != 2:
        raise ValueError(
            f"'token_ids' must have shape (batch, length); received {ids_shape}."
        )
    if mask_shape != ids_shape and None not in (ids_shape + mask_shape):
        raise ValueError(
            f"'padding_mask' shape {mask_shape} differs from 'token_ids' shape "
            f"{ids_shape}."
        )
    ids = inputs["token_ids"]
    if "float" in str(getattr(ids, "dtype", "")):
        raise TypeError(
            "'token_ids' must be integers; received dtype "
            f"{ids.dtype}. Use TIPSTokenizer to make token ids."
        )
    return inputs
