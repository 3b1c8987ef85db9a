"""Pre-norm transformer block of the TIPS text encoder, with padding masks."""

import keras
from keras import ops

from keras_tips.layers.gradient_barrier import residual_gradient_barrier
from keras_tips.layers.residual_stream import residual_dtype
from keras_tips.layers.transformer_block import TIPSTransformerBlock


def padding_attention_bias(padding_mask, dtype):
    """Additive attention bias `(B, 1, 1, L)` that hides padded keys.

    Uses a large finite negative number instead of `-inf`, so a row with no
    real token (an empty text) attends uniformly instead of producing NaN.
    """
    mask = ops.cast(padding_mask, "bool")[:, None, None, :]
    large_negative = -1e9 if dtype not in ("float16",) else -3e4
    return ops.cast(ops.where(mask, 0.0, large_negative), dtype)


class TIPSTextBlock(TIPSTransformerBlock):
    """Text transformer block with key-padding attention and a ReLU MLP.

    `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`, where the MLP output is
    zeroed on padded positions after each of its two layers, as in the
    official TIPS text tower.

    Args:
        hidden_dim: int. Token width.
        num_heads: int. Attention heads; must divide `hidden_dim`.
        mlp_dim: int. MLP hidden width.
        layer_norm_epsilon: float. LayerNorm epsilon (1e-5 in TIPS).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    block = TIPSTextBlock(hidden_dim=64, num_heads=4, mlp_dim=128)
    y = block(np.zeros((2, 16, 64), "float32"), np.ones((2, 16), "int32"))
    ```
    """

    def __init__(
        self, hidden_dim, num_heads, mlp_dim, layer_norm_epsilon=1e-5, **kwargs
    ):
        super().__init__(
            hidden_dim, num_heads, mlp_dim, layer_norm_epsilon, **kwargs
        )
        policy = self.dtype_policy
        self.ln_1 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="ln_1"
        )
        self.qkv = keras.layers.Dense(3 * self.hidden_dim, dtype=policy, name="qkv")
        self.out_proj = keras.layers.Dense(
            self.hidden_dim, dtype=policy, name="out_proj"
        )
        self.ln_2 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="ln_2"
        )
        self.fc = keras.layers.Dense(self.mlp_dim, dtype=policy, name="fc")
        self.proj = keras.layers.Dense(self.hidden_dim, dtype=policy, name="proj")

    def build(self, x_shape, padding_mask_shape=None):
        input_shape = x_shape
        self.ln_1.build(input_shape)
        self.qkv.build(input_shape)
        self.out_proj.build(input_shape)
        self.ln_2.build(input_shape)
        self.fc.build(input_shape)
        self.proj.build(tuple(input_shape[:-1]) + (self.mlp_dim,))
        self.built = True

    def call(self, x, padding_mask):
        # Branches in the compute dtype, residual stream in float32 under a
        # float16/bfloat16 policy (see `residual_dtype`).
        # The barriers change nothing but XLA:CPU's backward pass (see
        # `residual_gradient_barrier`).
        x = residual_gradient_barrier(
            ops.cast(x, residual_dtype(self.compute_dtype)))
        shape = ops.shape(x)
        batch, length = shape[0], shape[1]
        qkv = ops.reshape(
            self.qkv(self.ln_1(x)),
            (batch, length, 3, self.num_heads, self.head_dim),
        )
        bias = padding_attention_bias(padding_mask, qkv.dtype)
        mixed = ops.dot_product_attention(
            qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], bias=bias
        )
        branch = self.out_proj(ops.reshape(mixed, (batch, length, self.hidden_dim)))
        x = residual_gradient_barrier(x + ops.cast(branch, x.dtype))
        # Any non-zero mask value is a real token (as in the attention bias).
        keep = ops.cast(ops.not_equal(padding_mask, 0), self.compute_dtype)
        keep = keep[..., None]
        hidden = ops.relu(self.fc(self.ln_2(x))) * keep
        return x + ops.cast(self.proj(hidden) * keep, x.dtype)
