"""``lofi.Model``: a loaded model, its description, and reconstructions of NumPy images."""

from __future__ import annotations

import ctypes
import json
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from . import _ffi
from ._arrays import (
    as_float,
    as_int,
    as_size,
    float_ptr,
    image_descriptor,
    image_view,
    parse_budget,
)
from ._callbacks import ErrorSlot, progress_callback, read_callback, run_call
from .errors import InvalidArgumentError, ModelClosedError, OutOfMemoryError, check

_DEVICES = {"cpu": _ffi.DEVICE_CPU, "cuda": _ffi.DEVICE_CUDA}
_PRECISIONS = {"f32": _ffi.PRECISION_F32, "float32": _ffi.PRECISION_F32, "bf16": _ffi.PRECISION_BF16,
               "bfloat16": _ffi.PRECISION_BF16, "f16": _ffi.PRECISION_F16, "float16": _ffi.PRECISION_F16}


def _parse_device(device) -> tuple[int, int]:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` -> (kind, index)."""
    if not isinstance(device, str):
        raise InvalidArgumentError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    name, _, index = device.strip().lower().partition(":")
    if name not in _DEVICES or (index and (name != "cuda" or not index.isdigit())):
        raise InvalidArgumentError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return _DEVICES[name], as_int(int(index) if index else 0, "device index", 0, 2**31 - 1)


@dataclass(frozen=True)
class ModelInfo:
    """What ``lofi_model_get_info()`` and ``lofi_model_get_metadata()`` say about a model."""

    image_size: int
    channels_in: int
    channels_out: int
    rings: int
    angles: int
    num_layers: int
    hidden_dim: int
    fourier_filtering: bool
    ccpg: bool
    coord_deform: bool
    parameter_count: int
    device: str
    precision: str
    bytes_per_pixel: int
    noise_level_aware: bool
    noise_level_range: tuple[float, float] | None
    config: dict = field(repr=False)
    notes: dict | str | None = field(repr=False)
    format_version: str = ""
    digest: str = ""

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass(frozen=True)
class RunReport:
    """What a reconstruction did (``lofi_run_report``)."""

    pixels: int
    batch_pixels: int
    batches: int
    estimated_peak_bytes: int
    measured_peak_bytes: int
    measured_peak_reserved_bytes: int
    reserved_bytes: int
    workers: int


@dataclass(frozen=True)
class InputReader:
    """An image read in rectangles instead of held in an array (``lofi_input_reader``); pass it
    to :meth:`Model.reconstruct` as the image.

    * ``shape``: the whole image's (H, W) or (H, W, C); region coordinates and the reflections
      at the borders refer to it.
    * ``read(row0, rows, col0, cols)``: returns that rectangle as (rows, cols) or
      (rows, cols, C) numbers (copied as float32). An exception it raises stops the call and
      propagates.

    lofi asks only for the rows the grid or window can reach (checking them first) and each
    batch's window of them; a model with the Fourier filter reads every row once (the filter is
    global). So a band of a huge ``numpy.memmap``, an HDF5 or zarr dataset, or a tiled format is
    never loaded whole. The result equals the array's, bit for bit.
    """

    shape: tuple
    read: object

    def _dims(self, channels_in: int) -> tuple[int, int, int]:
        try:
            dims = tuple(as_size(v, "reader shape") for v in self.shape)
        except TypeError:
            raise InvalidArgumentError(f"InputReader shape must be (H, W) or (H, W, C), got {self.shape!r}") from None
        if len(dims) not in (2, 3):
            raise InvalidArgumentError(f"InputReader shape must be (H, W) or (H, W, C), got {self.shape!r}")
        if not callable(self.read):
            raise InvalidArgumentError(f"InputReader read must be callable, got {self.read!r}")
        h, w = dims[0], dims[1]
        return h, w, dims[2] if len(dims) == 3 else channels_in


def run_params(*, budget=None, threads=0, sigma=None, self_ensemble=1, progress=None,
               slot: ErrorSlot | None = None, into: _ffi.RunParams | None = None):
    """A ``lofi_run_params`` from the library's defaults (``lofi_init_run_params``) and the
    arguments; returns (params, the ctypes callback to keep alive)."""
    p = into if into is not None else _ffi.RunParams()
    if into is None:
        p.struct_size = ctypes.sizeof(_ffi.RunParams)
        check(_ffi.lib.lofi_init_run_params(ctypes.byref(p)), "lofi_init_run_params")
    if budget is not None:
        p.memory_budget_bytes = parse_budget(budget)
    p.threads = as_int(threads, "threads", 0, 2**31 - 1)
    if sigma is not None:
        s = as_float(sigma, "sigma")
        if s < 0:  # negative means "no level" to the library: refuse it rather than ignore it
            raise InvalidArgumentError(f"sigma = {s} is negative (use None for no noise level)")
        p.noise_level = s  # NaN goes through: the library refuses it with its own message
    # 1, 2, 4 or 8: the library checks the count (and the model) and says why it refuses.
    p.self_ensemble = as_int(self_ensemble, "self_ensemble", 0, 2**32 - 1)
    if progress is None:
        # Always a callback, so that Ctrl-C stops a long call between batches (see
        # _callbacks.deferred_sigint) instead of waiting for its end.
        progress = _keep_going
    elif not callable(progress):
        raise InvalidArgumentError(f"progress must be callable, got {progress!r}")
    keep = progress_callback(progress, slot)
    p.progress = keep
    return p, keep


def _keep_going(done: int, total: int) -> bool:
    return True


class _Handle:
    """A library handle shared by calls on several threads: ``close()`` while calls run defers
    the free until the last one returns, so a handle is never freed under a running call."""

    def __init__(self, ptr, free, what: str):
        self._ptr = ptr
        self._free = free
        self._what = what
        self._lock = threading.Lock()
        self._active = 0
        self._closed = False

    def acquire(self):
        with self._lock:
            if self._closed:
                raise ModelClosedError(f"the {self._what} is closed", _ffi.STATUS_INVALID_ARGUMENT)
            self._active += 1
            return self._ptr

    def release(self) -> None:
        with self._lock:
            self._active -= 1
            if self._closed and self._active == 0:
                self._free_now()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._active == 0:
                self._free_now()

    @property
    def closed(self) -> bool:
        return self._closed

    def _free_now(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr:
            self._free(ptr)


class _Using:
    def __init__(self, handle: _Handle):
        self.handle = handle

    def __enter__(self):
        return self.handle.acquire()

    def __exit__(self, *exc):
        self.handle.release()


class _HandleOwner:
    """Lifetime of an object owning a :class:`_Handle` in ``self._handle``: ``close()`` (idempotent;
    later calls raise :class:`ModelClosedError`; a call running on another thread finishes
    first), ``closed``, the context-manager protocol, and a close when garbage-collected."""

    _handle: _Handle | None = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()

    @property
    def closed(self) -> bool:
        return self._handle is None or self._handle.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class Model(_HandleOwner):
    """A loaded ``.lofi`` model (``lofi_load``).

    ``Model(path, device="cpu", precision="f32")``; ``Model.from_bytes(data, ...)`` loads from
    memory. Use it as a context manager, or call :meth:`close`; a model is also freed when it is
    garbage-collected. Any number of threads may reconstruct with one model at the same time:
    calls run without the GIL (ctypes releases it), and ``close()`` waits for running calls
    rather than freeing under them. PnP states keep their model alive inside the library, so
    closing a model does not break them.
    """

    def __init__(self, path, device: str = "cpu", precision: str = "f32", *, _data: bytes | None = None):
        self._handle = None
        kind, index = _parse_device(device)
        if not isinstance(precision, str) or precision.lower() not in _PRECISIONS:
            raise InvalidArgumentError(f"precision must be one of f32, bf16, f16; got {precision!r}")
        params = _ffi.LoadParams()
        params.struct_size = ctypes.sizeof(_ffi.LoadParams)
        check(_ffi.lib.lofi_init_load_params(ctypes.byref(params)), "lofi_init_load_params")
        params.device, params.device_index = kind, index
        params.precision = _PRECISIONS[precision.lower()]
        out = _ffi.MODEL_P()
        if _data is not None:
            buf = (ctypes.c_uint8 * len(_data)).from_buffer_copy(_data) if _data else (ctypes.c_uint8 * 1)()
            status = _ffi.lib.lofi_load_from_memory(buf, len(_data), ctypes.byref(params), ctypes.byref(out))
            self.path = None
            check(status, "lofi_load_from_memory")
        else:
            try:
                raw = os.fsencode(path)
            except TypeError:
                raise InvalidArgumentError(f"path must be a str or os.PathLike, got {path!r}") from None
            if b"\0" in raw:
                raise InvalidArgumentError(f"path {path!r} contains a NUL character")
            self.path = os.fsdecode(raw)
            check(_ffi.lib.lofi_load(raw, ctypes.byref(params), ctypes.byref(out)), "lofi_load")
        self._handle = _Handle(out, _ffi.lib.lofi_model_free, "model")
        self._info = None

    @classmethod
    def from_bytes(cls, data, device: str = "cpu", precision: str = "f32") -> Model:
        """Loads a model from the bytes of a ``.lofi`` file (``lofi_load_from_memory``)."""
        try:
            data = bytes(memoryview(data))
        except TypeError:
            raise InvalidArgumentError(f"data must be bytes-like, got {type(data).__name__}") from None
        return cls(None, device, precision, _data=data)

    # ---- lifetime ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<lofi.Model {self.path or '(from memory)'} {state}>"

    def _using(self) -> _Using:
        if self._handle is None:
            raise ModelClosedError("the model is closed", _ffi.STATUS_INVALID_ARGUMENT)
        return _Using(self._handle)

    # ---- description ---------------------------------------------------------------------------

    def metadata(self, key: str) -> str:
        """One metadata entry (``lofi_model_get_metadata``): ``"notes"``, ``"config"``,
        ``"format_version"`` or ``"digest"``."""
        if not isinstance(key, str) or "\0" in key:
            raise InvalidArgumentError(f"metadata key must be a str without NUL, got {key!r}")
        k = key.encode()
        needed = ctypes.c_size_t(0)
        with self._using() as ptr:
            check(_ffi.lib.lofi_model_get_metadata(ptr, k, None, 0, ctypes.byref(needed)), "lofi_model_get_metadata")
            buf = ctypes.create_string_buffer(needed.value)
            check(_ffi.lib.lofi_model_get_metadata(ptr, k, buf, needed.value, None), "lofi_model_get_metadata")
        return buf.value.decode("utf-8", "replace")

    @property
    def info(self) -> ModelInfo:
        """The model's description (``lofi_model_get_info`` and its metadata)."""
        if self._info is None:
            raw = _ffi.ModelInfo()
            with self._using() as ptr:
                check(_ffi.lib.lofi_model_get_info_sized(ptr, ctypes.byref(raw), ctypes.sizeof(raw)),
                      "lofi_model_get_info")
            notes_text = self.metadata("notes")
            try:
                notes = json.loads(notes_text) if notes_text else None
            except ValueError:
                notes = notes_text
            aware = bool(raw.noise_level_aware)
            device = {_ffi.DEVICE_CPU: "cpu", _ffi.DEVICE_CUDA: f"cuda:{raw.device_index}"}.get(raw.device, "?")
            precision = {_ffi.PRECISION_F32: "f32", _ffi.PRECISION_BF16: "bf16", _ffi.PRECISION_F16: "f16"}
            self._info = ModelInfo(
                image_size=raw.image_size,
                channels_in=raw.channels_in,
                channels_out=raw.channels_out,
                rings=raw.rings,
                angles=raw.angles,
                num_layers=raw.num_layers,
                hidden_dim=raw.hidden_dim,
                fourier_filtering=bool(raw.fourier_filtering),
                ccpg=bool(raw.ccpg),
                coord_deform=bool(raw.coord_deform),
                parameter_count=raw.parameter_count,
                device=device,
                precision=precision.get(raw.precision, "?"),
                bytes_per_pixel=raw.bytes_per_pixel,
                noise_level_aware=aware,
                noise_level_range=(raw.noise_level_min, raw.noise_level_max) if aware else None,
                config=json.loads(self.metadata("config")),
                notes=notes,
                format_version=self.metadata("format_version"),
                digest=self.metadata("digest"),
            )
        return self._info

    def memory_requirements(self, width: int, height: int) -> tuple[int, int]:
        """(smallest budget in bytes, bytes each further output pixel of a batch adds) for a
        ``width`` x ``height`` input (``lofi_memory_requirements``)."""
        lo, per = ctypes.c_uint64(), ctypes.c_uint64()
        with self._using() as ptr:
            check(_ffi.lib.lofi_memory_requirements(ptr, as_size(width, "width", 0), as_size(height, "height", 0),
                                                    ctypes.byref(lo), ctypes.byref(per)),
                  "lofi_memory_requirements")
        return lo.value, per.value

    # ---- reconstruction ------------------------------------------------------------------------

    def _output(self, out, rows: int, cols: int, channels: int, squeeze: bool):
        """The output array and its row stride: ``out`` itself (written in place) or a new one."""
        if out is None:
            try:
                array = np.empty((rows, cols, channels), dtype=np.float32)
            except MemoryError:
                raise OutOfMemoryError(f"no memory for an output of {rows} x {cols} x {channels} floats",
                                       _ffi.STATUS_OUT_OF_MEMORY) from None
            except ValueError:
                raise InvalidArgumentError(f"an output of {rows} x {cols} x {channels} floats is too large") from None
            return array, array, 0
        if not isinstance(out, np.ndarray) or out.dtype != np.float32:
            raise InvalidArgumentError("out must be a float32 numpy array")
        if not out.flags.writeable:
            raise InvalidArgumentError("out is read-only")
        view = out[:, :, np.newaxis] if out.ndim == 2 else out
        if view.ndim != 3 or view.shape != (rows, cols, channels):
            want = (rows, cols) if squeeze else (rows, cols, channels)
            raise InvalidArgumentError(f"out has shape {out.shape}, the result is {want}")
        s_row, s_col, s_ch = view.strides
        packed_row = (channels == 1 or s_ch == 4) and (cols == 1 or s_col == 4 * channels)
        row_ok = rows == 1 or (s_row > 0 and s_row % 4 == 0 and s_row >= 4 * cols * channels)
        if not (packed_row and row_ok and view.ctypes.data % 4 == 0):
            raise InvalidArgumentError(
                "out must have its pixels packed within each row (any positive row stride), "
                f"strides {out.strides} are not"
            )
        return out, view, s_row if rows > 1 else 0

    def reconstruct(
        self,
        image,
        region=None,
        shape=None,
        budget=None,
        sigma=None,
        threads: int = 0,
        *,
        self_ensemble: int = 1,
        window=None,
        out: np.ndarray | None = None,
        progress=None,
        report: bool = False,
    ):
        """Reconstructs ``image`` on a grid (``lofi_reconstruct_region``).

        * ``image``: (H, W) or (H, W, C) float32 (read in place when its rows are packed: see
          :func:`lofi.image_view`; other layouts and float dtypes are copied once), or complex
          (H, W) for a two-channel (complex) model. C must be the model's ``channels_in``. Or an
          :class:`InputReader`: lofi reads the rectangles it needs
          (``lofi_reconstruct_region_from_reader``).
        * ``region``: ``(x0, y0, x1, y1)`` in input pixel coordinates (x = column, pixel centres
          at integers); default the whole image ``(0, 0, W - 1, H - 1)``.
        * ``shape``: output grid ``(rows, cols)``; default the input's (H, W). The grid's
          samples span the region, ends included.
        * ``budget``: working-memory budget, bytes or a string ("256MiB"); default 512 MiB.
        * ``sigma``: the input's noise level (image units) for noise-level-aware models.
        * ``threads``: CPU threads for this call (0: libtorch's default).
        * ``self_ensemble``: 1 (off), 2, 4 or 8 network passes per value with the sampling
          geometry turned and mirrored, averaged (``lofi_run_params.self_ensemble``): better
          estimates at that multiple of the time.
        * ``window``: ``(row0, col0, rows, cols)``, a tile of the grid to compute.
        * ``out``: a float32 array to write into (rows packed, any row stride), e.g. a slice of
          a larger mosaic; it is returned.
        * ``progress``: ``fn(done, total)`` after every batch (and, for a Fourier filter
          computed in bands because it does not fit half the budget, after every band of it,
          with ``done`` 0); returning False cancels (:class:`lofi.CancelledError`); an
          exception it raises propagates.
        * ``report``: also return a :class:`RunReport`.

        Returns (rows, cols, channels_out) float32, or (rows, cols) when the input was 2-D and
        the model has one output channel.
        """
        info = self.info
        if isinstance(image, InputReader):
            view = None
            h, w, c = image._dims(info.channels_in)
            squeeze = len(image.shape) == 2 and info.channels_out == 1
        else:
            view = image_view(image, info.channels_in)
            squeeze = (np.ndim(image) == 2) and info.channels_out == 1
            h, w, _ = view.shape
        if shape is None:
            grid_rows, grid_cols = h, w
        else:
            try:
                grid_rows, grid_cols = shape
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"shape must be (rows, cols), got {shape!r}") from None
            grid_rows, grid_cols = as_size(grid_rows, "shape rows"), as_size(grid_cols, "shape cols")
        region_c = None
        if region is not None:
            try:
                x0, y0, x1, y1 = (as_float(v, "region corner") for v in region)
            except (TypeError, ValueError) as e:
                if isinstance(e, InvalidArgumentError):
                    raise
                raise InvalidArgumentError(f"region must be (x0, y0, x1, y1), got {region!r}") from None
            region_c = _ffi.Region(x0, y0, x1, y1)
        window_c = None
        rows, cols = grid_rows, grid_cols
        if window is not None:
            try:
                r0, c0, wr, wc = window
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"window must be (row0, col0, rows, cols), got {window!r}") from None
            window_c = _ffi.Window(as_size(c0, "window col0", 0), as_size(r0, "window row0", 0),
                                   as_size(wc, "window cols"), as_size(wr, "window rows"))
            rows, cols = window_c.rows, window_c.cols
        result, out_view, out_stride = self._output(out, rows, cols, info.channels_out, squeeze)
        slot = ErrorSlot()
        params, keep = run_params(budget=budget, threads=threads, sigma=sigma, self_ensemble=self_ensemble,
                                  progress=progress, slot=slot)
        rep = _ffi.RunReport()
        if view is None:
            desc = _ffi.InputReader()
            desc.struct_size = ctypes.sizeof(_ffi.InputReader)
            check(_ffi.lib.lofi_init_input_reader(ctypes.byref(desc)), "lofi_init_input_reader")
            desc.width, desc.height, desc.channels = w, h, c
            reader_keep = read_callback(image.read, c, slot)
            desc.read = reader_keep
            entry, what = _ffi.lib.lofi_reconstruct_region_from_reader_sized, "lofi_reconstruct_region_from_reader"
        else:
            desc = image_descriptor(view)
            reader_keep = None
            entry, what = _ffi.lib.lofi_reconstruct_region_sized, "lofi_reconstruct_region"
        with self._using() as ptr:
            run_call(
                lambda: entry(
                    ptr,
                    ctypes.byref(desc),
                    ctypes.byref(region_c) if region_c is not None else None,
                    grid_cols,
                    grid_rows,
                    ctypes.byref(window_c) if window_c is not None else None,
                    float_ptr(out_view),
                    out_stride,
                    ctypes.byref(params),
                    ctypes.byref(rep),
                    ctypes.sizeof(rep),
                ),
                slot,
                what,
            )
        del keep, view, reader_keep  # alive until here: the library used them during the call
        if out is None and squeeze:
            result = result[:, :, 0]
        return (result, _report(rep)) if report else result

    def reconstruct_points(self, image, points, budget=None, sigma=None, threads: int = 0, *, progress=None,
                           self_ensemble: int = 1):
        """Reconstructs arbitrary points (``lofi_reconstruct_points``): ``points`` is (N, 2) of
        (x, y) = (column, row) in input pixel coordinates. Returns (N, channels_out) float32
        ((N,) for one output channel and a 2-D input)."""
        info = self.info
        view = image_view(image, info.channels_in)
        try:
            pts = np.ascontiguousarray(points, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidArgumentError("points must be an (N, 2) array of numbers") from None
        if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
            raise InvalidArgumentError(f"points must be (N, 2) with N > 0, got shape {pts.shape}")
        result = np.empty((pts.shape[0], info.channels_out), dtype=np.float32)
        slot = ErrorSlot()
        params, keep = run_params(budget=budget, threads=threads, sigma=sigma, self_ensemble=self_ensemble,
                                  progress=progress, slot=slot)
        desc = image_descriptor(view)
        with self._using() as ptr:
            run_call(
                lambda: _ffi.lib.lofi_reconstruct_points_sized(
                    ptr, ctypes.byref(desc), pts.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                    pts.shape[0], float_ptr(result), ctypes.byref(params), None, 0),
                slot,
                "lofi_reconstruct_points",
            )
        del keep, view
        if np.ndim(image) == 2 and info.channels_out == 1:
            result = result[:, 0]
        return result


    def denoise_refined(self, image, sigma, budget=None, threads: int = 0, *, coarse_blur=None, cleanup=None,
                        self_ensemble: int = 1, progress=None, report: bool = False):
        """Refined denoising of the whole image on its own grid (``lofi_denoise_refined``), for
        noise-level-aware denoisers: the one-pass result with its low frequencies taken from the
        denoiser's estimate at half resolution (the 2 x 2 means on two grids, at ``sigma / 2``), then a
        clean-up pass at ``cleanup * sigma``. About 2.5 times the time of :meth:`reconstruct`;
        better at high noise levels (README, "Against classical methods").

        * ``coarse_blur``: the Gaussian (pixels) joining the scales, 0 without the coarse scale;
          ``cleanup``: the clean-up level as a fraction of ``sigma``, 0 without the pass. None
          takes the library's defaults (``lofi_default_refinement()``: 2 and 0.1).
        * ``budget``, ``threads``, ``self_ensemble``, ``progress``, ``report``: as
          :meth:`reconstruct` (the progress and the report count every pass).

        An RGB ``image`` (H, W, 3) and a gray denoiser: denoised channel by channel in CBM3D's
        opponent colour space, each channel told its share of ``sigma`` and refined as above
        (``coarse_blur=0, cleanup=0``: one pass per channel); the result is (H, W, 3).

        Returns (H, W, C) float32, or (H, W) for a 2-D input.
        """
        info = self.info
        colour = (info.channels_in == 1 and info.channels_out == 1
                  and np.ndim(image) == 3 and np.shape(image)[2] == 3)
        channels = 3 if colour else info.channels_in
        view = image_view(image, channels)
        h, w, _ = view.shape
        squeeze = np.ndim(image) == 2 and info.channels_out == 1
        refinement = _ffi.Refinement()
        refinement.struct_size = ctypes.sizeof(_ffi.Refinement)
        check(_ffi.lib.lofi_init_refinement(ctypes.byref(refinement)), "lofi_init_refinement")
        if coarse_blur is not None:
            refinement.coarse_blur = as_float(coarse_blur, "coarse_blur")
        if cleanup is not None:
            refinement.cleanup = as_float(cleanup, "cleanup")
        result = np.empty((h, w, 3 if colour else info.channels_out), dtype=np.float32)
        slot = ErrorSlot()
        params, keep = run_params(budget=budget, threads=threads, sigma=sigma, self_ensemble=self_ensemble,
                                  progress=progress, slot=slot)
        rep = _ffi.RunReport()
        desc = image_descriptor(view)
        with self._using() as ptr:
            run_call(
                lambda: _ffi.lib.lofi_denoise_refined_sized(
                    ptr, ctypes.byref(desc), ctypes.byref(refinement), float_ptr(result), 0,
                    ctypes.byref(params), ctypes.byref(rep), ctypes.sizeof(rep)),
                slot,
                "lofi_denoise_refined",
            )
        del keep, view
        if squeeze:
            result = result[:, :, 0]
        return (result, _report(rep)) if report else result


def _report(r: _ffi.RunReport) -> RunReport:
    return RunReport(r.pixels, r.batch_pixels, r.batches, r.estimated_peak_bytes, r.measured_peak_bytes,
                     r.measured_peak_reserved_bytes, r.reserved_bytes, r.workers)


