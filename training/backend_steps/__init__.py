"""Per-backend `train_step` / `test_step` of `TIPSPretrainer`.

Keras runs `fit` differently on each backend (see keras.io, "Customizing
what happens in `fit()`"): JAX wants a stateless step that takes and returns
the model state, TensorFlow a `GradientTape` step that may run inside a
`tf.distribute` replica context, PyTorch a `backward()` step with `no_grad`
updates. Each of `jax_step`, `tensorflow_step` and `torch_step` holds only
that part; the math is in `training.pretrainer` and is the same everywhere.

Functions here pick the module of the active Keras backend:

* `train_step(model, *args)` / `test_step(model, *args)`;
* `no_gradient()`: a context in which no gradient is recorded (PyTorch
  `torch.no_grad()`; elsewhere `stop_gradient` in the math is enough, so it
  does nothing).
"""

import contextlib
import importlib

import keras

_MODULES = {
    "jax": "training.backend_steps.jax_step",
    "tensorflow": "training.backend_steps.tensorflow_step",
    "torch": "training.backend_steps.torch_step",
}


def backend_module():
    """The step module of the active Keras backend."""
    backend = keras.backend.backend()
    if backend not in _MODULES:
        raise ValueError(
            f"TIPSPretrainer trains on the jax, tensorflow and torch Keras "
            f"backends; the active backend is {backend!r}. Set KERAS_BACKEND."
        )
    return importlib.import_module(_MODULES[backend])


def train_step(model, *args):
    """One optimizer step of `model` (a `TIPSPretrainer`); see the modules."""
    return backend_module().train_step(model, *args)


def test_step(model, *args):
    """The loss terms of one batch, without any update."""
    return backend_module().test_step(model, *args)


def no_gradient():
    """Context manager in which the backend records no gradient."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()
