"""A task's `fit` on in-memory arrays: shuffled every epoch, as in Keras.

keras-hub 0.32's `Task.fit` batched arrays in their given order whatever
`shuffle` said; `TIPSImageTaskMixin.fit` honours it.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_tips
from keras_tips.tasks import TIPSImageClassifier
from keras_tips.tasks import array_batches as array_batches_module
from keras_tips.tasks.array_batches import array_batches

from tests.test_image_classifier import _small_backbone

COUNT, BATCH = 12, 4


def _small_classifier():
    """A one-block classifier whose preprocessor resizes raw uint8 images
    to 28 px: the batches take the path of a preset's classifier, and the
    eager steps (below) stay short (the embedded preset at 112 px took a
    minute of eager JAX steps for one test)."""
    preprocessor = keras_tips.TIPSPreprocessor(
        image_converter=keras_tips.TIPSImageConverter(image_size=(28, 28)))
    return TIPSImageClassifier(_small_backbone(), num_classes=3,
                               preprocessor=preprocessor)


def _recording_classifier():
    """A classifier recording the labels of every training and validation
    batch (eager steps, so they are concrete)."""
    classifier = _small_classifier()
    seen = {"train": [], "test": []}

    def recorder(kind, step):
        def record(*args):
            # jax's steps take (state, data), the others (data).
            _, y, _ = keras.utils.unpack_x_y_sample_weight(args[-1])
            seen[kind].append(keras.ops.convert_to_numpy(y).tolist())
            return step(*args)

        return record

    classifier.train_step = recorder("train", classifier.train_step)
    classifier.test_step = recorder("test", classifier.test_step)
    classifier.compile(optimizer="sgd",
                       loss="sparse_categorical_crossentropy",
                       run_eagerly=True)
    return classifier, seen


def _sorted_scenes(count=COUNT):
    """Random images with labels sorted by class: 0 0 0 0 1 1 1 1 2 2 2 2."""
    images = np.random.RandomState(0).randint(
        0, 256, (count, 112, 112, 3)).astype("uint8")
    return images, np.sort(np.arange(count) % 3).astype("int32")


def _epochs(batches, per_epoch):
    flat = [label for batch in batches for label in batch]
    return [flat[i:i + per_epoch] for i in range(0, len(flat), per_epoch)]


def test_fit_draws_a_new_order_every_epoch(recwarn):
    classifier, seen = _recording_classifier()
    images, labels = _sorted_scenes()
    keras.utils.set_random_seed(1)
    classifier.fit(images, labels, batch_size=BATCH, epochs=3, verbose=0)
    assert len(seen["train"]) == 3 * COUNT // BATCH
    epochs = _epochs(seen["train"], COUNT)
    for epoch in epochs:
        assert sorted(epoch) == labels.tolist()  # every sample once
    assert all(epoch != labels.tolist() for epoch in epochs), epochs
    assert len({tuple(epoch) for epoch in epochs}) > 1, epochs
    # Shuffled by the task, so Keras has no `shuffle` to warn it ignores.
    assert not [w for w in recwarn if "shuffle" in str(w.message)]


def test_fit_keeps_the_order_without_shuffle():
    classifier, seen = _recording_classifier()
    images, labels = _sorted_scenes()
    classifier.fit(images, labels, batch_size=BATCH, epochs=2, verbose=0,
                   shuffle=False)
    assert _epochs(seen["train"], COUNT) == [labels.tolist()] * 2


def test_validation_split_holds_out_the_last_samples_unshuffled():
    classifier, seen = _recording_classifier()
    images, labels = _sorted_scenes()
    keras.utils.set_random_seed(2)
    history = classifier.fit(images, labels, batch_size=BATCH, epochs=2,
                             validation_split=0.25, verbose=0)
    assert "val_loss" in history.history
    train_epochs = _epochs(seen["train"], 9)
    assert [sorted(epoch) for epoch in train_epochs] == [
        labels[:9].tolist()] * 2
    # Validation batches keep the fit's batch size and their order.
    assert seen["test"] == [labels[9:].tolist()] * 2


@pytest.mark.backend_independent
def test_validation_arrays_use_the_validation_batch_size():
    classifier, seen = _recording_classifier()
    images, labels = _sorted_scenes()
    classifier.fit(images, labels, batch_size=BATCH, epochs=1, verbose=0,
                   validation_data=(images[:6], labels[:6]),
                   validation_batch_size=5)
    assert [len(batch) for batch in seen["test"]] == [5, 1]


@pytest.mark.backend_independent
def test_fit_names_mismatched_sample_counts():
    classifier, _ = _recording_classifier()
    images, labels = _sorted_scenes()
    with pytest.raises(ValueError, match=r"same number of samples.*\[11, 12\]"):
        classifier.fit(images, labels[:11], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        classifier.fit(images, labels, epochs=1, verbose=0,
                       validation_split=1.5)


@pytest.mark.backend_independent
def test_fit_passes_datasets_on_in_their_own_order():
    classifier, seen = _recording_classifier()
    images, labels = _sorted_scenes()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(6)
    classifier.fit(dataset, epochs=2, verbose=0)
    assert seen["train"] == [labels[:6].tolist(), labels[6:].tolist()] * 2


@pytest.mark.backend_independent
@pytest.mark.parametrize("with_grain", [True, False])
def test_array_batches_reshuffle_on_every_pass(monkeypatch, with_grain):
    if not with_grain:
        monkeypatch.setattr(array_batches_module, "grain", None)
    x = {"a": np.arange(10), "b": np.arange(10) * 10}
    dataset = array_batches(x, np.arange(10), batch_size=4, shuffle=True,
                            seed=3)
    if with_grain:
        # keras-hub repeats a grain dataset once per epoch.
        passes = list(dataset.repeat(3))
        assert len(passes) == 9
        passes = [passes[i:i + 3] for i in range(0, 9, 3)]
    else:
        assert isinstance(dataset, tf.data.Dataset)
        passes = [list(dataset.as_numpy_iterator()) for _ in range(3)]
    orders = []
    for batches in passes:
        assert [len(y) for _, y in batches] == [4, 4, 2]
        order = [int(v) for _, y in batches for v in y]
        assert sorted(order) == list(range(10))
        for features, y in batches:  # samples stay whole
            np.testing.assert_array_equal(features["a"], y)
            np.testing.assert_array_equal(features["b"], 10 * y)
        orders.append(tuple(order))
    assert len(set(orders)) == 3 and tuple(range(10)) not in orders
    same_seed = array_batches(x, np.arange(10), batch_size=4, shuffle=True,
                              seed=3)
    first = [int(v) for _, y in same_seed for v in y]
    assert tuple(first) == orders[0]


@pytest.mark.backend_independent
def test_array_batches_reject_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        array_batches(np.zeros((4, 2)), batch_size=0)
    with pytest.raises(ValueError, match="no samples"):
        array_batches(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="scalar"):
        array_batches(np.zeros((4, 2)), np.float32(1.0))
