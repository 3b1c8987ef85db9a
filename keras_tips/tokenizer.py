"""SentencePiece tokenizer for TIPS text encoders."""

import keras
import numpy as np
from keras_hub.src.tokenizers.sentence_piece_tokenizer import (
    SentencePieceTokenizer,
)
from keras_hub.src.utils.tensor_utils import is_int_dtype
from keras_hub.src.utils.tensor_utils import preprocessing_function
from keras_hub.src.utils.tensor_utils import tf

from keras_tips.backbone import TIPSBackbone
from keras_tips.preset_mixin import TIPSPresetMixin


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSTokenizer(TIPSPresetMixin, SentencePieceTokenizer):
    """TIPS text tokenizer: lowercase, SentencePiece, pad/truncate.

    Reproduces the tokenizer of the official TIPS code
    (`pytorch/text_encoder.py`, class `Tokenizer`): each string is lowercased
    with `tf.strings.lower` in its default encoding, which lowercases only
    the ASCII letters `A-Z` (`"Ü"` stays `"Ü"`), then split into SentencePiece
    ids without BOS/EOS tokens, truncated to `sequence_length` and padded on
    the right with id `0`.

    Calling the layer returns dense token ids of shape
    `(batch, sequence_length)`, or `(sequence_length,)` for a single string.
    `tokenize_with_padding_mask()` returns the ids together with a padding
    mask (`1` = real token, `0` = padding).

    The official padding mask has a quirk that this layer reproduces by
    default (`official_padding_mask=True`): if the longest string of the
    batch has more than `sequence_length` tokens, the mask is all ones for
    every row, padding positions of the shorter rows included. Otherwise the
    mask is `token_ids != 0`. The quirk is decided per call, i.e. over the
    batch passed in; mapping the layer over single examples in `tf.data` and
    batching afterwards decides it per example. With
    `official_padding_mask=False` the mask is always `token_ids != 0`, which
    is the correct per-token mask (SentencePiece never emits the id `0`, it
    is the padding id), and the one to use for training.

    Eager calls run SentencePiece in Python and return NumPy arrays; inside a
    `tf.function` or `tf.data` pipeline the same computation runs with
    TensorFlow Text ops and returns `tf.Tensor`s. Both give identical ids.

    Input strings are processed as UTF-8 bytes. Bytes that are not valid
    UTF-8 do not raise: SentencePiece maps them to the unknown-token id.
    Python `str` inputs holding lone surrogates are encoded with
    `"surrogatepass"`, which produces such bytes.

    Args:
        proto: Either a `string` path to a SentencePiece proto file, or a
            `bytes` object with a serialized SentencePiece proto. May be
            `None` when the proto is loaded later, e.g. by `from_preset()`.
        sequence_length: int. Length of the output token sequences.
            Defaults to `64`, the TIPS text length.
        official_padding_mask: bool. If `True` (default),
            `tokenize_with_padding_mask()` reproduces the official padding
            mask including its quirk described above. If `False`, it returns
            the per-token mask `token_ids != 0`.
        **kwargs: Keyword arguments of `keras.layers.Layer`, e.g. `dtype`
            (an integer dtype, defaults to `"int32"`).

    Example:
    ```python
    tokenizer = TIPSTokenizer(proto="tokenizer.model", sequence_length=16)
    tokenizer("A photo of a cat.")  # int32 array of shape (16,)
    tokenizer(["A cat.", "A dog."])  # int32 array of shape (2, 16)
    outputs = tokenizer.tokenize_with_padding_mask(["A cat.", "A dog."])
    outputs["token_ids"], outputs["padding_mask"]  # both of shape (2, 16)

    # Inside a tf.data pipeline.
    ds = tf.data.Dataset.from_tensor_slices(["A cat.", "A dog."]).batch(2)
    ds = ds.map(tokenizer.tokenize_with_padding_mask)
    ```
    """

    backbone_cls = TIPSBackbone

    # The official code pads with a literal `0`, whatever piece it names.
    pad_token_id = 0

    def __init__(
        self,
        proto=None,
        sequence_length=64,
        official_padding_mask=True,
        **kwargs,
    ):
        for name in ("add_bos", "add_eos"):
            if kwargs.pop(name, False):
                raise ValueError(
                    f"`{name}` is not supported by TIPSTokenizer: TIPS uses "
                    f"no BOS/EOS tokens. Received: {name}=True"
                )
        _validate_sequence_length(sequence_length)
        super().__init__(
            proto=proto,
            sequence_length=sequence_length,
            add_bos=False,
            add_eos=False,
            **kwargs,
        )
        if not is_int_dtype(self.compute_dtype):
            raise ValueError(
                "TIPSTokenizer outputs integer token ids, `dtype` must be an "
                f"integer dtype such as 'int32'. Received: dtype={self.dtype}"
            )
        self.official_padding_mask = bool(official_padding_mask)

    def tokenize(self, inputs, sequence_length=None):
        """Tokenize strings into dense, padded token ids.

        Args:
            inputs: A string, a list of strings, or a rank 0 or 1 string
                array or `tf.Tensor`.
            sequence_length: Optional int overriding `self.sequence_length`.

        Returns:
            Token ids of shape `(sequence_length,)` for a single string, or
            `(batch, sequence_length)` for a batch.
        """
        return self.tokenize_with_padding_mask(
            inputs, sequence_length=sequence_length
        )["token_ids"]

    def tokenize_with_padding_mask(self, inputs, sequence_length=None):
        """Tokenize strings and return token ids with their padding mask.

        Args:
            inputs: A string, a list of strings, or a rank 0 or 1 string
                array or `tf.Tensor`.
            sequence_length: Optional int overriding `self.sequence_length`.

        Returns:
            A dict with `"token_ids"` and `"padding_mask"`, both of shape
            `(sequence_length,)` for a single string or
            `(batch, sequence_length)` for a batch. `padding_mask` holds
            `1` for real tokens and `0` for padding (see the class docstring
            for `official_padding_mask`) in the dtype of the token ids.
        """
        self._check_vocabulary()
        if sequence_length is None:
            sequence_length = self.sequence_length
        _validate_sequence_length(sequence_length)
        if self._use_tf_workflow():
            token_ids, padding_mask = self._tokenize_tf_with_mask(
                inputs, sequence_length=sequence_length
            )
        else:
            token_ids, padding_mask = self._tokenize_python_with_mask(
                inputs, sequence_length=sequence_length
            )
        return {"token_ids": token_ids, "padding_mask": padding_mask}

    def call(self, inputs, *args, training=None, **kwargs):
        return self.tokenize(inputs, *args, **kwargs)

    @preprocessing_function
    def _tokenize_tf_with_mask(self, inputs, sequence_length):
        self._maybe_initialized_tf()
        if isinstance(inputs, tf.RaggedTensor):
            raise ValueError(
                "TIPSTokenizer expects a string or a rank 1 batch of strings. "
                f"Received a ragged tensor of shape {inputs.shape}."
            )
        try:
            inputs = tf.convert_to_tensor(inputs)
        except (TypeError, ValueError) as error:
            raise TypeError(
                "TIPSTokenizer expects string inputs. Could not convert the "
                f"input to a string tensor: {error}"
            ) from error
        if inputs.dtype != tf.string:
            raise TypeError(
                "TIPSTokenizer expects string inputs. Received a tensor of "
                f"dtype {inputs.dtype.name}."
            )
        rank = inputs.shape.rank
        if rank is None or rank > 1:
            raise ValueError(
                "TIPSTokenizer expects a string or a rank 1 batch of strings. "
                f"Received inputs of shape {inputs.shape}."
            )
        unbatched = rank == 0
        if unbatched:
            inputs = tf.expand_dims(inputs, 0)

        # Default encoding "": only the ASCII letters are lowercased.
        tokens = self._sentence_piece.tokenize(tf.strings.lower(inputs))
        # Lengths before truncation decide the official mask quirk.
        # (An empty batch gives the lowest int64, never above the length.)
        longest = tf.reduce_max(tokens.row_lengths())
        token_ids = tokens.to_tensor(
            default_value=self.pad_token_id,
            shape=[None, sequence_length],
        )
        padding_mask = tf.cast(
            tf.not_equal(token_ids, self.pad_token_id), token_ids.dtype
        )
        if self.official_padding_mask:
            padding_mask = tf.where(
                longest > sequence_length,
                tf.ones_like(padding_mask),
                padding_mask,
            )
        if unbatched:
            token_ids = tf.ensure_shape(
                tf.squeeze(token_ids, 0), [sequence_length]
            )
            padding_mask = tf.ensure_shape(
                tf.squeeze(padding_mask, 0), [sequence_length]
            )
        return token_ids, padding_mask

    def _tokenize_python_with_mask(self, inputs, sequence_length):
        self._maybe_initialized_spm()
        texts, batched = _canonicalize_texts(inputs)
        # `bytes.lower()` only lowercases ASCII, like `tf.strings.lower`.
        pieces = self._sentence_piece_spm.encode(
            [text.lower() for text in texts],
            out_type=int,
            add_bos=False,
            add_eos=False,
        )
        token_ids = np.full(
            (len(pieces), sequence_length),
            self.pad_token_id,
            dtype=self.compute_dtype,
        )
        for row, ids in enumerate(pieces):
            ids = ids[:sequence_length]
            token_ids[row, : len(ids)] = ids
        padding_mask = (token_ids != self.pad_token_id).astype(
            self.compute_dtype
        )
        longest = max((len(ids) for ids in pieces), default=0)
        if self.official_padding_mask and longest > sequence_length:
            padding_mask = np.ones_like(padding_mask)
        if not batched:
            return token_ids[0], padding_mask[0]
        return token_ids, padding_mask

    def compute_output_spec(self, input_spec):
        return keras.KerasTensor(
            tuple(input_spec.shape) + (self.sequence_length,),
            dtype=self.compute_dtype,
        )

    def get_config(self):
        config = super().get_config()
        # Always `False`; not constructor arguments of this class.
        config.pop("add_bos", None)
        config.pop("add_eos", None)
        config.update({"official_padding_mask": self.official_padding_mask})
        return config


def _validate_sequence_length(sequence_length):
    if (
        isinstance(sequence_length, bool)
        or not isinstance(sequence_length, (int, np.integer))
        or sequence_length < 1
    ):
        raise ValueError(
            "`sequence_length` must be a positive integer. "
            f"Received: sequence_length={sequence_length!r}"
        )


def _text_to_bytes(text, index=None):
    """Return one input string as UTF-8 bytes, or raise a `TypeError`."""
    if isinstance(text, bytes):
        return text
    if isinstance(text, (str, np.str_)):
        return str(text).encode("utf-8", errors="surrogatepass")
    where = "" if index is None else f" at position {index}"
    raise TypeError(
        "TIPSTokenizer expects strings (`str` or `bytes`). Received "
        f"{type(text).__name__}{where}: {text!r}"
    )


def _canonicalize_texts(inputs):
    """Return `(list of bytes, batched)` for the Python tokenization path."""
    if isinstance(inputs, (str, bytes, np.str_, np.bytes_)):
        return [_text_to_bytes(inputs)], False
    if isinstance(inputs, (list, tuple)):
        return [_text_to_bytes(x, i) for i, x in enumerate(inputs)], True
    if tf is not None and isinstance(inputs, tf.RaggedTensor):
        raise ValueError(
            "TIPSTokenizer expects a string or a rank 1 batch of strings. "
            f"Received a ragged tensor of shape {inputs.shape}."
        )
    if tf is not None and isinstance(inputs, tf.Tensor):
        if inputs.dtype != tf.string:
            raise TypeError(
                "TIPSTokenizer expects string inputs. Received a tensor of "
                f"dtype {inputs.dtype.name}."
            )
        inputs = inputs.numpy()
        if isinstance(inputs, bytes):
            return [inputs], False
    elif isinstance(inputs, np.ndarray):
        pass
    elif keras.ops.is_tensor(inputs):
        raise TypeError(
            "TIPSTokenizer expects string inputs. Received a "
            f"{type(inputs).__name__} of dtype "
            f"{keras.backend.standardize_dtype(inputs.dtype)}."
        )
    else:
        raise TypeError(
            "TIPSTokenizer expects a string, a list of strings or a string "
            f"array. Received {type(inputs).__name__}: {inputs!r}"
        )
    if inputs.dtype.kind not in ("U", "S", "O"):
        raise TypeError(
            "TIPSTokenizer expects string inputs. Received an array of "
            f"dtype {inputs.dtype}."
        )
    if inputs.ndim > 1:
        raise ValueError(
            "TIPSTokenizer expects a string or a rank 1 batch of strings. "
            f"Received inputs of shape {inputs.shape}."
        )
    if inputs.ndim == 0:
        return [_text_to_bytes(inputs.item())], False
    return [_text_to_bytes(x, i) for i, x in enumerate(inputs.tolist())], True
