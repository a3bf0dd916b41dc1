//! # lofi
//!
//! LoFi (Local Field) image reconstruction (Khorashadizadeh et al., IEEE TCI 2025) as an
//! embeddable runtime. Layers, bottom up:
//!
//! * [`kernels`]: the model itself (patch geometry, sampling, Fourier filter, MLPs, CCPG, INR),
//!   differentiable, CPU or CUDA; shared with the training tool.
//! * [`model_file`]: the self-describing `.lofi` format (safetensors + JSON configuration).
//! * [`model`]: a loaded, immutable model that threads can share.
//! * [`engine`]: memory-budgeted streaming reconstruction of regions and coordinate lists.
//! * [`ffi`]: the C ABI (`include/lofi.h`).

pub mod config;
pub mod device;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod formats;
pub mod image_io;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod model_file;
pub mod npy_bands;
pub mod operators;
pub mod pnp;
pub mod visibility_io;

pub use config::{LofiConfig, Network, PatchShape};
pub use error::{Error, Result};
pub use model::Model;

/// The crate's version, as `major.minor.patch`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
