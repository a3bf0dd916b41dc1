//! The geometric self-ensemble (`RunOptions::self_ensemble`, `lofi_run_params.self_ensemble`,
//! `lofi reconstruct --self-ensemble`): turning the sampling offsets equals turning the image, on
//! oblong images too; streamed windows still hold every sample; it denoises better; and models
//! it cannot serve refuse it.

mod common;

use std::path::Path;

use common::{noisy_camera_crop, reconstruct_whole};
use lofi::config::{LofiConfig, Network, NoiseLevelInput};
use lofi::engine::{self, ImageView, OutputView, Region, RunOptions, SelfEnsemble};
use lofi::model::LoadOptions;
use lofi::Model;
use tch::{Device, Kind, Tensor};

/// A small noise-level-aware MultiMLP with random weights whose geometry is far from round: rows
/// reach 3x further than columns, and the rings are jittered, so no turn maps it onto itself.
fn lopsided_model(fourier_filtering: bool) -> Model {
    tch::manual_seed(11);
    let cfg = LofiConfig {
        image_size: 16,
        c_in: 1,
        c_out: 1,
        network: Network::MultiMLP,
        hidden_dim: 16,
        num_layers: 2,
        n: 5,
        m: 7,
        fourier_filtering,
        noise_level: Some(NoiseLevelInput { sigma_min: 0.0, sigma_max: 0.2 }),
        ..LofiConfig::default()
    };
    let (net, params) = lofi::kernels::LofiNet::init(&cfg, Device::Cpu).unwrap();
    tch::no_grad(|| {
        let jitter = Tensor::randn(net.patch.size(), (Kind::Float, Device::Cpu)) * 0.02;
        let stretch = Tensor::from_slice(&[8.0f32, 0.5]);
        let mut patch = net.patch.shallow_clone();
        let _ = patch.g_mul_(&stretch).g_add_(&jitter);
    });
    Model::from_parts(net, params, None)
}

/// Deterministic detail at every scale, different along rows and columns.
fn image(h: usize, w: usize) -> Vec<f32> {
    (0..h * w)
        .map(|i| {
            let (y, x) = ((i / w) as f32, (i % w) as f32);
            0.5 + 0.3 * (0.41 * y).sin() * (0.17 * x + 0.3).cos()
                + 0.05 * ((y * 5.0 + x * 11.0) % 7.0 - 3.0) / 3.0
        })
        .collect()
}

fn options(ensemble: SelfEnsemble, budget: usize) -> RunOptions<'static> {
    RunOptions {
        memory_budget: budget,
        threads: 1,
        noise_level: Some(0.1),
        self_ensemble: ensemble,
        ..Default::default()
    }
}

/// The whole grid of an (h, w) image, through the streaming engine.
fn reconstruct(model: &Model, img: &[f32], h: usize, w: usize, ensemble: SelfEnsemble) -> Vec<f32> {
    reconstruct_whole(model, img, h, w, options(ensemble, 8 << 20))
}

/// The axes (0: rows, 1: columns) an element negates.
fn mirrored_axes(t: &lofi::kernels::self_ensemble::OffsetTransform) -> Vec<i64> {
    [(t.row_sign < 0, 0), (t.col_sign < 0, 1)].iter().filter(|f| f.0).map(|f| f.1).collect()
}

/// An (h, w) tensor under the element that maps (row, col) offsets to `t`'s: `J = I o T` in
/// centred pixel coordinates (mirror the negated axes, then transpose when the element swaps).
fn turn(image: &Tensor, t: &lofi::kernels::self_ensemble::OffsetTransform) -> Tensor {
    let flips = mirrored_axes(t);
    let flipped = if flips.is_empty() { image.shallow_clone() } else { image.flip(&flips) };
    if t.swap {
        flipped.transpose(0, 1).contiguous()
    } else {
        flipped.contiguous()
    }
}

/// Undoes [`turn`] on an output: `Z(p) = Y(T^-1 p)`, i.e. transpose first, then mirror.
fn unturn(output: &Tensor, t: &lofi::kernels::self_ensemble::OffsetTransform) -> Tensor {
    let swapped = if t.swap { output.transpose(0, 1) } else { output.shallow_clone() };
    let flips = mirrored_axes(t);
    if flips.is_empty() {
        swapped.contiguous()
    } else {
        swapped.flip(&flips).contiguous()
    }
}

/// Averaging over turned offsets equals averaging the plain network over turned images (each
/// output turned back), for every subgroup, on an oblong image; the ensemble is not the plain
/// output.
#[test]
fn turning_the_offsets_equals_turning_the_image() {
    let model = lopsided_model(false);
    let (h, w) = (21, 34);
    let img = image(h, w);
    let picture = Tensor::from_slice(&img).view([h as i64, w as i64]);
    let plain = reconstruct(&model, &img, h, w, SelfEnsemble::Off);
    for ensemble in [SelfEnsemble::HalfTurn, SelfEnsemble::QuarterTurns, SelfEnsemble::Dihedral] {
        let got = reconstruct(&model, &img, h, w, ensemble);
        let mut sum = Tensor::zeros([h as i64, w as i64], (Kind::Double, Device::Cpu));
        for t in ensemble.elements() {
            let turned = turn(&picture, t);
            let (th, tw) = (turned.size()[0] as usize, turned.size()[1] as usize);
            let data = Vec::<f32>::try_from(turned.view([-1])).unwrap();
            let out = reconstruct(&model, &data, th, tw, SelfEnsemble::Off);
            let out = Tensor::from_slice(&out).view([th as i64, tw as i64]);
            sum += unturn(&out, t).to_kind(Kind::Double);
        }
        let want = Vec::<f64>::try_from((sum / ensemble.passes() as f64).view([-1])).unwrap();
        let worst = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(
            worst < 1e-6,
            "{ensemble:?}: the offset-space mean differs from the image-space one by {worst}"
        );
        let moved = got.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        eprintln!("{ensemble:?}: offset-space vs image-space {worst:.2e}, vs one pass {moved:.2e}");
        assert!(moved as f64 > 20.0 * worst.max(1e-6), "{ensemble:?} left the output as it was ({moved})");
    }
}

/// Streamed windows (a small budget, a zoomed region, points) hold every sample of every turned
/// geometry: the result equals the whole-image path bit for bit.
#[test]
fn streamed_windows_hold_the_turned_geometry() {
    let model = lopsided_model(false);
    let (h, w) = (90, 70);
    let img = image(h, w);
    let view = ImageView { data: &img, height: h, width: w, channels: 1, row_stride: w };
    let region = Region { x0: 5.5, y0: -3.0, x1: 60.25, y1: 80.0 };
    let (gw, gh) = (57, 83);
    let minimum = engine::stream::minimum_budget(&model, h, w);
    let run = |whole: bool, budget: usize| {
        let mut out = vec![f32::NAN; gw * gh];
        let call = if whole { engine::reconstruct_region_whole_image } else { engine::reconstruct_region };
        let report = call(
            &model,
            view,
            region,
            gw,
            gh,
            None,
            OutputView { data: &mut out, row_stride: gw },
            options(SelfEnsemble::Dihedral, budget),
        )
        .unwrap();
        (out, report.batches)
    };
    let (want, _) = run(true, 64 << 20);
    let (got, batches) = run(false, minimum * 2);
    assert!(batches > 4, "the small budget should stream many windows, got {batches} batches");
    let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(differ, 0, "streamed windows changed {differ} of {} values of the ensemble", want.len());

    let points: Vec<[f64; 2]> = (0..40).map(|i| [i as f64 * 1.7 - 3.0, 89.0 - i as f64 * 2.1]).collect();
    let points_run = |whole: bool| {
        let mut out = vec![f32::NAN; points.len()];
        let call = if whole { engine::reconstruct_points_whole_image } else { engine::reconstruct_points };
        call(&model, view, &points, &mut out, options(SelfEnsemble::Dihedral, minimum * 2)).unwrap();
        out
    };
    let (streamed, whole) = (points_run(false), points_run(true));
    assert!(streamed.iter().zip(&whole).all(|(a, b)| a.to_bits() == b.to_bits()), "points differ");
}

/// The shipped denoiser on a crop of the bundled camera.png (held out of its training): the
/// 8-pass ensemble is closer to the clean image than one pass, and 4 passes lie between.
#[test]
fn the_ensemble_denoises_better() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = Model::load(&root.join("models/denoise-gray.lofi"), LoadOptions::default()).unwrap();
    let (h, w, sigma) = (96usize, 96usize, 25.0 / 255.0);
    let (clean, noisy) = noisy_camera_crop(h, sigma, 5);
    let psnr = |ensemble: SelfEnsemble| {
        let options = RunOptions {
            threads: 2,
            noise_level: Some(sigma),
            self_ensemble: ensemble,
            ..Default::default()
        };
        lofi::metrics::psnr_with_range(&clean, &reconstruct_whole(&model, &noisy, h, w, options), 1.0)
    };
    let (one, four, eight) =
        (psnr(SelfEnsemble::Off), psnr(SelfEnsemble::QuarterTurns), psnr(SelfEnsemble::Dihedral));
    eprintln!("camera crop, sigma 25/255: one pass {one:.3} dB, 4 passes {four:.3}, 8 passes {eight:.3}");
    assert!(eight > one + 0.05, "8 passes: {eight:.3} dB, one: {one:.3} dB");
    assert!(four > one, "4 passes: {four:.3} dB, one: {one:.3} dB");
}

/// Models whose geometry cannot turn refuse an ensemble with the reason; a count that is no
/// subgroup is refused.
#[test]
fn models_that_cannot_turn_refuse_it() {
    let filtered = lopsided_model(true);
    let (h, w) = (20, 20);
    let img = image(h, w);
    let mut out = vec![0f32; h * w];
    let err = engine::reconstruct_region(
        &filtered,
        ImageView { data: &img, height: h, width: w, channels: 1, row_stride: w },
        Region::whole(h, w),
        w,
        h,
        None,
        OutputView { data: &mut out, row_stride: w },
        options(SelfEnsemble::QuarterTurns, 8 << 20),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("Fourier filter"), "{err}");
    assert!(out.iter().all(|v| *v == 0.0), "a refused call wrote output");
    // Without an ensemble the same model runs.
    let _ = reconstruct(&filtered, &img, h, w, SelfEnsemble::Off);
    for bad in [3u64, 5, 16, u64::MAX] {
        let err = SelfEnsemble::from_passes(bad).unwrap_err().to_string();
        assert!(err.contains("1 (off), 2 (half turn), 4 (quarter turns) or 8"), "{err}");
    }
}
