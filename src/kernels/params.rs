//! Named parameters: how modules declare them, where their values come from (fresh
//! initialisation or a model file), and the ordered store the model keeps.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// How a freshly created parameter is initialised (PyTorch's conventions, so that a model trained
/// here starts from the same distribution as the reference).
pub enum Init {
    /// U(-bound, bound): PyTorch's `nn.Linear` default with bound = 1/sqrt(fan_in).
    Uniform(f64),
    Const(f64),
    /// A float32 value of the declared shape, computed only when the parameter is initialised
    /// (patch geometries, the identity filter).
    With(Box<dyn FnOnce() -> Tensor>),
}

/// The ordered list of every parameter a model owns, by its reference `state_dict` name.
#[derive(Debug, Default)]
pub struct ParamStore {
    entries: Vec<(String, Tensor)>,
}

impl ParamStore {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Total number of scalar parameters (a complex value counts as two, as stored).
    pub fn numel(&self) -> i64 {
        self.entries.iter().map(|(_, t)| t.numel() as i64).sum()
    }
}

/// Where parameter values come from while a model is being built.
pub enum ParamSource {
    /// Fresh initialisation from libtorch's global generator (seed it with `tch::manual_seed`).
    Init,
    /// Values read from a file, by name; every one must be used exactly once.
    Tensors(BTreeMap<String, Tensor>),
}

/// Hands out parameters to the modules being built and records them in a [`ParamStore`].
pub struct ParamBuilder {
    source: ParamSource,
    device: Device,
    store: ParamStore,
}

impl ParamBuilder {
    pub fn new(source: ParamSource, device: Device) -> Self {
        ParamBuilder { source, device, store: ParamStore::default() }
    }

    /// Declares the float32 parameter `name` of shape `shape`.
    pub fn param(&mut self, name: &str, shape: &[i64], init: Init) -> Result<Tensor> {
        let tensor = match &mut self.source {
            ParamSource::Init => {
                let mut t = Tensor::zeros(shape, (Kind::Float, self.device));
                tch::no_grad(|| match init {
                    Init::Uniform(bound) => {
                        let _ = t.uniform_(-bound, bound);
                    }
                    Init::Const(v) => {
                        let _ = t.fill_(v);
                    }
                    Init::With(make) => {
                        let v = make();
                        assert_eq!(v.size(), shape, "initial value of '{name}' has the declared shape");
                        t.copy_(&v);
                    }
                });
                t
            }
            ParamSource::Tensors(map) => {
                let t = map.remove(name).ok_or_else(|| {
                    Error::invalid_model(format!("missing tensor '{name}' (expected shape {shape:?})"))
                })?;
                if t.size() != shape {
                    return Err(Error::invalid_model(format!(
                        "tensor '{name}' has shape {:?}, the configuration needs {shape:?}",
                        t.size()
                    )));
                }
                if t.kind() != Kind::Float {
                    return Err(Error::invalid_model(format!(
                        "tensor '{name}' has dtype {:?}, expected float32",
                        t.kind()
                    )));
                }
                let finite = t.isfinite().all().int64_value(&[]) != 0;
                if !finite {
                    return Err(Error::invalid_model(format!(
                        "tensor '{name}' holds NaN or infinite values"
                    )));
                }
                t.to_device(self.device).contiguous()
            }
        };
        self.store.entries.push((name.to_string(), tensor.shallow_clone()));
        Ok(tensor)
    }

    /// Ends the build: with file values, any tensor nobody asked for is an error.
    pub fn finish(self) -> Result<ParamStore> {
        if let ParamSource::Tensors(map) = &self.source {
            if let Some(name) = map.keys().next() {
                return Err(Error::invalid_model(format!(
                    "unexpected tensor '{name}': the configuration has no such parameter"
                )));
            }
        }
        Ok(self.store)
    }
}
