//! The memory model: how many bytes of working memory one pixel of a batch needs, and how big a
//! batch a byte budget allows.
//!
//! The figures count every tensor the per-pixel step keeps alive at its widest point (grids, crops,
//! the permuted copies, two activations per MLP layer plus the ReLU output), with a safety factor
//! for allocator rounding. They are checked against measured CUDA peaks by `lofi bench`.

use crate::config::{LofiConfig, Network};
use crate::error::{Error, Result};

/// Pixels per batch are a multiple of this, so that every matrix product sees row counts of the
/// same alignment (it keeps tiled and whole-image results bit-identical on the CPU).
pub const BATCH_QUANTUM: usize = 64;
/// Pixels per batch and CPU thread beyond which a batch gets slower, not faster: the per-angle
/// products' activations of a larger batch no longer stay in the cache between layers. Measured on
/// the 2-core Xeon with the shipped denoiser at 512^2 (f32: 2.0 s with batches of 1,024-2,048
/// pixels, 2.3 s with the 12,928 a 512 MiB budget allows) and the paper-size model at 384^2 (3 %
/// faster in f32, 14 % in bf16), on one thread as on two.
pub const CPU_BATCH_PIXELS_PER_THREAD: usize = 1024;

/// The most pixels a CPU batch takes when products run on `threads` threads (two threads' worth at
/// least: one thread is as fast with 2,048 as with 1,024), a multiple of [`BATCH_QUANTUM`].
pub fn cpu_batch_cap(threads: usize) -> usize {
    CPU_BATCH_PIXELS_PER_THREAD * threads.max(2)
}

/// Allocator rounding and small temporaries.
const SAFETY: f64 = 1.25;

/// Bytes one pixel needs while its batch goes through the network.
pub fn bytes_per_pixel(cfg: &LofiConfig, net_bytes: usize) -> usize {
    let k = (cfg.n * cfg.m) as f64;
    let c = cfg.network_channels() as f64;
    let m = cfg.m as f64;
    let h = cfg.hidden_dim as f64;
    // float32 geometry: coordinates, the grid (sum, flipped copy, cast), offsets per pixel.
    let mut f32_values = 2.0 + 3.0 * 2.0 * k;
    // The crop from grid_sample, its permuted copy, and the copy cast to the network's precision.
    f32_values += 2.0 * c * k;
    let mut net_values = c * k;
    if let Some(inr) = cfg.coord_deform.then_some(cfg.inr_hidden_dim as f64) {
        net_values += 3.0 * inr + 4.0;
    }
    if cfg.ccpg {
        // Each block: the flattened crop, its activations, predicted and scaled offsets, a new crop.
        f32_values += 2.0 * 2.0 * k + c * k;
        net_values += c * k + 3.0 * cfg.ccpg_hidden_dim as f64 + 2.0 * k;
    }
    net_values += match cfg.network {
        Network::MultiMLP => {
            let f = cfg.angle_features as f64;
            // Chunks, the widest layer's input, output and ReLU copy across the M MLPs, the
            // features and their permuted copy (M H wide where the last per-angle layer is folded
            // into the mixer, see `LofiNet::fold_layers`), then the mixer.
            c * k + 3.0 * m * h.max(f) + 2.0 * m * h.max(f) + 3.0 * h
        }
        Network::MLP => c * k + 3.0 * h,
    };
    net_values += 2.0 * cfg.c_out as f64;
    ((f32_values * 4.0 + net_values * net_bytes as f64) * SAFETY).ceil() as usize
}

/// Bytes the prepared (filtered) image holds for an input of `height` x `width`, including the
/// transient FFT buffers while it is computed.
pub fn bytes_for_image(cfg: &LofiConfig, height: usize, width: usize, net_bytes: usize) -> usize {
    let pixels = (height * width) as f64;
    let c_prepared = cfg.sampled_channels() as f64;
    let mut bytes = pixels * c_prepared * (4 + net_bytes) as f64 + pixels * cfg.c_in as f64 * 4.0;
    if cfg.fourier_filtering {
        let padded = ((height + 2 * crate::config::FILTER_PAD as usize)
            * (width + 2 * crate::config::FILTER_PAD as usize)) as f64;
        // Spectrum, repeated spectrum, product, inverse (complex64 = 8 bytes), resized filter.
        let c_f = cfg.filter_channels() as f64;
        bytes += padded * (8.0 * (cfg.spectrum_channels() as f64 + 3.0 * c_f) + 16.0 * c_f);
    }
    (bytes * SAFETY).ceil() as usize
}

/// The batch plan for one reconstruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    /// Pixels per batch.
    pub batch_pixels: usize,
    /// Bytes per pixel of a batch.
    pub bytes_per_pixel: usize,
    /// Bytes the prepared image takes.
    pub image_bytes: usize,
}

impl BatchPlan {
    /// The largest batch (a multiple of [`BATCH_QUANTUM`], at least one quantum) that fits the
    /// budget next to the prepared image. `budget` in bytes.
    pub fn new(
        cfg: &LofiConfig,
        height: usize,
        width: usize,
        net_bytes: usize,
        budget: usize,
    ) -> Result<BatchPlan> {
        let per_pixel = bytes_per_pixel(cfg, net_bytes);
        let image_bytes = bytes_for_image(cfg, height, width, net_bytes);
        let minimum = image_bytes + per_pixel * BATCH_QUANTUM;
        if budget < minimum {
            return Err(Error::BudgetTooSmall(format!(
                "a memory budget of {} is too small: this model on a {width} x {height} image needs at least {} \
                 ({} for the prepared image, {} per pixel, batches of {BATCH_QUANTUM} pixels)",
                format_bytes(budget),
                format_bytes(minimum),
                format_bytes(image_bytes),
                format_bytes(per_pixel),
            )));
        }
        let quanta = (budget - image_bytes) / (per_pixel * BATCH_QUANTUM);
        Ok(BatchPlan { batch_pixels: quanta * BATCH_QUANTUM, bytes_per_pixel: per_pixel, image_bytes })
    }

    /// This plan for a call of `pixels` output pixels: batches no larger than the work (rounded
    /// up to a whole quantum). A huge budget (`u64::MAX`) plans huge batches; whatever is sized
    /// by the plan must be sized by this instead.
    pub fn limited_to(self, pixels: usize) -> BatchPlan {
        let useful = pixels.max(1).div_ceil(BATCH_QUANTUM).saturating_mul(BATCH_QUANTUM);
        BatchPlan { batch_pixels: self.batch_pixels.min(useful), ..self }
    }

    /// This plan with batches of at most `pixels` (rounded down to a whole quantum, one at least).
    pub fn at_most(self, pixels: usize) -> BatchPlan {
        let most = (pixels / BATCH_QUANTUM).max(1) * BATCH_QUANTUM;
        BatchPlan { batch_pixels: self.batch_pixels.min(most), ..self }
    }

    /// Estimated peak working memory of a batch of this plan.
    pub fn estimated_bytes(&self) -> usize {
        self.image_bytes.saturating_add(self.batch_pixels.saturating_mul(self.bytes_per_pixel))
    }
}

/// Host memory figures of this process, in bytes (`None` where unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostMemory {
    /// The most it could ever have: the physical memory, or a cgroup (container) limit below it.
    pub limit: Option<usize>,
    /// What it could get now: `limit`, or less as the kernel reports it (`MemAvailable`).
    pub available: Option<usize>,
}

/// Reads the host memory figures (sysconf, the cgroup v2/v1 limit, /proc/meminfo).
pub fn host_memory() -> HostMemory {
    fn number(text: &str) -> Option<usize> {
        text.trim().parse::<u64>().ok().and_then(|v| usize::try_from(v).ok()).filter(|&v| v > 0)
    }
    let min = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    let mut limit = (pages > 0 && page > 0).then(|| (pages as usize).saturating_mul(page as usize));
    for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
        limit = min(limit, std::fs::read_to_string(path).ok().as_deref().and_then(number));
    }
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|meminfo| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|rest| number(rest.trim().trim_end_matches("kB")))
            .and_then(|kib| kib.checked_mul(1024))
    });
    HostMemory { limit, available: min(limit, available) }
}

/// The budget a CPU reconstruction plans with: the caller's, unless it is more than the machine
/// could ever give (`UINT64_MAX`, `--memory-budget 1024T`): that means "as much as there is",
/// the host memory available now. Batches that large would otherwise end in the kernel's
/// out-of-memory killer rather than in an error. A budget within the machine is the caller's
/// decision and is kept.
pub fn host_budget(budget: usize, host: HostMemory) -> usize {
    match (host.limit, host.available) {
        (Some(limit), Some(available)) if budget > limit => available,
        (Some(limit), None) if budget > limit => limit,
        _ => budget,
    }
}

/// `1536` -> `1.5 KiB`.
pub fn format_bytes(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Parses `512MiB`, `2GiB`, `1.5G`, `100000` (bytes), `64kb`...
pub fn parse_bytes(text: &str) -> Result<usize> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| Error::invalid_argument(format!("cannot read '{text}' as a size (e.g. 512MiB)")))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        other => return Err(Error::invalid_argument(format!("unknown size unit '{other}' in '{text}'"))),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 0.0 || bytes > usize::MAX as f64 / 2.0 {
        return Err(Error::invalid_argument(format!("size '{text}' is out of range")));
    }
    Ok(bytes as usize)
}
