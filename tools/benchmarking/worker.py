"""One backend's throughput worker: roofline, vision and text encoders.

`python tools/benchmark.py --worker` runs `run_worker` in a process whose
`KERAS_BACKEND` is the measured backend; it prints its records as JSON lines
after `RECORD_PREFIX`, each throughput compared with the matmul peak of the
same dtype sampled around it.
"""

import json

from .accelerator import keras_device
from .encoders import bench_text
from .encoders import bench_vision
from .machine import library_versions
from .roofline import Roofline
from .settings import QUICK_MATMUL
from .settings import RECORD_PREFIX


def run_worker(args):
    """Measures everything of one backend; prints records as JSON lines."""
    import keras

    backend = keras.backend.backend()
    records = []
    sizes = [QUICK_MATMUL] if args.quick else [args.matmul_size, 2 * args.matmul_size]
    roofline = Roofline(backend, sizes, args.repeats + 2)
    roofline.sample(args.dtypes)

    def emit(record):
        records.append(record)
        # Re-sample the peak next to every measurement (shared machines).
        roofline.sample([record["dtype"]], sizes[:1])

    if "vision" in args.parts:
        bench_vision(backend, args, emit)
    if "text" in args.parts:
        bench_text(backend, args, emit)
    print(
        RECORD_PREFIX
        + json.dumps({"kind": "versions", "versions": library_versions(backend),
                    "device": keras_device(backend)}),
        flush=True,
    )
    for record in roofline.records():
        print(RECORD_PREFIX + json.dumps(record), flush=True)
    for record in records:
        roof = roofline.peak(record["dtype"])
        record["roofline_gflops"] = roof
        record["roofline_fraction"] = record["gflops"] / roof if roof else None
        print(RECORD_PREFIX + json.dumps(record), flush=True)
