"""TensorFlow `train_step` / `test_step` of `TIPSPretrainer`.

The step records the forward pass on a `tf.GradientTape`. Under a
`tf.distribute` strategy (`MirroredStrategy`, `TPUStrategy`) Keras runs it
once per replica, each on its shard of the global batch:

* the total loss is divided by the number of replicas, so that the SUM of
  the replicas' gradients is the gradient of the global-batch loss (the
  contrastive terms are computed on all-gathered embeddings; the gradient of
  `all_gather` sums the replicas' contributions, hence the same scaling);
* the clipping factor comes from the norm of the GLOBAL gradient (the
  replicas' gradients summed here with `all_reduce`), as on one device, and
  scales this replica's gradients, which the optimizer then sums across
  replicas (Keras' own clipping would clip each replica's share);
* the EMA teacher, center and step-counter updates are assigned in
  cross-replica context (`merge_call` + `extended.update`), as mirrored
  variables require; every replica computes the same values.

Without a strategy it is a plain `GradientTape` step.
"""

import keras
import tensorflow as tf


def _unpack(data):
    batch, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return batch


def _replica_context():
    """`(replica context or None, number of replicas in sync)`."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return None, 1
    return context, context.num_replicas_in_sync


def _raw(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _assign_all(context, num_replicas, updates):
    if num_replicas == 1:
        for variable, value in updates:
            variable.assign(value)
        return

    def assign_in_cross_replica(strategy, values):
        for (variable, _), value in zip(updates, values):
            strategy.extended.update(
                _raw(variable),
                lambda target, new: target.assign(tf.cast(new, target.dtype)),
                args=(value,),
                group=False,
            )

    context.merge_call(
        assign_in_cross_replica, args=([value for _, value in updates],)
    )


def build_for_fit(model):
    """Builds what `fit` needs before the first step, under the strategy.

    Replaces Keras' `_maybe_symbolic_build`, which under a strategy averages
    a first data batch across replicas to learn its shapes and fails on the
    boolean `patch_mask` ("AddN ... bool"). The pretrainer is built at
    construction; only the optimizer may still need building.
    """
    optimizer = model.optimizer
    if optimizer is not None and not optimizer.built:
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)


def train_step(model, data):
    """One step on this replica's shard of the batch; returns the logs."""
    batch = _unpack(data)
    context, num_replicas = _replica_context()
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        losses, statistics = model.forward(batch, training=True)
        scaled_loss = losses["loss"] / num_replicas
    gradients = tape.gradient(scaled_loss, variables)
    gradients = [
        tf.zeros_like(_raw(v)) if g is None else tf.convert_to_tensor(g)
        for g, v in zip(gradients, variables)
    ]
    global_gradients = None
    if num_replicas > 1:
        global_gradients = context.all_reduce(
            tf.distribute.ReduceOp.SUM, gradients
        )
    gradients, gradient_norm = model.prepare_gradients(
        gradients, statistics["step"], global_gradients=global_gradients
    )
    learning_rate = model.current_learning_rate()
    # Keras sums the replicas' (clipped) gradients before the update.
    model.optimizer.apply(gradients, variables)
    _assign_all(context, num_replicas, model.post_step_updates(statistics))
    return model.step_logs(losses, statistics, learning_rate, gradient_norm)


def test_step(model, data):
    """The loss terms of this replica's shard (Keras averages replicas)."""
    losses, _ = model.forward(_unpack(data), training=False)
    return losses
