"""Python bindings of liblofi, LoFi (Local Field) image reconstruction.

    import numpy as np, lofi
    with lofi.Model("models/denoise-gray.lofi") as model:
        clean = model.reconstruct(noisy, sigma=25 / 255)        # noisy: (H, W) float32

ctypes over the C ABI (include/lofi.h); no compiler needed. Where liblofi comes from:
``lofi.library_path`` (see ``lofi._ffi``: ``$LOFI_LIBRARY``, then the copy installed with the
package, then the system loader). Importing checks the library's version
(``lofi_check_version``) and raises :class:`VersionMismatchError` (an ImportError) if it cannot
serve these bindings.
"""

from __future__ import annotations

import atexit
import logging
import threading

from . import _ffi
from ._arrays import image_view
from .errors import (
    BudgetTooSmallError,
    CancelledError,
    DeviceUnavailableError,
    InternalError,
    InvalidArgumentError,
    InvalidInputError,
    InvalidModelError,
    LofiError,
    LofiIOError,
    ModelClosedError,
    OutOfMemoryError,
    TorchError,
    VersionMismatchError,
    check,
    last_error,
)
from .model import InputReader, Model, ModelInfo, RunReport
from .pnp import (
    Blur,
    Denoise,
    FourierMask,
    Inpaint,
    Lensing,
    Operator,
    PnP,
    Radon,
    Residuals,
    UserOperator,
    inpainting_settings,
    pnp,
)

__version__ = "0.1.0"

#: The lofi.h version these bindings speak, as ``MAJOR * 10000 + MINOR * 100 + PATCH``.
HEADER_VERSION_NUMBER = _ffi.HEADER_VERSION_NUMBER
#: The shared library in use.
library_path = _ffi.library_path
MAX_COORDINATE = _ffi.MAX_COORDINATE


def library_version() -> str:
    """The running liblofi's version, e.g. ``"0.1.0"`` (``lofi_version``)."""
    return _ffi.lib.lofi_version().decode()


def library_version_number() -> int:
    return int(_ffi.lib.lofi_version_number())


def check_version(header_version: int = HEADER_VERSION_NUMBER) -> None:
    """``lofi_check_version``: raises :class:`VersionMismatchError` (with the library's message
    naming both versions) unless the library serves bindings of ``header_version``."""
    status = _ffi.lib.lofi_check_version(int(header_version) & 0xFFFFFFFF)
    if status != _ffi.STATUS_OK:
        raw = _ffi.lib.lofi_last_error()
        raise VersionMismatchError(raw.decode() if raw else "lofi_check_version failed", status)


def release_cached_memory() -> None:
    """Gives GPU memory libtorch caches but does not use back to the driver (no-op on CPU)."""
    check(_ffi.lib.lofi_release_cached_memory(), "lofi_release_cached_memory")


_LEVELS = {
    _ffi.LOG_ERROR: logging.ERROR,
    _ffi.LOG_WARN: logging.WARNING,
    _ffi.LOG_INFO: logging.INFO,
    _ffi.LOG_DEBUG: logging.DEBUG,
    _ffi.LOG_TRACE: 5,
}
_LOFI_LEVEL = {"error": _ffi.LOG_ERROR, "warn": _ffi.LOG_WARN, "warning": _ffi.LOG_WARN, "info": _ffi.LOG_INFO,
               "debug": _ffi.LOG_DEBUG, "trace": _ffi.LOG_TRACE}
_log_state = {"callback": None}
_log_lock = threading.Lock()
logger = logging.getLogger("lofi")


def _on_log(_user, level, message):
    # Runs on whichever thread logs; must not raise (it cannot unwind through lofi).
    try:
        logger.log(_LEVELS.get(level, logging.INFO), message.decode("utf-8", "replace"))
    except BaseException:  # noqa: BLE001
        pass


def enable_logging(level: str | None = "info") -> None:
    """Sends liblofi's log messages (it prints nothing itself) to the ``logging`` logger
    ``"lofi"``, up to ``level`` ("error", "warn", "info", "debug", "trace"); ``None`` stops them.
    Process-wide (``lofi_set_log_callback``); undone at interpreter exit."""
    if level is not None and level not in _LOFI_LEVEL:
        raise InvalidArgumentError(f"level must be one of {', '.join(_LOFI_LEVEL)} or None, got {level!r}")
    with _log_lock:
        if level is None:
            check(_ffi.lib.lofi_set_log_callback(_ffi.LOG_FN(), None, _ffi.LOG_OFF), "lofi_set_log_callback")
            _log_state["callback"] = None  # lofi no longer calls it once the call returned
            return
        cb = _log_state["callback"] or _ffi.LOG_FN(_on_log)
        check(_ffi.lib.lofi_set_log_callback(cb, None, _LOFI_LEVEL[level]), "lofi_set_log_callback")
        _log_state["callback"] = cb


@atexit.register
def _stop_logging() -> None:
    if _log_state["callback"] is not None:
        try:
            enable_logging(None)
        except Exception:  # noqa: BLE001
            pass


check_version()

__all__ = [
    "Model", "ModelInfo", "RunReport", "InputReader", "image_view",
    "Operator", "Denoise", "Inpaint", "FourierMask", "Blur", "Lensing", "Radon", "UserOperator",
    "PnP", "Residuals", "pnp", "inpainting_settings",
    "LofiError", "InvalidArgumentError", "InvalidInputError", "InvalidModelError", "LofiIOError",
    "BudgetTooSmallError", "DeviceUnavailableError", "CancelledError", "TorchError", "InternalError",
    "OutOfMemoryError", "ModelClosedError", "VersionMismatchError",
    "library_version", "library_version_number", "library_path", "check_version", "release_cached_memory",
    "enable_logging", "HEADER_VERSION_NUMBER", "MAX_COORDINATE", "last_error",
]
