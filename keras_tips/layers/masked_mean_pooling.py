"""Mean over the real (non-padded) tokens of a sequence."""

import keras
from keras import ops


class MaskedMeanPooling(keras.layers.Layer):
    """Averages `(B, L, D)` over positions where `padding_mask` is 1.

    Computes `sum(x * mask) / (sum(mask) + epsilon)` as the official TIPS
    text encoder does, so a sequence without real tokens pools to zeros
    rather than NaN. Any non-zero mask value marks a real token.

    Args:
        epsilon: float. Added to the token count.
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(self, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x, padding_mask):
        # Any non-zero mask value is a real token, counted once.
        keep = ops.cast(ops.not_equal(padding_mask, 0), "float32")[..., None]
        x = ops.where(keep > 0, ops.cast(x, "float32"), 0.0)
        total = ops.sum(x, axis=1)
        count = ops.sum(keep, axis=1) + self.epsilon
        return ops.cast(total / count, self.compute_dtype)

    def compute_output_spec(self, x, padding_mask):
        return keras.KerasTensor((x.shape[0], x.shape[-1]), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config
