"""Resident memory of this process (MB): now and at its peak."""

import os
import resource


def rss_mb():
    """Current resident memory of this process (MB), from /proc."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return None


def peak_rss_mb():
    """Peak resident memory of this process (MB).

    `VmHWM` of /proc/self/status: the high-water mark of this process's own
    address space. (`getrusage`'s `ru_maxrss` survives `fork` + `exec`, so
    in a subprocess it is never below the parent's memory at the fork.)
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
