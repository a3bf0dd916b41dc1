#!/usr/bin/env bash
# Configures (Release), builds and runs the C/C++ examples and tests with ctest.
#
#   scripts/run-c-tests.sh [BUILD_DIR]        (default build/c; `make test-c` calls it)
#
# It does not build Rust: liblofi.so must exist (make build, or cargo build --release --lib).
# Environment: LOFI_LIB_DIR (directory of liblofi.so; default target/release), LOFI_ASAN=OFF to
# build without AddressSanitizer, LOFI_MPI_EXAMPLE=OFF to leave out the MPI example and its tests
# (by default they are built and run with the MPICH that scripts/install-mpich.sh installs, or with
# the mpiexec in LOFI_MPIEXEC and the mpicc next to it), CMAKE (the cmake to use), CTEST_ARGS
# (extra ctest arguments, e.g. "-R c_errors -V"), JOBS (parallel build/test jobs; default: the
# number of CPUs).
#
# Sanitizers: every test runs under AddressSanitizer with LeakSanitizer on. The options are set
# per test by CMakeLists.txt (so a plain `ctest` in the build directory behaves the same):
#   ASAN_OPTIONS=protect_shadow_gap=0:...   on GPU machines the CUDA driver maps memory inside
#                                           ASan's shadow gap: without this option libtorch reports
#                                           "cudaGetDeviceCount(): out of memory" and CUDA is
#                                           unavailable (seen on an H200); no effect elsewhere.
#   LSAN_OPTIONS=suppressions=tests/c/lsan.supp   NVIDIA runtime libraries only (see the file);
#                                           libtorch on the CPU leaks nothing LSan reports.
# Leak detection is deliberately not switched off (detect_leaks=0 would hide real leaks in lofi's
# FFI, e.g. a model never freed). libtorch needs no other option. The asan_catches_heap_overflow
# test checks that ASan is really active with these options and libtorch loaded; tests that match
# their output by regular expression also fail on any sanitizer report.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-build/c}"
case "$build" in /*) ;; *) build="$root/$build" ;; esac

# cmake: $CMAKE, else the system's, else the one pip-installed into the torch venv.
cmake="${CMAKE:-}"
if [ -z "$cmake" ]; then
  if command -v cmake >/dev/null 2>&1; then
    cmake="$(command -v cmake)"
  else
    venv="$("$root/scripts/setup-torch.sh" --print-venv 2>/dev/null || true)"
    if [ -n "$venv" ] && [ -x "$venv/bin/cmake" ]; then cmake="$venv/bin/cmake"; fi
  fi
fi
if [ -z "$cmake" ]; then
  echo "run-c-tests: no cmake found (install one, or: pip install cmake)" >&2
  exit 1
fi
ctest="$(dirname "$cmake")/ctest"
[ -x "$ctest" ] || ctest="$(command -v ctest)"

lib_dir="${LOFI_LIB_DIR:-$root/target/release}"
if [ ! -f "$lib_dir/liblofi.so" ]; then
  echo "run-c-tests: $lib_dir/liblofi.so is missing; build it first (make build)" >&2
  exit 1
fi
jobs="${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"

# MPI for examples-c/mpi_reconstruct.c: a failing install stops here (MPI tests never skip silently).
mpi_example="${LOFI_MPI_EXAMPLE:-ON}"
mpi_args=(-DLOFI_MPI_EXAMPLE="$mpi_example")
if [ "$mpi_example" != OFF ]; then
  mpiexec="${LOFI_MPIEXEC:-$("$root/scripts/install-mpich.sh")}"
  mpi_args+=(-DMPIEXEC_EXECUTABLE="$mpiexec")
  mpicc="$(dirname "$mpiexec")/mpicc"
  if [ -x "$mpicc" ]; then mpi_args+=(-DMPI_C_COMPILER="$mpicc"); fi
fi

mkdir -p "$build"
log="$build/configure.log"
"$cmake" -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLOFI_LIB_DIR="$lib_dir" \
  -DLOFI_ASAN="${LOFI_ASAN:-ON}" "${mpi_args[@]}" >"$log" 2>&1 || {
  cat "$log" >&2
  exit 1
}
# Show the configure step's warnings and lofi's notes (the library used and its SONAME).
grep -E "^CMake Warning|^-- lofi:" -A6 "$log" | grep -vE "^--$|^Call Stack|^  CMakeLists|^  cmake/" >&2 || true
"$cmake" --build "$build" --parallel "$jobs"
# shellcheck disable=SC2086
cd "$build" && "$ctest" --output-on-failure --parallel "$jobs" ${CTEST_ARGS:-}
