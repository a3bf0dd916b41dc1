//! FITS and DICOM through the command line: `lofi reconstruct`, `pnp` and `eval` read them and
//! write FITS outputs that carry the input's header (WCS moved to the output grid) and HISTORY
//! naming the model and command.

mod common;
use common::{fails_with, fixture, lofi, ok};

use std::path::{Path, PathBuf};

use lofi::formats::dicom;
use lofi::formats::fits;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn history(h: &fits::FitsHeader) -> String {
    h.cards().filter(|c| c.starts_with("HISTORY ")).map(|c| c[8..].trim_end()).collect::<Vec<_>>().join("\n")
}

#[test]
fn reconstruct_carries_the_fits_header_and_moves_the_wcs() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("models/tiny-gray.lofi");
    let input = fixture("fits/f32_wcs.fits");
    let source = fits::read_image(Path::new(&input)).unwrap();

    let out = dir.path().join("same.fits");
    ok(&lofi(&["reconstruct", "--model", &model, "--input", &input, "--output", &s(&out)]));
    let same = fits::read_image(&out).unwrap();
    assert_eq!((same.image.height, same.image.width), (32, 32));
    assert_ne!(same.image.data, source.image.data, "the output is the input");
    for key in
        ["CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2", "BUNIT", "OBJECT"]
    {
        assert_eq!(same.header.value(key), source.header.value(key), "{key}");
    }
    let text = history(&same.header);
    assert!(text.contains("made by make_fits_fixtures.py"), "the input's HISTORY is lost:\n{text}");
    assert!(text.contains("reconstruct: model tiny-gray.lofi"), "{text}");
    assert!(text.contains("command: ") && text.contains("--input"), "{text}");
    // The same pixels as a .npy output (FITS writing changes nothing).
    let npy = dir.path().join("same.npy");
    ok(&lofi(&["reconstruct", "--model", &model, "--input", &input, "--output", &s(&npy)]));
    assert_eq!(lofi::image_io::read(&npy).unwrap().data, same.image.data);

    // Twice the resolution over the whole image: pixel scale (31/63) and reference pixel move.
    let out = dir.path().join("x2.fits");
    ok(&lofi(&[
        "reconstruct",
        "--model",
        &model,
        "--input",
        &input,
        "--output",
        &s(&out),
        "--width",
        "64",
        "--height",
        "64",
    ]));
    let x2 = fits::read_image(&out).unwrap();
    assert_eq!((x2.image.height, x2.image.width), (64, 64));
    let step = 31.0 / 63.0;
    let cdelt = source.header.number("CDELT1").unwrap();
    assert!((x2.header.number("CDELT1").unwrap() - cdelt * step).abs() < 1e-15);
    let crpix = source.header.number("CRPIX1").unwrap();
    assert!((x2.header.number("CRPIX1").unwrap() - (crpix - 1.0 + step) / step).abs() < 1e-9);
    // And a region.
    let out = dir.path().join("zoom.fits");
    ok(&lofi(&[
        "reconstruct",
        "--model",
        &model,
        "--input",
        &input,
        "--output",
        &s(&out),
        "--region",
        "8,4,15,11",
        "--width",
        "15",
        "--height",
        "15",
    ]));
    let zoom = fits::read_image(&out).unwrap();
    // Output pixel 1 (FITS) is input column 8 (0-based), i.e. FITS pixel 9: same world x.
    let world = |h: &fits::FitsHeader, n: u32, p: f64| {
        h.number(&format!("CRVAL{n}")).unwrap()
            + h.number(&format!("CDELT{n}")).unwrap() * (p - h.number(&format!("CRPIX{n}")).unwrap())
    };
    assert!((world(&zoom.header, 1, 1.0) - world(&source.header, 1, 9.0)).abs() < 1e-12);
    assert!((world(&zoom.header, 2, 15.0) - world(&source.header, 2, 12.0)).abs() < 1e-12);

    // Blanks are refused with the count and file name.
    let bad = fixture("fits/nan_blanks.fits");
    fails_with(
        &lofi(&["reconstruct", "--model", &model, "--input", &bad, "--output", &s(&out)]),
        "3 of 256 pixels are blank",
    );
    fails_with(
        &lofi(&[
            "reconstruct",
            "--model",
            &model,
            "--input",
            &fixture("fits/cube.fits"),
            "--output",
            &s(&out),
        ]),
        "extract a plane",
    );
    fails_with(
        &lofi(&[
            "reconstruct",
            "--model",
            &model,
            "--input",
            &input,
            "--output",
            &s(&out),
            "--window",
            "40,400",
        ]),
        "--window applies to DICOM",
    );
}

#[test]
fn reconstruct_reads_a_ct_slice_through_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("models/tiny-gray.lofi");
    let ct = fixture("dicom/CT_small.dcm");
    let out = dir.path().join("ct.npy");
    ok(&lofi(&[
        "reconstruct",
        "--model",
        &model,
        "--input",
        &ct,
        "--output",
        &s(&out),
        "--window",
        "40,400",
    ]));
    let unit = lofi::image_io::read(&out).unwrap();
    assert_eq!((unit.height, unit.width), (128, 128));
    // The same input as a [0, 1] .npy through the library's window gives the same output.
    let (windowed, _) =
        dicom::read_windowed(Path::new(&ct), Some(dicom::Window::parse("40,400").unwrap())).unwrap();
    let npy_in = dir.path().join("windowed.npy");
    lofi::image_io::write(&npy_in, &windowed, 8).unwrap();
    let out2 = dir.path().join("ct2.npy");
    ok(&lofi(&["reconstruct", "--model", &model, "--input", &s(&npy_in), "--output", &s(&out2)]));
    assert_eq!(lofi::image_io::read(&out2).unwrap().data, unit.data);
    // In HU, as FITS with the window in HISTORY.
    let hu = dir.path().join("ct_hu.fits");
    ok(&lofi(&[
        "reconstruct",
        "--model",
        &model,
        "--input",
        &ct,
        "--output",
        &s(&hu),
        "--window",
        "40,400",
        "--output-hu",
    ]));
    let hu = fits::read_image(&hu).unwrap();
    for (h, u) in hu.image.data.iter().zip(&unit.data) {
        assert!((*h as f64 - (-160.0 + 400.0 * *u as f64)).abs() < 1e-3, "{h} vs {u}");
    }
    assert!(history(&hu.header).contains("window center 40 width 400"), "{}", history(&hu.header));

    fails_with(
        &lofi(&["reconstruct", "--model", &model, "--input", &ct, "--output", &s(&out)]),
        "--window CENTER,WIDTH",
    );
    fails_with(
        &lofi(&["reconstruct", "--model", &model, "--input", &ct, "--output", &s(&out), "--window", "40,-1"]),
        "width must be positive",
    );
    fails_with(
        &lofi(&[
            "reconstruct",
            "--model",
            &model,
            "--input",
            &fixture("dicom/JPEG2000.dcm"),
            "--output",
            &s(&out),
            "--window",
            "40,400",
        ]),
        "JPEG 2000",
    );
    let cut = dir.path().join("cut.dcm");
    let bytes = std::fs::read(&ct).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &lofi(&[
            "reconstruct",
            "--model",
            &model,
            "--input",
            &s(&cut),
            "--output",
            &s(&out),
            "--window",
            "40,400",
        ]),
        "cut.dcm",
    );
}

#[test]
fn pnp_and_eval_read_and_write_fits() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("models/tiny-gray.lofi");
    let truth = fixture("fits/f32_wcs.fits");
    let out = dir.path().join("pnp.fits");
    let bp = dir.path().join("bp.fits");
    ok(&lofi(&[
        "pnp",
        "--model",
        &model,
        "--operator",
        "inpaint",
        "--observed",
        "0.5",
        "--sigma",
        "0.01",
        "--ground-truth",
        &truth,
        "--iterations",
        "3",
        "--output",
        &s(&out),
        "--back-projection",
        &s(&bp),
    ]));
    let source = fits::read_image(Path::new(&truth)).unwrap();
    for path in [&out, &bp] {
        let f = fits::read_image(path).unwrap();
        assert_eq!((f.image.height, f.image.width), (32, 32));
        assert_eq!(f.header.value("CRVAL1"), source.header.value("CRVAL1"));
        assert_eq!(f.header.value("CDELT2"), source.header.value("CDELT2"));
        let text = history(&f.header);
        assert!(
            text.contains("pnp: model tiny-gray.lofi")
                && text.contains("operator")
                && text.contains("3 iterations"),
            "{text}"
        );
    }

    // eval on a folder of FITS images, reconstructions written as FITS with the headers.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for name in ["f32_wcs.fits", "i16_scaled.fits"] {
        std::fs::copy(fixture(&format!("fits/{name}")), data.join(name)).unwrap();
    }
    let recs = dir.path().join("recs");
    let text = ok(&lofi(&[
        "eval",
        "--model",
        &model,
        "--task",
        "denoise",
        "--sigma",
        "0.05",
        "--data",
        &s(&data),
        "--reconstructions",
        &s(&recs),
    ]));
    assert!(text.contains("f32_wcs") && text.contains("i16_scaled"), "{text}");
    let rec = fits::read_image(&recs.join("test_f32_wcs.fits")).unwrap();
    assert_eq!(rec.header.value("CTYPE1"), source.header.value("CTYPE1"));
    assert!(history(&rec.header).contains("eval: test image f32_wcs"));
    let rec2 = fits::read_image(&recs.join("test_i16_scaled.fits")).unwrap();
    assert_eq!((rec2.image.height, rec2.image.width), (32, 32));
    let _: PathBuf = recs;
}
