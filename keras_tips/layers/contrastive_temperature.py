"""The learned temperature of TIPS' image-text contrastive loss."""

import math

import keras
from keras import ops


class ContrastiveTemperature(keras.layers.Layer):
    """Holds the contrastive temperature as a learned log-value.

    Similarity logits are `cosine / temperature`. The weight is stored as
    `log(temperature)` so it stays positive under gradient descent, clipped
    to `[min_temperature, max_temperature]` when read. Released TIPS
    checkpoints end near 0.004. The weight has the policy's variable dtype
    (float32 under the mixed policies); it is read in float32.

    Args:
        initial_temperature: float. Starting temperature.
        min_temperature: float. Lower clip.
        max_temperature: float. Upper clip.
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        initial_temperature=0.07,
        min_temperature=1e-3,
        max_temperature=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not min_temperature <= initial_temperature <= max_temperature:
            raise ValueError(
                f"`initial_temperature` {initial_temperature} must lie in "
                f"[{min_temperature}, {max_temperature}]."
            )
        self.initial_temperature = float(initial_temperature)
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)
        self.log_temperature = self.add_weight(
            name="log_temperature",
            shape=(),
            initializer=keras.initializers.Constant(
                math.log(self.initial_temperature)
            ),
        )
        self.built = True

    def temperature(self):
        """The current temperature, a float32 scalar tensor."""
        return ops.clip(
            ops.exp(ops.cast(self.log_temperature, "float32")),
            self.min_temperature,
            self.max_temperature,
        )

    def set_temperature(self, value):
        """Sets the temperature (e.g. from an official checkpoint)."""
        value = float(value)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(
                "The contrastive temperature must be a positive finite "
                f"number. Received: {value}"
            )
        self.log_temperature.assign(math.log(value))

    def call(self, embeddings):
        """Returns the temperature broadcast to one value per example.

        In the layer's compute dtype, like every model output; read the
        `temperature()` method for the float32 value.
        """
        ones = ops.ones_like(embeddings[:, :1], dtype="float32")
        temperature = ops.squeeze(ones, axis=-1) * self.temperature()
        return ops.cast(temperature, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "initial_temperature": self.initial_temperature,
                "min_temperature": self.min_temperature,
                "max_temperature": self.max_temperature,
            }
        )
        return config
