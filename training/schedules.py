"""Step schedules of TIPS pretraining.

Learning rate, weight decay, EMA momentum and teacher temperature.

Every schedule is a function of the training step. Each function accepts
either a Python / NumPy number or array (then it computes with NumPy and
returns a Python float, or a NumPy array for array input) or a backend
tensor / `keras.Variable` such as `optimizer.iterations` (then it computes
with `keras.ops` and returns a float32 tensor, usable inside a compiled train
step). The schedule parameters themselves are Python numbers.

* `cosine_schedule`: optional linear warm-up, then a half-cosine from
  `base_value` to `final_value`, then constant `final_value`.
* `linear_warmup_schedule`: linear from a start to an end value, then
  constant.
* `WarmupCosineDecay`: `cosine_schedule` as a serializable
  `keras.optimizers.schedules.LearningRateSchedule`.
* `ema_momentum_schedule` (0.994 -> 1.0), `weight_decay_schedule`
  (0.04 -> 0.2), `teacher_temperature_schedule` (0.04 -> 0.07): the DINOv2
  schedules with their defaults.
"""

import math
import numbers

import keras
import numpy as np
from keras import ops


def _is_host_value(x):
    return isinstance(x, (numbers.Number, np.ndarray, np.generic))


def _host_result(value):
    value = np.asarray(value, dtype="float64")
    return float(value) if value.ndim == 0 else value


def _check_steps(total_steps, warmup_steps):
    if isinstance(total_steps, bool) or not isinstance(
        total_steps, numbers.Integral
    ):
        raise TypeError(
            f"`total_steps` must be an int. Received: {total_steps!r}."
        )
    if isinstance(warmup_steps, bool) or not isinstance(
        warmup_steps, numbers.Integral
    ):
        raise TypeError(
            f"`warmup_steps` must be an int. Received: {warmup_steps!r}."
        )
    if total_steps < 1:
        raise ValueError(
            f"`total_steps` must be >= 1. Received: {total_steps}."
        )
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            "`warmup_steps` must be in [0, total_steps]. Received "
            f"warmup_steps={warmup_steps}, total_steps={total_steps}."
        )


def cosine_schedule(
    step,
    total_steps,
    base_value,
    final_value,
    warmup_steps=0,
    warmup_start_value=0.0,
):
    """Linear warm-up, then cosine from `base_value` to `final_value`.

    * `step < warmup_steps`: `warmup_start_value + (base_value -
      warmup_start_value) * step / warmup_steps`;
    * `warmup_steps <= step <= total_steps`: with
      `t = (step - warmup_steps) / (total_steps - warmup_steps)`,
      `final_value + 0.5 * (base_value - final_value) * (1 + cos(pi * t))`;
    * `step > total_steps`: `final_value`.

    So the value is `warmup_start_value` at step 0 (`base_value` without
    warm-up), `base_value` at `warmup_steps` and `final_value` at
    `total_steps`. Decreasing for a learning rate (`final < base`),
    increasing for EMA momentum or weight decay (`final > base`).

    Args:
        step: Python / NumPy number or array, or a backend tensor / variable.
        total_steps: int >= 1, the step at which `final_value` is reached.
        base_value: float, value at the end of the warm-up.
        final_value: float, value at `total_steps` and after.
        warmup_steps: int in [0, total_steps].
        warmup_start_value: float, value at step 0 when `warmup_steps > 0`.

    Returns:
        Python float / NumPy array for host input, else a float32 tensor.

    Example:
    ```python
    lr = cosine_schedule(1000, total_steps=10000, base_value=1e-3,
                         final_value=1e-6, warmup_steps=500)
    ```
    """
    _check_steps(total_steps, warmup_steps)
    decay_steps = max(total_steps - warmup_steps, 1)
    if _is_host_value(step):
        step = np.asarray(step, dtype="float64")
        progress = np.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
        value = final_value + 0.5 * (base_value - final_value) * (
            1.0 + np.cos(math.pi * progress)
        )
        if warmup_steps > 0:
            warmup_value = warmup_start_value + (
                base_value - warmup_start_value
            ) * (step / warmup_steps)
            value = np.where(step < warmup_steps, warmup_value, value)
        return _host_result(value)

    step = ops.cast(step, "float32")
    progress = ops.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
    value = final_value + 0.5 * (base_value - final_value) * (
        1.0 + ops.cos(math.pi * progress)
    )
    if warmup_steps > 0:
        warmup_value = warmup_start_value + (
            base_value - warmup_start_value
        ) * (step / warmup_steps)
        value = ops.where(step < warmup_steps, warmup_value, value)
    return ops.cast(value, "float32")


def linear_warmup_schedule(step, warmup_steps, start_value, end_value):
    """Linear from `start_value` to `end_value` over `warmup_steps`, then flat.

    With `warmup_steps == 0` the value is `end_value` at every step.

    Args:
        step: Python / NumPy number or array, or a backend tensor / variable.
        warmup_steps: int >= 0.
        start_value: float, value at step 0.
        end_value: float, value from `warmup_steps` on.

    Returns:
        Python float / NumPy array for host input, else a float32 tensor.

    Example:
    ```python
    linear_warmup_schedule(50, warmup_steps=100, start_value=0.04,
                           end_value=0.07)  # 0.055
    ```
    """
    if isinstance(warmup_steps, bool) or not isinstance(
        warmup_steps, numbers.Integral
    ):
        raise TypeError(
            f"`warmup_steps` must be an int. Received: {warmup_steps!r}."
        )
    if warmup_steps < 0:
        raise ValueError(
            f"`warmup_steps` must be >= 0. Received: {warmup_steps}."
        )
    denominator = max(warmup_steps, 1)
    if _is_host_value(step):
        step = np.asarray(step, dtype="float64")
        fraction = np.clip(step / denominator, 0.0, 1.0)
        if warmup_steps == 0:
            fraction = np.ones_like(step)
        return _host_result(start_value + (end_value - start_value) * fraction)
    step = ops.cast(step, "float32")
    fraction = ops.clip(step / denominator, 0.0, 1.0)
    if warmup_steps == 0:
        fraction = ops.ones_like(step)
    return ops.cast(
        start_value + (end_value - start_value) * fraction, "float32"
    )


def ema_momentum_schedule(
    step, total_steps, base_momentum=0.994, final_momentum=1.0
):
    """Teacher EMA momentum: cosine from `base_momentum` to `final_momentum`.

    DINOv2 uses 0.992 (its default config) or 0.994 (ViT-g) to 1.0 over the
    whole training.

    Example:
    ```python
    ema_momentum_schedule(0, total_steps=1000)  # 0.994
    ```
    """
    return cosine_schedule(step, total_steps, base_momentum, final_momentum)


def weight_decay_schedule(
    step, total_steps, base_weight_decay=0.04, final_weight_decay=0.2
):
    """AdamW weight decay: cosine from `base_weight_decay` to the final value.

    DINOv2 uses 0.04 -> 0.2 over the whole training.

    Example:
    ```python
    weight_decay_schedule(1000, total_steps=1000)  # 0.2
    ```
    """
    return cosine_schedule(
        step, total_steps, base_weight_decay, final_weight_decay
    )


def teacher_temperature_schedule(
    step,
    warmup_steps,
    start_temperature=0.04,
    end_temperature=0.07,
):
    """Teacher softmax temperature: linear warm-up, then constant.

    DINOv2 warms up from 0.04 to 0.07 over the first 30 epochs; here the
    warm-up length is given in steps.

    Example:
    ```python
    teacher_temperature_schedule(step, warmup_steps=30000)
    ```
    """
    return linear_warmup_schedule(
        step, warmup_steps, start_temperature, end_temperature
    )


@keras.saving.register_keras_serializable(package="keras_tips")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate with linear warm-up and cosine decay.

    See `cosine_schedule` for the exact formula.

    Args:
        learning_rate: float, peak learning rate reached after the warm-up.
        total_steps: int >= 1, step at which `final_learning_rate` is reached.
        final_learning_rate: float, learning rate at `total_steps` and after.
        warmup_steps: int in [0, total_steps].
        warmup_start_learning_rate: float, learning rate at step 0 when
            `warmup_steps > 0`.
        name: optional name.

    Example:
    ```python
    schedule = WarmupCosineDecay(1e-3, total_steps=100000, warmup_steps=10000,
                                 final_learning_rate=1e-6)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    ```
    """

    def __init__(
        self,
        learning_rate,
        total_steps,
        final_learning_rate=0.0,
        warmup_steps=0,
        warmup_start_learning_rate=0.0,
        name=None,
    ):
        super().__init__()
        _check_steps(total_steps, warmup_steps)
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.final_learning_rate = float(final_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.warmup_start_learning_rate = float(warmup_start_learning_rate)
        self.name = name

    def __call__(self, step):
        if _is_host_value(step):
            step = ops.convert_to_tensor(step, "float32")
        return cosine_schedule(
            step,
            self.total_steps,
            self.learning_rate,
            self.final_learning_rate,
            self.warmup_steps,
            self.warmup_start_learning_rate,
        )

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "final_learning_rate": self.final_learning_rate,
            "warmup_steps": self.warmup_steps,
            "warmup_start_learning_rate": self.warmup_start_learning_rate,
            "name": self.name,
        }
