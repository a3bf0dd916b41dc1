//! Plain-data structs of the C ABI and their `lofi_default_*()` constructors.
//!
//! Callers always start from a `lofi_default_*()` value and change the fields they care about,
//! so that fields added in later minor versions keep sensible defaults.

use std::os::raw::c_void;

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
/// float32 (the only precision on the CPU).
pub const LOFI_PRECISION_F32: lofi_precision = 0;
/// bfloat16 networks (CUDA only); the filter and coordinates stay float32.
pub const LOFI_PRECISION_BF16: lofi_precision = 1;
/// float16 networks (CUDA only); the filter and coordinates stay float32.
pub const LOFI_PRECISION_F16: lofi_precision = 2;

/// How to load a model. Start from `lofi_default_load_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_load_params {
    /// `LOFI_DEVICE_CPU` (default) or `LOFI_DEVICE_CUDA`.
    pub device: lofi_device_kind,
    /// GPU index for `LOFI_DEVICE_CUDA` (default 0).
    pub device_index: i32,
    /// `LOFI_PRECISION_F32` (default), `LOFI_PRECISION_BF16` or `LOFI_PRECISION_F16`.
    pub precision: lofi_precision,
}

/// CPU, GPU 0 when CUDA is chosen, float32.
#[no_mangle]
pub extern "C" fn lofi_default_load_params() -> lofi_load_params {
    lofi_load_params { device: LOFI_DEVICE_CPU, device_index: 0, precision: LOFI_PRECISION_F32 }
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
        Ok(crate::model::LoadOptions { device, precision })
    }
}

/// Progress callback: called after every batch with the pixels done so far and the total.
/// Return `true` to continue, `false` to cancel (the call then returns `LOFI_STATUS_CANCELLED`).
/// Called on the thread that made the call.
pub type lofi_progress_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, done: u64, total: u64) -> bool>;

/// Per-call settings of a reconstruction. Start from `lofi_default_run_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_run_params {
    /// Working-memory budget in bytes: device memory on CUDA, host memory on the CPU
    /// (default 512 MiB). The batch size is derived from it; a budget that cannot hold one
    /// batch is an error whose message states the minimum.
    pub memory_budget_bytes: u64,
    /// CPU threads for this call, 0 for libtorch's default. Applies to the calling thread.
    pub threads: i32,
    /// Optional progress/cancel callback (NULL: none).
    pub progress: lofi_progress_fn,
    /// Passed to `progress` unchanged.
    pub progress_user_data: *mut c_void,
}

/// 512 MiB budget, default threads, no callback.
#[no_mangle]
pub extern "C" fn lofi_default_run_params() -> lofi_run_params {
    lofi_run_params {
        memory_budget_bytes: crate::engine::DEFAULT_MEMORY_BUDGET as u64,
        threads: 0,
        progress: None,
        progress_user_data: std::ptr::null_mut(),
    }
}

/// An input image: row-major, interleaved channels (H, W, C), float32.
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
/// outside the image (samples are then reflected at the borders, as in training).
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
/// and the last bits can differ (about 1e-7 relative).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_window {
    pub col0: usize,
    pub row0: usize,
    pub cols: usize,
    pub rows: usize,
}

/// What a reconstruction did (optional output of the reconstruct calls).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct lofi_run_report {
    /// Output pixels computed.
    pub pixels: u64,
    /// Pixels per batch chosen from the budget.
    pub batch_pixels: u64,
    /// Batches run.
    pub batches: u64,
    /// The engine's estimate of its peak working memory in bytes (within the budget).
    pub estimated_peak_bytes: u64,
    /// Peak device memory measured on CUDA in bytes; 0 on the CPU.
    pub measured_peak_bytes: u64,
}

impl From<crate::engine::RunReport> for lofi_run_report {
    fn from(r: crate::engine::RunReport) -> Self {
        lofi_run_report {
            pixels: r.pixels as u64,
            batch_pixels: r.plan.batch_pixels as u64,
            batches: r.batches as u64,
            estimated_peak_bytes: r.plan.estimated_bytes() as u64,
            measured_peak_bytes: r.measured_peak_bytes.unwrap_or(0),
        }
    }
}

/// A model's description (output of `lofi_model_get_info()`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct lofi_model_info {
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
}
