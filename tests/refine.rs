//! Refined denoising (`engine::denoise_refined`, `lofi reconstruct --refine`): it beats the
//! one-pass result of the shipped denoiser at high noise on a held-out photograph, each of its
//! steps is the engine's pass it claims to be, progress covers every pass, and bad calls fail
//! with one clear error.

mod common;

use std::path::Path;

use common::{assert_first_report_cancels, assert_one_run, noisy_camera_crop, reconstruct_whole};
use lofi::engine::{self, ImageView, OutputView, Progress, Refinement, RunOptions};
use lofi::model::LoadOptions;
use lofi::{Error, Model};

fn load(rel: &str) -> Model {
    Model::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(rel), LoadOptions::default()).unwrap()
}

fn view(img: &[f32], h: usize, w: usize) -> ImageView<'_> {
    ImageView { data: img, height: h, width: w, channels: 1, row_stride: w }
}

fn refine(
    model: &Model,
    img: &[f32],
    h: usize,
    w: usize,
    options: RunOptions<'_>,
    refinement: Refinement,
) -> lofi::Result<Vec<f32>> {
    let mut out = vec![f32::NAN; h * w];
    engine::denoise_refined(
        &[model],
        view(img, h, w),
        OutputView { data: &mut out, row_stride: w },
        options,
        refinement,
    )?;
    Ok(out)
}

fn options(sigma: f64) -> RunOptions<'static> {
    RunOptions { threads: 1, noise_level: Some(sigma), ..Default::default() }
}

#[test]
fn refinement_beats_one_pass_at_high_noise_and_keeps_low_noise() {
    let model = load("models/denoise-gray.lofi");
    let side = 128;
    for (sigma, seed, least_gain) in [(50.0 / 255.0, 7, 0.1), (50.0 / 255.0, 8, 0.1), (15.0 / 255.0, 9, 0.0)]
    {
        let (clean, noisy) = noisy_camera_crop(side, sigma, seed);
        let psnr = |x: &[f32]| lofi::metrics::psnr_with_range(&clean, x, 1.0);
        let one = psnr(&reconstruct_whole(&model, &noisy, side, side, options(sigma)));
        let refined =
            psnr(&refine(&model, &noisy, side, side, options(sigma), Refinement::default()).unwrap());
        eprintln!(
            "sigma {:.0}/255, seed {seed}: one pass {one:.2} dB, refined {refined:.2} dB",
            sigma * 255.0
        );
        assert!(refined - one > least_gain, "sigma {sigma}: refined {refined} dB against one pass {one} dB");
    }
}

#[test]
fn each_step_is_the_engine_pass_it_claims_to_be() {
    let model = load("tests/fixtures/models/tiny-gray-sigma.lofi");
    let (h, w) = (21, 18);
    let img: Vec<f32> =
        (0..h * w).map(|i| 0.5 + 0.3 * ((i / w) as f32 * 0.5).sin() * ((i % w) as f32 * 0.4).cos()).collect();
    let sigma = 0.1;
    let one = reconstruct_whole(&model, &img, h, w, options(sigma));
    // Neither step: the one-pass result, bit for bit.
    let none = Refinement { coarse_blur: 0.0, cleanup: 0.0 };
    assert_eq!(refine(&model, &img, h, w, options(sigma), none).unwrap(), one);
    // The clean-up alone: a second pass over the first's result at the fraction of the level.
    let cleanup = Refinement { coarse_blur: 0.0, cleanup: 0.3 };
    let again = reconstruct_whole(&model, &one, h, w, options(0.3 * sigma));
    assert_eq!(refine(&model, &img, h, w, options(sigma), cleanup).unwrap(), again);
    // The coarse scale changes the result, smoothly: by less than the one pass changed the input.
    let coarse =
        refine(&model, &img, h, w, options(sigma), Refinement { coarse_blur: 2.0, cleanup: 0.0 }).unwrap();
    assert!(coarse.iter().all(|v| v.is_finite()));
    let moved = coarse.iter().zip(&one).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let denoised = one.iter().zip(&img).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(
        moved > 0.0 && moved < denoised,
        "the coarse scale moved values by {moved} (one pass: {denoised})"
    );
    // Odd and tiny images: the odd edge is repeated, below 4 x 4 the coarse scale is skipped.
    for (h, w) in [(9, 4), (3, 3), (2, 5)] {
        let small = &img[..h * w];
        let out = refine(&model, small, h, w, options(sigma), Refinement::default()).unwrap();
        assert!(out.iter().all(|v| v.is_finite()), "{h} x {w}");
    }
}

#[test]
fn progress_counts_every_pass_and_a_cancel_stops_it() {
    let model = load("tests/fixtures/models/tiny-gray-sigma.lofi");
    let (h, w) = (15, 12);
    let img = vec![0.4f32; h * w];
    let mut seen: Vec<Progress> = Vec::new();
    let mut record = |p: Progress| {
        seen.push(p);
        true
    };
    let run = RunOptions { progress: Some(&mut record), ..options(0.1) };
    refine(&model, &img, h, w, run, Refinement::default()).unwrap();
    // The coarse scale's two grids: blocks from the first pixel, and blocks one pixel up and left.
    let total = 2 * h * w + h.div_ceil(2) * w.div_ceil(2) + (h + 1).div_ceil(2) * (w + 1).div_ceil(2);
    assert_one_run(&seen, total);

    assert_first_report_cancels("the passes", |cancel| {
        let run = RunOptions { progress: Some(cancel), ..options(0.1) };
        refine(&model, &img, h, w, run, Refinement::default())
    });
}

#[test]
fn bad_calls_fail_with_one_clear_error() {
    let aware = load("tests/fixtures/models/tiny-gray-sigma.lofi");
    let fixed = load("tests/fixtures/models/tiny-gray.lofi");
    let (h, w) = (8, 8);
    let img = vec![0.5f32; h * w];
    let err = refine(&fixed, &img, h, w, RunOptions::default(), Refinement::default()).unwrap_err();
    assert!(err.to_string().contains("noise-level-aware"), "{err}");
    let err = refine(&aware, &img, h, w, RunOptions::default(), Refinement::default()).unwrap_err();
    assert!(err.to_string().contains("noise-level aware"), "{err}");
    let err =
        refine(&aware, &img, h, w, options(0.1), Refinement { coarse_blur: -1.0, cleanup: 0.1 }).unwrap_err();
    assert!(err.to_string().contains("blur"), "{err}");
    let err = refine(&aware, &img, h, w, options(f64::NAN), Refinement::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // An output buffer too small for the image, and an input with a NaN: refused, nothing panics.
    let mut short = vec![0f32; h * w - 1];
    let out = OutputView { data: &mut short, row_stride: w };
    let err = engine::denoise_refined(&[&aware], view(&img, h, w), out, options(0.1), Refinement::default())
        .unwrap_err();
    assert!(err.to_string().contains("output buffer"), "{err}");
    let mut bad = img.clone();
    bad[10] = f32::NAN;
    let err = refine(&aware, &bad, h, w, options(0.1), Refinement::default()).unwrap_err();
    assert!(err.to_string().contains("finite"), "{err}");
}
