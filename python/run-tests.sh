#!/usr/bin/env bash
# Installs the Python package into the torch virtual environment and runs its pytest suite
# (`make test-python` calls it after `make build`).
#
# The venv is scripts/setup-torch.sh's (it already holds numpy); this adds pytest and wheel
# (setuptools' wheel builder) once, then reinstalls ./python from this checkout, which copies
# target/release/liblofi.so into the package, exactly as a user's `pip install ./python` does.
# The tests import the installed package, not python/src. Extra arguments go to pytest.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# LOFI_TEST_PYTHON: another interpreter (with numpy) to install into and test with.
if [ -n "${LOFI_TEST_PYTHON:-}" ]; then
  py="$LOFI_TEST_PYTHON"
else
  py="$("$root/scripts/setup-torch.sh")/bin/python"
fi

if [ ! -f "$root/target/release/liblofi.so" ] && [ -z "${LOFI_LIBRARY:-}" ]; then
  echo "run-tests: target/release/liblofi.so is missing; build it first (make build)" >&2
  exit 1
fi
if ! "$py" -c "import pytest, wheel" 2>/dev/null; then
  echo "lofi: installing pytest into $("$py" -c "import sys; print(sys.prefix)") (one time)" >&2
  "$py" -m pip install --quiet "pytest>=7" wheel >&2
fi
# No build isolation: nothing to download; the venv's setuptools builds the wheel.
"$py" -m pip install --quiet --no-deps --no-build-isolation --force-reinstall "$root/python" >&2
rm -rf "$root/python/build" "$root/python/src/lofi.egg-info"
cd "$root/python"
exec "$py" -m pytest -p no:cacheprovider -q tests "$@"
