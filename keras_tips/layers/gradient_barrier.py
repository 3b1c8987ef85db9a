"""A residual-stream identity whose gradient XLA:CPU computes only once."""

import functools

from keras_tips.layers.jax_cpu import on_jax_cpu

# Off only to measure what the barrier buys (`tools/benchmark_training.py
# --compare_gradient_barrier`).
_ENABLED = True


@functools.lru_cache(maxsize=None)
def _jax_barrier():
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def barrier(x):
        return x

    def forward(x):
        return x, None

    def backward(_, gradient):
        # A product with the identity matrix: exact (every other term is a
        # zero), cheap next to the block's own matmuls (the width instead of
        # 12x the width multiply-adds per token), and a dot, which XLA:CPU
        # computes once and never duplicates into the loops that read it.
        eye = jnp.eye(gradient.shape[-1], dtype=gradient.dtype)
        return (jnp.matmul(gradient, eye),)

    barrier.defvjp(forward, backward)
    return barrier


def residual_gradient_barrier(x):
    """Identity on a transformer's residual stream; on JAX/CPU, the gradient
    that flows back through it is written to memory once.

    In the backward pass of a pre-norm transformer, the gradient of the
    residual stream at block `l` is a sum of elementwise terms over blocks
    `l..L`. XLA:CPU fuses that whole chain into every loop that reads it
    (the reductions that give the LayerScale and bias gradients are sums
    over all tokens) instead of reading it once from memory, so each block
    recomputes the chain of the blocks after it: the backward pass grows
    with the square of the depth. XLA:CPU duplicates elementwise chains
    into their readers but computes a dot once, so routing the gradient
    through a product with the identity cuts the chain at every block.
    The forward pass is untouched (the identity itself), and so is every
    other backend and device, where `x` is returned as it is.

    Args:
        x: tensor `(..., D)`, the residual stream.

    Returns:
        `x`.

    Example:
    ```python
    x = x + branch(norm(residual_gradient_barrier(x)))
    ```
    """
    if not (_ENABLED and on_jax_cpu()):
        return x
    return _jax_barrier()(x)
