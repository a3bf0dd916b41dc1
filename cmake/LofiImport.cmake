# Imports the already-built Rust library (target/release/liblofi.so by default) as the target
# lofi::lofi, with the directory of lofi.h the C/C++ code of this tree compiles against.
#
# Inputs (cache):  LOFI_LIB_DIR     directory holding liblofi.so (and liblofi.a)
#                  LOFI_INCLUDE_DIR directory holding lofi.h and lofi.hpp
# Outputs:         lofi::lofi       IMPORTED SHARED target (include directory attached)
#                  LOFI_HEADER_DIR  the directory of lofi.h
#                  LOFI_LIBRARY     full path of liblofi.so

set(LOFI_LIBRARY "${LOFI_LIB_DIR}/liblofi.so")
if(NOT EXISTS "${LOFI_LIBRARY}")
  message(FATAL_ERROR
    "lofi: ${LOFI_LIBRARY} does not exist. This CMake project does not build Rust: run "
    "`cargo build --release --lib` (or `make build`) first, or point -DLOFI_LIB_DIR=... at the "
    "directory that holds liblofi.so.")
endif()
if(NOT EXISTS "${LOFI_INCLUDE_DIR}/lofi.h")
  message(FATAL_ERROR "lofi: no lofi.h in LOFI_INCLUDE_DIR=${LOFI_INCLUDE_DIR}")
endif()
set(LOFI_HEADER_DIR "${LOFI_INCLUDE_DIR}")

# --- the library --------------------------------------------------------------------------------
# A shared library without a DT_SONAME must not be linked by full path (the path would be recorded
# as the dependency): IMPORTED_NO_SONAME makes CMake link it as -L<dir> -llofi instead.
set(_lofi_soname "")
if(CMAKE_OBJDUMP)
  execute_process(COMMAND "${CMAKE_OBJDUMP}" -p "${LOFI_LIBRARY}"
    OUTPUT_VARIABLE _lofi_dyn ERROR_QUIET RESULT_VARIABLE _lofi_rc)
  if(_lofi_rc EQUAL 0 AND _lofi_dyn MATCHES "SONAME[ \t]+([^ \t\n]+)")
    set(_lofi_soname "${CMAKE_MATCH_1}")
  endif()
endif()

# With a SONAME (liblofi.so.0), programs look for that name at run time: give them a directory
# holding it, linked to the built library (the install provides the same layout).
if(_lofi_soname AND NOT _lofi_soname STREQUAL "liblofi.so")
  set(_lofi_link_dir "${CMAKE_BINARY_DIR}/lofi-lib")
  file(MAKE_DIRECTORY "${_lofi_link_dir}")
  file(CREATE_LINK "${LOFI_LIBRARY}" "${_lofi_link_dir}/${_lofi_soname}" SYMBOLIC)
  file(CREATE_LINK "${LOFI_LIBRARY}" "${_lofi_link_dir}/liblofi.so" SYMBOLIC)
  set(LOFI_LIBRARY "${_lofi_link_dir}/liblofi.so")
endif()

add_library(lofi::lofi SHARED IMPORTED GLOBAL)
set_target_properties(lofi::lofi PROPERTIES
  IMPORTED_LOCATION "${LOFI_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${LOFI_HEADER_DIR}")
if(_lofi_soname)
  set_target_properties(lofi::lofi PROPERTIES IMPORTED_SONAME "${_lofi_soname}")
else()
  set_target_properties(lofi::lofi PROPERTIES IMPORTED_NO_SONAME TRUE)
endif()
if(NOT _lofi_soname)
  set(_lofi_soname "none")
endif()
message(STATUS "lofi: library ${LOFI_LIBRARY} (SONAME: ${_lofi_soname})")
