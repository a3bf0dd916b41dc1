"""Finding and loading liblofi, and the ctypes mirror of include/lofi.h.

Nothing here is public API. The structs below are written against lofi.h 0.1.0
(``HEADER_VERSION_NUMBER``); ``tests/test_abi.py`` checks their fields against the header in the
repository, and every parameter struct is validated by the library itself (``lofi_init_*`` refuses a
``struct_size`` it does not know), so a drifted layout fails loudly instead of corrupting memory.

Where the library comes from (first match wins):

1. ``LOFI_LIBRARY``: the path of a liblofi shared library (or of the directory holding
   ``liblofi.so``);
2. the copy placed in the package at install time (``lofi/_lib/liblofi.so``, copied by
   ``setup.py`` from ``../target/release`` after ``make build``);
3. the system's dynamic loader: ``liblofi.so.0.1`` (the SONAME of the ABI these bindings speak;
   ``make install`` puts it in ``PREFIX/lib``), then ``liblofi.so``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

# The lofi.h these bindings were written against (LOFI_VERSION_NUMBER). lofi_check_version()
# refuses a library older than this, or of another ABI.
HEADER_VERSION_NUMBER = 100
HEADER_VERSION = "0.1.0"
# SONAME of that ABI (build.rs: liblofi.so.0.MINOR before 1.0).
SONAME = "liblofi.so.0.1"

# ---- status codes, kinds ---------------------------------------------------------------------

STATUS_OK = 0
STATUS_INVALID_ARGUMENT = 1
STATUS_INVALID_INPUT = 2
STATUS_INVALID_MODEL = 3
STATUS_IO = 4
STATUS_BUDGET_TOO_SMALL = 5
STATUS_DEVICE_UNAVAILABLE = 6
STATUS_CANCELLED = 7
STATUS_TORCH = 8
STATUS_INTERNAL = 9
STATUS_OUT_OF_MEMORY = 10

DEVICE_CPU = 0
DEVICE_CUDA = 1
PRECISION_F32 = 0
PRECISION_BF16 = 1
PRECISION_F16 = 2

OPERATOR_DENOISE = 0
OPERATOR_INPAINT = 1
OPERATOR_FOURIER_MASK = 2
OPERATOR_BLUR = 3
OPERATOR_LENSING = 4
OPERATOR_RADON = 5
OPERATOR_CALLBACKS = 6

SPLITTING_ADMM = 0
SPLITTING_HQS = 1
TRANSFORMS_NONE = 0
TRANSFORMS_DIHEDRAL = 1

LOG_OFF = 0
LOG_ERROR = 1
LOG_WARN = 2
LOG_INFO = 3
LOG_DEBUG = 4
LOG_TRACE = 5

NOISE_LEVEL_NONE = -1.0
MAX_COORDINATE = 1e6

# ---- callbacks -------------------------------------------------------------------------------

LOG_FN = CFUNCTYPE(None, c_void_p, c_int32, c_char_p)
APPLY_FN = CFUNCTYPE(c_bool, c_void_p, POINTER(c_float), POINTER(c_float))
PROGRESS_FN = CFUNCTYPE(c_bool, c_void_p, c_uint64, c_uint64)
READ_FN = CFUNCTYPE(c_bool, c_void_p, c_size_t, c_size_t, c_size_t, c_size_t, POINTER(c_float))

# ---- structs (field order is the ABI: never reorder; see docs/abi.md) -------------------------


class LoadParams(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("device", c_int32),
        ("device_index", c_int32),
        ("precision", c_int32),
        ("devices", c_char_p),
    ]


class ModelInfo(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("image_size", c_int32),
        ("channels_in", c_int32),
        ("channels_out", c_int32),
        ("rings", c_int32),
        ("angles", c_int32),
        ("num_layers", c_int32),
        ("hidden_dim", c_int32),
        ("fourier_filtering", c_int32),
        ("ccpg", c_int32),
        ("coord_deform", c_int32),
        ("parameter_count", c_int64),
        ("device", c_int32),
        ("device_index", c_int32),
        ("precision", c_int32),
        ("bytes_per_pixel", c_uint64),
        ("noise_level_aware", c_int32),
        ("noise_level_min", c_double),
        ("noise_level_max", c_double),
    ]


class Operator(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("kind", c_int32),
        ("width", c_size_t),
        ("height", c_size_t),
        ("channels", c_size_t),
        ("mask", POINTER(c_float)),
        ("mask_len", c_size_t),
        ("observed_fraction", c_double),
        ("seed", c_uint64),
        ("kernel", POINTER(c_float)),
        ("kernel_width", c_size_t),
        ("kernel_height", c_size_t),
        ("angles_deg", POINTER(c_double)),
        ("angle_count", c_size_t),
        ("forward", APPLY_FN),
        ("adjoint", APPLY_FN),
        ("user_data", c_void_p),
        ("measurement_len", c_size_t),
    ]


class RunParams(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("memory_budget_bytes", c_uint64),
        ("threads", c_int32),
        ("progress", PROGRESS_FN),
        ("progress_user_data", c_void_p),
        ("noise_level", c_double),
        ("self_ensemble", c_uint32),
    ]


class PnpParams(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("alpha", c_double),
        ("cg_max_iterations", c_uint32),
        ("cg_tolerance", c_double),
        ("run", RunParams),
        ("anneal_sigma_start", c_double),
        ("anneal_sigma_end", c_double),
        ("anneal_iterations", c_uint32),
        ("tolerance", c_double),
        ("splitting", c_int32),
        ("transforms", c_int32),
        ("average_last", c_uint32),
    ]


class PnpResiduals(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("iteration", c_uint32),
        ("primal", c_double),
        ("dual", c_double),
        ("data_misfit", c_double),
        ("psnr", c_double),
        ("cg_iterations", c_uint32),
        ("sigma", c_double),
        ("alpha", c_double),
        ("converged", c_uint32),
    ]


class Refinement(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("coarse_blur", c_double),
        ("cleanup", c_double),
    ]


class Image(Structure):
    """Frozen layout (no struct_size)."""

    _fields_ = [
        ("data", POINTER(c_float)),
        ("width", c_size_t),
        ("height", c_size_t),
        ("channels", c_size_t),
        ("row_stride_bytes", c_size_t),
    ]


class InputReader(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("width", c_size_t),
        ("height", c_size_t),
        ("channels", c_size_t),
        ("read", READ_FN),
        ("user_data", c_void_p),
    ]


class Region(Structure):
    _fields_ = [("x0", c_double), ("y0", c_double), ("x1", c_double), ("y1", c_double)]


class Window(Structure):
    _fields_ = [("col0", c_size_t), ("row0", c_size_t), ("cols", c_size_t), ("rows", c_size_t)]


class RunReport(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("pixels", c_uint64),
        ("batch_pixels", c_uint64),
        ("batches", c_uint64),
        ("estimated_peak_bytes", c_uint64),
        ("measured_peak_bytes", c_uint64),
        ("measured_peak_reserved_bytes", c_uint64),
        ("reserved_bytes", c_uint64),
        ("workers", c_uint64),
    ]


# Opaque handles.
class _ModelHandle(Structure):
    pass


class _PnpHandle(Structure):
    pass


MODEL_P = POINTER(_ModelHandle)
PNP_P = POINTER(_PnpHandle)

# (name, restype, argtypes). Every symbol the package uses; all must exist.
_SIGNATURES = [
    ("lofi_version", c_char_p, []),
    ("lofi_version_number", c_uint32, []),
    ("lofi_check_version", c_int32, [c_uint32]),
    ("lofi_last_error", c_char_p, []),
    ("lofi_status_name", c_char_p, [c_int32]),
    ("lofi_release_cached_memory", c_int32, []),
    ("lofi_set_log_callback", c_int32, [LOG_FN, c_void_p, c_int32]),
    ("lofi_init_load_params", c_int32, [POINTER(LoadParams)]),
    ("lofi_init_run_params", c_int32, [POINTER(RunParams)]),
    ("lofi_init_pnp_params", c_int32, [POINTER(PnpParams)]),
    ("lofi_pnp_params_for_inpainting", c_int32, [MODEL_P, POINTER(PnpParams)]),
    ("lofi_init_operator", c_int32, [POINTER(Operator)]),
    ("lofi_load", c_int32, [c_char_p, POINTER(LoadParams), POINTER(MODEL_P)]),
    ("lofi_load_from_memory", c_int32, [POINTER(c_uint8), c_size_t, POINTER(LoadParams), POINTER(MODEL_P)]),
    ("lofi_model_free", None, [MODEL_P]),
    ("lofi_model_get_info_sized", c_int32, [MODEL_P, POINTER(ModelInfo), c_size_t]),
    ("lofi_model_get_metadata", c_int32, [MODEL_P, c_char_p, POINTER(c_char), c_size_t, POINTER(c_size_t)]),
    ("lofi_memory_requirements", c_int32, [MODEL_P, c_size_t, c_size_t, POINTER(c_uint64), POINTER(c_uint64)]),
    (
        "lofi_reconstruct_region_sized",
        c_int32,
        [
            MODEL_P,
            POINTER(Image),
            POINTER(Region),
            c_size_t,
            c_size_t,
            POINTER(Window),
            POINTER(c_float),
            c_size_t,
            POINTER(RunParams),
            POINTER(RunReport),
            c_size_t,
        ],
    ),
    ("lofi_init_refinement", c_int32, [POINTER(Refinement)]),
    (
        "lofi_denoise_refined_sized",
        c_int32,
        [
            MODEL_P,
            POINTER(Image),
            POINTER(Refinement),
            POINTER(c_float),
            c_size_t,
            POINTER(RunParams),
            POINTER(RunReport),
            c_size_t,
        ],
    ),
    ("lofi_init_input_reader", c_int32, [POINTER(InputReader)]),
    (
        "lofi_reconstruct_region_from_reader_sized",
        c_int32,
        [
            MODEL_P,
            POINTER(InputReader),
            POINTER(Region),
            c_size_t,
            c_size_t,
            POINTER(Window),
            POINTER(c_float),
            c_size_t,
            POINTER(RunParams),
            POINTER(RunReport),
            c_size_t,
        ],
    ),
    (
        "lofi_reconstruct_points_sized",
        c_int32,
        [
            MODEL_P,
            POINTER(Image),
            POINTER(c_double),
            c_size_t,
            POINTER(c_float),
            POINTER(RunParams),
            POINTER(RunReport),
            c_size_t,
        ],
    ),
    ("lofi_operator_measurement_len", c_int32, [POINTER(Operator), POINTER(c_size_t)]),
    ("lofi_operator_forward", c_int32, [POINTER(Operator), POINTER(c_float), POINTER(c_float), c_size_t]),
    (
        "lofi_pnp_create",
        c_int32,
        [MODEL_P, POINTER(Operator), POINTER(c_float), c_size_t, POINTER(PnpParams), POINTER(PNP_P)],
    ),
    ("lofi_pnp_set_ground_truth", c_int32, [PNP_P, POINTER(c_float)]),
    ("lofi_pnp_set_estimate", c_int32, [PNP_P, POINTER(c_float)]),
    ("lofi_pnp_step_sized", c_int32, [PNP_P, POINTER(PnpResiduals), c_size_t]),
    ("lofi_pnp_solve_sized", c_int32, [PNP_P, c_uint32, POINTER(PnpResiduals), c_size_t]),
    ("lofi_pnp_estimate", c_int32, [PNP_P, POINTER(c_float), c_size_t]),
    ("lofi_pnp_free", None, [PNP_P]),
]


def _candidates() -> list[tuple[str, str]]:
    """(description, path or name) in the order they are tried."""
    out = []
    env = os.environ.get("LOFI_LIBRARY")
    if env:
        p = Path(env)
        if p.is_dir():
            p = p / "liblofi.so"
        out.append(("$LOFI_LIBRARY", str(p)))
    bundled = Path(__file__).resolve().parent / "_lib" / "liblofi.so"
    if bundled.exists():
        out.append(("the copy installed with the package", str(bundled)))
    out.append(("the system loader", SONAME))
    out.append(("the system loader", "liblofi.so"))
    return out


def _load_library() -> tuple[ctypes.CDLL, str]:
    tried = []
    env_given = bool(os.environ.get("LOFI_LIBRARY"))
    for what, target in _candidates():
        try:
            lib = ctypes.CDLL(target)
        except OSError as e:
            tried.append(f"  {what}: {target}: {e}")
            if what == "$LOFI_LIBRARY" and env_given:
                # An explicit choice that fails is an error, not a reason to pick another library.
                break
            continue
        return lib, target
    raise ImportError(
        "lofi: cannot load liblofi. Tried:\n"
        + "\n".join(tried)
        + "\nBuild it (`make build`) and reinstall the package (`pip install ./python`), or set "
        "LOFI_LIBRARY to the path of liblofi.so, or install it (`make install`)."
    )


def _bind(lib: ctypes.CDLL) -> None:
    missing = []
    for name, restype, argtypes in _SIGNATURES:
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise ImportError(f"lofi: the liblofi loaded lacks {', '.join(missing)} (is it older than {HEADER_VERSION}?)")


lib, library_path = _load_library()
_bind(lib)
if sys.byteorder != "little":  # pragma: no cover - lofi's images are native float32
    raise ImportError("lofi: the Python bindings assume a little-endian machine")
