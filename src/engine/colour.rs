//! RGB images through a gray noise-level-aware denoiser: the image is turned into the opponent
//! colour space of CBM3D (Dabov et al., ICIP 2007), whose three channels a gray denoiser takes one
//! by one, each told its own noise level, and turned back.
//!
//! ```text
//! Y = (R + G + B) / 3       noise sigma / sqrt(3)      luminance
//! U = (R - B) / 2 + 1/2     noise sigma / sqrt(2)      red against blue
//! V = (R - 2G + B) / 4 + 1/2  noise sigma sqrt(6) / 4  green against magenta
//! ```
//!
//! The rows of the transform are orthogonal, so independent noise of level sigma in R, G and B
//! stays independent across Y, U and V, at the levels above; the offsets put U and V in [0, 1]
//! like the images the gray denoiser was trained on. Most of the image's structure goes to Y, where
//! the noise is lowest; U and V are smooth and denoised hard. Measured on Kodak24 and McMaster
//! against CBM3D in the README ("Colour images").

use super::{check_output, first_replica, ImageView, OutputView, Progress, RunOptions, RunReport};
use crate::error::Result;
use crate::model::Model;

use super::refine::{combine, denoise_refined, required_noise_level, Refinement};

/// The opponent transform's rows (R, G, B weights) and offsets.
const OPPONENT: [[f32; 3]; 3] = [[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0], [0.5, 0.0, -0.5], [0.25, -0.5, 0.25]];
const OFFSET: [f32; 3] = [0.0, 0.5, 0.5];

/// The inverse transform's rows (Y, U, V weights), after the offsets are taken off.
const INVERSE: [[f32; 3]; 3] = [[1.0, 1.0, 2.0 / 3.0], [1.0, 0.0, -4.0 / 3.0], [1.0, -1.0, 2.0 / 3.0]];

/// A channel's noise level as a fraction of the RGB input's: the norm of its row.
fn noise_fraction(row: &[f32; 3]) -> f64 {
    row.iter().map(|&a| f64::from(a) * f64::from(a)).sum::<f64>().sqrt()
}

/// Whether `model` on `image` takes the colour path: a gray noise-level-aware denoiser and an
/// image of three channels.
pub(crate) fn applies(model: &Model, image: &ImageView<'_>) -> bool {
    let config = model.config();
    config.c_in == 1 && config.c_out == 1 && config.noise_level.is_some() && image.channels == 3
}

/// Denoises the RGB `image` ((H, W, 3), noise of level `options.noise_level` in every channel)
/// with the gray noise-level-aware denoiser `models` channel by channel in the opponent colour
/// space, each channel through [`denoise_refined`] with `refinement` (both steps off: one pass),
/// into `out` ((H, W, 3) with its row stride). Progress counts the three channels' passes as one
/// run. [`denoise_refined`] calls it where [`applies`] says so.
pub(super) fn denoise_opponent(
    models: &[&Model],
    image: ImageView<'_>,
    out: OutputView<'_>,
    options: RunOptions<'_>,
    refinement: Refinement,
) -> Result<RunReport> {
    let model = first_replica(models)?;
    image.validate(3)?;
    let (h, w) = (image.height, image.width);
    check_output(out.data.len(), h, w * 3, out.row_stride)?;
    // The input's level is checked as given: every channel's is a fraction of it.
    let sigma = required_noise_level(model, options.noise_level)?;

    let mut planes = Vec::with_capacity(3);
    for (row, offset) in OPPONENT.iter().zip(OFFSET) {
        let mut plane = crate::error::try_vec(h * w, "an opponent colour channel")?;
        for r in 0..h {
            let line = &image.data[r * image.row_stride..r * image.row_stride + w * 3];
            plane
                .extend(line.chunks_exact(3).map(|p| row[0] * p[0] + row[1] * p[1] + row[2] * p[2] + offset));
        }
        planes.push(plane);
    }

    let RunOptions { memory_budget, threads, noise_level: _, self_ensemble, mut progress } = options;
    let mut denoised = Vec::with_capacity(3);
    let mut report: Option<RunReport> = None;
    for (k, (plane, row)) in planes.iter().zip(&OPPONENT).enumerate() {
        let mut inner = |p: Progress| match &mut progress {
            None => true,
            Some(cb) => match p.filter {
                Some(pieces) => cb(Progress::filtering(pieces, 3 * p.total)),
                None => cb(Progress::new(k * p.total + p.done, 3 * p.total)),
            },
        };
        let run = RunOptions {
            memory_budget,
            threads,
            progress: Some(&mut inner),
            noise_level: Some(sigma * noise_fraction(row)),
            self_ensemble,
        };
        let view = ImageView { data: plane, height: h, width: w, channels: 1, row_stride: w };
        let mut result = crate::error::try_vec(h * w, "a denoised colour channel")?;
        result.resize(h * w, 0.0);
        let this =
            denoise_refined(models, view, OutputView { data: &mut result, row_stride: w }, run, refinement)?;
        report = Some(match report.take() {
            None => this,
            Some(before) => combine(before, this),
        });
        denoised.push(result);
    }

    for r in 0..h {
        let line = &mut out.data[r * out.row_stride..r * out.row_stride + w * 3];
        for (j, pixel) in line.chunks_exact_mut(3).enumerate() {
            let yuv = [0, 1, 2].map(|k| denoised[k][r * w + j] - OFFSET[k]);
            for (value, row) in pixel.iter_mut().zip(&INVERSE) {
                *value = row[0] * yuv[0] + row[1] * yuv[1] + row[2] * yuv[2];
            }
        }
    }
    Ok(report.expect("three channels ran"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inverse_undoes_the_transform() {
        for (i, inverse_row) in INVERSE.iter().enumerate() {
            for j in 0..3 {
                let product: f32 = inverse_row.iter().zip(&OPPONENT).map(|(a, row)| a * row[j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((product - want).abs() < 1e-6, "(inverse * transform)[{i}][{j}] = {product}");
            }
        }
    }

    #[test]
    fn the_channels_noise_stays_independent() {
        // Rows orthogonal: the channels' noise is uncorrelated (and Gaussian, so independent).
        for (a, first) in OPPONENT.iter().enumerate() {
            for second in &OPPONENT[a + 1..] {
                let dot: f32 = first.iter().zip(second).map(|(x, y)| x * y).sum();
                assert!(dot.abs() < 1e-7, "rows {first:?} and {second:?}: {dot}");
            }
        }
        let fractions = OPPONENT.map(|row| noise_fraction(&row));
        let want = [1.0 / 3f64.sqrt(), 1.0 / 2f64.sqrt(), 6f64.sqrt() / 4.0];
        for (got, want) in fractions.iter().zip(want) {
            assert!((got - want).abs() < 1e-7, "{got} vs {want}");
        }
    }
}
