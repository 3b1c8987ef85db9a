"""Multi-device training of `TIPSPretrainer`: strategies and global-batch ops.

`--distribution` names one of `DISTRIBUTIONS`:

* `"none"`: one device.
* `"mirrored"`: `tf.distribute.MirroredStrategy` over the local devices
  (TensorFlow backend).
* `"tpu"`: `tf.distribute.TPUStrategy` with a `TPUClusterResolver` built
  from `tpu` / `tpu_zone` / `gcp_project` (TensorFlow backend).
* `"data_parallel"`: `keras.distribution.DataParallel` over all devices
  (JAX backend): weights replicated, the batch sharded; arrays stay global.
* `"model_parallel"`: `keras.distribution.ModelParallel` on a
  `(batch, model)` device mesh (JAX backend): the big kernels (attention
  `qkv` and output projections, MLP `fc` layers, head MLPs and prototypes)
  are sharded over the `"model"` axis by `model_parallel_layout_map`, the
  batch over the `"batch"` axis.

`make_distribution` returns a `Distribution` whose `scope()` must enclose
building and compiling the model (and restoring checkpoints).

The loss code calls `global_batch` and `global_mean`, which keep contrastive
negatives and the DINO centers global: inside a `tf.distribute` replica
context with several replicas they all-gather / all-reduce across replicas;
everywhere else (one device, or JAX `keras.distribution` where arrays are
already global) they return their input.

Example:
```python
setup = make_distribution("data_parallel")
with setup.scope():
    pretrainer = TIPSPretrainer(backbone, config)
    pretrainer.compile(optimizer=optimizer)
pretrainer.fit(dataset, steps_per_epoch=steps)
```
"""

import contextlib
import dataclasses

import keras

DISTRIBUTIONS = ("none", "mirrored", "tpu", "data_parallel", "model_parallel")

_TF_DISTRIBUTIONS = ("mirrored", "tpu")
_JAX_DISTRIBUTIONS = ("data_parallel", "model_parallel")


def _tf_replica_context():
    """The `tf.distribute` replica context with > 1 replicas, or None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def num_replicas_in_sync():
    """Replicas that each compute a shard of the batch (1 outside TF)."""
    context = _tf_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def global_batch(x):
    """`x` `(b, ...)` concatenated over all replicas along axis 0.

    Gradients flow back to each replica's own shard (summed over the
    replicas' losses). Identity outside a multi-replica `tf.distribute`
    replica context.
    """
    context = _tf_replica_context()
    if context is None:
        return x
    return context.all_gather(x, axis=0)


def global_mean(x):
    """Mean of `x` over replicas (per-replica batch means -> global mean).

    With equal shards this is the mean over the global batch. Identity
    outside a multi-replica `tf.distribute` replica context.
    """
    context = _tf_replica_context()
    if context is None:
        return x
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.MEAN, x)


def global_sum(x):
    """Sum of `x` over replicas. Identity outside a multi-replica
    `tf.distribute` replica context (under `keras.distribution` the arrays
    are already global)."""
    context = _tf_replica_context()
    if context is None:
        return x
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.SUM, x)


def model_parallel_layout_map(device_mesh, model_axis="model"):
    """`keras.distribution.LayoutMap` sharding the big TIPS kernels.

    Column-parallel (output axis over `model_axis`): attention `qkv`, MLP
    `fc1` / `fc` (text), head MLP layers and the prototypes. Row-parallel
    (input axis): attention output `proj` / `out_proj` and MLP `fc2`.
    Everything else (norms, biases, embeddings) is replicated.

    Args:
        device_mesh: `keras.distribution.DeviceMesh` with an axis named
            `model_axis`.
        model_axis: str. Mesh axis the kernels are split over.

    Returns:
        `keras.distribution.LayoutMap`.
    """
    if model_axis not in device_mesh.axis_names:
        raise ValueError(
            f"The device mesh has axes {device_mesh.axis_names}; the model "
            f"axis {model_axis!r} is not one of them."
        )
    layout_map = keras.distribution.LayoutMap(device_mesh)
    column = (None, model_axis)
    row = (model_axis, None)
    layout_map[r".*qkv/kernel"] = column
    layout_map[r".*/proj/kernel"] = row
    layout_map[r".*out_proj/kernel"] = row
    layout_map[r".*fc1/kernel"] = column
    layout_map[r".*fc2/kernel"] = row
    layout_map[r".*block_\d+/fc/kernel"] = column
    layout_map[r".*mlp_\d+/kernel"] = column
    layout_map[r".*prototypes"] = column
    return layout_map


@dataclasses.dataclass
class Distribution:
    """How a run is distributed; see `make_distribution`.

    Attributes:
        name: one of `DISTRIBUTIONS`.
        strategy: the `tf.distribute.Strategy` (mirrored / tpu) or None.
        keras_distribution: the `keras.distribution.Distribution` (JAX) or
            None.
        num_replicas: devices the batch is split over.
    """

    name: str
    strategy: object = None
    keras_distribution: object = None
    num_replicas: int = 1

    def scope(self):
        """Context for building, compiling and restoring the model."""
        if self.strategy is not None:
            return self.strategy.scope()
        return contextlib.nullcontext()

    def check_batch_size(self, batch_size):
        """Raises unless the global batch splits evenly over the replicas."""
        if batch_size % self.num_replicas:
            raise ValueError(
                f"The global batch size {batch_size} must be a multiple of "
                f"the {self.num_replicas} replicas of distribution "
                f"{self.name!r}."
            )


def _require_backend(name, backend):
    if keras.backend.backend() != backend:
        raise ValueError(
            f"Distribution {name!r} needs the {backend} Keras backend; the "
            f"active backend is {keras.backend.backend()!r}. Set "
            f"KERAS_BACKEND={backend}."
        )


def make_distribution(
    name,
    *,
    devices=None,
    tpu=None,
    tpu_zone=None,
    gcp_project=None,
    model_parallel_size=None,
):
    """Creates (and for JAX, activates) the distribution `name`.

    Args:
        name: one of `DISTRIBUTIONS`.
        devices: optional list of device names (mirrored: e.g.
            `["/cpu:0", "/cpu:1"]`; JAX: as `keras.distribution.list_devices`).
        tpu: TPU name or address for `TPUClusterResolver` ("" or "local" for
            a TPU VM).
        tpu_zone: GCE zone of the TPU.
        gcp_project: GCP project of the TPU.
        model_parallel_size: devices on the `"model"` mesh axis for
            `"model_parallel"` (default: all devices, i.e. batch axis 1).

    Returns:
        A `Distribution`.
    """
    if name not in DISTRIBUTIONS:
        raise ValueError(
            f"Unknown distribution {name!r}. Expected one of {list(DISTRIBUTIONS)}."
        )
    if name == "none":
        return Distribution(name)
    if name in _TF_DISTRIBUTIONS:
        _require_backend(name, "tensorflow")
        import tensorflow as tf

        if name == "mirrored":
            strategy = tf.distribute.MirroredStrategy(devices=devices)
        else:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu=tpu, zone=tpu_zone, project=gcp_project
            )
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            strategy = tf.distribute.TPUStrategy(resolver)
        return Distribution(
            name, strategy=strategy, num_replicas=strategy.num_replicas_in_sync
        )

    _require_backend(name, "jax")
    devices = devices or keras.distribution.list_devices()
    if name == "data_parallel":
        keras_distribution = keras.distribution.DataParallel(devices=devices)
        num_replicas = len(devices)
    else:
        model_size = model_parallel_size or len(devices)
        if len(devices) % model_size:
            raise ValueError(
                f"`model_parallel_size` {model_size} must divide the "
                f"{len(devices)} devices."
            )
        mesh = keras.distribution.DeviceMesh(
            shape=(len(devices) // model_size, model_size),
            axis_names=("batch", "model"),
            devices=devices,
        )
        keras_distribution = keras.distribution.ModelParallel(
            layout_map=model_parallel_layout_map(mesh),
            batch_dim_name="batch",
        )
        num_replicas = len(devices) // model_size
    keras.distribution.set_distribution(keras_distribution)
    return Distribution(
        name, keras_distribution=keras_distribution, num_replicas=num_replicas
    )
