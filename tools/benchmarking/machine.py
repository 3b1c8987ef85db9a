"""The machine and library versions a benchmark run is recorded with."""

import os
import platform

from .accelerator import describe_gpus


def describe_machine():
    """CPU model, core count, GPUs, platform and Python version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpus": describe_gpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def library_versions(backend):
    """Versions of Keras, keras-hub, NumPy and the backend's library."""
    import keras
    import keras_hub
    import numpy

    versions = {
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "numpy": numpy.__version__,
    }
    module = {"tensorflow": "tensorflow"}.get(backend, backend)
    versions[backend] = __import__(module).__version__
    return versions
