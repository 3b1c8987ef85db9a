"""`training.allocator`: freed memory stays in the process (glibc)."""

import ctypes
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training import allocator

# Allocates, touches and frees SIZE_MB four times in a fresh process (on
# a thread of its own if IN_THREAD) and prints the page faults of the last
# three rounds.
_FAULTS = textwrap.dedent(
    """
    import ctypes, resource, sys, threading
    sys.path.insert(0, {root!r})
    from training.allocator import retain_freed_memory
    if {retain}:
        assert retain_freed_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    libc.free.argtypes = (ctypes.c_void_p,)
    size = {size_mb} << 20
    faults = []

    def rounds():
        for _ in range(4):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            block = libc.malloc(size)
            libc.memset(block, 1, size)
            libc.free(block)
            faults.append(
                resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    if {in_thread}:
        thread = threading.Thread(target=rounds)
        thread.start()
        thread.join()
    else:
        rounds()
    print(sum(faults[1:]))
    """
)


def _glibc_only():
    if allocator._glibc() is None:
        pytest.skip("glibc's mallopt is not available here.")


def _faults(retain, size_mb=64, in_thread=False):
    root = str(Path(__file__).resolve().parents[1])
    code = _FAULTS.format(
        root=root, retain=retain, size_mb=size_mb, in_thread=in_thread)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        check=True,
    )
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "size_mb, in_thread",
    [
        # An eager op's output, allocated on the main thread.
        (64, False),
        # An XLA:CPU execution's buffer, allocated on a worker thread:
        # glibc maps blocks above 64 MB outside the main arena even with
        # `M_MMAP_MAX` at 0, so this needs every thread on the main arena.
        (256, True),
    ],
)
def test_freed_memory_is_reused_without_page_faults(size_mb, in_thread):
    _glibc_only()
    pages = (size_mb << 20) // 4096
    # glibc's default: every block is a fresh mmap, faulted page by page
    # (fewer faults only where the kernel hands out huge pages).
    default = _faults(False, size_mb, in_thread)
    retained = _faults(True, size_mb, in_thread)
    assert retained < 0.05 * 3 * pages, retained
    assert default > 10 * max(retained, 1), (default, retained)


def test_retain_freed_memory_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.retain_freed_memory() is False


def test_glibc_is_found_on_linux_with_glibc():
    libc_name, _ = platform.libc_ver()
    if not sys.platform.startswith("linux") or libc_name != "glibc":
        pytest.skip("not a glibc Linux")
    assert isinstance(allocator._glibc(), ctypes.CDLL)


@pytest.mark.parametrize(
    "backend, expected",
    [("jax", True), ("torch", True), ("tensorflow", False)],
)
def test_setup_retains_on_the_backends_that_gain(monkeypatch, backend,
                                                 expected):
    import keras

    calls = []
    monkeypatch.setattr(
        allocator, "retain_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    assert allocator.setup() is expected
    assert len(calls) == int(expected)
    # An explicit choice wins over the backend's default.
    assert allocator.setup(retain=False) is False
    assert allocator.setup(retain=True) is True
