//! Plain-data structs of the C ABI and their defaults.
//!
//! Callers always start from a `lofi_default_*()` value (inline functions of lofi.h that call the
//! `lofi_init_*()` functions here with the caller's `sizeof`) and change the fields they care
//! about, so that fields added in later versions keep sensible defaults. See [`super::abi`] for
//! the `struct_size` rules.

use std::mem::{align_of, offset_of, size_of};
use std::os::raw::{c_char, c_void};

use super::abi::{self, size_up_to, Versioned};
use super::error::{guard, lofi_status};
use crate::device::{DeviceSpec, Precision};
use crate::error::{Error, Result};

/// Device kinds for `lofi_load_params.device`.
pub type lofi_device_kind = i32;
/// The CPU.
pub const LOFI_DEVICE_CPU: lofi_device_kind = 0;
/// A CUDA GPU, chosen by `lofi_load_params.device_index`.
pub const LOFI_DEVICE_CUDA: lofi_device_kind = 1;

/// Network precisions for `lofi_load_params.precision`.
pub type lofi_precision = i32;
/// float32 (the default; the only precision on CPUs without bfloat16 instructions).
pub const LOFI_PRECISION_F32: lofi_precision = 0;
/// bfloat16 networks (CUDA, or CPUs with avx512_bf16 or amx_bf16); the filter, the sampling and
/// the coordinates stay float32.
pub const LOFI_PRECISION_BF16: lofi_precision = 1;
/// float16 networks (CUDA only); the filter, the sampling and the coordinates stay float32.
pub const LOFI_PRECISION_F16: lofi_precision = 2;

/// How to load a model. Start from `lofi_default_load_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_load_params {
    /// `sizeof(lofi_load_params)`, set by `lofi_default_load_params()`.
    pub struct_size: usize,
    /// `LOFI_DEVICE_CPU` (default) or `LOFI_DEVICE_CUDA`.
    pub device: lofi_device_kind,
    /// GPU index for `LOFI_DEVICE_CUDA` (default 0).
    pub device_index: i32,
    /// `LOFI_PRECISION_F32` (default), `LOFI_PRECISION_BF16` or `LOFI_PRECISION_F16`.
    pub precision: lofi_precision,
    /// NULL (default) for the one device above, or a NUL-terminated, comma-separated list of at
    /// most 64 devices, e.g. `"cuda:0,cuda:1"` (`"cpu"`, `"cuda"`, `"cuda:N"`; `"cpu,cpu"` stands in for
    /// GPUs in tests): the model is loaded once per device (`device` and `device_index` are then
    /// ignored), and `lofi_reconstruct_region()` deals bands of output rows out to the replicas, the
    /// result equal to one device's. Only read during the load call. (Added in 0.2: older
    /// layouts end before it.)
    pub devices: *const c_char,
}

/// CPU, GPU 0 when CUDA is chosen, float32, one device.
pub fn default_load_params() -> lofi_load_params {
    lofi_load_params {
        struct_size: size_of::<lofi_load_params>(),
        device: LOFI_DEVICE_CPU,
        device_index: 0,
        precision: LOFI_PRECISION_F32,
        devices: std::ptr::null(),
    }
}

// SAFETY: repr(C), leading usize, plain integers and a nullable pointer.
unsafe impl Versioned for lofi_load_params {
    const NAME: &'static str = "lofi_load_params";
    // 0.1 ended after `precision`; then the device list.
    const SIZES: &'static [usize] = &[
        size_up_to(offset_of!(lofi_load_params, devices), align_of::<lofi_load_params>()),
        size_of::<Self>(),
    ];
    fn defaults() -> Self {
        default_load_params()
    }
}

/// Fills `*params` with the defaults (CPU, GPU 0 when CUDA is chosen, float32) for the layout
/// `params->struct_size` declares; set it to `sizeof(lofi_load_params)` first.
/// `lofi_default_load_params()` does both.
///
/// # Safety
/// `params` must be NULL or valid for writes of the `struct_size` it declares.
#[no_mangle]
pub unsafe extern "C" fn lofi_init_load_params(params: *mut lofi_load_params) -> lofi_status {
    guard("lofi_init_load_params", || abi::init(params))
}

impl lofi_load_params {
    pub(crate) fn to_options(self) -> Result<crate::model::LoadOptions> {
        let device = match self.device {
            LOFI_DEVICE_CPU => DeviceSpec::Cpu,
            LOFI_DEVICE_CUDA => {
                if self.device_index < 0 {
                    return Err(Error::invalid_argument(format!(
                        "device_index {} is negative",
                        self.device_index
                    )));
                }
                DeviceSpec::Cuda(self.device_index as usize)
            }
            other => return Err(Error::invalid_argument(format!("unknown device kind {other}"))),
        };
        let precision = match self.precision {
            LOFI_PRECISION_F32 => Precision::F32,
            LOFI_PRECISION_BF16 => Precision::BF16,
            LOFI_PRECISION_F16 => Precision::F16,
            other => return Err(Error::invalid_argument(format!("unknown precision {other}"))),
        };
        Ok(crate::model::LoadOptions::new(device, precision))
    }

    /// The device list (`devices`), or `None` for the single device of `to_options`.
    ///
    /// # Safety
    /// `devices` must be NULL or a NUL-terminated string.
    pub(crate) unsafe fn device_list(&self) -> Result<Option<Vec<DeviceSpec>>> {
        if self.devices.is_null() {
            return Ok(None);
        }
        let text = std::ffi::CStr::from_ptr(self.devices)
            .to_str()
            .map_err(|_| Error::invalid_argument("devices is not valid UTF-8"))?;
        let list = crate::device::parse_device_list(text)
            .map_err(|e| Error::invalid_argument(format!("devices \"{text}\": {e}")))?;
        Ok(Some(list))
    }
}

/// Progress callback: called after every batch with the pixels done so far and the total.
/// A model with the Fourier filter that computes it in bands (see `memory_budget_bytes`) also
/// calls it before the first batch, after every band of the filter's passes, with `done` = 0:
/// those passes take minutes on gigapixel inputs, and the call can be cancelled during them.
/// Return `true` to continue, `false` to cancel (the call then returns `LOFI_STATUS_CANCELLED`).
/// Called on the thread that made the call. It must return normally: no C++ exception, longjmp
/// or thread cancellation may leave it (catch inside and return `false`).
pub type lofi_progress_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, done: u64, total: u64) -> bool>;

/// Per-call settings of a reconstruction. Start from `lofi_default_run_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_run_params {
    /// `sizeof(lofi_run_params)`, set by `lofi_default_run_params()`.
    pub struct_size: usize,
    /// Working-memory budget in bytes: device memory on CUDA, host memory on the CPU
    /// (default 512 MiB). The batch size is derived from it; a budget that cannot hold one
    /// batch is an error whose message states the minimum. Larger than useful is fine (up to
    /// `UINT64_MAX`): batches never exceed the work, nor, on the CPU, the memory available when
    /// the budget is beyond the machine's, nor 1,024 pixels per libtorch thread
    /// (2,048 at least: larger batches are slower there). A model with the Fourier filter whose filtered image
    /// would take more than half the budget computes it in bands into anonymous scratch files in
    /// the temporary directory (`TMPDIR`; about 20 bytes per input pixel and channel while
    /// the call runs), with results equal to the in-memory filter's up to float32 rounding.
    pub memory_budget_bytes: u64,
    /// CPU threads for this call, 0 for libtorch's default. Applies to the calling thread. More
    /// than the machine's available parallelism is clamped to it (with a log message). On the
    /// CPU, a region call of a small network over enough pixels runs them as single-threaded
    /// workers sharing the model, each on its own bands of the output and its share of the
    /// budget (1.2-1.4x faster than libtorch's threads on one batch, which wait for one another
    /// at every operation's end); the result is the one-thread result, bit for bit, and
    /// `lofi_run_report.workers` says how many ran. 1 keeps everything on the calling thread.
    pub threads: i32,
    /// Optional progress/cancel callback (NULL: none).
    pub progress: lofi_progress_fn,
    /// Passed to `progress` unchanged.
    pub progress_user_data: *mut c_void,
    /// Noise standard deviation of the input in image units (e.g. 25.0 / 255 for [0, 1] images),
    /// for noise-level-aware models (`lofi_model_info.noise_level_aware`), which require it.
    /// Negative (the default, `LOFI_NOISE_LEVEL_NONE`): not given; fixed-level models require
    /// that. NaN is an error. (Added after the first layout.)
    pub noise_level: f64,
    /// Geometric self-ensemble: each value is the mean of this many network passes with the
    /// sampling geometry turned and mirrored (as the x8 self-ensemble of image restoration, but
    /// in sample space: works for regions, points and streamed inputs, at the same memory).
    /// 0 or 1 (the default): off; 2: half turn; 4: quarter turns; 8: quarter turns and mirrors.
    /// Time grows with the passes. Models with a Fourier filter, CCPG or INR refuse it, and so
    /// does plug-and-play (`lofi_pnp_params.transforms` is its own). (Added in the third layout.)
    pub self_ensemble: u32,
}

/// `lofi_run_params.noise_level` when no noise level is given.
pub const LOFI_NOISE_LEVEL_NONE: f64 = -1.0;

/// 512 MiB budget, default threads, no callback, no noise level, no self-ensemble.
pub fn default_run_params() -> lofi_run_params {
    lofi_run_params {
        struct_size: size_of::<lofi_run_params>(),
        memory_budget_bytes: crate::engine::DEFAULT_MEMORY_BUDGET as u64,
        threads: 0,
        progress: None,
        progress_user_data: std::ptr::null_mut(),
        noise_level: LOFI_NOISE_LEVEL_NONE,
        self_ensemble: 1,
    }
}

/// `sizeof(lofi_run_params)` of the first layout: up to `progress_user_data`.
pub(crate) const RUN_PARAMS_V1_SIZE: usize =
    size_up_to(offset_of!(lofi_run_params, noise_level), align_of::<lofi_run_params>());
/// `sizeof(lofi_run_params)` of the second layout: up to `noise_level`.
pub(crate) const RUN_PARAMS_V2_SIZE: usize =
    size_up_to(offset_of!(lofi_run_params, self_ensemble), align_of::<lofi_run_params>());

// SAFETY: repr(C), leading usize; numbers, a nullable pointer and an Option function pointer.
unsafe impl Versioned for lofi_run_params {
    const NAME: &'static str = "lofi_run_params";
    const SIZES: &'static [usize] = &[RUN_PARAMS_V1_SIZE, RUN_PARAMS_V2_SIZE, size_of::<Self>()];
    fn defaults() -> Self {
        default_run_params()
    }
}

/// Fills `*params` with the defaults (512 MiB budget, default threads, no callback, no noise
/// level, no self-ensemble) for the layout `params->struct_size` declares; set it to `sizeof(lofi_run_params)`
/// first. `lofi_default_run_params()` does both.
///
/// # Safety
/// `params` must be NULL or valid for writes of the `struct_size` it declares.
#[no_mangle]
pub unsafe extern "C" fn lofi_init_run_params(params: *mut lofi_run_params) -> lofi_status {
    guard("lofi_init_run_params", || abi::init(params))
}

/// A C noise level (negative: none) as the engine's option.
pub(crate) fn noise_level_from_c(value: f64) -> crate::error::Result<Option<f64>> {
    if value.is_nan() {
        return Err(crate::error::Error::invalid_argument(
            "noise_level is NaN (use a negative value for none)",
        ));
    }
    Ok((value >= 0.0).then_some(value))
}

/// An input image: row-major, interleaved channels (H, W, C), float32. A frozen layout (no
/// struct_size: every field is required; docs/abi.md).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_image {
    /// First pixel. Read only; must stay valid for the duration of the call.
    pub data: *const f32,
    pub width: usize,
    pub height: usize,
    /// Must equal the model's input channels (2 = one complex channel: real, imaginary).
    pub channels: usize,
    /// Bytes from one row to the next; 0 means tightly packed (width * channels * 4).
    pub row_stride_bytes: usize,
}

/// A rectangle of the input's continuous pixel coordinates: x is the column, y the row, pixel
/// centres sit at integers, so the whole image is {0, 0, width - 1, height - 1}. Corners may lie
/// outside the image (samples are then reflected at the borders, as in training), within
/// `LOFI_MAX_COORDINATE` pixels. A frozen layout, as `lofi_image`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_region {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

/// A sub-window of an output grid (for tiles): `cols` x `rows` samples starting at grid
/// column `col0`, row `row0`. Tiles of one grid computed separately equal the whole grid: bit
/// for bit on the CPU with `threads = 1`; with more threads the BLAS may split rows differently
/// and the last bits can differ (about 1e-7 relative). A frozen layout, as `lofi_image`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_window {
    pub col0: usize,
    pub row0: usize,
    pub cols: usize,
    pub rows: usize,
}

/// Largest coordinate magnitude accepted (regions and points), in input pixels. The network sees
/// coordinates as float32 fractions of the image: at 1e6 pixels their spacing is 1/16 pixel, and
/// beyond 2^24 neighbouring pixels become indistinguishable. Samples this far outside the image
/// are reflections of reflections anyway; larger or non-finite values are refused with
/// `LOFI_STATUS_INVALID_ARGUMENT` before any work.
pub const LOFI_MAX_COORDINATE: f64 = 1e6;

/// What a reconstruction did (optional output of the reconstruct calls). Written by the
/// library up to the size the call passes (the inline `lofi_reconstruct_*()` wrappers pass
/// `sizeof(lofi_run_report)`); `struct_size` tells how many bytes it wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct lofi_run_report {
    /// Bytes of this struct the library filled.
    pub struct_size: usize,
    /// Output pixels computed.
    pub pixels: u64,
    /// Pixels per batch chosen from the budget.
    pub batch_pixels: u64,
    /// Batches run.
    pub batches: u64,
    /// The engine's estimate of its peak working memory in bytes (within the budget).
    pub estimated_peak_bytes: u64,
    /// Peak device memory allocated on CUDA during the call, above what was allocated when it
    /// began, in bytes; 0 on the CPU.
    pub measured_peak_bytes: u64,
    /// Peak device memory reserved by libtorch's caching allocator on the model's GPU during
    /// the call (allocated plus cached, process-wide: what other processes cannot use), in
    /// bytes; 0 on the CPU. (Added after the first layout.)
    pub measured_peak_reserved_bytes: u64,
    /// Device memory reserved on that GPU when the call returned; `lofi_release_cached_memory()`
    /// gives the cached (unused) part back. 0 on the CPU.
    pub reserved_bytes: u64,
    /// Workers that ran the call, each on its own bands of the output: the model's devices
    /// (`lofi_load_params.devices`), or on one CPU the single-threaded workers the library chose
    /// (see `lofi_run_params.threads`); 1 for one. With several, `batch_pixels` and
    /// `estimated_peak_bytes` are each worker's (CPU workers share the budget, devices have one
    /// each). (Added after the second layout.)
    pub workers: u64,
}

/// `sizeof(lofi_run_report)` of the first layout: up to `measured_peak_bytes`.
pub(crate) const RUN_REPORT_V1_SIZE: usize =
    size_up_to(offset_of!(lofi_run_report, measured_peak_reserved_bytes), align_of::<lofi_run_report>());
/// `sizeof(lofi_run_report)` of the second layout: up to `reserved_bytes`.
pub(crate) const RUN_REPORT_V2_SIZE: usize =
    size_up_to(offset_of!(lofi_run_report, workers), align_of::<lofi_run_report>());

// SAFETY: repr(C), leading usize, integers.
unsafe impl Versioned for lofi_run_report {
    const NAME: &'static str = "lofi_run_report";
    const SIZES: &'static [usize] = &[RUN_REPORT_V1_SIZE, RUN_REPORT_V2_SIZE, size_of::<Self>()];
    fn defaults() -> Self {
        lofi_run_report { struct_size: size_of::<Self>(), ..Default::default() }
    }
}

impl From<crate::engine::RunReport> for lofi_run_report {
    fn from(r: crate::engine::RunReport) -> Self {
        lofi_run_report {
            struct_size: size_of::<Self>(),
            pixels: r.pixels as u64,
            batch_pixels: r.plan.batch_pixels as u64,
            batches: r.batches as u64,
            estimated_peak_bytes: r.plan.estimated_bytes() as u64,
            measured_peak_bytes: r.measured_peak_bytes.unwrap_or(0),
            measured_peak_reserved_bytes: r.measured_peak_reserved_bytes.unwrap_or(0),
            reserved_bytes: r.reserved_bytes.unwrap_or(0),
            workers: r.workers as u64,
        }
    }
}

/// A model's description (output of `lofi_model_get_info()`). Written by the library up to the
/// size the call passes; `struct_size` tells how many bytes it wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct lofi_model_info {
    /// Bytes of this struct the library filled.
    pub struct_size: usize,
    /// Training resolution S (the model works at any resolution; offsets are defined at S).
    pub image_size: i32,
    /// Input channels (2 = one complex channel).
    pub channels_in: i32,
    /// Output channels.
    pub channels_out: i32,
    /// Rings N and angles M of the sampling pattern (K = N * M samples per pixel).
    pub rings: i32,
    pub angles: i32,
    /// Hidden layers and their width.
    pub num_layers: i32,
    pub hidden_dim: i32,
    /// 1 if the model has the Fourier noise-suppression filter.
    pub fourier_filtering: i32,
    /// 1 if the model has coordinate-conditioned patch geometry (CCPG).
    pub ccpg: i32,
    /// 1 for INR-LoFi (a learned coordinate transform before sampling).
    pub coord_deform: i32,
    /// Scalar parameters stored in the file.
    pub parameter_count: i64,
    /// Device the model lives on (`LOFI_DEVICE_*`) and its index.
    pub device: lofi_device_kind,
    pub device_index: i32,
    /// Network precision (`LOFI_PRECISION_*`).
    pub precision: lofi_precision,
    /// Working memory one output pixel needs in a batch, in bytes.
    pub bytes_per_pixel: u64,
    /// 1 if the model is noise-level aware: it needs `lofi_run_params.noise_level`. (Added after
    /// the first layout, as the two fields below.)
    pub noise_level_aware: i32,
    /// The training range of the noise level (0 and 0 for a fixed-level model).
    pub noise_level_min: f64,
    pub noise_level_max: f64,
}

/// `sizeof(lofi_model_info)` of the first layout: up to `bytes_per_pixel`.
pub(crate) const MODEL_INFO_V1_SIZE: usize =
    size_up_to(offset_of!(lofi_model_info, noise_level_aware), align_of::<lofi_model_info>());

// SAFETY: repr(C), leading usize, numbers.
unsafe impl Versioned for lofi_model_info {
    const NAME: &'static str = "lofi_model_info";
    const SIZES: &'static [usize] = &[MODEL_INFO_V1_SIZE, size_of::<Self>()];
    fn defaults() -> Self {
        lofi_model_info { struct_size: size_of::<Self>(), ..Default::default() }
    }
}

/// Reads optional run parameters (NULL: the defaults).
///
/// # Safety
/// `params` must be NULL or valid for reads of the `struct_size` it declares.
pub(crate) unsafe fn read_run_params(params: *const lofi_run_params) -> Result<lofi_run_params> {
    abi::read_in_or_default(params)
}

// The first layouts are prefixes of the current ones (fields are only ever appended).
const _: () = {
    assert!(RUN_PARAMS_V1_SIZE == offset_of!(lofi_run_params, noise_level));
    assert!(RUN_PARAMS_V2_SIZE == offset_of!(lofi_run_params, self_ensemble));
    assert!(RUN_PARAMS_V2_SIZE < size_of::<lofi_run_params>());
    assert!(RUN_REPORT_V1_SIZE == offset_of!(lofi_run_report, measured_peak_reserved_bytes));
    assert!(MODEL_INFO_V1_SIZE == offset_of!(lofi_model_info, noise_level_aware));
    assert!(offset_of!(lofi_load_params, struct_size) == 0);
    assert!(offset_of!(lofi_run_params, struct_size) == 0);
    assert!(offset_of!(lofi_run_report, struct_size) == 0);
    assert!(offset_of!(lofi_model_info, struct_size) == 0);
};
