//! Property tests of the readers: mutated `.lofi` files and mutated `.npy`, PNG and TIFF images
//! give a clean error or a valid result, never a panic; and any flipped byte of a digested
//! file's tensor data is caught by the digest.
//!
//! Seeded (ChaCha8, fixed seeds: a failure names the case and reproduces) and bounded: 10,000
//! mutated model files (byte flips, random bytes, interesting values, truncations, insertions,
//! deletions; most aimed at the safetensors header and its JSON, where the parsing is), every
//! 7th byte of a small digested model's tensor data flipped, and 1,500 mutated images per format.
//! A loaded mutant is also run (a small reconstruction) to show it is usable. About 10-20 s
//! in release on two cores. cargo-fuzz targets (fuzz/) explore the same properties open-ended.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use lofi::config::LofiConfig;
use lofi::engine::{self, ImageView, OutputView, Region, RunOptions};
use lofi::image_io::{self, Image};
use lofi::kernels::LofiNet;
use lofi::model::LoadOptions;
use lofi::{model_file, Error, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MODEL_MUTANTS: usize = 10_000;
const IMAGE_MUTANTS_PER_FORMAT: usize = 1_500;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name)).unwrap()
}

/// A small model written by this lofi (with a digest): 1 -> 1 channel, a 5 x 5 patch, one
/// hidden layer of 4.
fn small_digested_model() -> Vec<u8> {
    tch::manual_seed(11);
    let cfg = LofiConfig {
        image_size: 8,
        c_in: 1,
        c_out: 1,
        hidden_dim: 4,
        num_layers: 1,
        n: 5,
        m: 5,
        ..LofiConfig::default()
    };
    let (_, params) = LofiNet::init(&cfg, tch::Device::Cpu).unwrap();
    model_file::to_bytes(&cfg, &params, Some(&serde_json::json!({ "task": "robustness test" }))).unwrap()
}

/// End of the safetensors header (8-byte length + JSON), clamped to the file.
fn header_end(bytes: &[u8]) -> usize {
    if bytes.len() < 8 {
        return bytes.len();
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    (8u64.saturating_add(n)).min(bytes.len() as u64) as usize
}

/// 1 to 4 random edits. `hot` bytes at the start (the header) receive most of them.
fn mutate(base: &[u8], hot: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    const INTERESTING: [u8; 12] = [0, 0xff, 0x7f, 0x80, b'0', b'9', b'-', b'"', b'{', b'}', b',', b'e'];
    let mut b = base.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if b.is_empty() {
            b.push(rng.gen());
            continue;
        }
        let limit = if hot > 0 && rng.gen_bool(0.75) { hot.min(b.len()) } else { b.len() };
        let at = rng.gen_range(0..limit);
        match rng.gen_range(0..7) {
            0 => b[at] ^= 1 << rng.gen_range(0..8),
            1 => b[at] = rng.gen(),
            2 => b[at] = INTERESTING[rng.gen_range(0..INTERESTING.len())],
            3 => b.truncate(at),
            4 => {
                let n = rng.gen_range(1..=16);
                let junk: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                b.splice(at..at, junk);
            }
            5 => {
                let end = (at + rng.gen_range(1..=16)).min(b.len());
                b.drain(at..end);
            }
            _ => {
                // A digit run: numbers in the JSON (shapes, offsets, the config) become huge.
                let end = (at + rng.gen_range(1..=8)).min(b.len());
                for x in &mut b[at..end] {
                    *x = b'9';
                }
            }
        }
    }
    b
}

/// Loads a mutant: a clean error, or a model that also reconstructs a small image (a clean
/// error or finite-shaped output). Panics propagate to the caller's catch_unwind.
fn exercise_model(bytes: &[u8]) -> Result<bool, Error> {
    let model = Model::load_from_memory(bytes, LoadOptions::default())?;
    let cfg = model.config();
    let (h, w, c) = (6, 7, cfg.c_in as usize);
    let pixels: Vec<f32> = (0..h * w * c).map(|i| (i % 5) as f32 / 5.0).collect();
    let mut out = vec![0f32; h * w * cfg.c_out as usize];
    let noise_level = cfg.noise_level.map(|r| 0.5 * (r.sigma_min + r.sigma_max));
    let _ = engine::reconstruct_region(
        &model,
        ImageView { data: &pixels, height: h, width: w, channels: c, row_stride: w * c },
        Region::whole(h, w),
        w,
        h,
        None,
        OutputView { data: &mut out, row_stride: w * cfg.c_out as usize },
        RunOptions { memory_budget: 64 << 20, threads: 1, progress: None, noise_level, ..Default::default() },
    );
    Ok(true)
}

/// The error a mutant gets must be one of the documented kinds for a bad file (never Internal,
/// which means a bug; nor a libtorch failure, which means a check is missing).
fn assert_clean(case: &str, result: Result<bool, Error>) -> bool {
    match result {
        Ok(_) => true,
        Err(Error::InvalidModel(msg)) | Err(Error::InvalidArgument(msg)) | Err(Error::InvalidInput(msg)) => {
            assert!(!msg.is_empty() && !msg.contains('\n'), "{case}: an unclear message: {msg:?}");
            false
        }
        Err(Error::OutOfMemory(_)) => false,
        Err(other) => panic!("{case}: not a clean error: {other:?}"),
    }
}

#[test]
fn mutated_model_files_give_clean_errors_never_panics() {
    let old = fixture("tiny-gray-nodigest.lofi");
    let bases = [
        ("tiny-gray-nodigest.lofi", old.clone()),
        ("small digested", small_digested_model()),
        ("tiny-gray-nodigest.lofi, tensor data only", old),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(0x10f1_0001);
    let (mut loaded, mut refused) = ([0usize; 3], [0usize; 3]);
    let started = std::time::Instant::now();
    for i in 0..MODEL_MUTANTS {
        let which = i % 3;
        let (name, base) = &bases[which];
        let mutant = if which == 2 {
            // Weights changed in place: nothing but the (absent) digest could tell, so the model
            // loads unless a value became NaN or infinite, and runs with what it got.
            let start = header_end(base);
            let mut m = base.clone();
            for _ in 0..rng.gen_range(1..=4) {
                let at = rng.gen_range(start..m.len());
                m[at] = if rng.gen_bool(0.5) { m[at] ^ (1 << rng.gen_range(0..8)) } else { rng.gen() };
            }
            m
        } else {
            mutate(base, header_end(base), &mut rng)
        };
        let case = format!("model mutant {i} of {name}");
        match catch_unwind(AssertUnwindSafe(|| exercise_model(&mutant))) {
            Ok(result) => {
                if assert_clean(&case, result) {
                    loaded[which] += 1
                } else {
                    refused[which] += 1
                }
            }
            Err(panic) => panic!("{case}: panicked: {}", lofi::error::panic_message(&*panic)),
        }
    }
    eprintln!(
        "{MODEL_MUTANTS} model mutants in {:.1} s (loaded / refused): without digest {} / {}, digested {} / {}, \
         weights only {} / {}",
        started.elapsed().as_secs_f64(),
        loaded[0],
        refused[0],
        loaded[1],
        refused[1],
        loaded[2],
        refused[2]
    );
    // Most mutants break the structure and are refused; of the digested model, only those that
    // left every byte the digest covers intact (the header's layout) load; weights changed in
    // a file without a digest mostly load (and run).
    assert!(refused[0] > MODEL_MUTANTS / 4 && refused[1] > MODEL_MUTANTS / 4, "{loaded:?} {refused:?}");
    assert!(loaded[1] < MODEL_MUTANTS / 100, "{loaded:?} {refused:?}");
    assert!(loaded[2] > MODEL_MUTANTS / 6, "{loaded:?} {refused:?}");
}

#[test]
fn every_flipped_data_byte_of_a_digested_file_is_caught() {
    let base = small_digested_model();
    let start = header_end(&base);
    let mut rng = ChaCha8Rng::seed_from_u64(0x10f1_0002);
    let mut checked = 0;
    for at in (start..base.len()).step_by(7) {
        let mut bad = base.clone();
        bad[at] ^= 1 << rng.gen_range(0..8);
        match Model::load_from_memory(&bad, LoadOptions::default()) {
            Err(Error::InvalidModel(msg)) => {
                assert!(msg.contains("SHA-256 digest mismatch"), "byte {at}: {msg}")
            }
            Ok(_) => panic!("byte {at} flipped: the model loaded"),
            Err(other) => panic!("byte {at}: {other:?}"),
        }
        checked += 1;
    }
    assert!(checked > 100, "{checked} bytes checked");
}

/// Valid small images of each format, as bytes.
fn image_bases(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let gray = Image::new(6, 8, 1, (0..48).map(|i| (i % 11) as f32 / 10.0).collect()).unwrap();
    let rgb = Image::new(5, 4, 3, (0..60).map(|i| (i % 7) as f32 / 6.0).collect()).unwrap();
    let mut bases = Vec::new();
    for (ext, img, bits) in [
        ("npy", &gray, 8),
        ("npy", &rgb, 8),
        ("png", &gray, 8),
        ("png", &rgb, 16),
        ("tif", &gray, 16),
        ("tif", &rgb, 8),
    ] {
        let path = dir.join(format!("base.{ext}"));
        image_io::write(&path, img, bits).unwrap();
        bases.push((ext, std::fs::read(&path).unwrap()));
    }
    bases
}

#[test]
fn mutated_images_give_clean_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let bases = image_bases(dir.path());
    let mut rng = ChaCha8Rng::seed_from_u64(0x10f1_0003);
    let started = std::time::Instant::now();
    let mut read = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for i in 0..IMAGE_MUTANTS_PER_FORMAT * 3 {
        let (ext, base) = &bases[i % bases.len()];
        // The first 64 bytes hold the .npy header and the PNG/TIFF signatures and first chunks.
        let mutant = mutate(base, 64, &mut rng);
        let path = dir.path().join(format!("mutant.{ext}"));
        std::fs::write(&path, &mutant).unwrap();
        let case = format!("image mutant {i} ({ext})");
        match catch_unwind(AssertUnwindSafe(|| image_io::read(&path))) {
            Ok(Ok(img)) => {
                assert_eq!(img.data.len(), img.height * img.width * img.channels, "{case}");
                assert!(img.data.iter().all(|v| v.is_finite()), "{case}: non-finite pixels accepted");
                read.entry(ext).or_default().0 += 1;
            }
            Ok(Err(e)) => {
                assert!(
                    matches!(e, Error::InvalidInput(_) | Error::InvalidArgument(_) | Error::Io { .. }),
                    "{case}: {e:?}"
                );
                read.entry(ext).or_default().1 += 1;
            }
            Err(panic) => panic!("{case}: panicked: {}", lofi::error::panic_message(&*panic)),
        }
    }
    eprintln!(
        "{} image mutants in {:.1} s (read / refused): {read:?}",
        IMAGE_MUTANTS_PER_FORMAT * 3,
        started.elapsed().as_secs_f64()
    );
}
