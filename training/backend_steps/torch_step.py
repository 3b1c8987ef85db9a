"""PyTorch `train_step` / `test_step` of `TIPSPretrainer`.

Eager autograd: clear the gradients of the trainable variables, run the forward pass, call
`backward()` on the total loss and read each trainable variable's `.grad`
(the teacher's variables have `requires_grad=False`, the teacher pass runs
under `torch.no_grad()`). The optimizer step and the post-step updates (EMA
teacher, centers, step counter) run under `torch.no_grad()`.
"""

import keras
import torch


def _unpack(data):
    batch, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return batch


def _flush_denormals():
    # XLA (JAX) and TensorFlow flush denormal floats to zero on CPU; PyTorch
    # does not by default, and the tiny values of fresh ViTs (LayerScale
    # 1e-5, class tokens ~1e-6) then slow CPU steps down many times over.
    torch.set_flush_denormal(True)


def train_step(model, data):
    """One step on a batch; returns the logs."""
    _flush_denormals()
    batch = _unpack(data)
    variables = model.trainable_variables
    # Cleared per variable rather than with `model.zero_grad()`: the torch
    # module tree keys parameters by variable path, which need not be
    # unique, so `zero_grad()` could miss some.
    for variable in variables:
        variable.value.grad = None
    losses, statistics = model.forward(batch, training=True)
    losses["loss"].backward()
    gradients = [v.value.grad for v in variables]
    with torch.no_grad():
        gradients, gradient_norm = model.prepare_gradients(
            gradients, statistics["step"]
        )
        learning_rate = model.current_learning_rate()
        model.optimizer.apply(gradients, variables)
        for variable, value in model.post_step_updates(statistics):
            variable.assign(value)
    return model.step_logs(losses, statistics, learning_rate, gradient_norm)


def test_step(model, data):
    """The loss terms of a batch."""
    _flush_denormals()
    with torch.no_grad():
        losses, _ = model.forward(_unpack(data), training=False)
    return losses
