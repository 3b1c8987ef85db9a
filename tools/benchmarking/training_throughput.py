"""Training and input-pipeline rates, from their own tools.

`tools/benchmark_training.py` measures training images/s per backend and
`tools/benchmark_data.py` the input pipeline alone, with the crops of the
same training configuration, so that the two rates can be compared.
"""

import json
import os
import sys
import tempfile

from .processes import error_record
from .processes import run_in_backend
from .settings import TOOLS_DIR


def training_records(args):
    """Records of `tools/benchmark_training.py` on `args.backends`."""
    tool = os.path.join(TOOLS_DIR, "benchmark_training.py")
    with tempfile.TemporaryDirectory() as tmp:
        output = os.path.join(tmp, "training.jsonl")
        command = [sys.executable, tool, "--output", output,
                   "--backends", *args.backends]
        if args.quick:
            command.append("--quick")
        result = run_in_backend(command, "jax", timeout=args.timeout)
        records = []
        if os.path.exists(output):
            with open(output) as f:
                records = [json.loads(line) for line in f if line.strip()]
    if result.returncode != 0 or not records:
        records.append(error_record("training", "all", result))
    return records


# Input pipeline sizes matching each training configuration's crops.
PIPELINE_ARGS = {
    "full": [],  # the real defaults: 224 + 6 x 98 crops, batch 32 (S14)
    "quick": [
        "--global-crop-size", "56", "--local-crop-size", "28",
        "--num-local-crops", "2", "--batch-size", "8", "--num-images", "64",
        "--num-shards", "2", "--image-size", "64", "--warmup-batches", "2",
        "--batches", "10",
    ],
}


def pipeline_record(args):
    """Images/s of the input pipeline alone (`tools/benchmark_data.py`).

    With the crops of the measured training configuration (the full S/14
    recipe, or the tiny one under `--quick`), so that the two rates can be
    compared: the pipeline must outrun what the training step consumes.
    """
    tool = os.path.join(TOOLS_DIR, "benchmark_data.py")
    command = [sys.executable, tool, "--json"]
    command += PIPELINE_ARGS["quick" if args.quick else "full"]
    result = run_in_backend(command, "tensorflow", timeout=args.timeout)
    lines = [
        line for line in result.stdout.splitlines() if line.startswith("{")
    ]
    if result.returncode != 0 or not lines:
        return error_record("input_pipeline", "tensorflow", result)
    record = json.loads(lines[-1])
    record["kind"] = "input_pipeline"
    return record
