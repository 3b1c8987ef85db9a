"""Pre-norm transformer block of the TIPS vision encoder."""

import keras
from keras import ops

from keras_tips.layers.attention import self_attention
from keras_tips.layers.feed_forward import TIPSFeedForward
from keras_tips.layers.gradient_barrier import residual_gradient_barrier
from keras_tips.layers.residual_stream import residual_dtype
from keras_tips.layers.transformer_block import TIPSTransformerBlock


class LayerScale(keras.layers.Layer):
    """Per-channel learned scaling of a residual branch (CaiT, DINOv2).

    Args:
        hidden_dim: int. Width of the scaled tensor.
        init_value: float. Initial value of every scale.
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(self, hidden_dim, init_value=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.init_value = float(init_value)
        self.gamma = self.add_weight(
            name="gamma",
            shape=(self.hidden_dim,),
            initializer=keras.initializers.Constant(self.init_value),
        )
        self.built = True

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"hidden_dim": self.hidden_dim, "init_value": self.init_value}
        )
        return config


class TIPSVisionBlock(TIPSTransformerBlock):
    """ViT block: `x + ls1(attn(norm1(x)))`, then `x + ls2(ffn(norm2(x)))`.

    Multi-head self-attention uses a fused `qkv` projection with bias, as in
    DINOv2 and TIPS. With `value_attention=True` the attention output is
    replaced by the output projection of the values (no token mixing), the
    MaskCLIP-style read-out TIPS uses for zero-shot segmentation.

    Args:
        hidden_dim: int. Token width.
        num_heads: int. Attention heads; must divide `hidden_dim`.
        mlp_dim: int. Nominal width of the feed-forward layer.
        ffn_layer: `"mlp"` or `"swiglu"`.
        layer_norm_epsilon: float. LayerNorm epsilon.
        layer_scale_init: float. Initial LayerScale value.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    block = TIPSVisionBlock(hidden_dim=64, num_heads=4, mlp_dim=256)
    y = block(np.zeros((2, 18, 64), "float32"))
    ```
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        mlp_dim,
        ffn_layer="mlp",
        layer_norm_epsilon=1e-6,
        layer_scale_init=1e-5,
        **kwargs,
    ):
        super().__init__(
            hidden_dim, num_heads, mlp_dim, layer_norm_epsilon, **kwargs
        )
        self.ffn_layer = ffn_layer
        self.layer_scale_init = float(layer_scale_init)
        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="norm1"
        )
        self.qkv = keras.layers.Dense(
            3 * self.hidden_dim, dtype=policy, name="qkv"
        )
        self.proj = keras.layers.Dense(self.hidden_dim, dtype=policy, name="proj")
        self.ls1 = LayerScale(
            self.hidden_dim, self.layer_scale_init, dtype=policy, name="ls1"
        )
        self.norm2 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="norm2"
        )
        self.mlp = TIPSFeedForward(
            self.hidden_dim, self.mlp_dim, ffn_layer, dtype=policy, name="mlp"
        )
        self.ls2 = LayerScale(
            self.hidden_dim, self.layer_scale_init, dtype=policy, name="ls2"
        )

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.qkv.build(input_shape)
        self.proj.build(input_shape)
        self.norm2.build(input_shape)
        self.mlp.build(input_shape)
        self.built = True

    def attention(self, x, value_attention=False, training=None):
        shape = ops.shape(x)
        batch, length = shape[0], shape[1]
        qkv = ops.reshape(
            self.qkv(x), (batch, length, 3, self.num_heads, self.head_dim)
        )
        if value_attention:
            values = ops.reshape(qkv[:, :, 2], (batch, length, self.hidden_dim))
            return self.proj(values)
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        mixed = self_attention(query, key, value, training=training)
        return self.proj(ops.reshape(mixed, (batch, length, self.hidden_dim)))

    def call(self, x, value_attention=False, training=None):
        # Branches in the compute dtype, residual stream in float32 under a
        # float16/bfloat16 policy (see `residual_dtype`).
        # The barriers change nothing but XLA:CPU's backward pass (see
        # `residual_gradient_barrier`).
        x = residual_gradient_barrier(
            ops.cast(x, residual_dtype(self.compute_dtype)))
        branch = self.ls1(
            self.attention(self.norm1(x), value_attention, training))
        x = residual_gradient_barrier(x + ops.cast(branch, x.dtype))
        branch = self.ls2(self.mlp(self.norm2(x)))
        return x + ops.cast(branch, x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ffn_layer": self.ffn_layer,
                "layer_scale_init": self.layer_scale_init,
            }
        )
        return config
