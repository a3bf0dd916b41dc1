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

/// M MLPs of identical shape evaluated together: the per-angle MLPs of MultiMLP. They run as
/// one batched matrix product per layer instead of M small ones.
#[derive(Debug)]
pub struct MlpBank {
    pub mlps: Vec<Mlp>,
    /// Per layer, the weights stacked (M, out, in) and the biases (M, 1, out), made once for
    /// inference ([`stacked`](Self::stacked)); empty when training, where every step stacks the
    /// current parameters so that gradients reach them.
    cache: Vec<(Tensor, Tensor)>,
}

impl MlpBank {
    pub fn new(mlps: Vec<Mlp>) -> MlpBank {
        MlpBank { mlps, cache: Vec::new() }
    }

    /// The same bank with its weights stacked once (for inference: a copy of the weights that
    /// later parameter updates would not reach).
    pub fn stacked(self) -> MlpBank {
        let cache = tch::no_grad(|| (0..self.mlps[0].layers.len()).map(|k| self.stack_layer(k)).collect());
        MlpBank { cache, ..self }
    }

    fn stack_layer(&self, k: usize) -> (Tensor, Tensor) {
        let w = Tensor::stack(&self.mlps.iter().map(|m| &m.layers[k].0).collect::<Vec<_>>(), 0);
        let b = Tensor::stack(&self.mlps.iter().map(|m| &m.layers[k].1).collect::<Vec<_>>(), 0);
        (w, b.unsqueeze(1))
    }

    /// x: (M, P, input) -> (M, P, output); MLP m sees x[m].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let depth = self.mlps[0].layers.len();
        let mut x = x.shallow_clone();
        for k in 0..depth {
            let stacked;
            let (w, b) = match self.cache.get(k) {
                Some((w, b)) => (w, b),
                None => {
                    stacked = self.stack_layer(k);
                    (&stacked.0, &stacked.1)
                }
            };
            // (M, out, in) -> (M, in, out), so that x (M, P, in) @ w gives (M, P, out).
            x = b.baddbmm(&x, &w.transpose(1, 2), 1.0, 1.0);
            if k + 1 < depth {
                x = x.relu_();
            }
        }
        x
    }
}
