"""Timing of repeated calls and the throughput record of one measurement.

Calls are timed after a first (compiling) call; several candidates are timed
in turns (round-robin), so that on a shared machine their ratios compare
calls made seconds apart.
"""

import time


def best_time(run, repeats):
    """(first call seconds, best and median of `repeats` later calls)."""
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    times.sort()
    return first, times[0], times[len(times) // 2]


def interleaved_times(runs, repeats):
    """`best_time` for several callables, timed in turns.

    On a shared machine the load drifts; timing the candidates round-robin
    keeps their ratios fair. A callable may return the seconds it took
    itself (the official encoder, timed in its own process); otherwise the
    call is timed here. Returns `{name: (first, best, median, times)}`,
    `times` in round order, so that ratios can be taken round by round.
    """
    first, times = {}, {name: [] for name in runs}

    def timed(run):
        start = time.perf_counter()
        measured = run()
        elapsed = time.perf_counter() - start
        return measured if isinstance(measured, float) else elapsed

    for name, run in runs.items():
        first[name] = timed(run)
    for _ in range(max(1, repeats)):
        for name, run in runs.items():
            times[name].append(timed(run))
    return {
        name: (first[name], min(t), sorted(t)[len(t) // 2], t)
        for name, t in times.items()
    }


def round_ratio(numerator_times, denominator_times):
    """Median over rounds of `numerator / denominator` (same round)."""
    ratios = sorted(n / d for n, d in zip(numerator_times, denominator_times))
    return ratios[len(ratios) // 2]


def throughput_record(kind, backend, name, dtype, batch, timing, flops):
    """The record of one timed model: items/s and achieved GFLOP/s.

    `timing` is `(first, best, median)` seconds per batch; `flops` the
    analytic FLOPs of one batch.
    """
    first, best, median = timing
    gflops = flops / best / 1e9
    return {
        "kind": kind,
        "backend": backend,
        "model": name,
        "dtype": dtype,
        "batch": batch,
        "items_per_s": batch / best,
        "seconds_per_batch": best,
        "median_seconds_per_batch": median,
        "first_call_s": first,
        "gflop_per_batch": flops / 1e9,
        "gflops": gflops,
    }
