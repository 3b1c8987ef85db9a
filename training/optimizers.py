"""The pretraining optimizer: AdamW with scheduled learning rate and decay.

`build_optimizer` makes the `AdamWWithWeightDecaySchedule` of a
`PretrainConfig`: a warm-up + cosine learning rate (`WarmupCosineDecay`) and
a cosine weight decay (`weight_decay_schedule`, 0.04 -> 0.2 in DINOv2),
with the pretrainer's biases, norms, LayerScale and temperature excluded
from weight decay.

Example:

```python
pretrainer.compile(optimizer=build_optimizer(config, pretrainer))
```
"""

import keras

from training.schedules import WarmupCosineDecay
from training.schedules import weight_decay_schedule


@keras.saving.register_keras_serializable(package="keras_tips")
class AdamWWithWeightDecaySchedule(keras.optimizers.AdamW):
    """AdamW whose weight decay follows a cosine schedule of the step.

    `weight_decay` reads `weight_decay_schedule(iterations, total_steps,
    weight_decay, final_weight_decay)` (0.04 -> 0.2 in DINOv2), so every
    backend's AdamW update uses the current value.

    Args:
        total_steps: int, steps of the schedule.
        weight_decay: float, weight decay at step 0.
        final_weight_decay: float, weight decay at `total_steps`.
        **kwargs: `keras.optimizers.AdamW` arguments.
    """

    def __init__(
        self,
        total_steps,
        weight_decay=0.04,
        final_weight_decay=0.2,
        **kwargs,
    ):
        super().__init__(weight_decay=weight_decay, **kwargs)
        self.total_steps = int(total_steps)
        self.initial_weight_decay = float(weight_decay)
        self.final_weight_decay = float(final_weight_decay)

    @property
    def weight_decay(self):
        schedule_ready = "final_weight_decay" in self.__dict__
        iterations = getattr(self, "_iterations", None)
        if not schedule_ready or iterations is None:
            return self.__dict__.get("initial_weight_decay", 0.0)
        return weight_decay_schedule(
            iterations,
            self.total_steps,
            self.initial_weight_decay,
            self.final_weight_decay,
        )

    @weight_decay.setter
    def weight_decay(self, value):
        # Set by the base constructor; the schedule replaces it.
        del value

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "total_steps": self.total_steps,
                "weight_decay": self.initial_weight_decay,
                "final_weight_decay": self.final_weight_decay,
            }
        )
        return config


def build_optimizer(config, pretrainer=None):
    """AdamW with warm-up + cosine learning rate and cosine weight decay.

    Gradient clipping is done by the pretrainer (on the global gradient,
    also under `tf.distribute`), so the optimizer itself does not clip.
    With `pretrainer`, its `no_weight_decay_variables()` (biases, norms,
    LayerScale, temperature) are excluded from weight decay.
    """
    learning_rate = WarmupCosineDecay(
        config.learning_rate,
        total_steps=config.total_steps,
        final_learning_rate=config.final_learning_rate,
        warmup_steps=config.warmup_steps,
        warmup_start_learning_rate=config.warmup_start_learning_rate,
    )
    optimizer = AdamWWithWeightDecaySchedule(
        total_steps=config.total_steps,
        weight_decay=config.weight_decay_start,
        final_weight_decay=config.weight_decay_end,
        learning_rate=learning_rate,
        beta_1=config.adam_beta1,
        beta_2=config.adam_beta2,
        epsilon=config.adam_epsilon,
    )
    if pretrainer is not None:
        optimizer.exclude_from_weight_decay(
            var_list=pretrainer.no_weight_decay_variables()
        )
    return optimizer
