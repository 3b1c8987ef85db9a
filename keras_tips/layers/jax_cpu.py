"""Whether Keras runs on JAX's CPU backend (XLA:CPU), where some operations
are spelled differently for speed."""

import keras


def on_jax_cpu():
    """True if the Keras backend is JAX and JAX's default device is a CPU."""
    if keras.config.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"
