//! A loaded model: immutable once built, on one device, shareable between threads.

use std::path::Path;

use tch::Tensor;

use crate::config::LofiConfig;
use crate::device::{DeviceSpec, Precision};
use crate::error::{Error, Result};
use crate::kernels::{LofiNet, ParamBuilder, ParamSource, ParamStore};
use crate::model_file::ModelFile;

/// How to load a model.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    pub device: DeviceSpec,
    /// Precision of the networks: bf16 and f16 on CUDA, bf16 on CPUs with native bfloat16
    /// matrix instructions ([`Precision::check_cpu`]).
    pub precision: Precision,
    /// Fold consecutive linear layers into one where that saves work (see
    /// [`LofiNet::fold_layers`]; equal up to float rounding). Default true; false runs every
    /// stored layer, as the reference does (parity checks, and the other side of a benchmark).
    pub fold_layers: bool,
    /// On CUDA, round the MLPs' hidden widths up to multiples of 8 with zero units, so that
    /// cuBLAS takes the tensor cores' aligned kernels (see [`LofiNet::pad_widths`]; equal up to
    /// float rounding). Default true; no effect on the CPU.
    pub tensor_core_padding: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: DeviceSpec::default(),
            precision: Precision::default(),
            fold_layers: true,
            tensor_core_padding: true,
        }
    }
}

impl LoadOptions {
    /// The defaults on `device` in `precision`.
    pub fn new(device: DeviceSpec, precision: Precision) -> Self {
        LoadOptions { device, precision, ..LoadOptions::default() }
    }
}

/// Widths the CUDA network is padded to (elements): 16 bytes of a half precision, the alignment
/// cuBLAS's tensor-core kernels need (float32 for TF32 needs 4).
const TENSOR_CORE_MULTIPLE: i64 = 8;

/// A LoFi model ready for inference.
pub struct Model {
    config: LofiConfig,
    notes: Option<serde_json::Value>,
    params: ParamStore,
    /// The network in float32.
    net: LofiNet,
    /// The network of the per-pixel step where it differs from `net`: with layers folded
    /// ([`LofiNet::fold_layers`]) and/or its MLPs cast to the requested half precision.
    pixel: Option<LofiNet>,
    device: tch::Device,
    device_spec: DeviceSpec,
    precision: Precision,
    /// The format version of the file it was loaded from (the current one when built in memory).
    format_version: u32,
    /// The SHA-256 digest its file recorded and that was verified at load (`sha256:<hex>`), or
    /// `None` (a file written before digests, or a model built in memory).
    digest: Option<String>,
}

// SAFETY: a `Model` is never mutated after construction: every method takes `&self` and only
// reads its tensors (inference runs under no-grad and creates new tensors). libtorch allows
// concurrent reads of the same tensor from several threads; `tch::Tensor` is `Send` but not
// `Sync` only because it cannot know that no one mutates it, which `Model`'s API guarantees.
unsafe impl Sync for Model {}

impl Model {
    /// Builds a model from a parsed file, checking every tensor's name, shape and dtype.
    pub fn from_file(file: ModelFile, options: LoadOptions) -> Result<Model> {
        let device = options.device.resolve()?;
        if device == tch::Device::Cpu {
            options.precision.check_cpu(crate::device::CpuFeatures::detect())?;
        }
        let _guard = tch::no_grad_guard();
        let mut builder = ParamBuilder::new(ParamSource::Tensors(file.tensors), device);
        let net = LofiNet::build(&file.config, &mut builder)?;
        let params = builder.finish()?;
        let folded = if options.fold_layers { net.fold_layers() } else { None };
        let pixel = match options.precision {
            Precision::F32 => folded,
            p => Some(folded.as_ref().unwrap_or(&net).cast_networks(p.kind())),
        };
        let pixel = match (device, options.tensor_core_padding) {
            (tch::Device::Cuda(_), true) => {
                pixel.as_ref().unwrap_or(&net).pad_widths(TENSOR_CORE_MULTIPLE).or(pixel)
            }
            _ => pixel,
        };
        log::info!(
            "loaded a LoFi model: {} parameters, trained at {1}x{1}, {2} -> {3} channels, on {4}, {5}",
            params.numel(),
            file.config.image_size,
            file.config.c_in,
            file.config.c_out,
            options.device,
            options.precision
        );
        if device != tch::Device::Cpu {
            crate::engine::cuda_memory::note_device_used();
            crate::kernels::linear::apply_cuda_tf32_default();
        }
        Ok(Model {
            config: file.config,
            notes: file.notes,
            params,
            net,
            pixel,
            device,
            device_spec: options.device,
            precision: options.precision,
            format_version: file.format_version,
            digest: file.digest,
        })
    }

    /// Loads a `.lofi` file.
    pub fn load(path: &Path, options: LoadOptions) -> Result<Model> {
        let file = ModelFile::read(path)?;
        Model::from_file(file, options).map_err(|e| match e {
            Error::InvalidModel(msg) => Error::InvalidModel(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Loads a `.lofi` file held in memory.
    pub fn load_from_memory(bytes: &[u8], options: LoadOptions) -> Result<Model> {
        Model::from_file(ModelFile::from_bytes(bytes)?, options)
    }

    /// Wraps a network built elsewhere (the training tool), moving nothing.
    pub fn from_parts(net: LofiNet, params: ParamStore, notes: Option<serde_json::Value>) -> Model {
        let device = net.patch.device();
        let device_spec = match device {
            tch::Device::Cuda(i) => {
                crate::engine::cuda_memory::note_device_used();
                DeviceSpec::Cuda(i)
            }
            _ => DeviceSpec::Cpu,
        };
        Model {
            config: net.config.clone(),
            notes,
            params,
            net,
            pixel: None,
            device,
            device_spec,
            precision: Precision::F32,
            format_version: crate::model_file::FORMAT_VERSION,
            digest: None,
        }
    }

    pub fn config(&self) -> &LofiConfig {
        &self.config
    }

    /// Checks the noise level a caller gives against the model: a noise-aware model needs one, a
    /// fixed-level model refuses one (it would be silently ignored otherwise).
    pub fn check_noise_level(&self, sigma: Option<f64>) -> Result<()> {
        match (&self.config.noise_level, sigma) {
            (Some(range), Some(s)) => range.check(s),
            (Some(range), None) => Err(Error::invalid_argument(format!(
                "this model is noise-level aware (trained for sigma in [{}, {}]): give the input's noise \
                 standard deviation (noise_level, in image units: 0.1 for 25.5/255 on [0, 1] images)",
                range.sigma_min, range.sigma_max
            ))),
            (None, Some(s)) => Err(Error::invalid_argument(format!(
                "this model was trained at one fixed noise level and takes no noise level (sigma = {s} \
                 was given); use a noise-level-aware model (see `lofi info`)"
            ))),
            (None, None) => Ok(()),
        }
    }
    pub fn notes(&self) -> Option<&serde_json::Value> {
        self.notes.as_ref()
    }
    /// The format version of the file the model came from.
    pub fn format_version(&self) -> u32 {
        self.format_version
    }
    /// The verified SHA-256 digest of the model's file (`sha256:<hex>`), if it recorded one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
    pub fn params(&self) -> &ParamStore {
        &self.params
    }
    /// Number of scalar parameters as stored (the complex filter counts twice).
    pub fn parameter_count(&self) -> i64 {
        self.params.numel()
    }
    pub fn device(&self) -> tch::Device {
        self.device
    }
    pub fn device_spec(&self) -> DeviceSpec {
        self.device_spec
    }
    pub fn precision(&self) -> Precision {
        self.precision
    }
    /// The float32 network (the filter always runs in float32).
    pub fn net(&self) -> &LofiNet {
        &self.net
    }
    /// The network of the per-pixel step: in the model's precision, with layers folded where
    /// that saves work (unless loaded with `fold_layers: false`).
    pub fn pixel_net(&self) -> &LofiNet {
        self.pixel.as_ref().unwrap_or(&self.net)
    }

    /// Serialises the model as a `.lofi` file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        crate::model_file::to_bytes(&self.config, &self.params, self.notes.as_ref())
    }

    /// The reference's `forward` on float32 tensors already on the model's device (tests, tools):
    /// `coords` (B, P, 2), `image` (B, C, H, W) -> (B, P, c_out).
    pub fn forward(&self, coords: &Tensor, image: &Tensor) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        self.net.forward(coords, image)
    }
}
