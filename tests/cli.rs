//! The command line as a user meets it: `lofi reconstruct`, `info`, `import`, and every kind of
//! bad input giving a non-zero exit and one short message (never a panic or a backtrace).

mod common;
use common::{fails_cleanly_with, fails_with, fixture, lofi, ok};

use std::path::Path;

use lofi::image_io::{self, Image};

fn write_npy(dir: &Path, name: &str, h: usize, w: usize, c: usize, f: impl Fn(usize) -> f32) -> String {
    let img = Image::new(h, w, c, (0..h * w * c).map(f).collect()).unwrap();
    let path = dir.join(name);
    image_io::write(&path, &img, 8).unwrap();
    path.display().to_string()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn reconstruct_writes_every_format_at_any_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("models/tiny-gray.lofi");
    let input = write_npy(dir.path(), "in.npy", 20, 24, 1, |i| (i % 17) as f32 / 17.0);
    // On-grid, .npy out.
    let out = dir.path().join("out.npy");
    ok(&lofi(&["reconstruct", "--model", &model, "--input", &input, "--output", &s(&out)]));
    let img = image_io::read(&out).unwrap();
    assert_eq!((img.height, img.width, img.channels), (20, 24, 1));
    // Twice the resolution, as PNG and 16-bit TIFF.
    for (name, bits) in [("x2.png", "8"), ("x2.tif", "16")] {
        let out = dir.path().join(name);
        let text = ok(&lofi(&[
            "reconstruct",
            "--model",
            &model,
            "--input",
            &input,
            "--output",
            &s(&out),
            "--width",
            "47",
            "--height",
            "39",
            "--bits",
            bits,
        ]));
        assert!(text.contains("47 x 39"), "{text}");
        let img = image_io::read(&out).unwrap();
        assert_eq!((img.height, img.width), (39, 47));
    }
    // A region with negative corners (reflected) at a chosen size.
    let out = dir.path().join("region.npy");
    ok(&lofi(&[
        "reconstruct",
        "--model",
        &model,
        "--input",
        &input,
        "--output",
        &s(&out),
        "--region",
        "-2,-1.5,10,7.5",
        "--width",
        "13",
        "--height",
        "10",
    ]));
    assert_eq!(image_io::read(&out).unwrap().width, 13);
}

#[test]
fn png_input_and_rgb_models() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("rgb.png");
    let img = Image::new(16, 18, 3, (0..16 * 18 * 3).map(|i| (i % 255) as f32 / 255.0).collect()).unwrap();
    image_io::write(&png, &img, 8).unwrap();
    let out = dir.path().join("out.png");
    ok(&lofi(&[
        "reconstruct",
        "--model",
        &fixture("models/tiny-rgb.lofi"),
        "--input",
        &s(&png),
        "--output",
        &s(&out),
    ]));
    let back = image_io::read(&out).unwrap();
    assert_eq!((back.height, back.width, back.channels), (16, 18, 3));
}

#[test]
fn info_and_import() {
    let text = ok(&lofi(&["info", &fixture("models/tiny-gray.lofi")]));
    assert!(text.contains("parameters:") && text.contains("training resolution: 16 x 16"), "{text}");
    let json = ok(&lofi(&["info", "--json", &fixture("models/tiny-gray.lofi")]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["config"]["image_size"], 16);
    let (flops, stored) =
        (v["flops_per_pixel"].as_f64().unwrap(), v["stored_flops_per_pixel"].as_f64().unwrap());
    assert!(flops > 0.0 && flops <= stored, "{flops} / {stored}");

    // The shipped gray denoiser folds its per-angle MLPs' last layer into the mixer: 9 angles x
    // (128 x 100 + 100 x 128 - 128 x 128) multiply-adds fewer than its stored 1.165 MFLOP.
    let root = env!("CARGO_MANIFEST_DIR");
    let shipped = ok(&lofi(&["info", &format!("{root}/models/denoise-gray.lofi")]));
    assert!(
        shipped.contains("work per pixel:      0.999 MFLOP (the per-angle MLPs' last layer folded into the mixer at load; 1.165 as stored)"),
        "{shipped}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("imported.lofi");
    let case = "parity/round_filter_complex";
    ok(&lofi(&[
        "import",
        "--state-dict",
        &fixture(&format!("{case}/state.safetensors")),
        "--hyper",
        &fixture(&format!("{case}/hyper.json")),
        "--output",
        &s(&out),
    ]));
    assert!(ok(&lofi(&["info", &s(&out)])).contains("2 in, 1 out"));
    // A mismatched hyper file names the first problem.
    let hyper = dir.path().join("wrong.json");
    std::fs::write(&hyper, r#"{"image_size": 16, "c_in": 1, "c_out": 1, "network": "MultiMLP"}"#).unwrap();
    fails_with(
        &lofi(&[
            "import",
            "--state-dict",
            &fixture(&format!("{case}/state.safetensors")),
            "--hyper",
            &s(&hyper),
            "--output",
            &s(&dir.path().join("x.lofi")),
        ]),
        "shape",
    );
}

#[test]
fn bad_models_give_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_npy(dir.path(), "in.npy", 8, 8, 1, |_| 0.5);
    let out = s(&dir.path().join("o.npy"));
    let run = |model: &str| lofi(&["reconstruct", "--model", model, "--input", &input, "--output", &out]);

    fails_with(&run("/no/such/model.lofi"), "/no/such/model.lofi");
    let empty = dir.path().join("empty.lofi");
    std::fs::write(&empty, b"").unwrap();
    fails_with(&run(&s(&empty)), "empty");
    let bytes = std::fs::read(fixture("models/tiny-gray.lofi")).unwrap();
    let truncated = dir.path().join("truncated.lofi");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    fails_with(&run(&s(&truncated)), "truncated");
    let garbage = dir.path().join("garbage.lofi");
    std::fs::write(&garbage, vec![0xAB; 4096]).unwrap();
    fails_with(&run(&s(&garbage)), "safetensors");
    // A safetensors file that is not a .lofi model.
    fails_with(&run(&fixture("parity/round_filter_c1/state.safetensors")), "lofi import");
    assert!(!Path::new(&out).exists(), "no output may be written on failure");
}

#[test]
fn bad_images_and_arguments_give_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("models/tiny-gray.lofi");
    let out = s(&dir.path().join("o.npy"));
    let run = |input: &str, extra: &[&str]| {
        let mut args = vec!["reconstruct", "--model", &model, "--input", input, "--output", &out];
        args.extend_from_slice(extra);
        lofi(&args)
    };
    let good = write_npy(dir.path(), "good.npy", 8, 8, 1, |_| 0.5);

    let nan = write_npy(dir.path(), "nan.npy", 8, 8, 1, |i| if i == 19 { f32::NAN } else { 0.5 });
    fails_with(&run(&nan, &[]), "row 2, column 3");
    let inf = write_npy(dir.path(), "inf.npy", 8, 8, 1, |i| if i == 0 { f32::INFINITY } else { 0.5 });
    fails_with(&run(&inf, &[]), "finite");
    let rgb = write_npy(dir.path(), "rgb.npy", 8, 8, 3, |_| 0.5);
    fails_with(&run(&rgb, &[]), "expects 1");
    let thin = write_npy(dir.path(), "thin.npy", 1, 8, 1, |_| 0.5);
    fails_with(&run(&thin, &[]), "at least 2 x 2");

    // float64 .npy, written by hand: header + data.
    let f64_path = dir.path().join("f64.npy");
    let mut header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (4, 4), }".to_vec();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend(std::iter::repeat_n(0u8, 16 * 8));
    std::fs::write(&f64_path, &bytes).unwrap();
    fails_with(&run(&s(&f64_path), &[]), "float32");
    // Truncated .npy.
    let cut = dir.path().join("cut.npy");
    let good_bytes = std::fs::read(&good).unwrap();
    std::fs::write(&cut, &good_bytes[..good_bytes.len() - 10]).unwrap();
    fails_with(&run(&s(&cut), &[]), "cut.npy");
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"not a png").unwrap();
    fails_with(&run(&s(&junk), &[]), "junk.png");
    fails_with(&run("/no/such/input.npy", &[]), "/no/such/input.npy");
    fails_with(&run(&s(&dir.path().join("x.bmp")), &[]), "unknown image format");

    fails_with(&run(&good, &["--width", "0"]), "at least 1");
    fails_with(&run(&good, &["--width", "100000000", "--height", "100000000"]), "absurd");
    fails_with(&run(&good, &["--memory-budget", "1KiB"]), "too small");
    fails_with(&run(&good, &["--memory-budget", "lots"]), "size");
    fails_with(&run(&good, &["--device", "tpu"]), "unknown device");
    fails_with(&run(&good, &["--precision", "f16"]), "CUDA only");
    if !tch::Cuda::is_available() {
        fails_with(&run(&good, &["--device", "cuda"]), "CUDA is not available");
    }
    let e = run(&good, &["--region", "1,2,3"]);
    assert!(!e.status.success());
    assert!(!Path::new(&out).exists(), "no output may be written on failure");
}

#[test]
fn pnp_runs_and_refuses_bad_operators() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("models/tiny-gray.lofi");
    let truth = write_npy(dir.path(), "truth.npy", 16, 16, 1, |i| ((i % 16) as f32 / 16.0).sin().abs());
    let out = dir.path().join("x.npy");
    let log = dir.path().join("log.csv");
    let text = ok(&lofi(&[
        "pnp",
        "--model",
        &model,
        "--operator",
        "inpaint",
        "--observed",
        "0.3",
        "--ground-truth",
        &truth,
        "--output",
        &s(&out),
        "--iterations",
        "2",
        "--log",
        &s(&log),
    ]));
    assert!(text.contains("2 iterations"), "{text}");
    let csv = std::fs::read_to_string(&log).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("iteration,primal,dual,data_misfit,psnr"));
    assert!(log.with_extension("png").exists(), "the plot is written beside the log");
    assert_eq!(image_io::read(&out).unwrap().width, 16);

    // CT through conjugate gradients, measurements simulated at 30 dB.
    ok(&lofi(&[
        "pnp",
        "--model",
        &model,
        "--operator",
        "radon",
        "--angles",
        "0:180:8",
        "--snr",
        "30",
        "--ground-truth",
        &truth,
        "--output",
        &s(&out),
        "--iterations",
        "1",
    ]));

    let empty = write_npy(dir.path(), "empty.npy", 16, 16, 1, |_| 0.0);
    fails_with(
        &lofi(&[
            "pnp",
            "--model",
            &model,
            "--operator",
            "inpaint",
            "--mask",
            &empty,
            "--ground-truth",
            &truth,
            "--output",
            &s(&out),
        ]),
        "observes no pixel",
    );
    let small = write_npy(dir.path(), "small.npy", 8, 8, 1, |_| 1.0);
    fails_with(
        &lofi(&[
            "pnp",
            "--model",
            &model,
            "--operator",
            "inpaint",
            "--mask",
            &small,
            "--ground-truth",
            &truth,
            "--output",
            &s(&out),
        ]),
        "the mask is 8 x 8",
    );
    fails_with(
        &lofi(&[
            "pnp",
            "--model",
            &model,
            "--operator",
            "denoise",
            "--output",
            &s(&out),
            "--width",
            "16",
            "--height",
            "16",
        ]),
        "--ground-truth",
    );
    let nan = write_npy(dir.path(), "nan.npy", 16, 16, 1, |i| if i == 5 { f32::NAN } else { 0.5 });
    fails_with(
        &lofi(&["pnp", "--model", &model, "--operator", "denoise", "--input", &nan, "--output", &s(&out)]),
        "finite",
    );
    fails_with(
        &lofi(&[
            "pnp",
            "--model",
            &fixture("models/tiny-complex.lofi"),
            "--operator",
            "denoise",
            "--ground-truth",
            &truth,
            "--output",
            &s(&out),
        ]),
        "channel",
    );
}

#[test]
fn noise_levels_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let aware = fixture("models/tiny-gray-sigma.lofi");
    let fixed = fixture("models/tiny-gray.lofi");
    let input = write_npy(dir.path(), "in.npy", 18, 20, 1, |i| (i % 13) as f32 / 13.0);
    let out = s(&dir.path().join("out.npy"));
    let info = ok(&lofi(&["info", &aware]));
    assert!(info.contains("noise level:") && info.contains("training range [0, 0.2]"), "{info}");
    let json: serde_json::Value = serde_json::from_str(&ok(&lofi(&["info", &aware, "--json"]))).unwrap();
    assert_eq!(json["noise_level_aware"], true);
    assert_eq!(json["config"]["noise_level"]["sigma_max"], 0.2);
    assert!(ok(&lofi(&["info", &fixed])).contains("fixed (the model takes no --sigma)"));

    // A noise-aware model needs --sigma (a number or a fraction), and the level matters.
    fails_with(&lofi(&["reconstruct", "--model", &aware, "--input", &input, "--output", &out]), "--sigma");
    ok(&lofi(&["reconstruct", "--model", &aware, "--input", &input, "--output", &out, "--sigma", "25/255"]));
    let a = image_io::read(Path::new(&out)).unwrap();
    ok(&lofi(&[
        "reconstruct",
        "--model",
        &aware,
        "--input",
        &input,
        "--output",
        &out,
        "--sigma",
        "0.0980392",
    ]));
    let b = image_io::read(Path::new(&out)).unwrap();
    let same = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(same < 1e-5, "25/255 and 0.0980392 differ by {same}");
    ok(&lofi(&["reconstruct", "--model", &aware, "--input", &input, "--output", &out, "--sigma", "0.19"]));
    let c = image_io::read(Path::new(&out)).unwrap();
    assert!(a.data.iter().zip(&c.data).any(|(x, y)| (x - y).abs() > 1e-5));
    fails_with(
        &lofi(&["reconstruct", "--model", &aware, "--input", &input, "--output", &out, "--sigma", "-1"]),
        "non-negative",
    );
    // A fixed-level model refuses it.
    fails_with(
        &lofi(&["reconstruct", "--model", &fixed, "--input", &input, "--output", &out, "--sigma", "0.1"]),
        "fixed noise level",
    );
}

/// A reader that stops early (`lofi info M | head -1`) ends the output quietly: no panic, no
/// error line.
#[test]
fn a_closed_pipe_is_not_an_error() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_lofi"))
        .args(["info", &fixture("models/tiny-gray.lofi")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before lofi writes
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panic") && !stderr.contains("error"), "{stderr}");
}

/// `--self-ensemble N`: a count that is no subgroup is a usage error, a filter model refuses
/// with the reason, and a plain model's output changes (the values themselves are checked
/// against the library in tests/self_ensemble.rs and python/tests).
#[test]
fn self_ensemble_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let plain = fixture("models/tiny-gray-sigma-plain.lofi");
    let filtered = fixture("models/tiny-gray-sigma.lofi");
    let input = write_npy(dir.path(), "in.npy", 18, 20, 1, |i| (i % 13) as f32 / 13.0);
    let out = s(&dir.path().join("out.npy"));
    let run = |model: &str, passes: &str| {
        lofi(&[
            "reconstruct",
            "--model",
            model,
            "--input",
            &input,
            "--output",
            &out,
            "--sigma",
            "0.1",
            "--self-ensemble",
            passes,
        ])
    };
    fails_cleanly_with(&run(&plain, "3"), "1 (off), 2 (half turn), 4 (quarter turns) or 8");
    fails_with(&run(&filtered, "8"), "Fourier filter");
    ok(&run(&plain, "1"));
    let one = image_io::read(Path::new(&out)).unwrap();
    ok(&run(&plain, "8"));
    let eight = image_io::read(Path::new(&out)).unwrap();
    assert!(one.data.iter().zip(&eight.data).any(|(a, b)| (a - b).abs() > 1e-6), "8 passes changed nothing");
}

/// `lofi reconstruct --refine`: the library's refined denoising, on any input format, with its
/// settings on the command line and in the JSON report; refused where it cannot apply.
#[test]
fn refined_denoising_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let aware = fixture("models/tiny-gray-sigma-plain.lofi");
    let fixed = fixture("models/tiny-gray.lofi");
    let input = write_npy(dir.path(), "in.npy", 17, 22, 1, |i| (i % 13) as f32 / 13.0);
    let out = s(&dir.path().join("out.npy"));
    let run = |model: &str, extra: &[&str]| {
        let mut args = vec!["reconstruct", "--model", model, "--input", &input, "--output", &out];
        args.extend_from_slice(extra);
        lofi(&args)
    };
    let done = run(&aware, &["--sigma", "0.1", "--refine", "--json"]);
    ok(&done);
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(report["refinement"]["coarse_blur"], 2.0);
    assert_eq!(report["refinement"]["cleanup"], 0.1);
    // Every pass's pixels: two at full resolution and two at half (9 x 11 blocks on the first
    // 2 x 2 grid, 9 x 12 on the one moved a pixel).
    assert_eq!(report["pixels"], 2 * 17 * 22 + 9 * 11 + 9 * 12);
    let refined = image_io::read(Path::new(&out)).unwrap();
    assert_eq!((refined.height, refined.width), (17, 22));
    ok(&run(&aware, &["--sigma", "0.1"]));
    let one = image_io::read(Path::new(&out)).unwrap();
    assert!(
        one.data.iter().zip(&refined.data).any(|(a, b)| (a - b).abs() > 1e-5),
        "--refine changed nothing"
    );
    // Both steps off: the one-pass result.
    ok(&run(
        &aware,
        &["--sigma", "0.1", "--refine", "--refine-blur", "0", "--refine-cleanup", "0", "--threads", "1"],
    ));
    let none = image_io::read(Path::new(&out)).unwrap();
    ok(&run(&aware, &["--sigma", "0.1", "--threads", "1"]));
    assert_eq!(none.data, image_io::read(Path::new(&out)).unwrap().data);
    // PNG out works as for one pass.
    let png = s(&dir.path().join("out.png"));
    ok(&lofi(&[
        "reconstruct",
        "--model",
        &aware,
        "--input",
        &input,
        "--output",
        &png,
        "--sigma",
        "0.1",
        "--refine",
    ]));

    fails_with(&run(&aware, &["--sigma", "0.1", "--refine", "--width", "40"]), "whole image on its own grid");
    fails_with(&run(&aware, &["--sigma", "0.1", "--refine", "--refine-cleanup", "2"]), "clean-up level");
    fails_with(&run(&fixed, &["--refine"]), "noise-level-aware");
    fails_cleanly_with(&run(&aware, &["--sigma", "0.1", "--refine-blur", "2"]), "--refine");
}

/// `lofi pnp --operator inpaint` with a noise-level-aware prior starts from the inpainting
/// settings (`PnpParams::for_inpainting`: sigma 0.6 x the top of the training range, alpha 0.01,
/// 40 iterations); each flag given wins, and other operators keep the generic defaults.
#[test]
fn inpainting_has_its_own_pnp_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let aware = fixture("models/tiny-gray-sigma.lofi"); // training range [0, 0.2]
    let truth = write_npy(dir.path(), "truth.npy", 16, 16, 1, |i| ((i % 16) as f32 / 16.0).sin().abs());
    let out = s(&dir.path().join("x.npy"));
    let pnp = |extra: &[&str]| {
        let mut args =
            vec!["pnp", "--model", &aware, "--ground-truth", &truth, "--output", &out, "--observed", "0.3"];
        args.extend_from_slice(extra);
        ok(&lofi(&args))
    };
    let text = pnp(&["--operator", "inpaint"]);
    assert!(text.contains("alpha 0.01, sigma 0.1200, 40 iterations"), "{text}");
    let text = pnp(&["--operator", "inpaint", "--alpha", "0.2", "--iterations", "3"]);
    assert!(text.contains("alpha 0.2, sigma 0.1200, 3 iterations"), "{text}");
    let text = pnp(&["--operator", "inpaint", "--denoiser-sigma", "0.05", "--iterations", "3"]);
    assert!(text.contains("alpha 0.01, sigma 0.0500, 3 iterations"), "{text}");
    // A schedule replaces the fixed sigma; its length defaults to the preset's iterations.
    let text = pnp(&["--operator", "inpaint", "--anneal", "0.2,0.1"]);
    assert!(text.contains("alpha 0.01, sigma 0.2000 -> 0.1000 over 40 iterations, 40 iterations"), "{text}");
    // Denoising keeps the generic defaults: alpha 0.05, the default schedule, 90 iterations.
    let text = pnp(&["--operator", "denoise"]);
    assert!(text.contains("alpha 0.05, sigma 0.2000 -> 0.1000 over 20 iterations, 90 iterations"), "{text}");
}

#[test]
fn upgrade_adds_the_digest_to_an_older_file() {
    let dir = tempfile::tempdir().unwrap();
    let old = fixture("models/tiny-gray-nodigest.lofi");
    let text = ok(&lofi(&["info", &old]));
    assert!(text.contains("no SHA-256 digest"), "{text}");
    let new = dir.path().join("upgraded.lofi");
    ok(&lofi(&["upgrade", &old, "--output", &s(&new)]));
    let text = ok(&lofi(&["info", &s(&new)]));
    assert!(!text.contains("digest ("), "{text}");
    assert!(!text.contains("no SHA-256 digest"), "{text}");
    // Same network: the same reconstruction.
    let input = write_npy(dir.path(), "in.npy", 12, 14, 1, |i| (i % 5) as f32 / 5.0);
    let (a, b) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
    ok(&lofi(&["reconstruct", "--model", &old, "--input", &input, "--output", &s(&a)]));
    ok(&lofi(&["reconstruct", "--model", &s(&new), "--input", &input, "--output", &s(&b)]));
    assert_eq!(image_io::read(&a).unwrap().data, image_io::read(&b).unwrap().data);
    fails_with(&lofi(&["upgrade", &fixture("models/missing.lofi"), "--output", &s(&new)]), "missing.lofi");
}
