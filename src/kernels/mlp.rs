//! The reference's `MLP_net` (Linear-ReLU stacks) and the paper's MultiMLP.

use tch::Tensor;

use super::linear;
use super::params::{Init, ParamBuilder};
use crate::error::Result;

/// `MLP_net(in, out, L, H)`: L hidden Linear+ReLU layers of width H, then a Linear to `out`.
/// Parameters `{prefix}.fcs.{k}.weight` (out, in) and `{prefix}.fcs.{k}.bias` (out).
#[derive(Debug)]
pub struct Mlp {
    pub layers: Vec<(Tensor, Tensor)>,
    /// ReLU after the last layer too. False for every stored network; true for a MultiMLP's
    /// per-angle MLPs whose last layer was folded into the mixer (see
    /// [`LofiNet::fold_layers`](super::LofiNet::fold_layers)): what remains ends in a hidden
    /// layer, whose ReLU stays.
    pub relu_last: bool,
}

/// Declares one `nn.Linear(fan_in, fan_out)` with PyTorch's default initialisation.
fn declare_linear(p: &mut ParamBuilder, prefix: &str, fan_in: i64, fan_out: i64) -> Result<(Tensor, Tensor)> {
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
            .map(|(k, (fan_in, fan_out))| declare_linear(p, &format!("{prefix}.fcs.{k}"), fan_in, fan_out))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp { layers, relu_last: false })
    }

    /// x: (..., input) -> (..., output).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.layers_from(0, x)
    }

    /// Layers `first..` on `x` (the output of layer `first - 1`, after its ReLU): ReLU after each
    /// layer but the last, fused into the product where the backend can (see
    /// [`linear::linear_relu`]).
    fn layers_from(&self, first: usize, x: &Tensor) -> Tensor {
        let last = self.layers.len() - 1;
        let mut y: Option<Tensor> = None;
        for (k, (w, b)) in self.layers.iter().enumerate().skip(first) {
            let input = y.as_ref().unwrap_or(x);
            y = Some(if k == last && !self.relu_last {
                linear::linear(input, w, Some(b))
            } else {
                linear::linear_relu(input, w, Some(b), relu_in_place)
            });
        }
        y.unwrap_or_else(|| x.shallow_clone())
    }

    /// The rest of the network from the first layer's output `y`, before its ReLU.
    fn after_first_layer(&self, y: Tensor) -> Tensor {
        if self.layers.len() == 1 {
            return if self.relu_last { relu_in_place(y) } else { y };
        }
        self.layers_from(1, &relu_in_place(y))
    }

    /// As [`forward`](Self::forward) on inputs whose last `constant` columns all hold one value
    /// per image, `level` ((1,) for every row, or (B,) for B images of rows/B rows each), without
    /// those columns: `x` is (rows, input - constant). The first layer adds level x the sum of
    /// their weights to its bias instead, the same affine map without building, copying or
    /// multiplying the constant columns. (Equal to the full product up to rounding, not bit for
    /// bit: the sum is taken first.)
    pub fn forward_with_constant(&self, x: &Tensor, level: &Tensor, constant: i64) -> Tensor {
        let (w, b) = &self.layers[0];
        let fan_in = w.size()[1];
        let w_x = w.narrow(1, 0, fan_in - constant);
        let shift = w.narrow(1, fan_in - constant, constant).sum_dim_intlist(1, false, w.kind()); // (H,)
        let level = level.to_kind(w.kind()).view([-1]);
        let images = level.size()[0];
        let y = if images == 1 {
            linear::linear(x, &w_x, Some(&(b + &level * &shift)))
        } else {
            // One bias per image: (B, H), added to each image's rows.
            let rows = x.size()[0];
            let bias = b.unsqueeze(0) + level.unsqueeze(1) * shift.unsqueeze(0);
            (linear::linear(x, &w_x, None).view([images, rows / images, -1]) + bias.unsqueeze(1))
                .view([rows, -1])
        };
        self.after_first_layer(y)
    }

    /// The same function with every hidden width (and the output width too when `pad_output`)
    /// rounded up to a multiple of `multiple` by zero units: zero weights and bias in, zero
    /// weights out, so each added unit is ReLU(0) = 0 and adds nothing to the next layer. Used on
    /// CUDA, where half-precision and TF32 products take the tensor cores' fast kernels only when
    /// every leading dimension is a multiple of 16 bytes (see `LofiNet::pad_widths`).
    pub fn with_padded_widths(&self, multiple: i64, pad_output: bool) -> Mlp {
        let last = self.layers.len() - 1;
        let mut fan_in_padded = None;
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(k, (w, b))| {
                let (out, fan_in) = (w.size()[0], w.size()[1]);
                let out_padded = if k < last || pad_output { round_up(out, multiple) } else { out };
                let cols = fan_in_padded.unwrap_or(fan_in);
                fan_in_padded = Some(out_padded);
                (zero_padded(w, &[out_padded, cols]), zero_padded(b, &[out_padded]))
            })
            .collect();
        Mlp { layers, relu_last: self.relu_last }
    }

    /// The same function on an input of `blocks` blocks of `width` columns each laid out with a
    /// stride of `stride` columns (the extra columns zero-weighted): the mixer of per-angle MLPs
    /// whose outputs were padded to `stride`.
    pub fn with_spread_input(&self, blocks: i64, width: i64, stride: i64) -> Mlp {
        let mut layers = self.shallow_clone().layers;
        let (w, _) = &self.layers[0];
        let spread = w.new_zeros([w.size()[0], blocks * stride], (w.kind(), w.device()));
        for m in 0..blocks {
            spread.narrow(1, m * stride, width).copy_(&w.narrow(1, m * width, width));
        }
        layers[0].0 = spread;
        Mlp { layers, relu_last: self.relu_last }
    }

    /// The same network sharing its tensors.
    pub fn shallow_clone(&self) -> Mlp {
        Mlp::sharing(&self.layers, self.relu_last)
    }

    /// A network of `layers` (tensors shared, not copied).
    pub fn sharing(layers: &[(Tensor, Tensor)], relu_last: bool) -> Mlp {
        Mlp {
            layers: layers.iter().map(|(w, b)| (w.shallow_clone(), b.shallow_clone())).collect(),
            relu_last,
        }
    }

    /// Kind of the weights.
    pub fn kind(&self) -> tch::Kind {
        self.layers[0].0.kind()
    }

    /// The same network with its weights cast to `kind` (for half-precision inference).
    pub fn to_kind(&self, kind: tch::Kind) -> Mlp {
        Mlp {
            layers: self.layers.iter().map(|(w, b)| (w.to_kind(kind), b.to_kind(kind))).collect(),
            relu_last: self.relu_last,
        }
    }
}

/// `n` rounded up to a multiple of `multiple`.
pub(crate) fn round_up(n: i64, multiple: i64) -> i64 {
    (n + multiple - 1) / multiple * multiple
}

/// `t` in the top-left corner of zeros of `shape` (same rank, each side at least `t`'s).
fn zero_padded(t: &Tensor, shape: &[i64]) -> Tensor {
    if t.size() == shape {
        return t.shallow_clone();
    }
    let out = t.new_zeros(shape, (t.kind(), t.device()));
    let mut corner = out.shallow_clone();
    for (dim, &side) in t.size().iter().enumerate() {
        corner = corner.narrow(dim as i64, 0, side);
    }
    corner.copy_(t);
    out
}

/// ReLU in place. bfloat16 without autograd goes through its bits: the sign bit of a bfloat16 is
/// the sign bit of the same 16 bits read as an int16, so max(bits, 0) zeroes exactly the negative
/// values (-0 becomes +0, the same number), as ReLU does, and libtorch's int16 kernel runs 5x
/// faster than its bfloat16 one, which converts every value to float32 and back (measured on
/// 2048 x 128: 13 against 65 us, a sixth of the layer's product; 6 % of a shipped-denoiser pass
/// in bfloat16 before). A NaN with its sign bit set would become 0 rather than stay NaN: the
/// engine refuses non-finite inputs, and no finite input makes one.
fn relu_in_place(mut y: Tensor) -> Tensor {
    if y.kind() == tch::Kind::BFloat16 && !y.requires_grad() && y.device() == tch::Device::Cpu {
        let _ = y.view_dtype(tch::Kind::Int16).clamp_min_(0);
        y
    } else {
        y.relu_()
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

    /// x: (M, P, input) -> (P, M * output): MLP m sees `x[m]`; its outputs are columns
    /// m * output .. (m + 1) * output, the order in which the mixer takes them.
    pub fn forward_concat(&self, x: &Tensor) -> Tensor {
        self.concat(x, Mlp::forward)
    }

    /// As [`forward_concat`](Self::forward_concat) with the last `constant` input columns of
    /// every MLP held at `level` and left out of `x`: see [`Mlp::forward_with_constant`].
    pub fn forward_concat_with_constant(&self, x: &Tensor, level: &Tensor, constant: i64) -> Tensor {
        self.concat(x, |mlp, x| mlp.forward_with_constant(x, level, constant))
    }

    /// MLP m's `forward` of x[m], the outputs side by side.
    fn concat(&self, x: &Tensor, forward: impl Fn(&Mlp, &Tensor) -> Tensor) -> Tensor {
        let outputs: Vec<Tensor> =
            self.mlps.iter().enumerate().map(|(m, mlp)| forward(mlp, &x.select(0, m as i64))).collect();
        Tensor::cat(&outputs, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// The bfloat16 ReLU through int16 bits equals libtorch's ReLU, zeros, signed zeros, tiny
    /// and huge values included (libtorch keeps -0 as -0, this gives +0: the same number).
    #[test]
    fn bfloat16_relu_by_its_bits_equals_relu() {
        tch::manual_seed(4);
        let mut values = Tensor::randn([4096], (Kind::Float, Device::Cpu)) * 1e3;
        let special = Tensor::from_slice(&[0.0f32, -0.0, 1e-38, -1e-38, 3e38, -3e38, 1e-5, -1e-5]);
        values = Tensor::cat(&[values, special], 0).to_kind(Kind::BFloat16);
        let want = values.relu();
        let got = relu_in_place(values.copy());
        assert!(got.equal(&want));
        let positive = values.gt(0.0);
        assert!(got.masked_select(&positive).equal(&values.masked_select(&positive)));
        assert_eq!(
            i64::try_from(got.ne(0.0).logical_and(&positive.logical_not()).sum(Kind::Int64)).unwrap(),
            0
        );
    }

    /// Four rows per image, `constant` = 3 columns held at each image's level: the folded bias
    /// gives the product of the full input, values and gradients, for one level and for one
    /// level per image.
    #[test]
    fn a_constant_block_of_columns_folds_into_the_bias() {
        tch::manual_seed(3);
        let layer = |fan_in: i64, fan_out: i64| {
            let w = Tensor::randn([fan_out, fan_in], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            (w, Tensor::randn([fan_out], (Kind::Float, Device::Cpu)).set_requires_grad(true))
        };
        let mlp = Mlp { layers: vec![layer(5 + 3, 6), layer(6, 6), layer(6, 2)], relu_last: false };
        let x = Tensor::randn([8, 5], (Kind::Float, Device::Cpu));
        for level in [Tensor::from_slice(&[0.3f32]), Tensor::from_slice(&[0.1f32, 0.45])] {
            let per_row = if level.size()[0] == 1 {
                level.expand([8], false)
            } else {
                level.repeat_interleave_self_int(4, 0, None)
            };
            let full = Tensor::cat(&[x.shallow_clone(), per_row.unsqueeze(1).expand([8, 3], false)], 1);
            let w0 = &mlp.layers[0].0;
            let want = mlp.forward(&full);
            let want_grad = Tensor::run_backward(&[want.sum(Kind::Float)], &[w0], false, false).remove(0);
            let got = mlp.forward_with_constant(&x, &level, 3);
            let got_grad = Tensor::run_backward(&[got.sum(Kind::Float)], &[w0], false, false).remove(0);
            assert!(got.allclose(&want, 1e-5, 1e-6, false), "{level:?}");
            assert!(got_grad.allclose(&want_grad, 1e-5, 1e-6, false), "{level:?}: gradients differ");
        }
    }
}
