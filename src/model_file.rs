//! The `.lofi` model file: a safetensors file whose metadata holds the format name and version,
//! the full configuration (JSON) and optional free-form notes (what it was trained on).
//! Tensors are float32, named as the reference's `state_dict`; the complex filter is stored with a
//! trailing axis of 2 (real, imaginary).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Kind, Tensor};

use crate::config::LofiConfig;
use crate::error::{Error, Result};
use crate::kernels::ParamStore;

/// Metadata key and value that mark a `.lofi` file.
pub const FORMAT_KEY: &str = "format";
pub const FORMAT_NAME: &str = "lofi";
pub const FORMAT_VERSION_KEY: &str = "format_version";
/// Bumped when a reader of the previous version could not read the new files.
pub const FORMAT_VERSION: u32 = 1;
pub const CONFIG_KEY: &str = "config";
/// Optional JSON object describing how the model was made (task, data, noise level...).
pub const NOTES_KEY: &str = "notes";

/// Everything a `.lofi` file holds, with tensors still on the CPU.
pub struct ModelFile {
    pub config: LofiConfig,
    pub notes: Option<serde_json::Value>,
    pub tensors: BTreeMap<String, Tensor>,
}

/// Reads all tensors of a safetensors buffer as float32 CPU tensors. `convert` allows float64,
/// float16 and bfloat16 (converted); otherwise any dtype but float32 is an error.
pub fn read_tensors(
    bytes: &[u8],
    convert: bool,
) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::invalid_model(format!("not a safetensors file ({})", describe(&e))))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::invalid_model(format!("corrupt safetensors file ({})", describe(&e))))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = view_to_tensor(&name, &view, convert)?;
        tensors.insert(name, t);
    }
    Ok((tensors, metadata))
}

fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError::*;
    match e {
        HeaderTooSmall | InvalidHeaderLength => "truncated or empty header".into(),
        MetadataIncompleteBuffer => "truncated: the data does not match the header".into(),
        InvalidOffset(name) => format!("truncated or corrupt data for tensor '{name}'"),
        InvalidHeader | InvalidHeaderStart | InvalidHeaderDeserialization | JsonError(_) => {
            "unreadable header".into()
        }
        other => other.to_string(),
    }
}

fn view_to_tensor(name: &str, view: &TensorView<'_>, convert: bool) -> Result<Tensor> {
    let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
    let kind = match view.dtype() {
        Dtype::F32 => Kind::Float,
        Dtype::F64 if convert => Kind::Double,
        Dtype::F16 if convert => Kind::Half,
        Dtype::BF16 if convert => Kind::BFloat16,
        other => {
            return Err(Error::invalid_model(format!("tensor '{name}' has dtype {other:?}, expected F32")));
        }
    };
    let t = Tensor::f_from_data_size(view.data(), &shape, kind)
        .map_err(|e| Error::invalid_model(format!("tensor '{name}': {e}")))?;
    Ok(t.to_kind(Kind::Float))
}

impl ModelFile {
    /// Parses a `.lofi` file held in memory. Structural checks only; names and shapes are checked
    /// against the configuration when the model is built.
    pub fn from_bytes(bytes: &[u8]) -> Result<ModelFile> {
        if bytes.is_empty() {
            return Err(Error::invalid_model("the model file is empty"));
        }
        let (tensors, metadata) = read_tensors(bytes, false)?;
        match metadata.get(FORMAT_KEY).map(String::as_str) {
            Some(FORMAT_NAME) => {}
            _ => {
                return Err(Error::invalid_model(
                    "a safetensors file but not a .lofi model (no 'format: lofi' metadata); \
                     use `lofi import` for reference state dicts",
                ))
            }
        }
        let version: u32 = metadata
            .get(FORMAT_VERSION_KEY)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::invalid_model("the model file has no valid format_version"))?;
        if version > FORMAT_VERSION {
            return Err(Error::invalid_model(format!(
                "model format version {version} is newer than this lofi reads ({FORMAT_VERSION}); upgrade lofi"
            )));
        }
        let config_json = metadata
            .get(CONFIG_KEY)
            .ok_or_else(|| Error::invalid_model("the model file has no configuration"))?;
        let config = LofiConfig::from_json(config_json)?;
        let notes = match metadata.get(NOTES_KEY) {
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|e| Error::invalid_model(format!("the model file's notes are not JSON: {e}")))?,
            ),
            None => None,
        };
        Ok(ModelFile { config, notes, tensors })
    }

    pub fn read(path: &Path) -> Result<ModelFile> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::io(format!("cannot read model {}", path.display()), e))?;
        ModelFile::from_bytes(&bytes).map_err(|e| match e {
            Error::InvalidModel(msg) => Error::InvalidModel(format!("{}: {msg}", path.display())),
            other => other,
        })
    }
}

/// Serialises a model's parameters and configuration as a `.lofi` file.
pub fn to_bytes(
    config: &LofiConfig,
    params: &ParamStore,
    notes: Option<&serde_json::Value>,
) -> Result<Vec<u8>> {
    let mut metadata = HashMap::new();
    metadata.insert(FORMAT_KEY.to_string(), FORMAT_NAME.to_string());
    metadata.insert(FORMAT_VERSION_KEY.to_string(), FORMAT_VERSION.to_string());
    metadata.insert(CONFIG_KEY.to_string(), config.to_json());
    if let Some(notes) = notes {
        metadata.insert(NOTES_KEY.to_string(), notes.to_string());
    }
    let host: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .iter()
        .map(|(name, t)| {
            let t = t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let mut data = vec![0u8; t.numel() * 4];
            t.copy_data_u8(&mut data, t.numel());
            (name.to_string(), shape, data)
        })
        .collect();
    let views = host
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Internal(format!("tensor view {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, &Some(metadata))
        .map_err(|e| Error::Internal(format!("serialising the model: {e}")))?;
    canonical_header(&bytes)
}

/// Rewrites a safetensors file's JSON header with sorted keys. The crate writes the metadata
/// from a `HashMap`, whose order changes from run to run; sorted, the same model always gives
/// the same bytes (reproducible training, checksums).
fn canonical_header(bytes: &[u8]) -> Result<Vec<u8>> {
    let internal = |what: &str| Error::Internal(format!("re-reading the serialised model: {what}"));
    let len = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| internal("short"))?) as usize;
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + len]).map_err(|e| internal(&e.to_string()))?;
    if let Some(meta) = header.remove("__metadata__") {
        let sorted: BTreeMap<String, String> =
            serde_json::from_value(meta).map_err(|e| internal(&e.to_string()))?;
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(sorted).map_err(|e| internal(&e.to_string()))?,
        );
    }
    // BTreeMaps iterate in key order, whether or not serde_json preserves insertion order.
    let mut text = serde_json::to_vec(&header).map_err(|e| internal(&e.to_string()))?;
    // Keep the data aligned to 8 bytes, padding with spaces as the format allows.
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - len);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + len..]);
    Ok(out)
}

/// Writes a `.lofi` file atomically (temporary file then rename), so that a crash never leaves a
/// truncated model behind.
pub fn write(
    path: &Path,
    config: &LofiConfig,
    params: &ParamStore,
    notes: Option<&serde_json::Value>,
) -> Result<()> {
    let bytes = to_bytes(config, params, notes)?;
    write_atomically(path, &bytes)
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Builds a `.lofi` file from a reference `state_dict` (safetensors, complex tensors as a trailing
/// axis of 2; float64/float16/bfloat16 are converted) and the reference constructor's keyword
/// arguments (JSON). Every name and shape is checked by building the model.
pub fn import_reference(
    state_dict: &[u8],
    hyper_json: &str,
    notes: Option<&serde_json::Value>,
) -> Result<Vec<u8>> {
    let config = LofiConfig::from_json(hyper_json)?;
    let (tensors, _) = read_tensors(state_dict, true)?;
    let mut builder =
        crate::kernels::ParamBuilder::new(crate::kernels::ParamSource::Tensors(tensors), tch::Device::Cpu);
    crate::kernels::LofiNet::build(&config, &mut builder)?;
    let params = builder.finish()?;
    to_bytes(&config, &params, notes)
}
