"""`training.allocator`: freed memory stays in the process (glibc)."""

import ctypes
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training import allocator

# Allocates, touches and frees 64 MB four times in a fresh process and
# prints the page faults of the last three rounds.
_FAULTS = textwrap.dedent(
    """
    import ctypes, resource, sys
    sys.path.insert(0, {root!r})
    from training.allocator import retain_freed_memory
    if {retain}:
        assert retain_freed_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    libc.free.argtypes = (ctypes.c_void_p,)
    size = 64 << 20
    faults = []
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(size)
        libc.memset(block, 1, size)
        libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(sum(faults[1:]))
    """
)


def _glibc_only():
    if allocator._glibc() is None:
        pytest.skip("glibc's mallopt is not available here.")


def _faults(retain):
    root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", _FAULTS.format(root=root, retain=retain)],
        capture_output=True, text=True, check=True,
    )
    return int(result.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_without_page_faults():
    _glibc_only()
    pages = (64 << 20) // 4096
    # glibc's default: every 64 MB block is a fresh mmap, faulted page by
    # page (fewer faults only where the kernel hands out huge pages).
    default = _faults(retain=False)
    retained = _faults(retain=True)
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
