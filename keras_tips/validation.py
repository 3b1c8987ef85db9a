"""Input checks shared by the public entry points: one clear message each.

Every check looks at what is known without running the model (shapes and
dtypes) and, where the values are concrete (NumPy arrays, lists, eager
tensors of any backend), at the values themselves. Inside a compiled graph
(`jit`, `tf.function`, a SavedModel) values are unknown; there the model
itself defines what happens (see `TIPSTextEncoder`: out-of-range token ids
become the unknown-token id, any non-zero mask value counts as a real
token), the same on every backend.

Empty batches (batch size 0) are valid everywhere: they give correctly
shaped empty outputs.

Training steps (`training=True`) check shapes and dtypes only: their values
come from the data pipeline, which checks token ids itself, and a NaN
reaching the loss stops the run naming the step (`training/train.py`), the
same on every backend (torch runs its steps eagerly, jax and tensorflow
compiled).
"""

import math
import sys

import numpy as np


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


def is_concrete_tensor(x):
    """True for an eager tensor whose values can be read now.

    jax arrays outside a trace, eager TensorFlow tensors and torch tensors
    outside `torch.compile`; False for NumPy arrays (handled directly),
    `keras.KerasTensor`s, jax tracers and graph tensors.
    """
    module = type(x).__module__ or ""
    if module.startswith(("jax", "jaxlib")) and "jax" in sys.modules:
        import jax

        return isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
    if module.startswith("tensorflow") and "tensorflow" in sys.modules:
        import tensorflow as tf

        return isinstance(x, tf.Tensor) and not tf.is_symbolic_tensor(x)
    if module.startswith("torch") and "torch" in sys.modules:
        import torch

        return (
            isinstance(x, torch.Tensor)
            and x.device.type != "meta"
            and not torch.compiler.is_compiling()
        )
    return False


def concrete_values(x):
    """`x` as a NumPy array if its values are known now, else `None`."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple, int, float, np.generic)):
        return np.asarray(x)
    if is_concrete_tensor(x):
        from keras import ops

        return np.asarray(ops.convert_to_numpy(x))
    return None


def _dtype_name(x):
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return ""
    name = getattr(dtype, "name", None)
    return str(name if isinstance(name, str) else dtype).replace("torch.", "")


def _first_position(mask):
    """Index tuple of the first True entry of a boolean array."""
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _image_value_range(images):
    """`(all finite, min, max)` of concrete images, or `None` if unknown.

    NumPy images are reduced in NumPy, in two passes: `np.min` and
    `np.max` propagate NaN and an infinity is an extreme, so the images are
    finite exactly when both are (half the host time of a separate
    `isfinite` pass, which matters when the model runs on an accelerator).
    Eager tensors are reduced with their own framework (one small transfer
    of three numbers), so a batch on an accelerator is not copied to the
    host.
    """
    if isinstance(images, np.ndarray):
        low, high = float(np.min(images)), float(np.max(images))
        return bool(np.isfinite(low) and np.isfinite(high)), low, high
    if not is_concrete_tensor(images):
        return None
    from keras import ops

    try:
        summary = ops.stack(
            [
                ops.cast(ops.all(ops.isfinite(images)), "float32"),
                ops.cast(ops.min(images), "float32"),
                ops.cast(ops.max(images), "float32"),
            ]
        )
    except Exception:  # a tensor of another framework than the backend
        values = np.asarray(ops.convert_to_numpy(images))
        return _image_value_range(values)
    finite, low, high = (float(v) for v in ops.convert_to_numpy(summary))
    return bool(finite), low, high


def check_encoder_images(images, patch_size, values=True):
    """Validates images for `TIPSVisionEncoder`; returns them unchanged.

    Checks what can be known without running the model: rank 4, three
    channels, height and width positive multiples of `patch_size`, a float
    dtype and, for concrete inputs (NumPy arrays, eager tensors) when
    `values` is True, finite values inside `[0, 1]`. A batch of zero images
    is valid.

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
        if size is not None and (size < patch_size or size % patch_size):
            raise ValueError(
                f"Image {axis} {size} is not a positive multiple of the patch "
                f"size {patch_size} (shape {shape}). Resize or pad the images; "
                "TIPSImageConverter(image_size=None) center-pads to a multiple."
            )
    dtype = _dtype_name(images)
    if "int" in dtype or "bool" in dtype:
        raise TypeError(
            f"TIPSVisionEncoder expects float images in [0, 1]; received dtype "
            f"{dtype}. Divide by 255 (or use TIPSImageConverter) first."
        )
    if not values or shape[0] == 0 or 0 in shape:
        return images
    value_range = _image_value_range(images)
    if value_range is not None:
        finite, low, high = value_range
        if not finite:
            raise ValueError(
                "`images` contain NaN or Inf values; the encoder needs finite "
                "pixels in [0, 1]. Replace or drop the broken images."
            )
        if low < -1e-3 or high > 1.0 + 1e-3:
            raise ValueError(
                f"TIPSVisionEncoder expects pixel values in [0, 1]; received "
                f"values in [{low:g}, {high:g}]. For 0-255 images divide by "
                "255 or use TIPSImageConverter."
            )
    return images


def check_image_size(image_size, patch_size=14):
    """Validates a fixed model input size; returns `(height, width)`.

    The one check of `image_size` arguments (dense heads, SavedModel
    export, the command line's `--image-size`): an int (a square) or a
    `(height, width)` pair of ints, each side a positive multiple of
    `patch_size`.

    Raises:
        ValueError naming the problem.

    Example:
    ```python
    check_image_size(448)  # (448, 448)
    check_image_size((224, 448))  # (224, 448)
    ```
    """

    def is_int(value):
        return isinstance(value, (int, np.integer)) and not isinstance(
            value, bool
        )

    if is_int(image_size):
        image_size = (int(image_size), int(image_size))
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(is_int(side) for side in image_size)
    ):
        raise ValueError(
            "`image_size` must be an int or a (height, width) pair of ints. "
            f"Received: image_size={image_size!r}"
        )
    image_size = tuple(int(side) for side in image_size)
    if any(side <= 0 or side % patch_size for side in image_size):
        raise ValueError(
            "`image_size` sides must be positive multiples of the patch size "
            f"{patch_size} (multiples of {patch_size} such as "
            f"{16 * patch_size} or {32 * patch_size}). Received: "
            f"image_size={image_size}"
        )
    return image_size


def check_token_ids(token_ids, vocabulary_size, name="token_ids"):
    """Validates integer token ids against a vocabulary; returns them.

    Concrete ids must lie in `[0, vocabulary_size)`; the error names the
    first offending id and its position.

    Raises:
        TypeError for non-integer ids, ValueError for out-of-range ones.
    """
    dtype = _dtype_name(token_ids)
    if "float" in dtype or "complex" in dtype or "bool" in dtype:
        raise TypeError(
            f"`{name}` must be integers; received dtype {dtype}. Use "
            "TIPSTokenizer to make token ids."
        )
    if vocabulary_size is None:
        return token_ids
    values = concrete_values(token_ids)
    if values is None or values.size == 0:
        return token_ids
    if values.dtype.kind not in "iu":
        raise TypeError(
            f"`{name}` must be integers; received dtype {values.dtype}. Use "
            "TIPSTokenizer to make token ids."
        )
    outside = (values < 0) | (values >= vocabulary_size)
    if outside.any():
        position = _first_position(outside)
        raise ValueError(
            f"`{name}` holds {int(values[position])} at position {position}, "
            f"outside the vocabulary [0, {vocabulary_size}) of this text "
            f"encoder ({int(outside.sum())} id(s) out of range). Make the ids "
            "with this model's TIPSTokenizer; ids from another tokenizer do "
            "not match its embedding table."
        )
    return token_ids


def check_padding_mask(padding_mask, name="padding_mask"):
    """Validates a padding mask: concrete values must be 0 or 1.

    Raises:
        ValueError naming the first other value and its position.
    """
    values = concrete_values(padding_mask)
    if values is None or values.size == 0:
        return padding_mask
    if values.dtype.kind not in "biuf":
        raise TypeError(
            f"`{name}` must be numeric 0/1 (or bool); received dtype "
            f"{values.dtype}."
        )
    invalid = (values != 0) & (values != 1)
    if invalid.any():
        position = _first_position(invalid)
        raise ValueError(
            f"`{name}` must hold only 0 (padding) and 1 (real token); "
            f"received {values[position].item()!r} at position {position}. Use the "
            "mask of TIPSTokenizer.tokenize_with_padding_mask, or "
            "(token_ids != 0)."
        )
    return padding_mask


def check_text_inputs(inputs, vocabulary_size=None, values=True):
    """Validates `{"token_ids", "padding_mask"}` for `TIPSTextEncoder`.

    Shapes and dtypes always; for concrete inputs and `values=True` also
    the values: token ids inside `[0, vocabulary_size)` (when given) and a
    mask of 0s and 1s. A batch of zero texts is valid.
    """
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
    inputs = dict(inputs)
    for key in ("token_ids", "padding_mask"):
        if isinstance(inputs[key], (list, tuple)):
            inputs[key] = np.asarray(inputs[key])
    ids_shape = _static_shape(inputs["token_ids"])
    mask_shape = _static_shape(inputs["padding_mask"])
    if ids_shape is None or len(ids_shape) != 2:
        raise ValueError(
            f"'token_ids' must have shape (batch, length); received {ids_shape}."
            " Add a batch axis for a single text."
        )
    if mask_shape is None or len(mask_shape) != 2:
        raise ValueError(
            f"'padding_mask' must have shape (batch, length) like 'token_ids' "
            f"{ids_shape}; received {mask_shape}."
        )
    if mask_shape != ids_shape and not _compatible(ids_shape, mask_shape):
        raise ValueError(
            f"'padding_mask' shape {mask_shape} differs from 'token_ids' shape "
            f"{ids_shape}."
        )
    check_token_ids(inputs["token_ids"], vocabulary_size if values else None)
    if values:
        check_padding_mask(inputs["padding_mask"])
    return inputs


def unify_input_types(inputs):
    """A dict of inputs with NumPy values turned into tensors if mixed.

    Keras refuses a dict that mixes tensors and NumPy arrays ("cannot mix
    tensors and non-tensors"); a user who passes eager images with NumPy
    token ids means the same thing either way.
    """
    if not isinstance(inputs, dict):
        return inputs
    from keras import ops

    values = list(inputs.values())
    if any(isinstance(v, np.ndarray) for v in values) and any(
        ops.is_tensor(v) for v in values
    ):
        return {
            k: ops.convert_to_tensor(v) if isinstance(v, np.ndarray) else v
            for k, v in inputs.items()
        }
    return inputs


def _compatible(shape_a, shape_b):
    return len(shape_a) == len(shape_b) and all(
        a is None or b is None or a == b for a, b in zip(shape_a, shape_b)
    )


def check_finite_arrays(arrays, source):
    """Raises if any float array of a `{name: array}` dict holds NaN or Inf.

    Args:
        arrays: dict of NumPy arrays (e.g. checkpoint entries).
        source: what the arrays come from, for the message (a path).

    Raises:
        ValueError naming the first broken key and how many values are bad.
    """
    for key, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.kind not in "fc" or array.size == 0:
            continue
        finite = np.isfinite(array)
        if not finite.all():
            bad = int(array.size - np.count_nonzero(finite))
            raise ValueError(
                f"{source}: '{key}' holds {bad} NaN or Inf value(s) out of "
                f"{array.size}; the checkpoint is damaged (or was saved after "
                "the training diverged). Use another copy or an earlier "
                "checkpoint."
            )
    return arrays


def check_finite_weights(model, source):
    """Raises if any weight of a built Keras model holds NaN or Inf.

    Each variable is reduced where it lives (one boolean per variable is
    read back), so loading a large model on an accelerator stays cheap.

    Args:
        model: a built Keras layer or model.
        source: where the weights come from, for the message (a preset).
    """
    from keras import ops

    for variable in model.weights:
        if "float" not in _dtype_name(variable) or math.prod(
            variable.shape
        ) == 0:
            continue
        if not bool(ops.convert_to_numpy(ops.all(ops.isfinite(variable)))):
            raise ValueError(
                f"{source}: weight '{variable.path}' holds NaN or Inf "
                "values; the preset is damaged (or was saved after the "
                "training diverged). Convert or save it again from a good "
                "checkpoint."
            )
    return model
