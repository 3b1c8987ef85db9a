"""The base of the TIPS transformer blocks: shared sizes, config and output.

`TIPSTextBlock` and `TIPSVisionBlock` differ in their attention and
feed-forward branches but share their sizes, their config keys and their
output: a tensor of the input's shape in the residual-stream dtype.
"""

import keras

from keras_tips.layers.residual_stream import residual_dtype


class TIPSTransformerBlock(keras.layers.Layer):
    """Pre-norm transformer block sizes, output spec and config.

    Subclasses build their layers after `super().__init__` and add their
    own config entries to `get_config`. Inputs are not cast to the compute
    dtype (`autocast = False`): under float16/bfloat16 a block takes its
    float32 residual stream as it is and casts inside `call`.

    Args:
        hidden_dim: int. Token width.
        num_heads: int. Attention heads; must divide `hidden_dim`.
        mlp_dim: int. Width of the feed-forward layer.
        layer_norm_epsilon: float. LayerNorm epsilon.
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(
        self, hidden_dim, num_heads, mlp_dim, layer_norm_epsilon, **kwargs
    ):
        super().__init__(**kwargs)
        if hidden_dim % num_heads:
            raise ValueError(
                f"`hidden_dim` ({hidden_dim}) must be divisible by "
                f"`num_heads` ({num_heads})."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.head_dim = self.hidden_dim // self.num_heads
        self.mlp_dim = int(mlp_dim)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.autocast = False

    def compute_output_spec(self, x, *args, **kwargs):
        return keras.KerasTensor(
            x.shape, dtype=residual_dtype(self.compute_dtype)
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
