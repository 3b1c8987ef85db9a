"""Feed-forward sublayers of the TIPS transformer blocks."""

import keras
from keras import ops


def swiglu_hidden_dim(mlp_dim):
    """Hidden width of the fused SwiGLU of DINOv2 / TIPS g/14.

    Two thirds of the nominal MLP width, rounded up to a multiple of 8.
    """
    return (int(mlp_dim * 2 / 3) + 7) // 8 * 8


class TIPSFeedForward(keras.layers.Layer):
    """Two-layer MLP (`"mlp"`, exact GELU) or SwiGLU (`"swiglu"`) block.

    Args:
        hidden_dim: int. Input and output width.
        mlp_dim: int. Nominal hidden width. For `"swiglu"` the actual width
            is `swiglu_hidden_dim(mlp_dim)`, as in the official g/14 model.
        ffn_layer: `"mlp"` or `"swiglu"`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    ffn = TIPSFeedForward(hidden_dim=64, mlp_dim=256, ffn_layer="swiglu")
    y = ffn(np.zeros((2, 10, 64), "float32"))
    ```
    """

    def __init__(self, hidden_dim, mlp_dim, ffn_layer="mlp", **kwargs):
        super().__init__(**kwargs)
        if ffn_layer not in ("mlp", "swiglu"):
            raise ValueError(
                f"`ffn_layer` must be 'mlp' or 'swiglu'. Received: {ffn_layer!r}"
            )
        self.hidden_dim = int(hidden_dim)
        self.mlp_dim = int(mlp_dim)
        self.ffn_layer = ffn_layer
        if ffn_layer == "mlp":
            inner, fc1_width = self.mlp_dim, self.mlp_dim
        else:
            inner = swiglu_hidden_dim(self.mlp_dim)
            fc1_width = 2 * inner
        self.inner_dim = inner
        self.fc1 = keras.layers.Dense(
            fc1_width, dtype=self.dtype_policy, name="fc1"
        )
        self.fc2 = keras.layers.Dense(
            self.hidden_dim, dtype=self.dtype_policy, name="fc2"
        )

    def build(self, input_shape):
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.inner_dim,))
        self.built = True

    def call(self, x):
        x = self.fc1(x)
        if self.ffn_layer == "mlp":
            x = ops.gelu(x, approximate=False)
        else:
            gate, value = ops.split(x, 2, axis=-1)
            x = ops.silu(gate) * value
        return self.fc2(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "mlp_dim": self.mlp_dim,
                "ffn_layer": self.ffn_layer,
            }
        )
        return config
