//! Reconstruction entry points.

use std::os::raw::c_void;

use super::abi;
use super::error::{guard, lofi_status, non_null};
use super::model::lofi_model;
use super::reader::{lofi_input_reader, ReaderSource};
use super::types::*;
use crate::engine::{
    self, ImageView, InputSource, OutputView, Progress, Region, RunOptions, SelfEnsemble, Window,
};
use crate::error::{Error, Result};

/// Checks an image descriptor and borrows its pixels.
///
/// # Safety
/// `image.data` must point to at least `(height - 1) * stride + width * channels` floats.
pub(crate) unsafe fn image_view<'a>(image: &lofi_image) -> Result<ImageView<'a>> {
    if image.data.is_null() {
        return Err(Error::invalid_argument("image data is NULL"));
    }
    if image.width == 0 || image.height == 0 || image.channels == 0 {
        return Err(Error::invalid_input(format!(
            "image of {} x {} x {} is empty",
            image.width, image.height, image.channels
        )));
    }
    let row = image
        .width
        .checked_mul(image.channels)
        .filter(|&r| r <= isize::MAX as usize / 4)
        .ok_or_else(|| Error::invalid_argument("image width x channels overflows"))?;
    let stride = stride_in_floats(image.row_stride_bytes, row, "image")?;
    let len = (image.height - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(row))
        .filter(|&v| v <= isize::MAX as usize / 4)
        .ok_or_else(|| Error::invalid_argument("image size overflows"))?;
    Ok(ImageView {
        data: std::slice::from_raw_parts(image.data, len),
        height: image.height,
        width: image.width,
        channels: image.channels,
        row_stride: stride,
    })
}

/// A stride in bytes (0 = packed) as a stride in floats.
fn stride_in_floats(bytes: usize, row: usize, what: &str) -> Result<usize> {
    if bytes == 0 {
        return Ok(row);
    }
    if !bytes.is_multiple_of(4) {
        return Err(Error::invalid_argument(format!(
            "{what} row stride {bytes} is not a multiple of 4 bytes"
        )));
    }
    Ok(bytes / 4)
}

/// The caller's output buffer: `rows` rows of `row` floats, `stride_bytes` apart (0: packed),
/// after checking the pointer and that the extent fits the address space. Returns the buffer
/// and its row stride in floats.
///
/// # Safety
/// `output` must be NULL or valid for writes of `(rows - 1) * stride + row` floats.
unsafe fn output_buffer<'a>(
    output: *mut f32,
    rows: usize,
    row: usize,
    stride_bytes: usize,
) -> Result<(&'a mut [f32], usize)> {
    if output.is_null() {
        return Err(Error::invalid_argument("output is NULL"));
    }
    let stride = stride_in_floats(stride_bytes, row, "output")?;
    let len = (rows - 1)
        .checked_mul(stride)
        .and_then(|v| v.checked_add(row))
        .filter(|&v| v <= isize::MAX as usize / 4)
        .ok_or_else(|| Error::invalid_argument("output size overflows"))?;
    Ok((std::slice::from_raw_parts_mut(output, len), stride))
}

/// The models a call runs on: the handle's devices, or, for one CPU model, single-threaded
/// workers sharing it where they are faster (`engine::cpu_workers`), with `options`' threads and
/// budget shared among them. Workers only read the model.
fn run_devices<'m>(
    handle: &'m lofi_model,
    options: &mut RunOptions<'_>,
    pixels: usize,
    input: (usize, usize),
) -> Vec<&'m crate::Model> {
    let devices = handle.devices();
    if let [one] = devices[..] {
        let n =
            engine::cpu_workers_within(one, options.threads, pixels, options.memory_budget, input.0, input.1);
        if n > 1 {
            (options.threads, options.memory_budget) =
                engine::worker_share(options.threads, options.memory_budget, n);
            return vec![one; n];
        }
    }
    devices
}

/// Per-call options with the C callback wrapped as a closure.
struct CallParams {
    params: lofi_run_params,
}

impl CallParams {
    fn new(params: *const lofi_run_params) -> Result<Self> {
        // SAFETY: NULL or a valid struct, per the API contract.
        Ok(CallParams { params: unsafe { read_run_params(params) }? })
    }

    fn run<T>(&self, f: impl FnOnce(RunOptions<'_>) -> Result<T>) -> Result<T> {
        let p = self.params;
        if p.threads < 0 {
            return Err(Error::invalid_argument(format!("threads = {} is negative", p.threads)));
        }
        let budget = usize::try_from(p.memory_budget_bytes).unwrap_or(usize::MAX);
        let mut callback = p.progress.map(|cb| {
            let user = p.progress_user_data;
            move |progress: Progress| -> bool {
                // SAFETY: the caller's function with the caller's user data, as documented.
                unsafe { cb(user as *mut c_void, progress.done as u64, progress.total as u64) }
            }
        });
        let progress = callback.as_mut().map(|c| c as &mut dyn FnMut(Progress) -> bool);
        let noise_level = noise_level_from_c(p.noise_level)?;
        let self_ensemble = SelfEnsemble::from_passes(u64::from(p.self_ensemble))?;
        f(RunOptions {
            memory_budget: budget,
            threads: p.threads as usize,
            progress,
            noise_level,
            self_ensemble,
        })
    }
}

/// Checks the report's size before any work (NULL: no report).
fn check_report(report: *mut lofi_run_report, report_size: usize) -> Result<()> {
    if report.is_null() {
        return Ok(());
    }
    abi::check_out_size::<lofi_run_report>(report_size, "report_size")
}

fn write_report(report: *mut lofi_run_report, report_size: usize, r: engine::RunReport) {
    // SAFETY: NULL or valid for report_size bytes, per the API contract; size checked.
    unsafe { abi::write_out(report, report_size, r.into()) }
}

/// Reconstructs a region of `input` sampled on a `grid_width` x `grid_height` grid.
///
/// * `model`: a loaded model; it is only read, so threads may share it.
/// * `input`: the observation (channels = the model's input channels). Only read.
/// * `region`: NULL for the whole image `{0, 0, width - 1, height - 1}`. The grid's samples span
///   the region, both ends included (a single sample along an axis sits at the middle); so a
///   `width` x `height` grid of the whole image gives the on-grid reconstruction, and a
///   `2 width - 1` x `2 height - 1` grid adds the halfway points.
/// * `window`: NULL for the whole grid, or the tile of it to compute.
/// * `output`: (rows, cols, channels_out) float32, rows and cols those of the window (or grid),
///   `output_row_stride_bytes` apart (0: packed). Written batch by batch; on failure its
///   contents are unspecified.
/// * `params`: NULL for `lofi_default_run_params()`.
/// * `report`: NULL, or receives what the call did: at most `report_size` bytes
///   (`sizeof(lofi_run_report)`, which the inline `lofi_reconstruct_region()` passes).
///
/// Working memory stays within `params->memory_budget_bytes` whatever the output size; a budget
/// larger than the work needs (even `UINT64_MAX`) plans batches of the work's size. Region
/// corners must be finite and within `LOFI_MAX_COORDINATE` pixels.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_reconstruct_region_sized(
    model: *const lofi_model,
    input: *const lofi_image,
    region: *const lofi_region,
    grid_width: usize,
    grid_height: usize,
    window: *const lofi_window,
    output: *mut f32,
    output_row_stride_bytes: usize,
    params: *const lofi_run_params,
    report: *mut lofi_run_report,
    report_size: usize,
) -> lofi_status {
    guard("lofi_reconstruct_region", || {
        let handle = non_null(model, "model")?;
        let image = image_view(non_null(input, "input")?)?;
        let target = OutputArgs { region, grid_width, grid_height, window, output, output_row_stride_bytes };
        region_call(handle, &image, target, params, report, report_size)
    })
}

/// The output side of a region call, as the caller passed it.
struct OutputArgs {
    region: *const lofi_region,
    grid_width: usize,
    grid_height: usize,
    window: *const lofi_window,
    output: *mut f32,
    output_row_stride_bytes: usize,
}

/// The region calls after their input is checked: the output's checks, the run, the report.
///
/// # Safety
/// The pointers of `target`, `params` and `report` as the region calls document them.
unsafe fn region_call(
    handle: &lofi_model,
    source: &(dyn InputSource + Sync),
    target: OutputArgs,
    params: *const lofi_run_params,
    report: *mut lofi_run_report,
    report_size: usize,
) -> Result<()> {
    let OutputArgs { region, grid_width, grid_height, window, output, output_row_stride_bytes } = target;
    let model = &handle.inner;
    if output.is_null() {
        return Err(Error::invalid_argument("output is NULL"));
    }
    let region = match region.as_ref() {
        Some(r) => Region { x0: r.x0, y0: r.y0, x1: r.x1, y1: r.y1 },
        None => Region::whole(source.height(), source.width()),
    };
    let window = window.as_ref().map(|w| Window { col0: w.col0, row0: w.row0, cols: w.cols, rows: w.rows });
    let (cols, rows) = window.map_or((grid_width, grid_height), |w| (w.cols, w.rows));
    if cols == 0 || rows == 0 {
        return Err(Error::invalid_argument(format!("output of {cols} x {rows} is empty")));
    }
    let c_out = model.config().c_out as usize;
    let row = cols.checked_mul(c_out).ok_or_else(|| Error::invalid_argument("output width overflows"))?;
    let (data, stride) = output_buffer(output, rows, row, output_row_stride_bytes)?;
    let call = CallParams::new(params)?;
    check_report(report, report_size)?;
    let r = call.run(|mut options| {
        let devices = run_devices(handle, &mut options, rows * cols, (source.height(), source.width()));
        engine::reconstruct_region_from_on_devices(
            &devices,
            source,
            region,
            grid_width,
            grid_height,
            window,
            OutputView { data, row_stride: stride },
            options,
        )
    })?;
    write_report(report, report_size, r);
    Ok(())
}

/// `lofi_reconstruct_region()` from an input the caller reads itself (`reader`), rectangle by
/// rectangle, instead of a buffer: for inputs larger than memory, or for a band of the output
/// (an MPI rank, a tile) that needs only the rows its samples reach. The library reads the
/// rows the window can reach (checking them first), each batch's window of them, and, for a
/// model with the Fourier filter, every row of the image (the filter is global). The result
/// equals `lofi_reconstruct_region()` on the same image, bit for bit. Otherwise as
/// `lofi_reconstruct_region()` (`report_size` included).
///
/// # Safety
/// Every pointer argument must be NULL (where allowed) or valid as described for
/// `lofi_reconstruct_region()` for the duration of the call; `reader->read` must behave as
/// `lofi_read_fn` says; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_reconstruct_region_from_reader_sized(
    model: *const lofi_model,
    reader: *const lofi_input_reader,
    region: *const lofi_region,
    grid_width: usize,
    grid_height: usize,
    window: *const lofi_window,
    output: *mut f32,
    output_row_stride_bytes: usize,
    params: *const lofi_run_params,
    report: *mut lofi_run_report,
    report_size: usize,
) -> lofi_status {
    guard("lofi_reconstruct_region_from_reader", || {
        let handle = non_null(model, "model")?;
        let source = ReaderSource::new(non_null(reader, "reader")?)?;
        let target = OutputArgs { region, grid_width, grid_height, window, output, output_row_stride_bytes };
        region_call(handle, &source, target, params, report, report_size)
    })
}

/// Reconstructs `count` arbitrary points. `points_xy` holds `2 * count` doubles: x (column) then
/// y (row) of each point, in input pixel coordinates. `output` receives `count * channels_out`
/// floats, point after point. Coordinates must be finite and within `LOFI_MAX_COORDINATE`
/// pixels. Otherwise as `lofi_reconstruct_region()` (`report_size` included).
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_reconstruct_points_sized(
    model: *const lofi_model,
    input: *const lofi_image,
    points_xy: *const f64,
    count: usize,
    output: *mut f32,
    params: *const lofi_run_params,
    report: *mut lofi_run_report,
    report_size: usize,
) -> lofi_status {
    guard("lofi_reconstruct_points", || {
        let model = &non_null(model, "model")?.inner;
        let image = image_view(non_null(input, "input")?)?;
        if points_xy.is_null() || output.is_null() {
            return Err(Error::invalid_argument(if points_xy.is_null() {
                "points_xy is NULL"
            } else {
                "output is NULL"
            }));
        }
        if count == 0 || count > isize::MAX as usize / 16 {
            return Err(Error::invalid_argument(format!("count = {count} is out of range")));
        }
        let call = CallParams::new(params)?;
        check_report(report, report_size)?;
        let c_out = model.config().c_out as usize;
        let out_len =
            count.checked_mul(c_out).ok_or_else(|| Error::invalid_argument("count x channels overflows"))?;
        let raw = std::slice::from_raw_parts(points_xy, 2 * count);
        let mut points = crate::error::try_vec::<[f64; 2]>(count, "the points")?;
        points.extend(raw.chunks_exact(2).map(|p| [p[0], p[1]]));
        let out = std::slice::from_raw_parts_mut(output, out_len);
        let r = call.run(|options| engine::reconstruct_points(model, image, &points, out, options))?;
        write_report(report, report_size, r);
        Ok(())
    })
}

/// How `lofi_denoise_refined()` refines a noise-level-aware denoiser's result. Start from
/// `lofi_default_refinement()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_refinement {
    /// `sizeof(lofi_refinement)`, set by `lofi_default_refinement()`.
    pub struct_size: usize,
    /// Standard deviation in pixels of the Gaussian through which the half-resolution estimate
    /// replaces the one-pass result's low frequencies (default 2); 0 leaves out the coarse
    /// scale. At most 64.
    pub coarse_blur: f64,
    /// The clean-up pass's noise level as a fraction of `lofi_run_params.noise_level` (default
    /// 0.1); 0 leaves the pass out. At most 1.
    pub cleanup: f64,
}

/// The measured defaults ([`engine::Refinement::default`]).
pub fn default_refinement() -> lofi_refinement {
    let d = engine::Refinement::default();
    lofi_refinement {
        struct_size: std::mem::size_of::<lofi_refinement>(),
        coarse_blur: d.coarse_blur,
        cleanup: d.cleanup,
    }
}

// SAFETY: repr(C), leading usize; numbers only.
unsafe impl abi::Versioned for lofi_refinement {
    const NAME: &'static str = "lofi_refinement";
    const SIZES: &'static [usize] = &[std::mem::size_of::<Self>()];
    fn defaults() -> Self {
        default_refinement()
    }
}

/// Fills `*refinement` with the defaults (coarse blur 2 pixels, clean-up at 0.1 of the noise
/// level) for the layout `refinement->struct_size` declares; set it to
/// `sizeof(lofi_refinement)` first. `lofi_default_refinement()` does both.
///
/// # Safety
/// `refinement` must be NULL or valid for writes of the `struct_size` it declares.
#[no_mangle]
pub unsafe extern "C" fn lofi_init_refinement(refinement: *mut lofi_refinement) -> lofi_status {
    guard("lofi_init_refinement", || abi::init(refinement))
}

/// Refined denoising of the whole of `input` on its own pixel grid, for noise-level-aware
/// denoisers (`lofi_model_info.noise_level_aware`; `params->noise_level` is required): the
/// one-pass result, its low frequencies replaced by the denoiser's estimate from the image's
/// 2 x 2 means on two grids (at half the noise, where its neighbourhood reaches twice as far),
/// then a clean-up pass at a fraction of the noise level. About 2.5 times the time of
/// `lofi_reconstruct_region()` on the same image (with the self-ensemble of `params` in every
/// pass); on Set12 with the shipped quality model +0.29 dB at sigma 50/255, +0.12 at 25/255.
///
/// Colour: an RGB `input` (3 channels) and a gray denoiser (1 channel in and out) are denoised
/// channel by channel in CBM3D's opponent colour space (luminance, red - blue, green - magenta),
/// each channel told its share of `params->noise_level` and refined as above (both steps of
/// `refinement` at 0: one pass per channel), and turned back: `output` has 3 channels. Three
/// times the work of a gray image, plus three planes of the image in memory.
///
/// * `refinement`: NULL for `lofi_default_refinement()`.
/// * `output`: (height, width, channels) float32, `output_row_stride_bytes` apart (0: packed).
///   On failure its contents are unspecified.
/// * `params`, `report`, `report_size`: as for `lofi_reconstruct_region()`; the report counts the
///   pixels and batches of all passes, and the progress callback sees them as one run.
///
/// The whole image and two copies of the result are held in memory (the passes feed one
/// another); the budget applies to each pass's working memory.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_denoise_refined_sized(
    model: *const lofi_model,
    input: *const lofi_image,
    refinement: *const lofi_refinement,
    output: *mut f32,
    output_row_stride_bytes: usize,
    params: *const lofi_run_params,
    report: *mut lofi_run_report,
    report_size: usize,
) -> lofi_status {
    guard("lofi_denoise_refined", || {
        let handle = non_null(model, "model")?;
        let image = image_view(non_null(input, "input")?)?;
        let r = abi::read_in_or_default(refinement)?;
        let refinement = engine::Refinement { coarse_blur: r.coarse_blur, cleanup: r.cleanup };
        // image_view checked width x channels; a stride below a row is the engine's error.
        let row = image.width * image.channels;
        let (data, stride) = output_buffer(output, image.height, row, output_row_stride_bytes)?;
        let call = CallParams::new(params)?;
        check_report(report, report_size)?;
        let r = call.run(|mut options| {
            let pixels = image.height * image.width;
            let devices = run_devices(handle, &mut options, pixels, (image.height, image.width));
            engine::denoise_refined(
                &devices,
                image,
                OutputView { data, row_stride: stride },
                options,
                refinement,
            )
        })?;
        write_report(report, report_size, r);
        Ok(())
    })
}
