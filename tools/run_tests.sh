#!/usr/bin/env bash
# Installs everything from the repository's files, then runs the test suite
# on the jax, tensorflow and torch backends. Usage: bash tools/run_tests.sh
# Extra arguments go to pytest (e.g. `-m "not slow"`); TEST_WORKERS sets the
# number of pytest-xdist worker processes (default 2, 0 for none).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_envs.sh
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONHASHSEED=0
status=0
for backend in jax tensorflow torch; do
  echo "=== KERAS_BACKEND=$backend"
  if [ "$backend" = jax ]; then
    selection=()  # everything, backend-independent tests included
  else
    selection=(-m "not backend_independent and not tfdv")
  fi
  # Two worker processes, whole test files each (module fixtures are built
  # once): the suite runs single-threaded most of the time, so a second
  # worker uses the second core. TEST_WORKERS=0 runs in one process.
  # --durations: the slowest tests of each backend in the log, to see
  # where CI's time goes.
  KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -p no:cacheprovider \
    -n "${TEST_WORKERS:-2}" --dist loadfile --durations=15 \
    "${selection[@]}" "$@" tests \
    || status=1
done
exit $status
