//! Loading, describing and freeing models.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::path::Path;

use super::error::{guard, lofi_status, non_null};
use super::types::*;
use crate::device::{DeviceSpec, Precision};
use crate::error::Error;
use crate::model::Model;

/// A loaded model. Immutable: any number of threads may use one model at the same time.
/// Create with `lofi_load()` or `lofi_load_from_memory()`, release with `lofi_model_free()`.
pub struct lofi_model {
    pub(crate) inner: Model,
}

fn load_params(params: *const lofi_load_params) -> crate::Result<crate::model::LoadOptions> {
    // SAFETY: the caller passes NULL or a valid struct.
    let params = unsafe { params.as_ref() }.copied().unwrap_or_else(|| lofi_default_load_params());
    params.to_options()
}

fn hand_out(model: Model, out: *mut *mut lofi_model) {
    // SAFETY: checked non-null by the callers.
    unsafe { *out = Box::into_raw(Box::new(lofi_model { inner: model })) };
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
        let options = load_params(params)?;
        hand_out(Model::load(Path::new(path), options)?, out_model);
        Ok(())
    })
}

/// Loads a model from the bytes of a `.lofi` file (`size` bytes at `data`). The bytes are copied
/// as needed; the caller may free them when the call returns. Otherwise as `lofi_load()`.
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
        let options = load_params(params)?;
        hand_out(Model::load_from_memory(bytes, options)?, out_model);
        Ok(())
    })
}

/// Releases a model. NULL is allowed (no-op). The model must not be in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn lofi_model_free(model: *mut lofi_model) {
    if !model.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(model))));
    }
}

/// Describes a model into `*out_info`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn lofi_model_get_info(
    model: *const lofi_model,
    out_info: *mut lofi_model_info,
) -> lofi_status {
    guard("lofi_model_get_info", || {
        let model = &non_null(model, "model")?.inner;
        let out = out_info.as_mut().ok_or_else(|| Error::invalid_argument("out_info is NULL"))?;
        let cfg = model.config();
        let (device, device_index) = match model.device_spec() {
            DeviceSpec::Cpu => (LOFI_DEVICE_CPU, 0),
            DeviceSpec::Cuda(i) => (LOFI_DEVICE_CUDA, i as i32),
        };
        *out = lofi_model_info {
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
        };
        Ok(())
    })
}

/// Working memory a reconstruction with `model` needs for a `width` x `height` input:
/// `*out_min_budget_bytes` receives the smallest `memory_budget_bytes` that works (one batch of
/// the minimum size), `*out_bytes_per_pixel` (may be NULL) what each further output pixel of a
/// batch adds. Thread-safe.
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
        let cfg = model.config();
        let net_bytes = model.precision().bytes();
        let per_pixel = crate::engine::budget::bytes_per_pixel(cfg, net_bytes);
        let image = crate::engine::budget::bytes_for_image(cfg, height, width, net_bytes);
        *out = (image + per_pixel * crate::engine::BATCH_QUANTUM) as u64;
        if let Some(p) = out_bytes_per_pixel.as_mut() {
            *p = per_pixel as u64;
        }
        Ok(())
    })
}
