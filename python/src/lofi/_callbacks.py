"""Python callables behind lofi's C callbacks, with exceptions carried across the C frames.

lofi's callbacks must return normally (docs/abi.md, "Callbacks"): an exception cannot unwind
through the library. So each trampoline catches everything (``BaseException``: Ctrl-C inside a
long solve too), remembers the first exception, and returns ``False``, which makes the library
stop the call with an error status. The caller then raises the remembered exception itself,
with the library's message added as a note.
"""

from __future__ import annotations


from . import _ffi
from .errors import LofiError


class ErrorSlot:
    """The first exception raised by a callback during one library call."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def catch(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e

    def raise_pending(self, lofi_error: LofiError | None) -> None:
        """Raises the callback's exception (if any), noting what the library said."""
        e, self.error = self.error, None
        if e is None:
            return
        if lofi_error is not None and hasattr(e, "add_note"):
            e.add_note(f"lofi stopped the call: {lofi_error}")
        raise e


def progress_callback(fn, slot: ErrorSlot):
    """A ``lofi_progress_fn`` calling ``fn(done, total)``: continues unless it returns False."""

    def trampoline(_user, done, total):
        try:
            return fn(int(done), int(total)) is not False
        except BaseException as e:  # noqa: BLE001 - carried across the C frames, re-raised
            slot.catch(e)
            return False

    return _ffi.PROGRESS_FN(trampoline)


def run_call(call, slot: ErrorSlot, what: str):
    """Runs a library call that may invoke callbacks; raises the callback's exception first,
    else the library's."""
    from .errors import last_error

    status = call()
    if status != _ffi.STATUS_OK:
        err = last_error(status, what)
        slot.raise_pending(err)
        raise err
    if slot.error is not None:  # a callback failed but the library went on (not expected)
        slot.raise_pending(None)


