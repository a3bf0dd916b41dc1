#!/usr/bin/env bash
# Installs MPICH (the PyPI `mpich` wheel: mpiexec, mpicc) into the torch virtual environment, for
# the multi-process tests and `make bench-gigapixel`. Idempotent. Fails with a clear message when
# it cannot: the MPI tests never skip silently.
set -euo pipefail
MPICH_VERSION="${LOFI_MPICH_VERSION:-5.0.2}"
here="$(cd "$(dirname "$0")" && pwd)"
venv="${VIRTUAL_ENV:-$("$here/setup-torch.sh" --print-venv)}"
if [ -x "$venv/bin/mpiexec" ] && [ -x "$venv/bin/mpicc" ]; then
    echo "$venv/bin/mpiexec"
    exit 0
fi
echo "lofi: installing mpich==$MPICH_VERSION into $venv (one time)" >&2
if ! "$venv/bin/python" -m pip install --quiet "mpich==$MPICH_VERSION" >&2; then
    echo "lofi: could not install the mpich wheel into $venv; the MPI tests need mpiexec" >&2
    echo "      (install it by hand: $venv/bin/python -m pip install mpich, or set LOFI_MPIEXEC)" >&2
    exit 1
fi
if ! "$venv/bin/mpiexec" -n 2 true >&2; then
    echo "lofi: $venv/bin/mpiexec is installed but cannot start 2 processes" >&2
    exit 1
fi
echo "$venv/bin/mpiexec"
