"""Preprocessor turning raw images and texts into TIPS model inputs."""

import keras
import numpy as np
from keras_hub.src.models.preprocessor import Preprocessor
from keras_hub.src.utils.tensor_utils import preprocessing_function

from keras_tips.image_converter import TIPSImageConverter
from keras_tips.backbone import TIPSBackbone
from keras_tips.preset_mixin import TIPSPresetMixin
from keras_tips.tokenizer import TIPSTokenizer

_TEXT_KEYS = ("prompts", "texts")
_ALLOWED_KEYS = ("images",) + _TEXT_KEYS


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSPreprocessor(TIPSPresetMixin, Preprocessor):
    """TIPS preprocessor for images and texts.

    Takes a dict with `"images"` and/or texts under `"prompts"` (or its
    alias `"texts"`) and returns the inputs of the TIPS encoders:

    - `"images"`: float images `(batch, height, width, 3)` in `[0, 1]`,
      made by `image_converter` (see `TIPSImageConverter`).
    - `"token_ids"`: int32 token ids `(batch, sequence_length)`.
    - `"padding_mask"`: int32 `(batch, sequence_length)`, `1` for real
      tokens and `0` for padding. With the tokenizer's default
      `official_padding_mask=True` this reproduces the official TIPS mask,
      quirk included (see `TIPSTokenizer`); build the tokenizer with
      `official_padding_mask=False` for the per-token mask used in
      training.

    An empty batch (zero images, `[]` texts) gives empty outputs of the
    same shapes. A key that is absent (or `None`) in the input is absent in
    the output, so the layer serves image-only, text-only and paired data.
    Unbatched inputs (one image `(height, width, channels)`, one string)
    give unbatched outputs, e.g. when mapped over a `tf.data` dataset
    before batching. Eager calls return backend tensors; inside `tf.data` the
    outputs are `tf.Tensor`s.

    Args:
        tokenizer: A `TIPSTokenizer`, or `None` for an image-only
            preprocessor.
        image_converter: A `TIPSImageConverter`, or `None`. Without one,
            images are passed through unchanged.
        sequence_length: int or `None`. Token sequence length. `None`
            (default) uses `tokenizer.sequence_length`.
        **kwargs: Keyword arguments of `keras.layers.Layer`.

    Call arguments:
        x: dict with optional keys `"images"` and `"prompts"` or `"texts"`.
        y: Optional labels, passed through.
        sample_weight: Optional sample weights, passed through.
        sequence_length: Optional int overriding `self.sequence_length` for
            this call.

    Example:
    ```python
    preprocessor = TIPSPreprocessor(
        tokenizer=TIPSTokenizer(proto="tokenizer.model"),
        image_converter=TIPSImageConverter(image_size=(224, 224)),
    )
    preprocessor(
        {
            "images": np.random.randint(0, 256, (2, 300, 400, 3)),
            "prompts": ["A photo of a cat.", "A photo of a dog."],
        }
    )  # {"images": (2, 224, 224, 3), "token_ids": (2, 64),
       #  "padding_mask": (2, 64)}
    ```
    """

    backbone_cls = TIPSBackbone
    tokenizer_cls = TIPSTokenizer
    image_converter_cls = TIPSImageConverter

    def __init__(
        self,
        tokenizer=None,
        image_converter=None,
        sequence_length=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if tokenizer is None and image_converter is None:
            raise ValueError(
                "TIPSPreprocessor needs a `tokenizer`, an `image_converter`, "
                "or both. Received neither."
            )
        if sequence_length is not None and (
            isinstance(sequence_length, bool)
            or not isinstance(sequence_length, int)
            or sequence_length < 1
        ):
            raise ValueError(
                "`sequence_length` must be `None` or a positive int. "
                f"Received: sequence_length={sequence_length!r}"
            )
        self.tokenizer = tokenizer
        self.image_converter = image_converter
        self._sequence_length = sequence_length

    @property
    def sequence_length(self):
        """Token sequence length of the outputs (settable)."""
        if self._sequence_length is not None:
            return self._sequence_length
        if self.tokenizer is None:
            return None
        return self.tokenizer.sequence_length

    @sequence_length.setter
    def sequence_length(self, value):
        self._sequence_length = value

    def build(self, input_shape):
        # Nothing to build: the tokenizer and image converter have no
        # weights and build themselves.
        self.built = True

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None, sequence_length=None):
        images, texts = self._unpack_inputs(x)
        outputs = {}
        if images is not None:
            if self.image_converter is not None:
                images = self.image_converter(images)
            outputs["images"] = images
        if texts is not None:
            if _is_empty_array(texts):
                # `[]` arrives as an empty float array: keep it a batch of
                # zero strings.
                texts = np.array([], dtype=str)
            if self.tokenizer is None:
                raise ValueError(
                    "TIPSPreprocessor received texts but has no `tokenizer`."
                )
            tokens = self.tokenizer.tokenize_with_padding_mask(
                texts,
                sequence_length=sequence_length or self.sequence_length,
            )
            outputs["token_ids"] = tokens["token_ids"]
            outputs["padding_mask"] = tokens["padding_mask"]
        return keras.utils.pack_x_y_sample_weight(outputs, y, sample_weight)

    def _unpack_inputs(self, x):
        """Return `(images, texts)` from the input dict, `None` if absent."""
        if not isinstance(x, dict):
            raise TypeError(
                "TIPSPreprocessor expects a dict with keys 'images' and/or "
                f"'prompts' (or 'texts'). Received {type(x).__name__}."
            )
        unknown = sorted(set(x) - set(_ALLOWED_KEYS))
        if unknown:
            raise ValueError(
                f"TIPSPreprocessor received unknown input keys {unknown}. "
                f"Allowed keys: {list(_ALLOWED_KEYS)}."
            )
        given = [k for k in _TEXT_KEYS if x.get(k) is not None]
        if len(given) > 1:
            raise ValueError(
                "TIPSPreprocessor received both 'prompts' and 'texts'; pass "
                "the strings under one of them."
            )
        images = x.get("images")
        texts = x[given[0]] if given else None
        if images is None and texts is None:
            raise ValueError(
                "TIPSPreprocessor received no inputs: the dict needs "
                "'images' and/or 'prompts' (or 'texts')."
            )
        return images, texts

    def get_config(self):
        config = super().get_config()
        config.update({"sequence_length": self._sequence_length})
        return config


def _is_empty_array(x):
    """True for a rank 1 array or tensor of zero elements."""
    shape = getattr(x, "shape", None)
    return shape is not None and len(shape) == 1 and shape[0] == 0
