"""Tests of `training.distribution`: one step on N devices == one on 1 device.

The multi-device runs need the device count fixed before the framework
starts, so they run in subprocesses: JAX `data_parallel` and
`model_parallel` on 4 virtual CPU devices
(`--xla_force_host_platform_device_count=4`), TensorFlow `mirrored` on 2
logical CPU devices. Each subprocess trains the same tiny model from the same
initial weights on the same two global batches (8 images) without and with
the distribution (the two JAX layouts share one subprocess and its
single-device run), and reports the largest differences of the logged losses
and of the final weights (student, teacher, centers).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from training import distribution

from tests.conftest import SUBPROCESS_XLA_FLAGS

REPO_ROOT = Path(__file__).resolve().parents[1]

_EQUIVALENCE_SCRIPT = r"""
import json, sys
modes = sys.argv[2].split(",")
if "mirrored" in modes:
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
import keras
sys.path.insert(0, sys.argv[1])
from tests.test_pretrainer import (tiny_config, make_pretrainer, random_batch,
                                   dataset_of, StepLogs)
from training import distribution

# Clipping at 3.0 is active (the first gradient norm is ~1e4), the EMA and
# the centers move visibly: all of them must see the global batch.
config = tiny_config("tips", warmup_steps=0, ema_momentum_start=0.9,
                     center_momentum=0.8)
rng = np.random.default_rng(0)
batches = [random_batch(rng, config) for _ in range(2)]
batches[1]["has_noisy_caption"][[1, 6]] = 0.0  # masked pairs across shards

def train(pretrainer):
    logs = StepLogs()
    pretrainer.fit(dataset_of(batches, repeat=False), epochs=1,
                   steps_per_epoch=2, verbose=0, callbacks=[logs])
    weights = {k: np.array(keras.ops.convert_to_numpy(v))
               for k, v in pretrainer.named_weights().items()}
    return logs.steps, weights

single = make_pretrainer(config)
initial = {k: np.array(keras.ops.convert_to_numpy(v))
           for k, v in single.named_weights().items()}
single_logs, single_weights = train(single)

terms = ["loss", "contrastive_noisy", "contrastive_synthetic", "distillation",
         "masked", "gradient_norm"]
results = {}
for mode in modes:
    if mode == "mirrored":
        setup = distribution.make_distribution(
            "mirrored", devices=["/cpu:0", "/cpu:1"])
    elif mode == "data_parallel":
        setup = distribution.make_distribution("data_parallel")
    else:
        setup = distribution.make_distribution(
            "model_parallel", model_parallel_size=2)
    with setup.scope():
        multi = make_pretrainer(config)
        for name, variable in multi.named_weights().items():
            variable.assign(initial[name])
    multi_logs, multi_weights = train(multi)

    loss_diff = max(abs(a[t] - b[t]) / max(1.0, abs(a[t]))
                    for a, b in zip(single_logs, multi_logs) for t in terms)
    weight_diff = max(
        float(np.max(np.abs(single_weights[k] - multi_weights[k])))
        for k in single_weights)
    moved = max(float(np.max(np.abs(single_weights[k] - initial[k])))
                for k in single_weights if not k.startswith("state/"))
    sharded = []
    if mode == "model_parallel":
        for name, variable in multi.named_weights().items():
            spec = getattr(variable.value.sharding, "spec", None)
            if spec is not None and any(axis is not None for axis in spec):
                sharded.append(variable.path)
    results[mode] = {
        "replicas": setup.num_replicas, "loss_diff": loss_diff,
        "weight_diff": weight_diff, "moved": moved, "steps": len(multi_logs),
        "sharded": sorted(set(sharded)),
        "losses": [[s["loss"] for s in single_logs],
                   [s["loss"] for s in multi_logs]],
    }
print("RESULT " + json.dumps(results))
"""


def _run(modes, backend, extra_xla_flags=""):
    """`{mode: result}` for `modes`, one subprocess: the single-device run
    once, then each distribution from the same initial weights."""
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        PYTHONPATH=str(REPO_ROOT),
        XLA_FLAGS=f"{SUBPROCESS_XLA_FLAGS} {extra_xla_flags}".strip(),
    )
    completed = subprocess.run(
        [sys.executable, "-c", _EQUIVALENCE_SCRIPT, str(REPO_ROOT),
         ",".join(modes)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO_ROOT),
        timeout=600,
    )
    lines = [l for l in completed.stdout.splitlines() if l.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="module")
def jax_results():
    """Data and model parallel on 4 virtual CPU devices, one subprocess."""
    return _run(
        ["data_parallel", "model_parallel"], "jax",
        "--xla_force_host_platform_device_count=4",
    )


@pytest.mark.slow
@pytest.mark.backend_independent
def test_jax_data_parallel_on_4_devices_equals_one_device(jax_results):
    result = jax_results["data_parallel"]
    assert result["replicas"] == 4 and result["steps"] == 2
    assert result["moved"] > 1e-3  # the step did change the weights
    assert result["loss_diff"] < 1e-5, result
    assert result["weight_diff"] < 1e-5, result


@pytest.mark.slow
@pytest.mark.backend_independent
def test_jax_model_parallel_shards_kernels_and_equals_one_device(
    jax_results,
):
    result = jax_results["model_parallel"]
    assert result["replicas"] == 2 and result["steps"] == 2
    for path in ("block_0/qkv/kernel", "block_0/mlp/fc1/kernel", "prototypes"):
        assert any(p.endswith(path) for p in result["sharded"]), result["sharded"]
    assert result["loss_diff"] < 1e-5, result
    assert result["weight_diff"] < 1e-5, result


@pytest.mark.slow
@pytest.mark.backend_independent
def test_tensorflow_mirrored_on_2_devices_equals_one_device():
    result = _run(["mirrored"], "tensorflow")["mirrored"]
    assert result["replicas"] == 2 and result["steps"] == 2
    assert result["moved"] > 1e-3
    assert result["loss_diff"] < 1e-5, result
    assert result["weight_diff"] < 1e-5, result


# ---------------------------------------------------------------------------
# In-process checks (any backend).


def test_global_ops_are_identity_without_replicas():
    x = keras.ops.convert_to_tensor(np.arange(6, dtype="float32").reshape(3, 2))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(distribution.global_batch(x)),
        keras.ops.convert_to_numpy(x),
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(distribution.global_mean(x)),
        keras.ops.convert_to_numpy(x),
    )
    assert distribution.num_replicas_in_sync() == 1


def test_make_distribution_validates_its_arguments():
    with pytest.raises(ValueError, match="Unknown distribution 'ring'"):
        distribution.make_distribution("ring")
    setup = distribution.make_distribution("none")
    assert setup.num_replicas == 1
    with setup.scope():
        pass
    backend = keras.backend.backend()
    wrong = "mirrored" if backend != "tensorflow" else "data_parallel"
    needed = "tensorflow" if wrong == "mirrored" else "jax"
    with pytest.raises(ValueError, match=f"needs the {needed} Keras backend"):
        distribution.make_distribution(wrong)
    odd = distribution.Distribution("mirrored", num_replicas=3)
    with pytest.raises(ValueError, match="batch size 8 must be a multiple of"):
        odd.check_batch_size(8)
