"""Token and sinusoidal position embedding of the TIPS text encoder."""

import math

import keras
import numpy as np
from keras import ops


def sinusoidal_positions(length, dim, min_timescale=1.0, max_timescale=1e4):
    """Transformer sinusoids: `[sin(p * f_0..f_k), cos(p * f_0..f_k)]`.

    Frequencies are geometric between `1 / min_timescale` and
    `1 / max_timescale` over `dim // 2` timescales; sin and cos halves are
    concatenated (not interleaved) and an odd `dim` gets a zero last column,
    as in the official TIPS text encoder.

    Args:
        length: int or scalar tensor. Sequence length.
        dim: int. Embedding width.

    Returns:
        float32 tensor `(length, dim)`.
    """
    num_timescales = dim // 2
    log_increment = math.log(max_timescale / min_timescale) / max(
        num_timescales - 1, 1
    )
    inv_timescales = min_timescale * ops.exp(
        ops.cast(ops.arange(num_timescales), "float32") * -log_increment
    )
    positions = ops.cast(ops.arange(length), "float32")
    scaled = positions[:, None] * inv_timescales[None, :]
    signal = ops.concatenate([ops.sin(scaled), ops.cos(scaled)], axis=1)
    if dim % 2:
        signal = ops.pad(signal, [[0, 0], [0, 1]])
    return signal


def check_unknown_token_id(unknown_token_id, vocabulary_size):
    """Returns `unknown_token_id` as an int inside `[0, vocabulary_size)`."""
    if (
        isinstance(unknown_token_id, bool)
        or not isinstance(unknown_token_id, (int, np.integer))
        or not 0 <= unknown_token_id < vocabulary_size
    ):
        raise ValueError(
            "`unknown_token_id` must be an int in [0, vocabulary_size) = "
            f"[0, {vocabulary_size}). Received: "
            f"unknown_token_id={unknown_token_id!r}"
        )
    return int(unknown_token_id)


class TIPSTextEmbedding(keras.layers.Layer):
    """Token embedding scaled by `sqrt(D)` plus sinusoidal positions.

    Token ids outside `[0, vocabulary_size)` are embedded as
    `unknown_token_id`, the same on every backend (a plain gather would
    give NaN on JAX, an error on TensorFlow CPU, zeros on TensorFlow GPU
    and an `IndexError` on torch). `TIPSTextEncoder` rejects such ids
    before this point whenever their values are known; the replacement is
    what compiled graphs and SavedModels, which cannot raise, do.

    Args:
        vocabulary_size: int. Number of token ids.
        hidden_dim: int. Embedding width `D`.
        unknown_token_id: int. Id embedded in place of out-of-range ids
            (2, `<unk>`, in the TIPS SentencePiece model).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    layer = TIPSTextEmbedding(vocabulary_size=32000, hidden_dim=768)
    x = layer(np.zeros((2, 64), "int32"))  # (2, 64, 768)
    ```
    """

    def __init__(self, vocabulary_size, hidden_dim, unknown_token_id=2, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self.hidden_dim = int(hidden_dim)
        self.unknown_token_id = check_unknown_token_id(
            unknown_token_id, self.vocabulary_size
        )
        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size,
            self.hidden_dim,
            embeddings_initializer=keras.initializers.RandomNormal(
                stddev=self.hidden_dim**-0.5
            ),
            dtype=self.dtype_policy,
            name="token_embedding",
        )

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        self.built = True

    def call(self, token_ids):
        # Compared in the input dtype, so int64 ids are not wrapped first.
        in_vocabulary = ops.logical_and(
            ops.greater_equal(token_ids, 0),
            ops.less(token_ids, self.vocabulary_size),
        )
        token_ids = ops.where(
            in_vocabulary,
            ops.cast(token_ids, "int32"),
            ops.cast(self.unknown_token_id, "int32"),
        )
        x = self.token_embedding(token_ids) * (self.hidden_dim**0.5)
        positions = sinusoidal_positions(ops.shape(token_ids)[1], self.hidden_dim)
        return x + ops.cast(positions, x.dtype)[None]

    def compute_output_spec(self, token_ids):
        return keras.KerasTensor(
            tuple(token_ids.shape) + (self.hidden_dim,), dtype=self.compute_dtype
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "unknown_token_id": self.unknown_token_id,
            }
        )
        return config
