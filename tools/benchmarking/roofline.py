"""The machine's matrix-multiply peak (GFLOP/s): the roofline.

A large square matmul, jit-compiled (and, where the backend has one,
through its eager kernel library), best of N; the best variant is the
roofline every throughput is compared with.
"""

from .accelerator import torch_device
from .accelerator import torch_synchronize
from .settings import BACKENDS
from .timing import best_time


def matmul_roofline(backend, dtype, size, repeats):
    """Best GFLOP/s of a `size x size` matmul per variant of this backend.

    Returns a dict `{variant: GFLOP/s}`: `"jit"` (XLA for JAX and
    TensorFlow; plain `torch.matmul` for PyTorch, whose eager kernel is
    what a compiled graph calls too) and, for TensorFlow, `"eager"` (the
    oneDNN kernels TensorFlow graphs use without XLA). On a GPU machine each
    backend multiplies on its GPU, as its encoder does.
    """
    import numpy as np

    host = np.random.RandomState(0).standard_normal((size, size))
    host = host.astype("float32")
    flops = 2 * size**3
    variants = {}
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        matmul = jax.jit(jnp.matmul)
        a = jnp.asarray(host, dtype)
        runs = {"jit": lambda: matmul(a, a).block_until_ready()}
    elif backend == "tensorflow":
        import tensorflow as tf

        matmul = tf.function(tf.matmul, jit_compile=True)
        a = tf.cast(host, dtype)
        runs = {
            "jit": lambda: matmul(a, a).numpy(),
            "eager": lambda: tf.matmul(a, a).numpy(),
        }
    elif backend == "torch":
        import torch

        device = torch_device()
        a = torch.from_numpy(host).to(device=device, dtype=getattr(torch, dtype))

        def run_torch():
            with torch.inference_mode():
                torch.matmul(a, a)
            torch_synchronize(device)

        runs = {"jit": run_torch}
    else:
        raise ValueError(f"Unknown backend {backend!r}; expected {BACKENDS}.")
    for name, run in runs.items():
        _, best, _ = best_time(run, repeats)
        variants[name] = flops / best / 1e9
    return variants


class Roofline:
    """Matmul peak of this backend, re-sampled between model measurements.

    The machine may be shared, so the peak is sampled at the start and again
    before every model; the roofline is the best sample (a peak), and every
    throughput is compared with it only after all samples are in.
    """

    def __init__(self, backend, sizes, repeats):
        self.backend = backend
        self.sizes = sizes
        self.repeats = repeats
        self.samples = {}  # (dtype, size, variant) -> best GFLOP/s

    def sample(self, dtypes, sizes=None):
        for dtype in dtypes:
            for size in sizes or self.sizes:
                variants = matmul_roofline(
                    self.backend, dtype, size, self.repeats
                )
                for variant, value in variants.items():
                    key = (dtype, size, variant)
                    self.samples[key] = max(self.samples.get(key, 0), value)

    def peak(self, dtype):
        values = [v for (d, _, _), v in self.samples.items() if d == dtype]
        return max(values) if values else None

    def records(self):
        out = []
        for dtype in sorted({d for d, _, _ in self.samples}):
            best = max(
                (k for k in self.samples if k[0] == dtype),
                key=self.samples.get,
            )
            out.append(
                {
                    "kind": "roofline",
                    "backend": self.backend,
                    "dtype": dtype,
                    "gflops": self.samples[best],
                    "matmul_size": best[1],
                    "best_variant": best[2],
                    "samples": {
                        f"{size}/{variant}": value
                        for (d, size, variant), value in self.samples.items()
                        if d == dtype
                    },
                }
            )
        return out
