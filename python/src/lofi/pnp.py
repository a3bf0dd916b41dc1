"""Plug-and-play reconstruction (LoFi-ADMM) through ``lofi_pnp_*``: the built-in operators and
operators written in Python."""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

from . import _ffi
from ._arrays import as_float, as_int, as_size, float_ptr, image_view, packed
from ._callbacks import ErrorSlot, interrupted, run_call
from .errors import InvalidArgumentError, InvalidInputError, ModelClosedError, check
from .model import Model, _Handle, _HandleOwner, _Using, run_params


def _shape2(shape, what="shape") -> tuple[int, int]:
    try:
        h, w = shape
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{what} must be (height, width), got {shape!r}") from None
    return as_size(h, f"{what} height"), as_size(w, f"{what} width")


class Operator:
    """The forward operator A of ``y = A x`` at a working resolution ``shape = (height, width)``.

    Use the subclasses: :class:`Denoise`, :class:`Inpaint`, :class:`FourierMask`, :class:`Blur`,
    :class:`Lensing`, :class:`Radon` (built into liblofi) and :class:`UserOperator` (Python
    callables). ``channels`` defaults to the model's when the operator is used in a solve.
    """

    kind: int = -1

    def __init__(self, shape, channels: int | None = None):
        self.shape = _shape2(shape)
        self.channels = None if channels is None else as_int(channels, "channels", 1, 64)

    def _fill(self, op: _ffi.Operator, slot: ErrorSlot) -> list:
        """Sets the kind's fields; returns the objects that must stay alive while ``op`` is used.
        Exceptions of Python callbacks go to ``slot``."""
        return []

    def _describe(self, channels: int | None = None, slot: ErrorSlot | None = None):
        c = channels if channels is not None else self.channels
        if c is None:
            raise InvalidArgumentError(f"{type(self).__name__}: give channels (or use it with a model)")
        op = _ffi.Operator()
        op.struct_size = ctypes.sizeof(_ffi.Operator)
        check(_ffi.lib.lofi_init_operator(ctypes.byref(op)), "lofi_init_operator")
        op.kind = self.kind
        op.height, op.width = self.shape
        op.channels = c
        keep = self._fill(op, slot if slot is not None else ErrorSlot())
        return op, keep

    def measurement_len(self, channels: int | None = None) -> int:
        """Number of measurement floats (``lofi_operator_measurement_len``)."""
        op, keep = self._describe(channels)
        n = ctypes.c_size_t()
        check(_ffi.lib.lofi_operator_measurement_len(ctypes.byref(op), ctypes.byref(n)),
              "lofi_operator_measurement_len")
        del keep
        return n.value

    def forward(self, image, channels: int | None = None) -> np.ndarray:
        """``y = A x`` computed by liblofi on the CPU (``lofi_operator_forward``), to simulate
        measurements. Returns the flat float32 measurement vector."""
        if channels is None and self.channels is None:
            channels = 1 if np.ndim(image) == 2 else np.shape(image)[-1]
        c = channels if channels is not None else self.channels
        x = np.ascontiguousarray(image_view(image, c, what="x"))
        if x.shape[:2] != self.shape:
            raise InvalidInputError(f"x is {x.shape[0]} x {x.shape[1]}, the operator works at {self.shape}")
        n = self.measurement_len(c)
        y = np.empty(n, dtype=np.float32)
        slot = ErrorSlot()
        op, keep = self._describe(c, slot)
        run_call(lambda: _ffi.lib.lofi_operator_forward(ctypes.byref(op), float_ptr(x), float_ptr(y), n),
                 slot, "lofi_operator_forward")
        del keep
        return y


class Denoise(Operator):
    """A = I. Measurements: the noisy image."""

    kind = _ffi.OPERATOR_DENOISE


class Inpaint(Operator):
    """A = diag(mask). ``mask``: (H, W) or (H, W, C), nonzero = observed; or a random mask
    observing ``observed_fraction`` of the pixels (``seed``). Measurements: the image (values at
    unobserved pixels ignored)."""

    kind = _ffi.OPERATOR_INPAINT

    def __init__(self, shape=None, mask=None, *, observed_fraction=None, seed: int = 0, channels=None):
        if mask is not None:
            self.mask = np.ascontiguousarray(mask, dtype=np.float32)
            if self.mask.ndim not in (2, 3):
                raise InvalidInputError(f"mask must be (H, W) or (H, W, C), got shape {self.mask.shape}")
            shape = shape if shape is not None else self.mask.shape[:2]
        else:
            self.mask = None
            if observed_fraction is None:
                raise InvalidArgumentError("Inpaint needs a mask or an observed_fraction")
        if shape is None:
            raise InvalidArgumentError("Inpaint needs a shape")
        super().__init__(shape, channels)
        self.observed_fraction = 0.0 if observed_fraction is None else as_float(observed_fraction, "observed_fraction")
        self.seed = as_int(seed, "seed", 0, 2**64 - 1)

    def _fill(self, op, slot):
        op.observed_fraction = self.observed_fraction
        op.seed = self.seed
        if self.mask is not None:
            op.mask = float_ptr(self.mask)
            op.mask_len = self.mask.size
        return [self.mask]


class FourierMask(Operator):
    """A = M F, a masked centred unitary 2-D FFT. ``mask``: (H, W), DC at (H/2, W/2), nonzero =
    measured. Measurements: per channel, the measured frequencies in row-major order of the
    mask as (real, imaginary) pairs."""

    kind = _ffi.OPERATOR_FOURIER_MASK

    def __init__(self, mask, channels=None):
        self.mask = np.ascontiguousarray(mask, dtype=np.float32)
        if self.mask.ndim != 2:
            raise InvalidInputError(f"mask must be (H, W), got shape {self.mask.shape}")
        super().__init__(self.mask.shape, channels)

    def _fill(self, op, slot):
        op.mask = float_ptr(self.mask)
        op.mask_len = self.mask.size
        return [self.mask]


class Blur(Operator):
    """A = periodic convolution by ``kernel`` (kh, kw), centred at (kh/2, kw/2)."""

    kind = _ffi.OPERATOR_BLUR

    def __init__(self, shape, kernel, channels=None):
        super().__init__(shape, channels)
        self.kernel = np.ascontiguousarray(kernel, dtype=np.float32)
        if self.kernel.ndim != 2:
            raise InvalidInputError(f"kernel must be 2-D, got shape {self.kernel.shape}")

    def _fill(self, op, slot):
        op.kernel = float_ptr(self.kernel)
        op.kernel_height, op.kernel_width = self.kernel.shape
        return [self.kernel]


class Lensing(Operator):
    """A = weak-lensing shear (one channel). Measurements: (H, W, 2) shear."""

    kind = _ffi.OPERATOR_LENSING


class Radon(Operator):
    """A = parallel-beam Radon transform at ``angles_deg``. Measurements: per channel the
    sinogram, angles x detectors, detectors = ceil(sqrt(2) max(H, W))."""

    kind = _ffi.OPERATOR_RADON

    def __init__(self, shape, angles_deg, channels=None):
        super().__init__(shape, channels)
        self.angles_deg = np.ascontiguousarray(angles_deg, dtype=np.float64).reshape(-1)

    def _fill(self, op, slot):
        op.angles_deg = self.angles_deg.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        op.angle_count = self.angles_deg.size
        return [self.angles_deg]


class UserOperator(Operator):
    """An operator written in Python: ``forward(x) -> y`` and ``adjoint(y) -> x``.

    ``x`` is an image, (H, W) for one channel or (H, W, C); ``y`` has ``measurement_len``
    values (any shape; it is flattened). Each call receives a new float32 array it may keep or
    modify, and returns an array-like (converted to float32). The pair must be adjoint
    (``<A x, y> = <x, A^T y>``): the data step solves with conjugate gradients, calling both,
    possibly many times per iteration, on the thread running the solve.

    An exception raised inside ``forward`` or ``adjoint`` stops the step (the library's state
    stays as it was before it) and propagates out of :meth:`PnP.step` / :meth:`PnP.solve` /
    :func:`lofi.pnp` as itself, with the library's message as a note. Returning values of the
    wrong size raises :class:`InvalidInputError` the same way; non-finite values are refused
    by the library (:class:`InvalidInputError`).
    """

    kind = _ffi.OPERATOR_CALLBACKS

    def __init__(self, shape, measurement_len: int, forward, adjoint, channels=None):
        super().__init__(shape, channels)
        self._measurement_len = as_size(measurement_len, "measurement_len")
        if not callable(forward) or not callable(adjoint):
            raise InvalidArgumentError("forward and adjoint must be callable")
        self.forward_fn, self.adjoint_fn = forward, adjoint
        self.forward_calls = 0
        self.adjoint_calls = 0

    def _trampolines(self, channels: int, slot: ErrorSlot):
        h, w = self.shape
        image_shape = (h, w) if channels == 1 else (h, w, channels)
        n_image, n_meas = h * w * channels, self._measurement_len

        def apply(fn, in_len, in_shape, out_len, what):
            def trampoline(_user, src, dst):
                try:
                    if interrupted():
                        return False
                    x = np.ctypeslib.as_array(src, shape=(in_len,)).copy().reshape(in_shape)
                    y = fn(x)
                    if y is None:
                        raise InvalidInputError(f"the user operator's {what} returned None")
                    y = np.asarray(y)
                    if y.dtype.kind not in "fiu":
                        raise InvalidInputError(f"the user operator's {what} returned dtype {y.dtype}")
                    if y.size != out_len:
                        raise InvalidInputError(
                            f"the user operator's {what} returned {y.size} values, expected {out_len}")
                    np.ctypeslib.as_array(dst, shape=(out_len,))[:] = y.reshape(-1)
                    return True
                except BaseException as e:  # noqa: BLE001 - carried across the C frames
                    slot.catch(e)
                    return False

            return _ffi.APPLY_FN(trampoline)

        def forward(x):
            self.forward_calls += 1
            return self.forward_fn(x)

        def adjoint(y):
            self.adjoint_calls += 1
            return self.adjoint_fn(y)

        return (apply(forward, n_image, image_shape, n_meas, "forward"),
                apply(adjoint, n_meas, (n_meas,), n_image, "adjoint"))

    def _fill(self, op, slot):
        fwd, adj = self._trampolines(op.channels, slot)
        op.forward, op.adjoint = fwd, adj
        op.measurement_len = self._measurement_len
        return [fwd, adj]


@dataclass(frozen=True)
class Residuals:
    """Figures of one iteration (``lofi_pnp_residuals``)."""

    iteration: int
    primal: float
    dual: float
    data_misfit: float
    psnr: float
    cg_iterations: int
    sigma: float
    alpha: float
    converged: bool


def _residuals(r: _ffi.PnpResiduals) -> Residuals:
    return Residuals(r.iteration, r.primal, r.dual, r.data_misfit, r.psnr, r.cg_iterations, r.sigma, r.alpha,
                     bool(r.converged))


_SPLITTINGS = {"admm": _ffi.SPLITTING_ADMM, "hqs": _ffi.SPLITTING_HQS}
_TRANSFORMS = {"none": _ffi.TRANSFORMS_NONE, "dihedral": _ffi.TRANSFORMS_DIHEDRAL}


class PnP(_HandleOwner):
    """A LoFi-ADMM solve (``lofi_pnp_create``): ``step()``, ``solve(n)``, ``estimate()``.

    ``PnP(model, operator, measurements, alpha=0.05, sigma=None, anneal=None, splitting="admm",
    tolerance=0, transforms="dihedral", average_last=8, cg_iterations=100, cg_tolerance=1e-7,
    budget=None, threads=0, progress=None)``. ``anneal = (sigma_start, sigma_end, iterations)``;
    ``transforms``: ``"dihedral"`` (a different quarter turn or mirror per iteration) or
    ``"none"``; the estimate is the mean of the denoiser's last ``average_last`` outputs at the
    final noise level. One thread at a time; a context manager.
    The state keeps its model alive inside the library: the model may be closed first.
    """

    def __init__(self, model: Model, operator: Operator, measurements, *, alpha: float = 0.05, sigma=None,
                 anneal=None, splitting: str = "admm", tolerance: float = 0.0, transforms: str = "dihedral",
                 average_last: int = 8, cg_iterations: int = 100, cg_tolerance: float = 1e-7, budget=None, threads: int = 0, progress=None):
        self._handle = None
        if not isinstance(model, Model):
            raise InvalidArgumentError(f"model must be a lofi.Model, got {type(model).__name__}")
        if not isinstance(operator, Operator):
            raise InvalidArgumentError(f"operator must be a lofi Operator, got {type(operator).__name__}")
        channels = operator.channels or model.info.channels_in
        self.operator = operator
        self.channels = channels
        self._slot = ErrorSlot()
        op, self._keep_op = operator._describe(channels, self._slot)
        n = operator.measurement_len(channels)
        y = packed(measurements, n, "measurements")
        params = _sized_pnp_params()
        check(_ffi.lib.lofi_init_pnp_params(ctypes.byref(params)), "lofi_init_pnp_params")
        params.alpha = as_float(alpha, "alpha")
        params.cg_max_iterations = as_int(cg_iterations, "cg_iterations", 0, 2**32 - 1)
        params.cg_tolerance = as_float(cg_tolerance, "cg_tolerance")
        _, self._keep_progress = run_params(budget=budget, threads=threads, sigma=sigma, progress=progress,
                                            slot=self._slot, into=params.run)
        if anneal is not None:
            try:
                start, end, iters = anneal
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"anneal must be (sigma_start, sigma_end, iterations), got {anneal!r}") from None
            if sigma is not None:
                raise InvalidArgumentError("give sigma (fixed) or anneal (a schedule), not both")
            params.anneal_sigma_start = as_float(start, "anneal sigma_start")
            params.anneal_sigma_end = as_float(end, "anneal sigma_end")
            params.anneal_iterations = as_int(iters, "anneal iterations", 1, 2**32 - 1)
        params.tolerance = as_float(tolerance, "tolerance")
        if splitting not in _SPLITTINGS:
            raise InvalidArgumentError(f"splitting must be 'admm' or 'hqs', got {splitting!r}")
        params.splitting = _SPLITTINGS[splitting]
        if transforms not in _TRANSFORMS:
            raise InvalidArgumentError(f"transforms must be 'dihedral' or 'none', got {transforms!r}")
        params.transforms = _TRANSFORMS[transforms]
        params.average_last = as_int(average_last, "average_last", 1, 2**32 - 1)
        out = _ffi.PNP_P()
        with model._using() as mptr:
            run_call(lambda: _ffi.lib.lofi_pnp_create(mptr, ctypes.byref(op), float_ptr(y), n,
                                                      ctypes.byref(params), ctypes.byref(out)),
                     self._slot, "lofi_pnp_create")
        self._handle = _Handle(out, _ffi.lib.lofi_pnp_free, "PnP state")
        self._owner = None
        self._lock = threading.Lock()
        self.history: list[Residuals] = []

    def _using(self) -> _Using:
        if self._handle is None:
            raise ModelClosedError("the PnP state is closed", _ffi.STATUS_INVALID_ARGUMENT)
        return _Using(self._handle)

    def _image(self, image, what) -> np.ndarray:
        x = np.ascontiguousarray(image_view(image, self.channels, what=what))
        if x.shape[:2] != self.operator.shape:
            raise InvalidInputError(f"{what} is {x.shape[0]} x {x.shape[1]}, the problem {self.operator.shape}")
        return x

    def set_ground_truth(self, truth) -> None:
        """A ground truth, so that residuals report PSNR."""
        x = self._image(truth, "truth")
        with self._using() as ptr:
            check(_ffi.lib.lofi_pnp_set_ground_truth(ptr, float_ptr(x)), "lofi_pnp_set_ground_truth")

    def set_estimate(self, estimate) -> None:
        """Warm start: the estimate the next iteration starts from."""
        x = self._image(estimate, "estimate")
        with self._using() as ptr:
            check(_ffi.lib.lofi_pnp_set_estimate(ptr, float_ptr(x)), "lofi_pnp_set_estimate")

    def _exclusive(self):
        if not self._lock.acquire(blocking=False):
            raise InvalidArgumentError("this PnP state is in use on another thread (one thread at a time)")
        return self._lock

    def step(self) -> Residuals:
        """One iteration. A failure (a raising or failing user operator) leaves the state as it
        was before the step."""
        r = _ffi.PnpResiduals()
        lock = self._exclusive()
        try:
            with self._using() as ptr:
                run_call(lambda: _ffi.lib.lofi_pnp_step_sized(ptr, ctypes.byref(r), ctypes.sizeof(r)),
                         self._slot, "lofi_pnp_step")
        finally:
            lock.release()
        res = _residuals(r)
        self.history.append(res)
        return res

    def solve(self, iterations: int) -> Residuals:
        """``iterations`` iterations (stopping early once ``tolerance`` holds); the progress
        callback runs after each. Returns the last iteration's figures."""
        n = as_int(iterations, "iterations", 1, 2**32 - 1)
        r = _ffi.PnpResiduals()
        lock = self._exclusive()
        try:
            with self._using() as ptr:
                run_call(lambda: _ffi.lib.lofi_pnp_solve_sized(ptr, n, ctypes.byref(r), ctypes.sizeof(r)),
                         self._slot, "lofi_pnp_solve")
        finally:
            lock.release()
        res = _residuals(r)
        self.history.append(res)
        return res

    def estimate(self) -> np.ndarray:
        """The current estimate: (H, W) for one channel, (H, W, C) otherwise."""
        h, w = self.operator.shape
        out = np.empty((h, w, self.channels), dtype=np.float32)
        with self._using() as ptr:
            check(_ffi.lib.lofi_pnp_estimate(ptr, float_ptr(out), 0), "lofi_pnp_estimate")
        return out[:, :, 0] if self.channels == 1 else out



# Inpainting with a noise-level-aware prior: the settings `lofi pnp --operator inpaint` defaults
# to, measured on Set12 (README): alpha and sigma from the library's
# lofi_pnp_params_for_inpainting(), run for the header's LOFI_PNP_INPAINTING_ITERATIONS.
INPAINTING_ITERATIONS = 40


def _sized_pnp_params() -> _ffi.PnpParams:
    """A ``lofi_pnp_params`` with this binding's sizes set, for the library to fill."""
    params = _ffi.PnpParams()
    params.struct_size = ctypes.sizeof(_ffi.PnpParams)
    params.run.struct_size = ctypes.sizeof(_ffi.RunParams)
    return params


def inpainting_settings(model: Model) -> dict:
    """The library's inpainting settings for ``model`` (``lofi_pnp_params_for_inpainting``):
    ``{"alpha": ..., "sigma": ...}``, sigma None for a fixed-level model."""
    params = _sized_pnp_params()
    with model._using() as mptr:
        check(_ffi.lib.lofi_pnp_params_for_inpainting(mptr, ctypes.byref(params)),
              "lofi_pnp_params_for_inpainting")
    sigma = params.run.noise_level
    return {"alpha": params.alpha, "sigma": sigma if sigma >= 0 else None}


def pnp(model: Model, measurements, operator, iterations: int | None = None, *, shape=None, ground_truth=None,
        warm_start=None, **params) -> np.ndarray:
    """Solves ``measurements = A x`` with LoFi-ADMM and returns the estimate ((H, W) or
    (H, W, C)).

    Defaults: 90 iterations and :class:`PnP`'s; for :class:`Inpaint` with a noise-level-aware
    model, as ``lofi pnp --operator inpaint``: 40 iterations, alpha 0.01 and a fixed sigma of 0.6 x
    the top of the model's training range (unless ``sigma`` or ``anneal`` is given).

    ``operator``: an :class:`Operator` (``lofi.Inpaint(mask=m)``, ``lofi.Radon(shape, angles)``,
    ...), or a pair of Python callables ``(forward, adjoint)`` with ``shape=(H, W)``: a
    :class:`UserOperator` whose measurement length is that of ``measurements``. ``params`` are
    :class:`PnP`'s (alpha, sigma, anneal, splitting, tolerance, transforms, average_last,
    cg_iterations, cg_tolerance, budget, threads, progress). For the per-iteration figures use :class:`PnP` directly."""
    if isinstance(operator, tuple) and len(operator) == 2 and all(callable(f) for f in operator):
        if shape is None:
            raise InvalidArgumentError("a (forward, adjoint) operator needs shape=(height, width)")
        operator = UserOperator(shape, int(np.size(measurements)), operator[0], operator[1])
    elif shape is not None and isinstance(operator, Operator) and tuple(operator.shape) != tuple(shape):
        raise InvalidArgumentError(f"shape {shape} differs from the operator's {operator.shape}")
    noise_range = model.info.noise_level_range
    if isinstance(operator, Inpaint) and noise_range is not None:
        iterations = INPAINTING_ITERATIONS if iterations is None else iterations
        settings = inpainting_settings(model)
        params.setdefault("alpha", settings["alpha"])
        if params.get("sigma") is None and params.get("anneal") is None:
            params["sigma"] = settings["sigma"]
    iterations = 90 if iterations is None else iterations
    with PnP(model, operator, measurements, **params) as state:
        if ground_truth is not None:
            state.set_ground_truth(ground_truth)
        if warm_start is not None:
            state.set_estimate(warm_start)
        state.solve(iterations)
        return state.estimate()
