"""Empty batches: every TIPS model maps a batch of zero items to empty outputs.

Keras' `predict` fails on zero samples (an `UnboundLocalError` from inside
the trainer) and TensorFlow's convolution returns a wrongly shaped result
for an empty batch. The output shapes of an empty batch are known without
running anything, so the models return zeros of those shapes instead: the
same on every backend, for `__call__`, `predict` and `predict_on_batch`.
"""

import keras
import numpy as np
from keras import ops
from keras import tree


def is_empty_batch(inputs):
    """True when some input is an array whose batch size is known to be 0.

    Args:
        inputs: an array or tensor, or a dict / list of them. Datasets,
            generators and symbolic batch sizes give False.
    """
    if isinstance(inputs, (str, bytes)):
        return False
    if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
        return False  # a bare empty list has no known shape
    try:
        leaves = tree.flatten(inputs)
    except Exception:
        return False
    for leaf in leaves:
        if isinstance(leaf, keras.KerasTensor):
            return False  # building a functional model, not running one
        shape = getattr(leaf, "shape", None)
        if shape is None or len(shape) == 0:
            continue
        try:
            if int(shape[0]) == 0:
                return True
        except (TypeError, ValueError):  # symbolic batch size
            continue
    return False


def empty_outputs(model, inputs, as_numpy=False):
    """Zeros shaped like `model`'s outputs for `inputs` with batch size 0.

    Args:
        model: a Keras model (functional: its output spec is computed
            symbolically, nothing runs).
        inputs: the model-ready inputs of the empty batch.
        as_numpy: return NumPy arrays (as `predict` does) instead of
            backend tensors.
    """

    def spec(x):
        dtype = keras.backend.standardize_dtype(getattr(x, "dtype", "float32"))
        return keras.KerasTensor(tuple(x.shape), dtype=dtype)

    specs = tree.map_structure(spec, inputs)
    outputs = model.compute_output_spec(specs)

    def zeros(output):
        shape = tuple(0 if d is None else d for d in output.shape)
        if as_numpy:
            return np.zeros(shape, output.dtype)
        return ops.zeros(shape, output.dtype)

    return tree.map_structure(zeros, outputs)


class EmptyBatchMixin:
    """`__call__`, `predict` and `predict_on_batch` accept empty batches.

    For inputs whose batch size is known to be 0 the model returns zeros of
    its output shapes (tensors from `__call__`, NumPy arrays from the two
    `predict` methods) without running; every other input goes to Keras
    unchanged. Tasks apply their preprocessor first, so the output shapes
    are those of preprocessed inputs.
    """

    def _model_inputs_of_empty_batch(self, x):
        preprocess = getattr(self, "preprocess_samples", None)
        if preprocess is None:
            return x
        data = preprocess(x)
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return x

    def __call__(self, inputs, *args, **kwargs):
        if is_empty_batch(inputs):
            return empty_outputs(self, inputs)
        return super().__call__(inputs, *args, **kwargs)

    def predict_on_batch(self, x, **kwargs):
        if is_empty_batch(x):
            x = self._model_inputs_of_empty_batch(x)
            return empty_outputs(self, x, as_numpy=True)
        return super().predict_on_batch(x, **kwargs)

    def predict(self, x=None, *args, **kwargs):
        if is_empty_batch(x):
            x = self._model_inputs_of_empty_batch(x)
            return empty_outputs(self, x, as_numpy=True)
        return super().predict(x, *args, **kwargs)
