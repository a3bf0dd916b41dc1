//! RGB images through a gray noise-level-aware denoiser (`engine::denoise_refined` on three
//! channels, `lofi reconstruct` on an RGB input): each opponent colour channel is the gray pass it
//! claims to be, told its own noise level; the colour path beats denoising R, G and B one by one on
//! a held-out photograph; progress covers the three channels; the calls it does not apply to fail
//! as before.

mod common;

use std::path::Path;

use common::{assert_first_report_cancels, assert_one_run, fails_with, lofi, ok, reconstruct_whole};
use lofi::engine::{self, ImageView, OutputView, Progress, Refinement, RunOptions};
use lofi::model::LoadOptions;
use lofi::{Error, Model};
use tch::{Device, Kind, Tensor};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load(rel: &str) -> Model {
    Model::load(&root().join(rel), LoadOptions::default()).unwrap()
}

fn options(sigma: f64) -> RunOptions<'static> {
    RunOptions { threads: 1, noise_level: Some(sigma), ..Default::default() }
}

const ONE_PASS: Refinement = Refinement { coarse_blur: 0.0, cleanup: 0.0 };

/// The (h, w, 3) `rgb` through `denoise_refined`.
fn denoise_colour(
    model: &Model,
    rgb: &[f32],
    h: usize,
    w: usize,
    options: RunOptions<'_>,
    refinement: Refinement,
) -> lofi::Result<Vec<f32>> {
    let mut out = vec![f32::NAN; h * w * 3];
    let image = ImageView { data: rgb, height: h, width: w, channels: 3, row_stride: w * 3 };
    engine::denoise_refined(
        &[model],
        image,
        OutputView { data: &mut out, row_stride: w * 3 },
        options,
        refinement,
    )?;
    Ok(out)
}

/// One channel combination per pixel of an (h, w, 3) image.
fn combine(rgb: &[f32], weights: [f32; 3], offset: f32) -> Vec<f32> {
    rgb.chunks_exact(3).map(|p| weights[0] * p[0] + weights[1] * p[1] + weights[2] * p[2] + offset).collect()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn each_opponent_channel_is_the_gray_pass_at_its_own_noise_level() {
    let model = load("tests/fixtures/models/tiny-gray-sigma.lofi");
    let (h, w) = (21, 18);
    let rgb: Vec<f32> = (0..h * w * 3)
        .map(|i| {
            let (r, c, k) = (i / (w * 3), i / 3 % w, i % 3);
            0.5 + 0.3 * ((r as f32 * 0.5 + k as f32).sin() * (c as f32 * 0.4 - k as f32).cos())
        })
        .collect();
    let sigma = 0.1;
    let out = denoise_colour(&model, &rgb, h, w, options(sigma), ONE_PASS).unwrap();
    // The luminance (the channels' mean), red against blue and green against magenta of the output
    // are the gray denoiser's results on those of the input, told sigma times 1/sqrt(3), 1/sqrt(2)
    // and sqrt(6)/4 (the transform's rows are orthogonal, so the inverse gives them back exactly,
    // up to float rounding).
    let channels = [
        ([1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0], 0.0, 1.0 / 3f64.sqrt()),
        ([0.5, 0.0, -0.5], 0.5, 1.0 / 2f64.sqrt()),
        ([0.25, -0.5, 0.25], 0.5, 6f64.sqrt() / 4.0),
    ];
    for (weights, offset, fraction) in channels {
        let want =
            reconstruct_whole(&model, &combine(&rgb, weights, offset), h, w, options(sigma * fraction));
        let got = combine(&out, weights, offset);
        let diff = max_difference(&got, &want);
        assert!(diff < 1e-5, "channel {weights:?}: {diff} from the gray pass at {fraction} sigma");
    }
    // Refinement applies to every channel: with the clean-up pass the result changes.
    let refined =
        denoise_colour(&model, &rgb, h, w, options(sigma), Refinement { coarse_blur: 0.0, cleanup: 0.3 })
            .unwrap();
    assert!(max_difference(&refined, &out) > 1e-4, "the clean-up pass changed nothing");
}

#[test]
fn the_opponent_space_beats_denoising_red_green_and_blue_one_by_one() {
    let model = load("models/denoise-gray.lofi");
    // A 96 x 96 crop of the bundled chelsea.png (the cat's face; not a training image).
    let photo = lofi::image_io::read(&root().join("data/images/color/chelsea.png")).unwrap();
    assert_eq!(photo.channels, 3);
    let (side, r0, c0) = (96, 40, 150);
    let clean: Vec<f32> =
        (0..side * side * 3).map(|i| photo.at(r0 + i / (side * 3), c0 + i / 3 % side, i % 3)).collect();
    let sigma = 25.0 / 255.0;
    tch::manual_seed(11);
    let noise = Vec::<f32>::try_from(Tensor::randn([clean.len() as i64], (Kind::Float, Device::Cpu)) * sigma)
        .unwrap();
    let noisy: Vec<f32> = clean.iter().zip(&noise).map(|(c, n)| c + n).collect();
    let psnr = |x: &[f32]| lofi::metrics::psnr_with_range(&clean, x, 1.0);

    let opponent = denoise_colour(&model, &noisy, side, side, options(sigma), ONE_PASS).unwrap();
    let mut separate = vec![0f32; noisy.len()];
    for k in 0..3 {
        let plane: Vec<f32> = noisy.iter().skip(k).step_by(3).copied().collect();
        let denoised = reconstruct_whole(&model, &plane, side, side, options(sigma));
        for (i, v) in denoised.into_iter().enumerate() {
            separate[i * 3 + k] = v;
        }
    }
    let (before, opponent, separate) = (psnr(&noisy), psnr(&opponent), psnr(&separate));
    eprintln!(
        "noisy {before:.2} dB, R, G, B one by one {separate:.2} dB, opponent colour space {opponent:.2} dB"
    );
    assert!(separate - before > 5.0, "the gray denoiser does not denoise: {before} -> {separate} dB");
    assert!(opponent - separate > 0.3, "opponent {opponent} dB against one by one {separate} dB");
}

#[test]
fn progress_counts_the_three_channels_and_a_cancel_stops_them() {
    let model = load("tests/fixtures/models/tiny-gray-sigma.lofi");
    let (h, w) = (9, 7);
    let rgb = vec![0.4f32; h * w * 3];
    let mut seen: Vec<Progress> = Vec::new();
    let mut record = |p: Progress| {
        seen.push(p);
        true
    };
    let run = RunOptions { progress: Some(&mut record), ..options(0.1) };
    denoise_colour(&model, &rgb, h, w, run, Refinement { coarse_blur: 0.0, cleanup: 0.5 }).unwrap();
    // Two passes per channel.
    let total = 3 * 2 * h * w;
    assert_one_run(&seen, total);

    assert_first_report_cancels("the channels", |cancel| {
        let run = RunOptions { progress: Some(cancel), ..options(0.1) };
        denoise_colour(&model, &rgb, h, w, run, ONE_PASS)
    });
}

#[test]
fn calls_the_colour_path_does_not_take_fail_as_before() {
    let aware = load("tests/fixtures/models/tiny-gray-sigma.lofi");
    let fixed = load("tests/fixtures/models/tiny-gray.lofi");
    let (h, w) = (8, 8);
    let rgb = vec![0.5f32; h * w * 3];
    // A fixed-level gray model cannot be told each channel's level.
    let err = denoise_colour(&fixed, &rgb, h, w, RunOptions::default(), ONE_PASS).unwrap_err();
    assert!(err.to_string().contains("noise-level-aware"), "{err}");
    // No level, a negative level, a NaN pixel, a short output buffer.
    let err = denoise_colour(&aware, &rgb, h, w, RunOptions::default(), ONE_PASS).unwrap_err();
    assert!(err.to_string().contains("noise-level aware"), "{err}");
    let err = denoise_colour(&aware, &rgb, h, w, options(-0.1), ONE_PASS).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let mut bad = rgb.clone();
    bad[7] = f32::NAN;
    let err = denoise_colour(&aware, &bad, h, w, options(0.1), ONE_PASS).unwrap_err();
    assert!(err.to_string().contains("finite"), "{err}");
    let mut short = vec![0f32; h * w * 3 - 1];
    let image = ImageView { data: &rgb, height: h, width: w, channels: 3, row_stride: w * 3 };
    let out = OutputView { data: &mut short, row_stride: w * 3 };
    let err = engine::denoise_refined(&[&aware], image, out, options(0.1), ONE_PASS).unwrap_err();
    assert!(err.to_string().contains("output buffer"), "{err}");
    // Two channels are not a colour image.
    let two = vec![0.5f32; h * w * 2];
    let mut out = vec![0f32; h * w * 2];
    let image = ImageView { data: &two, height: h, width: w, channels: 2, row_stride: w * 2 };
    let err = engine::denoise_refined(
        &[&aware],
        image,
        OutputView { data: &mut out, row_stride: w * 2 },
        options(0.1),
        ONE_PASS,
    )
    .unwrap_err();
    assert!(err.to_string().contains("channel"), "{err}");
}

#[test]
fn the_cli_denoises_an_rgb_image_with_a_gray_denoiser() {
    let dir = tempfile::tempdir().unwrap();
    let input = root().join("data/images/color/chelsea.png");
    let out = dir.path().join("out.npy");
    let model = root().join("tests/fixtures/models/tiny-gray-sigma.lofi");
    let reconstruct = |extra: &[&str]| {
        let common = ["reconstruct", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()];
        let rest = ["--output", out.to_str().unwrap(), "--sigma", "0.05"];
        lofi(&[&common[..], &rest, extra].concat())
    };
    let run = reconstruct(&["--json"]);
    ok(&run);
    let json: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&run.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(json["colour_space"], "opponent");
    let photo = lofi::image_io::read(&input).unwrap();
    assert_eq!(json["output"], serde_json::json!([photo.height, photo.width, 3]));
    let written = lofi::image_io::read(&out).unwrap();
    assert_eq!((written.height, written.width, written.channels), (photo.height, photo.width, 3));
    assert!(written.data.iter().all(|v| v.is_finite()));

    // The colour path needs the whole image on its own grid.
    let run = reconstruct(&["--width", "64"]);
    fails_with(&run, "opponent colour path");
}
