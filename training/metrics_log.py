"""Training logs users can read: JSON lines, TensorBoard, periodic evaluation.

`MetricsLogger` writes one JSON object per optimizer step to
`<output_dir>/metrics.jsonl` as training runs (every loss term, the
self-distillation diagnostics, learning rate, temperatures, gradient norm,
images per second), and optionally the same scalars as TensorBoard event
files. `PeriodicEvaluation` runs a held-out evaluation function every N
steps and logs its metrics the same way, under `eval/` names.

Both are Keras callbacks that work on every backend (TensorBoard files are
written with `tf.summary`, which TensorFlow provides on every backend of
this package).

Example:
```python
logger = MetricsLogger("runs/s14", batch_size=256, initial_step=0,
                       tensorboard=True)
pretrainer.fit(dataset, steps_per_epoch=1000, callbacks=[logger])
[json.loads(line) for line in open("runs/s14/metrics.jsonl")]
```
"""

import json
import math
import os
import time

import keras
import numpy as np

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _as_float(value):
    value = float(np.asarray(value))
    return value if math.isfinite(value) else str(value)


def read_metrics(path):
    """The records of a `metrics.jsonl` file (or of the directory holding it).

    Example:
    ```python
    steps = [r for r in read_metrics("runs/main/train") if "loss" in r]
    ```
    """
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    records = []
    with open(path) as file:
        for line in file:
            line = line.strip()
            if line:
                records.append(json.loads(line))
    return records


class MetricsLogger(keras.callbacks.Callback):
    """Appends every step's logs to `<output_dir>/metrics.jsonl`.

    Each line is `{"step": s, "time": unix seconds, "images_per_second": r,
    <every key of the step logs>: value}`, where `s` counts optimizer steps
    from the start of the run (1 after the first step). On resume
    (`initial_step > 0`) lines of steps after `initial_step` (from an
    interrupted run, whose later steps are redone) are dropped first, so the
    file describes exactly the steps of the final model.

    Args:
        output_dir: str, the run directory.
        batch_size: int, images per step (for images per second).
        initial_step: int, the step training starts (or resumes) from.
        tensorboard: bool. Also write the scalars as TensorBoard event files
            under `<output_dir>/tensorboard`.
    """

    def __init__(self, output_dir, batch_size, initial_step=0,
                 tensorboard=False):
        super().__init__()
        self.path = os.path.join(output_dir, METRICS_FILE)
        self.batch_size = int(batch_size)
        self.step = int(initial_step)
        self.tensorboard = bool(tensorboard)
        self.tensorboard_dir = os.path.join(output_dir, TENSORBOARD_DIR)
        self._writer = None
        self._last_time = None
        os.makedirs(output_dir, exist_ok=True)
        self._drop_steps_after(self.step)

    def _drop_steps_after(self, step):
        if not os.path.exists(self.path):
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        temporary = self.path + ".tmp"
        with open(temporary, "w") as file:
            for record in kept:
                file.write(json.dumps(record) + "\n")
        os.replace(temporary, self.path)

    def write(self, record):
        """Appends `record` (a dict with a `"step"`) to the log(s)."""
        record = {key: (_as_float(v) if not isinstance(v, (str, int)) else v)
                  for key, v in record.items()}
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")
        if self.tensorboard:
            self._write_tensorboard(record)

    def _write_tensorboard(self, record):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.tensorboard_dir)
        with self._writer.as_default(step=int(record["step"])):
            for key, value in record.items():
                if key in ("step", "time") or not isinstance(
                    value, (int, float)
                ):
                    continue
                tf.summary.scalar(key, float(value))
        self._writer.flush()

    def on_train_batch_begin(self, batch, logs=None):
        if self._last_time is None:
            self._last_time = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        elapsed = now - self._last_time if self._last_time else float("nan")
        self._last_time = now
        self.step += 1
        record = {"step": self.step, "time": round(time.time(), 3)}
        record["images_per_second"] = (
            self.batch_size / elapsed if elapsed > 0 else float("nan")
        )
        for key, value in (logs or {}).items():
            record[key] = value
        self.write(record)

    def on_train_end(self, logs=None):
        self._last_time = None
        if self._writer is not None:
            self._writer.flush()


class PeriodicEvaluation(keras.callbacks.Callback):
    """Runs `evaluate(backbone) -> dict of floats` every `every` steps.

    The metrics are written through `logger` as `{"step": s, "eval/<name>":
    value, ...}` (and to TensorBoard when the logger writes it), and kept in
    `results` as `(step, metrics)` pairs.

    Args:
        evaluate: callable taking the student `TIPSBackbone`.
        every: int > 0, steps between evaluations.
        logger: the run's `MetricsLogger` (its step counter is used).
    """

    def __init__(self, evaluate, every, logger):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"`every` must be a positive int. Received: {every!r}.")
        self.evaluate = evaluate
        self.every = every
        self.logger = logger
        self.results = []

    def on_train_batch_end(self, batch, logs=None):
        step = self.logger.step
        if step % self.every:
            return
        start = time.perf_counter()
        metrics = self.evaluate(self.model.backbone)
        record = {"step": step}
        record.update({
            f"eval/{key}": value for key, value in metrics.items()
            if isinstance(value, (int, float, np.floating, np.integer))
        })
        record["eval/seconds"] = time.perf_counter() - start
        self.logger.write(record)
        self.results.append((step, metrics))
