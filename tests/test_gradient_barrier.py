"""`residual_gradient_barrier`: the identity, with the identity's gradient."""

import keras
import numpy as np
import pytest

from keras_tips.layers import gradient_barrier
from keras_tips.layers import vision_block
from keras_tips.layers.jax_cpu import on_jax_cpu

jax_cpu_only = pytest.mark.skipif(
    not on_jax_cpu(), reason="the barrier acts on JAX's CPU backend only")


def _values(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_forward_is_the_identity():
    x = keras.ops.convert_to_tensor(_values((2, 5, 8)))
    y = gradient_barrier.residual_gradient_barrier(x)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(y), keras.ops.convert_to_numpy(x))
    if not on_jax_cpu():
        assert y is x


@jax_cpu_only
def test_gradient_is_exactly_the_incoming_gradient():
    import jax

    x, w = _values((3, 7, 16)), _values((3, 7, 16), seed=1)
    w[0, 0, :4] = [0.0, -0.0, 1e-30, 3e38]

    def loss(x):
        return (gradient_barrier.residual_gradient_barrier(x) * w).sum()

    gradient = np.asarray(jax.jit(jax.grad(loss))(x))
    # Exact: the product with the identity adds only zeros (so a -0.0
    # comes back as +0.0, the one bit that may change).
    np.testing.assert_array_equal(gradient, w)
    assert gradient[0, 0, 3] == np.float32(3e38)


@jax_cpu_only
def test_vision_blocks_train_the_same_with_and_without_barriers(monkeypatch):
    import jax

    blocks = [
        vision_block.TIPSVisionBlock(
            16, 2, 32, layer_scale_init=0.1, name=f"block_{i}")
        for i in range(3)
    ]
    x = _values((2, 9, 16))
    for block in blocks:
        block.build(x.shape)
    weights = [v for block in blocks for v in block.trainable_variables]
    values = [np.asarray(v.value) for v in weights]

    def loss(values, x):
        mapping = list(zip(weights, values))
        with keras.StatelessScope(state_mapping=mapping):
            for block in blocks:
                x = block(x)
        return (x ** 2).mean()

    def gradients():
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(values, x)

    with_barriers = gradients()
    monkeypatch.setattr(
        vision_block, "residual_gradient_barrier", lambda x: x)
    without = gradients()
    for a, b in zip(jax.tree_util.tree_leaves(with_barriers),
                    jax.tree_util.tree_leaves(without)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                   rtol=1e-5, atol=1e-7)
