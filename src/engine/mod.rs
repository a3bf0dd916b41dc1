//! The streaming engine, shared by the command line, the C ABI and plug-and-play.
//!
//! A reconstruction is: plan a batch size from the memory budget, prepare the image once
//! (validate, move to the device, apply the Fourier filter), then stream batches of output
//! coordinates through the network, writing each batch straight into the caller's buffer.
//! Working memory is bounded by the plan, whatever the number of output pixels.

pub mod budget;
pub mod colour;
pub mod cuda_memory;
pub mod host_copy;
pub mod refine;
pub mod spilled_filter;
pub mod stream;

use tch::{Device, Kind, Tensor};

pub use budget::{format_bytes, parse_bytes, BatchPlan, BATCH_QUANTUM};
pub use refine::{denoise_refined, Refinement};
pub use stream::{GridJob, InputSource, Streamer};

pub use crate::kernels::SelfEnsemble;

use crate::error::{Error, Result};
use crate::model::Model;

/// Default working-memory budget: 512 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 512 << 20;

/// Largest coordinate magnitude accepted, in input pixels (regions and points). The network sees
/// coordinates as float32 fractions of the image: at 1e6 pixels their spacing is 1/16 pixel, and
/// beyond 2^24 neighbouring pixels become indistinguishable (and far beyond, the normalisation
/// overflows to infinity and the output to NaN). Samples this far outside the image are
/// reflections of reflections anyway.
pub const MAX_COORDINATE: f64 = 1e6;

fn check_coordinate(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_COORDINATE
}

/// A borrowed input image: row-major (H, W, C) float32 with a row stride in elements.
#[derive(Clone, Copy, Debug)]
pub struct ImageView<'a> {
    pub data: &'a [f32],
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    /// Elements from the start of one row to the next (>= width * channels).
    pub row_stride: usize,
}

impl<'a> ImageView<'a> {
    pub fn from_image(img: &'a crate::image_io::Image) -> Self {
        ImageView {
            data: &img.data,
            height: img.height,
            width: img.width,
            channels: img.channels,
            row_stride: img.width * img.channels,
        }
    }

    fn validate(&self, c_in: usize) -> Result<()> {
        if self.height < 2 || self.width < 2 {
            return Err(Error::invalid_input(format!(
                "the image is {} x {}; LoFi needs at least 2 x 2 pixels",
                self.height, self.width
            )));
        }
        if self.height > crate::image_io::MAX_SIDE || self.width > crate::image_io::MAX_SIDE {
            return Err(Error::invalid_input(format!(
                "the image is {} x {}, larger than {} on a side",
                self.height,
                self.width,
                crate::image_io::MAX_SIDE
            )));
        }
        if self.channels != c_in {
            return Err(Error::invalid_input(format!(
                "the image has {} channel(s), the model expects {c_in}",
                self.channels
            )));
        }
        let row = self.width * self.channels;
        if self.row_stride < row {
            return Err(Error::invalid_argument(format!(
                "row stride {} is smaller than a row ({} values)",
                self.row_stride, row
            )));
        }
        let needed = (self.height - 1) * self.row_stride + row;
        if self.data.len() < needed {
            return Err(Error::invalid_argument(format!(
                "the image buffer holds {} values, {} x {} x {} with stride {} needs {needed}",
                self.data.len(),
                self.height,
                self.width,
                self.channels,
                self.row_stride
            )));
        }
        for r in 0..self.height {
            let line = &self.data[r * self.row_stride..r * self.row_stride + row];
            if let Some(i) = line.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid_input(format!(
                    "pixel (row {r}, column {}, channel {}) is {} (the image must be finite)",
                    i / self.channels,
                    i % self.channels,
                    line[i]
                )));
            }
        }
        Ok(())
    }

    /// (1, C, H, W) float32 on the CPU.
    fn to_tensor(self) -> Result<Tensor> {
        let row = self.width * self.channels;
        let mut packed = crate::error::try_vec(self.height * row, "a packed copy of the input image")?;
        for r in 0..self.height {
            packed.extend_from_slice(&self.data[r * self.row_stride..r * self.row_stride + row]);
        }
        Ok(Tensor::f_from_slice(&packed)?
            .view([self.height as i64, self.width as i64, self.channels as i64])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .contiguous())
    }
}

/// A rectangle of the input's continuous pixel coordinates: x is the column, y the row, pixel
/// centres sit at integers, so the whole image is (0, 0, W-1, H-1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Region {
    pub fn whole(height: usize, width: usize) -> Region {
        Region { x0: 0.0, y0: 0.0, x1: width as f64 - 1.0, y1: height as f64 - 1.0 }
    }
    fn validate(&self) -> Result<()> {
        if ![self.x0, self.y0, self.x1, self.y1].into_iter().all(check_coordinate) {
            return Err(Error::invalid_argument(format!(
                "the region's corners ({}, {}) - ({}, {}) must be finite and within +-{MAX_COORDINATE:e} pixels \
                 (float32 coordinates lose sub-pixel precision beyond)",
                self.x0, self.y0, self.x1, self.y1
            )));
        }
        Ok(())
    }
}

/// A sub-window of the output grid (tiles): columns `col0..col0+cols`, rows `row0..row0+rows`.
/// Tiles of one grid reconstructed separately equal the whole grid: bit for bit on the CPU with
/// one thread (every pixel goes through the same arithmetic whatever its batch); with several
/// threads the BLAS may split a batch's rows differently, which changes the last bits (relative
/// differences of about 1e-7 were seen with 16 threads; none with 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub col0: usize,
    pub row0: usize,
    pub cols: usize,
    pub rows: usize,
}

/// The caller's output buffer: row-major (rows, cols, c_out) with a row stride in elements.
pub struct OutputView<'a> {
    pub data: &'a mut [f32],
    pub row_stride: usize,
}

/// Progress of a reconstruction, handed to the callback after every batch (pixels, points or
/// iterations done and in all), and, before the first batch of a model whose Fourier filter runs
/// in bands through scratch files, after every piece of the filter's passes (`done` 0 then).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    /// While the Fourier filter runs in bands: [pieces done, pieces in all] of its passes.
    pub filter: Option<[usize; 2]>,
}

impl Progress {
    /// `done` of `total` (pixels, points or iterations) computed.
    pub fn new(done: usize, total: usize) -> Progress {
        Progress { done, total, filter: None }
    }

    /// Before any of `total` is computed: `pieces` [done, in all] of the filter's passes.
    pub fn filtering(pieces: [usize; 2], total: usize) -> Progress {
        Progress { done: 0, total, filter: Some(pieces) }
    }
}

/// Per-call settings.
pub struct RunOptions<'a> {
    /// Working-memory budget in bytes (device memory on CUDA, host memory on the CPU).
    pub memory_budget: usize,
    /// CPU threads for this call (0: libtorch's default). Applies to the calling thread only and
    /// is restored afterwards.
    pub threads: usize,
    /// Called after every batch; returning `false` cancels the reconstruction.
    pub progress: Option<&'a mut dyn FnMut(Progress) -> bool>,
    /// Noise standard deviation of the input, for noise-level-aware models (required by them,
    /// refused by the others).
    pub noise_level: Option<f64>,
    /// The mean over turns and mirrors of the sampling geometry (one network pass per element;
    /// see [`SelfEnsemble`]): better estimates at a multiple of the time, same memory.
    pub self_ensemble: SelfEnsemble,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions {
            memory_budget: DEFAULT_MEMORY_BUDGET,
            threads: 0,
            progress: None,
            noise_level: None,
            self_ensemble: SelfEnsemble::Off,
        }
    }
}

impl RunOptions<'_> {
    /// Checks the noise level and the self-ensemble against `model`.
    fn check(&self, model: &Model) -> Result<()> {
        model.check_noise_level(self.noise_level)?;
        model.net().check_self_ensemble(self.self_ensemble)
    }
}

/// What a reconstruction did.
#[derive(Clone, Copy, Debug)]
pub struct RunReport {
    pub plan: BatchPlan,
    /// Output values computed (pixels).
    pub pixels: usize,
    pub batches: usize,
    /// Peak device memory measured during the call (CUDA only): bytes allocated above what was
    /// allocated when the call began.
    pub measured_peak_bytes: Option<u64>,
    /// Peak device memory reserved by libtorch's caching allocator during the call (CUDA only;
    /// absolute, process-wide on the device).
    pub measured_peak_reserved_bytes: Option<u64>,
    /// Device memory reserved when the call returned (CUDA only).
    pub reserved_bytes: Option<u64>,
    /// Workers that ran the call, each with its own batches: devices, or single-threaded CPU
    /// workers sharing one model (see [`cpu_workers`]); 1 for one.
    pub workers: usize,
}

impl RunReport {
    fn new(plan: BatchPlan, pixels: usize, batches: usize, measured: Option<cuda_memory::Measured>) -> Self {
        RunReport {
            plan,
            pixels,
            batches,
            measured_peak_bytes: measured.map(|m| m.peak_allocated),
            measured_peak_reserved_bytes: measured.map(|m| m.peak_reserved),
            reserved_bytes: measured.map(|m| m.reserved),
            workers: 1,
        }
    }
}

/// An image prepared for one model: validated, on the model's device, filtered.
pub struct PreparedImage<'m> {
    model: &'m Model,
    tensor: Tensor,
    /// (1,) float32 on the device: the noise level of a noise-aware model.
    noise_level: Option<Tensor>,
    self_ensemble: SelfEnsemble,
    pub height: usize,
    pub width: usize,
}

/// The thread count a call asks for, clamped to the machine's available parallelism (more
/// threads than cores never helps, and a huge count would make libtorch's OpenMP pool try to
/// start that many threads). The first clamp of the process is logged at WARN, later ones at
/// DEBUG.
pub fn clamp_threads(threads: usize) -> usize {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads <= available {
        return threads;
    }
    let message =
        format!("threads = {threads} is more than the {available} this machine offers: using {available}");
    if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        log::debug!("{message}");
    } else {
        log::warn!("{message}");
    }
    available
}

/// The threads a call asking for `threads` runs on: libtorch's count for 0, else
/// [`clamp_threads`].
pub fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        tch::get_num_threads().max(1) as usize
    } else {
        clamp_threads(threads)
    }
}

/// How many workers a CPU reconstruction of `pixels` outputs with `model` on `threads` threads
/// (0: libtorch's count) should run, each on one thread and its own bands of the output (the model
/// shared by all, through [`reconstruct_region_from_on_devices`]). libtorch parallelises each
/// operation over its threads, and they wait for one another at every operation's end: on a small
/// network that wait is a fifth of the time on two cores, on a large one in f32 the products are
/// long enough that splitting them wins. Measured on a 2-core AMD EPYC (`lofi bench --targets`):
/// the shipped denoiser (1.2 MFLOP per pixel) at 512^2 2.75 s as two workers against 3.06 s as one
/// in f32, 1.69 s against 1.83 s in bf16; the paper-size model (7.0 MFLOP) at 384^2 7 % slower as
/// workers in f32, 16 % faster in bf16. Hence workers when the per-pixel cost, bf16 counted at a
/// third (its products run about three times as fast), is under 4 MFLOP, and each thread gets four
/// batches or more.
pub fn cpu_workers(model: &Model, threads: usize, pixels: usize) -> usize {
    if model.device() != tch::Device::Cpu {
        return 1;
    }
    let threads = resolve_threads(threads);
    let flops = model.pixel_net().flops_per_pixel();
    let cost = if model.precision() == crate::device::Precision::F32 { flops } else { flops / 3.0 };
    if threads > 1 && cost < 4e6 && pixels >= 4 * budget::cpu_batch_cap(1) * threads {
        threads
    } else {
        1
    }
}

/// [`cpu_workers`] for a run under `budget` (bytes, shared by all workers) on an `height` x
/// `width` input: workers only while each one's share of the budget still holds a whole
/// cache-sized batch above the streaming minimum (at 16 MiB, two workers with 192-pixel batches
/// took 3.38 s on the shipped denoiser at 512^2, one worker 2.76 s). Used by `lofi reconstruct`
/// and the C API's region calls.
pub fn cpu_workers_within(
    model: &Model,
    threads: usize,
    pixels: usize,
    budget: usize,
    height: usize,
    width: usize,
) -> usize {
    let n = cpu_workers(model, threads, pixels);
    if n <= 1 {
        return 1;
    }
    let batch = budget::bytes_per_pixel(model.config(), model.precision().bytes()) * budget::cpu_batch_cap(1);
    if budget / n >= stream::minimum_budget(model, height, width).saturating_add(batch) {
        n
    } else {
        1
    }
}

/// Each of `workers` CPU workers' share of `threads` (0: libtorch's default) and of `budget`
/// (bytes): the threads divided, at least one each, and the budget divided.
pub fn worker_share(threads: usize, budget: usize, workers: usize) -> (usize, usize) {
    let workers = workers.max(1);
    ((resolve_threads(threads) / workers).max(1), budget / workers)
}

/// Receives worker threads' news until every worker has hung up, handing each to `handle`. The
/// first error, a worker's or `handle`'s (a cancelling progress callback), tells the workers to
/// stop and is returned; news after it is dropped. Shared by every path that deals work out to
/// workers (devices, CPU workers, row bands).
pub(crate) fn drain_news<T>(
    news: std::sync::mpsc::Receiver<Result<T>>,
    stop: &std::sync::atomic::AtomicBool,
    mut handle: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let mut failure = None;
    for item in news {
        if failure.is_some() {
            continue;
        }
        if let Err(e) = item.and_then(&mut handle) {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            failure = Some(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Reports `done` of `total` to `progress`: [`Error::Cancelled`] when it asks to stop.
pub(crate) fn report_progress(
    progress: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    done: usize,
    total: usize,
) -> Result<()> {
    if progress.as_mut().is_none_or(|cb| cb(Progress::new(done, total))) {
        Ok(())
    } else {
        Err(Error::Cancelled)
    }
}

/// Sets libtorch's thread count for a scope (clamped, see [`clamp_threads`]) and restores it when
/// the scope ends.
pub(crate) struct ThreadScope(Option<i32>);
impl ThreadScope {
    pub(crate) fn new(threads: usize) -> Self {
        if threads == 0 {
            return ThreadScope(None);
        }
        let threads = clamp_threads(threads);
        let before = tch::get_num_threads();
        tch::set_num_threads(threads as i32);
        ThreadScope(Some(before))
    }
}
impl Drop for ThreadScope {
    fn drop(&mut self) {
        if let Some(n) = self.0 {
            tch::set_num_threads(n);
        }
    }
}

impl<'m> PreparedImage<'m> {
    /// Validates and prepares `image` (the filter runs here, once).
    pub fn new(model: &'m Model, image: ImageView<'_>) -> Result<PreparedImage<'m>> {
        image.validate(model.config().c_in as usize)?;
        let _guard = tch::no_grad_guard();
        let input = image.to_tensor()?.to_device(model.device());
        // float32 whatever the networks' precision: only the MLPs run in half precision.
        let prepared = model.net().prepare(&input)?;
        Ok(PreparedImage {
            model,
            tensor: prepared,
            noise_level: None,
            self_ensemble: SelfEnsemble::Off,
            height: image.height,
            width: image.width,
        })
    }

    /// Sets the input's noise level (checked against the model: see
    /// [`Model::check_noise_level`]).
    pub fn with_noise_level(self, sigma: Option<f64>) -> Result<Self> {
        self.model.check_noise_level(sigma)?;
        Ok(self.attach_noise_level(sigma))
    }

    /// Sets a noise level the caller has already checked (the engine's entry points check it
    /// once, before preparing the image).
    fn attach_noise_level(mut self, sigma: Option<f64>) -> Self {
        self.noise_level = sigma.map(|s| Tensor::from_slice(&[s as f32]).to_device(self.model.device()));
        self
    }

    /// Sets a self-ensemble the caller has already checked
    /// ([`LofiNet::check_self_ensemble`](crate::kernels::LofiNet::check_self_ensemble)).
    fn attach_self_ensemble(mut self, ensemble: SelfEnsemble) -> Self {
        self.self_ensemble = ensemble;
        self
    }

    /// Normalised model coordinate of a continuous pixel position (row y, column x).
    fn normalise(&self, y: f64, x: f64) -> [f32; 2] {
        [(y / (self.height as f64 - 1.0) - 0.5) as f32, (x / (self.width as f64 - 1.0) - 0.5) as f32]
    }

    /// Wraps an image already on the model's device: (1, C, H, W) float32.
    pub fn from_tensor(model: &'m Model, image: &Tensor) -> Result<PreparedImage<'m>> {
        let (b, c, h, w) = image.size4().map_err(|_| {
            Error::invalid_input(format!("expected a (1, C, H, W) image tensor, got {:?}", image.size()))
        })?;
        if b != 1 || c != model.config().c_in {
            return Err(Error::invalid_input(format!(
                "the image tensor is {:?}; the model expects (1, {}, H, W)",
                image.size(),
                model.config().c_in
            )));
        }
        if h < 2 || w < 2 {
            return Err(Error::invalid_input(format!(
                "the image is {h} x {w}; LoFi needs at least 2 x 2 pixels"
            )));
        }
        let _guard = tch::no_grad_guard();
        let image = image.to_device(model.device()).to_kind(Kind::Float);
        if !bool::try_from(image.isfinite().all()).unwrap_or(false) {
            return Err(Error::invalid_input("the image holds NaN or infinite values"));
        }
        let prepared = model.net().prepare(&image)?;
        Ok(PreparedImage {
            model,
            tensor: prepared,
            noise_level: None,
            self_ensemble: SelfEnsemble::Off,
            height: h as usize,
            width: w as usize,
        })
    }

    /// The on-grid reconstruction, kept on the model's device: (1, c_out, H, W) float32.
    /// Used by plug-and-play, which calls the denoiser on every pixel at every iteration.
    pub fn reconstruct_grid(
        &self,
        plan: &BatchPlan,
        progress: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    ) -> Result<Tensor> {
        let c_out = self.model.config().c_out;
        let (h, w) = (self.height, self.width);
        let out = Tensor::zeros([h as i64 * w as i64, c_out], (Kind::Float, self.model.device()));
        self.stream(
            h * w,
            plan,
            &mut |i, coords| coords.extend_from_slice(&self.normalise((i / w) as f64, (i % w) as f64)),
            &mut |first, values| {
                out.f_narrow(0, first as i64, values.size()[0])?.f_copy_(values)?;
                Ok(())
            },
            progress,
        )?;
        Ok(out.view([h as i64, w as i64, c_out]).permute([2, 0, 1]).unsqueeze(0).contiguous())
    }

    /// [`Self::reconstruct_grid`] by `workers` single-threaded workers (see [`cpu_workers`]), each
    /// taking the next batch: the same batches as one worker, so on one thread the same values bit
    /// for bit. `workers` <= 1 is [`Self::reconstruct_grid`] on the caller's threads.
    pub fn reconstruct_grid_on_workers(
        &self,
        plan: &BatchPlan,
        workers: usize,
        progress: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    ) -> Result<Tensor> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let (h, w) = (self.height, self.width);
        let total = h * w;
        let batch_pixels = plan.limited_to(total).batch_pixels;
        let batches = total.div_ceil(batch_pixels);
        if workers <= 1 || batches < 2 {
            return self.reconstruct_grid(plan, progress);
        }
        let c_out = self.model.config().c_out;
        let out = Tensor::zeros([total as i64, c_out], (Kind::Float, self.model.device()));
        let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(usize, Tensor)>>(workers);
        std::thread::scope(|scope| {
            for _ in 0..workers.min(batches) {
                // Each worker its own handles to the shared, read-only image and noise level
                // (libtorch tensors are not `Sync`; a shallow clone shares the storage).
                let mine = PreparedImage {
                    model: self.model,
                    tensor: self.tensor.shallow_clone(),
                    noise_level: self.noise_level.as_ref().map(Tensor::shallow_clone),
                    self_ensemble: self.self_ensemble,
                    height: h,
                    width: w,
                };
                let (tx, next, stop) = (tx.clone(), &next, &stop);
                scope.spawn(move || {
                    let _threads = ThreadScope::new(1);
                    while !stop.load(Ordering::Relaxed) {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= batches {
                            break;
                        }
                        let first = k * batch_pixels;
                        let count = batch_pixels.min(total - first);
                        let values = crate::error::catch_torch(|| {
                            let mut values = None;
                            mine.stream(
                                count,
                                plan,
                                &mut |i, coords| {
                                    let i = first + i;
                                    coords.extend_from_slice(&mine.normalise((i / w) as f64, (i % w) as f64))
                                },
                                &mut |_, v| {
                                    values = Some(v.shallow_clone());
                                    Ok(())
                                },
                                &mut None,
                            )?;
                            values.ok_or_else(|| Error::Internal("a batch gave no values".into()))
                        });
                        let failed = values.is_err();
                        if tx.send(values.map(|v| (first, v))).is_err() || failed {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut done = 0;
            drain_news(rx, &stop, |(first, values)| {
                let n = values.size()[0];
                out.f_narrow(0, first as i64, n)?.f_copy_(&values)?;
                done += n as usize;
                report_progress(progress, done, total)
            })
        })?;
        Ok(out.view([h as i64, w as i64, c_out]).permute([2, 0, 1]).unsqueeze(0).contiguous())
    }

    /// Runs the network on the points `coords_of` produces (two normalised coordinates each) and
    /// hands each batch's first index and its (points, c_out) float32 values, still on the
    /// device, to `sink`.
    fn stream(
        &self,
        total: usize,
        plan: &BatchPlan,
        coords_of: &mut dyn FnMut(usize, &mut Vec<f32>),
        sink: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
        progress: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    ) -> Result<usize> {
        let _guard = tch::no_grad_guard();
        if self.noise_level.is_none() {
            // A noise-aware model prepared without `with_noise_level`: the caller's error message.
            self.model.check_noise_level(None)?;
        }
        let device = self.model.device();
        let mut batches = 0;
        let mut start = 0;
        // A plan sized for a huge budget must not allocate for pixels there are not.
        let batch_pixels = plan.limited_to(total).batch_pixels;
        let mut coords = crate::error::try_vec(batch_pixels * 2, "the batch coordinates")?;
        while start < total {
            let count = batch_pixels.min(total - start);
            coords.clear();
            for i in start..start + count {
                coords_of(i, &mut coords);
            }
            // Pad to a whole quantum with copies of the last point so that every matrix product
            // sees the same row alignment (bit-identical tiles on the CPU).
            let padded = count.div_ceil(BATCH_QUANTUM) * BATCH_QUANTUM;
            let (ly, lx) = (coords[2 * count - 2], coords[2 * count - 1]);
            for _ in count..padded {
                coords.extend_from_slice(&[ly, lx]);
            }
            let batch = Tensor::from_slice(&coords).view([1, padded as i64, 2]).to_device(device);
            let out = self
                .model
                .pixel_net()
                .forward_ensemble(&self.tensor, &batch, self.noise_level.as_ref(), self.self_ensemble)
                .narrow(1, 0, count as i64)
                .squeeze_dim(0)
                .to_kind(Kind::Float);
            sink(start, &out)?;
            batches += 1;
            start += count;
            if let Some(cb) = progress.as_mut() {
                if !cb(Progress::new(start, total)) {
                    return Err(Error::Cancelled);
                }
            }
        }
        Ok(batches)
    }
}

/// Copies a float32 tensor's values to the host, in order (a batch's results, the spilled
/// filter's bands); `what` names them in an out-of-memory error.
fn to_host(values: &Tensor, what: &str) -> Result<Vec<f32>> {
    let host = values.to_device(Device::Cpu).contiguous();
    let n = host.numel();
    let mut out = crate::error::try_vec(n, what)?;
    out.resize(n, 0f32);
    host.f_copy_data(&mut out, n)?;
    Ok(out)
}

/// The batch plan for `model` on an input of `height` x `width` under `budget` bytes. On the CPU
/// a budget beyond the machine's memory (`UINT64_MAX`, `--memory-budget 1024T`) means "as much as
/// there is" ([`budget::host_budget`]): not batches the machine cannot hold. (On CUDA an
/// allocation beyond the device fails cleanly.)
pub fn plan_for(model: &Model, height: usize, width: usize, budget: usize) -> Result<BatchPlan> {
    let budget = if model.device() == Device::Cpu {
        let capped = budget::host_budget(budget, budget::host_memory());
        if capped < budget {
            log::debug!(
                "memory budget {} is beyond this machine: using the {} of host memory available",
                format_bytes(budget),
                format_bytes(capped)
            );
        }
        capped
    } else {
        budget
    };
    Ok(BatchPlan::new(model.config(), height, width, model.precision().bytes(), budget)?
        .at_most(batch_cap(model)))
}

/// The most pixels a batch of `model` takes whatever the budget: on the CPU, what suits the cache
/// for the calling thread's libtorch threads ([`budget::cpu_batch_cap`]; plan under the call's
/// [`ThreadScope`]); on a GPU, no limit but the budget.
pub(crate) fn batch_cap(model: &Model) -> usize {
    match model.device() {
        Device::Cpu => budget::cpu_batch_cap(tch::get_num_threads().max(1) as usize),
        _ => usize::MAX,
    }
}

/// Reconstructs `region` of `image` sampled on a `grid_width` x `grid_height` grid (both ends of
/// the region included; a single sample along an axis sits at the region's middle), or only the
/// `window` of that grid, into `out` ((rows, cols, c_out) with the given row stride).
// The arguments are those of `lofi_reconstruct_region()`, one for one, so that the C layer stays
// a thin translation; grouping them would only move the list into a struct literal.
#[allow(clippy::too_many_arguments)]
pub fn reconstruct_region(
    model: &Model,
    image: ImageView<'_>,
    region: Region,
    grid_width: usize,
    grid_height: usize,
    window: Option<Window>,
    out: OutputView<'_>,
    options: RunOptions<'_>,
) -> Result<RunReport> {
    reconstruct_region_from(model, &image, region, grid_width, grid_height, window, out, options)
}

/// The first of several replicas of one model (one per device), after checking that there is one
/// and that they all are the same model.
pub(crate) fn first_replica<'m>(models: &[&'m Model]) -> Result<&'m Model> {
    let Some(&first) = models.first() else {
        return Err(Error::invalid_argument("no device to run on"));
    };
    if let Some(m) =
        models.iter().find(|m| m.config() != first.config() || m.parameter_count() != first.parameter_count())
    {
        return Err(Error::invalid_argument(format!(
            "the replicas differ: the model on {} is not the one on {}",
            m.device_spec(),
            first.device_spec()
        )));
    }
    Ok(first)
}

/// [`reconstruct_region`] on several devices: one replica of the model per device (`models`, the
/// same model loaded once per device; the C API's `lofi_load_params.devices`). The window (or the
/// whole grid) is cut into bands of rows, a few per device, dealt out as each device finishes its
/// last. Each device prepares the input once (a filter too large for the budget is computed in
/// bands once, on the calling thread, and shared) and runs each band's tiles as one device would,
/// so the result equals one device's (bit for bit on CPUs with one thread each: tiles equal the
/// whole image). The budget is per device. `progress` runs on the calling thread after every band
/// (and every piece of a filter computed in bands). With one model this is [`reconstruct_region`].
#[allow(clippy::too_many_arguments)]
pub fn reconstruct_region_on_devices(
    models: &[&Model],
    image: ImageView<'_>,
    region: Region,
    grid_width: usize,
    grid_height: usize,
    window: Option<Window>,
    out: OutputView<'_>,
    options: RunOptions<'_>,
) -> Result<RunReport> {
    reconstruct_region_from_on_devices(models, &image, region, grid_width, grid_height, window, out, options)
}

/// [`reconstruct_region_on_devices`] from any [`InputSource`] that threads may share (the C API's
/// `lofi_input_reader`): each device's batches read their windows from `source`, from that
/// device's worker thread. With one model this is [`reconstruct_region_from`].
#[allow(clippy::too_many_arguments)]
pub fn reconstruct_region_from_on_devices(
    models: &[&Model],
    source: &(dyn InputSource + Sync),
    region: Region,
    grid_width: usize,
    grid_height: usize,
    window: Option<Window>,
    out: OutputView<'_>,
    options: RunOptions<'_>,
) -> Result<RunReport> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let first = first_replica(models)?;
    if models.len() == 1 {
        return reconstruct_region_from(first, source, region, grid_width, grid_height, window, out, options);
    }
    let (job, window) = check_region_args(first, region, grid_width, grid_height, window, &out)?;
    options.check(first)?;
    let RunOptions { memory_budget, threads, mut progress, noise_level, self_ensemble } = options;
    let rows = window.row0..window.row0 + window.rows;
    let total = window.rows * window.cols;
    let (plan, spilled) = crate::error::catch_torch(|| {
        let _threads = ThreadScope::new(threads);
        let (plan, _, spilled) =
            stream::shared_setup(first, source, (&job, rows.clone()), memory_budget, &mut |pieces| {
                progress.as_mut().is_none_or(|cb| cb(Progress::filtering(pieces, total)))
            })?;
        Ok((plan, spilled))
    })?;
    let stride = out.row_stride;
    // Four bands per device balance devices of unequal speed.
    let band_rows = window.rows.div_ceil(4 * models.len()).max(1);
    let mut bands = Vec::new();
    let (mut rest, mut row) = (out.data, 0);
    while row < window.rows {
        let n = band_rows.min(window.rows - row);
        let take = if row + n < window.rows { n * stride } else { rest.len() };
        let (band, tail) = std::mem::take(&mut rest).split_at_mut(take);
        bands.push((row, n, band));
        rest = tail;
        row += n;
    }
    let queue = parking_lot::Mutex::new(bands.into_iter());
    let stop = AtomicBool::new(false);
    /// A worker's news: a band done (pixels, batches), or the device's memory figures at its end.
    enum News {
        Band(usize, usize),
        Finished(Option<cuda_memory::Measured>),
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<News>>(models.len());
    std::thread::scope(|scope| {
        for &model in models {
            let (tx, queue, stop, spilled, rows) = (tx.clone(), &queue, &stop, spilled.clone(), rows.clone());
            scope.spawn(move || {
                let work = || -> Result<()> {
                    let _threads = ThreadScope::new(threads);
                    let memory = cuda_memory::PeakTracker::start(model.device());
                    let streamer = Streamer::replica(
                        model,
                        source,
                        (&job, rows),
                        memory_budget,
                        noise_level,
                        self_ensemble,
                        spilled,
                        stop,
                    )?;
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let Some((row, n, data)) = queue.lock().next() else { break };
                        let band = Window { row0: window.row0 + row, rows: n, ..window };
                        let batches = streamer.run_grid(
                            &job,
                            band,
                            OutputView { data, row_stride: stride },
                            &mut None,
                        )?;
                        if tx.send(Ok(News::Band(n * window.cols, batches))).is_err() {
                            return Ok(());
                        }
                    }
                    let _ = tx.send(Ok(News::Finished(memory.measure())));
                    Ok(())
                };
                if let Err(e) = crate::error::catch_torch(work) {
                    stop.store(true, Ordering::Relaxed);
                    let _ = tx.send(Err(e));
                }
            });
        }
        drop(tx);
        let (mut done, mut batches, mut measured) = (0, 0, None::<cuda_memory::Measured>);
        drain_news(rx, &stop, |news| {
            match news {
                News::Band(pixels, b) => {
                    done += pixels;
                    batches += b;
                    return report_progress(&mut progress, done, total);
                }
                News::Finished(Some(m)) => {
                    let c = measured.get_or_insert(m);
                    c.peak_allocated = c.peak_allocated.max(m.peak_allocated);
                    c.peak_reserved = c.peak_reserved.max(m.peak_reserved);
                    c.reserved = c.reserved.max(m.reserved);
                }
                News::Finished(None) => {}
            }
            Ok(())
        })?;
        if done == total {
            Ok(RunReport { workers: models.len(), ..RunReport::new(plan, total, batches, measured) })
        } else {
            Err(Error::Internal(format!("{done} of {total} pixels were computed")))
        }
    })
}

/// [`reconstruct_region`] from any [`InputSource`] (a `.npy` file read in pieces, ...), streaming the
/// input: each batch reads only the window of the input its samples reach.
#[allow(clippy::too_many_arguments)]
pub fn reconstruct_region_from(
    model: &Model,
    source: &dyn InputSource,
    region: Region,
    grid_width: usize,
    grid_height: usize,
    window: Option<Window>,
    out: OutputView<'_>,
    options: RunOptions<'_>,
) -> Result<RunReport> {
    crate::error::catch_torch(move || {
        let (job, window) = check_region_args(model, region, grid_width, grid_height, window, &out)?;
        options.check(model)?;
        let _threads = ThreadScope::new(options.threads);
        let memory = cuda_memory::PeakTracker::start(model.device());
        let RunOptions { memory_budget, mut progress, noise_level, self_ensemble, .. } = options;
        let total = window.rows * window.cols;
        let streamer = Streamer::prepare(
            model,
            source,
            Some((&job, window.row0..window.row0 + window.rows)),
            memory_budget,
            noise_level,
            &mut |pieces| progress.as_mut().is_none_or(|cb| cb(Progress::filtering(pieces, total))),
        )?
        .with_self_ensemble(self_ensemble);
        let batches = streamer.run_grid(&job, window, out, &mut progress)?;
        Ok(RunReport::new(streamer.plan(), total, batches, memory.measure()))
    })
}

/// Checks a region call's arguments; returns the grid and the window of it to compute.
fn check_region_args(
    model: &Model,
    region: Region,
    grid_width: usize,
    grid_height: usize,
    window: Option<Window>,
    out: &OutputView<'_>,
) -> Result<(GridJob, Window)> {
    let (job, window) = check_grid(region, grid_width, grid_height, window)?;
    let c_out = model.config().c_out as usize;
    check_output(out.data.len(), window.rows, window.cols * c_out, out.row_stride)?;
    Ok((job, window))
}

/// Checks a region, its output grid and the window of it to compute.
fn check_grid(
    region: Region,
    grid_width: usize,
    grid_height: usize,
    window: Option<Window>,
) -> Result<(GridJob, Window)> {
    region.validate()?;
    if grid_width == 0 || grid_height == 0 {
        return Err(Error::invalid_argument(format!("output size {grid_width} x {grid_height} is empty")));
    }
    const MAX_OUTPUT_SIDE: usize = 1 << 20;
    if grid_width > MAX_OUTPUT_SIDE || grid_height > MAX_OUTPUT_SIDE {
        return Err(Error::invalid_argument(format!(
            "output size {grid_width} x {grid_height} is absurd (at most {MAX_OUTPUT_SIDE} on a side)"
        )));
    }
    let window = window.unwrap_or(Window { col0: 0, row0: 0, cols: grid_width, rows: grid_height });
    let beyond =
        |start: usize, len: usize, limit: usize| start.checked_add(len).is_none_or(|end| end > limit);
    if window.cols == 0
        || window.rows == 0
        || beyond(window.col0, window.cols, grid_width)
        || beyond(window.row0, window.rows, grid_height)
    {
        return Err(Error::invalid_argument(format!(
            "the window of {} x {} samples at column {}, row {} is empty or outside the {grid_width} x {grid_height} \
             output grid",
            window.cols, window.rows, window.col0, window.row0
        )));
    }
    Ok((GridJob { region, grid_width, grid_height }, window))
}

/// [`reconstruct_region`] with the whole prepared image on the device (no input streaming): the
/// reference the streamed path is tested against, bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn reconstruct_region_whole_image(
    model: &Model,
    image: ImageView<'_>,
    region: Region,
    grid_width: usize,
    grid_height: usize,
    window: Option<Window>,
    out: OutputView<'_>,
    options: RunOptions<'_>,
) -> Result<RunReport> {
    crate::error::catch_torch(move || {
        let (job, window) = check_region_args(model, region, grid_width, grid_height, window, &out)?;
        let c_out = model.config().c_out as usize;
        options.check(model)?;
        let _threads = ThreadScope::new(options.threads);
        let plan = plan_for(model, image.height, image.width, options.memory_budget)?;
        let memory = cuda_memory::PeakTracker::start(model.device());
        let prepared = PreparedImage::new(model, image)?
            .attach_noise_level(options.noise_level)
            .attach_self_ensemble(options.self_ensemble);

        let total = window.rows * window.cols;
        let OutputView { data, row_stride } = out;
        let RunOptions { mut progress, .. } = options;
        let batches = prepared.stream(
            total,
            &plan,
            &mut |i, coords| {
                let (r, c) = (window.row0 + i / window.cols, window.col0 + i % window.cols);
                coords.extend_from_slice(&prepared.normalise(job.y(r), job.x(c)));
            },
            &mut |first, values| {
                let values = to_host(values, "a batch of results on the host")?;
                for (k, px) in values.chunks_exact(c_out).enumerate() {
                    let i = first + k;
                    let (r, c) = (i / window.cols, i % window.cols);
                    let at = r * row_stride + c * c_out;
                    data[at..at + c_out].copy_from_slice(px);
                }
                Ok(())
            },
            &mut progress,
        )?;
        Ok(RunReport::new(plan.limited_to(total), total, batches, memory.measure()))
    })
}

/// Reconstructs arbitrary points `(x, y)` (column, row, in input pixel coordinates) into `out`
/// ((points, c_out), contiguous), streaming the input (each batch reads the window its points
/// reach).
pub fn reconstruct_points(
    model: &Model,
    image: ImageView<'_>,
    points: &[[f64; 2]],
    out: &mut [f32],
    options: RunOptions<'_>,
) -> Result<RunReport> {
    crate::error::catch_torch(move || {
        check_points_args(model, points, out)?;
        options.check(model)?;
        let _threads = ThreadScope::new(options.threads);
        let memory = cuda_memory::PeakTracker::start(model.device());
        let RunOptions { memory_budget, mut progress, noise_level, self_ensemble, .. } = options;
        let total = points.len();
        let streamer = Streamer::prepare(model, &image, None, memory_budget, noise_level, &mut |pieces| {
            progress.as_mut().is_none_or(|cb| cb(Progress::filtering(pieces, total)))
        })?
        .with_self_ensemble(self_ensemble);
        let batches = streamer.run_points(points, out, &mut progress)?;
        Ok(RunReport::new(streamer.plan().limited_to(points.len()), points.len(), batches, memory.measure()))
    })
}

fn check_points_args(model: &Model, points: &[[f64; 2]], out: &[f32]) -> Result<()> {
    if points.is_empty() {
        return Err(Error::invalid_argument("no points to reconstruct"));
    }
    if let Some(i) = points.iter().position(|p| !check_coordinate(p[0]) || !check_coordinate(p[1])) {
        let [x, y] = points[i];
        return Err(Error::invalid_argument(format!(
            "point {i} has a non-finite coordinate or one beyond +-{MAX_COORDINATE:e} pixels ({x}, {y}); \
             float32 coordinates lose sub-pixel precision beyond"
        )));
    }
    let c_out = model.config().c_out as usize;
    if out.len() < points.len() * c_out {
        return Err(Error::invalid_argument(format!(
            "the output buffer holds {} values, {} points x {c_out} channels need {}",
            out.len(),
            points.len(),
            points.len() * c_out
        )));
    }
    Ok(())
}

/// [`reconstruct_points`] with the whole prepared image on the device (no input streaming).
pub fn reconstruct_points_whole_image(
    model: &Model,
    image: ImageView<'_>,
    points: &[[f64; 2]],
    out: &mut [f32],
    options: RunOptions<'_>,
) -> Result<RunReport> {
    crate::error::catch_torch(move || {
        check_points_args(model, points, out)?;
        let c_out = model.config().c_out as usize;
        options.check(model)?;
        let _threads = ThreadScope::new(options.threads);
        let plan = plan_for(model, image.height, image.width, options.memory_budget)?;
        let memory = cuda_memory::PeakTracker::start(model.device());
        let prepared = PreparedImage::new(model, image)?
            .attach_noise_level(options.noise_level)
            .attach_self_ensemble(options.self_ensemble);
        let RunOptions { mut progress, .. } = options;
        let batches = prepared.stream(
            points.len(),
            &plan,
            &mut |i, coords| coords.extend_from_slice(&prepared.normalise(points[i][1], points[i][0])),
            &mut |first, values| {
                let values = to_host(values, "a batch of results on the host")?;
                out[first * c_out..first * c_out + values.len()].copy_from_slice(&values);
                Ok(())
            },
            &mut progress,
        )?;
        Ok(RunReport::new(plan.limited_to(points.len()), points.len(), batches, memory.measure()))
    })
}

fn check_output(len: usize, rows: usize, row_values: usize, row_stride: usize) -> Result<()> {
    if row_stride < row_values {
        return Err(Error::invalid_argument(format!(
            "output row stride {row_stride} is smaller than a row ({row_values} values)"
        )));
    }
    // No rows need no values (an empty image is the input check's to refuse).
    let needed = rows.checked_sub(1).map_or(0, |r| r * row_stride + row_values);
    if len < needed {
        return Err(Error::invalid_argument(format!(
            "the output buffer holds {len} values, {rows} rows with stride {row_stride} need {needed}"
        )));
    }
    Ok(())
}
