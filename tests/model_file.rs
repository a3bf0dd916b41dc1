//! The `.lofi` format: round trips, and every kind of bad model file gives one clear error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use lofi::config::LofiConfig;
use lofi::kernels::LofiNet;
use lofi::model::LoadOptions;
use lofi::model_file::{self, ModelFile};
use lofi::{Error, Model};
use safetensors::tensor::{Dtype, TensorView};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name)
}

fn load_err(bytes: &[u8]) -> String {
    match Model::load_from_memory(bytes, LoadOptions::default()) {
        Ok(_) => panic!("a bad model file was accepted"),
        Err(e) => {
            assert!(matches!(e, Error::InvalidModel(_)), "{e:?}");
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "the message is one line: {msg}");
            msg
        }
    }
}

/// Re-serialises a fixture's tensors and metadata after `edit` changed them (the fixture without
/// a digest, so that each edit meets the check it is about rather than the digest).
fn edited(
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>, &mut HashMap<String, String>),
) -> Vec<u8> {
    let bytes = std::fs::read(fixture("tiny-gray-nodigest.lofi")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors, &mut metadata);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, data)| (n.clone(), TensorView::new(*d, s.clone(), data).unwrap()))
        .collect();
    safetensors::tensor::serialize(views, &Some(metadata)).unwrap()
}

#[test]
fn save_and_load_round_trip_keeps_every_value_and_output() {
    tch::manual_seed(5);
    let cfg = LofiConfig {
        image_size: 12,
        c_in: 2,
        c_out: 1,
        hidden_dim: 6,
        num_layers: 1,
        ccpg: true,
        n_deform: 1,
        coord_deform: true,
        ccpg_hidden_dim: 5,
        inr_hidden_dim: 7,
        ..LofiConfig::default()
    };
    let (net, params) = LofiNet::init(&cfg, tch::Device::Cpu).unwrap();
    let notes = serde_json::json!({ "task": "test" });
    let bytes = model_file::to_bytes(&cfg, &params, Some(&notes)).unwrap();
    let model = Model::load_from_memory(&bytes, LoadOptions::default()).unwrap();
    assert_eq!(model.config(), &cfg);
    assert_eq!(model.notes(), Some(&notes));
    assert_eq!(model.parameter_count(), params.numel());
    for (name, t) in params.iter() {
        assert!(model.params().get(name).unwrap().equal(t), "{name} changed");
    }
    let img = tch::Tensor::rand([1, 2, 14, 12], (tch::Kind::Float, tch::Device::Cpu));
    let coords = (tch::Tensor::rand([1, 9, 2], (tch::Kind::Float, tch::Device::Cpu)) - 0.5).contiguous();
    let a = tch::no_grad(|| net.forward(&coords, &img).unwrap());
    let b = model.forward(&coords, &img).unwrap();
    assert!(a.equal(&b));
    // Serialising the loaded model gives the same bytes.
    assert_eq!(model.to_bytes().unwrap(), bytes);
    // And a file on disk loads the same.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.lofi");
    model_file::write(&path, &cfg, &params, Some(&notes)).unwrap();
    assert_eq!(ModelFile::read(&path).unwrap().config, cfg);
}

#[test]
fn empty_truncated_and_garbage_files_are_refused() {
    let bytes = std::fs::read(fixture("tiny-gray.lofi")).unwrap();
    assert!(load_err(&[]).contains("empty"));
    for cut in [3, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let msg = load_err(&bytes[..cut]);
        assert!(
            msg.contains("truncated") || msg.contains("not a safetensors") || msg.contains("corrupt"),
            "cut {cut}: {msg}"
        );
    }
    let msg = load_err(b"this is not a model file at all, just some text that goes on");
    assert!(msg.contains("safetensors"), "{msg}");
    let mut flipped = bytes.clone();
    flipped[10] = b'#';
    load_err(&flipped);
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let err = Model::load(Path::new("/nonexistent/model.lofi"), LoadOptions::default()).err().unwrap();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/model.lofi"));
}

#[test]
fn each_mismatch_with_the_configuration_is_named() {
    let msg = load_err(&edited(|t, _| t.retain(|(n, ..)| n != "mixer_MLP.fcs.1.bias")));
    assert!(msg.contains("missing tensor 'mixer_MLP.fcs.1.bias'"), "{msg}");

    let msg = load_err(&edited(|t, _| {
        let (_, _, shape, data) = t.iter_mut().find(|(n, ..)| n == "patch").unwrap();
        *shape = vec![9, 18];
        let _ = data;
    }));
    assert!(msg.contains("'patch'") && msg.contains("[9, 18]") && msg.contains("[9, 9, 2]"), "{msg}");

    let msg = load_err(&edited(|t, _| {
        let (_, dtype, shape, data) = t.iter_mut().find(|(n, ..)| n == "patch_scale").unwrap();
        *dtype = Dtype::F64;
        *data = 1.0f64.to_le_bytes().to_vec();
        let _ = shape;
    }));
    assert!(msg.contains("'patch_scale'") && msg.contains("F64"), "{msg}");

    let msg = load_err(&edited(|t, _| t.push(("extra.weight".into(), Dtype::F32, vec![1], vec![0; 4]))));
    assert!(msg.contains("unexpected tensor 'extra.weight'"), "{msg}");

    let msg = load_err(&edited(|t, _| {
        let (.., data) = t.iter_mut().find(|(n, ..)| n == "patch_scale").unwrap();
        *data = f32::NAN.to_le_bytes().to_vec();
    }));
    assert!(msg.contains("NaN"), "{msg}");
}

#[test]
fn bad_metadata_is_refused() {
    let msg = load_err(&edited(|_, m| {
        m.remove("format");
    }));
    assert!(msg.contains("not a .lofi model"), "{msg}");
    let msg = load_err(&edited(|_, m| {
        m.insert("format_version".into(), "99".into());
    }));
    assert!(msg.contains("newer"), "{msg}");
    let msg = load_err(&edited(|_, m| {
        m.remove("config");
    }));
    assert!(msg.contains("no configuration"), "{msg}");
    let msg = load_err(&edited(|_, m| {
        m.insert("config".into(), "{\"image_size\": 16, \"hidden_dim\": -3}".into());
    }));
    assert!(msg.contains("hidden_dim"), "{msg}");
    let msg = load_err(&edited(|_, m| {
        m.insert("config".into(), "{\"image_size\": 16, \"colour\": 1}".into());
    }));
    assert!(msg.contains("colour"), "{msg}");
}

#[test]
fn reference_state_dicts_import_with_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/square_filter_c1_residual");
    let state = std::fs::read(dir.join("state.safetensors")).unwrap();
    let hyper = std::fs::read_to_string(dir.join("hyper.json")).unwrap();
    let bytes = model_file::import_reference(&state, &hyper, None).unwrap();
    let model = Model::load_from_memory(&bytes, LoadOptions::default()).unwrap();
    // The reference stores the square geometry as (1, N, M, 2).
    assert_eq!(model.params().get("patch").unwrap().size(), [1, 9, 9, 2]);
    // A hyper file that does not match the state dict is refused with the first mismatch.
    let wrong = hyper
        .replace("\"hidden_dim\": 20", "\"hidden_dim\": 21")
        .replace("\"hidden_dim\": 16", "\"hidden_dim\": 21")
        .replace("\"hidden_dim\": 24", "\"hidden_dim\": 21");
    let err = model_file::import_reference(&state, &wrong, None).unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
}

/// The bytes of `tiny-gray-nodigest.lofi` (the old format) written again by this lofi: the same
/// tensors, configuration and notes, with a digest.
fn tiny_gray_with_digest() -> Vec<u8> {
    let model = Model::load(&fixture("tiny-gray-nodigest.lofi"), LoadOptions::default()).unwrap();
    model.to_bytes().unwrap()
}

/// Offset of the first tensor byte (after the 8-byte length and the JSON header).
fn data_start(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

#[test]
fn written_files_carry_a_verified_deterministic_digest() {
    let bytes = tiny_gray_with_digest();
    assert_eq!(bytes, tiny_gray_with_digest(), "the same model gives the same bytes");
    let file = ModelFile::from_bytes(&bytes).unwrap();
    let digest = file.digest.clone().expect("a digest");
    assert!(digest.starts_with("sha256:") && digest.len() == 7 + 64, "{digest}");
    assert_eq!(file.format_version, model_file::FORMAT_VERSION);
    let model = Model::load_from_memory(&bytes, LoadOptions::default()).unwrap();
    assert_eq!(model.digest(), Some(digest.as_str()));
    // The digest does not depend on the header's layout: the same contents written with the
    // metadata in another order (safetensors' own writer) verify.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap();
    assert_eq!(model_file::content_digest(&metadata, &st), digest);
    let views: Vec<_> = st.tensors();
    let rewritten = safetensors::tensor::serialize(views, &Some(metadata)).unwrap();
    assert_ne!(rewritten, bytes, "safetensors' writer lays the header out differently");
    assert_eq!(ModelFile::from_bytes(&rewritten).unwrap().digest.as_deref(), Some(digest.as_str()));
}

#[test]
fn the_digest_catches_a_flipped_byte_in_the_data_or_the_configuration() {
    let bytes = tiny_gray_with_digest();
    let start = data_start(&bytes);
    // Every 997th byte of the tensor data, one at a time, one bit flipped.
    for at in (start..bytes.len()).step_by(997) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        let msg = load_err(&bad);
        assert!(msg.contains("SHA-256 digest mismatch") && msg.contains("corrupt"), "byte {at}: {msg}");
    }
    // The configuration: a setting no tensor shape reveals (residual learning), changed in
    // place (same length, JSON whitespace).
    let text = String::from_utf8_lossy(&bytes[8..start]).into_owned();
    let key = r#"\"residual_learning\":false"#;
    let at = text.find(key).expect("residual_learning in the config") + 8;
    let mut bad = bytes.clone();
    bad[at..at + key.len()].copy_from_slice(br#"\"residual_learning\":true "#);
    let msg = load_err(&bad);
    assert!(msg.contains("SHA-256 digest mismatch"), "{msg}");
    // A malformed digest is named as such.
    let at = text.find("sha256:").unwrap() + 8 + 7;
    let mut bad = bytes.clone();
    bad[at] = b'Z';
    let msg = load_err(&bad);
    assert!(msg.contains("malformed"), "{msg}");
}

#[test]
fn files_without_a_digest_still_load() {
    let bytes = std::fs::read(fixture("tiny-gray-nodigest.lofi")).unwrap();
    let file = ModelFile::from_bytes(&bytes).unwrap();
    assert!(file.digest.is_none(), "tiny-gray-nodigest.lofi is the old-format fixture: it must stay so");
    let model = Model::load_from_memory(&bytes, LoadOptions::default()).unwrap();
    assert_eq!(model.digest(), None);
    // Taking the digest out of a new file makes it an old one: it loads (the digest is for
    // integrity against accidents, not a signature).
    let digested = tiny_gray_with_digest();
    let st = safetensors::SafeTensors::deserialize(&digested).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&digested).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    metadata.remove(model_file::DIGEST_KEY);
    let stripped = safetensors::tensor::serialize(st.tensors(), &Some(metadata)).unwrap();
    assert!(ModelFile::from_bytes(&stripped).unwrap().digest.is_none());
}

/// The fixtures are written by a lofi that records digests, and are the same models as before
/// digests existed: `tiny-gray.lofi` equals `tiny-gray-nodigest.lofi` (the old format, kept to
/// test that such files load) but for its digest. `LOFI_UPDATE_FIXTURES=1` rewrites the digested
/// ones from their own contents (after a change of the writer).
#[test]
fn fixtures_carry_digests_except_the_old_format_one() {
    for name in ["tiny-gray.lofi", "tiny-rgb.lofi", "tiny-complex.lofi", "tiny-gray-sigma.lofi"] {
        let path = fixture(name);
        if std::env::var_os("LOFI_UPDATE_FIXTURES").is_some() {
            let model = Model::load(&path, LoadOptions::default()).unwrap();
            std::fs::write(&path, model.to_bytes().unwrap()).unwrap();
        }
        let file = ModelFile::read(&path).unwrap();
        assert!(file.digest.is_some(), "{name} has no digest");
    }
    let with = Model::load(&fixture("tiny-gray.lofi"), LoadOptions::default()).unwrap();
    let without = Model::load(&fixture("tiny-gray-nodigest.lofi"), LoadOptions::default()).unwrap();
    assert!(with.digest().is_some() && without.digest().is_none());
    assert_eq!(with.config(), without.config());
    assert_eq!(with.notes(), without.notes());
    for (name, t) in without.params().iter() {
        assert!(with.params().get(name).unwrap().equal(t), "{name} differs");
    }
}
