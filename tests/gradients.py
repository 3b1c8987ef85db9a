"""Gradients as NumPy arrays on the active Keras backend, for tests."""

import keras
import numpy as np


def numpy_gradients(loss_fn, variables):
    """Gradients of `loss_fn()` with respect to `variables`, NumPy arrays.

    A variable the loss does not depend on gets zeros (tensorflow and
    torch report no gradient for it, jax zeros).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        values = [v.value for v in variables]

        def stateless(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()

        return [np.asarray(g) for g in jax.grad(stateless)(values)]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = [g if g is None or not isinstance(g, tf.IndexedSlices)
                 else tf.convert_to_tensor(g)  # an embedding table's
                 for g in tape.gradient(loss, variables)]
        return [_dense(g, v) for g, v in zip(grads, variables)]
    for v in variables:
        v.value.grad = None
    loss_fn().backward()
    return [_dense(v.value.grad, v) for v in variables]


def _dense(gradient, variable):
    if gradient is None:
        return np.zeros(tuple(variable.shape), keras.backend.standardize_dtype(
            variable.dtype))
    if hasattr(gradient, "numpy") and not isinstance(gradient, np.ndarray):
        gradient = gradient.detach() if hasattr(gradient, "detach") else gradient
        return np.asarray(gradient.numpy())
    return np.asarray(gradient)
