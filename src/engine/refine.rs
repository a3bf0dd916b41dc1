//! Refined denoising: a second, coarser scale and a clean-up pass around a noise-level-aware
//! denoiser, for the noise levels where one pass of a LoFi denoiser falls short.
//!
//! A LoFi denoiser sees a fixed neighbourhood (its learned offsets), so at high noise levels it
//! leaves low-frequency noise that no pixel's neighbourhood can tell from the image. The image
//! averaged over 2 x 2 blocks has half the noise (independent noise averages down by the
//! square root of the 4 pixels) and the same offsets reach twice as far on it, so the denoiser's
//! estimate at half resolution gets the low frequencies right where the full-resolution one does
//! not; the full-resolution one keeps the detail. The two are joined through a Gaussian low-pass
//! (the multi-scale denoising of Lebrun, Colom and Morel, IPOL 2015, with LoFi at both scales):
//!
//! ```text
//! fine   = D(y, sigma)                                  the one-pass result
//! coarse = (up(D(mean2x2(y), sigma / 2))                the half-resolution estimate, on the
//!          + up(D(mean2x2(shift(y)), sigma / 2))) / 2   2 x 2 grid and on the grid moved diagonally
//! joined = fine + G_s * (coarse - fine)                 its low frequencies replaced (G_s: Gaussian of s pixels)
//! out    = D(joined, c sigma)                           a clean-up pass at a fraction c of the level
//! ```
//!
//! One 2 x 2 grid leaves its blocks' phase in the estimate (aliasing that the upsampling turns
//! into a faint grid); the second grid, moved one pixel in both directions, has the opposite
//! phase, and the mean of the two (cycle spinning, Coifman and Donoho 1995) cancels most of it:
//! +0.03 / +0.03 / +0.04 dB on Set12 at sigma 15 / 25 / 50 for another quarter pass, which also
//! lets the join take over more frequencies (a Gaussian of 2 pixels instead of 2.5).
//!
//! The clean-up pass removes what both scales left (faint texture where the denoiser's errors
//! have preferred directions), told the small level such a residue has. Measured on Set12 with
//! the shipped quality model (README, "Against classical methods"): +0.04 / +0.12 / +0.29 dB at
//! sigma 15 / 25 / 50 over one pass, for 2.5 passes' work.

use tch::{Kind, Tensor};

use super::{
    check_output, first_replica, reconstruct_region_on_devices, to_host, ImageView, OutputView, Progress,
    Region, RunOptions, RunReport,
};
use crate::error::{Error, Result};
use crate::model::Model;

/// Default [`Refinement::coarse_blur`]: the Gaussian's standard deviation, in full-resolution
/// pixels (Set12 with both grids: 2 best at sigma 25, within 0.003 dB of the best at 15, 0.015
/// below 1.5 at 50; 1.5 lost 0.03 dB at 15).
pub const DEFAULT_COARSE_BLUR: f64 = 2.0;

/// Default [`Refinement::cleanup`]: the clean-up pass's noise level as a fraction of the input's
/// (Set12 at sigma 50: 0.1 best after the coarse scale; 0.2 and above smooth detail away).
pub const DEFAULT_CLEANUP: f64 = 0.1;

/// How [`denoise_refined`] refines a noise-level-aware denoiser's result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Refinement {
    /// Standard deviation, in pixels, of the Gaussian through which the half-resolution estimate
    /// replaces the full-resolution one's low frequencies; 0 leaves out the coarse scale.
    pub coarse_blur: f64,
    /// The clean-up pass's noise level as a fraction of the input's; 0 leaves the pass out.
    pub cleanup: f64,
}

impl Default for Refinement {
    fn default() -> Self {
        Refinement { coarse_blur: DEFAULT_COARSE_BLUR, cleanup: DEFAULT_CLEANUP }
    }
}

impl Refinement {
    /// Both settings finite and non-negative, the blur at most 64 pixels, the clean-up level at
    /// most the input's.
    pub fn check(&self) -> Result<()> {
        if !(self.coarse_blur.is_finite() && (0.0..=64.0).contains(&self.coarse_blur)) {
            return Err(Error::invalid_argument(format!(
                "the coarse scale's blur {} must be between 0 and 64 pixels (0: no coarse scale)",
                self.coarse_blur
            )));
        }
        if !(self.cleanup.is_finite() && (0.0..=1.0).contains(&self.cleanup)) {
            return Err(Error::invalid_argument(format!(
                "the clean-up level {} must be between 0 and 1 times the input's noise level (0: no clean-up pass)",
                self.cleanup
            )));
        }
        Ok(())
    }

    /// Network passes over the image's pixels, as a multiple of one pass (the coarse scale's two
    /// grids cost a quarter each): what the refinement costs in time.
    pub fn passes(&self) -> f64 {
        let coarse = 0.25 * GRID_SHIFTS.len() as f64;
        1.0 + if self.coarse_blur > 0.0 { coarse } else { 0.0 } + if self.cleanup > 0.0 { 1.0 } else { 0.0 }
    }
}

/// Denoises the whole of `image` on its own pixel grid with a noise-level-aware model, refined as
/// `refinement` says (see the module's documentation), into `out` ((H, W, C) with its row stride).
/// `options.noise_level` is the input's noise level (required); the self-ensemble, budget, threads
/// and devices apply to every pass, and `options.progress` sees the passes as one run (pixels of
/// all passes done, in all). `models` are replicas as in [`reconstruct_region_on_devices`].
/// Images smaller than 4 x 4 skip the coarse scale.
///
/// An RGB image ((H, W, 3)) and a gray noise-level-aware denoiser: the image is denoised channel
/// by channel in CBM3D's opponent colour space, each channel refined as above and told its own
/// noise level (see [`super::colour`]), into an (H, W, 3) `out`. With both steps of `refinement`
/// off that is one pass per channel.
pub fn denoise_refined(
    models: &[&Model],
    image: ImageView<'_>,
    out: OutputView<'_>,
    options: RunOptions<'_>,
    refinement: Refinement,
) -> Result<RunReport> {
    let model = first_replica(models)?;
    refinement.check()?;
    if super::colour::applies(model, &image) {
        return super::colour::denoise_opponent(models, image, out, options, refinement);
    }
    let config = model.config();
    if config.noise_level.is_none() {
        return Err(Error::invalid_argument(
            "refined denoising needs a noise-level-aware denoiser (`lofi info` says which): its passes \
             are told different noise levels",
        ));
    }
    if config.c_in != config.c_out {
        return Err(Error::invalid_argument(format!(
            "refined denoising needs a denoiser (as many output channels as input ones); this model maps {} to {}",
            config.c_in, config.c_out
        )));
    }
    let sigma = required_noise_level(model, options.noise_level)?;
    let (h, w, c) = (image.height, image.width, image.channels);
    let row = w * c;
    check_output(out.data.len(), h, row, out.row_stride)?;
    let coarse = refinement.coarse_blur > 0.0 && h >= 4 && w >= 4;
    let coarse_pixels: usize = GRID_SHIFTS.iter().map(|&s| half_size(h, s) * half_size(w, s)).sum();
    let total =
        h * w + if coarse { coarse_pixels } else { 0 } + if refinement.cleanup > 0.0 { h * w } else { 0 };

    let RunOptions { memory_budget, threads, noise_level: _, self_ensemble, mut progress } = options;
    let mut done = 0usize;
    let mut report: Option<RunReport> = None;
    // One pass of the denoiser over `input` at `level` into `output`, its progress counted after
    // the passes before it and its report added to theirs.
    let mut pass = |input: ImageView<'_>, level: f64, output: &mut [f32]| {
        let offset = done;
        let mut inner = |p: Progress| match (&mut progress, p.filter) {
            (None, _) => true,
            (Some(cb), Some(pieces)) => cb(Progress::filtering(pieces, total)),
            (Some(cb), None) => cb(Progress::new(offset + p.done, total)),
        };
        let run = RunOptions {
            memory_budget,
            threads,
            progress: Some(&mut inner),
            noise_level: Some(level),
            self_ensemble,
        };
        let (ih, iw) = (input.height, input.width);
        let out = OutputView { data: output, row_stride: iw * c };
        let this =
            reconstruct_region_on_devices(models, input, Region::whole(ih, iw), iw, ih, None, out, run)?;
        done += ih * iw;
        report = Some(match report.take() {
            None => this,
            Some(before) => combine(before, this),
        });
        Ok::<(), Error>(())
    };

    let mut fine = crate::error::try_vec(h * row, "the one-pass estimate")?;
    fine.resize(h * row, 0.0);
    pass(image, sigma, &mut fine)?;

    let joined = if coarse {
        let mut estimates = Vec::with_capacity(GRID_SHIFTS.len());
        for shift in GRID_SHIFTS {
            let (ch, cw) = (half_size(h, shift), half_size(w, shift));
            let halved = crate::error::catch_torch(|| half_resolution(image, shift))?;
            let mut estimate = crate::error::try_vec(ch * cw * c, "the half-resolution estimate")?;
            estimate.resize(ch * cw * c, 0.0);
            let view = ImageView { data: &halved, height: ch, width: cw, channels: c, row_stride: cw * c };
            pass(view, sigma / 2.0, &mut estimate)?;
            estimates.push(estimate);
        }
        crate::error::catch_torch(|| join_scales(&fine, &estimates, (h, w, c), refinement.coarse_blur))?
    } else {
        fine
    };

    if refinement.cleanup > 0.0 {
        let view = ImageView { data: &joined, height: h, width: w, channels: c, row_stride: row };
        let mut cleaned = crate::error::try_vec(h * row, "the clean-up pass's result")?;
        cleaned.resize(h * row, 0.0);
        pass(view, refinement.cleanup * sigma, &mut cleaned)?;
        copy_rows(&cleaned, row, out);
    } else {
        copy_rows(&joined, row, out);
    }
    Ok(report.expect("the first pass ran"))
}

/// The input's noise level, which refined denoising and the colour path need, checked against
/// `model`; a missing one is refused with the model's own message (the range it was trained for).
pub(super) fn required_noise_level(model: &Model, noise_level: Option<f64>) -> Result<f64> {
    model.check_noise_level(noise_level)?;
    noise_level.ok_or_else(|| Error::invalid_argument("this call needs the input's noise level"))
}

/// Two passes' reports as one: the first pass's plan, work and peaks summed or maximised.
pub(crate) fn combine(a: RunReport, b: RunReport) -> RunReport {
    RunReport {
        plan: a.plan,
        pixels: a.pixels + b.pixels,
        batches: a.batches + b.batches,
        measured_peak_bytes: a.measured_peak_bytes.max(b.measured_peak_bytes),
        measured_peak_reserved_bytes: a.measured_peak_reserved_bytes.max(b.measured_peak_reserved_bytes),
        reserved_bytes: b.reserved_bytes,
        workers: a.workers.max(b.workers),
    }
}

fn copy_rows(values: &[f32], row: usize, out: OutputView<'_>) {
    for (r, line) in values.chunks_exact(row).enumerate() {
        out.data[r * out.row_stride..r * out.row_stride + row].copy_from_slice(line);
    }
}

/// (1, C, H, W) float32 from row-major (H, W, C) values.
fn to_planes(values: &[f32], (h, w, c): (usize, usize, usize)) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(values)?.view([h as i64, w as i64, c as i64]).permute([2, 0, 1]).unsqueeze(0))
}

/// Row-major (H, W, C) values of a (1, C, H, W) tensor.
fn to_rows(planes: &Tensor) -> Result<Vec<f32>> {
    to_host(&planes.squeeze_dim(0).permute([1, 2, 0]), "an image on the host")
}

/// The 2 x 2 grids of the coarse scale: blocks starting at the first pixel, and blocks starting
/// one pixel before it in both directions (the first row and column repeated).
const GRID_SHIFTS: [usize; 2] = [0, 1];

/// Blocks along a side of `n` pixels on the grid shifted by `shift`.
fn half_size(n: usize, shift: usize) -> usize {
    (n + shift).div_ceil(2)
}

/// The means of the image's 2 x 2 blocks on the grid moved by `shift` (0 or 1 pixel in both
/// directions), (half_size(H), half_size(W), C): the first row and column are repeated before a
/// shifted grid and an odd last one after, so that every block has four pixels and the noise
/// level is half the input's.
fn half_resolution(image: ImageView<'_>, shift: usize) -> Result<Vec<f32>> {
    let _guard = tch::no_grad_guard();
    let planes = image.to_tensor()?;
    let (after_w, after_h) = ((image.width + shift) % 2, (image.height + shift) % 2);
    let even = planes.f_replication_pad2d([shift as i64, after_w as i64, shift as i64, after_h as i64])?;
    to_rows(&even.f_avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None)?)
}

/// `fine + G_s * (coarse - fine)`, where `coarse` is the mean of the estimates on the
/// [`GRID_SHIFTS`] grids, each upsampled (bicubic, pixel centres aligned): the coarse scale takes
/// over the fine one's frequencies below the Gaussian's.
fn join_scales(
    fine: &[f32],
    estimates: &[Vec<f32>],
    (h, w, c): (usize, usize, usize),
    blur: f64,
) -> Result<Vec<f32>> {
    let _guard = tch::no_grad_guard();
    let fine_planes = to_planes(fine, (h, w, c))?;
    let mut coarse = Tensor::zeros_like(&fine_planes);
    for (estimate, shift) in estimates.iter().zip(GRID_SHIFTS) {
        let (ch, cw) = (half_size(h, shift), half_size(w, shift));
        // Upsampled onto its padded even grid (exactly twice the coarse one, so the pixel centres
        // line up), then cut back to the image.
        let up = to_planes(estimate, (ch, cw, c))?
            .f_upsample_bicubic2d([2 * ch as i64, 2 * cw as i64], false, None, None)?
            .f_narrow(2, shift as i64, h as i64)?
            .f_narrow(3, shift as i64, w as i64)?;
        coarse += up;
    }
    coarse /= estimates.len() as f64;
    let correction = gaussian_blur(&(coarse - &fine_planes), blur)?;
    to_rows(&(fine_planes + correction))
}

/// Separable Gaussian blur of a (1, C, H, W) tensor, standard deviation `s` pixels, truncated at
/// 4 s (and at the image's size), edges mirrored.
fn gaussian_blur(planes: &Tensor, s: f64) -> Result<Tensor> {
    let (_, c, h, w) = planes.size4()?;
    let radius = ((4.0 * s).ceil() as i64).min(h - 1).min(w - 1).max(0);
    let taps: Vec<f32> = (-radius..=radius).map(|k| (-0.5 * (k as f64 / s).powi(2)).exp() as f32).collect();
    let sum: f32 = taps.iter().sum();
    let kernel = Tensor::f_from_slice(&taps)? / f64::from(sum);
    let n = 2 * radius + 1;
    let across = kernel.view([1, 1, 1, n]).repeat([c, 1, 1, 1]);
    let down = kernel.view([1, 1, n, 1]).repeat([c, 1, 1, 1]);
    let padded = planes.f_reflection_pad2d([radius, radius, radius, radius])?;
    let blurred = padded.f_conv2d(&across, None::<Tensor>, [1, 1], [0, 0], [1, 1], c)?.f_conv2d(
        &down,
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        c,
    )?;
    Ok(blurred.to_kind(Kind::Float))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(values: &[f32], h: usize, w: usize) -> ImageView<'_> {
        ImageView { data: values, height: h, width: w, channels: 1, row_stride: w }
    }

    #[test]
    fn half_resolution_averages_blocks_and_repeats_an_odd_edge() {
        // 3 x 3: the last row and column are repeated into the blocks.
        let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let half = half_resolution(view(&values, 3, 3), 0).unwrap();
        assert_eq!(half, vec![3.0, 4.5, 7.5, 9.0]);
        // The shifted grid: the first row and column are repeated before it instead.
        let shifted = half_resolution(view(&values, 3, 3), 1).unwrap();
        assert_eq!(shifted, vec![1.0, 2.5, 5.5, 7.0]);
        // 4 x 4 on the shifted grid: 3 x 3 blocks, both edges repeated.
        let values: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let shifted = half_resolution(view(&values, 4, 4), 1).unwrap();
        assert_eq!(shifted.len(), half_size(4, 1) * half_size(4, 1));
        assert_eq!(shifted, vec![0.0, 1.5, 3.0, 6.0, 7.5, 9.0, 12.0, 13.5, 15.0]);
    }

    #[test]
    fn half_resolution_halves_white_noise() {
        let noise = Tensor::randn([256, 256], (Kind::Float, tch::Device::Cpu)) * 0.2;
        let values = Vec::<f32>::try_from(noise.flatten(0, -1)).unwrap();
        for shift in GRID_SHIFTS {
            let half = half_resolution(view(&values, 256, 256), shift).unwrap();
            let std = Tensor::from_slice(&half).std(true).double_value(&[]);
            assert!((std - 0.1).abs() < 0.003, "noise level after 2 x 2 means (shift {shift}): {std}");
        }
    }

    #[test]
    fn gaussian_blur_keeps_constants_and_the_mean_and_smooths() {
        let constant = Tensor::full([1, 2, 9, 12], 0.7, (Kind::Float, tch::Device::Cpu));
        let blurred = gaussian_blur(&constant, 2.5).unwrap();
        assert!(f64::try_from((blurred - 0.7).abs().max()).unwrap() < 1e-6);
        let noise = Tensor::randn([1, 1, 64, 64], (Kind::Float, tch::Device::Cpu));
        let smooth = gaussian_blur(&noise, 2.0).unwrap();
        assert_eq!(smooth.size(), vec![1, 1, 64, 64]);
        let (before, after) = (noise.std(true).double_value(&[]), smooth.std(true).double_value(&[]));
        // A 2-D Gaussian of s pixels keeps 1 / (4 pi s^2) of white noise's variance: std x 0.141 at
        // s = 2 (edges and the truncation move it a little).
        assert!(after < 0.16 * before && after > 0.12 * before, "{before} -> {after}");
    }

    #[test]
    fn joining_equal_scales_changes_nothing_and_a_coarse_offset_moves_the_mean() {
        // A smooth fine image whose 2 x 2 means are its coarse version: the join returns it.
        let (h, w) = (16, 20);
        let fine: Vec<f32> =
            (0..h * w).map(|i| 0.5 + 0.01 * ((i / w) as f32) + 0.005 * ((i % w) as f32)).collect();
        let coarse: Vec<Vec<f32>> =
            GRID_SHIFTS.iter().map(|&s| half_resolution(view(&fine, h, w), s).unwrap()).collect();
        let joined = join_scales(&fine, &coarse, (h, w, 1), 2.0).unwrap();
        let worst = fine.iter().zip(&joined).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        // Exact in the interior; bicubic upsampling's clamped edges move the border a little.
        assert!(worst < 2e-3, "a consistent coarse scale changed the image by {worst}");
        // Coarse estimates brighter by 0.1 everywhere lift the whole image by 0.1.
        let brighter: Vec<Vec<f32>> = coarse.iter().map(|e| e.iter().map(|v| v + 0.1).collect()).collect();
        let lifted = join_scales(&fine, &brighter, (h, w, 1), 2.0).unwrap();
        for ((a, b), before) in lifted.iter().zip(&joined).zip(&fine) {
            assert!((a - b - 0.1).abs() < 1e-5, "{before}: {b} -> {a}");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(Refinement::default().check().is_ok());
        for bad in [
            Refinement { coarse_blur: -1.0, cleanup: 0.1 },
            Refinement { coarse_blur: f64::NAN, cleanup: 0.1 },
            Refinement { coarse_blur: 100.0, cleanup: 0.1 },
            Refinement { coarse_blur: 2.0, cleanup: 1.5 },
            Refinement { coarse_blur: 2.0, cleanup: f64::INFINITY },
        ] {
            assert!(bad.check().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Refinement { coarse_blur: 0.0, cleanup: 0.0 }.passes(), 1.0);
        assert_eq!(Refinement::default().passes(), 2.5);
    }
}
