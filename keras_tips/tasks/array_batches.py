"""Arrays given to a task's `fit`, batched in a new order every epoch.

keras-hub 0.32's `Task.fit` turns in-memory arrays into a grain (or
`tf.data`) dataset of batches in the arrays' order and hands Keras a
dataset, for which Keras ignores `shuffle`: every epoch then sees the
same batches in the same order, and data sorted by class trains on one
class at a time. `array_batches` builds the dataset the same way with a
shuffle before batching, which grain (and `tf.data` with
`reshuffle_each_iteration`) redraws for every pass, as Keras' own array
adapter does.
"""

import math

import keras
import numpy as np

try:
    import grain
except ImportError:  # grain is optional: `tf.data` carries the batches then.
    grain = None


def is_array_data(x):
    """Whether `x` is in-memory data (arrays, tensors, dicts/tuples of them).

    Datasets, generators and `PyDataset`s are not: they choose their own
    order, and `fit` passes them on as they are.
    """
    if x is None:
        return False
    leaves = keras.tree.flatten(x)
    return bool(leaves) and all(
        hasattr(leaf, "shape") and hasattr(leaf, "dtype")
        and not _is_ragged(leaf)
        for leaf in leaves
    )


def _is_ragged(leaf):
    return type(leaf).__name__ == "RaggedTensor"


def _to_numpy(leaf):
    if isinstance(leaf, np.ndarray):
        return leaf
    return np.asarray(keras.ops.convert_to_numpy(leaf))


def _sample_count(inputs):
    """The common length of every leaf's first axis, or a clear error."""
    leaves = [leaf for leaf in keras.tree.flatten(inputs) if leaf is not None]
    if any(len(leaf.shape) == 0 for leaf in leaves):
        raise ValueError(
            "`x`, `y` and `sample_weight` must be batches of samples (an "
            "array with a first, batch axis); got a scalar.")
    lengths = sorted({int(leaf.shape[0]) for leaf in leaves})
    if len(lengths) != 1:
        raise ValueError(
            "`x`, `y`, and `sample_weight` must all have the same number of "
            f"samples (first axis). Received sizes {lengths}.")
    if lengths[0] == 0:
        raise ValueError("`x` holds no samples (its first axis is empty).")
    return lengths[0]


def split_for_validation(inputs, validation_split):
    """Keras' `validation_split`: the last fraction of the samples, unshuffled.

    Args:
        inputs: `(x, y, sample_weight)`, any of them `None`.
        validation_split: float in `(0, 1)`.

    Returns:
        `(train, validation)`, each an `(x, y, sample_weight)` tuple.
    """
    if not 0.0 < validation_split < 1.0:
        raise ValueError(
            "`validation_split` must be a float in (0, 1). Received: "
            f"validation_split={validation_split!r}")
    count = _sample_count(inputs)
    split_at = int(math.floor(count * (1.0 - validation_split)))
    if split_at in (0, count):
        raise ValueError(
            f"Training data contains {count} samples, which is not enough "
            "to split into a training and a validation set with "
            f"validation_split={validation_split}.")

    def part(start, end):
        return tuple(
            None if t is None
            else keras.tree.map_structure(lambda a: a[start:end], t)
            for t in inputs)

    return part(0, split_at), part(split_at, count)


class _ArraySlices:
    """A grain source: sample `i` of every leaf of a nested structure."""

    def __init__(self, inputs):
        self.inputs = inputs
        self.length = _sample_count(inputs)

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return keras.tree.map_structure(lambda a: a[index], self.inputs)


def array_batches(x, y=None, sample_weight=None, batch_size=None,
                  shuffle=False, seed=None):
    """In-memory samples as a dataset of batches, optionally reshuffled.

    Args:
        x, y, sample_weight: arrays or tensors (or nested structures of
            them) with the same first, sample axis; `y` and
            `sample_weight` may be `None`.
        batch_size: samples per batch (default 32); the last batch of an
            epoch may be smaller.
        shuffle: bool. Draw a new order of the samples for every pass over
            the dataset.
        seed: int seed of the shuffle; `None` draws one from NumPy's
            global generator (which `keras.utils.set_random_seed` seeds).

    Returns:
        A `grain.MapDataset` of batches when grain is installed, else a
        `tf.data.Dataset`; elements are `(x, y, sample_weight)` packed as
        `keras.utils.pack_x_y_sample_weight` packs them.

    Example:
    ```python
    batches = array_batches(images, labels, batch_size=16, shuffle=True)
    ```
    """
    batch_size = 32 if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: {batch_size}")
    inputs = keras.tree.map_structure(
        _to_numpy, keras.utils.pack_x_y_sample_weight(x, y, sample_weight))
    count = _sample_count(inputs)
    if shuffle and seed is None:
        # Drawn only when needed: unshuffled (validation) batches leave
        # NumPy's global generator as it was.
        seed = int(np.random.randint(0, 2**31 - 1))
    if grain is not None:
        dataset = grain.MapDataset.source(_ArraySlices(inputs))
        if shuffle:
            # A grain shuffle that a later `repeat` runs past draws a new
            # permutation for every pass.
            dataset = dataset.shuffle(seed=seed)
        return dataset.batch(batch_size)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(inputs)
    if shuffle:
        dataset = dataset.shuffle(count, seed=seed,
                                  reshuffle_each_iteration=True)
    return dataset.batch(batch_size)
