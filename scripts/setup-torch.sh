#!/usr/bin/env bash
# Installs libtorch (from the PyPI torch wheel) into a virtual environment in a cache directory
# outside the repository, so that every clone reuses it. Idempotent; prints the venv's path.
#
# The torch version lives here and nowhere else: tch =0.24.0 (Cargo.toml) needs exactly this one.
set -euo pipefail
TORCH_VERSION=2.11.0

cache_root="${LOFI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lofi}"
venv="${LOFI_TORCH_VENV:-$cache_root/torch-$TORCH_VERSION}"

if [ "${1:-}" = "--version" ]; then echo "$TORCH_VERSION"; exit 0; fi
if [ "${1:-}" = "--print-venv" ]; then echo "$venv"; exit 0; fi

stamp="$venv/.lofi-ready"
if [ -f "$stamp" ]; then echo "$venv"; exit 0; fi

python="${PYTHON:-python3}"
echo "lofi: installing torch==$TORCH_VERSION into $venv (one time, a few minutes)" >&2
mkdir -p "$cache_root"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
# numpy lets the reference-parity scripts run; cmake builds the C/C++ examples where the system has none.
"$venv/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" numpy cmake >&2
"$venv/bin/python" - <<PY >&2
import torch
assert torch.__version__.split('+')[0] == "$TORCH_VERSION", torch.__version__
print("lofi: torch", torch.__version__, "ready")
PY
touch "$stamp"
echo "$venv"
