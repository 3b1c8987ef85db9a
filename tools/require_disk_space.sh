#!/usr/bin/env bash
# Fails early, naming the folder and the shortfall, when a virtual
# environment cannot fit on its disk, instead of pip stopping half-way with
# "[Errno 28] No space left on device".
#
# Usage:  bash tools/require_disk_space.sh FOLDER GIB WHAT
#   FOLDER  where the environment will be written (need not exist yet)
#   GIB     the size the environment reaches once installed, in GiB: a lower
#           bound on what pip needs, so the check never refuses an install
#           that could have succeeded
#   WHAT    what is being installed, for the message
set -euo pipefail
if [[ $# -ne 3 ]]; then
  echo "usage: bash tools/require_disk_space.sh FOLDER GIB WHAT" >&2
  exit 2
fi
folder="$1" need_gib="$2" what="$3"
probe="${folder}"
while [[ ! -d "${probe}" ]]; do
  probe="$(dirname "${probe}")"
done
free_kib="$(df -Pk "${probe}" | awk 'NR == 2 {print $4}')"
need_kib="$(awk -v gib="${need_gib}" 'BEGIN {printf "%d", gib * 1024 * 1024}')"
if (( free_kib < need_kib )); then
  free_gib="$(awk -v k="${free_kib}" 'BEGIN {printf "%.1f", k / 1024 / 1024}')"
  echo "not enough disk for ${what}: it takes ${need_gib} GiB in ${folder}," \
       "and only ${free_gib} GiB is free there. Free some space and rerun." >&2
  exit 1
fi
