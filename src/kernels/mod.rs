//! The model kernels, shared by inference (the engine, the C library) and training (the tool).
//! Each module mirrors one concept of the paper; parameter names are the reference's.

pub mod filter;
pub mod geometry;
pub mod grid_sampler;
pub mod linear;
pub mod lofi;
pub mod mlp;
pub mod params;
pub mod self_ensemble;

pub use lofi::LofiNet;
pub use params::{Init, ParamBuilder, ParamSource, ParamStore};
pub use self_ensemble::SelfEnsemble;
