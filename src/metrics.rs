//! Image quality metrics with scikit-image's definitions, as the paper reports them
//! (reference semantics §8): PSNR and SSIM with `data_range = max(x_true) - min(x_true)` of
//! the ground truth, averaged over images.
//!
//! * [`psnr`]: `skimage.metrics.peak_signal_noise_ratio(x_true, x_pred, data_range=R)`
//!   `= 10 log10(R^2 / mean((x_true - x_pred)^2))` over all pixels and channels.
//! * [`ssim`]: `skimage.metrics.structural_similarity(x_true, x_pred, data_range=R,
//!   channel_axis=2)` with its defaults: uniform 7 x 7 windows (`gaussian_weights=False`),
//!   `K1 = 0.01`, `K2 = 0.03`, sample covariances (`use_sample_covariance=True`, factor
//!   49/48), the SSIM map averaged over the pixels whose window lies inside the image (skimage
//!   crops `(7 - 1) / 2 = 3` pixels on each side, so its border mode never matters), and the
//!   result averaged over channels, each channel using the same `R`.
//!
//! Everything is computed in float64 (skimage computes float32 inputs in float32, which moves
//! results by about 1e-6; see the tests). Images are [`Image`]s or row-major `(H, W, C)` slices.
//! A constant ground truth gives `R = 0`, and then the values skimage gives: PSNR `-inf` (or
//! NaN for a perfect prediction) and a NaN or meaningless SSIM; callers averaging over a data
//! set should not feed constant images.

use crate::error::{Error, Result};
use crate::image_io::Image;

/// Side of skimage's default uniform SSIM window.
pub const SSIM_WINDOW: usize = 7;
const SSIM_K1: f64 = 0.01;
const SSIM_K2: f64 = 0.03;

/// `max - min` of the values: the `data_range` the paper uses (of the ground truth).
pub fn data_range(values: &[f32]) -> f64 {
    let (lo, hi) =
        values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    f64::from(hi) - f64::from(lo)
}

/// PSNR in dB of `x_pred` against `x_true`, `data_range` from the ground truth.
/// Identical images give `+inf`.
pub fn psnr(x_true: &Image, x_pred: &Image) -> Result<f64> {
    check_same_shape(x_true, x_pred)?;
    Ok(psnr_with_range(&x_true.data, &x_pred.data, data_range(&x_true.data)))
}

/// SSIM of `x_pred` against `x_true` (mean over channels), `data_range` from the ground truth.
pub fn ssim(x_true: &Image, x_pred: &Image) -> Result<f64> {
    check_same_shape(x_true, x_pred)?;
    ssim_with_range(
        &x_true.data,
        &x_pred.data,
        [x_true.height, x_true.width, x_true.channels],
        data_range(&x_true.data),
    )
}

/// Mean PSNR over pairs of images, as the paper's tables average it.
pub fn mean_psnr(x_true: &[Image], x_pred: &[Image]) -> Result<f64> {
    mean_over(x_true, x_pred, psnr)
}

/// Mean SSIM over pairs of images.
pub fn mean_ssim(x_true: &[Image], x_pred: &[Image]) -> Result<f64> {
    mean_over(x_true, x_pred, ssim)
}

/// PSNR of two equally long value slices (any layout) with an explicit data range.
pub fn psnr_with_range(x_true: &[f32], x_pred: &[f32], data_range: f64) -> f64 {
    assert_eq!(x_true.len(), x_pred.len(), "psnr: the images differ in size");
    let squared: f64 = x_true
        .iter()
        .zip(x_pred)
        .map(|(&a, &b)| {
            let d = f64::from(a) - f64::from(b);
            d * d
        })
        .sum();
    let mse = squared / x_true.len() as f64;
    10.0 * (data_range * data_range / mse).log10()
}

/// SSIM of two row-major `(H, W, C)` images with an explicit data range (mean over channels).
/// Errors when a side is shorter than the 7-pixel window or the slices do not match `shape`.
pub fn ssim_with_range(x_true: &[f32], x_pred: &[f32], shape: [usize; 3], data_range: f64) -> Result<f64> {
    let [h, w, c] = shape;
    if x_true.len() != h * w * c || x_pred.len() != h * w * c {
        return Err(Error::invalid_argument(format!(
            "ssim: {} and {} values for a {h} x {w} x {c} image",
            x_true.len(),
            x_pred.len()
        )));
    }
    if h < SSIM_WINDOW || w < SSIM_WINDOW {
        return Err(Error::invalid_argument(format!(
            "ssim: a {h} x {w} image is smaller than the {SSIM_WINDOW} x {SSIM_WINDOW} window"
        )));
    }
    let total: f64 = (0..c).map(|ch| ssim_plane(x_true, x_pred, h, w, c, ch, data_range)).sum();
    Ok(total / c as f64)
}

/// Mean SSIM of one channel over the pixels whose window lies inside the image.
fn ssim_plane(x: &[f32], y: &[f32], h: usize, w: usize, c: usize, ch: usize, range: f64) -> f64 {
    let at = |img: &[f32], r: usize, col: usize| f64::from(img[(r * w + col) * c + ch]);
    // Summed-area tables of x, y, x^2, y^2, xy (float64): any window sum in four look-ups.
    let tables = [
        SummedArea::new(h, w, |r, col| at(x, r, col)),
        SummedArea::new(h, w, |r, col| at(y, r, col)),
        SummedArea::new(h, w, |r, col| at(x, r, col).powi(2)),
        SummedArea::new(h, w, |r, col| at(y, r, col).powi(2)),
        SummedArea::new(h, w, |r, col| at(x, r, col) * at(y, r, col)),
    ];
    let n = (SSIM_WINDOW * SSIM_WINDOW) as f64;
    let cov_norm = n / (n - 1.0);
    let c1 = (SSIM_K1 * range).powi(2);
    let c2 = (SSIM_K2 * range).powi(2);
    let half = SSIM_WINDOW / 2;
    let mut total = 0.0;
    let mut count = 0usize;
    for r in half..h - half {
        for col in half..w - half {
            let mean = |t: &SummedArea| t.window(r - half, col - half, SSIM_WINDOW) / n;
            let (ux, uy, uxx, uyy, uxy) =
                (mean(&tables[0]), mean(&tables[1]), mean(&tables[2]), mean(&tables[3]), mean(&tables[4]));
            let vx = cov_norm * (uxx - ux * ux);
            let vy = cov_norm * (uyy - uy * uy);
            let vxy = cov_norm * (uxy - ux * uy);
            let numerator = (2.0 * ux * uy + c1) * (2.0 * vxy + c2);
            let denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2);
            total += numerator / denominator;
            count += 1;
        }
    }
    total / count as f64
}

/// Inclusive prefix sums with a zero row and column in front.
struct SummedArea {
    width: usize,
    sums: Vec<f64>,
}

impl SummedArea {
    fn new(h: usize, w: usize, value: impl Fn(usize, usize) -> f64) -> SummedArea {
        let stride = w + 1;
        let mut sums = vec![0.0; (h + 1) * stride];
        for r in 0..h {
            let mut row_sum = 0.0;
            for col in 0..w {
                row_sum += value(r, col);
                sums[(r + 1) * stride + col + 1] = sums[r * stride + col + 1] + row_sum;
            }
        }
        SummedArea { width: stride, sums }
    }

    /// Sum over the `size x size` window whose top-left pixel is `(r, c)`.
    fn window(&self, r: usize, c: usize, size: usize) -> f64 {
        let s = |r: usize, c: usize| self.sums[r * self.width + c];
        s(r + size, c + size) - s(r, c + size) - s(r + size, c) + s(r, c)
    }
}

fn check_same_shape(a: &Image, b: &Image) -> Result<()> {
    if (a.height, a.width, a.channels) != (b.height, b.width, b.channels) {
        return Err(Error::invalid_argument(format!(
            "metrics: ground truth is {} x {} x {}, prediction {} x {} x {}",
            a.height, a.width, a.channels, b.height, b.width, b.channels
        )));
    }
    Ok(())
}

fn mean_over(x_true: &[Image], x_pred: &[Image], metric: fn(&Image, &Image) -> Result<f64>) -> Result<f64> {
    if x_true.len() != x_pred.len() || x_true.is_empty() {
        return Err(Error::invalid_argument(format!(
            "metrics: {} ground-truth and {} predicted images (need the same, nonzero, count)",
            x_true.len(),
            x_pred.len()
        )));
    }
    let total = x_true.iter().zip(x_pred).map(|(t, p)| metric(t, p)).sum::<Result<f64>>()?;
    Ok(total / x_true.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A float32 (H, W) or (H, W, C) fixture as an Image (read directly with npyz, so these
    /// tests depend on nothing but the metric code).
    fn fixture(name: &str) -> Image {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics").join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let data = npy.into_vec::<f32>().unwrap();
        Image::new(shape[0], shape[1], shape.get(2).copied().unwrap_or(1), data).unwrap()
    }

    /// skimage's values: `metrics_values.json`, written by scripts/fixtures/make_metrics_fixtures.py.
    fn expected() -> serde_json::Value {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/metrics_values.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn match_scikit_image() {
        let table = expected();
        let cases = table["cases"].as_array().unwrap();
        assert!(cases.len() >= 6);
        for case in cases {
            let truth = fixture(case["truth"].as_str().unwrap());
            let pred = fixture(case["pred"].as_str().unwrap());
            let name = case["pred"].as_str().unwrap();
            let (p, s) = (psnr(&truth, &pred).unwrap(), ssim(&truth, &pred).unwrap());
            // float64 references: agreement to rounding. float32 references (skimage computing
            // in float32, as it does for float32 images): within 1e-5.
            let p64 = case["psnr_f64"].as_f64().unwrap();
            let s64 = case["ssim_f64"].as_f64().unwrap();
            assert!((p - p64).abs() < 1e-9, "{name}: psnr {p} vs {p64}");
            assert!((s - s64).abs() < 1e-10, "{name}: ssim {s} vs {s64}");
            eprintln!(
                "{name}: |psnr - skimage f64| = {:.1e}, |ssim - skimage f64| = {:.1e}",
                (p - p64).abs(),
                (s - s64).abs()
            );
            let p32 = case["psnr_f32"].as_f64().unwrap();
            let s32 = case["ssim_f32"].as_f64().unwrap();
            assert!((p - p32).abs() < 1e-5, "{name}: psnr {p} vs float32 skimage {p32}");
            assert!((s - s32).abs() < 1e-5, "{name}: ssim {s} vs float32 skimage {s32}");
        }
        let truths: Vec<Image> = cases.iter().map(|c| fixture(c["truth"].as_str().unwrap())).collect();
        let preds: Vec<Image> = cases.iter().map(|c| fixture(c["pred"].as_str().unwrap())).collect();
        let mean = mean_psnr(&truths, &preds).unwrap();
        let expected_mean =
            cases.iter().map(|c| c["psnr_f64"].as_f64().unwrap()).sum::<f64>() / cases.len() as f64;
        assert!((mean - expected_mean).abs() < 1e-9);
    }

    #[test]
    fn identical_images() {
        let img = fixture("gray_truth.npy");
        assert_eq!(psnr(&img, &img).unwrap(), f64::INFINITY);
        assert!((ssim(&img, &img).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_mismatched_and_tiny_images() {
        let a = Image::zeros(8, 8, 1);
        let b = Image::zeros(8, 9, 1);
        assert!(psnr(&a, &b).is_err());
        assert!(ssim(&Image::zeros(6, 20, 1), &Image::zeros(6, 20, 1)).is_err());
        assert!(mean_ssim(&[], &[]).is_err());
    }
}
