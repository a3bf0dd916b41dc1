//! lofi's FITS outputs read back by astropy (an independent implementation): the file passes
//! astropy's verify('exception'), the data are the values lofi computed, the input's header and
//! HISTORY are there, and astropy's WCS (the full SIN projection) puts every output pixel where
//! the input pixel it was reconstructed at lies on the sky.
//!
//! Needs a Python with astropy: `make test` installs one (scripts/setup-astropy.sh, a virtual
//! environment under ~/.cache/lofi); LOFI_ASTROPY_PYTHON overrides its path. Without it these
//! tests fail and say so; they do not skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use lofi::formats::fits;
use lofi::image_io::Image;
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("LOFI_ASTROPY_PYTHON") {
        return PathBuf::from(p);
    }
    let out = Command::new(repo("scripts/setup-astropy.sh")).arg("--print-python").output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// What astropy reads from `path`, with world coordinates at the given 0-based pixels.
fn astropy_read(path: &Path, pixels: &[(f64, f64)]) -> Value {
    let py = python();
    let pixels: Vec<String> = pixels.iter().map(|(x, y)| format!("{x},{y}")).collect();
    let out = Command::new(&py)
        .arg(repo("scripts/read_fits_with_astropy.py"))
        .arg(path)
        .args(&pixels)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): these tests need astropy; run scripts/setup-astropy.sh (make test does) \
                 or set LOFI_ASTROPY_PYTHON",
                py.display()
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named"),
        "{} has no astropy/numpy: run scripts/setup-astropy.sh (make test does) or set LOFI_ASTROPY_PYTHON\n{stderr}",
        py.display()
    );
    assert!(out.status.success(), "astropy could not read {}:\n{stderr}", path.display());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn data_of(v: &Value) -> Vec<f64> {
    v["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn astropy_reads_lofi_files_with_the_header_and_the_values() {
    let dir = tempfile::tempdir().unwrap();
    let input_path = repo("tests/fixtures/fits/f32_wcs.fits");
    let input = fits::read_image(&input_path).unwrap();
    let mut header = input.header.clone();
    header.add_history("lofi test: written by formats_fits_astropy.rs");
    let image = Image::new(32, 32, 1, input.image.data.iter().map(|v| v * 0.75 - 0.125).collect()).unwrap();
    let path = dir.path().join("out.fits");
    fits::write_image(&path, &image, &header).unwrap();

    let ours = astropy_read(&path, &[]);
    let theirs = astropy_read(&input_path, &[]);
    assert_eq!(ours["shape"], serde_json::json!([32, 32]));
    assert_eq!(ours["dtype"], ">f4");
    // As float32 (serde_json may parse the f64 text an ulp off; the f32 values are exact).
    let got = data_of(&ours);
    assert_eq!(got.len(), image.data.len());
    for (i, (a, b)) in got.iter().zip(&image.data).enumerate() {
        assert_eq!(*a as f32, *b, "pixel {i}");
    }
    for key in [
        "CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2", "CUNIT1", "CUNIT2",
        "BUNIT", "OBJECT", "TELESCOP", "RADESYS",
    ] {
        assert_eq!(ours["header"][key], theirs["header"][key], "{key}");
        assert!(!ours["header"][key].is_null(), "{key} missing");
    }
    assert_eq!(ours["header"]["BITPIX"], -32);
    let history: Vec<&str> =
        ours["history"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    assert!(history.contains(&"made by make_fits_fixtures.py"), "{history:?}");
    assert!(history.contains(&"lofi test: written by formats_fits_astropy.rs"), "{history:?}");

    // Several channels: planes along NAXIS3, astropy's shape (3, H, W).
    let rgb = Image::new(4, 5, 3, (0..60).map(|i| i as f32 * 0.5).collect()).unwrap();
    let path = dir.path().join("rgb.fits");
    fits::write_image(&path, &rgb, &fits::FitsHeader::new()).unwrap();
    let v = astropy_read(&path, &[]);
    assert_eq!(v["shape"], serde_json::json!([3, 4, 5]));
    let data = data_of(&v);
    for c in 0..3 {
        for r in 0..4 {
            for col in 0..5 {
                assert_eq!(data[(c * 4 + r) * 5 + col] as f32, rgb.at(r, col, c));
            }
        }
    }
}

/// An output pixel (x, y) and the input position it was reconstructed at (0-based).
type PixelPair = ((f64, f64), (f64, f64));

#[test]
fn astropy_finds_reconstructed_pixels_where_the_input_had_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = repo("tests/fixtures/models/tiny-gray.lofi");
    // (input, output size, region, the output pixels to check, their input positions)
    let input = repo("tests/fixtures/fits/f32_wcs.fits");
    let degenerate = repo("tests/fixtures/fits/degenerate_3d.fits");
    let cases: [(&Path, &[&str], Vec<PixelPair>); 3] = [
        // 63 x 63 over the whole 32 x 32: output j is input j / 2.
        (
            &input,
            &["--width", "63", "--height", "63"],
            vec![((0.0, 0.0), (0.0, 0.0)), ((2.0, 4.0), (1.0, 2.0)), ((62.0, 61.0), (31.0, 30.5))],
        ),
        // A region, 25 x 13 samples: x = 3.5 + 0.25 j, y = 8 + 0.5 i.
        (
            &input,
            &["--region", "3.5,8,9.5,14", "--width", "25", "--height", "13"],
            vec![((0.0, 0.0), (3.5, 8.0)), ((24.0, 12.0), (9.5, 14.0)), ((5.0, 3.0), (4.75, 9.5))],
        ),
        // The degenerate third axis survives and the WCS stays 3-axis.
        (&degenerate, &["--width", "31", "--height", "31"], vec![((10.0, 20.0), (5.0, 10.0))]),
    ];
    for (k, (input, extra, pairs)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("out{k}.fits"));
        let mut args = vec![
            "reconstruct".to_string(),
            "--model".into(),
            model.display().to_string(),
            "--input".into(),
            input.display().to_string(),
            "--output".into(),
            out.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let run = Command::new(env!("CARGO_BIN_EXE_lofi")).args(&args).output().unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let outs: Vec<(f64, f64)> = pairs.iter().map(|p| p.0).collect();
        let ins: Vec<(f64, f64)> = pairs.iter().map(|p| p.1).collect();
        let ours = astropy_read(&out, &outs);
        let theirs = astropy_read(input, &ins);
        let (ow, tw) = (ours["world"].as_array().unwrap(), theirs["world"].as_array().unwrap());
        for (i, (o, t)) in ow.iter().zip(tw).enumerate() {
            let (o, t) = (o.as_array().unwrap(), t.as_array().unwrap());
            assert_eq!(o.len(), t.len(), "case {k}: WCS axes");
            for (a, b) in o.iter().zip(t) {
                let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "case {k}, pixel {:?}: {a} vs {b}",
                    pairs[i]
                );
            }
        }
        let history: Vec<&str> =
            ours["history"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        assert!(
            history
                .iter()
                .any(|h| h.starts_with("lofi 0.") && h.contains("reconstruct: model tiny-gray.lofi")),
            "{history:?}"
        );
        assert!(history.iter().any(|h| h.starts_with("command: lofi reconstruct")), "{history:?}");
        if k == 2 {
            assert_eq!(ours["shape"], serde_json::json!([1, 31, 31]));
            assert_eq!(ours["header"]["CTYPE3"], "FREQ");
        }
    }
}
