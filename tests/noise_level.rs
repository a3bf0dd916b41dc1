//! Noise-level-aware models: the conditioning survives the `.lofi` file, the engine requires a
//! noise level from such models and refuses one from fixed-level models, the level changes the
//! output, and fine-tuning's zero-initialised noise inputs leave a model's output unchanged.

mod common;

use std::path::Path;

use lofi::config::NoiseLevelInput;
use lofi::engine::{self, ImageView, RunOptions};
use lofi::kernels::LofiNet;
use lofi::model::LoadOptions;
use lofi::{Error, LofiConfig, Model};

fn fixture(name: &str) -> Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name);
    Model::load(&path, LoadOptions::default()).unwrap()
}

fn image(h: usize, w: usize) -> Vec<f32> {
    (0..h * w).map(|i| 0.5 + 0.3 * ((i / w) as f32 * 0.4).sin() * ((i % w) as f32 * 0.3).cos()).collect()
}

fn run(model: &Model, img: &[f32], h: usize, w: usize, noise_level: Option<f64>) -> Result<Vec<f32>, Error> {
    let options = RunOptions { memory_budget: 8 << 20, threads: 1, noise_level, ..Default::default() };
    common::try_reconstruct_whole(model, img, h, w, options)
}

#[test]
fn conditioning_survives_the_file_and_old_files_keep_their_bytes() {
    let model = fixture("tiny-gray-sigma.lofi");
    let range = model.config().noise_level.expect("the fixture is noise-level aware");
    assert_eq!(range, NoiseLevelInput { sigma_min: 0.0, sigma_max: 0.2 });
    let again = Model::load_from_memory(&model.to_bytes().unwrap(), LoadOptions::default()).unwrap();
    assert_eq!(again.config(), model.config());
    // A fixed-level model's configuration JSON has no noise_level key: files written before the
    // conditioning existed serialise to the same bytes.
    let fixed = fixture("tiny-gray.lofi");
    assert!(fixed.config().noise_level.is_none());
    assert!(!fixed.config().to_json().contains("noise_level"));
    // A bad range is refused at load.
    let bad = r#"{"image_size":16,"c_in":1,"c_out":1,"noise_level":{"sigma_min":0.3,"sigma_max":0.1}}"#;
    let err = LofiConfig::from_json(bad).unwrap_err().to_string();
    assert!(err.contains("noise_level"), "{err}");
}

#[test]
fn the_engine_requires_refuses_and_uses_the_noise_level() {
    let (h, w) = (19, 23);
    let img = image(h, w);
    let aware = fixture("tiny-gray-sigma.lofi");
    let err = run(&aware, &img, h, w, None).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(err.to_string().contains("noise-level aware"), "{err}");
    for bad in [f64::NAN, -0.1, f64::INFINITY] {
        assert!(matches!(run(&aware, &img, h, w, Some(bad)), Err(Error::InvalidArgument(_))), "{bad}");
    }
    let low = run(&aware, &img, h, w, Some(0.02)).unwrap();
    let high = run(&aware, &img, h, w, Some(0.15)).unwrap();
    assert!(low.iter().chain(&high).all(|v| v.is_finite()));
    let change = low.iter().zip(&high).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(change > 1e-4, "the noise level does not reach the output (max change {change})");
    // The same level twice gives the same output.
    assert_eq!(low, run(&aware, &img, h, w, Some(0.02)).unwrap());

    let fixed = fixture("tiny-gray.lofi");
    let err = run(&fixed, &img, h, w, Some(0.1)).unwrap_err();
    assert!(err.to_string().contains("fixed noise level"), "{err}");
    assert!(run(&fixed, &img, h, w, None).is_ok());
}

#[test]
fn points_and_tiles_take_the_noise_level_too() {
    let (h, w) = (16, 16);
    let img = image(h, w);
    let aware = fixture("tiny-gray-sigma.lofi");
    let grid = run(&aware, &img, h, w, Some(0.1)).unwrap();
    let points: Vec<[f64; 2]> = vec![[3.0, 5.0], [15.0, 0.0]];
    let mut out = vec![0f32; 2];
    let options =
        RunOptions { memory_budget: 8 << 20, threads: 1, noise_level: Some(0.1), ..Default::default() };
    engine::reconstruct_points(
        &aware,
        ImageView { data: &img, height: h, width: w, channels: 1, row_stride: w },
        &points,
        &mut out,
        options,
    )
    .unwrap();
    assert!((out[0] - grid[5 * w + 3]).abs() < 1e-5 && (out[1] - grid[15]).abs() < 1e-5, "{out:?}");
    let missing = engine::reconstruct_points(
        &aware,
        ImageView { data: &img, height: h, width: w, channels: 1, row_stride: w },
        &points,
        &mut out,
        RunOptions::default(),
    );
    assert!(matches!(missing, Err(Error::InvalidArgument(_))));
}

/// A noise-aware network whose noise-level weights are zero computes what the fixed-level
/// network with the same other weights computes, at every noise level: the property the training
/// tool's `init_from` relies on to fine-tune a fixed-level model into a noise-aware one.
#[test]
fn zero_noise_weights_reproduce_the_fixed_level_network() {
    let mut cfg =
        LofiConfig { image_size: 16, c_in: 1, c_out: 1, hidden_dim: 12, num_layers: 2, ..Default::default() };
    cfg.network = lofi::Network::MultiMLP;
    cfg.n = 4;
    cfg.m = 5;
    cfg.angle_features = 8;
    cfg.residual_learning = true;
    tch::manual_seed(3);
    let (fixed_net, fixed_params) = LofiNet::init(&cfg, tch::Device::Cpu).unwrap();
    let mut aware_cfg = cfg.clone();
    aware_cfg.noise_level = Some(NoiseLevelInput { sigma_min: 0.0, sigma_max: 0.2 });
    let (aware_net, aware_params) = LofiNet::init(&aware_cfg, tch::Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (name, t) in aware_params.iter() {
            let source = fixed_params.iter().find(|(n, _)| *n == name).unwrap().1;
            if t.size() == source.size() {
                t.shallow_clone().copy_(source);
            } else {
                // (out, channels x N): the old channel's columns, then zeros for the noise level.
                let cols = source.size()[1];
                let _ = t.shallow_clone().zero_();
                t.narrow(1, 0, cols).copy_(source);
            }
        }
    });
    let image = tch::Tensor::from_slice(&image(12, 12)).view([1, 1, 12, 12]);
    let coords = (tch::Tensor::rand([1, 30, 2], tch::kind::FLOAT_CPU) - 0.5).clamp(-0.5, 0.5);
    let want = fixed_net.forward(&coords, &image).unwrap();
    for sigma in [0.0f32, 0.1, 0.2] {
        let prepared = aware_net.prepare(&image).unwrap();
        let got = aware_net.forward_conditioned(&prepared, &coords, Some(&tch::Tensor::from_slice(&[sigma])));
        let diff = (&got - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "sigma {sigma}: differs by {diff}");
    }
}
