//! Plug-and-play (LoFi-ADMM) through the C ABI: an operator description, a solver state handle,
//! one iteration per `lofi_pnp_step()`.

use std::mem::{align_of, offset_of, size_of};
use std::os::raw::c_void;
use std::sync::Arc;

use super::abi::{self, Versioned};
use super::error::{guard, lofi_status, non_null};
use super::model::lofi_model;
use super::types::{lofi_progress_fn, lofi_run_params};
use crate::error::{Error, Result};
use crate::pnp::{
    self, Blur, Callbacks, Ct, FourierSampling, Identity, ImageShape, Inpaint, Lensing, Operator, Pnp,
    Visibilities,
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
/// Radio visibilities at arbitrary (u, v) through a NUFFT (2x oversampling, width-6 kernel):
/// `V(u, v) = sum_{r,c} x[r,c] exp(-2 pi i (u l + v m))` with `l = (c - width/2) delta` along
/// the columns, `m = (r - height/2) delta` along the rows, `delta` = `pixel_arcsec` in radians,
/// (u, v) in wavelengths at `uv`. The data term weighs each visibility by its imaging weight
/// (`weighting` applied to `weights`). Measurements: per channel, `visibility_count` (real,
/// imaginary) pairs in the order of `uv`, in the sky's units (unnormalised: a unit point source
/// at the phase centre gives 1 + 0i).
pub const LOFI_OPERATOR_NUFFT: lofi_operator_kind = 7;

/// `lofi_operator.weighting` of NUFFT: each visibility by its own weight.
pub const LOFI_WEIGHTING_NATURAL: i32 = 0;
/// Each weight divided by the total weight in its cell of the image's (u, v) grid.
pub const LOFI_WEIGHTING_UNIFORM: i32 = 1;

/// A user operator's function: reads `input`, writes `output`, returns `true` on success.
/// `forward` maps an image (height x width x channels floats) to `measurement_len` floats;
/// `adjoint` maps `measurement_len` floats back to an image. Called on the thread that calls
/// `lofi_pnp_step()` / `lofi_pnp_solve()`, possibly many times per iteration (conjugate gradients).
/// It must return normally: no C++ exception, longjmp or thread cancellation may leave it (catch
/// inside and return `false`).
pub type lofi_apply_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, input: *const f32, output: *mut f32) -> bool>;

/// Describes the forward operator A of `y = A x`. Start from `lofi_default_operator()`, set
/// `kind`, the working resolution and the fields that kind uses. The pointers are read during
/// `lofi_pnp_create()` (and, for callbacks, during every step): the arrays are copied, the
/// callbacks and `user_data` must stay valid for the life of the PnP state.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_operator {
    /// `sizeof(lofi_operator)`, set by `lofi_default_operator()`.
    pub struct_size: usize,
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
    /// NUFFT: the (u, v) of each visibility in wavelengths, 2 x `visibility_count` doubles
    /// (u0, v0, u1, v1, ...).
    pub uv: *const f64,
    pub visibility_count: usize,
    /// NUFFT: natural (inverse-variance) weights, `visibility_count` floats >= 0 (0: flagged);
    /// NULL: all 1.
    pub weights: *const f32,
    /// NUFFT: pixel size, arcseconds (> 0).
    pub pixel_arcsec: f64,
    /// NUFFT: `LOFI_WEIGHTING_NATURAL` (default) or `LOFI_WEIGHTING_UNIFORM`.
    pub weighting: i32,
}

/// An all-empty description: kind DENOISE, zero sizes, no arrays, no callbacks.
pub fn default_operator() -> lofi_operator {
    lofi_operator {
        struct_size: size_of::<lofi_operator>(),
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
        uv: std::ptr::null(),
        visibility_count: 0,
        weights: std::ptr::null(),
        pixel_arcsec: 0.0,
        weighting: LOFI_WEIGHTING_NATURAL,
    }
}

// SAFETY: repr(C), leading usize; numbers, nullable pointers and Option function pointers.
unsafe impl Versioned for lofi_operator {
    const NAME: &'static str = "lofi_operator";
    // 144: 0.1 (through measurement_len); then the NUFFT fields.
    const SIZES: &'static [usize] = &[offset_of!(lofi_operator, uv), size_of::<Self>()];
    fn defaults() -> Self {
        default_operator()
    }
}

/// Fills `*op` with the empty description (kind DENOISE, zero sizes, no arrays, no callbacks)
/// for the layout `op->struct_size` declares; set it to `sizeof(lofi_operator)` first.
/// `lofi_default_operator()` does both.
///
/// # Safety
/// `op` must be NULL or valid for writes of the `struct_size` it declares.
#[no_mangle]
pub unsafe extern "C" fn lofi_init_operator(op: *mut lofi_operator) -> lofi_status {
    guard("lofi_init_operator", || abi::init(op))
}

/// Reads a caller's operator description.
unsafe fn read_operator(op: *const lofi_operator) -> Result<lofi_operator> {
    non_null(op, "op")?;
    abi::read_in(op)
}

/// Settings of a plug-and-play solve. Start from `lofi_default_pnp_params()`.
///
/// `run` is versioned on its own: the library finds the fields after it at
/// `offsetof(run) + run.struct_size` (which is where a C compiler puts them), so both structs
/// grow independently.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_pnp_params {
    /// `sizeof(lofi_pnp_params)`, set by `lofi_default_pnp_params()`.
    pub struct_size: usize,
    /// ADMM penalty alpha > 0 (default 0.05, the paper's inpainting value).
    pub alpha: f64,
    /// Conjugate-gradient iterations per data step when A has no closed form (default 100).
    pub cg_max_iterations: u32,
    /// Relative residual at which conjugate gradients stop (default 1e-7).
    pub cg_tolerance: f64,
    /// Denoiser working memory and threads, as for reconstructions; on the CPU a small
    /// denoiser's passes run as that many single-threaded workers, each on its own batches and
    /// with its share of the budget (faster: the threads no longer wait for one another at every
    /// operation; the values equal one thread's bit for bit; progress is still reported on the
    /// calling thread). `run.noise_level` is the
    /// noise level a noise-level-aware denoiser is told at every iteration (fixed-sigma ADMM);
    /// ignored under a schedule. A noise-level-aware model given neither a noise level nor a
    /// schedule runs the default schedule: from the top of its training range
    /// (`lofi_model_info.noise_level_max`) down to half of it over 20 iterations.
    pub run: lofi_run_params,
    /// Annealing (noise-level-aware models): over the first `anneal_iterations` iterations the
    /// denoiser's sigma falls geometrically from `anneal_sigma_start` to `anneal_sigma_end`
    /// (image units) and stays there; the data weight is alpha (sigma_end / sigma_k)^2 (DPIR's
    /// half-quadratic splitting). 0 iterations (the default): no schedule. (These fields and
    /// those below were added after the first layout.)
    pub anneal_sigma_start: f64,
    pub anneal_sigma_end: f64,
    pub anneal_iterations: u32,
    /// `lofi_pnp_solve()` stops early once an iteration changes the estimate by less than this
    /// (relative; the `dual` residual), after any schedule. 0 (the default): never.
    pub tolerance: f64,
    /// `LOFI_SPLITTING_ADMM` (the default; under a schedule the scaled dual is rescaled as alpha
    /// changes) or `LOFI_SPLITTING_HQS` (half-quadratic splitting without a dual, as DPIR).
    pub splitting: lofi_splitting,
    /// What the denoiser sees at each iteration: `LOFI_TRANSFORMS_DIHEDRAL` (the default: a
    /// different quarter turn or mirror of the image each iteration, undone after; the
    /// denoiser's preferred directions average out) or `LOFI_TRANSFORMS_NONE` (the paper's
    /// algorithm). (Added in the third layout, with `average_last`.)
    pub transforms: lofi_transforms,
    /// The estimate is the mean of the denoiser's last `average_last` outputs at the final noise
    /// level (default 8: one cycle of a square image's transforms); 1: the last output.
    pub average_last: u32,
}

/// What `lofi_pnp_params.transforms` lets the denoiser see.
pub type lofi_transforms = i32;
/// The image as it is.
pub const LOFI_TRANSFORMS_NONE: lofi_transforms = 0;
/// A cycle of quarter turns and mirrors (8 for square images, the 4 that keep the shape
/// otherwise), one per iteration.
pub const LOFI_TRANSFORMS_DIHEDRAL: lofi_transforms = 1;

/// How `lofi_pnp_params.splitting` couples the data and prior steps.
pub type lofi_splitting = i32;
/// ADMM with a scaled dual variable (the paper's LoFi-ADMM).
pub const LOFI_SPLITTING_ADMM: lofi_splitting = 0;
/// Half-quadratic splitting (no dual variable).
pub const LOFI_SPLITTING_HQS: lofi_splitting = 1;

/// alpha 0.05, CG 100 iterations to 1e-7, `lofi_default_run_params()`, no schedule, no early
/// stopping, ADMM, dihedral transforms, the mean of the last 8 outputs.
pub fn default_pnp_params() -> lofi_pnp_params {
    let d = pnp::PnpParams::default();
    lofi_pnp_params {
        struct_size: size_of::<lofi_pnp_params>(),
        alpha: d.alpha,
        cg_max_iterations: d.cg_max_iterations as u32,
        cg_tolerance: d.cg_tolerance,
        run: super::types::default_run_params(),
        anneal_sigma_start: 0.0,
        anneal_sigma_end: 0.0,
        anneal_iterations: 0,
        tolerance: 0.0,
        splitting: LOFI_SPLITTING_ADMM,
        transforms: LOFI_TRANSFORMS_DIHEDRAL,
        average_last: d.average_last as u32,
    }
}

// The caller's `lofi_pnp_params` is read in three parts: the head (fields before `run`, at fixed
// offsets), `run` (by its own struct_size), and the tail (fields after `run`), which a C compiler
// places at `offsetof(run) + sizeof(run)` of the caller's layout. The tail is copied byte for
// byte onto the tail of this library's layout, so its fields need not be listed here.
const RUN_OFFSET: usize = offset_of!(lofi_pnp_params, run);
/// Where the tail starts in this library's layout.
const TAIL_OFFSET: usize = RUN_OFFSET + size_of::<lofi_run_params>();
/// Bytes of this library's tail.
const TAIL_SIZE: usize = size_of::<lofi_pnp_params>() - TAIL_OFFSET;
/// The tails of every released layout, oldest first, as (size, bytes up to the end of its last
/// field): the first layout had no tail; the second ended with `splitting` (its last 4 bytes
/// were padding, where the third layout's `transforms` now lies, so they are not read). A new
/// field appended to the tail adds a row here.
const TAIL_LAYOUTS: [(usize, usize); 3] = [
    (0, 0),
    (
        offset_of!(lofi_pnp_params, transforms) + 4 - TAIL_OFFSET,
        offset_of!(lofi_pnp_params, transforms) - TAIL_OFFSET,
    ),
    (TAIL_SIZE, TAIL_SIZE),
];
/// `sizeof(lofi_pnp_params)` of the first layout: the head and a first-layout `run`.
pub(crate) const PNP_PARAMS_V1_SIZE: usize = RUN_OFFSET + super::types::RUN_PARAMS_V1_SIZE;

const _: () = {
    assert!(offset_of!(lofi_pnp_params, struct_size) == 0);
    // Tails of the caller's layouts start right after a `run` of any version: `run`'s alignment
    // (its size is a multiple of it) is at least the tail's.
    assert!(offset_of!(lofi_pnp_params, anneal_sigma_start) == TAIL_OFFSET);
    assert!(align_of::<lofi_run_params>() >= align_of::<lofi_pnp_params>());
    // The second layout's tail: up to `splitting` and 4 bytes of padding, 8-aligned.
    assert!(offset_of!(lofi_pnp_params, transforms) == offset_of!(lofi_pnp_params, splitting) + 4);
    assert!((offset_of!(lofi_pnp_params, transforms) + 4 - TAIL_OFFSET).is_multiple_of(8));
};

/// The caller's layout of a `lofi_pnp_params`: its size, its `run`'s, and the bytes of its tail
/// that hold fields (the tail's row of `TAIL_LAYOUTS`). Checks both sizes.
unsafe fn pnp_layout(ptr: *const lofi_pnp_params) -> Result<(usize, usize, usize)> {
    let size = (ptr as *const usize).read_unaligned();
    let what = "lofi_pnp_params.struct_size";
    if size == 0 {
        return Err(Error::invalid_argument(format!(
            "{what} is 0: initialise the lofi_pnp_params with lofi_default_pnp_params() (or set struct_size)"
        )));
    }
    if size < PNP_PARAMS_V1_SIZE {
        return Err(Error::invalid_argument(format!(
            "{what} = {size} is smaller than the first version of lofi_pnp_params ({PNP_PARAMS_V1_SIZE} bytes)"
        )));
    }
    let run_size = ((ptr as *const u8).add(RUN_OFFSET) as *const usize).read_unaligned();
    abi::check_in_size::<lofi_run_params>(run_size, "lofi_pnp_params.run.struct_size")?;
    let tail = size.checked_sub(RUN_OFFSET + run_size).unwrap_or(usize::MAX);
    let tail_fields = TAIL_LAYOUTS.iter().find(|&&(t, _)| t == tail).map(|&(_, fields)| fields);
    let Some(tail_fields) = tail_fields.filter(|_| size <= size_of::<lofi_pnp_params>()) else {
        return Err(Error::invalid_argument(format!(
            "{what} = {size} with run.struct_size = {run_size} is no layout of lofi_pnp_params this liblofi {} \
             knows (its own is {} with run {}): is the struct initialised with lofi_default_pnp_params(), or \
             was the program built against a newer lofi.h (check with lofi_check_version())?",
            env!("CARGO_PKG_VERSION"),
            size_of::<lofi_pnp_params>(),
            size_of::<lofi_run_params>()
        )));
    };
    Ok((size, run_size, tail_fields))
}

/// Reads a caller's PnP parameters (NULL: the defaults): the head, `run` by its own size, and
/// the fields after it where the caller's layout puts them; defaults for what it lacks.
unsafe fn read_pnp_params(ptr: *const lofi_pnp_params) -> Result<lofi_pnp_params> {
    if ptr.is_null() {
        return Ok(default_pnp_params());
    }
    let (_, run_size, tail_fields) = pnp_layout(ptr)?;
    let src = ptr as *const u8;
    let mut p = default_pnp_params();
    let dst = &mut p as *mut lofi_pnp_params as *mut u8;
    std::ptr::copy_nonoverlapping(src, dst, RUN_OFFSET);
    p.run = abi::read_in(src.add(RUN_OFFSET) as *const lofi_run_params)?;
    // Only the bytes of the caller's fields: a layout's trailing padding may hold anything.
    let dst = &mut p as *mut lofi_pnp_params as *mut u8;
    std::ptr::copy_nonoverlapping(src.add(RUN_OFFSET + run_size), dst.add(TAIL_OFFSET), tail_fields);
    p.struct_size = size_of::<lofi_pnp_params>();
    Ok(p)
}

/// Fills `*params` with the defaults (alpha 0.05, CG 100 iterations to 1e-7, the run defaults,
/// no schedule, no early stopping, ADMM, dihedral transforms, the mean of the last 8 outputs)
/// for the layout `params->struct_size` and `params->run.struct_size` declare; set both first.
/// `lofi_default_pnp_params()` does all.
///
/// # Safety
/// `params` must be NULL or valid for writes of the `struct_size` it declares.
#[no_mangle]
pub unsafe extern "C" fn lofi_init_pnp_params(params: *mut lofi_pnp_params) -> lofi_status {
    guard("lofi_init_pnp_params", || write_pnp_params(params, &default_pnp_params()))
}

/// Iterations `lofi_pnp_params_for_inpainting()` is measured with: pass it to
/// `lofi_pnp_solve()`.
pub const LOFI_PNP_INPAINTING_ITERATIONS: u32 = 40;
const _: () = assert!(LOFI_PNP_INPAINTING_ITERATIONS as usize == pnp::INPAINTING_ITERATIONS);

/// As `lofi_init_pnp_params()`, with the settings measured for inpainting (30 % observed, Set12;
/// README "Inpainting") when `model` is noise-level aware: a fixed denoiser sigma
/// (`run.noise_level`) of 0.6 x the top of its training range and alpha 0.01, to be run for
/// `LOFI_PNP_INPAINTING_ITERATIONS` iterations. A fixed-level model gets the generic defaults.
/// These are `lofi pnp --operator inpaint`'s defaults.
///
/// # Safety
/// `model` must be NULL or a live model; `params` NULL or valid for writes of the
/// `struct_size` it declares.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_params_for_inpainting(
    model: *const lofi_model,
    params: *mut lofi_pnp_params,
) -> lofi_status {
    guard("lofi_pnp_params_for_inpainting", || {
        let model = &non_null(model, "model")?.inner;
        let mut d = default_pnp_params();
        if let Some(range) = &model.config().noise_level {
            let inpainting = pnp::PnpParams::for_inpainting(range);
            d.alpha = inpainting.alpha;
            d.run.noise_level = inpainting.denoiser_sigma.unwrap_or(super::types::LOFI_NOISE_LEVEL_NONE);
        }
        write_pnp_params(params, &d)
    })
}

/// Writes `d` into the caller's `*params` in the layout its sizes declare (head, `run` by its
/// own size, tail after it), keeping those sizes.
unsafe fn write_pnp_params(params: *mut lofi_pnp_params, d: &lofi_pnp_params) -> Result<()> {
    if params.is_null() {
        return Err(Error::invalid_argument("the lofi_pnp_params pointer is NULL"));
    }
    let (size, run_size, _) = pnp_layout(params)?;
    let src = d as *const lofi_pnp_params as *const u8;
    let dst = params as *mut u8;
    std::ptr::copy_nonoverlapping(src, dst, RUN_OFFSET);
    (params as *mut usize).write_unaligned(size);
    abi::write_out(dst.add(RUN_OFFSET) as *mut lofi_run_params, run_size, d.run);
    std::ptr::copy_nonoverlapping(
        src.add(TAIL_OFFSET),
        dst.add(RUN_OFFSET + run_size),
        size - RUN_OFFSET - run_size,
    );
    Ok(())
}

/// Figures of one ADMM iteration. Written by the library up to the size the call passes (the
/// inline `lofi_pnp_step()` / `lofi_pnp_solve()` pass `sizeof(lofi_pnp_residuals)`);
/// `struct_size` tells how many bytes it wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct lofi_pnp_residuals {
    /// Bytes of this struct the library filled.
    pub struct_size: usize,
    /// Iterations done so far (1 after the first step).
    pub iteration: u32,
    /// ||x - v|| / ||v||: agreement between the data step and the prior.
    pub primal: f64,
    /// ||e - e_previous|| / ||e|| for the estimate e (`lofi_pnp_estimate()`): how much it still
    /// moves.
    pub dual: f64,
    /// ||A e - y|| / ||y||.
    pub data_misfit: f64,
    /// PSNR of the estimate against the ground truth (dB), NaN without one.
    pub psnr: f64,
    /// Conjugate-gradient iterations of the data step (0 for closed forms).
    pub cg_iterations: u32,
    /// Noise level the denoiser was told in this iteration (NaN for a fixed-level denoiser).
    /// (This field and those below were added after the first layout.)
    pub sigma: f64,
    /// Data weight alpha of this iteration.
    pub alpha: f64,
    /// 1 if the early-stopping rule (`tolerance`) held after this iteration.
    pub converged: u32,
}

/// `sizeof(lofi_pnp_residuals)` of the first layout: up to `cg_iterations`.
pub(crate) const PNP_RESIDUALS_V1_SIZE: usize =
    abi::size_up_to(offset_of!(lofi_pnp_residuals, sigma), align_of::<lofi_pnp_residuals>());

// SAFETY: repr(C), leading usize, numbers.
unsafe impl Versioned for lofi_pnp_residuals {
    const NAME: &'static str = "lofi_pnp_residuals";
    const SIZES: &'static [usize] = &[PNP_RESIDUALS_V1_SIZE, size_of::<Self>()];
    fn defaults() -> Self {
        lofi_pnp_residuals { struct_size: size_of::<Self>(), ..Default::default() }
    }
}

impl From<pnp::Residuals> for lofi_pnp_residuals {
    fn from(r: pnp::Residuals) -> Self {
        lofi_pnp_residuals {
            struct_size: size_of::<Self>(),
            iteration: r.iteration as u32,
            primal: r.primal,
            dual: r.dual,
            data_misfit: r.data_misfit,
            psnr: r.psnr.unwrap_or(f64::NAN),
            cg_iterations: r.cg_iterations as u32,
            sigma: r.sigma.unwrap_or(f64::NAN),
            alpha: r.alpha,
            converged: 0,
        }
    }
}

/// The state of a LoFi-ADMM solve: x, u, v and the operator. Not thread-safe: use one state
/// from one thread at a time (different states may run concurrently, sharing a model). It holds
/// a reference to its model: `lofi_model_free()` before `lofi_pnp_free()` is safe.
pub struct lofi_pnp {
    /// Borrows `*model`. Declared first so that it is dropped first (fields drop in declaration
    /// order), while `_model` still keeps the `Model` alive.
    inner: Pnp<'static>,
    progress: lofi_progress_fn,
    progress_user_data: *mut c_void,
    /// The reference that keeps the model alive for as long as `inner` borrows it.
    _model: Arc<crate::Model>,
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
        LOFI_OPERATOR_NUFFT => {
            if d.visibility_count == 0 || d.visibility_count > isize::MAX as usize / 16 {
                return Err(Error::invalid_argument(format!(
                    "NUFFT: visibility_count = {} is out of range",
                    d.visibility_count
                )));
            }
            let coordinates = slice(d.uv, 2 * d.visibility_count, "uv")?;
            let uv: Vec<[f64; 2]> = coordinates.chunks(2).map(|p| [p[0], p[1]]).collect();
            let weights: Vec<f64> = if d.weights.is_null() {
                vec![1.0; d.visibility_count]
            } else {
                slice(d.weights, d.visibility_count, "weights")?.iter().map(|&w| w as f64).collect()
            };
            let weighting = match d.weighting {
                LOFI_WEIGHTING_NATURAL => crate::operators::nufft::Weighting::Natural,
                LOFI_WEIGHTING_UNIFORM => crate::operators::nufft::Weighting::Uniform,
                other => return Err(Error::invalid_argument(format!("NUFFT: unknown weighting {other}"))),
            };
            Box::new(Visibilities::new(shape, &uv, &weights, d.pixel_arcsec, weighting, device)?)
        }
        other => return Err(Error::invalid_argument(format!("unknown operator kind {other}"))),
    };
    Ok((op, shape))
}

/// Number of measurement floats the operator `op` expects, into `*out_len`.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_operator_measurement_len(
    op: *const lofi_operator,
    out_len: *mut usize,
) -> lofi_status {
    guard("lofi_operator_measurement_len", || {
        let (op, _) = build_operator(&read_operator(op)?, tch::Device::Cpu)?;
        *out_len.as_mut().ok_or_else(|| Error::invalid_argument("out_len is NULL"))? = op.measurement_len();
        Ok(())
    })
}

/// Computes `y = A x` on the CPU (to simulate measurements): `x` is an image (height x width x
/// channels floats), `y` has room for `y_len` floats and receives
/// `lofi_operator_measurement_len()` of them (a smaller `y_len` is an error).
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_operator_forward(
    op: *const lofi_operator,
    x: *const f32,
    y: *mut f32,
    y_len: usize,
) -> lofi_status {
    guard("lofi_operator_forward", || {
        let (op, shape) = build_operator(&read_operator(op)?, tch::Device::Cpu)?;
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
/// * `model`: a denoiser (as many output as input channels = `op->channels`). The state keeps
///   a reference to it: the caller may `lofi_model_free()` it at any time after this call (the
///   model is released with the last state using it).
/// * `op`: the operator description (arrays are copied).
/// * `measurements`: `measurement_len` floats in the operator's layout
///   (`lofi_operator_measurement_len()`); copied.
/// * `params`: NULL for `lofi_default_pnp_params()`.
/// * `out_pnp`: receives the state (NULL on failure); release with `lofi_pnp_free()`.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
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
        let owner: Arc<crate::Model> = Arc::clone(&non_null(model, "model")?.inner);
        // SAFETY (lifetime): the state stores `owner`, which keeps the model alive for as long as
        // the state (and the `Pnp` borrowing it, dropped first) exists.
        let model: &'static crate::Model = &*Arc::as_ptr(&owner);
        let p = read_pnp_params(params)?;
        if p.run.threads < 0 {
            return Err(Error::invalid_argument("threads is negative"));
        }
        if p.run.self_ensemble > 1 {
            return Err(Error::invalid_argument(format!(
                "run.self_ensemble = {}: plug-and-play averages over turns and mirrors with its own \
                 lofi_pnp_params.transforms and average_last; leave it at 1",
                p.run.self_ensemble
            )));
        }
        let (operator, shape) = build_operator(&read_operator(op)?, model.device())?;
        let y = slice(measurements, measurement_len, "measurements")?;
        let y = operator.measurements_from_host(y, model.device())?;
        let schedule = (p.anneal_iterations > 0).then_some(pnp::NoiseSchedule {
            sigma_start: p.anneal_sigma_start,
            sigma_end: p.anneal_sigma_end,
            iterations: p.anneal_iterations as usize,
        });
        let settings = pnp::PnpParams {
            alpha: p.alpha,
            cg_max_iterations: p.cg_max_iterations as usize,
            cg_tolerance: p.cg_tolerance,
            memory_budget: usize::try_from(p.run.memory_budget_bytes).unwrap_or(usize::MAX),
            threads: p.run.threads as usize,
            denoiser_sigma: if schedule.is_some() {
                None
            } else {
                super::types::noise_level_from_c(p.run.noise_level)?
            },
            schedule,
            splitting: match p.splitting {
                LOFI_SPLITTING_ADMM => pnp::Splitting::Admm,
                LOFI_SPLITTING_HQS => pnp::Splitting::Hqs,
                other => {
                    return Err(Error::invalid_argument(format!(
                        "splitting = {other} is not a LOFI_SPLITTING_* value"
                    )))
                }
            },
            tolerance: p.tolerance,
            transforms: match p.transforms {
                LOFI_TRANSFORMS_NONE => pnp::Transforms::None,
                LOFI_TRANSFORMS_DIHEDRAL => pnp::Transforms::Dihedral,
                other => {
                    return Err(Error::invalid_argument(format!(
                        "transforms = {other} is not a LOFI_TRANSFORMS_* value"
                    )))
                }
            },
            average_last: p.average_last as usize,
        };
        let inner = Pnp::new(model, operator, shape, y, settings)?;
        *out_pnp = Box::into_raw(Box::new(lofi_pnp {
            inner,
            progress: p.run.progress,
            progress_user_data: p.run.progress_user_data,
            _model: owner,
        }));
        Ok(())
    })
}

/// Gives a ground truth (height x width x channels floats, copied) so that residuals report PSNR.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
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

/// Warm start: the estimate the next iteration starts from (height x width x channels floats,
/// copied), e.g. a classical reconstruction or an earlier solve's result. Sets x = v = estimate
/// and the dual variable to zero.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_set_estimate(pnp: *mut lofi_pnp, estimate: *const f32) -> lofi_status {
    guard("lofi_pnp_set_estimate", || {
        let state = pnp.as_mut().ok_or_else(|| Error::invalid_argument("pnp is NULL"))?;
        let s = state.inner.shape();
        let t = slice(estimate, s.numel(), "estimate")?;
        let image =
            tch::Tensor::from_slice(t).view([s.height, s.width, s.channels]).permute([2, 0, 1]).unsqueeze(0);
        state.inner.set_estimate(&image)
    })
}

/// Checks the size of a residuals struct before any work (NULL: no figures wanted).
fn check_residuals(out: *mut lofi_pnp_residuals, out_size: usize, what: &str) -> Result<()> {
    if out.is_null() {
        return Ok(());
    }
    abi::check_out_size::<lofi_pnp_residuals>(out_size, what)
}

/// Writes an iteration's figures into the caller's struct of `out_size` bytes (NULL: nothing).
fn write_residuals(out: *mut lofi_pnp_residuals, out_size: usize, r: pnp::Residuals, converged: bool) {
    let mut value = lofi_pnp_residuals::from(r);
    value.converged = converged as u32;
    // SAFETY: NULL or valid for out_size bytes, per the API contract; the size was checked.
    unsafe { abi::write_out(out, out_size, value) }
}

/// Steps `iterations` times, writing each iteration's figures to `*out` before asking the
/// progress callback whether to go on (so a cancelled solve still reports where it stopped).
/// With `early_stop`, stops after an iteration that meets the tolerance rule.
fn run_steps(
    state: &mut lofi_pnp,
    iterations: u32,
    out: *mut lofi_pnp_residuals,
    out_size: usize,
    early_stop: bool,
) -> Result<()> {
    for done in 1..=iterations {
        let r = state.inner.step(&mut None)?;
        let converged = state.inner.converged(&r);
        write_residuals(out, out_size, r, converged);
        if early_stop && converged {
            return Ok(());
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
/// figures to `*out` (may be NULL), at most `out_size` bytes (`sizeof(lofi_pnp_residuals)`,
/// which the inline `lofi_pnp_step()` passes). A failing step (a user callback returning false reports
/// `LOFI_STATUS_INVALID_ARGUMENT`, a NaN it wrote `LOFI_STATUS_INVALID_INPUT`) leaves the state
/// as it was before the step.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_step_sized(
    pnp: *mut lofi_pnp,
    out: *mut lofi_pnp_residuals,
    out_size: usize,
) -> lofi_status {
    guard("lofi_pnp_step", || {
        let state = pnp.as_mut().ok_or_else(|| Error::invalid_argument("pnp is NULL"))?;
        check_residuals(out, out_size, "out_size")?;
        let r = state.inner.step(&mut None)?;
        let converged = state.inner.converged(&r);
        write_residuals(out, out_size, r, converged);
        Ok(())
    })
}

/// Runs `iterations` ADMM iterations, calling the params' progress callback after each (done,
/// total iterations; returning false cancels with `LOFI_STATUS_CANCELLED`, keeping the
/// iterations done). Stops early, with `LOFI_STATUS_OK` and `last->converged = 1`, once the
/// params' `tolerance` rule holds. `*last` (may be NULL) receives the figures of the last
/// iteration run, also when cancelled (at most `last_size` bytes, as for `lofi_pnp_step()`).
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_solve_sized(
    pnp: *mut lofi_pnp,
    iterations: u32,
    last: *mut lofi_pnp_residuals,
    last_size: usize,
) -> lofi_status {
    guard("lofi_pnp_solve", || {
        let state = pnp.as_mut().ok_or_else(|| Error::invalid_argument("pnp is NULL"))?;
        if iterations == 0 {
            return Err(Error::invalid_argument("iterations is 0"));
        }
        check_residuals(last, last_size, "last_size")?;
        run_steps(state, iterations, last, last_size, true)
    })
}

/// Copies the current estimate (height x width x channels floats, rows `row_stride_bytes`
/// apart, 0 = packed) into `out`: the mean of the denoiser's last `average_last` outputs at the
/// final noise level (the last output while a schedule runs). Before the first step it is the
/// starting estimate: the
/// operator's first guess (inpainting: gaps filled by normalised convolution; denoising: the
/// measurements), zero for the other operators, or what `lofi_pnp_set_estimate()` set.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
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
        let n = hwc.numel();
        let mut values = crate::error::try_vec::<f32>(n, "the estimate on the host")?;
        values.resize(n, 0.0);
        hwc.f_copy_data(&mut values, n)?;
        let dst = std::slice::from_raw_parts_mut(out, (s.height as usize - 1) * stride + row);
        for r in 0..s.height as usize {
            dst[r * stride..r * stride + row].copy_from_slice(&values[r * row..(r + 1) * row]);
        }
        Ok(())
    })
}

/// Releases a PnP state, and its reference to the model (the model goes when its last user
/// does). NULL is allowed.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_pnp_free(pnp: *mut lofi_pnp) {
    if !pnp.is_null() {
        let _ = super::error::quietly(|| {
            drop(Box::from_raw(pnp));
            Ok(())
        });
    }
}
