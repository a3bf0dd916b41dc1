//! The `.lofi` model file: a safetensors file whose metadata holds the format name and version,
//! the full configuration (JSON), optional free-form notes (what it was trained on) and a SHA-256
//! digest of everything else. Tensors are float32, named as the reference's `state_dict`; the
//! complex filter is stored with a trailing axis of 2 (real, imaginary).
//!
//! The digest (metadata key `digest`, `sha256:` and 64 hex digits) covers every metadata entry
//! but itself and every tensor's name, dtype, shape and bytes, in a canonical order (see
//! [`content_digest`]), so any flipped bit of the data or the configuration is caught at load.
//! Files written before digests existed load with a warning through the log.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};
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
/// SHA-256 of the rest of the file (see [`content_digest`]): `sha256:` and 64 lowercase hex digits.
pub const DIGEST_KEY: &str = "digest";
const DIGEST_PREFIX: &str = "sha256:";

/// Everything a `.lofi` file holds, with tensors still on the CPU.
pub struct ModelFile {
    pub config: LofiConfig,
    pub notes: Option<serde_json::Value>,
    pub tensors: BTreeMap<String, Tensor>,
    /// The file's format version.
    pub format_version: u32,
    /// The digest the file records (verified), or `None` for a file written before digests.
    pub digest: Option<String>,
}

/// The SHA-256 digest of a safetensors file's contents, as `sha256:<hex>`: every metadata entry
/// except [`DIGEST_KEY`] (sorted by key), then every tensor (sorted by name) with its dtype,
/// shape and bytes; each string and byte run is preceded by its length (u64, little-endian), so
/// the encoding is unambiguous. Independent of the header's layout (key order, spacing, offsets).
pub fn content_digest(metadata: &HashMap<String, String>, tensors: &SafeTensors<'_>) -> String {
    fn bytes(h: &mut Sha256, b: &[u8]) {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    }
    let mut h = Sha256::new();
    h.update(b"lofi-digest-v1\0");
    let mut entries: Vec<(&String, &String)> = metadata.iter().filter(|(k, _)| *k != DIGEST_KEY).collect();
    entries.sort();
    h.update((entries.len() as u64).to_le_bytes());
    for (k, v) in entries {
        bytes(&mut h, k.as_bytes());
        bytes(&mut h, v.as_bytes());
    }
    let mut views = tensors.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    h.update((views.len() as u64).to_le_bytes());
    for (name, view) in &views {
        bytes(&mut h, name.as_bytes());
        bytes(&mut h, dtype_name(view.dtype()).as_bytes());
        h.update((view.shape().len() as u64).to_le_bytes());
        for &d in view.shape() {
            h.update((d as u64).to_le_bytes());
        }
        bytes(&mut h, view.data());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("{DIGEST_PREFIX}{hex}")
}

/// The dtype as the safetensors header spells it (stable, unlike `Debug`).
fn dtype_name(d: Dtype) -> String {
    match d {
        Dtype::F32 => "F32".into(),
        Dtype::F64 => "F64".into(),
        Dtype::F16 => "F16".into(),
        Dtype::BF16 => "BF16".into(),
        Dtype::I64 => "I64".into(),
        Dtype::I32 => "I32".into(),
        Dtype::I16 => "I16".into(),
        Dtype::I8 => "I8".into(),
        Dtype::U8 => "U8".into(),
        Dtype::BOOL => "BOOL".into(),
        other => format!("{other:?}"),
    }
}

/// Checks a recorded digest against the contents.
fn verify_digest(recorded: &str, metadata: &HashMap<String, String>, st: &SafeTensors<'_>) -> Result<()> {
    let well_formed = recorded.strip_prefix(DIGEST_PREFIX).is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    });
    if !well_formed {
        let shown: String = recorded.chars().take(80).collect();
        return Err(Error::invalid_model(format!(
            "the file's digest '{shown}' is malformed (expected sha256: and 64 hex digits): the file is corrupt"
        )));
    }
    let computed = content_digest(metadata, st);
    if computed != recorded {
        return Err(Error::invalid_model(format!(
            "SHA-256 digest mismatch: the file records {recorded} but its tensors and configuration hash to \
             {computed}; the file is corrupt or was modified after it was written"
        )));
    }
    Ok(())
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
    /// Parses a `.lofi` file held in memory: structure, format, version and digest; names and
    /// shapes are checked against the configuration when the model is built.
    pub fn from_bytes(bytes: &[u8]) -> Result<ModelFile> {
        if bytes.is_empty() {
            return Err(Error::invalid_model("the model file is empty"));
        }
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::invalid_model(format!("not a safetensors file ({})", describe(&e))))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::invalid_model(format!("corrupt safetensors file ({})", describe(&e))))?;
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
        // Before anything reads the configuration or the tensors: a corrupt file says so.
        let digest = metadata.get(DIGEST_KEY).cloned();
        match &digest {
            Some(recorded) => verify_digest(recorded, &metadata, &st)?,
            None => log::warn!(
                "the model file has no SHA-256 digest (written by a lofi before 0.1 recorded one): its \
                 integrity cannot be checked; save it again with a current lofi to add one"
            ),
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
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let t = view_to_tensor(&name, &view, false)?;
            tensors.insert(name, t);
        }
        Ok(ModelFile { config, notes, tensors, format_version: version, digest })
    }

    pub fn read(path: &Path) -> Result<ModelFile> {
        let bytes = read_file(path)?;
        ModelFile::from_bytes(&bytes).map_err(|e| match e {
            Error::InvalidModel(msg) => Error::InvalidModel(format!("{}: {msg}", path.display())),
            other => other,
        })
    }
}

/// Reads a whole model file with a fallible allocation (a file larger than the memory left is
/// `Error::OutOfMemory`, not an abort).
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let context = || format!("cannot read model {}", path.display());
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(context(), e))?;
    let len = file.metadata().map_err(|e| Error::io(context(), e))?.len();
    let len = usize::try_from(len)
        .map_err(|_| Error::OutOfMemory(format!("the model file {} is {len} bytes", path.display())))?;
    let mut bytes = crate::error::try_vec::<u8>(len, &format!("the model file {}", path.display()))?;
    file.read_to_end(&mut bytes).map_err(|e| Error::io(context(), e))?;
    Ok(bytes)
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

/// Rewrites a safetensors file's JSON header with sorted keys and adds the [`DIGEST_KEY`] of its
/// contents. The crate writes the metadata from a `HashMap`, whose order changes from run to
/// run; sorted, the same model always gives the same bytes (reproducible training, checksums).
fn canonical_header(bytes: &[u8]) -> Result<Vec<u8>> {
    let internal = |what: &str| Error::Internal(format!("re-reading the serialised model: {what}"));
    let (_, parsed) = SafeTensors::read_metadata(bytes).map_err(|e| internal(&describe(&e)))?;
    let metadata = parsed.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes).map_err(|e| internal(&describe(&e)))?;
    let digest = content_digest(&metadata, &st);
    let len = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| internal("short"))?) as usize;
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + len]).map_err(|e| internal(&e.to_string()))?;
    let mut sorted: BTreeMap<String, String> = match header.remove("__metadata__") {
        Some(meta) => serde_json::from_value(meta).map_err(|e| internal(&e.to_string()))?,
        None => BTreeMap::new(),
    };
    sorted.insert(DIGEST_KEY.into(), digest);
    header.insert("__metadata__".into(), serde_json::to_value(sorted).map_err(|e| internal(&e.to_string()))?);
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
