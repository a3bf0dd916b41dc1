//! Loading, describing and freeing models.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::path::Path;
use std::sync::Arc;

use super::abi;
use super::error::{guard, lofi_status, non_null};
use super::types::*;
use crate::device::{DeviceSpec, Precision};
use crate::error::Error;
use crate::model::Model;

/// A loaded model. Immutable: any number of threads may use one model at the same time.
/// Create with `lofi_load()` or `lofi_load_from_memory()`, release with `lofi_model_free()`.
/// Reference-counted inside: a PnP state created with it keeps it alive, so the model may be
/// freed before the state.
pub struct lofi_model {
    pub(crate) inner: Arc<Model>,
    /// Replicas on further devices (`lofi_load_params.devices`), beside `inner` on the first:
    /// `lofi_reconstruct_region()` deals bands out to all of them. Empty for one device.
    pub(crate) replicas: Vec<Arc<Model>>,
}

impl lofi_model {
    /// The model on every device it was loaded on, the first device first.
    pub(crate) fn devices(&self) -> Vec<&Model> {
        std::iter::once(&*self.inner).chain(self.replicas.iter().map(|m| &**m)).collect()
    }
}

/// The load options and the device list (`None`: the one device of the options).
fn load_params(
    params: *const lofi_load_params,
) -> crate::Result<(crate::model::LoadOptions, Option<Vec<DeviceSpec>>)> {
    // SAFETY: the caller passes NULL or a valid struct, whose `devices` is NULL or a string.
    let params = unsafe { abi::read_in_or_default(params) }?;
    let devices = unsafe { params.device_list() }?;
    if devices.as_ref().is_some_and(|d| d.is_empty()) {
        return Err(Error::invalid_argument("devices is an empty list"));
    }
    Ok((params.to_options()?, devices))
}

/// Loads the model with `load` on the options' device, or once per device of the list.
fn load_on_devices(
    (options, devices): (crate::model::LoadOptions, Option<Vec<DeviceSpec>>),
    load: impl Fn(crate::model::LoadOptions) -> crate::Result<Model>,
) -> crate::Result<lofi_model> {
    let devices = devices.unwrap_or_else(|| vec![options.device]);
    let mut models = devices
        .into_iter()
        .map(|device| load(crate::model::LoadOptions { device, ..options }).map(Arc::new))
        .collect::<crate::Result<Vec<_>>>()?;
    let inner = models.remove(0);
    Ok(lofi_model { inner, replicas: models })
}

fn hand_out(model: lofi_model, out: *mut *mut lofi_model) {
    // SAFETY: checked non-null by the callers.
    unsafe { *out = Box::into_raw(Box::new(model)) };
}

/// Loads a `.lofi` model file.
///
/// * `path`: NUL-terminated UTF-8 path.
/// * `params`: NULL for `lofi_default_load_params()`.
/// * `out_model`: receives the new model on success (set to NULL on failure); the caller owns
///   it and releases it with `lofi_model_free()`.
///
/// Every tensor's name, shape and dtype is checked against the file's configuration; the first
/// mismatch is reported by `lofi_last_error()`. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_load(
    path: *const c_char,
    params: *const lofi_load_params,
    out_model: *mut *mut lofi_model,
) -> lofi_status {
    guard("lofi_load", || {
        if out_model.is_null() {
            return Err(Error::invalid_argument("out_model is NULL"));
        }
        *out_model = std::ptr::null_mut();
        let path = non_null(path, "path")?;
        let path =
            CStr::from_ptr(path).to_str().map_err(|_| Error::invalid_argument("path is not valid UTF-8"))?;
        let model = load_on_devices(load_params(params)?, |options| Model::load(Path::new(path), options))?;
        hand_out(model, out_model);
        Ok(())
    })
}

/// Loads a model from the bytes of a `.lofi` file (`size` bytes at `data`). The bytes are copied
/// as needed; the caller may free them when the call returns. Otherwise as `lofi_load()`.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_load_from_memory(
    data: *const u8,
    size: usize,
    params: *const lofi_load_params,
    out_model: *mut *mut lofi_model,
) -> lofi_status {
    guard("lofi_load_from_memory", || {
        if out_model.is_null() {
            return Err(Error::invalid_argument("out_model is NULL"));
        }
        *out_model = std::ptr::null_mut();
        if data.is_null() {
            return Err(Error::invalid_argument("data is NULL"));
        }
        let bytes = std::slice::from_raw_parts(data, size);
        let model = load_on_devices(load_params(params)?, |options| Model::load_from_memory(bytes, options))?;
        hand_out(model, out_model);
        Ok(())
    })
}

/// Releases the caller's reference to a model. NULL is allowed (no-op). No call may be using
/// this handle (on another thread) meanwhile; PnP states created with the model keep it alive
/// until `lofi_pnp_free()`, so they remain usable.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_model_free(model: *mut lofi_model) {
    if !model.is_null() {
        let _ = super::error::quietly(|| {
            drop(Box::from_raw(model));
            Ok(())
        });
    }
}

/// Describes a model into `*out_info`, whose size is `out_info_size` (`sizeof(lofi_model_info)`:
/// the inline `lofi_model_get_info()` passes it). The library writes at most that many bytes and
/// sets `out_info->struct_size` to the number written. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_model_get_info_sized(
    model: *const lofi_model,
    out_info: *mut lofi_model_info,
    out_info_size: usize,
) -> lofi_status {
    guard("lofi_model_get_info", || {
        let model = &non_null(model, "model")?.inner;
        if out_info.is_null() {
            return Err(Error::invalid_argument("out_info is NULL"));
        }
        abi::check_out_size::<lofi_model_info>(out_info_size, "out_info_size")?;
        let cfg = model.config();
        let (device, device_index) = match model.device_spec() {
            DeviceSpec::Cpu => (LOFI_DEVICE_CPU, 0),
            DeviceSpec::Cuda(i) => (LOFI_DEVICE_CUDA, i as i32),
        };
        let info = lofi_model_info {
            struct_size: std::mem::size_of::<lofi_model_info>(),
            image_size: cfg.image_size as i32,
            channels_in: cfg.c_in as i32,
            channels_out: cfg.c_out as i32,
            rings: cfg.n as i32,
            angles: cfg.m as i32,
            num_layers: cfg.num_layers as i32,
            hidden_dim: cfg.hidden_dim as i32,
            fourier_filtering: cfg.fourier_filtering as i32,
            ccpg: cfg.ccpg as i32,
            coord_deform: cfg.coord_deform as i32,
            parameter_count: model.parameter_count(),
            device,
            device_index,
            precision: match model.precision() {
                Precision::F32 => LOFI_PRECISION_F32,
                Precision::BF16 => LOFI_PRECISION_BF16,
                Precision::F16 => LOFI_PRECISION_F16,
            },
            bytes_per_pixel: crate::engine::budget::bytes_per_pixel(cfg, model.precision().bytes()) as u64,
            noise_level_aware: cfg.noise_level.is_some() as i32,
            noise_level_min: cfg.noise_level.map_or(0.0, |r| r.sigma_min),
            noise_level_max: cfg.noise_level.map_or(0.0, |r| r.sigma_max),
        };
        abi::write_out(out_info, out_info_size, info);
        Ok(())
    })
}

/// The metadata keys `lofi_model_get_metadata()` knows.
const METADATA_KEYS: [&str; 4] = ["notes", "config", "format_version", "digest"];

/// Reads one metadata entry of a model as a NUL-terminated UTF-8 string (llama.cpp's pattern):
///
/// * `"notes"`: the free-form JSON notes the file carries (how the model was made), "" if none;
/// * `"config"`: the model's configuration as JSON;
/// * `"format_version"`: the `.lofi` format version of its file, e.g. "1";
/// * `"digest"`: the SHA-256 digest its file records and that was verified at load
///   ("sha256:" and 64 hex digits), "" for a file written before digests.
///
/// `*out_needed` (may be NULL) receives the bytes the value needs, NUL included. With `buf` NULL
/// and `buf_len` 0 this is a size query (`LOFI_STATUS_OK`). Otherwise the value is written if it
/// fits in `buf_len` bytes; if not, `buf` receives "" (when `buf_len` > 0) and the call fails with
/// `LOFI_STATUS_INVALID_ARGUMENT` (the message states the size needed). An unknown key is
/// `LOFI_STATUS_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_model_get_metadata(
    model: *const lofi_model,
    key: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
    out_needed: *mut usize,
) -> lofi_status {
    guard("lofi_model_get_metadata", || {
        let model = &non_null(model, "model")?.inner;
        let key = CStr::from_ptr(non_null(key, "key")?);
        let key = key.to_str().map_err(|_| Error::invalid_argument("key is not valid UTF-8"))?;
        if buf.is_null() && buf_len > 0 {
            return Err(Error::invalid_argument(format!("buf is NULL but buf_len is {buf_len}")));
        }
        let value = match key {
            "notes" => model.notes().map(|n| n.to_string()).unwrap_or_default(),
            "config" => model.config().to_json(),
            "format_version" => model.format_version().to_string(),
            "digest" => model.digest().unwrap_or_default().to_string(),
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(Error::invalid_argument(format!(
                    "unknown metadata key '{shown}' (known: {})",
                    METADATA_KEYS.join(", ")
                )));
            }
        };
        let value = value.replace('\0', " ");
        let needed = value.len() + 1;
        if let Some(n) = out_needed.as_mut() {
            *n = needed;
        }
        if buf.is_null() {
            return Ok(());
        }
        if buf_len < needed {
            if buf_len > 0 {
                *buf = 0;
            }
            return Err(Error::invalid_argument(format!(
                "the value of '{key}' needs {needed} bytes (NUL included), buf holds {buf_len}"
            )));
        }
        std::ptr::copy_nonoverlapping(value.as_ptr(), buf as *mut u8, value.len());
        *buf.add(value.len()) = 0;
        Ok(())
    })
}

/// Working memory a reconstruction with `model` needs for a `width` x `height` input:
/// `*out_min_budget_bytes` receives the smallest `memory_budget_bytes` that works (one batch of
/// the minimum size), `*out_bytes_per_pixel` (may be NULL) what each further output pixel of a
/// batch adds. Thread-safe.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
#[no_mangle]
pub unsafe extern "C" fn lofi_memory_requirements(
    model: *const lofi_model,
    width: usize,
    height: usize,
    out_min_budget_bytes: *mut u64,
    out_bytes_per_pixel: *mut u64,
) -> lofi_status {
    guard("lofi_memory_requirements", || {
        let model = &non_null(model, "model")?.inner;
        let out = out_min_budget_bytes
            .as_mut()
            .ok_or_else(|| Error::invalid_argument("out_min_budget_bytes is NULL"))?;
        if width == 0 || height == 0 || width > 1 << 16 || height > 1 << 16 {
            return Err(Error::invalid_argument(format!("input size {width} x {height} is out of range")));
        }
        let per_pixel = crate::engine::budget::bytes_per_pixel(model.config(), model.precision().bytes());
        // The streamed engine's minimum: the input window of one quantum's tile, not the image.
        *out = crate::engine::stream::minimum_budget(model, height, width) as u64;
        if let Some(p) = out_bytes_per_pixel.as_mut() {
            *p = per_pixel as u64;
        }
        Ok(())
    })
}
