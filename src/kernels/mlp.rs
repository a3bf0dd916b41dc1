//! The reference's `MLP_net` (Linear-ReLU stacks) and the paper's MultiMLP.

use tch::Tensor;

use super::params::{Init, ParamBuilder};
use crate::error::Result;

/// `MLP_net(in, out, L, H)`: L hidden Linear+ReLU layers of width H, then a Linear to `out`.
/// Parameters `{prefix}.fcs.{k}.weight` (out, in) and `{prefix}.fcs.{k}.bias` (out).
#[derive(Debug)]
pub struct Mlp {
    pub layers: Vec<(Tensor, Tensor)>,
}

/// Declares one `nn.Linear(fan_in, fan_out)` with PyTorch's default initialisation.
fn linear(p: &mut ParamBuilder, prefix: &str, fan_in: i64, fan_out: i64) -> Result<(Tensor, Tensor)> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let w = p.param(&format!("{prefix}.weight"), &[fan_out, fan_in], Init::Uniform(bound))?;
    let b = p.param(&format!("{prefix}.bias"), &[fan_out], Init::Uniform(bound))?;
    Ok((w, b))
}

/// Widths of the Linear layers of `MLP_net(input, output, hidden_layers, hidden)`.
pub fn layer_widths(input: i64, output: i64, hidden_layers: i64, hidden: i64) -> Vec<(i64, i64)> {
    let mut widths = Vec::new();
    let mut prev = input;
    for _ in 0..hidden_layers {
        widths.push((prev, hidden));
        prev = hidden;
    }
    widths.push((prev, output));
    widths
}

impl Mlp {
    pub fn new(
        p: &mut ParamBuilder,
        prefix: &str,
        input: i64,
        output: i64,
        hidden_layers: i64,
        hidden: i64,
    ) -> Result<Self> {
        let layers = layer_widths(input, output, hidden_layers, hidden)
            .into_iter()
            .enumerate()
            .map(|(k, (fan_in, fan_out))| linear(p, &format!("{prefix}.fcs.{k}"), fan_in, fan_out))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp { layers })
    }

    /// x: (..., input) -> (..., output).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let last = self.layers.len() - 1;
        let mut x = x.shallow_clone();
        for (k, (w, b)) in self.layers.iter().enumerate() {
            x = x.linear(w, Some(b));
            if k < last {
                // In place: the product's output is fresh, and ReLU's backward needs only its
                // own output.
                x = x.relu_();
            }
        }
        x
    }

    /// Kind of the weights.
    pub fn kind(&self) -> tch::Kind {
        self.layers[0].0.kind()
    }

    /// The same network with its weights cast to `kind` (for half-precision inference).
    pub fn to_kind(&self, kind: tch::Kind) -> Mlp {
        Mlp { layers: self.layers.iter().map(|(w, b)| (w.to_kind(kind), b.to_kind(kind))).collect() }
    }
}

/// M MLPs of identical shape: the per-angle MLPs of MultiMLP.
///
/// They run one after the other, each as ordinary matrix products on its own (P, in) slice, and
/// their outputs are concatenated into the mixer's input. Measured on a 2-core AVX-512/AMX CPU
/// (libtorch 2.11), this is 1.35-1.45x faster in float32 and up to 2x in bfloat16 than one batched
/// product (`baddbmm`) per layer for batches of 2,048 pixels or more: the batched kernel does not
/// block for the cache as the plain one does. It also needs no stacked copy of the weights, so
/// training and inference share one path and gradients reach the parameters directly.
#[derive(Debug)]
pub struct MlpBank {
    pub mlps: Vec<Mlp>,
}

impl MlpBank {
    pub fn new(mlps: Vec<Mlp>) -> MlpBank {
        MlpBank { mlps }
    }

    /// x: (M, P, input) -> (P, M * output): MLP m sees x[m]; its outputs are columns
    /// m * output .. (m + 1) * output, the order in which the mixer takes them.
    pub fn forward_concat(&self, x: &Tensor) -> Tensor {
        let outputs: Vec<Tensor> =
            self.mlps.iter().enumerate().map(|(m, mlp)| mlp.forward(&x.select(0, m as i64))).collect();
        Tensor::cat(&outputs, 1)
    }
}
