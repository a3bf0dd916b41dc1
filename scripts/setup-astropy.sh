#!/usr/bin/env bash
# A Python with astropy for tests/formats_fits_astropy.rs, which reads lofi's FITS outputs back
# with astropy (an independent FITS implementation). A virtual environment in the same cache as
# libtorch's (outside the repository, shared by clones); idempotent. `make test` runs it.
#   scripts/setup-astropy.sh                 install if needed, print the interpreter's path
#   scripts/setup-astropy.sh --print-python  print the path only
set -euo pipefail
ASTROPY_VERSION=8.0.2

cache_root="${LOFI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lofi}"
venv="${LOFI_ASTROPY_VENV:-$cache_root/astropy-$ASTROPY_VERSION}"

if [ "${1:-}" = "--print-python" ]; then echo "$venv/bin/python"; exit 0; fi

stamp="$venv/.lofi-ready"
if [ -f "$stamp" ]; then echo "$venv/bin/python"; exit 0; fi

python="${PYTHON:-python3}"
echo "lofi: installing astropy==$ASTROPY_VERSION into $venv (one time, for the FITS tests)" >&2
mkdir -p "$cache_root"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet "astropy==$ASTROPY_VERSION" numpy >&2
"$venv/bin/python" -c "import astropy, numpy; print('lofi: astropy', astropy.__version__, 'ready')" >&2
touch "$stamp"
echo "$venv/bin/python"
