#!/usr/bin/env bash
# Installs liblofi into a temporary prefix and builds tests/c/consumer against it, with
# pkg-config (shared and static) and with CMake find_package(lofi) (shared, static, C++), then
# runs every program. Registered with ctest as `install_consumer` (exit 77 = skipped).
#
#   run.sh REPO_ROOT WORK_DIR CMAKE LOFI_LIB_DIR MODEL
set -euo pipefail
root="$1" work="$2" cmake="$3" lib_dir="$4" model="$5"
here="$root/tests/c/consumer"
cc="${CC:-cc}"
prefix="$work/prefix"
rm -rf "$work"
mkdir -p "$work"

step() { printf '\n== %s\n' "$*"; }

step "install into $prefix"
LOFI_LIB_DIR="$lib_dir" "$root/scripts/install.sh" "$prefix"

# With a SONAME, the versioned layout: liblofi.so -> SONAME -> liblofi.so.M.m.p, the real file.
soname="$(readelf -d "$lib_dir/liblofi.so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')"
if [ -n "$soname" ]; then
  version="$(sed -n 's/^#define LOFI_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' "$root/include/lofi.h" | paste -sd.)"
  real="liblofi.so.$version"
  step "versioned layout: liblofi.so -> $soname -> $real"
  lib="$prefix/lib"
  if [ ! -f "$lib/$real" ] || [ -L "$lib/$real" ] || [ "$(readlink "$lib/$soname")" != "$real" ] ||
    [ "$(readlink "$lib/liblofi.so")" != "$soname" ]; then
    echo "FAIL: expected $lib/liblofi.so -> $soname -> $real (a file); found:"
    ls -l "$lib"
    exit 1
  fi
  if [ "$(readelf -d "$lib/$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')" != "$soname" ]; then
    echo "FAIL: the installed $real lost its SONAME"
    exit 1
  fi
  # The policy (docs/abi.md): liblofi.so.0.MINOR before 1.0, liblofi.so.MAJOR from 1.0.
  major="${version%%.*}" minor="$(echo "$version" | cut -d. -f2)"
  if [ "$major" = 0 ]; then expected="liblofi.so.0.$minor"; else expected="liblofi.so.$major"; fi
  if [ "$soname" != "$expected" ]; then
    echo "FAIL: SONAME $soname, the policy says $expected"
    exit 1
  fi
  echo "ok"
  # Installing again over it (an upgrade in place) keeps the layout.
  LOFI_LIB_DIR="$lib_dir" "$root/scripts/install.sh" "$prefix" >/dev/null
  [ "$(readlink "$lib/liblofi.so")" = "$soname" ] && [ "$(readlink "$lib/$soname")" = "$real" ] || {
    echo "FAIL: reinstalling broke the layout"
    ls -l "$lib"
    exit 1
  }
fi

run() { # PROGRAM: runs it, and checks it records liblofi by name (the SONAME), not by path
  "$@" "$model"
  if readelf -d "$1" 2>/dev/null | grep -q "NEEDED.*\[/.*liblofi"; then
    echo "FAIL: $1 records liblofi by absolute path:"
    readelf -d "$1" | grep NEEDED
    exit 1
  fi
  if [ -n "$soname" ] && readelf -d "$1" | grep -q "NEEDED.*liblofi" &&
    ! readelf -d "$1" | grep -q "NEEDED.*\[$soname\]"; then
    echo "FAIL: $1 does not record the SONAME $soname:"
    readelf -d "$1" | grep NEEDED
    exit 1
  fi
}

if command -v pkg-config >/dev/null 2>&1; then
  export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
  step "pkg-config --cflags --libs lofi: $(pkg-config --cflags --libs lofi)"
  # shellcheck disable=SC2046
  "$cc" -std=c99 -Wall -Wextra -Wpedantic -Werror "$here/consumer.c" $(pkg-config --cflags --libs lofi) \
    -o "$work/consumer-pc"
  run "$work/consumer-pc"
  if ! readelf -d "$work/consumer-pc" | grep -q "NEEDED.*liblofi"; then
    echo "FAIL: consumer-pc does not link liblofi.so"
    exit 1
  fi

  step "pkg-config --cflags --libs lofi-static"
  # shellcheck disable=SC2046
  "$cc" -std=c99 -Wall -Wextra -Wpedantic -Werror "$here/consumer.c" $(pkg-config --cflags --libs lofi-static) \
    -o "$work/consumer-pc-static"
  run "$work/consumer-pc-static"
  if readelf -d "$work/consumer-pc-static" | grep -q "NEEDED.*liblofi"; then
    echo "FAIL: consumer-pc-static depends on liblofi.so"
    exit 1
  fi
else
  step "pkg-config not found: skipping the pkg-config builds"
fi

step "CMake find_package(lofi)"
"$cmake" -S "$here" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  >"$work/cmake-configure.log" 2>&1 || {
  cat "$work/cmake-configure.log"
  exit 1
}
grep "found lofi" "$work/cmake-configure.log"
"$cmake" --build "$work/cmake-build" --parallel 2 >"$work/cmake-build.log" 2>&1 || {
  cat "$work/cmake-build.log"
  exit 1
}
run "$work/cmake-build/consumer"
run "$work/cmake-build/consumer_static"
run "$work/cmake-build/consumer_cpp"
if readelf -d "$work/cmake-build/consumer_static" | grep -q "NEEDED.*liblofi"; then
  echo "FAIL: consumer_static depends on liblofi.so"
  exit 1
fi

macro() { sed -n "s/^#define LOFI_VERSION_$1 \([0-9][0-9]*\)$/\1/p" "$prefix/include/lofi.h"; }
major="$(macro MAJOR)" minor="$(macro MINOR)" patch="$(macro PATCH)"
if [ "$major" = 0 ]; then newer="0.$((minor + 1))"; else newer="$((major + 1)).0"; fi
step "find_package(lofi $major.$minor.$patch EXACT) accepted, find_package(lofi $newer) refused"
mkdir -p "$work/version-check"
cat >"$work/version-check/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project(v LANGUAGES C)
find_package(lofi $newer QUIET)
if(lofi_FOUND)
  message(FATAL_ERROR "lofi $newer accepted by lofi \${lofi_VERSION}")
endif()
find_package(lofi $major.$minor.$patch EXACT REQUIRED)
CMAKE
"$cmake" -S "$work/version-check" -B "$work/version-check/build" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$work/version-check.log" 2>&1 || {
  cat "$work/version-check.log"
  exit 1
}
echo "ok"

step "all consumers built and ran"
