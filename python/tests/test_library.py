"""Finding the library, the version check, and the ctypes layouts against include/lofi.h."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CLI, ROOT

import lofi
from lofi import _ffi


def test_versions_agree_with_the_cli():
    cli = subprocess.run([str(CLI), "--version"], capture_output=True, text=True, check=True).stdout.split()[-1]
    assert lofi.library_version() == cli
    major, minor, patch = (int(v) for v in cli.split("."))
    assert lofi.library_version_number() == major * 10000 + minor * 100 + patch


def test_header_version_matches_include():
    header = (ROOT / "include" / "lofi.h").read_text()
    number = int(re.search(r"#define LOFI_VERSION_NUMBER (\d+)", header).group(1))
    assert lofi.HEADER_VERSION_NUMBER == number


def test_check_version_accepts_this_header_and_refuses_others():
    lofi.check_version()  # what `import lofi` did
    newer_major = (lofi.library_version_number() // 10000 + 1) * 10000
    with pytest.raises(lofi.VersionMismatchError) as info:
        lofi.check_version(newer_major)
    err = info.value
    assert err.status == _ffi.STATUS_INVALID_ARGUMENT and err.status_name == "LOFI_STATUS_INVALID_ARGUMENT"
    assert lofi.library_version() in err.message  # names the library's version ...
    assert f"{newer_major // 10000}.0.0" in err.message  # ... and the one asked for
    assert isinstance(err, ImportError) and isinstance(err, lofi.LofiError)


def test_the_installed_package_carries_its_library():
    if os.environ.get("LOFI_LIBRARY"):
        pytest.skip("LOFI_LIBRARY chooses the library in this run")
    path = Path(lofi.library_path)
    assert path.name == "liblofi.so" and path.parent.name == "_lib"
    assert path.parent.parent == Path(lofi.__file__).parent
    # The copy is the library `make build` made (a copy, not a link into the build tree).
    assert not path.is_symlink()
    assert path.read_bytes() == (ROOT / "target" / "release" / "liblofi.so").read_bytes()


def _import_in_subprocess(env_overrides: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_overrides)
    code = "import lofi; print(lofi.library_path)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/")


def test_lofi_library_env_chooses_the_library():
    lib = ROOT / "target" / "release" / "liblofi.so"
    for value in (str(lib), str(lib.parent)):  # the file, or its directory
        proc = _import_in_subprocess({"LOFI_LIBRARY": value})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(lib)


def test_a_wrong_lofi_library_is_a_clear_import_error():
    proc = _import_in_subprocess({"LOFI_LIBRARY": "/nonexistent/liblofi.so"})
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "cannot load liblofi" in proc.stderr
    assert "/nonexistent/liblofi.so" in proc.stderr and "make build" in proc.stderr


# ---- layouts ----------------------------------------------------------------------------------

STRUCTS = {
    "lofi_load_params": _ffi.LoadParams,
    "lofi_model_info": _ffi.ModelInfo,
    "lofi_operator": _ffi.Operator,
    "lofi_run_params": _ffi.RunParams,
    "lofi_pnp_params": _ffi.PnpParams,
    "lofi_pnp_residuals": _ffi.PnpResiduals,
    "lofi_image": _ffi.Image,
    "lofi_region": _ffi.Region,
    "lofi_window": _ffi.Window,
    "lofi_run_report": _ffi.RunReport,
    "lofi_input_reader": _ffi.InputReader,
}


def header_fields(name: str) -> list[str]:
    """Field names of `typedef struct name { ... } name;` in lofi.h, in order."""
    header = (ROOT / "include" / "lofi.h").read_text()
    body = re.search(r"typedef struct %s \{(.*?)\n\} %s;" % (name, name), header, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    fields = []
    for decl in body.split(";"):
        decl = decl.strip()
        if decl:
            m = re.search(r"\(\*\s*(\w+)\)|(\w+)\s*(\[\d+\])?$", decl)
            fields.append(m.group(1) or m.group(2))
    return fields


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_ctypes_fields_follow_the_header(name):
    ours = [f for f, _ in STRUCTS[name]._fields_]
    theirs = header_fields(name)
    # Append-only ABI (docs/abi.md): the bindings' layout must be a prefix of the header's. A
    # longer header means fields were added that these bindings do not set yet (the library
    # still accepts the older size); frozen types must match exactly.
    if "struct_size" in ours:
        assert theirs[: len(ours)] == ours
    else:
        assert theirs == ours


def test_sizes_are_the_released_layouts():
    # docs/abi.md's table (LP64), which tests/c/test_abi.c pins for C.
    assert ctypes.sizeof(_ffi.LoadParams) == 32
    assert ctypes.sizeof(_ffi.RunParams) == 56
    assert ctypes.sizeof(_ffi.PnpParams) == 136
    assert ctypes.sizeof(_ffi.Operator) == 144
    assert ctypes.sizeof(_ffi.ModelInfo) == 104
    assert ctypes.sizeof(_ffi.RunReport) == 72
    assert ctypes.sizeof(_ffi.PnpResiduals) == 80
    assert ctypes.sizeof(_ffi.InputReader) == 48


def test_init_functions_fill_the_documented_defaults():
    run = _ffi.RunParams()
    run.struct_size = ctypes.sizeof(run)
    lofi.check(_ffi.lib.lofi_init_run_params(ctypes.byref(run)), "init")
    assert run.memory_budget_bytes == 512 * 2**20 and run.threads == 0 and run.noise_level == -1.0
    pnp = _ffi.PnpParams()
    pnp.struct_size, pnp.run.struct_size = ctypes.sizeof(pnp), ctypes.sizeof(run)
    lofi.check(_ffi.lib.lofi_init_pnp_params(ctypes.byref(pnp)), "init")
    assert pnp.alpha == 0.05 and pnp.cg_max_iterations == 100 and pnp.cg_tolerance == 1e-7
    assert pnp.run.memory_budget_bytes == 512 * 2**20 and pnp.splitting == _ffi.SPLITTING_ADMM
    # An uninitialised size is refused with the library's message, not read blindly.
    bad = _ffi.RunParams()
    bad.struct_size = 20
    status = _ffi.lib.lofi_init_run_params(ctypes.byref(bad))
    err = lofi.last_error(status, "init")
    assert isinstance(err, lofi.InvalidArgumentError) and "lofi_run_params" in err.message


def test_status_classes_cover_every_status():
    names = {}
    for status in range(11):
        err = lofi.errors.error_for(status, "m") if status else None
        if err is not None:
            names[status] = err.status_name
            assert err.status == status and isinstance(err, lofi.LofiError)
    assert names[4] == "LOFI_STATUS_IO" and isinstance(lofi.errors.error_for(4, "x"), OSError)
    assert isinstance(lofi.errors.error_for(10, "x"), MemoryError)
    assert lofi.errors.error_for(42, "x").status_name == "LOFI_STATUS_UNKNOWN"


def test_log_messages_reach_python_logging(caplog):
    # lofi prints nothing; enable_logging routes its log (here: the WARN of a model file that
    # predates digests) to the "lofi" logger.
    from conftest import model_path

    with caplog.at_level("DEBUG", logger="lofi"):
        lofi.enable_logging("warn")
        try:
            lofi.Model(model_path("tiny-gray-nodigest.lofi")).close()
        finally:
            lofi.enable_logging(None)
        warned = [r for r in caplog.records if r.name == "lofi" and r.levelname == "WARNING"]
        assert warned and any("digest" in r.getMessage() for r in warned)
        caplog.clear()
        lofi.Model(model_path("tiny-gray-nodigest.lofi")).close()  # stopped: nothing arrives
        assert not [r for r in caplog.records if r.name == "lofi"]
    with pytest.raises(lofi.InvalidArgumentError, match="level"):
        lofi.enable_logging("loud")
