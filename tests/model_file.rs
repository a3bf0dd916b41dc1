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

/// Re-serialises a fixture's tensors and metadata after `edit` changed them.
fn edited(
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>, &mut HashMap<String, String>),
) -> Vec<u8> {
    let bytes = std::fs::read(fixture("tiny-gray.lofi")).unwrap();
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
