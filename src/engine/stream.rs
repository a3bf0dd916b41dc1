//! Input streaming: for each batch, only the part of the prepared input that the batch's samples
//! can reach is read from the caller (or from a file) and moved to the device, so that working
//! memory does not depend on the input's size.
//!
//! The reach of a batch comes from the model's geometry: every sample sits at the target
//! coordinate plus one of the shared offsets (`patch x patch_scale x resolution scale`, learned
//! parameters, bounded from their actual values), and bicubic sampling reads the 4 x 4 pixels
//! around it, reflected at the image's edges. Models whose offsets depend on the pixel (CCPG) or
//! whose centres are a learned transform of the coordinate (INR-LoFi) can reach anywhere: they
//! fall back to the whole prepared image on the device (logged).
//!
//! Bit-identity with the whole-image path: the window is handed to the same `grid_sampler` call
//! as a *view of the whole image*: a tensor of the whole image's sizes whose strides are the
//! window's and whose data pointer is shifted back by the window's origin. The sampler computes
//! exactly the same source coordinates, weights and reflections as on the whole image, and reads
//! only pixels inside the window (the window covers every pixel the batch's samples reach, with a
//! margin). Nothing else ever reads through that view.
//!
//! The Fourier filter is global: it is computed once on the host for the whole image, and the
//! windows are cut from the filtered image. When that image and its FFT buffers would take more
//! than half the budget (on the CPU; more than half the host's available memory with a GPU), it is
//! computed in bands into a scratch file instead and the windows are read from there
//! ([`super::spilled_filter`]; equal up to float32 rounding, logged).

use std::ops::Range;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use super::budget::{self, bytes_per_pixel, format_bytes, BatchPlan, BATCH_QUANTUM};
use super::host_copy::PendingValues;
use super::spilled_filter::{filter_to_scratch, SpilledImage};
use super::{ImageView, OutputView, Progress, Region, Window};
use crate::error::{Error, Result};
use crate::kernels::SelfEnsemble;
use crate::model::Model;

/// Pixels of margin around a batch's computed reach: float32 rounding of coordinates (a sixteenth
/// of a pixel at the largest coordinates accepted) and the bicubic kernel's floor.
const MARGIN: f64 = 3.0;

/// What a batch's values are called in an out-of-memory error.
const BATCH_VALUES: &str = "a batch of results on the host";
/// Allocator rounding of the window buffers.
const SAFETY: f64 = 1.25;

/// An input image read in blocks: the caller's buffer ([`ImageView`]), a `.npy` file read
/// in pieces ([`crate::npy_bands::NpyInput`]), or anything else that can copy a rectangle of rows.
pub trait InputSource {
    fn height(&self) -> usize;
    fn width(&self) -> usize;
    fn channels(&self) -> usize;
    /// Appends rows `rows` x columns `cols`, all channels, in (row, column, channel) order.
    fn read_block(&self, rows: Range<usize>, cols: Range<usize>, out: &mut Vec<f32>) -> Result<()>;
    /// Checks the shape against a model expecting `c_in` channels, and that rows `rows` (those a
    /// call can reach) are finite. The default reads them in bands of about 1 MiB.
    fn check(&self, c_in: usize, rows: Range<usize>) -> Result<()> {
        check_shape(self.height(), self.width(), self.channels(), c_in)?;
        let (w, c) = (self.width(), self.channels());
        // Bands of one size for (almost) every input: glibc raises its mmap threshold to the
        // largest block freed, so a band that grew with the input's width (4 MiB at 16384^2, 2 MiB
        // at 1024^2) kept more of the later batches' buffers on the heap, and the peak resident
        // set grew with the input (median 41.6 MiB against 33.5 MiB for the same 512^2 output).
        let band = ((1 << 20) / (w * c)).max(1);
        let mut buffer = Vec::new();
        let mut r = rows.start;
        while r < rows.end {
            let end = (r + band).min(rows.end);
            buffer.clear();
            self.read_block(r..end, 0..w, &mut buffer)?;
            if let Some(i) = buffer.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid_input(format!(
                    "pixel (row {}, column {}, channel {}) is {} (the image must be finite)",
                    r + i / (w * c),
                    (i / c) % w,
                    i % c,
                    buffer[i]
                )));
            }
            r = end;
        }
        Ok(())
    }
}

pub(crate) fn check_shape(height: usize, width: usize, channels: usize, c_in: usize) -> Result<()> {
    if height < 2 || width < 2 {
        return Err(Error::invalid_input(format!(
            "the image is {height} x {width}; LoFi needs at least 2 x 2 pixels"
        )));
    }
    if height > crate::image_io::MAX_SIDE || width > crate::image_io::MAX_SIDE {
        return Err(Error::invalid_input(format!(
            "the image is {height} x {width}, larger than {} on a side",
            crate::image_io::MAX_SIDE
        )));
    }
    if channels != c_in {
        return Err(Error::invalid_input(format!(
            "the image has {channels} channel(s), the model expects {c_in}"
        )));
    }
    Ok(())
}

impl InputSource for ImageView<'_> {
    fn height(&self) -> usize {
        self.height
    }
    fn width(&self) -> usize {
        self.width
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn read_block(&self, rows: Range<usize>, cols: Range<usize>, out: &mut Vec<f32>) -> Result<()> {
        let c = self.channels;
        out.try_reserve(rows.len() * cols.len() * c)
            .map_err(|_| Error::OutOfMemory("a window of the input image".into()))?;
        for r in rows {
            let line = r * self.row_stride;
            out.extend_from_slice(&self.data[line + cols.start * c..line + cols.end * c]);
        }
        Ok(())
    }
    /// The caller's buffer is checked whole (its length against the stride, every value).
    fn check(&self, c_in: usize, _rows: Range<usize>) -> Result<()> {
        self.validate(c_in)
    }
}

/// How far (in input pixels, rows and columns) a model's samples reach from their target, or
/// `None` when it is not bounded (CCPG, INR-LoFi, or non-finite parameters).
pub fn reach(model: &Model, height: usize, width: usize) -> Option<[f64; 2]> {
    let net = model.net();
    if net.ccpg.is_some() || net.inr.is_some() {
        return None;
    }
    let _guard = tch::no_grad_guard();
    let scale = crate::kernels::geometry::resolution_scale(
        net.config.image_size,
        height as i64,
        width as i64,
        net.patch.device(),
    );
    // The network scales the offsets to `base * scale`, in grid units (the image spans [-1, 1]).
    // Both axes take the larger of the two components of `base`: a self-ensemble's quarter turns
    // swap rows and columns, and the geometries are nearly round, so one reach for both costs
    // little and keeps every plan valid for every ensemble.
    let scale = Vec::<f64>::try_from(scale.to_kind(Kind::Double).to_device(Device::Cpu)).unwrap_or_default();
    let base = (&net.patch_scale * &net.patch).to_kind(Kind::Double).to_device(Device::Cpu);
    let furthest = f64::try_from(base.abs().max()).unwrap_or(f64::INFINITY);
    let axis = |i: usize| scale.get(i).map_or(f64::INFINITY, |s| furthest * s);
    let reach = [axis(0) * (height as f64 - 1.0) / 2.0, axis(1) * (width as f64 - 1.0) / 2.0];
    reach.iter().all(|r| r.is_finite() && *r < super::MAX_COORDINATE).then_some(reach)
}

/// Whether libtorch accepts a view whose data pointer lies before its buffer (the window trick,
/// see the module's notes) on `device`: on the CPU only. On CUDA `from_blob` asks the driver which
/// device the pointer belongs to, and a pointer shifted before the window's allocation is accepted
/// only while it happens to land inside another block of the caching allocator's segment: a probe
/// with a small shift passed on an H200, and then `lofi reconstruct` on camera.png (512^2, windows
/// starting hundreds of rows in) failed with "the specified pointer resides on host memory". So
/// GPUs take the whole-image path, the input held on the device.
fn shifted_views_work(device: Device) -> bool {
    device == Device::Cpu
}

/// Bytes of the input's share that do not depend on the batch: the whole prepared image for a
/// model of unbounded reach, the filtered image on the CPU for a filter model (working memory of
/// the call there; on a GPU it stays on the host, outside the device budget), else nothing.
fn fixed_bytes(model: &Model, height: usize, width: usize, reach: Option<[f64; 2]>, spill: bool) -> usize {
    let cfg = model.config();
    let whole = || budget::bytes_for_image(cfg, height, width, model.precision().bytes());
    match reach {
        None => whole(),
        Some(_) if cfg.fourier_filtering && model.device() == Device::Cpu && !spill => whole(),
        Some(_) => 0,
    }
}

/// Whether a streaming filter model filters into a scratch file ([`super::spilled_filter`]): when
/// the filtered image and its FFT buffers would take more than half of `budget` on the CPU (the
/// batches get the rest), or more than half the host's available memory with a GPU (where the
/// budget is the device's).
fn spills(model: &Model, height: usize, width: usize, reach: Option<[f64; 2]>, budget: usize) -> bool {
    let cfg = model.config();
    if reach.is_none() || !cfg.fourier_filtering {
        return false;
    }
    let in_memory = budget::bytes_for_image(cfg, height, width, 4);
    match model.device() {
        Device::Cpu => in_memory > budget / 2,
        _ => budget::host_memory().available.is_some_and(|available| in_memory > available / 2),
    }
}

/// The budget the spilled filter's passes run under: a quarter of the call's on the CPU (bands
/// gain nothing from more once every read is contiguous), the host's share with a GPU. On the
/// CPU the batch plan keeps that quarter aside: the allocator may hold on to the passes' freed
/// buffers, and the budget bounds the peak of the whole call.
fn spill_budget(model: &Model, height: usize, width: usize, budget: usize) -> usize {
    let least = super::spilled_filter::minimum_budget(model.config(), height, width);
    match model.device() {
        Device::Cpu => (budget / 4).max(least).min(budget),
        _ => budget::host_memory().available.map_or(least, |a| (a / 4).max(least)),
    }
}

/// How output tiles map to input windows for one call.
struct Tiling {
    /// Input size (rows, columns).
    input: [usize; 2],
    /// Output grid of the call (rows, columns; `usize::MAX` for points).
    job: [usize; 2],
    /// Input pixels between neighbouring samples (rows, columns).
    step: [f64; 2],
    /// The model's reach in input pixels; `None`: no windows (the whole image).
    reach: Option<[f64; 2]>,
    window_pixel: usize,
    /// Bytes counted in the fixed part for the filter's FFT buffers, free again once the filtered
    /// image is made: the windows cut from it reuse them (CPU filter models).
    reusable: usize,
}

impl Tiling {
    /// Bytes of the window a tile of `tile` output samples reads.
    fn window_bytes(&self, tile: [usize; 2]) -> usize {
        let Some(reach) = self.reach else { return 0 };
        let extent = |a: usize| {
            let span =
                tile[a].saturating_sub(1) as f64 * self.step[a] + 2.0 * (reach[a] + 2.0 + MARGIN) + 2.0;
            (span.ceil() as usize).min(self.input[a])
        };
        extent(0) * extent(1) * self.window_pixel
    }

    /// The tile (output rows, columns) of a batch of `pixels`: the whole job when it fits, else
    /// about square (whole rows when the job is narrow).
    fn tile_of(&self, pixels: usize) -> [usize; 2] {
        let [rows, cols] = self.job;
        if rows.saturating_mul(cols) <= pixels {
            return self.job;
        }
        let side = ((pixels as f64).sqrt() as usize).max(1);
        let tile_cols = if cols <= 2 * side { cols } else { side };
        [(pixels / tile_cols).clamp(1, rows), tile_cols]
    }
}

/// The batch plan under `budget`: the largest batch whose tile's window, the batch and the fixed
/// part fit. Returns the plan, the tile (output rows, columns) and the window's allowance.
fn plan_tiles(
    model: &Model,
    tiling: &Tiling,
    budget: usize,
    fixed: usize,
) -> Result<(BatchPlan, [usize; 2], usize)> {
    let per_pixel = bytes_per_pixel(model.config(), model.precision().bytes());
    let window = |pixels: usize| tiling.window_bytes(tiling.tile_of(pixels)).saturating_sub(tiling.reusable);
    let cost = |pixels: usize| fixed.saturating_add(pixels * per_pixel).saturating_add(window(pixels));
    let too_small = || {
        let [height, width] = tiling.input;
        Error::BudgetTooSmall(format!(
            "a memory budget of {} is too small: this model on a {width} x {height} image needs at least {} \
             ({} for the prepared image{}, {} per pixel, batches of {BATCH_QUANTUM} pixels)",
            format_bytes(budget),
            format_bytes(cost(BATCH_QUANTUM)),
            format_bytes(fixed + window(BATCH_QUANTUM)),
            if tiling.reach.is_some() { " and its window" } else { "" },
            format_bytes(per_pixel),
        ))
    };
    let work = tiling.job[0].saturating_mul(tiling.job[1]);
    let mut quanta = budget.saturating_sub(fixed) / (per_pixel * BATCH_QUANTUM);
    if work != usize::MAX {
        quanta = quanta.min(work.div_ceil(BATCH_QUANTUM));
    }
    quanta = quanta.min(super::batch_cap(model) / BATCH_QUANTUM);
    if quanta == 0 {
        return Err(too_small());
    }
    while cost(quanta * BATCH_QUANTUM) > budget {
        if quanta == 1 {
            return Err(too_small());
        }
        let over = cost(quanta * BATCH_QUANTUM) - budget;
        quanta = quanta.saturating_sub(over.div_ceil(per_pixel * BATCH_QUANTUM).max(1)).max(1);
    }
    let batch_pixels = quanta * BATCH_QUANTUM;
    let tile = tiling.tile_of(batch_pixels);
    let window_allowance = tiling.window_bytes(tile);
    let plan =
        BatchPlan { batch_pixels, bytes_per_pixel: per_pixel, image_bytes: fixed + window(batch_pixels) };
    Ok((plan, tile, window_allowance))
}

/// The smallest budget a reconstruction of a `width` x `height` input runs with: batches of one
/// quantum, on grids of up to one sample per input pixel and on points (a coarser grid reads
/// wider windows and may need more; its error states how much).
pub fn minimum_budget(model: &Model, height: usize, width: usize) -> usize {
    let reach = reach(model, height, width).filter(|_| shifted_views_work(model.device()));
    let least = |spill: bool| {
        let tiling = Tiling {
            input: [height, width],
            job: [height, width],
            step: [1.0, 1.0],
            reach,
            window_pixel: window_pixel_bytes(model, spill),
            reusable: if spill { 0 } else { reusable_bytes(model, height, width, reach) },
        };
        let per_pixel = bytes_per_pixel(model.config(), model.precision().bytes());
        fixed_bytes(model, height, width, reach, spill)
            + per_pixel * BATCH_QUANTUM
            + tiling.window_bytes(tiling.tile_of(BATCH_QUANTUM)).saturating_sub(tiling.reusable)
    };
    let cfg = model.config();
    if reach.is_none() || !cfg.fourier_filtering || model.device() != Device::Cpu {
        return least(false);
    }
    // The filter spills below twice its in-memory bytes (`spills`), and stays in memory above.
    // Spilled, the plan keeps max(budget / 4, the passes' least) aside (`spill_budget`).
    let doubled = 2 * budget::bytes_for_image(cfg, height, width, 4) + 2;
    let batches = least(true);
    let spilled =
        (super::spilled_filter::minimum_budget(cfg, height, width) + batches).max((4 * batches).div_ceil(3));
    if spilled < doubled {
        spilled
    } else {
        least(false).max(doubled)
    }
}

/// The filter's FFT buffers that [`fixed_bytes`] counts (see `budget::bytes_for_image`) and that
/// are free again while batches run: on the CPU, for a filter model that streams.
fn reusable_bytes(model: &Model, height: usize, width: usize, reach: Option<[f64; 2]>) -> usize {
    let cfg = model.config();
    if reach.is_none() || !cfg.fourier_filtering || model.device() != Device::Cpu {
        return 0;
    }
    let pad = crate::config::FILTER_PAD as usize;
    let padded = ((height + 2 * pad) * (width + 2 * pad)) as f64;
    let c_f = cfg.filter_channels() as f64;
    (padded * (8.0 * (cfg.spectrum_channels() as f64 + 3.0 * c_f) + 16.0 * c_f)) as usize
}

/// The pixels of an axis of `n` pixels that bicubic, reflection-padded sampling at positions
/// `[lo, hi]` (pixel units) `reach` pixels around can read.
fn reachable(lo: f64, hi: f64, reach: f64, n: usize) -> Range<usize> {
    let last = (n - 1) as f64;
    let lo = (lo - reach).floor() - 1.0 - MARGIN;
    let hi = (hi + reach).floor() + 2.0 + MARGIN;
    if !(lo.is_finite() && hi.is_finite()) || lo < -last || hi > 2.0 * last {
        return 0..n;
    }
    let (mut first, mut end) =
        if lo.max(0.0) <= hi.min(last) { (lo.max(0.0), hi.min(last)) } else { (last, 0.0) };
    if lo < 0.0 {
        // Reflected about 0: [lo, 0) reads [1, -lo].
        first = 0.0;
        end = end.max(-lo);
    }
    if hi > last {
        // Reflected about the last pixel: (last, hi] reads [2 last - hi, last).
        first = first.min(2.0 * last - hi);
        end = last;
    }
    first as usize..(end as usize + 1).min(n)
}

/// The output grid of a region reconstruction: `grid_width` x `grid_height` samples over `region`.
#[derive(Clone, Copy, Debug)]
pub struct GridJob {
    pub region: Region,
    pub grid_width: usize,
    pub grid_height: usize,
}

impl GridJob {
    fn axis(lo: f64, hi: f64, n: usize, i: usize) -> f64 {
        if n == 1 {
            0.5 * (lo + hi)
        } else {
            lo + i as f64 * ((hi - lo) / (n as f64 - 1.0))
        }
    }
    /// Input column of grid column `i`.
    pub fn x(&self, i: usize) -> f64 {
        Self::axis(self.region.x0, self.region.x1, self.grid_width, i)
    }
    /// Input row of grid row `i`.
    pub fn y(&self, i: usize) -> f64 {
        Self::axis(self.region.y0, self.region.y1, self.grid_height, i)
    }
    /// Input pixels between neighbouring samples (rows, columns).
    fn step(&self) -> [f64; 2] {
        let step = |lo: f64, hi: f64, n: usize| if n > 1 { (hi - lo).abs() / (n as f64 - 1.0) } else { 0.0 };
        [
            step(self.region.y0, self.region.y1, self.grid_height),
            step(self.region.x0, self.region.x1, self.grid_width),
        ]
    }
}

/// Where the prepared input comes from, batch by batch.
enum Input {
    /// Windows read from the source (or cut from the filtered image) per batch.
    Streamed { filtered: Option<Filtered>, reach: [f64; 2] },
    /// The whole prepared image on the device (models of unbounded reach).
    Whole(Tensor),
}

/// The Fourier-filtered input of a streaming filter model.
enum Filtered {
    /// The whole filtered image, (1, C', H, W) float32 on the host.
    InMemory(Tensor),
    /// Filtered in bands into a scratch file (inputs too large for the budget); shared by the
    /// streamers of several devices (see [`reconstruct_rows_on_devices`]).
    Spilled(Arc<SpilledImage>),
}

/// A reconstruction set up once (input checked, filter applied, batch plan made) and run on one
/// or more windows of its output grid (the command line runs row bands of a huge output through
/// one streamer, writing each band to the file before the next).
pub struct Streamer<'a> {
    model: &'a Model,
    source: &'a dyn InputSource,
    input: Input,
    noise_level: Option<Tensor>,
    self_ensemble: SelfEnsemble,
    plan: BatchPlan,
    /// Output samples per tile (rows, columns): one batch each.
    tile: [usize; 2],
    /// Bytes a window of the input may take (the plan's share).
    window_allowance: usize,
    height: usize,
    width: usize,
}

/// Bytes of working memory per pixel of an input window: the block read from the source, its
/// tensor and channel-first copy, and the filtered window cut from the host image; or, from a
/// spilled filter's scratch file, the block read, its tensor and channel-first copy (all float32).
fn window_pixel_bytes(model: &Model, spill: bool) -> usize {
    let cfg = model.config();
    let (c, c_prep) = (cfg.c_in as f64, cfg.sampled_channels() as f64);
    let values = if spill { 3.0 * c_prep } else { 3.0 * c + c_prep };
    (values * 4.0 * SAFETY).ceil() as usize
}

/// The whole image of `source` as a (1, C, H, W) float32 tensor on the host (the rows read are
/// freed once copied into it).
fn whole_image(source: &dyn InputSource) -> Result<Tensor> {
    let (height, width, channels) = (source.height(), source.width(), source.channels());
    let mut data = Vec::new();
    source.read_block(0..height, 0..width, &mut data)?;
    ImageView { data: &data, height, width, channels, row_stride: width * channels }.to_tensor()
}

/// What a [`Streamer`] decides before any work: the window reach (`None`: the whole image), the
/// spilled filter's budget (`None`: no spill) and the batch plan.
struct Setup {
    /// The model's reach when batches read windows (bounded reach, and views that work).
    reach: Option<[f64; 2]>,
    /// Whether the model's reach is bounded at all (for the log message when it is not).
    bounded: bool,
    passes: Option<usize>,
    plan: BatchPlan,
    tile: [usize; 2],
    window_allowance: usize,
}

impl Setup {
    /// Checks the input and plans the batches of `job` (or of points, `None`): nothing is read
    /// but the rows' check, so a budget too small fails before any work.
    fn new(
        model: &Model,
        source: &dyn InputSource,
        job: Option<(&GridJob, Range<usize>)>,
        budget: usize,
    ) -> Result<Setup> {
        let cfg = model.config();
        let c_in = cfg.c_in as usize;
        check_shape(source.height(), source.width(), source.channels(), c_in)?;
        let (height, width) = (source.height(), source.width());
        let bounded = reach(model, height, width);
        let reach = bounded.filter(|_| shifted_views_work(model.device()));
        let rows_needed = match (reach, &job) {
            (Some(reach), Some((job, rows))) if !rows.is_empty() => {
                let (a, b) = (job.y(rows.start), job.y(rows.end - 1));
                reachable(a.min(b), a.max(b), reach[0], height)
            }
            _ => 0..height,
        };
        source.check(c_in, rows_needed)?;
        let device = model.device();
        let budget =
            if device == Device::Cpu { budget::host_budget(budget, budget::host_memory()) } else { budget };
        let (job_rows, job_cols, step) = match job {
            Some((job, _)) => (job.grid_height, job.grid_width, job.step()),
            None => (usize::MAX, usize::MAX, [1.0, 1.0]),
        };
        let spill = spills(model, height, width, reach, budget);
        let tiling = Tiling {
            input: [height, width],
            job: [job_rows, job_cols],
            step,
            reach,
            window_pixel: window_pixel_bytes(model, spill),
            reusable: if spill { 0 } else { reusable_bytes(model, height, width, reach) },
        };
        let passes = spill.then(|| spill_budget(model, height, width, budget));
        let fixed = match passes {
            Some(passes) if device == Device::Cpu => passes,
            _ => fixed_bytes(model, height, width, reach, spill),
        };
        let (plan, tile, window_allowance) = plan_tiles(model, &tiling, budget, fixed)?;
        Ok(Setup { reach, bounded: bounded.is_some(), passes, plan, tile, window_allowance })
    }
}

/// The Fourier filter of `source` computed in bands through scratch files within `passes` bytes
/// (see [`Streamer::prepare`] for `progress`).
fn filter_in_bands(
    model: &Model,
    filter: &Tensor,
    source: &dyn InputSource,
    passes: usize,
    progress: &mut dyn FnMut([usize; 2]) -> bool,
) -> Result<Arc<SpilledImage>> {
    Ok(Arc::new(filter_to_scratch(model.config(), &filter.to_device(Device::Cpu), source, passes, progress)?))
}

/// What the streamers of several devices share, found once: the batch plan, the tile, and the
/// filter computed in bands (`None` where it would not spill; see [`Streamer::prepare`] for
/// `progress`). A filter that fits is computed in memory by each device.
pub(crate) fn shared_setup(
    model: &Model,
    source: &dyn InputSource,
    job: (&GridJob, Range<usize>),
    budget: usize,
    progress: &mut dyn FnMut([usize; 2]) -> bool,
) -> Result<(BatchPlan, [usize; 2], Option<Arc<SpilledImage>>)> {
    let _guard = tch::no_grad_guard();
    let Setup { reach, passes, plan, tile, .. } = Setup::new(model, source, Some(job), budget)?;
    let spilled = match (&model.net().filter, reach, passes) {
        (Some(filter), Some(_), Some(passes)) => {
            Some(filter_in_bands(model, filter, source, passes, progress)?)
        }
        _ => None,
    };
    Ok((plan, tile, spilled))
}

/// The batch plan and tile (output samples per batch, rows and columns) a [`Streamer`] of `job`
/// would use, without preparing the input (no filter is computed).
pub fn plan_of(
    model: &Model,
    source: &dyn InputSource,
    job: (&GridJob, Range<usize>),
    budget: usize,
) -> Result<(BatchPlan, [usize; 2])> {
    let setup = Setup::new(model, source, Some(job), budget)?;
    Ok((setup.plan, setup.tile))
}

impl<'a> Streamer<'a> {
    /// Sets up the reconstruction of `job` (or of points, `None`) from `source`, checking the rows
    /// that grid rows `rows` can reach (all rows for points). `budget` in bytes; `noise_level`
    /// already checked against the model. See [`Streamer::prepare`] for a long filter's progress.
    pub fn new(
        model: &'a Model,
        source: &'a dyn InputSource,
        job: Option<(&GridJob, Range<usize>)>,
        budget: usize,
        noise_level: Option<f64>,
    ) -> Result<Streamer<'a>> {
        Self::prepare(model, source, job, budget, noise_level, &mut |_| true)
    }

    /// [`Streamer::new`], calling `filter_progress` with [pieces done, pieces in all] after every
    /// piece (band or strip) of the passes of a Fourier filter that runs in bands through scratch
    /// files (seconds to minutes on huge inputs); returning `false` cancels the call
    /// ([`Error::Cancelled`]). Not called otherwise.
    pub fn prepare(
        model: &'a Model,
        source: &'a dyn InputSource,
        job: Option<(&GridJob, Range<usize>)>,
        budget: usize,
        noise_level: Option<f64>,
        filter_progress: &mut dyn FnMut([usize; 2]) -> bool,
    ) -> Result<Streamer<'a>> {
        Self::prepare_sharing(model, source, job, budget, noise_level, None, filter_progress)
    }

    /// [`Streamer::prepare`] that takes the filter computed in bands from `spilled` (from
    /// [`shared_setup`] for the same model, input and budget) instead of computing it again.
    fn prepare_sharing(
        model: &'a Model,
        source: &'a dyn InputSource,
        job: Option<(&GridJob, Range<usize>)>,
        budget: usize,
        noise_level: Option<f64>,
        spilled: Option<Arc<SpilledImage>>,
        filter_progress: &mut dyn FnMut([usize; 2]) -> bool,
    ) -> Result<Streamer<'a>> {
        let cfg = model.config();
        let (height, width) = (source.height(), source.width());
        let _guard = tch::no_grad_guard();
        let device = model.device();
        let Setup { reach, bounded, passes, plan, tile, window_allowance } =
            Setup::new(model, source, job, budget)?;
        let input = match reach {
            None => {
                if !bounded {
                    log::info!(
                        "this model's sampling geometry is learned per pixel (CCPG or INR-LoFi), so a batch can \
                         reach anywhere in the input: the whole prepared image goes to the device (no input streaming)"
                    );
                }
                // float32, as everywhere: sampling runs in float32 (see `forward_conditioned`).
                let prepared = model.net().prepare(&whole_image(source)?.to_device(device))?;
                Input::Whole(prepared)
            }
            Some(reach) => {
                let filtered = match (&model.net().filter, passes) {
                    (Some(filter), Some(passes)) => Some(Filtered::Spilled(match spilled {
                        Some(shared) => shared,
                        None => filter_in_bands(model, filter, source, passes, filter_progress)?,
                    })),
                    (Some(filter), None) => Some(Filtered::InMemory(crate::kernels::filter::apply_filter(
                        cfg,
                        &filter.to_device(Device::Cpu),
                        &whole_image(source)?,
                    ))),
                    (None, _) => None,
                };
                Input::Streamed { filtered, reach }
            }
        };
        let noise_level = noise_level.map(|s| Tensor::from_slice(&[s as f32]).to_device(device));
        Ok(Streamer {
            model,
            source,
            input,
            noise_level,
            self_ensemble: SelfEnsemble::Off,
            plan,
            tile,
            window_allowance,
            height,
            width,
        })
    }

    /// The streamer of one device among several (see [`shared_setup`]): the shared filter, the
    /// call's self-ensemble, and, for a replica that has to filter in bands on its own (nothing
    /// else calls it), a stop when another device failed or the caller cancelled.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replica(
        model: &'a Model,
        source: &'a dyn InputSource,
        job: (&GridJob, Range<usize>),
        budget: usize,
        noise_level: Option<f64>,
        self_ensemble: SelfEnsemble,
        spilled: Option<Arc<SpilledImage>>,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Streamer<'a>> {
        use std::sync::atomic::Ordering;
        Ok(Self::prepare_sharing(model, source, Some(job), budget, noise_level, spilled, &mut |_| {
            !stop.load(Ordering::Relaxed)
        })?
        .with_self_ensemble(self_ensemble))
    }

    /// Averages every value over `ensemble` (already checked against the model). Windows need no
    /// change: [`reach`] already covers the turned offsets.
    pub fn with_self_ensemble(mut self, ensemble: SelfEnsemble) -> Self {
        self.self_ensemble = ensemble;
        self
    }

    /// The batch plan (its `image_bytes` are the input's share: window and, on the CPU, the
    /// filtered image).
    pub fn plan(&self) -> BatchPlan {
        self.plan
    }

    /// Output samples per tile (rows, columns); a tile is one batch.
    pub fn tile(&self) -> [usize; 2] {
        self.tile
    }

    /// Whether batches read windows of the input (false: the whole image is on the device).
    pub fn is_streaming(&self) -> bool {
        matches!(self.input, Input::Streamed { .. })
    }

    /// Whether the Fourier filter was computed in bands into a scratch file (the filtered image
    /// did not fit the budget; see [`super::spilled_filter`]).
    pub fn filter_spilled(&self) -> bool {
        matches!(self.input, Input::Streamed { filtered: Some(Filtered::Spilled(_)), .. })
    }

    /// Normalised model coordinate of a continuous pixel position (row y, column x).
    fn normalise(&self, y: f64, x: f64) -> [f32; 2] {
        [(y / (self.height as f64 - 1.0) - 0.5) as f32, (x / (self.width as f64 - 1.0) - 0.5) as f32]
    }

    /// The window of the input the points `coords` (normalised pairs) reach.
    fn window_of(&self, coords: &[f32], reach: [f64; 2]) -> [Range<usize>; 2] {
        let mut lo = [f64::INFINITY; 2];
        let mut hi = [f64::NEG_INFINITY; 2];
        for p in coords.chunks_exact(2) {
            for a in 0..2 {
                lo[a] = lo[a].min(p[a] as f64);
                hi[a] = hi[a].max(p[a] as f64);
            }
        }
        let sides = [self.height, self.width];
        let px = |c: f64, n: usize| (c + 0.5) * (n as f64 - 1.0);
        [0, 1].map(|a| reachable(px(lo[a], sides[a]), px(hi[a], sides[a]), reach[a], sides[a]))
    }

    /// The prepared input window `rows` x `cols` on the device, (1, C', h, w) float32 whatever the
    /// network's precision. It must not be cast: `forward_conditioned` samples in float32, and a
    /// half-precision window would be cast back there *through the whole-image view* of
    /// `run_batch`, which copies (and reads) the whole image's extent instead of the window's.
    fn read_window(
        &self,
        filtered: Option<&Filtered>,
        rows: &Range<usize>,
        cols: &Range<usize>,
    ) -> Result<Tensor> {
        let (h, w) = (rows.len() as i64, cols.len() as i64);
        let window = match filtered {
            Some(Filtered::InMemory(f)) => {
                f.narrow(2, rows.start as i64, h).narrow(3, cols.start as i64, w).contiguous()
            }
            Some(Filtered::Spilled(f)) => f.read_window(rows, cols)?,
            None => {
                let c = self.source.channels();
                let mut block = crate::error::try_vec(rows.len() * cols.len() * c, "a window of the input")?;
                self.source.read_block(rows.clone(), cols.clone(), &mut block)?;
                Tensor::f_from_slice(&block)?
                    .view([h, w, c as i64])
                    .permute([2, 0, 1])
                    .unsqueeze(0)
                    .contiguous()
            }
        };
        Ok(window.to_device(self.model.device()).contiguous())
    }

    /// Runs the network on `count` points (`coords`, normalised pairs, padded in place to a whole
    /// quantum) and returns their (count, c_out) float32 values on the host.
    fn run_batch(&self, coords: &mut Vec<f32>, count: usize) -> Result<Vec<f32>> {
        self.launch_batch(coords, count)?.finish(BATCH_VALUES)
    }

    /// [`run_batch`](Self::run_batch) without waiting for the values: on a GPU the work and the
    /// copy of its results to the host are queued, and the caller can launch the next batch
    /// before it finishes this one (see [`super::host_copy`]).
    fn launch_batch(&self, coords: &mut Vec<f32>, count: usize) -> Result<PendingValues> {
        let padded = count.div_ceil(BATCH_QUANTUM) * BATCH_QUANTUM;
        let (ly, lx) = (coords[2 * count - 2], coords[2 * count - 1]);
        coords.truncate(2 * count);
        for _ in count..padded {
            coords.extend_from_slice(&[ly, lx]);
        }
        let device = self.model.device();
        let batch = Tensor::from_slice(coords).view([1, padded as i64, 2]).to_device(device);
        let forward = |image: &Tensor| {
            self.model
                .pixel_net()
                .forward_ensemble(image, &batch, self.noise_level.as_ref(), self.self_ensemble)
                .narrow(1, 0, count as i64)
                .squeeze_dim(0)
                .to_kind(Kind::Float)
        };
        let out = match &self.input {
            Input::Whole(image) => forward(image),
            Input::Streamed { filtered, reach } => {
                let [rows, cols] = self.window_of(&coords[..2 * count], *reach);
                let window = self.read_window(filtered.as_ref(), &rows, &cols)?;
                // The kernel casts its image to float32: any other kind would be copied through
                // the view below, the whole image's extent of it (see `read_window`).
                if window.kind() != Kind::Float {
                    return Err(Error::Internal(format!("an input window of kind {:?}", window.kind())));
                }
                let (_, c, wh, ww) = window.size4()?;
                let shift =
                    (rows.start as i64 * ww + cols.start as i64) * window.kind().elt_size_in_bytes() as i64;
                let base = (window.data_ptr() as *const u8).wrapping_sub(shift as usize);
                // SAFETY: a view of the whole image's sizes over the window's memory: element
                // (0, ch, y, x) is at window + ch*wh*ww + (y - rows.start)*ww + (x - cols.start).
                // Only grid_sampler reads through it, and only at the pixels the batch's samples
                // reach, which the window covers (`window_of`, with a margin). `window` outlives
                // the view (both dropped at the end of this arm, the view first).
                let whole = unsafe {
                    Tensor::f_from_blob(
                        base,
                        &[1, c, self.height as i64, self.width as i64],
                        &[c * wh * ww, wh * ww, ww, 1],
                        window.kind(),
                        window.device(),
                    )?
                };
                let out = forward(&whole);
                drop(whole);
                drop(window);
                out
            }
        };
        PendingValues::start(&out, BATCH_VALUES)
    }

    /// Reconstructs `window` of the grid `job` into `out` ((rows, cols, c_out) with its row
    /// stride), tile by tile; one batch per tile.
    pub fn run_grid(
        &self,
        job: &GridJob,
        window: Window,
        out: OutputView<'_>,
        progress: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    ) -> Result<usize> {
        let _guard = tch::no_grad_guard();
        let c_out = self.model.config().c_out as usize;
        let OutputView { data, row_stride } = out;
        let [tile_rows, tile_cols] = self.tile;
        let total = window.rows * window.cols;
        let mut coords = crate::error::try_vec(self.plan.batch_pixels * 2, "the batch coordinates")?;
        let (mut done, mut batches) = (0, 0);
        // On a GPU tile k is written out after tile k + 1 is launched: the device computes the
        // next tile while the host waits for this one's values and writes them.
        let mut pending: Option<(Window, PendingValues)> = None;
        let mut write_out = |tile: Window, values: PendingValues| -> Result<()> {
            let values = values.finish(BATCH_VALUES)?;
            for (k, line) in values.chunks_exact(tile.cols * c_out).enumerate() {
                let at = (tile.row0 + k) * row_stride + tile.col0 * c_out;
                data[at..at + tile.cols * c_out].copy_from_slice(line);
            }
            batches += 1;
            done += tile.rows * tile.cols;
            if let Some(cb) = progress.as_mut() {
                if !cb(Progress::new(done, total)) {
                    return Err(Error::Cancelled);
                }
            }
            Ok(())
        };
        for r0 in (0..window.rows).step_by(tile_rows) {
            let rows = tile_rows.min(window.rows - r0);
            for c0 in (0..window.cols).step_by(tile_cols) {
                let cols = tile_cols.min(window.cols - c0);
                coords.clear();
                for r in r0..r0 + rows {
                    let y = job.y(window.row0 + r);
                    for c in c0..c0 + cols {
                        coords.extend_from_slice(&self.normalise(y, job.x(window.col0 + c)));
                    }
                }
                let launched = self.launch_batch(&mut coords, rows * cols)?;
                let tile = Window { row0: r0, col0: c0, rows, cols };
                if let Some((previous, values)) = pending.take() {
                    write_out(previous, values)?;
                }
                // Values already on the host (the CPU) are written at once, so that progress and
                // cancellation follow the work as before.
                if launched.is_ready() {
                    write_out(tile, launched)?;
                } else {
                    pending = Some((tile, launched));
                }
            }
        }
        if let Some((previous, values)) = pending.take() {
            write_out(previous, values)?;
        }
        Ok(batches)
    }

    /// Reconstructs the points `(x, y)` into `out` ((points, c_out)): runs of consecutive points,
    /// halved while the window they reach exceeds the plan's.
    pub fn run_points(
        &self,
        points: &[[f64; 2]],
        out: &mut [f32],
        progress: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    ) -> Result<usize> {
        let _guard = tch::no_grad_guard();
        let c_out = self.model.config().c_out as usize;
        let mut coords = crate::error::try_vec(self.plan.batch_pixels * 2, "the batch coordinates")?;
        let (mut start, mut batches) = (0, 0);
        while start < points.len() {
            let mut count = self.plan.batch_pixels.min(points.len() - start);
            loop {
                coords.clear();
                for p in &points[start..start + count] {
                    coords.extend_from_slice(&self.normalise(p[1], p[0]));
                }
                let fits = match &self.input {
                    Input::Streamed { reach, .. } if count > 1 => {
                        let [rows, cols] = self.window_of(&coords, *reach);
                        rows.len() * cols.len() * window_pixel_bytes(self.model, self.filter_spilled())
                            <= self.window_allowance.max(1)
                    }
                    _ => true,
                };
                if fits {
                    break;
                }
                count = count.div_ceil(2);
            }
            let values = self.run_batch(&mut coords, count)?;
            out[start * c_out..start * c_out + values.len()].copy_from_slice(&values);
            batches += 1;
            start += count;
            if let Some(cb) = progress.as_mut() {
                if !cb(Progress::new(start, points.len())) {
                    return Err(Error::Cancelled);
                }
            }
        }
        Ok(batches)
    }
}

/// Checks a rows call's grid and that `rows` is a non-empty range of its rows.
fn check_rows(job: &GridJob, rows: &Range<usize>) -> Result<()> {
    super::check_grid(job.region, job.grid_width, job.grid_height, None)?;
    if rows.is_empty() || rows.end > job.grid_height {
        return Err(Error::invalid_argument(format!(
            "rows {}..{} are empty or outside the {} rows of the output grid",
            rows.start, rows.end, job.grid_height
        )));
    }
    Ok(())
}

/// Reconstructs grid rows `rows` of `job` from `source` in bands of whole output rows, handing
/// each band (its first grid row and its (band rows, grid_width, c_out) values) to `sink` before
/// the next is computed: the command line writes huge outputs to disk this way, and an MPI rank
/// its share of the rows. A band holds at most `band_bytes` of output (at least one tile's rows);
/// it is output staging, outside the budget, like the caller's buffer of
/// [`reconstruct_region`](super::reconstruct_region). Progress counts the pixels of all bands.
pub fn reconstruct_rows(
    model: &Model,
    source: &dyn InputSource,
    job: GridJob,
    rows: Range<usize>,
    band_bytes: usize,
    options: super::RunOptions<'_>,
    sink: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
) -> Result<super::RunReport> {
    crate::error::catch_torch(move || {
        let c_out = model.config().c_out as usize;
        check_rows(&job, &rows)?;
        options.check(model)?;
        let _threads = super::ThreadScope::new(options.threads);
        let memory = super::cuda_memory::PeakTracker::start(model.device());
        let super::RunOptions { memory_budget, mut progress, noise_level, self_ensemble, .. } = options;
        let total = rows.len() * job.grid_width;
        let streamer = Streamer::prepare(
            model,
            source,
            Some((&job, rows.clone())),
            memory_budget,
            noise_level,
            &mut |pieces| progress.as_mut().is_none_or(|cb| cb(Progress::filtering(pieces, total))),
        )?
        .with_self_ensemble(self_ensemble);
        let row_values = job.grid_width * c_out;
        let tile_rows = streamer.tile[0];
        let band_rows = (tile_rows * (band_bytes / (tile_rows * row_values * 4)).max(1)).min(rows.len());
        let mut band = crate::error::try_vec(band_rows * row_values, "a band of output rows")?;
        band.resize(band_rows * row_values, 0f32);
        let (mut batches, mut before) = (0, 0);
        for row0 in rows.clone().step_by(band_rows) {
            let n = band_rows.min(rows.end - row0);
            let window = Window { col0: 0, row0, cols: job.grid_width, rows: n };
            let mut forward = |p: Progress| match progress.as_mut() {
                Some(cb) => cb(Progress::new(before + p.done, total)),
                None => true,
            };
            let mut band_progress: Option<&mut dyn FnMut(Progress) -> bool> = Some(&mut forward);
            let values = &mut band[..n * row_values];
            batches += streamer.run_grid(
                &job,
                window,
                OutputView { data: values, row_stride: row_values },
                &mut band_progress,
            )?;
            sink(row0, values)?;
            before += n * job.grid_width;
        }
        Ok(super::RunReport::new(streamer.plan(), total, batches, memory.measure()))
    })
}

/// [`reconstruct_rows`] on several devices: one model replica per device (`models`, the same
/// model loaded once per device), output bands dealt out to them as each finishes its last. Every
/// device plans with the whole budget (it is per device) and reads its own windows of the input;
/// a model with the Fourier filter computes the filtered image once per device. Each band is
/// computed by exactly one device with the arithmetic of one, so the result equals one device's
/// (bit for bit on CPUs with one thread each). `sink` runs on the calling thread, bands in the
/// order they complete.
pub fn reconstruct_rows_on_devices(
    models: &[&Model],
    source: &(dyn InputSource + Sync),
    job: GridJob,
    rows: Range<usize>,
    band_bytes: usize,
    options: super::RunOptions<'_>,
    sink: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
) -> Result<super::RunReport> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let first = super::first_replica(models)?;
    if models.len() == 1 {
        return reconstruct_rows(first, source, job, rows, band_bytes, options, sink);
    }
    check_rows(&job, &rows)?;
    options.check(first)?;
    let _threads = super::ThreadScope::new(options.threads);
    let super::RunOptions { memory_budget, noise_level, self_ensemble, mut progress, .. } = options;
    let row_values = job.grid_width * first.config().c_out as usize;
    // Bands of whole tiles of the first replica's plan (all replicas of one model on devices of
    // one kind plan alike); at least one band per device where the rows allow.
    // Planned without preparing the input. A filter too large for the budget is computed in
    // bands once, here (with progress), and shared by every device; one that fits is computed in
    // memory per device (on a GPU it stays on the host).
    let total = rows.len() * job.grid_width;
    let (plan, [tile_rows, _], spilled) = crate::error::catch_torch(|| {
        shared_setup(first, source, (&job, rows.clone()), memory_budget, &mut |pieces| {
            progress.as_mut().is_none_or(|cb| cb(Progress::filtering(pieces, total)))
        })
    })?;
    let per_device = rows.len().div_ceil(models.len());
    let band_rows = (tile_rows * (band_bytes / (tile_rows * row_values * 4)).max(1)).min(per_device).max(1);
    let bands: Vec<usize> = rows.clone().step_by(band_rows).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(usize, Vec<f32>, usize)>>(models.len());
    std::thread::scope(|scope| {
        for &model in models {
            let (tx, next, stop, bands, rows) = (tx.clone(), &next, &stop, &bands, rows.clone());
            let spilled = spilled.clone();
            scope.spawn(move || {
                let work = || -> Result<()> {
                    let streamer = Streamer::replica(
                        model,
                        source,
                        (&job, rows.clone()),
                        memory_budget,
                        noise_level,
                        self_ensemble,
                        spilled,
                        stop,
                    )?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= bands.len() || stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let row0 = bands[i];
                        let n = band_rows.min(rows.end - row0);
                        let mut values = crate::error::try_vec(n * row_values, "a band of output rows")?;
                        values.resize(n * row_values, 0f32);
                        let window = Window { col0: 0, row0, cols: job.grid_width, rows: n };
                        let out = OutputView { data: &mut values, row_stride: row_values };
                        let batches = streamer.run_grid(&job, window, out, &mut None)?;
                        if tx.send(Ok((row0, values, batches))).is_err() {
                            return Ok(());
                        }
                    }
                };
                if let Err(e) = crate::error::catch_torch(work) {
                    stop.store(true, Ordering::Relaxed);
                    let _ = tx.send(Err(e));
                }
            });
        }
        drop(tx);
        let (mut done, mut batches) = (0, 0);
        super::drain_news(rx, &stop, |(row0, values, b)| {
            sink(row0, &values)?;
            done += values.len() / row_values * job.grid_width;
            batches += b;
            super::report_progress(&mut progress, done, total)
        })?;
        Ok(super::RunReport::new(plan, total, batches, None))
    })
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn reachable_rows_include_reflections() {
        // Inside: floor +- the bicubic support and the margin.
        assert_eq!(reachable(10.0, 12.0, 0.0, 100), 6..18);
        // Near the top edge, [-1.x, ...] reflects back into [1, ...].
        // [0 - 3, 2 + 3] -> taps [-8, 10]: [0, 10] and the reflection of [-8, -1], [1, 8].
        assert_eq!(reachable(0.0, 2.0, 3.0, 100), 0..11);
        assert_eq!(reachable(0.0, 0.0, 12.0, 100), 0..18);
        // Near the bottom edge.
        assert_eq!(reachable(97.0, 99.0, 2.0, 100), 91..100);
        // Reflected beyond what the unreflected part reaches: [99 - 14, 99 + 15] reads down to 84.
        assert_eq!(reachable(99.0, 99.0, 10.0, 100), 84..100);
        // Beyond the image: the whole axis.
        assert_eq!(reachable(-500.0, 0.0, 1.0, 100), 0..100);
        assert_eq!(reachable(f64::NAN, 1.0, 1.0, 100), 0..100);
    }
}
