//! Helpers shared by test files (`mod common;`): run the built `lofi`, find a fixture, and check a
//! success or a short, clean failure; run a model on a whole gray image through the engine, on a
//! noisy crop of the bundled camera.png.
// Each test file uses a subset.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use lofi::engine::{self, ImageView, OutputView, Progress, Region, RunOptions};
use lofi::Model;
use tch::{Device, Kind, Tensor};

pub fn lofi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lofi")).args(args).env_remove("RUST_BACKTRACE").output().unwrap()
}

pub fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel).display().to_string()
}

/// Success; stdout followed by stderr.
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A failure whose message contains `needle`, without a panic or a backtrace (argument errors
/// from clap come with their usage lines).
pub fn fails_cleanly_with(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded but should fail with '{needle}'");
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    for noise in ["panicked", "backtrace", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(noise), "noisy error: {stderr}");
    }
    stderr
}

/// A failure with a short, single-line message containing `needle`.
pub fn fails_with(out: &Output, needle: &str) {
    let stderr = fails_cleanly_with(out, needle);
    assert!(stderr.trim().lines().count() <= 2, "long error: {stderr}");
}

/// `model` on every pixel of the one-channel (h, w) image `img`, through the engine.
pub fn reconstruct_whole(
    model: &Model,
    img: &[f32],
    h: usize,
    w: usize,
    options: RunOptions<'_>,
) -> Vec<f32> {
    try_reconstruct_whole(model, img, h, w, options).unwrap()
}

/// [`reconstruct_whole`], returning the engine's error.
pub fn try_reconstruct_whole(
    model: &Model,
    img: &[f32],
    h: usize,
    w: usize,
    options: RunOptions<'_>,
) -> lofi::Result<Vec<f32>> {
    let mut out = vec![f32::NAN; h * w];
    engine::reconstruct_region(
        model,
        ImageView { data: img, height: h, width: w, channels: 1, row_stride: w },
        Region::whole(h, w),
        w,
        h,
        None,
        OutputView { data: &mut out, row_stride: w },
        options,
    )?;
    Ok(out)
}

/// The side x side crop of the bundled camera.png (held out of the shipped denoiser's training)
/// at row 150, column 200, and the crop plus Gaussian noise of `sigma` drawn after
/// `tch::manual_seed(seed)`: (clean, noisy).
pub fn noisy_camera_crop(side: usize, sigma: f64, seed: i64) -> (Vec<f32>, Vec<f32>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let camera = lofi::image_io::read(&root.join("data/images/gray/camera.png")).unwrap();
    let (r0, c0) = (150, 200);
    let clean: Vec<f32> = (0..side * side).map(|i| camera.at(r0 + i / side, c0 + i % side, 0)).collect();
    tch::manual_seed(seed);
    let noise =
        Vec::<f32>::try_from(Tensor::randn([(side * side) as i64], (Kind::Float, Device::Cpu)) * sigma)
            .unwrap();
    let noisy = clean.iter().zip(&noise).map(|(c, n)| c + n).collect();
    (clean, noisy)
}

/// The progress reports of one run: every one counts `total` in all, none goes back, and the last
/// reaches `total`.
pub fn assert_one_run(seen: &[Progress], total: usize) {
    assert!(
        seen.iter().all(|p| p.total == total),
        "totals {:?}, expected {total}",
        seen.iter().map(|p| p.total).collect::<Vec<_>>()
    );
    assert!(seen.windows(2).all(|p| p[0].done <= p[1].done), "progress went back");
    assert_eq!(seen.last().expect("progress was reported").done, total);
}

/// `call`, handed a progress callback that cancels at its first report, fails as cancelled and
/// reports nothing more (`what`: the work that must not run after the cancel).
pub fn assert_first_report_cancels<T: std::fmt::Debug>(
    what: &str,
    call: impl FnOnce(&mut dyn FnMut(Progress) -> bool) -> lofi::Result<T>,
) {
    let mut calls = 0;
    let err = call(&mut |_| {
        calls += 1;
        false
    })
    .unwrap_err();
    assert!(matches!(err, lofi::Error::Cancelled), "{err:?}");
    assert_eq!(calls, 1, "{what} after a cancel must not run");
}
