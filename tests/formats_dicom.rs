//! DICOM slices against pydicom (tests/fixtures/dicom, made by
//! scripts/fixtures/make_dicom_fixtures.py): Hounsfield units of a real CT slice, the window
//! mapping, and bad files (truncated, unsupported compression, not DICOM) refused clearly.

use std::path::{Path, PathBuf};

use lofi::formats::dicom::{self, Window};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom").join(name)
}

/// pydicom's modality values: (shape, values).
fn pydicom_values(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture(&name.replace(".dcm", ".hu.npy"))).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap())
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

#[test]
fn ct_slices_give_the_hounsfield_units_pydicom_gives() {
    let all = expected();
    for name in ["CT_small.dcm", "CT_small_rescaled.dcm", "MR_small_RLE.dcm"] {
        let want = &all[name];
        let slice = dicom::read_slice(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (shape, values) = pydicom_values(name);
        assert_eq!(
            shape,
            vec![want["rows"].as_u64().unwrap() as usize, want["columns"].as_u64().unwrap() as usize]
        );
        assert_eq!(
            (slice.values.height, slice.values.width, slice.values.channels),
            (shape[0], shape[1], 1),
            "{name}"
        );
        // Integers and halves: exact.
        assert_eq!(slice.values.data, values, "{name}: values differ from pydicom's");
        assert_eq!(slice.rescale_slope, want["slope"].as_f64().unwrap(), "{name}");
        assert_eq!(slice.rescale_intercept, want["intercept"].as_f64().unwrap(), "{name}");
        assert_eq!(slice.transfer_syntax, want["transfer_syntax"].as_str().unwrap(), "{name}");
        assert_eq!(slice.modality.as_deref(), want["modality"].as_str(), "{name}");
        let window = want["window"]
            .as_array()
            .map(|w| Window { center: w[0].as_f64().unwrap(), width: w[1].as_f64().unwrap() });
        assert_eq!(slice.window, window, "{name}");
    }
    // The CT slice spans air to bone in HU.
    let ct = dicom::read_slice(&fixture("CT_small.dcm")).unwrap();
    let (lo, hi) = ct.values.data.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(lo < -800.0 && hi > 1000.0, "HU range {lo}..{hi}");
    // The rescaled copy: HU = 0.5 stored - 1000 with the same stored values, i.e.
    // 0.5 (HU_ct + 1024) - 1000.
    let rescaled = dicom::read_slice(&fixture("CT_small_rescaled.dcm")).unwrap();
    for (a, b) in ct.values.data.iter().zip(&rescaled.values.data) {
        assert_eq!(*b, 0.5 * (a + 1024.0) - 1000.0);
    }
}

#[test]
fn the_window_maps_hounsfield_units_onto_0_1() {
    let w = Window::parse("40,400").unwrap();
    assert_eq!((w.center, w.width), (40.0, 400.0));
    assert_eq!(w.to_unit(-160.0), 0.0);
    assert_eq!(w.to_unit(240.0), 1.0);
    assert_eq!(w.to_unit(40.0), 0.5);
    assert_eq!(w.to_unit(-1000.0), 0.0, "clipped below");
    assert_eq!(w.to_unit(3000.0), 1.0, "clipped above");
    assert_eq!(w.from_unit(0.25), -60.0);
    assert_eq!(Window::parse(" -600 , 1500 ").unwrap(), Window { center: -600.0, width: 1500.0 });
    for bad in ["40", "40,0", "40,-5", "a,400", "40,400,1", "nan,400"] {
        assert!(Window::parse(bad).is_err(), "{bad} accepted");
    }

    let (img, used) = dicom::read_windowed(&fixture("CT_small.dcm"), Some(w)).unwrap();
    assert_eq!(used, w);
    let ct = dicom::read_slice(&fixture("CT_small.dcm")).unwrap();
    for (v, hu) in img.data.iter().zip(&ct.values.data) {
        let want = ((*hu as f64 - (-160.0)) / 400.0).clamp(0.0, 1.0) as f32;
        assert_eq!(*v, want);
    }
    assert!(img.data.iter().any(|&v| v > 0.0 && v < 1.0), "the window shows nothing of the slice");
    // CT_small.dcm has no window of its own: one must be chosen.
    let e = dicom::read_windowed(&fixture("CT_small.dcm"), None).unwrap_err().to_string();
    assert!(e.contains("CT_small.dcm") && e.contains("--window"), "{e}");
    // The MR file has one (600, 1600), used by default and by image_io.
    let (img, used) = dicom::read_windowed(&fixture("MR_small_RLE.dcm"), None).unwrap();
    assert_eq!(used, Window { center: 600.0, width: 1600.0 });
    assert_eq!(lofi::image_io::read(&fixture("MR_small_RLE.dcm")).unwrap().data, img.data);
}

fn error_of(path: &Path) -> String {
    dicom::read_slice(path).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn bad_files_are_refused_clearly() {
    for (name, syntax) in [
        ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    ] {
        let e = error_of(&fixture(name));
        assert!(e.contains(name) && e.contains(syntax) && e.contains("decompress"), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(fixture("CT_small.dcm")).unwrap();
    // Cut inside the pixel data, inside the header, and right after the preamble.
    for cut in [whole.len() - 1000, whole.len() / 2, 600, 140, 10] {
        let p = dir.path().join("cut.dcm");
        std::fs::write(&p, &whole[..cut]).unwrap();
        let e = error_of(&p);
        assert!(e.contains("cut.dcm"), "cut at {cut}: {e}");
    }
    let p = dir.path().join("text.dcm");
    std::fs::write(&p, vec![b'x'; 4000]).unwrap();
    assert!(error_of(&p).contains("not a readable DICOM file"), "{}", error_of(&p));
    std::fs::write(&p, b"").unwrap();
    assert!(error_of(&p).contains("text.dcm"));
    let e = error_of(&dir.path().join("missing.dcm"));
    assert!(e.contains("missing.dcm"), "{e}");
}

/// Damaged slices (bytes changed, cut short) give an error or a valid slice, never a panic.
#[test]
fn mutated_files_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mutated.dcm");
    let (mut errors, mut slices) = (0, 0);
    for name in ["CT_small.dcm", "MR_small_RLE.dcm"] {
        let original = std::fs::read(fixture(name)).unwrap();
        for _ in 0..60 {
            let mut bytes = original.clone();
            // Mostly the meta group and the attributes before the pixel data.
            for _ in 0..rng.gen_range(1..6) {
                let end = if rng.gen_bool(0.8) { 2000.min(bytes.len()) } else { bytes.len() };
                let i = rng.gen_range(0..end);
                bytes[i] = rng.gen();
            }
            if rng.gen_bool(0.2) {
                bytes.truncate(rng.gen_range(0..bytes.len()));
            }
            std::fs::write(&path, &bytes).unwrap();
            match dicom::read_slice(&path) {
                Ok(s) => {
                    slices += 1;
                    assert!(s.values.data.iter().all(|v| v.is_finite()));
                }
                Err(e) => {
                    errors += 1;
                    assert!(e.to_string().contains("mutated.dcm"), "{e}");
                }
            }
        }
    }
    assert!(errors > 10 && slices > 10, "{errors} errors, {slices} slices");
}
