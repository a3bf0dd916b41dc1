#!/usr/bin/env bash
# Installs the already-built liblofi into PREFIX (`make install PREFIX=...` builds, then calls it):
#
#   PREFIX/lib/liblofi.so                 shared library (see "SONAME" below)
#   PREFIX/lib/liblofi.a                  static library (needs libtorch at link time)
#   PREFIX/include/lofi.h, lofi.hpp       C API, C++17 wrapper
#   PREFIX/lib/pkgconfig/lofi.pc          pkg-config --cflags --libs lofi
#   PREFIX/lib/pkgconfig/lofi-static.pc   pkg-config --cflags --libs lofi-static (links liblofi.a)
#   PREFIX/lib/cmake/lofi/lofiConfig.cmake, lofiConfigVersion.cmake
#                                         find_package(lofi): targets lofi::lofi (shared) and
#                                         lofi::lofi_static
#
# Environment: LOFI_LIB_DIR, the directory of the built libraries (default target/release).
#
# libtorch: liblofi.so carries a RUNPATH to the libtorch it was linked against (the torch wheel's
# lib directory); the installed copy keeps it, so programs using it need no LD_LIBRARY_PATH. Static
# consumers get the same directory in their link flags (Libs.private / lofi-static.pc / the CMake
# target's interface). That libtorch must therefore stay where it is (or reinstall after moving it).
#
# SONAME: build.rs gives liblofi.so the DT_SONAME of its ABI: liblofi.so.0.MINOR before 1.0
# (every 0.x minor version may change the ABI), liblofi.so.MAJOR from 1.0 (docs/abi.md). It is
# installed as the versioned layout
#   liblofi.so.MAJOR.MINOR.PATCH           the library
#   SONAME -> liblofi.so.M.m.p             what programs record (NEEDED) and load at run time
#   liblofi.so -> SONAME                   what the linker finds for -llofi
# so that programs survive compatible upgrades (a new patch release replaces the SONAME link)
# and a program never loads a library of another ABI (it keeps its own SONAME installed). A
# library without a SONAME (an older build) is installed as plain liblofi.so.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: scripts/install.sh PREFIX" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lib_dir="${LOFI_LIB_DIR:-$root/target/release}"
so="$lib_dir/liblofi.so"
archive="$lib_dir/liblofi.a"
for f in "$so" "$archive" "$root/include/lofi.h" "$root/include/lofi.hpp"; do
  if [ ! -f "$f" ]; then
    echo "install: $f is missing; build first (make build, or cargo build --release --lib)" >&2
    exit 1
  fi
done
mkdir -p "$1"
prefix="$(cd "$1" && pwd)"

# Version, from the header's macros.
macro() { sed -n "s/^#define LOFI_VERSION_$1 \([0-9][0-9]*\)$/\1/p" "$root/include/lofi.h"; }
major="$(macro MAJOR)" minor="$(macro MINOR)" patch="$(macro PATCH)"
if [ -z "$major" ] || [ -z "$minor" ] || [ -z "$patch" ]; then
  echo "install: cannot read LOFI_VERSION_* from include/lofi.h" >&2
  exit 1
fi
version="$major.$minor.$patch"

# The dynamic section: SONAME, and RUNPATH/RPATH (where libtorch is).
dynamic() {
  if command -v readelf >/dev/null 2>&1; then
    readelf -d "$so" | sed -n "s/.*($1).*\[\(.*\)\]$/\1/p"
  else
    objdump -p "$so" | awk -v tag="$1" '$1 == tag { print $2 }'
  fi
}
soname="$(dynamic SONAME)"
torch_dir=""
IFS=: read -r -a search <<<"$(dynamic RUNPATH):$(dynamic RPATH)"
for d in "${search[@]}"; do
  if [ -n "$d" ] && [ -f "$d/libtorch_cpu.so" ]; then
    torch_dir="$d"
    break
  fi
done
if [ -z "$torch_dir" ]; then
  echo "install: liblofi.so has no RUNPATH to a libtorch directory; was it built by cargo with build.rs?" >&2
  exit 1
fi

# Static link line for libtorch. torch_cuda is linked with --no-as-needed, as build.rs does for
# the shared library: nothing references it directly, yet without it CUDA stays unavailable.
torch_libs="-L$torch_dir -Wl,-rpath,$torch_dir"
if [ -f "$torch_dir/libtorch_cuda.so" ]; then
  torch_libs="$torch_libs -Wl,--push-state,--no-as-needed -ltorch_cuda -Wl,--pop-state"
fi
torch_libs="$torch_libs -ltorch_cpu -ltorch -lc10"
system_libs="-lstdc++ -lgcc_s -lpthread -ldl -lm -lrt"
pc_torch_libs="$(printf '%s' "$torch_libs" | sed "s|$torch_dir|\${torchlibdir}|g")"

# Copies atomically (a running program may have the old library mapped).
put() { # SRC DEST MODE
  install -m "$3" "$1" "$2.tmp.$$"
  mv -f "$2.tmp.$$" "$2"
}
mkdir -p "$prefix/lib/pkgconfig" "$prefix/lib/cmake/lofi" "$prefix/include"

if [ -n "$soname" ]; then
  real="liblofi.so.$version"
  put "$so" "$prefix/lib/$real" 755
  [ "$soname" = "$real" ] || ln -sfn "$real" "$prefix/lib/$soname"
  ln -sfn "$soname" "$prefix/lib/liblofi.so"
  shared_name="$real"
else
  rm -f "$prefix/lib/liblofi.so" # a symlink left by an earlier versioned install
  put "$so" "$prefix/lib/liblofi.so" 755
  shared_name="liblofi.so"
fi
put "$archive" "$prefix/lib/liblofi.a" 644
put "$root/include/lofi.h" "$prefix/include/lofi.h" 644
put "$root/include/lofi.hpp" "$prefix/include/lofi.hpp" 644

# --- pkg-config -------------------------------------------------------------------------------------
# Libs carries an rpath to PREFIX/lib so that programs built with it run from any prefix without
# LD_LIBRARY_PATH (drop it with pkg-config --libs-only-l if your packaging forbids rpaths).
cat >"$prefix/lib/pkgconfig/lofi.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include
torchlibdir=$torch_dir

Name: lofi
Description: LoFi (Local Field) image reconstruction: C API (lofi.h) and C++17 wrapper (lofi.hpp)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -llofi
Libs.private: $pc_torch_libs $system_libs
EOF

# Static linking: -llofi would pick liblofi.so, so this names the archive itself.
cat >"$prefix/lib/pkgconfig/lofi-static.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include
torchlibdir=$torch_dir

Name: lofi-static
Description: LoFi (Local Field) image reconstruction, linked statically (libtorch stays shared)
Version: $version
Cflags: -I\${includedir}
Libs: \${libdir}/liblofi.a $pc_torch_libs $system_libs
EOF

# --- CMake package -----------------------------------------------------------------------------------
if [ -n "$soname" ]; then
  soname_property="IMPORTED_SONAME \"$soname\""
else
  # Without a SONAME, linking by full path would record that path; CMake links -llofi instead.
  soname_property="IMPORTED_NO_SONAME TRUE"
fi
cuda_items=""
if [ -f "$torch_dir/libtorch_cuda.so" ]; then
  cuda_items="-Wl,--push-state,--no-as-needed;\${lofi_TORCH_LIBRARY_DIR}/libtorch_cuda.so;-Wl,--pop-state;"
fi
cat >"$prefix/lib/cmake/lofi/lofiConfig.cmake" <<EOF
# CMake package of liblofi $version (written by scripts/install.sh).
#
#   find_package(lofi $major.$minor REQUIRED)
#   target_link_libraries(app PRIVATE lofi::lofi)         # shared; lofi.h and lofi.hpp
#   target_link_libraries(app PRIVATE lofi::lofi_static)  # static liblofi.a (+ shared libtorch)
#
# Variables: lofi_VERSION, lofi_INCLUDE_DIR, lofi_TORCH_LIBRARY_DIR (the libtorch it uses).
# The package is relocatable; libtorch is found where it was at install time.
include(CMakeFindDependencyMacro)
find_dependency(Threads)

get_filename_component(_lofi_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(lofi_INCLUDE_DIR "\${_lofi_prefix}/include")
set(lofi_TORCH_LIBRARY_DIR "$torch_dir")

if(NOT TARGET lofi::lofi)
  add_library(lofi::lofi SHARED IMPORTED)
  set_target_properties(lofi::lofi PROPERTIES
    IMPORTED_LOCATION "\${_lofi_prefix}/lib/$shared_name"
    $soname_property
    INTERFACE_INCLUDE_DIRECTORIES "\${lofi_INCLUDE_DIR}")
endif()

if(NOT TARGET lofi::lofi_static)
  add_library(lofi::lofi_static STATIC IMPORTED)
  set_target_properties(lofi::lofi_static PROPERTIES
    IMPORTED_LOCATION "\${_lofi_prefix}/lib/liblofi.a"
    INTERFACE_INCLUDE_DIRECTORIES "\${lofi_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${cuda_items}\${lofi_TORCH_LIBRARY_DIR}/libtorch_cpu.so;\${lofi_TORCH_LIBRARY_DIR}/libtorch.so;\${lofi_TORCH_LIBRARY_DIR}/libc10.so;stdc++;gcc_s;Threads::Threads;\${CMAKE_DL_LIBS};m;rt"
    INTERFACE_LINK_OPTIONS "LINKER:-rpath,\${lofi_TORCH_LIBRARY_DIR}")
endif()

unset(_lofi_prefix)
EOF

cat >"$prefix/lib/cmake/lofi/lofiConfigVersion.cmake" <<EOF
# Version check of find_package(lofi [version]) for liblofi $version. Semantic versioning:
# before 1.0 a different minor version is incompatible; from 1.0 a different major version.
set(PACKAGE_VERSION "$version")
if(PACKAGE_FIND_VERSION_RANGE)
  if((PACKAGE_FIND_VERSION_RANGE_MIN STREQUAL "INCLUDE" AND PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION_MIN)
     OR (PACKAGE_FIND_VERSION_RANGE_MIN STREQUAL "EXCLUDE" AND PACKAGE_VERSION VERSION_LESS_EQUAL PACKAGE_FIND_VERSION_MIN)
     OR (PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "INCLUDE" AND PACKAGE_VERSION VERSION_GREATER PACKAGE_FIND_VERSION_MAX)
     OR (PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "EXCLUDE" AND PACKAGE_VERSION VERSION_GREATER_EQUAL PACKAGE_FIND_VERSION_MAX))
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
elseif(NOT PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
elseif(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
elseif(NOT PACKAGE_FIND_VERSION_MAJOR EQUAL $major)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
elseif($major EQUAL 0 AND NOT PACKAGE_FIND_VERSION_MINOR EQUAL $minor)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
# The library is 64-bit.
if(CMAKE_SIZEOF_VOID_P AND NOT CMAKE_SIZEOF_VOID_P EQUAL 8)
  set(PACKAGE_VERSION "\${PACKAGE_VERSION} (64-bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
EOF

echo "installed liblofi $version into $prefix (libtorch: $torch_dir; SONAME: ${soname:-none})"
