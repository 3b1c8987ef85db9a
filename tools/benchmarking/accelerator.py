"""Where each side of the benchmark runs: CPU or a CUDA GPU.

Keras picks the accelerator by itself (JAX and TensorFlow place arrays on
their first GPU; Keras' torch backend on `cuda` when PyTorch sees one). The
PyTorch code the benchmark runs directly (the official encoder and the
torch matmul roofline) follows the same rule through `torch_device`, so
that both sides of every ratio run on the same device.
"""

import shutil
import subprocess


def torch_device():
    """`"cuda"` when PyTorch sees a GPU, else `"cpu"`."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_synchronize(device):
    """Waits for the device's queued kernels (a no-op on CPU)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def keras_device(backend):
    """The device Keras computes on in this process, e.g. `"gpu:NVIDIA H200"`."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{getattr(device, 'device_kind', '')}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return f"gpu:{gpus[0].name}" if gpus else "cpu"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
        return "cpu"
    raise ValueError(f"Unknown backend {backend!r}.")


def describe_gpus():
    """Names of the machine's NVIDIA GPUs (`nvidia-smi`), `[]` if none."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]
