#!/usr/bin/env bash
# Creates the Python virtual environment for the classical baselines (BM3D, biharmonic inpainting)
# that scripts/experiments/set12_baselines.py runs, in a cache directory outside the repository so
# that every clone reuses it. Idempotent: a second run only prints the path. Prints the venv's path
# on stdout (progress goes to stderr), so a caller can do
#
#     venv=$(scripts/experiments/setup-bench-venv.sh)
#     nice -n 10 "$venv/bin/python" scripts/experiments/set12_baselines.py --set12 DIR --out /tmp/set12-bench
#
# The package versions live here and nowhere else; the baselines JSON records the versions it ran with.
# Options: --print-venv (print the path, install nothing), --force (reinstall into the same path).
set -euo pipefail
NUMPY_VERSION=2.4.6
SKIMAGE_VERSION=0.26.0
BM3D_VERSION=4.0.3
IMAGEIO_VERSION=2.38.2

cache_root="${LOFI_CACHE_DIR:-$HOME/.cache/lofi}"
venv="${LOFI_BENCH_VENV:-$cache_root/bench-venv}"
stamp="$venv/.lofi-bench-ready"
want="numpy==$NUMPY_VERSION scikit-image==$SKIMAGE_VERSION bm3d==$BM3D_VERSION imageio==$IMAGEIO_VERSION"

case "${1:-}" in
  --print-venv) echo "$venv"; exit 0 ;;
  --force) rm -f "$stamp" ;;
  "") ;;
  *) echo "usage: $0 [--print-venv|--force]" >&2; exit 2 ;;
esac

# Ready and installed with the same pins: nothing to do.
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then echo "$venv"; exit 0; fi

python="${PYTHON:-python3}"
echo "lofi: installing $want into $venv (one time, a minute or two)" >&2
mkdir -p "$cache_root"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
# shellcheck disable=SC2086  # $want is a list of requirement specifiers
"$venv/bin/python" -m pip install --quiet $want >&2
"$venv/bin/python" - >&2 <<'PY'
import bm3d, imageio, numpy, skimage
from importlib.metadata import version
print("lofi: bench venv ready: numpy", numpy.__version__, "scikit-image", skimage.__version__,
      "bm3d", version("bm3d"), "imageio", imageio.__version__)
PY
echo "$want" > "$stamp"
echo "$venv"
