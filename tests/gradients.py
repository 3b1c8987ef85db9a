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


def gradient_reaches(loss_fn, parts):
    """For each layer of `parts`: does `loss_fn()`'s gradient reach it
    (any nonzero gradient on its trainable variables)?"""
    variables = [part.trainable_variables for part in parts]
    grads = iter(numpy_gradients(loss_fn, [v for vs in variables for v in vs]))
    return [max(float(np.abs(next(grads)).max()) for _ in part_variables) > 0
            for part_variables in variables]


def _dense(gradient, variable):
    if gradient is None:
        return np.zeros(tuple(variable.shape),
                        keras.backend.standardize_dtype(variable.dtype))
    return keras.ops.convert_to_numpy(gradient)
