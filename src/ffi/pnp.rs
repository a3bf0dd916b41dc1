//! Plug-and-play (LoFi-ADMM) through the C ABI: an operator description, a solver state handle,
//! one iteration per `lofi_pnp_step()`.

use std::os::raw::c_void;

use super::error::{guard, lofi_status, non_null};
use super::model::lofi_model;
use super::types::{lofi_progress_fn, lofi_run_params};
use crate::error::{Error, Result};
use crate::pnp::{
    self, Blur, Callbacks, Ct, FourierSampling, Identity, ImageShape, Inpaint, Lensing, Operator, Pnp,
};

/// Operator kinds for `lofi_operator.kind`.
pub type lofi_operator_kind = i32;
/// A = I (denoising). Measurements: the noisy image, height x width x channels floats.
pub const LOFI_OPERATOR_DENOISE: lofi_operator_kind = 0;
/// A = diag(mask) (inpainting). Measurements: the image (height x width x channels floats;
/// values at unobserved pixels are ignored, NaN allowed there).
pub const LOFI_OPERATOR_INPAINT: lofi_operator_kind = 1;
/// A = M F, a masked centred unitary 2-D Fourier transform (radio interferometry, simplified).
/// Measurements: for each channel, the measured frequencies in row-major order of the mask,
/// as (real, imaginary) pairs.
pub const LOFI_OPERATOR_FOURIER_MASK: lofi_operator_kind = 2;
/// A = periodic convolution by `kernel` (deblurring). Measurements: the blurred image.
pub const LOFI_OPERATOR_BLUR: lofi_operator_kind = 3;
/// A = weak-lensing shear (one channel). Measurements: the shear, height x width x 2 floats
/// (real, imaginary interleaved).
pub const LOFI_OPERATOR_LENSING: lofi_operator_kind = 4;
/// A = parallel-beam Radon transform at `angles_deg` (sparse-view or limited-angle CT; solved by
/// conjugate gradients). Measurements: per channel, the sinogram, angles x detectors floats,
/// detectors = ceil(sqrt(2) * max(width, height)) (see `lofi_operator_measurement_len()`).
pub const LOFI_OPERATOR_RADON: lofi_operator_kind = 5;
/// A user operator given by `forward` and `adjoint` callbacks on host buffers.
pub const LOFI_OPERATOR_CALLBACKS: lofi_operator_kind = 6;

/// A user operator's function: reads `input`, writes `output`, returns `true` on success.
/// `forward` maps an image (height x width x channels floats) to `measurement_len` floats;
/// `adjoint` maps `measurement_len` floats back to an image. Called on the thread that calls
/// `lofi_pnp_step()` / `lofi_pnp_solve()`, possibly many times per iteration (conjugate gradients).
pub type lofi_apply_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, input: *const f32, output: *mut f32) -> bool>;

/// Describes the forward operator A of `y = A x`. Start from `lofi_default_operator()`, set
/// `kind`, the working resolution and the fields that kind uses. The pointers are read during
/// `lofi_pnp_create()` (and, for callbacks, during every step): the arrays are copied, the
/// callbacks and `user_data` must stay valid for the life of the PnP state.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_operator {
    /// One of `LOFI_OPERATOR_*`.
    pub kind: lofi_operator_kind,
    /// Working resolution: the size of the reconstruction (any size; not the model's training size).
    pub width: usize,
    pub height: usize,
    /// Image channels: the model's channels.
    pub channels: usize,
    /// INPAINT: height x width (or height x width x channels) values, nonzero = observed.
    /// FOURIER_MASK: height x width values in the centred layout (DC at (height/2, width/2)),
    /// nonzero = measured.
    pub mask: *const f32,
    /// Number of values at `mask`.
    pub mask_len: usize,
    /// INPAINT without a mask: observe each pixel with this probability (random mask from `seed`).
    pub observed_fraction: f64,
    pub seed: u64,
    /// BLUR: the kernel, kernel_height x kernel_width floats, row-major, centred at
    /// (kernel_height/2, kernel_width/2).
    pub kernel: *const f32,
    pub kernel_width: usize,
    pub kernel_height: usize,
    /// RADON: projection angles in degrees.
    pub angles_deg: *const f64,
    pub angle_count: usize,
    /// CALLBACKS: A and A^T, their user data, and the number of measurement floats.
    pub forward: lofi_apply_fn,
    pub adjoint: lofi_apply_fn,
    pub user_data: *mut c_void,
    pub measurement_len: usize,
}

/// An all-empty description: kind DENOISE, zero sizes, no arrays, no callbacks.
#[no_mangle]
pub extern "C" fn lofi_default_operator() -> lofi_operator {
    lofi_operator {
        kind: LOFI_OPERATOR_DENOISE,
        width: 0,
        height: 0,
        channels: 0,
        mask: std::ptr::null(),
        mask_len: 0,
        observed_fraction: 0.0,
        seed: 0,
        kernel: std::ptr::null(),
        kernel_width: 0,
        kernel_height: 0,
        angles_deg: std::ptr::null(),
        angle_count: 0,
        forward: None,
        adjoint: None,
        user_data: std::ptr::null_mut(),
        measurement_len: 0,
    }
}

/// Settings of a plug-and-play solve. Start from `lofi_default_pnp_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_pnp_params {
    /// ADMM penalty alpha > 0 (default 0.05, the paper's inpainting value).
    pub alpha: f64,
    /// Conjugate-gradient iterations per data step when A has no closed form (default 100).
    pub cg_max_iterations: u32,
    /// Relative residual at which conjugate gradients stop (default 1e-7).
    pub cg_tolerance: f64,
    /// Denoiser working memory and threads, as for reconstructions.
    pub run: lofi_run_params,
}

/// alpha 0.05, CG 100 iterations to 1e-7, `lofi_default_run_params()`.
#[no_mangle]
pub extern "C" fn lofi_default_pnp_params() -> lofi_pnp_params {
    let d = pnp::PnpParams::default();
    lofi_pnp_params {
        alpha: d.alpha,
        cg_max_iterations: d.cg_max_iterations as u32,
        cg_tolerance: d.cg_tolerance,
        run: super::types::lofi_default_run_params(),
    }
}

/// Figures of one ADMM iteration.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct lofi_pnp_residuals {
    /// Iterations done so far (1 after the first step).
    pub iteration: u32,
    /// ||x - v|| / ||v||: agreement between the data step and the prior.
    pub primal: f64,
    /// ||v - v_previous|| / ||v||: how much the estimate still moves.
    pub dual: f64,
    /// ||A v - y|| / ||y||.
    pub data_misfit: f64,
    /// PSNR of the estimate against the ground truth (dB), NaN without one.
    pub psnr: f64,
    /// Conjugate-gradient iterations of the data step (0 for closed forms).
    pub cg_iterations: u32,
}

impl From<pnp::Residuals> for lofi_pnp_residuals {
    fn from(r: pnp::Residuals) -> Self {
        lofi_pnp_residuals {
            iteration: r.iteration as u32,
            primal: r.primal,
            dual: r.dual,
            data_misfit: r.data_misfit,
            psnr: r.psnr.unwrap_or(f64::NAN),
            cg_iterations: r.cg_iterations as u32,
        }
    }
}

/// The state of a LoFi-ADMM solve: x, u, v and the operator. Not thread-safe: use one state
/// from one thread at a time (different states may run concurrently, sharing a model).
pub struct lofi_pnp {
    /// Borrows the model: `lofi_pnp_create()` documents that the model must outlive the state.
    inner: Pnp<'static>,
    progress: lofi_progress_fn,
    progress_user_data: *mut c_void,
}

/// Raw pointers of the C caller, moved into closures the operator calls on the stepping thread.
struct UserCallbacks {
    apply: unsafe extern "C" fn(*mut c_void, *const f32, *mut f32) -> bool,
    user_data: *mut c_void,
}
// SAFETY: the callbacks run only inside lofi_pnp_step/solve, on the caller's thread; the API
// documents that a PnP state is used from one thread at a time.
unsafe impl Send for UserCallbacks {}

impl UserCallbacks {
    fn call(&self, input: &[f32], output: &mut [f32]) -> bool {
        // SAFETY: buffers sized as documented; the caller's function and data.
        unsafe { (self.apply)(self.user_data, input.as_ptr(), output.as_mut_ptr()) }
    }
}

unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!("{what} is NULL")));
    }
    if len == 0 || len > isize::MAX as usize / 8 {
        return Err(Error::invalid_argument(format!("{what} has {len} values")));
    }
    Ok(std::slice::from_raw_parts(ptr, len))
}

/// Builds the operator a description names.
unsafe fn build_operator(d: &lofi_operator, device: tch::Device) -> Result<(Box<dyn Operator>, ImageShape)> {
    if d.width < 2
        || d.height < 2
        || d.channels == 0
        || d.width > 1 << 15
        || d.height > 1 << 15
        || d.channels > 64
    {
        return Err(Error::invalid_argument(format!(
            "operator image size {} x {} x {} is out of range",
            d.width, d.height, d.channels
        )));
    }
    let shape = ImageShape { channels: d.channels as i64, height: d.height as i64, width: d.width as i64 };
    let op: Box<dyn Operator> = match d.kind {
        LOFI_OPERATOR_DENOISE => Box::new(Identity { shape }),
        LOFI_OPERATOR_INPAINT => {
            if d.mask.is_null() {
                Box::new(Inpaint::random(shape, d.observed_fraction, d.seed, device)?)
            } else {
                Box::new(Inpaint::new(shape, slice(d.mask, d.mask_len, "mask")?, device)?)
            }
        }
        LOFI_OPERATOR_FOURIER_MASK => {
            Box::new(FourierSampling::new(shape, slice(d.mask, d.mask_len, "mask")?, device)?)
        }
        LOFI_OPERATOR_BLUR => {
            let n = d.kernel_width.checked_mul(d.kernel_height).unwrap_or(0);
            Box::new(Blur::new(shape, slice(d.kernel, n, "kernel")?, d.kernel_height, d.kernel_width)?)
        }
        LOFI_OPERATOR_LENSING => Box::new(Lensing::new(shape)?),
        LOFI_OPERATOR_RADON => {
            Box::new(Ct::new(shape, slice(d.angles_deg, d.angle_count, "angles_deg")?.to_vec())?)
        }
        LOFI_OPERATOR_CALLBACKS => {
            let (Some(forward), Some(adjoint)) = (d.forward, d.adjoint) else {
                return Err(Error::invalid_argument("CALLBACKS operator needs both forward and adjoint"));
            };
            if d.measurement_len == 0 || d.measurement_len > isize::MAX as usize / 8 {
                return Err(Error::invalid_argument(format!(
                    "measurement_len = {} is out of range",
                    d.measurement_len
                )));
            }
            let wrap = |f| {
                let cb = UserCallbacks { apply: f, user_data: d.user_data };
                Box::new(move |input: &[f32], output: &mut [f32]| -> std::result::Result<(), String> {
                    if cb.call(input, output) {
                        Ok(())
                    } else {
                        Err("the callback returned false".into())
                    }
                })
                    as Box<dyn Fn(&[f32], &mut [f32]) -> std::result::Result<(), String> + Send>
            };
            Box::new(Callbacks {
                shape,
                measurement_len: d.measurement_len,
                forward: wrap(forward),
                adjoint: wrap(adjoint),
            })
        }
        other => return Err(Error::invalid_argument(format!("unknown operator kind {other}"))),
    };
    Ok((op, shape))
}

/// Number of measurement floats the operator `op` expects, into `*out_len`.
#[no_mangle]
pub unsafe extern "C" fn lofi_operator_measurement_len(
    op: *const lofi_operator,
    out_len: *mut usize,
) -> lofi_status {
    guard("lofi_operator_measurement_len", || {
        let (op, _) = build_operator(non_null(op, "op")?, tch::Device::Cpu)?;
        *out_len.as_mut().ok_or_else(|| Error::invalid_argument("out_len is NULL"))? = op.measurement_len();
        Ok(())
    })
}

/// Computes `y = A x` on the CPU (to simulate measurements): `x` is an image (height x width x
/// channels floats), `y` has room for `y_len` floats and receives
/// `lofi_operator_measurement_len()` of them (a smaller `y_len` is an error).
#[no_mangle]
pub unsafe extern "C" fn lofi_operator_forward(
    op: *const lofi_operator,
    x: *const f32,
    y: *mut f32,
    y_len: usize,
) -> lofi_status {
    guard("lofi_operator_forward", || {
        let (op, shape) = build_operator(non_null(op, "op")?, tch::Device::Cpu)?;
        let x = slice(x, shape.numel(), "x")?;
        if y.is_null() {
            return Err(Error::invalid_argument("y is NULL"));
        }
        if y_len < op.measurement_len() {
            return Err(Error::invalid_argument(format!(
                "y holds {y_len} floats, the operator writes {}",
                op.measurement_len()
            )));
        }
        let image = tch::Tensor::from_slice(x)
            .view([shape.height, shape.width, shape.channels])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .contiguous();
        let out = op.measurements_to_host(&tch::no_grad(|| op.forward(&image))?);
        std::slice::from_raw_parts_mut(y, out.len()).copy_from_slice(&out);
        Ok(())
    })
}

/// Starts a LoFi-ADMM solve of `measurements = A x` with the denoiser `model`.
///
/// * `model`: a denoiser (as many output as input channels = `op->channels`). It must stay
///   loaded until `lofi_pnp_free()`.
/// * `op`: the operator description (arrays are copied).
/// * `measurements`: `measurement_len` floats in the operator's layout
///   (`lofi_operator_measurement_len()`); copied.
/// * `params`: NULL for `lofi_default_pnp_params()`.
/// * `out_pnp`: receives the state (NULL on failure); release with `lofi_pnp_free()`.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_create(
    model: *const lofi_model,
    op: *const lofi_operator,
    measurements: *const f32,
    measurement_len: usize,
    params: *const lofi_pnp_params,
    out_pnp: *mut *mut lofi_pnp,
) -> lofi_status {
    guard("lofi_pnp_create", || {
        if out_pnp.is_null() {
            return Err(Error::invalid_argument("out_pnp is NULL"));
        }
        *out_pnp = std::ptr::null_mut();
        // SAFETY (lifetime): the documented contract keeps the model alive until lofi_pnp_free.
        if model.is_null() {
            return Err(Error::invalid_argument("model is NULL"));
        }
        let model: &'static crate::Model = &(*model).inner;
        let p = params.as_ref().copied().unwrap_or_else(|| lofi_default_pnp_params());
        if p.run.threads < 0 {
            return Err(Error::invalid_argument("threads is negative"));
        }
        let (operator, shape) = build_operator(non_null(op, "op")?, model.device())?;
        let y = slice(measurements, measurement_len, "measurements")?;
        let y = operator.measurements_from_host(y, model.device())?;
        let settings = pnp::PnpParams {
            alpha: p.alpha,
            cg_max_iterations: p.cg_max_iterations as usize,
            cg_tolerance: p.cg_tolerance,
            memory_budget: usize::try_from(p.run.memory_budget_bytes).unwrap_or(usize::MAX),
            threads: p.run.threads as usize,
        };
        let inner = Pnp::new(model, operator, shape, y, settings)?;
        *out_pnp = Box::into_raw(Box::new(lofi_pnp {
            inner,
            progress: p.run.progress,
            progress_user_data: p.run.progress_user_data,
        }));
        Ok(())
    })
}

/// Gives a ground truth (height x width x channels floats, copied) so that residuals report PSNR.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_set_ground_truth(pnp: *mut lofi_pnp, truth: *const f32) -> lofi_status {
    guard("lofi_pnp_set_ground_truth", || {
        let state = pnp.as_mut().ok_or_else(|| Error::invalid_argument("pnp is NULL"))?;
        let s = state.inner.shape();
        let t = slice(truth, s.numel(), "truth")?;
        let image =
            tch::Tensor::from_slice(t).view([s.height, s.width, s.channels]).permute([2, 0, 1]).unsqueeze(0);
        state.inner.set_ground_truth(&image)
    })
}

/// Steps `iterations` times, writing each iteration's figures to `*out` before asking the
/// progress callback whether to go on (so a cancelled solve still reports where it stopped).
fn run_steps(state: &mut lofi_pnp, iterations: u32, out: *mut lofi_pnp_residuals) -> Result<()> {
    for done in 1..=iterations {
        let r = state.inner.step(&mut None)?;
        // SAFETY: NULL or valid, per the API contract.
        if let Some(out) = unsafe { out.as_mut() } {
            *out = r.into();
        }
        if let Some(f) = state.progress {
            // SAFETY: the caller's callback and user data, as documented.
            if !unsafe { f(state.progress_user_data, done as u64, iterations as u64) } {
                return Err(Error::Cancelled);
            }
        }
    }
    Ok(())
}

/// Runs one ADMM iteration (data step, LoFi prior on every pixel, dual update) and writes its
/// figures to `*out` (may be NULL). A failing step (a user callback returning false reports
/// `LOFI_STATUS_INVALID_ARGUMENT`, a NaN it wrote `LOFI_STATUS_INVALID_INPUT`) leaves the state
/// as it was before the step.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_step(pnp: *mut lofi_pnp, out: *mut lofi_pnp_residuals) -> lofi_status {
    guard("lofi_pnp_step", || {
        let state = pnp.as_mut().ok_or_else(|| Error::invalid_argument("pnp is NULL"))?;
        let r = state.inner.step(&mut None)?;
        if let Some(out) = out.as_mut() {
            *out = r.into();
        }
        Ok(())
    })
}

/// Runs `iterations` ADMM iterations, calling the params' progress callback after each (done,
/// total iterations; returning false cancels with `LOFI_STATUS_CANCELLED`, keeping the
/// iterations done). `*last` (may be NULL) receives the figures of the last iteration run, also
/// when cancelled.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_solve(
    pnp: *mut lofi_pnp,
    iterations: u32,
    last: *mut lofi_pnp_residuals,
) -> lofi_status {
    guard("lofi_pnp_solve", || {
        let state = pnp.as_mut().ok_or_else(|| Error::invalid_argument("pnp is NULL"))?;
        if iterations == 0 {
            return Err(Error::invalid_argument("iterations is 0"));
        }
        run_steps(state, iterations, last)
    })
}

/// Copies the current estimate v (height x width x channels floats, rows `row_stride_bytes`
/// apart, 0 = packed) into `out`. Before the first step it is zero.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_estimate(
    pnp: *const lofi_pnp,
    out: *mut f32,
    row_stride_bytes: usize,
) -> lofi_status {
    guard("lofi_pnp_estimate", || {
        let state = non_null(pnp, "pnp")?;
        if out.is_null() {
            return Err(Error::invalid_argument("out is NULL"));
        }
        let s = state.inner.shape();
        let row = (s.width * s.channels) as usize;
        let stride = match row_stride_bytes {
            0 => row,
            b if b % 4 == 0 && b / 4 >= row => b / 4,
            b => {
                return Err(Error::invalid_argument(format!(
                    "row stride {b} bytes is invalid for rows of {row} floats"
                )))
            }
        };
        let hwc =
            state.inner.estimate().squeeze_dim(0).permute([1, 2, 0]).to_device(tch::Device::Cpu).contiguous();
        let values = Vec::<f32>::try_from(hwc.view([-1])).map_err(|e| Error::Internal(e.to_string()))?;
        let dst = std::slice::from_raw_parts_mut(out, (s.height as usize - 1) * stride + row);
        for r in 0..s.height as usize {
            dst[r * stride..r * stride + row].copy_from_slice(&values[r * row..(r + 1) * row]);
        }
        Ok(())
    })
}

/// Releases a PnP state. NULL is allowed.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_free(pnp: *mut lofi_pnp) {
    if !pnp.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(pnp))));
    }
}
