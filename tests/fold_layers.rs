//! Layer folding at load (`LoadOptions::fold_layers`, on by default; `LofiNet::fold_layers`): the
//! shipped denoiser, whose per-angle MLPs' last layer folds into the mixer, gives the stored
//! network's output up to float rounding through the engine, and does the work it says.

mod common;

use std::path::Path;

use common::{noisy_camera_crop, reconstruct_whole};
use lofi::device::{CpuFeatures, DeviceSpec, Precision};
use lofi::engine::RunOptions;
use lofi::model::LoadOptions;
use lofi::Model;

fn denoise(model: &Model, noisy: &[f32], side: usize, sigma: f64) -> Vec<f32> {
    reconstruct_whole(
        model,
        noisy,
        side,
        side,
        RunOptions { threads: 1, noise_level: Some(sigma), ..Default::default() },
    )
}

#[test]
fn the_folded_shipped_denoiser_equals_the_stored_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("models/denoise-gray.lofi");
    let (side, sigma) = (80usize, 25.0 / 255.0);
    let (clean, noisy) = noisy_camera_crop(side, sigma, 9);

    let mut precisions = vec![Precision::F32];
    if Precision::BF16.check_cpu(CpuFeatures::detect()).is_ok() {
        precisions.push(Precision::BF16);
    }
    for precision in precisions {
        let folded = Model::load(&path, LoadOptions::new(DeviceSpec::Cpu, precision)).unwrap();
        let stored = Model::load(
            &path,
            LoadOptions { fold_layers: false, ..LoadOptions::new(DeviceSpec::Cpu, precision) },
        )
        .unwrap();
        // The work: 9 angles x (128 x 100 + 100 x 128 - 128 x 128) multiply-adds fewer per pixel.
        let saved = stored.pixel_net().flops_per_pixel() - folded.pixel_net().flops_per_pixel();
        assert_eq!(saved, 2.0 * 9.0 * (128.0 * 100.0 + 100.0 * 128.0 - 128.0 * 128.0), "{precision}");

        let (a, b) = (denoise(&folded, &noisy, side, sigma), denoise(&stored, &noisy, side, sigma));
        let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let (psnr_a, psnr_b) = (
            lofi::metrics::psnr_with_range(&clean, &a, 1.0),
            lofi::metrics::psnr_with_range(&clean, &b, 1.0),
        );
        eprintln!("{precision}: folded {psnr_a:.4} dB, stored {psnr_b:.4} dB, largest difference {max:.2e}");
        // f32: rounding of composed weights only. bf16: the composed weights are rounded to
        // bfloat16 once instead of two layers' weights and the features between them.
        let (tolerance, psnr_tolerance) =
            if precision == Precision::F32 { (2e-5, 1e-3) } else { (1e-2, 0.05) };
        assert!(max <= tolerance, "{precision}: the folded network differs by {max}");
        assert!((psnr_a - psnr_b).abs() <= psnr_tolerance, "{precision}: {psnr_a} against {psnr_b} dB");
        assert!(
            psnr_a > lofi::metrics::psnr_with_range(&clean, &noisy, 1.0) + 5.0,
            "{precision}: it denoises"
        );
    }
}
