#!/usr/bin/env bash
# Installs everything from the repository's files, then runs the test suite
# on the jax, tensorflow and torch backends. Usage: bash tools/run_tests.sh
# Extra arguments go to pytest (e.g. `-m "not slow"`); TEST_WORKERS sets the
# number of pytest-xdist worker processes (default 2, 0 for none).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_envs.sh
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONHASHSEED=0
# JAX's persistent compilation cache, new and empty for this run: the jax
# pass compiles the same training programs again and again (every test that
# builds the same tiny pretrainer, the subprocess runs of the resume tests),
# and a program XLA compiled once in this run is read back instead of
# compiled anew (measured: the pretrainer, resume and learning tests 264 s
# -> 196 s). Removed when the run ends. A size cap turns on JAX's file
# lock around the cache's reads and writes, so that the two pytest-xdist
# workers never read an entry the other is half way through writing.
jax_cache=$(mktemp -d "${TMPDIR:-/tmp}/keras-tips-jax-cache.XXXXXX")
trap 'rm -rf "$jax_cache"' EXIT
export JAX_COMPILATION_CACHE_MAX_SIZE=$((4 * 1024 * 1024 * 1024))
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
  JAX_COMPILATION_CACHE_DIR=$jax_cache \
  KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -p no:cacheprovider \
    -n "${TEST_WORKERS:-2}" --dist loadfile --durations=15 \
    "${selection[@]}" "$@" tests \
    || status=1
done
exit $status
