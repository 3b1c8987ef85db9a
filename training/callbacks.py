"""Keras callbacks of a pretraining run that watch each step's logs.

* `NonFiniteLossGuard` stops training at the first step with a NaN or Inf
  loss term and records a `NonFiniteLossError` naming the step, the term and
  the last good checkpoint;
* `LogHistory` keeps every step's logs as floats.

The checkpoint callback is `training.checkpointing.CheckpointCallback`, the
metrics file and periodic evaluation are in `training.metrics_log`.
"""

import logging
import math

import keras
import numpy as np

from training.pretrainer import LOSS_TERMS

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or Inf; training stopped.

    Attributes:
        step: the (1-based) global step whose loss was not finite.
        term: the offending loss term (`LOSS_TERMS`, or `"loss"`).
        value: its value.
        last_checkpoint: path of the last good checkpoint, or None.
    """

    def __init__(self, step, term, value, last_checkpoint=None):
        self.step = step
        self.term = term
        self.value = value
        self.last_checkpoint = last_checkpoint
        where = (
            f"the last good checkpoint is {last_checkpoint}"
            if last_checkpoint
            else "no checkpoint was written yet"
        )
        super().__init__(
            f"Non-finite loss at step {step}: loss term '{term}' = {value}. "
            f"Training stopped; {where}. Lower the learning rate, check the "
            "input data, or resume from that checkpoint."
        )


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first step whose loss terms are not all finite.

    The terms of `LOSS_TERMS` are checked in order, then the total; the
    first NaN / Inf one is recorded in `error` (a `NonFiniteLossError`) and
    training stops. Put it BEFORE the checkpoint callback (which itself
    never saves a non-finite step).

    Args:
        initial_step: global step at the start of this `fit`.
        checkpoint_callback: optional `CheckpointCallback`, to name the last
            good checkpoint in the error.
    """

    def __init__(self, initial_step=0, checkpoint_callback=None):
        super().__init__()
        self.step = int(initial_step)
        self._fit_start_step = self.step
        self.checkpoint_callback = checkpoint_callback
        self.error = None

    def on_train_begin(self, logs=None):
        self._fit_start_step = self.step

    def on_train_batch_end(self, batch, logs=None):
        self.step = self._fit_start_step + int(batch) + 1
        logs = logs or {}
        for term in (*LOSS_TERMS, "loss"):
            if term not in logs:
                continue
            value = float(np.asarray(logs[term]))
            if not math.isfinite(value):
                last = None
                if self.checkpoint_callback is not None:
                    last = self.checkpoint_callback.manager.latest_complete()
                    last = last[1] if last else None
                self.error = NonFiniteLossError(self.step, term, value, last)
                logger.error("%s", self.error)
                self.model.stop_training = True
                return


class LogHistory(keras.callbacks.Callback):
    """Keeps the logs of every step (floats) in `steps`."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(
            {key: float(np.asarray(value)) for key, value in (logs or {}).items()}
        )
