"""Python callables behind lofi's C callbacks, with exceptions carried across the C frames.

lofi's callbacks must return normally (docs/abi.md, "Callbacks"): an exception cannot unwind
through the library. So each trampoline catches everything (``BaseException``: Ctrl-C inside a
long solve too), remembers the first exception, and returns ``False``, which makes the library
stop the call with an error status. The caller then raises the remembered exception itself,
with the library's message added as a note.
"""

from __future__ import annotations

import signal
import threading

from . import _ffi
from .errors import LofiError


class _DeferredSigint:
    """Ctrl-C during a library call on the main thread.

    Python runs signal handlers at the next bytecode boundary, which during a call is the entry
    of a callback trampoline, before its ``try``: a KeyboardInterrupt raised there would escape
    the trampoline (ctypes prints it and returns an undefined value to the library). So while a
    call runs on the main thread, SIGINT only records itself here; the trampolines see it and
    return False (the library stops between batches or iterations), and when the call returns
    the handler that was installed before runs (Python's default raises KeyboardInterrupt).
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending = None
        self.previous = None
        self.installed = False

    def _record(self, signum, frame) -> None:
        self.pending = (signum, frame)

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        if self.depth == 0:
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):  # SIG_DFL, SIG_IGN or a C-level handler: left alone
                try:
                    signal.signal(signal.SIGINT, self._record)
                    self.previous, self.installed = previous, True
                except (ValueError, OSError):
                    self.installed = False
        self.depth += 1
        return self

    def __exit__(self, *exc) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self.depth -= 1
        if self.depth == 0 and self.installed:
            signal.signal(signal.SIGINT, self.previous)
            self.installed = False
            pending, self.pending = self.pending, None
            if pending is not None:
                self.previous(*pending)  # the interrupt, delivered now (may raise)


deferred_sigint = _DeferredSigint()


def interrupted() -> bool:
    """Whether Ctrl-C arrived during the current call (main thread)."""
    return deferred_sigint.pending is not None


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
            if interrupted() or slot.error is not None:
                return False
            return fn(int(done), int(total)) is not False
        except BaseException as e:  # noqa: BLE001 - carried across the C frames, re-raised
            slot.catch(e)
            return False

    return _ffi.PROGRESS_FN(trampoline)


def read_callback(fn, channels: int, slot: ErrorSlot):
    """A ``lofi_read_fn`` calling ``fn(row0, rows, col0, cols)``, which returns the rectangle as
    an array of (rows, cols, channels) values ((rows, cols) for one channel); they are copied
    into lofi's buffer as float32."""
    import numpy as np

    def trampoline(_user, row0, rows, col0, cols, out):
        try:
            if interrupted() or slot.error is not None:
                return False
            block = np.asarray(fn(int(row0), int(rows), int(col0), int(cols)))
            want = (int(rows), int(cols), channels)
            if block.shape != want and not (channels == 1 and block.shape == want[:2]):
                raise ValueError(f"the reader returned shape {block.shape} for a rectangle of {want}")
            target = np.ctypeslib.as_array(out, shape=want)
            target[...] = block.reshape(want)
            return True
        except BaseException as e:  # noqa: BLE001 - carried across the C frames, re-raised
            slot.catch(e)
            return False

    return _ffi.READ_FN(trampoline)


def run_call(call, slot: ErrorSlot, what: str):
    """Runs a library call that may invoke callbacks; raises the callback's exception first,
    else the library's."""
    from .errors import last_error

    with deferred_sigint:
        status = call()
    if status != _ffi.STATUS_OK:
        err = last_error(status, what)
        slot.raise_pending(err)
        raise err
    if slot.error is not None:  # a callback failed but the library went on (not expected)
        slot.raise_pending(None)


