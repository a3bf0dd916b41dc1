//! FITS images and tables against files written by astropy (tests/fixtures/fits, made by
//! scripts/fixtures/make_fits_fixtures.py): values as astropy reads them, the header carried,
//! blanks/cubes/truncation refused with clear messages, and lofi's own files read back.

use std::path::{Path, PathBuf};

use lofi::formats::fits::{self, ColumnValues, FitsHeader};
use lofi::image_io::{self, Image};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fits").join(name)
}

/// The float64 values astropy read from a fixture: (shape, values).
fn expected(name: &str) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(fixture(&name.replace(".fits", ".expected.npy"))).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f64>().unwrap())
}

/// Largest |a - b| relative to the range of b.
fn max_rel_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let range = b.iter().cloned().fold(f64::MIN, f64::max) - b.iter().cloned().fold(f64::MAX, f64::min);
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).abs()).fold(0.0, f64::max) / range.max(1e-300)
}

#[test]
fn images_read_as_astropy_reads_them() {
    // (file, BITPIX, tolerance relative to the range): float32 files are exact; the others pass
    // through f32 (and astropy scales int16 in float32), so agree to float32 precision.
    for (name, bitpix, tol) in [
        ("f32_wcs.fits", -32, 0.0),
        ("f64_rect.fits", -64, 1e-7),
        ("i16_scaled.fits", 16, 1e-6),
        ("u8.fits", 8, 0.0),
        ("i32_bzero.fits", 32, 1e-7),
        ("image_ext.fits", -32, 0.0),
        ("degenerate_3d.fits", -32, 0.0),
    ] {
        let f = fits::read_image(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (shape, want) = expected(name);
        let (h, w) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        assert_eq!((f.image.height, f.image.width, f.image.channels), (h, w, 1), "{name}");
        assert_eq!(f.bitpix, bitpix, "{name}");
        let diff = max_rel_diff(&f.image.data, &want);
        assert!(diff <= tol, "{name}: values differ from astropy's by {diff:e} of the range");
        // image_io dispatches on the extension to the same reader.
        assert_eq!(image_io::read(&fixture(name)).unwrap().data, f.image.data, "{name}");
    }
    // Scaled integers really are scaled (not the stored integers).
    let scaled = fits::read_image(&fixture("i16_scaled.fits")).unwrap();
    let max = scaled.image.data.iter().cloned().fold(f32::MIN, f32::max);
    assert!(max < 2.0 && max > 1.0, "BSCALE/BZERO not applied: max {max}");
    // The image of image_ext.fits is in HDU 1, the primary HDU being empty.
    assert_eq!(fits::read_image(&fixture("image_ext.fits")).unwrap().hdu, 1);
}

#[test]
fn the_header_is_kept_without_its_structural_keys() {
    let f = fits::read_image(&fixture("f32_wcs.fits")).unwrap();
    let h = &f.header;
    assert_eq!(h.string("CTYPE1").as_deref(), Some("RA---SIN"));
    assert_eq!(h.string("CTYPE2").as_deref(), Some("DEC--SIN"));
    assert_eq!(h.number("CRVAL1"), Some(187.7059));
    assert_eq!(h.number("CRPIX1"), Some(17.0));
    // astropy writes 14 significant digits here.
    assert!((h.number("CDELT1").unwrap() - (-1.0 / 3600.0)).abs() < 1e-17);
    assert_eq!(h.string("BUNIT").as_deref(), Some("Jy/beam"));
    assert_eq!(h.string("OBJECT").as_deref(), Some("M87"));
    assert!(h.cards().any(|c| c.starts_with("HISTORY made by make_fits_fixtures.py")));
    for key in ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"] {
        assert!(h.value(key).is_none(), "{key} carried");
    }
    assert!(h.cards().all(|c| c.len() == 80));
    // From an extension: EXTNAME and XTENSION are layout, not carried; the WCS is.
    let ext = fits::read_image(&fixture("image_ext.fits")).unwrap();
    assert!(ext.header.value("EXTNAME").is_none() && ext.header.value("XTENSION").is_none());
    assert_eq!(ext.header.string("CTYPE1").as_deref(), Some("RA---SIN"));
}

fn error_of(path: &Path) -> String {
    fits::read_image(path).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn blanks_cubes_and_broken_files_are_refused_clearly() {
    let e = error_of(&fixture("nan_blanks.fits"));
    assert!(
        e.contains("nan_blanks.fits") && e.contains("3 of 256 pixels are blank") && e.contains("NaN"),
        "{e}"
    );
    let e = error_of(&fixture("blank_i16.fits"));
    assert!(
        e.contains("blank_i16.fits")
            && e.contains("2 of 256 pixels are blank")
            && e.contains("BLANK = -32768"),
        "{e}"
    );
    // The same through image_io (what every command uses).
    let e = image_io::read(&fixture("nan_blanks.fits")).unwrap_err().to_string();
    assert!(e.contains("3 of 256"), "{e}");
    let e = error_of(&fixture("cube.fits"));
    assert!(e.contains("cube.fits") && e.contains("cube") && e.contains("8 x 8 x 3"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(fixture("f32_wcs.fits")).unwrap();
    for cut in [100, 2880, 2880 + 2000, whole.len() - 2880] {
        let p = dir.path().join("cut.fits");
        std::fs::write(&p, &whole[..cut]).unwrap();
        let e = error_of(&p);
        assert!(e.contains("cut.fits"), "cut at {cut}: {e}");
        if cut > 2880 {
            assert!(e.contains("truncated"), "cut at {cut}: {e}");
        }
    }
    let p = dir.path().join("text.fits");
    std::fs::write(&p, b"hello, not a FITS file").unwrap();
    assert!(error_of(&p).contains("not a FITS file"));
    // A header that never ends.
    let mut endless = Vec::new();
    endless.extend_from_slice(format!("{:<80}", "SIMPLE  =                    T").as_bytes());
    while endless.len() < 3 * 2880 {
        endless.extend_from_slice(format!("{:<80}", "COMMENT x").as_bytes());
    }
    std::fs::write(&p, &endless).unwrap();
    assert!(error_of(&p).contains("text.fits"));
    // The primary HDU without data and no extension: no image.
    let p = dir.path().join("table_only.fits");
    std::fs::copy(fixture("table.fits"), &p).unwrap();
    assert!(error_of(&p).contains("holds no image"), "{}", error_of(&p));
}

/// The raw header cards of a file lofi wrote.
fn raw_header(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.len() % 2880, 0, "not a whole number of FITS blocks");
    let mut cards = Vec::new();
    for c in bytes.chunks(80) {
        let card = String::from_utf8(c.to_vec()).unwrap();
        let end = card.starts_with("END ");
        cards.push(card);
        if end {
            break;
        }
    }
    cards
}

#[test]
fn written_images_read_back_with_header_history_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let input = fits::read_image(&fixture("f32_wcs.fits")).unwrap();
    let mut header = input.header.clone();
    header.add_history("lofi test: model tiny.lofi");
    let long = "x".repeat(150);
    header.add_history(&long);
    // Something lofi computed: not the input's values.
    let out = Image::new(32, 32, 1, input.image.data.iter().map(|v| 1.0 - v * 0.5 + 1e-7).collect()).unwrap();
    let path = dir.path().join("out.fits");
    fits::write_image(&path, &out, &header).unwrap();

    let back = fits::read_image(&path).unwrap();
    assert_eq!(back.bitpix, -32);
    assert_eq!(back.image, out, "values changed through the file");
    for key in [
        "CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2", "CUNIT1", "BUNIT",
        "OBJECT", "TELESCOP",
    ] {
        assert_eq!(back.header.value(key), input.header.value(key), "{key}");
    }
    let history: Vec<&str> = back.header.cards().filter(|c| c.starts_with("HISTORY ")).collect();
    assert!(history.iter().any(|c| c.contains("lofi test: model tiny.lofi")));
    // 150 characters in 72-character pieces.
    assert_eq!(history.iter().filter(|c| c.contains("xxxx")).count(), 3);
    let raw = raw_header(&path);
    assert!(raw[0].starts_with("SIMPLE  =                    T"));
    assert!(raw[1].starts_with("BITPIX  =                  -32"));
    assert!(raw[2].starts_with("NAXIS   =                    2"));
    assert!(raw[3].starts_with("NAXIS1  =                   32"));
    assert_eq!(raw.iter().filter(|c| c.starts_with("BITPIX")).count(), 1);

    // A degenerate third axis stays in the output (so the 3-axis WCS still applies).
    let deg = fits::read_image(&fixture("degenerate_3d.fits")).unwrap();
    let path = dir.path().join("deg.fits");
    fits::write_image(&path, &deg.image, &deg.header).unwrap();
    let raw = raw_header(&path);
    assert!(raw[2].starts_with("NAXIS   =                    3"), "{}", raw[2]);
    assert!(raw[5].starts_with("NAXIS3  =                    1"), "{}", raw[5]);
    let back = fits::read_image(&path).unwrap();
    assert_eq!(back.image, deg.image);
    assert_eq!(back.header.string("CTYPE3").as_deref(), Some("FREQ"));

    // image_io writes FITS too (no header); several channels become planes along NAXIS3.
    let rgb = Image::new(4, 5, 3, (0..60).map(|i| i as f32).collect()).unwrap();
    let path = dir.path().join("rgb.fits");
    image_io::write(&path, &rgb, 8).unwrap();
    let raw = raw_header(&path);
    assert!(raw[5].starts_with("NAXIS3  =                    3"), "{}", raw[5]);
    let bytes = std::fs::read(&path).unwrap();
    let plane1_first = f32::from_be_bytes(bytes[2880 + 20 * 4..2880 + 20 * 4 + 4].try_into().unwrap());
    assert_eq!(plane1_first, rgb.at(0, 0, 1));
}

#[test]
fn a_resampled_output_keeps_its_pixels_on_the_sky() {
    let input = fits::read_image(&fixture("f32_wcs.fits")).unwrap();
    // Output pixel j at input column 3.5 + 0.25 j, row i at input row 8 + 0.5 i.
    let (x0, sx, y0, sy) = (3.5, 0.25, 8.0, 0.5);
    let mut h = input.header.clone();
    h.resample(x0, sx, y0, sy);
    // Linear world coordinate of 1-based FITS pixel p on axis n: CRVAL + CDELT (p - CRPIX).
    let world = |h: &FitsHeader, n: u32, p: f64| {
        h.number(&format!("CRVAL{n}")).unwrap()
            + h.number(&format!("CDELT{n}")).unwrap() * (p - h.number(&format!("CRPIX{n}")).unwrap())
    };
    for j in [0.0, 1.0, 7.0, 50.0] {
        let want = world(&input.header, 1, x0 + sx * j + 1.0);
        let got = world(&h, 1, j + 1.0);
        assert!((want - got).abs() < 1e-12, "x: output {j}: {got} vs {want}");
        let want = world(&input.header, 2, y0 + sy * j + 1.0);
        let got = world(&h, 2, j + 1.0);
        assert!((want - got).abs() < 1e-12, "y: output {j}: {got} vs {want}");
    }
    // A CD matrix is scaled by column instead of CDELT.
    let dir = tempfile::tempdir().unwrap();
    // Build the CD header through a file, as a user's would come.
    let path = dir.path().join("cd.fits");
    let mut text = String::new();
    for card in [
        "SIMPLE  =                    T",
        "BITPIX  =                  -32",
        "NAXIS   =                    2",
        "NAXIS1  =                    4",
        "NAXIS2  =                    4",
        "CRPIX1  =                 10.0",
        "CRPIX2  =                 20.0",
        "CD1_1   =                 -2.0",
        "CD1_2   =                  0.5",
        "CD2_1   =                 0.25",
        "CD2_2   =                  3.0",
        "END",
    ] {
        text.push_str(&format!("{card:<80}"));
    }
    let mut bytes = text.into_bytes();
    bytes.resize(2880, b' ');
    bytes.extend(std::iter::repeat_n(0u8, 2880));
    std::fs::write(&path, &bytes).unwrap();
    let mut h = fits::read_image(&path).unwrap().header;
    h.resample(1.0, 0.5, 2.0, 2.0);
    assert_eq!(h.number("CD1_1"), Some(-1.0));
    assert_eq!(h.number("CD2_1"), Some(0.125));
    assert_eq!(h.number("CD1_2"), Some(1.0));
    assert_eq!(h.number("CD2_2"), Some(6.0));
    assert!(h.value("CDELT1").is_none());
    assert_eq!(h.number("CRPIX1"), Some((10.0 - 1.0 - 1.0 + 0.5) / 0.5));
    assert_eq!(h.number("CRPIX2"), Some((20.0 - 2.0 - 1.0 + 2.0) / 2.0));
}

#[derive(serde::Deserialize)]
struct TableExpected {
    rows: usize,
    #[serde(rename = "U")]
    u: Vec<f64>,
    #[serde(rename = "V")]
    v: Vec<f64>,
    #[serde(rename = "W")]
    w: Vec<f64>,
    #[serde(rename = "VIS")]
    vis: Vec<[f64; 2]>,
    #[serde(rename = "VIS32")]
    vis32: Vec<[f64; 2]>,
    #[serde(rename = "WEIGHT")]
    weight: Vec<f64>,
    #[serde(rename = "ANT")]
    ant: Vec<f64>,
    #[serde(rename = "FLAG")]
    flag: Vec<f64>,
    #[serde(rename = "UVW")]
    uvw: Vec<f64>,
    #[serde(rename = "COUNT")]
    count: Vec<f64>,
}

/// serde_json's float parsing may differ from the exact value by an ulp: compare to 1e-15.
fn close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-15 * w.abs().max(1e-300), "{what}: {g} vs {w}");
    }
}

fn close_pairs(got: &[[f64; 2]], want: &[[f64; 2]], what: &str) {
    let flat = |v: &[[f64; 2]]| v.iter().flatten().copied().collect::<Vec<f64>>();
    close(&flat(got), &flat(want), what);
}

#[test]
fn binary_table_columns_read_as_astropy_reads_them() {
    let want: TableExpected =
        serde_json::from_str(&std::fs::read_to_string(fixture("table.expected.json")).unwrap()).unwrap();
    let t = fits::read_binary_table(&fixture("table.fits"), None).unwrap();
    assert_eq!(t.rows, want.rows);
    assert_eq!(t.name.as_deref(), Some("VISIBILITIES"));
    close(t.real("U").unwrap(), &want.u, "U");
    close(t.real("v").unwrap(), &want.v, "v");
    close(t.real("W").unwrap(), &want.w, "W");
    close_pairs(t.complex("VIS").unwrap(), &want.vis, "VIS");
    close_pairs(t.complex("VIS32").unwrap(), &want.vis32, "VIS32");
    close(t.real("WEIGHT").unwrap(), &want.weight, "WEIGHT");
    close(t.real("ANT").unwrap(), &want.ant, "ANT");
    close(t.real("FLAG").unwrap(), &want.flag, "FLAG");
    close(t.real("UVW").unwrap(), &want.uvw, "UVW");
    assert_eq!(t.column("UVW").unwrap().repeat, 3);
    close(t.real("COUNT").unwrap(), &want.count, "COUNT");
    assert_eq!(t.column("U").unwrap().unit.as_deref(), Some("lambda"));
    match &t.column("NAME").unwrap().values {
        ColumnValues::Text(names) => {
            assert_eq!(names.len(), want.rows);
            assert_eq!(names[0], "b000");
            assert_eq!(names[19], "b019");
        }
        other => panic!("NAME read as {other:?}"),
    }
    // By EXTNAME, and the errors.
    assert_eq!(fits::read_binary_table(&fixture("table.fits"), Some("visibilities")).unwrap(), t);
    let e = fits::read_binary_table(&fixture("table.fits"), Some("UV_DATA")).unwrap_err().to_string();
    assert!(e.contains("no binary table named UV_DATA") && e.contains("VISIBILITIES"), "{e}");
    let e = t.real("AMPLITUDE").unwrap_err().to_string();
    assert!(e.contains("no column AMPLITUDE") && e.contains("WEIGHT"), "{e}");
    assert!(t.complex("U").unwrap_err().to_string().contains("not complex"));
    assert!(t.real("VIS").unwrap_err().to_string().contains("not real-valued"));
    let e = fits::read_binary_table(&fixture("f32_wcs.fits"), None).unwrap_err().to_string();
    assert!(e.contains("holds no binary table"), "{e}");
    // Truncated table data.
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(fixture("table.fits")).unwrap();
    let p = dir.path().join("cut.fits");
    std::fs::write(&p, &whole[..whole.len() - 2880 + 500]).unwrap();
    let e = fits::read_binary_table(&p, None).unwrap_err().to_string();
    assert!(e.contains("cut.fits") && e.contains("truncated"), "{e}");
}

/// Damaged files (bytes changed, cut short) give an error or a valid image, never a panic.
#[test]
fn mutated_files_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mutated.fits");
    let (mut errors, mut images) = (0, 0);
    for name in ["f32_wcs.fits", "i16_scaled.fits", "degenerate_3d.fits", "image_ext.fits", "table.fits"] {
        let original = std::fs::read(fixture(name)).unwrap();
        for _ in 0..150 {
            let mut bytes = original.clone();
            // Mostly the header, where the structure is.
            for _ in 0..rng.gen_range(1..6) {
                let end = if rng.gen_bool(0.8) { 2880.min(bytes.len()) } else { bytes.len() };
                let i = rng.gen_range(0..end);
                bytes[i] =
                    if rng.gen_bool(0.5) { rng.gen() } else { b"0123456789-+ .ET'="[rng.gen_range(0..18)] };
            }
            if rng.gen_bool(0.2) {
                bytes.truncate(rng.gen_range(0..bytes.len()));
            }
            std::fs::write(&path, &bytes).unwrap();
            match fits::read_image(&path) {
                Ok(f) => {
                    images += 1;
                    assert!(f.image.data.iter().all(|v| v.is_finite()));
                }
                Err(e) => {
                    errors += 1;
                    assert!(e.to_string().contains("mutated.fits"), "{e}");
                }
            }
            let _ = fits::read_binary_table(&path, None);
        }
    }
    assert!(errors > 50 && images > 50, "{errors} errors, {images} images");
}
