"""JAX `train_step` / `test_step` of `TIPSPretrainer`.

JAX is functional: Keras passes the model state in and expects the new state
back (`(trainable, non_trainable, optimizer, metrics)` variable values).
The step runs the pretrainer's math inside `keras.StatelessScope`s that map
each variable to its value in the state, differentiates the total loss with
`jax.value_and_grad` with respect to the trainable values only (the teacher
and the centers are non-trainable state, so they get no gradient), applies
the optimizer with `stateless_apply` and collects the post-step updates
(EMA teacher, centers, step counter) as new non-trainable values.

Under `keras.distribution` (data or model parallel), the arrays are global
`jax.Array`s: the same code sees the whole batch and XLA inserts the
collectives.
"""

import jax
import keras


def _unpack(data):
    batch, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return batch


def _mapping(variables, values):
    return list(zip(variables, values))


def train_step(model, state, data):
    """One step: `(logs, new_state)` from `state` and a batch."""
    (
        trainable_values,
        non_trainable_values,
        optimizer_values,
        metrics_values,
    ) = state
    batch = _unpack(data)
    trainable_variables = model.trainable_variables
    non_trainable_variables = model.non_trainable_variables
    optimizer = model.optimizer

    def loss_fn(trainable):
        mapping = _mapping(trainable_variables, trainable) + _mapping(
            non_trainable_variables, non_trainable_values
        )
        with keras.StatelessScope(state_mapping=mapping):
            losses, statistics = model.forward(batch, training=True)
        return losses["loss"], (losses, statistics)

    (_, (losses, statistics)), gradients = jax.value_and_grad(
        loss_fn, has_aux=True
    )(trainable_values)

    gradients, gradient_norm = model.prepare_gradients(
        gradients, statistics["step"]
    )
    with keras.StatelessScope(
        state_mapping=_mapping(optimizer.variables, optimizer_values)
    ):
        learning_rate = model.current_learning_rate()
    trainable_values, optimizer_values = optimizer.stateless_apply(
        optimizer_values, gradients, trainable_values
    )

    mapping = _mapping(trainable_variables, trainable_values) + _mapping(
        non_trainable_variables, non_trainable_values
    )
    with keras.StatelessScope(state_mapping=mapping):
        updates = model.post_step_updates(statistics)
    new_values = {id(variable): value for variable, value in updates}
    non_trainable_values = [
        new_values.get(id(variable), value)
        for variable, value in zip(non_trainable_variables, non_trainable_values)
    ]

    logs = model.step_logs(losses, statistics, learning_rate, gradient_norm)
    new_state = (
        trainable_values,
        non_trainable_values,
        optimizer_values,
        metrics_values,
    )
    return logs, new_state


def test_step(model, state, data):
    """The loss terms of a batch: `(logs, state)` with the state unchanged."""
    trainable_values, non_trainable_values, metrics_values = state
    batch = _unpack(data)
    mapping = _mapping(model.trainable_variables, trainable_values) + _mapping(
        model.non_trainable_variables, non_trainable_values
    )
    with keras.StatelessScope(state_mapping=mapping):
        losses, _ = model.forward(batch, training=False)
    return losses, (trainable_values, non_trainable_values, metrics_values)
