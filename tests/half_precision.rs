//! Half precision: only the MLPs run in bfloat16/float16; sampling, geometry, filter and
//! coordinates stay float32. A rounded sampling grid shows far from the image centre (where the
//! normalised coordinates approach +-1 and bfloat16's 8 significant bits are a few pixels), so the
//! checks compare half-precision outputs with float32 at the corners of a 1024 x 1024 input and
//! at its centre: both must be as close as the networks' rounding allows.
//! Also: which CPUs accept bf16, and the error elsewhere.

use std::path::Path;
use std::process::Command;

use lofi::device::{CpuFeatures, DeviceSpec, Precision};
use lofi::engine::{self, ImageView, RunOptions};
use lofi::model::LoadOptions;
use lofi::Model;
use tch::{Kind, Tensor};

const SIDE: usize = 1024;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name)
}

/// A deterministic rough image (H, W): values change from one pixel to the next, so a sample
/// taken a fraction of a pixel away gives a visibly different value.
fn rough_image(side: usize) -> Vec<f32> {
    let mut state = 0x9E3779B97F4A7C15u64;
    (0..side * side)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// 32 x 32 pixel positions (x, y) around the far corner (y, x near SIDE - 1) and 32 x 32 around
/// the centre, where the normalised coordinates are near 0 and any precision represents them.
fn points() -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
    let block = |x0: f64, y0: f64| -> Vec<[f64; 2]> {
        (0..32).flat_map(|r| (0..32).map(move |c| [x0 + c as f64 + 0.25, y0 + r as f64 + 0.5])).collect()
    };
    let far = SIDE as f64 - 34.0;
    (block(far, far), block(SIDE as f64 / 2.0 - 16.0, SIDE as f64 / 2.0 - 16.0))
}

fn run_points(model: &Model, img: &[f32], pts: &[[f64; 2]]) -> Vec<f32> {
    let mut out = vec![f32::NAN; pts.len() * model.config().c_out as usize];
    let view = ImageView { data: img, height: SIDE, width: SIDE, channels: 1, row_stride: SIDE };
    engine::reconstruct_points(model, view, pts, &mut out, RunOptions { threads: 1, ..Default::default() })
        .unwrap();
    out
}

/// RMS of `got - want` relative to the RMS of `want`.
fn relative_rms(got: &[f32], want: &[f32]) -> f64 {
    let diff: f64 = got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let signal: f64 = want.iter().map(|v| (*v as f64).powi(2)).sum();
    (diff / signal).sqrt()
}

/// The engine with a bf16 model on the CPU (where the CPU has bf16 instructions; elsewhere the
/// load must fail naming them).
#[test]
fn bf16_engine_samples_in_float32_far_from_the_centre() {
    let load =
        |precision| Model::load(&fixture("tiny-gray.lofi"), LoadOptions::new(DeviceSpec::Cpu, precision));
    if !CpuFeatures::detect().has_native_bf16() {
        let err = load(Precision::BF16).err().expect("bf16 refused without bfloat16 instructions");
        assert!(err.to_string().contains("avx512_bf16"), "{err}");
        return;
    }
    let (f32_model, bf16_model) = (load(Precision::F32).unwrap(), load(Precision::BF16).unwrap());
    let img = rough_image(SIDE);
    let (far, centre) = points();
    let far_err = relative_rms(&run_points(&bf16_model, &img, &far), &run_points(&f32_model, &img, &far));
    let centre_err =
        relative_rms(&run_points(&bf16_model, &img, &centre), &run_points(&f32_model, &img, &centre));
    eprintln!("bf16 vs f32, relative RMS error: far corner {far_err:.3e}, centre {centre_err:.3e}");
    // The MLPs' rounding alone: about 2e-3 here, at the corner as at the centre. The code that
    // cast the prepared image (and with it the grid) to bfloat16 gave NaN on the CPU (libtorch's
    // bfloat16 bicubic sampler) and, where the sampler works, corner samples up to 0.8 pixel off:
    // a relative RMS error of 0.5 in the samples themselves at this size.
    assert!(far_err < 1e-2 && far_err < 3.0 * centre_err.max(1e-3), "far {far_err}, centre {centre_err}");
    assert!(centre_err < 1e-2, "centre {centre_err}");
}

/// The kernel itself, for both half precisions (float16 matrix products run on any CPU in
/// libtorch, slowly): even handed a prepared image in the networks' precision, as the engine once
/// did, it samples in float32.
#[test]
fn half_networks_sample_in_float32_in_the_kernel() {
    let model = Model::load(&fixture("tiny-gray.lofi"), LoadOptions::default()).unwrap();
    let _guard = tch::no_grad_guard();
    let img = Tensor::from_slice(&rough_image(SIDE)).view([1, 1, SIDE as i64, SIDE as i64]);
    let prepared = model.net().prepare(&img).unwrap();
    let normalise = |pts: &[[f64; 2]]| -> Tensor {
        let flat: Vec<f32> = pts
            .iter()
            .flat_map(|[x, y]| {
                [(y / (SIDE as f64 - 1.0) - 0.5) as f32, (x / (SIDE as f64 - 1.0) - 0.5) as f32]
            })
            .collect();
        Tensor::from_slice(&flat).view([1, pts.len() as i64, 2])
    };
    let (far, centre) = points();
    let values = |net: &lofi::kernels::LofiNet, image: &Tensor, pts: &[[f64; 2]]| -> Vec<f32> {
        let out = net.forward_prepared(image, &normalise(pts)).to_kind(Kind::Float).contiguous().view([-1]);
        Vec::<f32>::try_from(&out).unwrap()
    };
    for kind in [Kind::BFloat16, Kind::Half] {
        let half = model.net().cast_networks(kind);
        assert_eq!(half.network_kind(), kind);
        let half_image = prepared.to_kind(kind);
        for (name, pts) in [("far corner", &far), ("centre", &centre)] {
            let want = values(model.net(), &prepared, pts);
            let err = relative_rms(&values(&half, &prepared, pts), &want);
            let err_half_image = relative_rms(&values(&half, &half_image, pts), &want);
            eprintln!("{kind:?} {name}: relative RMS error {err:.3e} (image handed in {kind:?}: {err_half_image:.3e})");
            assert!(err < 1e-2, "{kind:?} {name}: {err}");
            assert!(err_half_image < 1e-2, "{kind:?} {name}, half image: {err_half_image}");
        }
    }
}

#[test]
fn cpu_bf16_needs_native_instructions() {
    let none = CpuFeatures::default();
    let avx =
        CpuFeatures::from_cpuinfo("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n");
    let amx = CpuFeatures::from_cpuinfo("flags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n");
    let amx_without_tiles = CpuFeatures::from_cpuinfo("flags\t\t: fpu avx512f amx_bf16\n");
    assert_eq!(avx, CpuFeatures { avx512_bf16: true, amx_bf16: false });
    assert_eq!(amx, CpuFeatures { avx512_bf16: false, amx_bf16: true });
    assert!(!amx_without_tiles.has_native_bf16());
    assert_eq!(CpuFeatures::from_cpuinfo("flags\t\t: fpu sse2 avx2 avx512f\n"), none);
    for features in [avx, amx] {
        Precision::BF16.check_cpu(features).unwrap();
        Precision::F32.check_cpu(features).unwrap();
        assert!(Precision::F16.check_cpu(features).unwrap_err().to_string().contains("CUDA only"));
    }
    Precision::F32.check_cpu(none).unwrap();
    let err = Precision::BF16.check_cpu(none).unwrap_err().to_string();
    assert!(err.contains("avx512_bf16") && err.contains("amx_bf16"), "{err}");
}

/// The command line, with the detection told to see no bfloat16 instructions: a clear error, and
/// the same command in f32 works.
#[test]
fn cli_bf16_error_names_the_missing_instructions() {
    let dir = std::env::temp_dir().join(format!("lofi-bf16-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/images/gray/camera.png");
    let output = dir.join("out.png");
    let run = |precision: &str| {
        Command::new(env!("CARGO_BIN_EXE_lofi"))
            .args(["reconstruct", "--model"])
            .arg(fixture("tiny-gray.lofi"))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .args(["--width", "16", "--height", "16", "--precision", precision])
            .env(lofi::device::ASSUME_NO_BF16_ENV, "1")
            .output()
            .unwrap()
    };
    let refused = run("bf16");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "bf16 accepted without bfloat16 instructions");
    assert!(stderr.contains("avx512_bf16") && stderr.contains("amx_bf16"), "{stderr}");
    assert!(!output.exists());
    let ok = run("f32");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(output.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
