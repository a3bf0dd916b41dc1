//! Unit tests of the model's components against the formulas of the paper and the reference.

use std::f64::consts::PI;

use lofi::config::{LofiConfig, Network, PatchShape};
use lofi::kernels::filter::apply_filter;
use lofi::kernels::geometry::{initial_patch, resolution_scale, sample_patches};
use lofi::kernels::mlp::layer_widths;
use lofi::kernels::LofiNet;
use tch::{Device, Kind, Tensor};

fn tiny(network: Network) -> LofiConfig {
    LofiConfig {
        image_size: 16,
        c_in: 1,
        c_out: 1,
        network,
        hidden_dim: 8,
        num_layers: 2,
        fourier_filtering: false,
        ..LofiConfig::default()
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn smooth_image(c: i64, h: i64, w: i64) -> Tensor {
    let y = Tensor::arange(h, (Kind::Float, Device::Cpu)).view([1, 1, h, 1]) / h as f64;
    let x = Tensor::arange(w, (Kind::Float, Device::Cpu)).view([1, 1, 1, w]) / w as f64;
    let ch = Tensor::arange(c, (Kind::Float, Device::Cpu)).view([1, c, 1, 1]);
    ((y * 3.0 + &ch).sin() * (x * 2.0 - &ch).cos() + 0.5).contiguous()
}

#[test]
fn round_geometry_is_rings_times_angles() {
    let (n, m, s) = (9, 9, 128);
    let p = initial_patch(PatchShape::Round, n, m, s);
    assert_eq!(p.size(), [n, m, 2]);
    for ring in 0..n {
        for angle in 0..m {
            let theta = 2.0 * PI * angle as f64 / m as f64;
            let r = ring as f64 / (2.0 * s as f64);
            let got = values(&p.get(ring).get(angle));
            assert!((got[0] as f64 - r * theta.cos()).abs() < 1e-7);
            assert!((got[1] as f64 - r * theta.sin()).abs() < 1e-7);
        }
    }
    // Ring 0 sits on the pixel itself.
    assert!(values(&p.get(0)).iter().all(|v| *v == 0.0));
}

#[test]
fn square_geometry_is_a_pixel_grid_centred_on_the_pixel() {
    let p = initial_patch(PatchShape::Square, 5, 3, 10);
    assert_eq!(p.size(), [5, 3, 2]);
    let centre = values(&p.get(2).get(1));
    assert_eq!(centre, [0.0, 0.0]);
    let corner = values(&p.get(0).get(0));
    assert!((corner[0] + 0.2).abs() < 1e-7 && (corner[1] + 0.1).abs() < 1e-7);
    assert_eq!(PatchShape::Square.centre(5, 3), (2, 1));
}

#[test]
fn random_geometry_stays_within_n_pixels() {
    tch::manual_seed(3);
    let p = initial_patch(PatchShape::Random, 9, 9, 32);
    let max = values(&p.abs()).into_iter().fold(0f32, f32::max);
    assert!(max <= 9.0 / 32.0 + 1e-6 && max > 0.0);
}

#[test]
fn offsets_keep_their_size_in_input_pixels() {
    // S/H scaling: at twice the training size the normalised offset halves.
    let s = values(&resolution_scale(128, 256, 64, Device::Cpu));
    assert_eq!(s, [0.5, 2.0]);
}

#[test]
fn sampling_at_pixel_centres_returns_the_pixels() {
    let img = smooth_image(2, 6, 7);
    // Coordinates of pixel (2, 3) and (5, 0); zero offsets.
    let coords = Tensor::from_slice(&[2.0f32 / 5.0 - 0.5, 3.0 / 6.0 - 0.5, 0.5, -0.5]).view([1, 2, 2]);
    let offsets = Tensor::zeros([1, 1, 2], (Kind::Float, Device::Cpu));
    let crop = sample_patches(&img, &coords, &offsets); // (1, C, P, 1, 1)
    assert_eq!(crop.size(), [1, 2, 2, 1, 1]);
    let got = values(&crop);
    let want = [
        img.double_value(&[0, 0, 2, 3]),
        img.double_value(&[0, 0, 5, 0]),
        img.double_value(&[0, 1, 2, 3]),
        img.double_value(&[0, 1, 5, 0]),
    ];
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
    }
}

#[test]
fn identity_filter_passes_the_image_through() {
    for c_in in [1, 2, 3] {
        let cfg = LofiConfig { fourier_filtering: true, c_in, c_out: 1, ..tiny(Network::MultiMLP) };
        let (net, _) = LofiNet::init(&cfg, Device::Cpu).unwrap();
        for (h, w) in [(16, 16), (13, 21)] {
            let img = smooth_image(c_in, h, w);
            let out = apply_filter(&cfg, net.filter.as_ref().unwrap(), &img);
            assert_eq!(out.size(), [1, cfg.sampled_channels(), h, w]);
            let c_f = cfg.filter_channels();
            let re = out.narrow(1, 0, c_f);
            let im = out.narrow(1, c_f, c_f);
            let raw = out.narrow(1, 2 * c_f, c_in);
            assert!(raw.allclose(&img, 0.0, 0.0, false));
            if c_in == 2 {
                // One complex channel q0 + i q1.
                assert!(re.allclose(&img.narrow(1, 0, 1), 1e-5, 1e-5, false));
                assert!(im.allclose(&img.narrow(1, 1, 1), 1e-5, 1e-5, false));
            } else {
                assert!(re.allclose(&img, 1e-5, 1e-5, false), "c_in {c_in} {h}x{w}");
                assert!(im.abs().max().double_value(&[]) < 1e-5);
            }
        }
    }
}

#[test]
fn filter_multiplies_the_padded_spectrum() {
    let cfg = LofiConfig { fourier_filtering: true, ..tiny(Network::MultiMLP) };
    let (net, _) = LofiNet::init(&cfg, Device::Cpu).unwrap();
    let filter = net.filter.as_ref().unwrap();
    // A constant filter of 0.5 + 0i halves the image.
    tch::no_grad(|| {
        let _ = filter.select(4, 0).fill_(0.5);
    });
    let img = smooth_image(1, 16, 16);
    let out = apply_filter(&cfg, filter, &img);
    assert!(out.narrow(1, 0, 1).allclose(&(&img * 0.5), 1e-5, 1e-5, false));
    // Zeroing the DC term (index (0, 0): no fftshift) removes the padded image's mean.
    tch::no_grad(|| {
        let _ = filter.select(4, 0).fill_(1.0);
        let _ = filter.select(4, 0).get(0).get(0).get(0).get(0).fill_(0.0);
    });
    let out = apply_filter(&cfg, filter, &img);
    let padded_mean = img.sum(Kind::Float).double_value(&[]) / (26.0 * 26.0);
    let diff = (&img - out.narrow(1, 0, 1)).mean(Kind::Float).double_value(&[]);
    assert!((diff - padded_mean).abs() < 1e-5, "{diff} vs {padded_mean}");
}

#[test]
fn num_filters_multiplies_the_filtered_channels() {
    let cfg =
        LofiConfig { fourier_filtering: true, num_filters: 3, c_in: 3, c_out: 3, ..tiny(Network::MultiMLP) };
    assert_eq!(cfg.filter_channels(), 9);
    assert_eq!(cfg.sampled_channels(), 21);
    let (net, params) = LofiNet::init(&cfg, Device::Cpu).unwrap();
    assert_eq!(params.get("filter").unwrap().size(), [1, 9, 26, 26, 2]);
    let out =
        net.forward(&Tensor::zeros([1, 5, 2], (Kind::Float, Device::Cpu)), &smooth_image(3, 20, 20)).unwrap();
    assert_eq!(out.size(), [1, 5, 3]);
}

#[test]
fn mlp_net_widths_match_the_reference() {
    assert_eq!(layer_widths(27, 100, 3, 370), [(27, 370), (370, 370), (370, 370), (370, 100)]);
    assert_eq!(layer_widths(5, 2, 0, 9), [(5, 2)]);
}

#[test]
fn parameter_names_and_shapes_follow_the_reference() {
    let cfg = LofiConfig { fourier_filtering: true, ..LofiConfig::paper(128, 1, 1) };
    let (_, params) = LofiNet::init(&cfg, Device::Cpu).unwrap();
    let shape = |n: &str| params.get(n).unwrap_or_else(|| panic!("{n} missing")).size();
    assert_eq!(shape("MLP.0.fcs.0.weight"), [370, 27]);
    assert_eq!(shape("MLP.8.fcs.3.weight"), [100, 370]);
    assert_eq!(shape("mixer_MLP.fcs.0.weight"), [370, 900]);
    assert_eq!(shape("mixer_MLP.fcs.3.bias"), [1]);
    assert_eq!(shape("filter"), [1, 1, 138, 138, 2]);
    assert_eq!(shape("patch"), [9, 9, 2]);
    assert_eq!(shape("patch_scale"), [1]);
    // The paper's "about 3-4 M parameters" (the filter counts its real and imaginary parts).
    assert!((3_000_000..4_000_000).contains(&params.numel()), "{}", params.numel());
}

#[test]
fn multimlp_equals_per_angle_mlps_then_mixer() {
    tch::manual_seed(0);
    let cfg = tiny(Network::MultiMLP);
    let (net, params) = LofiNet::init(&cfg, Device::Cpu).unwrap();
    let img = smooth_image(1, 16, 16);
    let coords = Tensor::from_slice(&[0.1f32, -0.2, 0.3, 0.4]).view([1, 2, 2]);
    let got = net.forward(&coords, &img).unwrap();
    // Recompute with explicit per-angle loops, as the reference does.
    let offsets = &net.patch * &net.patch_scale;
    let crop = sample_patches(&img, &coords, &offsets); // (1, 1, P, N, M)
    let linear = |x: Tensor, prefix: &str, layers: usize| {
        let mut x = x;
        for k in 0..layers {
            let w = params.get(&format!("{prefix}.fcs.{k}.weight")).unwrap();
            let b = params.get(&format!("{prefix}.fcs.{k}.bias")).unwrap();
            x = x.linear(w, Some(b));
            if k + 1 < layers {
                x = x.relu();
            }
        }
        x
    };
    let chunks: Vec<Tensor> = (0..9)
        .map(|m| {
            linear(
                crop.select(4, m).squeeze_dim(0).permute([1, 0, 2]).reshape([2, 9]),
                &format!("MLP.{m}"),
                3,
            )
        })
        .collect();
    let want = linear(Tensor::cat(&chunks, 1), "mixer_MLP", 3);
    assert!(got.squeeze_dim(0).allclose(&want, 1e-5, 1e-6, false));
}

#[test]
fn residual_learning_subtracts_from_the_centre_sample() {
    tch::manual_seed(1);
    let mut cfg = tiny(Network::MLP);
    let (plain, params) = LofiNet::init(&cfg, Device::Cpu).unwrap();
    cfg.residual_learning = true;
    let mut tensors = std::collections::BTreeMap::new();
    for (name, t) in params.iter() {
        tensors.insert(name.to_string(), t.copy());
    }
    let mut b = lofi::kernels::ParamBuilder::new(lofi::kernels::ParamSource::Tensors(tensors), Device::Cpu);
    let residual = LofiNet::build(&cfg, &mut b).unwrap();
    let img = smooth_image(1, 16, 16);
    // Pixel (4, 9) exactly: the centre sample is the pixel value.
    let coords = Tensor::from_slice(&[4.0f32 / 15.0 - 0.5, 9.0 / 15.0 - 0.5]).view([1, 1, 2]);
    let r = residual.forward(&coords, &img).unwrap().double_value(&[0, 0, 0]);
    let p = plain.forward(&coords, &img).unwrap().double_value(&[0, 0, 0]);
    let pixel = img.double_value(&[0, 0, 4, 9]);
    assert!((r - (pixel - p)).abs() < 1e-5, "{r} vs {pixel} - {p}");
}

#[test]
fn residual_with_random_geometry_is_refused() {
    let cfg = LofiConfig { residual_learning: true, patch_shape: PatchShape::Random, ..tiny(Network::MLP) };
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("random"), "{e}");
}

#[test]
fn ccpg_and_inr_run_and_every_parameter_gets_a_gradient() {
    tch::manual_seed(2);
    let cfg = LofiConfig {
        ccpg: true,
        n_deform: 2,
        coord_deform: true,
        fourier_filtering: true,
        ccpg_hidden_dim: 16,
        inr_hidden_dim: 16,
        ..tiny(Network::MultiMLP)
    };
    let (net, params) = LofiNet::init(&cfg, Device::Cpu).unwrap();
    for (_, t) in params.iter() {
        let _ = t.set_requires_grad(true);
    }
    let img = smooth_image(1, 20, 20);
    let coords = (Tensor::rand([2, 7, 2], (Kind::Float, Device::Cpu)) - 0.5).contiguous();
    let out = net.forward(&coords, &img.repeat([2, 1, 1, 1])).unwrap();
    assert_eq!(out.size(), [2, 7, 1]);
    out.abs().sum(Kind::Float).backward();
    for (name, t) in params.iter() {
        // The reference declares deform_weights/uniform_weights but never uses them.
        if name == "deform_weights" || name == "uniform_weights" {
            continue;
        }
        let g = t.grad();
        assert!(g.defined(), "{name} has no gradient");
        assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name} has a zero gradient");
    }
    assert!(params.get("MLP_deforms.1.fcs.3.weight").is_some());
    assert!(params.get("INR.fcs.0.weight").is_some());
}

#[test]
fn mlp_network_runs_with_gradients() {
    tch::manual_seed(4);
    let cfg = LofiConfig { fourier_filtering: true, c_in: 3, c_out: 3, ..tiny(Network::MLP) };
    let (net, params) = LofiNet::init(&cfg, Device::Cpu).unwrap();
    assert_eq!(params.get("MLP.fcs.0.weight").unwrap().size(), [8, 9 * 81]);
    for (_, t) in params.iter() {
        let _ = t.set_requires_grad(true);
    }
    let out =
        net.forward(&Tensor::zeros([1, 3, 2], (Kind::Float, Device::Cpu)), &smooth_image(3, 16, 16)).unwrap();
    out.sum(Kind::Float).backward();
    assert!(params.get("filter").unwrap().grad().defined());
    assert!(params.get("patch").unwrap().grad().defined());
}

#[test]
fn non_square_and_odd_inputs_work_with_the_filter() {
    let cfg = LofiConfig { fourier_filtering: true, ..tiny(Network::MultiMLP) };
    let (net, _) = LofiNet::init(&cfg, Device::Cpu).unwrap();
    for (h, w) in [(15, 23), (31, 16), (9, 9)] {
        let out = net
            .forward(&Tensor::zeros([1, 4, 2], (Kind::Float, Device::Cpu)), &smooth_image(1, h, w))
            .unwrap();
        assert_eq!(out.size(), [1, 4, 1]);
        assert!(bool::try_from(out.isfinite().all()).unwrap());
    }
}
