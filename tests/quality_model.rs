//! The quality gray denoiser (`models/denoise-gray-large.lofi`, trained on a GPU): what its file
//! says it is, and that it denoises a held-out photograph better than the CPU-size model it was
//! widened from, at low, middle and high noise.

mod common;

use std::path::Path;

use common::{noisy_camera_crop, reconstruct_whole};
use lofi::engine::RunOptions;
use lofi::model::LoadOptions;
use lofi::Model;

fn load(name: &str) -> Model {
    Model::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(name), LoadOptions::default())
        .unwrap()
}

#[test]
fn the_quality_denoiser_beats_the_cpu_model_it_grew_from() {
    let (large, small) = (load("denoise-gray-large.lofi"), load("denoise-gray.lofi"));
    let cfg = large.config();
    assert_eq!((cfg.hidden_dim, cfg.n, cfg.m), (256, 27, 9));
    let range = cfg.noise_level.expect("noise-level aware");
    assert!(range.sigma_min == 0.0 && (range.sigma_max - 50.0 / 255.0).abs() < 1e-6);
    assert!(large.digest().is_some(), "the shipped file records its digest");

    let side = 96;
    let mut gains = Vec::new();
    for (sigma, seed) in [(15.0 / 255.0, 1), (25.0 / 255.0, 2), (50.0 / 255.0, 3)] {
        let (clean, noisy) = noisy_camera_crop(side, sigma, seed);
        let options = || RunOptions { threads: 2, noise_level: Some(sigma), ..Default::default() };
        let psnr = |x: &[f32]| lofi::metrics::psnr_with_range(&clean, x, 1.0);
        let (a, b) = (
            psnr(&reconstruct_whole(&large, &noisy, side, side, options())),
            psnr(&reconstruct_whole(&small, &noisy, side, side, options())),
        );
        eprintln!("sigma {:.0}/255: noisy {:.2}, large {a:.2}, small {b:.2} dB", sigma * 255.0, psnr(&noisy));
        assert!(a > psnr(&noisy) + 5.0, "sigma {sigma}: {a} dB is hardly denoised");
        gains.push(a - b);
    }
    let mean = gains.iter().sum::<f64>() / gains.len() as f64;
    assert!(mean > 0.1, "the large model gains {gains:?} dB over the small one");
}
