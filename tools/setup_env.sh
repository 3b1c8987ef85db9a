#!/usr/bin/env bash
# Creates .venv with keras-tips and all three Keras backends (CPU builds).
# torch is pinned first: a plain `torch` requirement pulls a multi-GB CUDA
# build, while the pinned CPU wheel satisfies the package's torch range.
set -euo pipefail
cd "$(dirname "$0")/.."
# No download cache: on a fresh machine it would only hold a second copy of
# every downloaded wheel, and CI machines can be short of disk.
export PIP_NO_CACHE_DIR=1 UV_NO_CACHE=1
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  # 4.0 GiB once installed (TensorFlow, JAX, torch CPU, transformers).
  bash tools/require_disk_space.sh .venv 4.0 "the main environment (.venv)"
  "$python" -m venv .venv
fi
# torch through pip, which finds the CPU wheel on this kind of machine's
# disk (uv does not look there); everything else through uv (why and how
# fast: tools/setup_uv.sh), which keeps the installed torch since it
# satisfies the package's range.
.venv/bin/python -m pip install -q "torch==2.13.0"
uv=$(bash tools/setup_uv.sh)
# uv does not read pip's configuration: the same indexes, local wheels,
# constraints and certificates, as uv settings (tools/pip_config_for_uv.py).
uv_settings=$(.venv/bin/python tools/pip_config_for_uv.py)
eval "$uv_settings"
"$uv" pip install -q --python .venv/bin/python -e ".[jax,torch,dev]"
.venv/bin/python - <<'PY'
import importlib
for name in ("keras", "keras_hub", "jax", "tensorflow", "torch", "keras_tips"):
    module = importlib.import_module(name)
    print(f"{name:12s} {getattr(module, '__version__', '')}")
PY
