#!/usr/bin/env bash
# Creates (or refreshes) the TensorFlow Data Validation venv, .venv-tfdv.
#
# TFDV 1.16.1 pins TF 2.16, numpy 1.x, pyarrow 10 and apache-beam < 2.60,
# which clash with the main venv, so it lives in its own venv. It also has
# tensorflow-text 2.16.1, to test serving exported SavedModels (texts
# included) in TensorFlow 2.16 (tests/test_export_older_tensorflow.py). Idempotent:
# when the venv already matches tools/requirements-tfdv.txt (hash stamp) and
# imports TFDV, nothing is installed.
#
# Usage:  bash tools/setup_tfdv_env.sh
# Env:    PYTHON (default python3.11), TFDV_VENV (default <repo>/.venv-tfdv),
#         FORCE=1 to rebuild from scratch.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="${repo_root}/tools/requirements-tfdv.txt"
venv="${TFDV_VENV:-${repo_root}/.venv-tfdv}"
python="${PYTHON:-python3.11}"
stamp="${venv}/.requirements-tfdv.sha256"

if [[ ! -f "${requirements}" ]]; then
  echo "setup_tfdv_env: missing ${requirements}" >&2
  exit 1
fi
want_hash="$(sha256sum "${requirements}" | cut -d' ' -f1)"

check_env() {
  # Quiet unless it fails; then the last lines of its output say why.
  local log
  log="$(mktemp)"
  # tensorflow_text imports tf.keras, i.e. Keras 3, which must not pick up
  # a caller's KERAS_BACKEND=jax or torch: this venv has only TensorFlow.
  if KERAS_BACKEND=tensorflow "${venv}/bin/python" - <<'PY' >"${log}" 2>&1; then
import tensorflow_data_validation as tfdv
import tensorflow as tf
import tensorflow_text
assert tfdv.__version__ == "1.16.1", tfdv.__version__
assert tensorflow_text.__version__.startswith("2.16."), tensorflow_text.__version__
PY
    rm -f "${log}"
    return 0
  fi
  if [[ "${1:-}" == "--verbose" ]]; then
    tail -n 15 "${log}" >&2
  fi
  rm -f "${log}"
  return 1
}

if [[ "${FORCE:-0}" != "1" && -x "${venv}/bin/python" && -f "${stamp}" \
      && "$(cat "${stamp}")" == "${want_hash}" ]] && check_env; then
  echo "setup_tfdv_env: ${venv} is up to date."
  exit 0
fi

if ! command -v "${python}" >/dev/null 2>&1; then
  echo "setup_tfdv_env: ${python} not found; TFDV 1.16.1 needs Python 3.9-3.11." \
       "Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
version="$("${python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "${version}" in
  3.9|3.10|3.11) ;;
  *) echo "setup_tfdv_env: ${python} is Python ${version}; TFDV 1.16.1 needs 3.9-3.11." >&2
     exit 1 ;;
esac

start="$(date +%s)"
if [[ "${FORCE:-0}" == "1" || ! -x "${venv}/bin/python" ]]; then
  rm -rf "${venv}"
  # 2.8 GiB once installed (TensorFlow 2.16, TFDV, Beam, pyarrow).
  bash "${repo_root}/tools/require_disk_space.sh" "${venv}" 2.8 \
    "the TensorFlow Data Validation environment"
  "${python}" -m venv "${venv}"
fi
rm -f "${stamp}"
# Installed by uv (why and how fast: tools/setup_uv.sh); no cache: it
# would only keep a second copy of every wheel.
uv="$(bash "${repo_root}/tools/setup_uv.sh")"
# pip's indexes, local wheels, constraints and certificates, as uv settings.
uv_settings="$("${venv}/bin/python" "${repo_root}/tools/pip_config_for_uv.py")"
eval "${uv_settings}"
UV_NO_CACHE=1 "${uv}" pip install -q --python "${venv}/bin/python" \
  -r "${requirements}"
if ! check_env --verbose; then
  echo "setup_tfdv_env: installed, but importing tensorflow_data_validation" \
       "1.16.1 and tensorflow_text 2.16 fails (output above)" \
       "in ${venv}; rerun with FORCE=1." >&2
  exit 1
fi
echo "${want_hash}" > "${stamp}"
echo "setup_tfdv_env: ${venv} ready in $(( $(date +%s) - start )) s" \
     "($(du -sh "${venv}" | cut -f1))."
