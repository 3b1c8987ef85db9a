"""Keeping freed memory in the process for training on CPU (glibc).

glibc's `malloc` serves every request above 32 MB (its largest mmap
threshold) with a fresh `mmap` and returns it to the kernel on `free`, so
the next buffer of that size is faulted in again page by page, and the
kernel zeroes every page first. Measured on a 2-core CPU, a multiply of two
`(1024, 32768)` float32 tensors (134 MB, the full TIPS recipe's patch
logits) took 57 ms into a new output and 9 ms into an existing one.

Two kinds of training step meet this:

* An eager backend (torch) allocates a new output for every op.
* XLA:CPU (JAX) allocates each execution's buffers on its worker
  threads. glibc gives every thread an arena of its own, and an arena other
  than the main one cannot hold a block above 64 MB: it maps those with
  `mmap` whatever `M_MMAP_MAX` says. The JAX S/14 training step took a
  million page faults per step (4 GB faulted in and zeroed) at 6.5 s per
  step, none at 5.0 s.

`retain_freed_memory()` tells glibc to serve every thread from the main
arena, to serve large requests from its heap and never to give freed heap
back to the kernel, so each step reuses pages that are already mapped. The
process's resident memory then stays at its peak instead of falling back
between steps. `setup` (what `training.train.run_training` calls) applies
it on the torch and JAX backends unless told otherwise.
"""

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

# `mallopt` parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# glibc reads the `int` value of `M_TRIM_THRESHOLD` as a `size_t`: -1 is
# the largest threshold, so the top of the heap is never trimmed. (Its
# largest positive `int`, 2 GB, is below what one S/14 step frees.)
_NEVER_TRIM = -1

# Backends whose training steps `setup` retains freed memory for by
# default: measured faster with it (S/14 full recipe, 2-core AMD EPYC:
# torch 8.3-8.6 -> 5.3-5.7 s per step, JAX 6.4-6.5 -> 5.1-5.2 s;
# TensorFlow 5.0-5.3 s either way).
RETAINING_BACKENDS = ("jax", "torch")


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
    requests made after the call, and every thread that has not allocated
    yet shares the main arena. Call it before the backend's first
    computation (JAX starts its worker threads then). Does nothing (and
    returns False) where the C library is not glibc.

    Returns:
        True if all three settings were applied.

    Example:
    ```python
    from training.allocator import retain_freed_memory

    retain_freed_memory()  # before building the model
    pretrainer.fit(dataset, steps_per_epoch=1000)
    ```
    """
    libc = _glibc()
    if libc is None:
        return False
    applied = all(
        [
            libc.mallopt(_M_ARENA_MAX, 1),
            libc.mallopt(_M_MMAP_MAX, 0),
            libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM),
        ]
    )
    if not applied:
        logger.warning("glibc's mallopt refused the allocator settings.")
    return applied


def setup(retain=None):
    """Applies the training allocator policy of this process's backend.

    Args:
        retain: bool or None. True: `retain_freed_memory()`; False: leave
            glibc's defaults; None: retain on the backends that gain,
            torch and JAX (`RETAINING_BACKENDS`). A TensorFlow graph
            allocates little above glibc's mmap threshold per step and did
            not gain.

    Returns:
        True if freed memory is now retained.
    """
    if retain is None:
        import keras

        retain = keras.backend.backend() in RETAINING_BACKENDS
    return retain_freed_memory() if retain else False
