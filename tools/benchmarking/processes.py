"""Fresh processes of one backend, and the records they print.

Every measurement runs in its own subprocess (`KERAS_BACKEND` is fixed per
process), from the repository root; a failed one becomes an `error` record
with the end of its output.
"""

import json
import os
import subprocess

from .settings import RECORD_PREFIX
from .settings import REPO_ROOT


def run_in_backend(command, backend, timeout):
    """Runs `command` with `KERAS_BACKEND=backend` from the repository root."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout,
    )


def read_records(result):
    """The records a finished process printed after `RECORD_PREFIX`."""
    return [
        json.loads(line[len(RECORD_PREFIX):])
        for line in result.stdout.splitlines()
        if line.startswith(RECORD_PREFIX)
    ]


def error_record(kind, backend, result):
    """An `error` record: the part, the backend and the output's last lines."""
    tail = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
    return {
        "kind": "error",
        "part": kind,
        "backend": backend,
        "returncode": result.returncode,
        "message": " | ".join(tail),
    }
