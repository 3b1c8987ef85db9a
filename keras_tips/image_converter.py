"""Image converter for TIPS vision encoders."""

import keras
import numpy as np
from keras.src.utils.backend_utils import DynamicBackend
from keras_hub.src.layers.preprocessing.image_converter import ImageConverter
from keras_hub.src.utils.tensor_utils import in_tf_function
from keras_hub.src.utils.tensor_utils import tf

from keras_tips.backbone import TIPSBackbone
from keras_tips.preset_mixin import TIPSPresetMixin


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSImageConverter(TIPSPresetMixin, ImageConverter):
    """Convert raw images into TIPS vision encoder inputs.

    Steps, in order:

    1. Grayscale images (1 channel) are repeated to RGB, RGBA images
       (4 channels) lose their alpha channel.
    2. The image is cast to float and checked to be finite (NaN or Inf
       raise a `ValueError` eagerly; inside `tf.data` a
       `tf.errors.InvalidArgumentError` is raised when the batch is
       computed).
    3. If `image_size` is set, the image is resized to it without keeping
       the aspect ratio, like the official TIPS code
       (`transforms.Resize((s, s))` / `jax.image.resize`).
    4. The image is multiplied by `scale` and `offset` is added. The
       defaults map `[0, 255]` pixels to `[0, 1]`: TIPS normalizes with
       mean 0 and standard deviation 1.
    5. If `image_size` is `None`, the image is not resized but padded
       with zeros, centered, to the next multiple of `pad_to_multiple_of`
       in height and width, like `maybe_center_pad` of the official Flax
       ViT (an extra odd row/column goes to the bottom/right).

    Inputs are channels-last images, `(height, width, channels)` or
    `(batch, height, width, channels)`, of any integer or float dtype with
    pixel values in `[0, 255]` (with the default `scale` and `offset`,
    concrete images outside that range raise a `ValueError`; resizing
    would otherwise blur them into range). The output has 3 channels and
    the layer's compute dtype (`float32` by default).

    Args:
        image_size: `(int, int)` tuple or `None`. Output `(height, width)`.
            Defaults to `(224, 224)`. `None` disables resizing and enables
            center padding.
        scale: float, tuple of 3 floats, or `None`. Multiplier applied after
            resizing. Defaults to `1 / 255`.
        offset: float, tuple of 3 floats, or `None`. Added after scaling.
            Defaults to `None` (no offset).
        interpolation: string, resize interpolation: `"bilinear"` (default),
            `"nearest"`, `"bicubic"`, `"lanczos3"`, `"lanczos5"`.
        antialias: bool. Whether to low-pass filter when downsampling.
            Defaults to `True`, like PIL resizing and `jax.image.resize` used
            by the official code.
        crop_to_aspect_ratio: bool. Crop to the target aspect ratio before
            resizing instead of distorting it. Defaults to `False` (official
            behaviour).
        pad_to_aspect_ratio: bool. Pad to the target aspect ratio before
            resizing. Defaults to `False`.
        pad_to_multiple_of: int. Patch size used for center padding when
            `image_size` is `None`. Defaults to `14`, the TIPS patch size.
        **kwargs: Keyword arguments of `keras.layers.Layer`, e.g. `dtype`.
            Only `data_format="channels_last"` is supported.

    Example:
    ```python
    converter = TIPSImageConverter(image_size=(224, 224))
    images = np.random.randint(0, 256, size=(2, 480, 640, 3), dtype="uint8")
    converter(images)  # float32, shape (2, 224, 224, 3), values in [0, 1]

    # Keep the resolution, only pad to a multiple of the patch size.
    converter = TIPSImageConverter(image_size=None)
    converter(images)  # shape (2, 490, 644, 3)
    ```
    """

    backbone_cls = TIPSBackbone

    def __init__(
        self,
        image_size=(224, 224),
        scale=1.0 / 255.0,
        offset=None,
        interpolation="bilinear",
        antialias=True,
        crop_to_aspect_ratio=False,
        pad_to_aspect_ratio=False,
        pad_to_multiple_of=14,
        **kwargs,
    ):
        data_format = kwargs.pop("data_format", None)
        if data_format not in (None, "channels_last"):
            raise ValueError(
                "TIPSImageConverter only supports channels-last images. "
                f"Received: data_format={data_format!r}"
            )
        if image_size is not None:
            if (
                not isinstance(image_size, (tuple, list))
                or len(image_size) != 2
                or not all(_is_positive_int(s) for s in image_size)
            ):
                raise ValueError(
                    "`image_size` must be `None` or a `(height, width)` pair "
                    f"of positive ints. Received: image_size={image_size!r}"
                )
            image_size = tuple(int(s) for s in image_size)
        if not _is_positive_int(pad_to_multiple_of):
            raise ValueError(
                "`pad_to_multiple_of` must be a positive int. Received: "
                f"pad_to_multiple_of={pad_to_multiple_of!r}"
            )
        for name, value in (("scale", scale), ("offset", offset)):
            if isinstance(value, (tuple, list)) and len(value) != 3:
                raise ValueError(
                    f"`{name}` must be a float or a tuple of 3 floats (one "
                    f"per RGB channel). Received: {name}={value!r}"
                )
        super().__init__(
            image_size=image_size,
            scale=scale,
            offset=offset,
            crop_to_aspect_ratio=crop_to_aspect_ratio,
            pad_to_aspect_ratio=pad_to_aspect_ratio,
            interpolation=interpolation,
            antialias=antialias,
            data_format="channels_last",
            **kwargs,
        )
        self.pad_to_multiple_of = int(pad_to_multiple_of)

    def _call_python(self, inputs):
        if isinstance(inputs, dict):
            raise TypeError(
                "TIPSImageConverter expects an image tensor, not a dict. "
                f"Received a dict with keys {sorted(inputs)}."
            )
        # Inside `tf.function`/`tf.data` everything runs as TensorFlow ops,
        # eagerly on the Keras backend.
        ops = DynamicBackend("tensorflow" if in_tf_function() else None)
        images = _to_tensor(inputs, ops)

        rank = len(images.shape)
        if rank not in (3, 4):
            raise ValueError(
                "TIPSImageConverter expects images of shape (height, width, "
                "channels) or (batch, height, width, channels). Received "
                f"shape {tuple(images.shape)}."
            )
        unbatched = rank == 3
        if unbatched:
            images = ops.numpy.expand_dims(images, 0)

        channels = images.shape[-1]
        if channels == 1:
            images = ops.numpy.repeat(images, 3, axis=-1)
        elif channels == 4:
            images = images[..., :3]
        elif channels != 3:
            raise ValueError(
                "TIPSImageConverter expects 1 (grayscale), 3 (RGB) or 4 "
                "(RGBA) channels in the last axis. Received shape "
                f"{tuple(images.shape)}."
            )

        images = _to_float(images, ops)
        if self._expects_0_255():
            _check_0_255(images, ops)
        if self.image_size is not None:
            images = self.resizing(images)
            images = ops.core.cast(images, "float32")
        if self.scale is not None:
            images = images * _as_channel_vector(self.scale, ops)
        if self.offset is not None:
            images = images + _as_channel_vector(self.offset, ops)
        if self.image_size is None:
            images = _center_pad(images, self.pad_to_multiple_of, ops)

        images = ops.core.cast(images, self.compute_dtype)
        if unbatched:
            images = ops.numpy.squeeze(images, 0)
        return images

    def _expects_0_255(self):
        """Whether the default `scale`/`offset` map `[0, 255]` to `[0, 1]`."""
        return self.offset is None and isinstance(self.scale, float) and (
            abs(self.scale - 1.0 / 255.0) < 1e-12
        )

    def get_config(self):
        config = super().get_config()
        config.update({"pad_to_multiple_of": self.pad_to_multiple_of})
        return config


def _is_positive_int(value):
    return (
        isinstance(value, (int, np.integer))
        and not isinstance(value, bool)
        and value > 0
    )


def _to_tensor(inputs, ops):
    """Convert raw image input to a tensor of the ops' backend."""
    if in_tf_function():
        if isinstance(inputs, tf.RaggedTensor):
            raise ValueError(
                "TIPSImageConverter expects dense images of one size per "
                "batch. Received a ragged tensor; resize or pad images "
                "before batching."
            )
        return tf.convert_to_tensor(inputs)
    if isinstance(inputs, (list, tuple)):
        try:
            inputs = np.asarray(inputs)
        except ValueError as error:
            raise ValueError(
                "TIPSImageConverter could not stack the list of images into "
                f"one array (images of different sizes?): {error}"
            ) from error
    if tf is not None and isinstance(inputs, tf.Tensor):
        inputs = inputs.numpy()
    if isinstance(inputs, np.ndarray) and inputs.dtype.kind not in "uif":
        raise TypeError(
            "TIPSImageConverter expects numeric images (integer or float). "
            f"Received an array of dtype {inputs.dtype}."
        )
    if not isinstance(inputs, np.ndarray) and not ops.core.is_tensor(inputs):
        raise TypeError(
            "TIPSImageConverter expects an image array or tensor. Received "
            f"{type(inputs).__name__}."
        )
    images = ops.core.convert_to_tensor(inputs)
    if keras.backend.backend() == "torch":
        images = images.cpu()
    return images


def _to_float(images, ops):
    """Cast images to float32, checking their dtype and finiteness."""
    dtype = keras.backend.standardize_dtype(images.dtype)
    if dtype == "bool" or dtype == "string":
        raise TypeError(
            "TIPSImageConverter expects numeric images (integer or float). "
            f"Received dtype {dtype}."
        )
    if "float" not in dtype:
        return ops.core.cast(images, "float32")
    images = ops.core.cast(images, "float32")
    message = (
        "TIPSImageConverter received images with NaN or Inf values. Images "
        "must hold finite pixel values in [0, 255]."
    )
    if in_tf_function():
        return tf.debugging.assert_all_finite(images, message)
    if not _is_traced(images):
        all_finite = ops.numpy.all(ops.numpy.isfinite(images))
        if not bool(ops.core.convert_to_numpy(all_finite)):
            raise ValueError(message)
    return images


def _check_0_255(images, ops):
    """Raises for concrete images with values outside `[0, 255]`.

    Resizing would blur such values into a plausible range, so they are
    caught before it. Graph inputs (`tf.data`, traced JAX) pass unchecked.
    """
    if in_tf_function() or _is_traced(images) or 0 in tuple(images.shape):
        return
    low = float(ops.core.convert_to_numpy(ops.numpy.min(images)))
    high = float(ops.core.convert_to_numpy(ops.numpy.max(images)))
    if low < 0.0 or high > 255.0:
        raise ValueError(
            "TIPSImageConverter expects pixel values in [0, 255]; received "
            f"values in [{low:g}, {high:g}]. Clip or rescale the images "
            "(or pass `scale`/`offset` for another range)."
        )


def _is_traced(x):
    """Whether `x` is a symbolic JAX tracer (no concrete values)."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


def _as_channel_vector(value, ops):
    """A scalar or per-channel value as a float32 tensor broadcastable to
    channels-last images."""
    return ops.core.convert_to_tensor(np.asarray(value, dtype="float32"))


def _center_pad(images, multiple, ops):
    """Zero-pad `(B, H, W, C)` images, centered, to a multiple of `multiple`.

    Works with static shapes and with dynamic ones inside `tf.data`.
    """
    shape = ops.core.shape(images)
    pad_h = (-shape[1]) % multiple
    pad_w = (-shape[2]) % multiple
    if isinstance(pad_h, int) and isinstance(pad_w, int):
        if pad_h == 0 and pad_w == 0:
            return images
    top = pad_h // 2
    left = pad_w // 2
    return ops.numpy.pad(
        images,
        [[0, 0], [top, pad_h - top], [left, pad_w - left], [0, 0]],
    )
