"""lofi's exceptions: one class per ``lofi_status``, all under :class:`LofiError`.

Every failure of the library arrives as the subclass of its status, carrying the status code
(``err.status``), its C name (``err.status_name``) and the library's one-line message
(``err.message``, from ``lofi_last_error()``). Checks the bindings make before calling the library
(a wrong dtype, a closed model, ...) raise the same classes with the status the library would
have returned, so callers handle one hierarchy.
"""

from __future__ import annotations

from . import _ffi


class LofiError(Exception):
    """A lofi call failed. ``status`` is the ``lofi_status`` code, ``message`` the library's text."""

    status: int = -1

    def __init__(self, message: str, status: int | None = None):
        if status is not None:
            self.status = status
        self.message = message
        super().__init__(message)

    @property
    def status_name(self) -> str:
        return _ffi.lib.lofi_status_name(self.status).decode()

    def __str__(self) -> str:
        return f"{self.message} [{self.status_name}]"


class InvalidArgumentError(LofiError, ValueError):
    """A value out of range, a size that does not add up (``LOFI_STATUS_INVALID_ARGUMENT``)."""

    status = _ffi.STATUS_INVALID_ARGUMENT


class InvalidInputError(LofiError, ValueError):
    """An unusable image: wrong dtype, shape or channel count, NaN pixels (``LOFI_STATUS_INVALID_INPUT``)."""

    status = _ffi.STATUS_INVALID_INPUT


class InvalidModelError(LofiError):
    """The model file is corrupt, truncated or inconsistent (``LOFI_STATUS_INVALID_MODEL``)."""

    status = _ffi.STATUS_INVALID_MODEL


class LofiIOError(LofiError, OSError):
    """A file could not be read or written (``LOFI_STATUS_IO``)."""

    status = _ffi.STATUS_IO

    def __init__(self, message: str, status: int | None = None):
        LofiError.__init__(self, message, status)

    def __str__(self) -> str:
        return LofiError.__str__(self)


class BudgetTooSmallError(LofiError, ValueError):
    """The memory budget cannot hold one batch; the message states the minimum."""

    status = _ffi.STATUS_BUDGET_TOO_SMALL


class DeviceUnavailableError(LofiError):
    """The device asked for does not exist (CUDA without a GPU)."""

    status = _ffi.STATUS_DEVICE_UNAVAILABLE


class CancelledError(LofiError):
    """A progress callback returned False."""

    status = _ffi.STATUS_CANCELLED


class TorchError(LofiError):
    """libtorch failed for a reason other than memory."""

    status = _ffi.STATUS_TORCH


class InternalError(LofiError):
    """A bug in lofi (a caught panic); please report it with the message."""

    status = _ffi.STATUS_INTERNAL


class OutOfMemoryError(LofiError, MemoryError):
    """A host or device allocation failed; nothing leaked. Retry with a smaller budget or input."""

    status = _ffi.STATUS_OUT_OF_MEMORY


class ModelClosedError(InvalidArgumentError):
    """The model (or PnP state) was closed; its handle is gone."""


class VersionMismatchError(InvalidArgumentError, ImportError):
    """The liblofi loaded cannot serve these bindings (older, or another ABI)."""


_BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        InvalidInputError,
        InvalidModelError,
        LofiIOError,
        BudgetTooSmallError,
        DeviceUnavailableError,
        CancelledError,
        TorchError,
        InternalError,
        OutOfMemoryError,
    )
}


def error_for(status: int, message: str) -> LofiError:
    """The exception for a status, with a message."""
    cls = _BY_STATUS.get(status, LofiError)
    return cls(message, status)


def last_error(status: int, call: str) -> LofiError:
    """The exception for a failed call: its status and ``lofi_last_error()`` (read right away: the
    message lives until this thread's next lofi call)."""
    raw = _ffi.lib.lofi_last_error()
    message = raw.decode("utf-8", "replace") if raw else f"{call} failed without a message"
    return error_for(status, message)


def check(status: int, call: str) -> None:
    """Raises the exception of a failed status."""
    if status != _ffi.STATUS_OK:
        raise last_error(status, call)
