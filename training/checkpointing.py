"""Atomic training checkpoints of `TIPSPretrainer`, and resuming from them.

A checkpoint is a directory `<root>/ckpt-<step>` (step zero-padded to 9
digits) with

* `state.npz`: every model weight (student, teacher, heads, centers, step
  counter), keys `model/<name>` with the backend-independent names of
  `TIPSPretrainer.named_weights()` (`model/<index>` of `model.weights` for
  other models), and every optimizer variable (`optimizer.variables` order,
  keys `optimizer/<index>`; that order follows the backend's order of the
  trainable variables, so optimizer state is restored on the backend that
  wrote it);
* `metadata.json`: format version, step, the path / shape / dtype of each
  array, the size and SHA-256 of `state.npz`, and free-form `extra` (e.g. the
  run's config). It is written last.

Atomicity: both files are written (and fsynced) into a temporary directory
`<root>/.tmp-ckpt-<step>-<pid>`, which is then renamed to `ckpt-<step>` in
one `os.replace`. A crash while writing leaves a temporary directory, never
a `ckpt-*` directory; `CheckpointManager` removes stale temporary
directories. Any error while writing (disk full, permissions) removes the
temporary directory and raises `CheckpointError`; earlier checkpoints are
untouched, because old checkpoints are only deleted (keeping the newest
`max_to_keep`) after a new one is complete.

Resuming: `CheckpointManager.restore_latest` takes the newest COMPLETE
checkpoint: one whose metadata parses, whose `state.npz` has the recorded
size and SHA-256, and whose arrays match the model. A damaged checkpoint is
skipped with a logged warning naming the problem, and the next older one is
tried.

`CheckpointCallback` saves every `save_every_steps` steps and, when the
process receives SIGTERM or SIGINT, at the end of the running step, then
stops training (see `train.py`).

Example:
```python
manager = CheckpointManager("run/checkpoints", max_to_keep=3)
step = manager.restore_latest(pretrainer) or 0
...
manager.save(pretrainer, step=100)
```
"""

import hashlib
import json
import logging
import os
import re
import shutil
import signal

import keras
import numpy as np

FORMAT_VERSION = 1
STATE_FILE = "state.npz"
METADATA_FILE = "metadata.json"

_NAME = re.compile(r"^ckpt-(\d+)$")
_TEMP_PREFIX = ".tmp-ckpt-"

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """Writing or reading a checkpoint failed; the message says why."""


def checkpoint_name(step):
    """Directory name of the checkpoint of `step`."""
    return f"ckpt-{int(step):09d}"


def _sync_jax_state(model):
    # The JAX trainer keeps the state outside the variables during `fit`;
    # write it back before reading or replacing the variables.
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def _optimizer_variables(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return []
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return list(optimizer.variables)


def _named_model_weights(model):
    named = getattr(model, "named_weights", None)
    if named is not None:
        return list(named().items())
    return [(str(index), v) for index, v in enumerate(model.weights)]


def _variable_groups(model):
    optimizer = [
        (str(index), v) for index, v in enumerate(_optimizer_variables(model))
    ]
    return (("model", _named_model_weights(model)), ("optimizer", optimizer))


def _describe(variable):
    return getattr(variable, "path", None) or getattr(variable, "name", "?")


def collect_state(model):
    """`(arrays, entries)`: NumPy copies of all checkpointed variables.

    `arrays` maps `"model/<i>"` / `"optimizer/<i>"` to arrays; `entries`
    lists `{"key", "path", "shape", "dtype"}` for the metadata.
    """
    _sync_jax_state(model)
    arrays = {}
    entries = []
    for group, variables in _variable_groups(model):
        for name, variable in variables:
            key = f"{group}/{name}"
            value = np.array(keras.ops.convert_to_numpy(variable.value))
            arrays[key] = value
            entries.append(
                {
                    "key": key,
                    "path": _describe(variable),
                    "shape": list(value.shape),
                    "dtype": str(value.dtype),
                }
            )
    return arrays, entries


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_path(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_npz(path, arrays):
    with open(path, "wb") as file:
        np.savez(file, **arrays)
        file.flush()
        os.fsync(file.fileno())


def _write_json(path, value):
    with open(path, "w") as file:
        json.dump(value, file, indent=1)
        file.flush()
        os.fsync(file.fileno())


class CheckpointManager:
    """Writes, lists, validates, restores and prunes checkpoints in a directory.

    Args:
        directory: str. Root directory of the checkpoints (created).
        max_to_keep: int >= 1. Complete checkpoints kept; older ones are
            deleted after each successful save.

    Example:
    ```python
    manager = CheckpointManager("/tmp/run/checkpoints", max_to_keep=2)
    manager.save(pretrainer, step=10)
    manager.latest_complete()   # (10, "/tmp/run/checkpoints/ckpt-000000010")
    ```
    """

    def __init__(self, directory, max_to_keep=3):
        if int(max_to_keep) < 1:
            raise ValueError(f"`max_to_keep` must be >= 1. Received: {max_to_keep}.")
        self.directory = os.fspath(directory)
        self.max_to_keep = int(max_to_keep)
        os.makedirs(self.directory, exist_ok=True)
        self._remove_stale_temporaries()

    # --- Listing. ---

    def _remove_stale_temporaries(self):
        for name in os.listdir(self.directory):
            if name.startswith(_TEMP_PREFIX):
                pid = name.rsplit("-", 1)[-1]
                if pid.isdigit() and int(pid) == os.getpid():
                    continue
                logger.warning(
                    "Removing the partial checkpoint %s left by an "
                    "interrupted save.",
                    os.path.join(self.directory, name),
                )
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def checkpoints(self):
        """`[(step, path)]` of all `ckpt-*` directories, oldest first.

        Completeness is not checked here; see `validate`.
        """
        found = []
        for name in os.listdir(self.directory):
            match = _NAME.match(name)
            path = os.path.join(self.directory, name)
            if match and os.path.isdir(path):
                found.append((int(match.group(1)), path))
        return sorted(found)

    def validate(self, path):
        """The metadata of the checkpoint at `path`; raises if incomplete.

        Raises:
            CheckpointError: naming what is wrong (missing or unreadable
                metadata, missing state file, size or SHA-256 mismatch).
        """
        metadata_path = os.path.join(path, METADATA_FILE)
        state_path = os.path.join(path, STATE_FILE)
        try:
            with open(metadata_path) as file:
                metadata = json.load(file)
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"Checkpoint {path} has no readable {METADATA_FILE}: {error}"
            ) from error
        if not isinstance(metadata, dict) or "step" not in metadata:
            raise CheckpointError(f"Checkpoint {path}: malformed {METADATA_FILE}.")
        if metadata.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"Checkpoint {path} has format version "
                f"{metadata['format_version']}, newer than this code's "
                f"{FORMAT_VERSION}; update keras-tips to read it."
            )
        if not os.path.isfile(state_path):
            raise CheckpointError(f"Checkpoint {path} lacks {STATE_FILE}.")
        size = os.path.getsize(state_path)
        if size != metadata.get("state_bytes"):
            raise CheckpointError(
                f"Checkpoint {path}: {STATE_FILE} has {size} bytes, the "
                f"metadata records {metadata.get('state_bytes')} (truncated "
                "or overwritten file)."
            )
        if _sha256(state_path) != metadata.get("state_sha256"):
            raise CheckpointError(
                f"Checkpoint {path}: {STATE_FILE} does not match its recorded "
                "SHA-256 (corrupt file)."
            )
        return metadata

    def latest_complete(self):
        """`(step, path)` of the newest complete checkpoint, or None.

        Damaged checkpoints are skipped with a warning naming the problem.
        """
        for step, path in reversed(self.checkpoints()):
            try:
                self.validate(path)
            except CheckpointError as error:
                logger.warning("Ignoring checkpoint: %s", error)
                continue
            return step, path
        return None

    # --- Saving. ---

    def save(self, model, step, extra=None):
        """Writes the checkpoint of `step` atomically; returns its path.

        Args:
            model: the `TIPSPretrainer` (with its optimizer).
            step: int, the number of completed training steps.
            extra: optional JSON-serializable dict stored in the metadata.

        Raises:
            CheckpointError: if anything fails while writing (the message
                names the directory and the OS error; the previous
                checkpoints are kept and the partial one is removed).
        """
        step = int(step)
        final_path = os.path.join(self.directory, checkpoint_name(step))
        temp_path = os.path.join(
            self.directory, f"{_TEMP_PREFIX}{step:09d}-{os.getpid()}"
        )
        arrays, entries = collect_state(model)
        try:
            shutil.rmtree(temp_path, ignore_errors=True)
            os.makedirs(temp_path)
            state_path = os.path.join(temp_path, STATE_FILE)
            _write_npz(state_path, arrays)
            metadata = {
                "format_version": FORMAT_VERSION,
                "step": step,
                "backend": keras.backend.backend(),
                "state_bytes": os.path.getsize(state_path),
                "state_sha256": _sha256(state_path),
                "arrays": entries,
                "extra": extra or {},
            }
            _write_json(os.path.join(temp_path, METADATA_FILE), metadata)
            _fsync_path(temp_path)
            if os.path.exists(final_path):
                shutil.rmtree(final_path)
            os.replace(temp_path, final_path)
            _fsync_path(self.directory)
        except OSError as error:
            shutil.rmtree(temp_path, ignore_errors=True)
            previous = self.latest_complete()
            kept = (
                f"The previous checkpoint {previous[1]} is kept."
                if previous
                else "There is no previous checkpoint."
            )
            raise CheckpointError(
                f"Could not write the checkpoint of step {step} to "
                f"{final_path}: {error}. {kept}"
            ) from error
        self._prune()
        return final_path

    def _prune(self):
        complete = self.checkpoints()
        for _, path in complete[: -self.max_to_keep]:
            shutil.rmtree(path, ignore_errors=True)

    # --- Restoring. ---

    def restore(self, model, path):
        """Loads the checkpoint at `path` into `model`; returns its step.

        Raises:
            CheckpointError: if the checkpoint is incomplete, or its arrays
                do not match the model (the message names the variable and
                both shapes).
        """
        metadata = self.validate(path)
        try:
            with np.load(os.path.join(path, STATE_FILE)) as state:
                arrays = {key: state[key] for key in state.files}
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"Checkpoint {path}: cannot read {STATE_FILE}: {error}"
            ) from error
        _sync_jax_state(model)
        backend = keras.backend.backend()
        assignments = []
        for group, variables in _variable_groups(model):
            keys = {k for k in arrays if k.startswith(group + "/")}
            expected = {f"{group}/{name}" for name, _ in variables}
            if keys != expected:
                missing = sorted(expected - keys)[:3]
                unexpected = sorted(keys - expected)[:3]
                raise CheckpointError(
                    f"Checkpoint {path} does not match the model's {group} "
                    f"variables ({len(keys)} arrays, {len(expected)} "
                    f"variables; missing e.g. {missing}, unexpected e.g. "
                    f"{unexpected}): another model or config?"
                )
            if group == "optimizer" and metadata.get("backend") not in (
                None,
                backend,
            ):
                raise CheckpointError(
                    f"Checkpoint {path} was written on the "
                    f"{metadata['backend']} backend; its optimizer state "
                    f"cannot be restored on {backend} (the variable order "
                    "differs). Resume on the same backend."
                )
            for name, variable in variables:
                value = arrays[f"{group}/{name}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise CheckpointError(
                        f"Checkpoint {path}: {group} variable {name} "
                        f"({_describe(variable)}) has shape "
                        f"{tuple(variable.shape)} in the model but "
                        f"{tuple(value.shape)} in the checkpoint."
                    )
                assignments.append((variable, value))
        for variable, value in assignments:
            variable.assign(value)
        return int(metadata["step"])

    def restore_latest(self, model):
        """Restores the newest complete checkpoint; its step, or None if none.

        A checkpoint that turns out unusable while loading is skipped with a
        warning, like an incomplete one.
        """
        for step, path in reversed(self.checkpoints()):
            try:
                restored = self.restore(model, path)
            except CheckpointError as error:
                logger.warning("Ignoring checkpoint: %s", error)
                continue
            logger.info("Resumed from %s (step %d).", path, restored)
            return restored
        return None


def _all_finite(logs):
    for value in (logs or {}).values():
        try:
            if not np.all(np.isfinite(np.asarray(value, dtype="float64"))):
                return False
        except (TypeError, ValueError):
            continue
    return True


class CheckpointCallback(keras.callbacks.Callback):
    """Saves checkpoints during `fit`: periodically, at the end, on signals.

    * every `save_every_steps` completed steps (global step count, so the
      schedule is the same after a resume);
    * when the process gets one of `signals` (SIGTERM, SIGINT): at the end
      of the running step it saves and stops training; `interrupted_by`
      then holds the signal number. A second signal of the same kind gets
      the default behaviour (e.g. a second Ctrl-C raises
      `KeyboardInterrupt`).

    A step whose logs hold a NaN or Inf is never saved (the run stops on
    it, see `training.callbacks.NonFiniteLossGuard`); the last good
    checkpoint stays.

    Args:
        manager: a `CheckpointManager`.
        save_every_steps: int; 0 saves only on signals (and when asked).
        initial_step: int, the global step at the start of this `fit`.
        extra: optional dict stored in each checkpoint's metadata.
        signals: signal numbers that trigger a checkpoint and a stop.
    """

    def __init__(
        self,
        manager,
        save_every_steps,
        initial_step=0,
        extra=None,
        signals=(signal.SIGTERM, signal.SIGINT),
    ):
        super().__init__()
        self.manager = manager
        self.save_every_steps = int(save_every_steps)
        self.step = int(initial_step)
        self.extra = extra
        self.signals = tuple(signals)
        self.interrupted_by = None
        self._fit_start_step = self.step
        self.last_saved_step = None
        self.last_saved_path = None
        self._previous_handlers = {}

    # --- Signals. ---

    def _handle(self, signum, frame):
        del frame
        if self.interrupted_by is None:
            logger.warning(
                "Received signal %d: saving a checkpoint after the running "
                "step, then stopping.",
                signum,
            )
            self.interrupted_by = signum
        # A second signal gets the default behaviour.
        signal.signal(signum, self._previous_handlers.get(signum, signal.SIG_DFL))

    def install_signal_handlers(self):
        """Installs the handlers (main thread only; else a no-op)."""
        for signum in self.signals:
            try:
                self._previous_handlers[signum] = signal.signal(signum, self._handle)
            except ValueError:
                # Not the main thread: signals cannot be handled here.
                return

    def restore_signal_handlers(self):
        for signum, handler in self._previous_handlers.items():
            try:
                signal.signal(signum, handler)
            except (ValueError, TypeError):
                pass
        self._previous_handlers = {}

    # --- Callback hooks. ---

    def on_train_begin(self, logs=None):
        self._fit_start_step = self.step
        self.install_signal_handlers()

    def on_train_end(self, logs=None):
        self.restore_signal_handlers()

    def save(self):
        """Saves the current state as the checkpoint of `self.step`."""
        path = self.manager.save(self.model, self.step, extra=self.extra)
        self.last_saved_step = self.step
        self.last_saved_path = path
        return path

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the index of the last step run in this `fit` (several
        # with `steps_per_execution` > 1).
        self.step = getattr(self, "_fit_start_step", 0) + int(batch) + 1
        if not _all_finite(logs):
            return
        periodic = self.save_every_steps > 0 and self.step % self.save_every_steps == 0
        if periodic or self.interrupted_by is not None:
            self.save()
        if self.interrupted_by is not None:
            self.model.stop_training = True
