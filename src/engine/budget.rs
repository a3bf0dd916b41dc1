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
/// Allocator rounding and small temporaries.
const SAFETY: f64 = 1.25;

/// Bytes one pixel needs while its batch goes through the network.
pub fn bytes_per_pixel(cfg: &LofiConfig, net_bytes: usize) -> usize {
    let k = (cfg.n * cfg.m) as f64;
    let c = cfg.sampled_channels() as f64;
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
            // features and their permuted copy, then the mixer.
            c * k + 3.0 * m * h.max(f) + 2.0 * m * f + 3.0 * h
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

    /// Estimated peak working memory of a batch of this plan.
    pub fn estimated_bytes(&self) -> usize {
        self.image_bytes + self.batch_pixels * self.bytes_per_pixel
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
