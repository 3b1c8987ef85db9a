#!/usr/bin/env bash
# Creates both environments at once: .venv (tools/setup_env.sh) and the
# TensorFlow Data Validation venv (tools/setup_tfdv_env.sh).
#
# The two installs run side by side, each through uv (tools/setup_uv.sh,
# made first), so on a 2-core machine the pair takes about as long as the
# longer one alone. The TFDV install's output is
# shown once it ends; if either install fails, this script fails after
# both have finished, naming the one that failed.
#
# Usage:  bash tools/setup_envs.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The two checks the installs make on their own both see today's free
# space; together they need the sum of what is not installed yet.
need=0
[ -x .venv/bin/python ] || need=4.0
[ -x .venv-tfdv/bin/python ] || need=$(awk -v n="$need" 'BEGIN {print n + 2.8}')
if [ "$need" != 0 ]; then
  bash tools/require_disk_space.sh . "$need" \
    "the main and TensorFlow Data Validation environments"
fi

# uv, which both installs use (tools/setup_uv.sh), made once before they
# start.
bash tools/setup_uv.sh > /dev/null

tfdv_log=$(mktemp)
trap 'rm -f "$tfdv_log"' EXIT
bash tools/setup_tfdv_env.sh > "$tfdv_log" 2>&1 &
tfdv_pid=$!
main_status=0
bash tools/setup_env.sh || main_status=$?
tfdv_status=0
wait "$tfdv_pid" || tfdv_status=$?
cat "$tfdv_log"
if [ "$main_status" != 0 ]; then
  echo "setup_envs: installing .venv failed (tools/setup_env.sh, exit" \
       "$main_status; output above)." >&2
fi
if [ "$tfdv_status" != 0 ]; then
  echo "setup_envs: installing .venv-tfdv failed (tools/setup_tfdv_env.sh," \
       "exit $tfdv_status; output above)." >&2
fi
if [ "$main_status" != 0 ] || [ "$tfdv_status" != 0 ]; then
  exit 1
fi
