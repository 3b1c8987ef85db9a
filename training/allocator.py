"""Keeping freed memory in the process for eager training on CPU (glibc).

glibc's `malloc` serves every request above 32 MB (its largest mmap
threshold) with a fresh `mmap` and returns it to the kernel on `free`. An
eager backend allocates a new output for every op, so at the full TIPS
recipe each op on a `(1024, 32768)` patch-prototype tensor (134 MB) first
takes 32,768 page faults, and the kernel zeroes every page before the op
writes it: measured on a 2-core CPU, a multiply of two such tensors took
57 ms with a new output and 9 ms into an existing one. The torch
backend's S/14 training step spent most of its non-matmul time there.

`retain_freed_memory()` tells glibc to serve large requests from its heap
and to keep freed memory there, so the next step reuses pages that are
already mapped. The process's resident memory then stays at its peak
instead of falling back between steps. XLA (JAX, TensorFlow with
`jit_compile=True`) and TensorFlow graphs plan their buffers themselves and
do not gain; `setup` (what `training.train.run_training` calls) applies it
on the torch backend unless told otherwise.
"""

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

# `mallopt` parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# `mallopt` takes an `int`: the largest top-of-heap kept on `free`.
_LARGEST_TRIM_THRESHOLD = 2**31 - 1


def _glibc():
    """The process's C library if it is glibc, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # Only glibc has it (not musl, ...).
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory():
    """Serves large allocations from the heap and keeps freed memory there.

    Process-wide and permanent: it changes how glibc's `malloc` treats
    requests made after the call. Does nothing (and returns False) where the
    C library is not glibc.

    Returns:
        True if both settings were applied.

    Example:
    ```python
    from training.allocator import retain_freed_memory

    retain_freed_memory()  # before the first training step, on torch
    pretrainer.fit(dataset, steps_per_epoch=1000)
    ```
    """
    libc = _glibc()
    if libc is None:
        return False
    applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, _LARGEST_TRIM_THRESHOLD)
    )
    if not applied:
        logger.warning("glibc's mallopt refused the allocator settings.")
    return applied


def setup(retain=None):
    """Applies the training allocator policy of this process's backend.

    Args:
        retain: bool or None. True: `retain_freed_memory()`; False: leave
            glibc's defaults; None: retain on the torch backend only (an
            eager backend, the one that gains).

    Returns:
        True if freed memory is now retained.
    """
    if retain is None:
        import keras

        retain = keras.backend.backend() == "torch"
    return retain_freed_memory() if retain else False
