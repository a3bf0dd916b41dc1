//! Golden parity with the official PyTorch implementation: fixtures made by running its
//! `model.py` on random weights (see tests/fixtures/parity/README.md). Every case is evaluated
//! through the whole stack: import of the reference state dict, the `.lofi` round trip, and the
//! streaming engine on the pixel grid, on the grid with halfway points and at random points.

use std::path::{Path, PathBuf};

use lofi::engine::{self, ImageView, OutputView, Region, RunOptions};
use lofi::model::LoadOptions;
use lofi::model_file::{import_reference, read_tensors};
use lofi::Model;
use tch::Tensor;

const TOLERANCE: f64 = 1e-5;

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity");
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 10, "parity fixtures missing in {}", root.display());
    cases
}

fn relative_error(got: &[f32], want: &Tensor) -> f64 {
    let want = Vec::<f32>::try_from(want.flatten(0, -1)).unwrap();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-12);
    let err = got.iter().zip(&want).fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
    err / scale
}

struct Case {
    name: String,
    model: Model,
    io: std::collections::BTreeMap<String, Tensor>,
}

fn load(dir: &Path) -> Case {
    let state = std::fs::read(dir.join("state.safetensors")).unwrap();
    let hyper = std::fs::read_to_string(dir.join("hyper.json")).unwrap();
    let bytes = import_reference(&state, &hyper, None).unwrap();
    let model = Model::load_from_memory(&bytes, LoadOptions::default()).unwrap();
    let (io, _) = read_tensors(&std::fs::read(dir.join("io.safetensors")).unwrap(), false).unwrap();
    Case { name: dir.file_name().unwrap().to_string_lossy().into(), model, io }
}

/// The input as an (H, W, C) buffer.
fn input_hwc(case: &Case) -> (Vec<f32>, usize, usize, usize) {
    let input = &case.io["input"]; // (1, C, H, W)
    let (_, c, h, w) = input.size4().unwrap();
    let hwc =
        Vec::<f32>::try_from(input.squeeze_dim(0).permute([1, 2, 0]).contiguous().flatten(0, -1)).unwrap();
    (hwc, h as usize, w as usize, c as usize)
}

#[test]
fn reference_forward_matches_on_grid_and_off_grid() {
    for dir in fixtures() {
        let case = load(&dir);
        let input = &case.io["input"];
        for key in ["grid", "fine", "random"] {
            let coords = case.io[&format!("{key}_coords")].unsqueeze(0);
            let out = case.model.forward(&coords, input).unwrap();
            let got = Vec::<f32>::try_from(out.flatten(0, -1)).unwrap();
            let err = relative_error(&got, &case.io[&format!("{key}_out")]);
            eprintln!("parity {:<28} {key:<6} relative error {err:.2e}", case.name);
            assert!(err <= TOLERANCE, "{} {key}: relative error {err:e}", case.name);
        }
    }
}

#[test]
fn engine_matches_reference_on_grids_and_points() {
    for dir in fixtures() {
        let case = load(&dir);
        let (hwc, h, w, c) = input_hwc(&case);
        let c_out = case.model.config().c_out as usize;
        let view = ImageView { data: &hwc, height: h, width: w, channels: c, row_stride: w * c };
        // A budget small enough to force several batches on these tiny images.
        let options = || RunOptions { memory_budget: 8 << 20, ..Default::default() };

        for (key, gw, gh) in [("grid", w, h), ("fine", 2 * w - 1, 2 * h - 1)] {
            let mut out = vec![0f32; gw * gh * c_out];
            let report = engine::reconstruct_region(
                &case.model,
                view,
                Region::whole(h, w),
                gw,
                gh,
                None,
                OutputView { data: &mut out, row_stride: gw * c_out },
                options(),
            )
            .unwrap();
            assert_eq!(report.pixels, gw * gh);
            let err = relative_error(&out, &case.io[&format!("{key}_out")]);
            assert!(err <= TOLERANCE, "{} engine {key}: relative error {err:e}", case.name);
        }

        let coords = Vec::<f32>::try_from(case.io["random_coords"].flatten(0, -1)).unwrap();
        let points: Vec<[f64; 2]> = coords
            .chunks(2)
            .map(|rc| [(rc[1] as f64 + 0.5) * (w as f64 - 1.0), (rc[0] as f64 + 0.5) * (h as f64 - 1.0)])
            .collect();
        let mut out = vec![0f32; points.len() * c_out];
        engine::reconstruct_points(&case.model, view, &points, &mut out, options()).unwrap();
        let err = relative_error(&out, &case.io["random_out"]);
        assert!(err <= TOLERANCE, "{} engine points: relative error {err:e}", case.name);
    }
}
