"""NumPy arrays <-> lofi's image descriptors: the zero-copy rules in one place."""

from __future__ import annotations

import ctypes
import math
import numbers
import re

import numpy as np

from . import _ffi
from .errors import InvalidArgumentError, InvalidInputError

_FLOAT_P = ctypes.POINTER(ctypes.c_float)
_SIZE_MAX = 2**63 - 1  # sizes the bindings accept (isize::MAX: what the library bounds them to)


def float_ptr(array: np.ndarray):
    return array.ctypes.data_as(_FLOAT_P)


def _row_strided(a: np.ndarray) -> bool:
    """Whether lofi can read ``a`` (H, W, C) float32 as it is: rows anywhere (a positive byte
    stride, a multiple of 4, at least a packed row), pixels and channels packed within a row."""
    h, w, c = a.shape
    s_row, s_col, s_ch = a.strides
    aligned = a.ctypes.data % 4 == 0
    packed_row = (c == 1 or s_ch == 4) and (w == 1 or s_col == 4 * c)
    row_ok = h == 1 or (s_row > 0 and s_row % 4 == 0 and s_row >= 4 * w * c)
    return aligned and packed_row and row_ok


def image_view(array, channels: int | None = None, *, what: str = "image") -> np.ndarray:
    """The (H, W, C) float32 array lofi reads for ``array``, without copying when it can.

    * float32 (native byte order) whose pixels and channels are packed within each row, with
      any positive row stride (C-contiguous arrays, row slices ``a[r0:r1]``, column windows
      ``a[:, c0:c1]``, rows of a larger buffer): returned as a view, **no copy**; lofi reads the
      caller's memory through ``lofi_image.row_stride_bytes``.
    * Any other layout (column steps ``a[:, ::2]``, transposes, negative strides, Fortran order)
      or float16/float64: copied once into a packed float32 array.
    * complex64/complex128 (H, W) for two-channel models (real, imaginary interleaved, as lofi
      describes complex channels): complex64 C-contiguous is a view.
    * (H, W) is one channel; (H, W, C) must have ``C == channels`` when given.

    Raises :class:`InvalidInputError` for other dtypes (integers, bool, object) and shapes.
    ``np.shares_memory(image_view(a), a)`` tells whether a call reads ``a`` in place.
    """
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except Exception as e:  # ragged lists, objects numpy refuses
            raise InvalidInputError(f"{what}: cannot be read as an array ({e})") from None
    if array.dtype.kind == "c":
        if array.ndim != 2:
            raise InvalidInputError(f"{what}: a complex image must be 2-D (H, W), got shape {array.shape}")
        if array.dtype != np.complex64:
            array = array.astype(np.complex64)
        elif not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        array = array.view(np.float32).reshape(array.shape[0], array.shape[1], 2)
    elif array.dtype.kind == "f":
        if array.dtype != np.float32:  # float16, float64, big-endian float32
            array = array.astype(np.float32)
    else:
        raise InvalidInputError(
            f"{what}: dtype {array.dtype} is not a floating-point image (lofi reads float32; "
            "convert integers yourself, e.g. a / 255)"
        )
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    elif array.ndim != 3:
        raise InvalidInputError(f"{what}: expected (H, W) or (H, W, C), got {array.ndim} dimensions {array.shape}")
    h, w, c = array.shape
    if h == 0 or w == 0 or c == 0:
        raise InvalidInputError(f"{what}: empty image of shape {array.shape}")
    if channels is not None and c != channels:
        raise InvalidInputError(f"{what}: {c} channel(s), the model takes {channels}")
    if not _row_strided(array):
        array = np.ascontiguousarray(array)
    return array


def image_descriptor(view: np.ndarray) -> _ffi.Image:
    h, w, c = view.shape
    stride = view.strides[0] if h > 1 else 4 * w * c
    return _ffi.Image(float_ptr(view), w, h, c, stride)


def packed(array, size: int, what: str) -> np.ndarray:
    """``array`` as ``size`` packed float32 values (a view when it already is one)."""
    try:
        a = np.asarray(array)
    except Exception as e:
        raise InvalidInputError(f"{what}: cannot be read as an array ({e})") from None
    if a.dtype.kind not in "fiub":
        raise InvalidInputError(f"{what}: dtype {a.dtype} is not numeric")
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    if a.size != size:
        raise InvalidInputError(f"{what}: {a.size} values, expected {size}")
    return a


def as_int(value, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{what} must be an integer, got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise InvalidArgumentError(f"{what} = {v} is out of range [{lo}, {hi}]")
    return v


def as_size(value, what: str, lo: int = 1) -> int:
    return as_int(value, what, lo, _SIZE_MAX)


def as_float(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{what} must be a number, got {value!r}")
    return float(value)


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_budget(budget) -> int:
    """Bytes from an int or a string such as ``"512MiB"``, ``"2 GiB"``, ``"1e9"``."""
    if isinstance(budget, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", budget)
        if not m or m.group(2).lower() not in _UNITS:
            raise InvalidArgumentError(f"budget {budget!r} is not a size (e.g. 512MiB, 2GiB, 1000000)")
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
        if not math.isfinite(value) or value != math.floor(value):
            raise InvalidArgumentError(f"budget {budget!r} is not a whole number of bytes")
        budget = int(value)
    return as_int(budget, "budget", 1, 2**64 - 1)
