//! The LoFi network: patch geometry, optional Fourier filter, optional CCPG and INR, and the
//! MultiMLP (or MLP) that maps each pixel's samples to its value.
//!
//! Evaluation is split in two so that the filter runs once per image however many pixel batches
//! follow: [`LofiNet::prepare`] (whole image) and [`LofiNet::forward_prepared`] (a batch of
//! coordinates). [`LofiNet::forward`] chains them, as the reference's `forward` does.

use tch::{Kind, Tensor};

use super::filter::apply_filter;
use super::geometry::{initial_patch, resolution_scale, sample_patches_by_angle};
use super::mlp::{round_up, Mlp, MlpBank};
use super::params::{Init, ParamBuilder, ParamStore};
use super::self_ensemble::SelfEnsemble;
use crate::config::{LofiConfig, Network, PatchShape};
use crate::error::{Error, Result};

/// The sample-to-pixel network.
#[derive(Debug)]
pub enum PixelNetwork {
    /// `MLP.{m}` for each angle m, then `mixer_MLP`.
    MultiMlp { per_angle: MlpBank, mixer: Mlp },
    /// `MLP`.
    Mlp(Mlp),
}

/// Coordinate-conditioned patch geometry: T blocks, each predicting per-pixel offsets from the
/// previous crop. `deform_weights` and `uniform_weights` are declared by the reference but unused;
/// they are kept so that state dicts keep the same names.
#[derive(Debug)]
pub struct Ccpg {
    pub blocks: Vec<Mlp>,
}

#[derive(Debug)]
pub struct LofiNet {
    pub config: LofiConfig,
    /// (N, M, 2) base offsets ((1, N, M, 2) for the square geometry, as in the reference).
    pub patch: Tensor,
    /// (1,) receptive-field scale.
    pub patch_scale: Tensor,
    /// (1, c_f, S+10, S+10, 2) complex filter as (re, im).
    pub filter: Option<Tensor>,
    pub network: PixelNetwork,
    pub ccpg: Option<Ccpg>,
    /// INR-LoFi coordinate transform (2 -> 2).
    pub inr: Option<Mlp>,
    /// The work per pixel before zero units were added ([`LofiNet::pad_widths`]): what
    /// [`flops_per_pixel`](LofiNet::flops_per_pixel) reports, since the zeros compute nothing.
    pub unpadded_flops: Option<f64>,
}

impl LofiNet {
    /// Builds the network, declaring every parameter (in the reference's `state_dict` order)
    /// with the builder, which initialises them or takes them from a file.
    pub fn build(cfg: &LofiConfig, p: &mut ParamBuilder) -> Result<LofiNet> {
        cfg.validate()?;
        let (n, m) = (cfg.n, cfg.m);
        let features = cfg.network_channels() * n * m;

        let ccpg = if cfg.ccpg {
            let blocks = (0..cfg.n_deform)
                .map(|t| {
                    Mlp::new(
                        p,
                        &format!("MLP_deforms.{t}"),
                        features,
                        2 * n * m,
                        cfg.aux_layers,
                        cfg.ccpg_hidden_dim,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let _ = p.param("deform_weights", &[cfg.n_deform], Init::Const(0.0))?;
            let _ = p.param("uniform_weights", &[cfg.n_deform], Init::Const(1.0))?;
            Some(Ccpg { blocks })
        } else {
            None
        };
        let inr = if cfg.coord_deform {
            Some(Mlp::new(p, "INR", 2, 2, cfg.aux_layers, cfg.inr_hidden_dim)?)
        } else {
            None
        };
        let network = match cfg.network {
            Network::MultiMLP => {
                let mlps = (0..m)
                    .map(|i| {
                        Mlp::new(
                            p,
                            &format!("MLP.{i}"),
                            features / m,
                            cfg.angle_features,
                            cfg.num_layers,
                            cfg.hidden_dim,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mixer = Mlp::new(
                    p,
                    "mixer_MLP",
                    cfg.angle_features * m,
                    cfg.c_out,
                    cfg.num_layers,
                    cfg.hidden_dim,
                )?;
                PixelNetwork::MultiMlp { per_angle: MlpBank::new(mlps), mixer }
            }
            Network::MLP => {
                PixelNetwork::Mlp(Mlp::new(p, "MLP", features, cfg.c_out, cfg.num_layers, cfg.hidden_dim)?)
            }
        };
        let filter = if cfg.fourier_filtering {
            let size = cfg.filter_size();
            let shape = [1, cfg.filter_channels(), size, size, 2];
            // Initialised to 1 + 0i: the identity filter.
            let identity = move || {
                let re = Tensor::ones(&shape[..4], tch::kind::FLOAT_CPU);
                Tensor::stack(&[re.ones_like(), re.zeros_like()], 4)
            };
            Some(p.param("filter", &shape, Init::With(Box::new(identity)))?)
        } else {
            None
        };
        // The reference stores the square geometry with a leading axis of 1: (1, N, M, 2).
        let patch_dims: Vec<i64> =
            if cfg.patch_shape == PatchShape::Square { vec![1, n, m, 2] } else { vec![n, m, 2] };
        let (shape, s, dims) = (cfg.patch_shape, cfg.image_size, patch_dims.clone());
        let patch = p.param(
            "patch",
            &patch_dims,
            Init::With(Box::new(move || initial_patch(shape, n, m, s).view(&dims[..]))),
        )?;
        let patch_scale = p.param("patch_scale", &[1], Init::Const(cfg.recep_scale))?;
        Ok(LofiNet {
            config: cfg.clone(),
            patch,
            patch_scale,
            filter,
            network,
            ccpg,
            inr,
            unpadded_flops: None,
        })
    }

    /// A freshly initialised network on `device` (training, tests).
    pub fn init(cfg: &LofiConfig, device: tch::Device) -> Result<(LofiNet, ParamStore)> {
        let mut p = ParamBuilder::new(super::params::ParamSource::Init, device);
        let net = LofiNet::build(cfg, &mut p)?;
        Ok((net, p.finish()?))
    }

    /// Whole-image step: (B, C, H, W) -> (B, C', H, W) (the filter, when the model has one).
    pub fn prepare(&self, image: &Tensor) -> Result<Tensor> {
        let c = image.size()[1];
        if c != self.config.c_in {
            return Err(Error::invalid_input(format!(
                "the image has {c} channels, the model expects {}",
                self.config.c_in
            )));
        }
        Ok(match &self.filter {
            Some(filter) => apply_filter(&self.config, filter, image),
            None => image.shallow_clone(),
        })
    }

    /// Offsets of the shared geometry scaled for an input of size (H, W).
    fn scaled_offsets(&self, base: &Tensor, height: i64, width: i64) -> Tensor {
        let scale = resolution_scale(self.config.image_size, height, width, base.device());
        &self.patch_scale * base * scale
    }

    /// Pixel step: `prepared` (B, C', H, W) from [`prepare`](Self::prepare), `coords` (B, P, 2) in
    /// [-0.5, 0.5]; returns (B, P, c_out). For a model without noise-level input.
    pub fn forward_prepared(&self, prepared: &Tensor, coords: &Tensor) -> Tensor {
        self.forward_conditioned(prepared, coords, None)
    }

    /// As [`forward_prepared`](Self::forward_prepared), with the noise level of each of the B
    /// images, `noise_level` (B,) float32, for a noise-aware model (`config.noise_level`).
    ///
    /// # Panics
    /// If the model is noise-aware and `noise_level` is `None` (callers check with
    /// [`Model::check_noise_level`](crate::Model::check_noise_level) first).
    pub fn forward_conditioned(
        &self,
        prepared: &Tensor,
        coords: &Tensor,
        noise_level: Option<&Tensor>,
    ) -> Tensor {
        self.forward_with_patch(prepared, coords, noise_level, &self.patch)
    }

    /// As [`forward_conditioned`](Self::forward_conditioned), averaged over the elements of
    /// `ensemble` (the self-ensemble in sample space: see [`super::self_ensemble`]): one pass per
    /// element with the base offsets turned or mirrored, summed in float32. `Off` is one plain
    /// pass. Callers check the model with [`check_self_ensemble`](Self::check_self_ensemble).
    pub fn forward_ensemble(
        &self,
        prepared: &Tensor,
        coords: &Tensor,
        noise_level: Option<&Tensor>,
        ensemble: SelfEnsemble,
    ) -> Tensor {
        let elements = ensemble.elements();
        let mut sum = self.forward_conditioned(prepared, coords, noise_level);
        for t in &elements[1..] {
            sum += self.forward_with_patch(prepared, coords, noise_level, &t.apply(&self.patch));
        }
        if elements.len() > 1 {
            sum /= elements.len() as f64;
        }
        sum
    }

    /// Whether this model can average over `ensemble`: models whose geometry is shared by every
    /// pixel and without the Fourier filter (see [`super::self_ensemble`]).
    pub fn check_self_ensemble(&self, ensemble: SelfEnsemble) -> Result<()> {
        if ensemble == SelfEnsemble::Off {
            return Ok(());
        }
        let refused = if self.filter.is_some() {
            Some("a learned Fourier filter, which would have to turn with the image")
        } else if self.ccpg.is_some() {
            Some("CCPG geometry, predicted from the samples")
        } else if self.inr.is_some() {
            Some("an INR coordinate transform")
        } else {
            None
        };
        match refused {
            Some(why) => Err(Error::invalid_argument(format!(
                "a self-ensemble of {} passes needs a model without Fourier filter, CCPG or INR; this one has {why}",
                ensemble.passes()
            ))),
            None => Ok(()),
        }
    }

    /// The pixel step with the base offsets `patch` (the model's own, or a turn of them).
    fn forward_with_patch(
        &self,
        prepared: &Tensor,
        coords: &Tensor,
        noise_level: Option<&Tensor>,
        patch: &Tensor,
    ) -> Tensor {
        let cfg = &self.config;
        // The noise-level channel, appended to every crop: (B, 1, 1, 1, 1), broadcast below.
        let level = match (&cfg.noise_level, noise_level) {
            (Some(_), Some(s)) => Some(s.to_kind(Kind::Float).view([-1, 1, 1, 1, 1])),
            (Some(_), None) => panic!("a noise-aware model needs the noise level"),
            (None, _) => None,
        };
        // Where the level goes: into the per-angle MLPs' first-layer bias (see `folds_level`), or
        // into every crop as a constant channel.
        let (bias_level, crop_level) =
            if self.folds_level() { (level.as_ref(), None) } else { (None, level.as_ref()) };
        // Crops are laid out (B, C', M, P, N): see `sample_patches_by_angle`.
        let condition = |crop: Tensor| -> Tensor {
            match crop_level {
                Some(s) => {
                    let (b, _, m, p, n) = crop.size5().expect("crop is (B, C', M, P, N)");
                    Tensor::cat(&[crop, s.expand([b, 1, m, p, n], true)], 1)
                }
                None => crop,
            }
        };
        let (b, c, h, w) = prepared.size4().expect("prepared image is (B, C', H, W)");
        let c = c + i64::from(crop_level.is_some());
        let p = coords.size()[1];
        let (n, m) = (cfg.n, cfg.m);
        // Sampling is float32 whatever the networks' precision: a half-precision grid would put
        // samples up to several pixels off on large inputs (bfloat16 keeps 8 significant bits),
        // and a half-precision image would round the values sampled. Both casts are no-ops for
        // float32 inputs.
        let prepared = prepared.to_kind(Kind::Float);
        let coords = coords.to_kind(Kind::Float);

        let kind = self.network_kind();
        // INR-LoFi: sample around a learned transform of the target coordinate. Its output is a
        // coordinate, so it runs in its own precision (float32: `cast_networks` leaves it).
        let centre = match &self.inr {
            Some(inr) => inr.forward(&coords.to_kind(inr.kind())).to_kind(Kind::Float),
            None => coords,
        };
        let mut crop =
            condition(sample_patches_by_angle(&prepared, &centre, &self.scaled_offsets(patch, h, w)));
        if let Some(ccpg) = &self.ccpg {
            for block in &ccpg.blocks {
                // (B, C', M, P, N) -> (B, P, C' N M) in (C', N, M) order, as the reference flattens.
                let flat = crop.permute([0, 3, 1, 4, 2]).reshape([b, p, c * n * m]);
                let offsets = block.forward(&flat.to_kind(kind)).view([b, p, n, m, 2]);
                let offsets = self.scaled_offsets(&offsets.to_kind(Kind::Float), h, w);
                crop = condition(sample_patches_by_angle(&prepared, &centre, &offsets));
            }
        }

        // Only the MLPs run in the networks' precision: the float32 samples are cast here.
        let samples = crop.to_kind(kind);
        let out = match &self.network {
            PixelNetwork::MultiMlp { per_angle, mixer } => {
                // Angle m sees its samples flattened in (C', N) order: (M, B P, C' N); a view for
                // one image of one channel.
                let chunks = samples.permute([2, 0, 3, 1, 4]).reshape([m, b * p, c * n]);
                let features = match bias_level {
                    Some(s) => per_angle.forward_concat_with_constant(&chunks, s, n),
                    None => per_angle.forward_concat(&chunks),
                };
                mixer.forward(&features) // (B P, M F) -> (B P, c_out)
            }
            PixelNetwork::Mlp(mlp) => {
                mlp.forward(&samples.permute([0, 3, 1, 4, 2]).reshape([b * p, c * n * m]))
            }
        };
        let out = out.view([b, p, cfg.c_out]).to_kind(Kind::Float);
        if cfg.residual_learning {
            let (ci, cj) = cfg.patch_shape.centre(n, m);
            // The centre sample of the first c_out channels (Re(filtered) with the filter on).
            let mid = crop.narrow(1, 0, cfg.c_out).select(4, ci).select(2, cj).permute([0, 2, 1]);
            mid - out
        } else {
            out
        }
    }

    /// Whether a noise-aware model adds its level through the per-angle MLPs' first-layer bias
    /// (`MlpBank::forward_concat_with_constant`) rather than as a constant channel of every crop:
    /// a MultiMLP's N columns of the level contribute level x the sum of their weights, so the
    /// crop need not be widened and copied. CCPG blocks and the plain MLP take it in the crop.
    fn folds_level(&self) -> bool {
        self.config.noise_level.is_some()
            && self.ccpg.is_none()
            && matches!(self.network, PixelNetwork::MultiMlp { .. })
    }

    /// Floating-point operations of the matrix products for one output pixel (2 per
    /// multiply-add of every Linear layer: per-angle MLPs, mixer or MLP, CCPG blocks, INR). The
    /// sampling and the filter are not counted: they are a few per cent at most.
    pub fn flops_per_pixel(&self) -> f64 {
        if let Some(flops) = self.unpadded_flops {
            return flops;
        }
        let mlp = |m: &Mlp| m.layers.iter().map(|(w, _)| 2.0 * w.numel() as f64).sum::<f64>();
        let network = match &self.network {
            PixelNetwork::MultiMlp { per_angle, mixer } => {
                // The noise level's N columns are not multiplied when folded into the bias.
                let hidden = per_angle.mlps[0].layers[0].0.size()[0] as f64;
                let folded = if self.folds_level() {
                    2.0 * hidden * self.config.n as f64 * per_angle.mlps.len() as f64
                } else {
                    0.0
                };
                per_angle.mlps.iter().map(mlp).sum::<f64>() + mlp(mixer) - folded
            }
            PixelNetwork::Mlp(m) => mlp(m),
        };
        let ccpg = self.ccpg.as_ref().map_or(0.0, |c| c.blocks.iter().map(mlp).sum());
        network + ccpg + self.inr.as_ref().map_or(0.0, mlp)
    }

    /// Kind of the network weights (float32, or a half precision for inference).
    pub fn network_kind(&self) -> Kind {
        match &self.network {
            PixelNetwork::MultiMlp { mixer, .. } => mixer.layers[0].0.kind(),
            PixelNetwork::Mlp(mlp) => mlp.layers[0].0.kind(),
        }
    }

    /// The same network for inference with each per-angle MLP's last layer folded into the
    /// mixer's first, where that takes fewer multiply-adds; `None` where it would not, or where
    /// the network is no MultiMLP with hidden layers (or is folded already).
    ///
    /// Nothing lies between those two layers: angle m's outputs y_m = W_m h_m + b_m (h_m its last
    /// hidden layer, after ReLU) are concatenated, and the mixer's first layer computes
    /// A [y_0; ...; y_{M-1}] + a = sum_m (A_m W_m) h_m + (a + sum_m A_m b_m), with A_m the mixer's
    /// columns that take y_m. So one product of width M H_a (H_a: the per-angle hidden width)
    /// replaces M products H_a -> F and one of width M F (F: the angle features): per pixel
    /// H M H_a multiply-adds instead of M F (H_a + H), H the mixer's width. That pays when
    /// H H_a < F (H_a + H): for the shipped denoiser (H = H_a = 128, F = 100) the network's work
    /// drops by 14 %; the paper-size model (H = H_a = 370) would do more and is left as stored.
    /// The composed weights are computed in float64 and rounded once: the output equals the
    /// stored network's up to float rounding, not bit for bit.
    pub fn fold_layers(&self) -> Option<LofiNet> {
        let PixelNetwork::MultiMlp { per_angle, mixer } = &self.network else { return None };
        let first = per_angle.mlps.first()?;
        if first.layers.len() < 2 || first.relu_last || mixer.layers.is_empty() {
            return None;
        }
        let angles = per_angle.mlps.len() as i64;
        let (last, _) = first.layers.last()?;
        let (features, hidden_in) = (last.size()[0], last.size()[1]);
        let (a, a_bias) = &mixer.layers[0];
        let hidden_out = a.size()[0];
        if hidden_out * angles * hidden_in >= angles * features * (hidden_in + hidden_out) {
            return None;
        }
        let _guard = tch::no_grad_guard();
        let a64 = a.to_kind(Kind::Double);
        let mut bias = a_bias.to_kind(Kind::Double);
        let mut blocks = Vec::with_capacity(per_angle.mlps.len());
        for (m, mlp) in per_angle.mlps.iter().enumerate() {
            let (w, b) = mlp.layers.last()?;
            let a_m = a64.narrow(1, m as i64 * features, features); // (H, F)
            blocks.push(a_m.matmul(&w.to_kind(Kind::Double))); // (H, H_a)
            bias += a_m.mv(&b.to_kind(Kind::Double));
        }
        let folded_first = (Tensor::cat(&blocks, 1).to_kind(a.kind()), bias.to_kind(a_bias.kind()));
        let per_angle = MlpBank::new(
            per_angle
                .mlps
                .iter()
                .map(|mlp| Mlp::sharing(&mlp.layers[..mlp.layers.len() - 1], true))
                .collect(),
        );
        let mut mixer = Mlp::sharing(&mixer.layers[1..], mixer.relu_last);
        mixer.layers.insert(0, folded_first);
        Some(self.with_networks(
            PixelNetwork::MultiMlp { per_angle, mixer },
            self.ccpg.as_ref().map(|c| Ccpg { blocks: c.blocks.iter().map(Mlp::shallow_clone).collect() }),
            self.inr.as_ref().map(Mlp::shallow_clone),
        ))
    }

    /// The same function with the pixel MLPs' hidden widths, and a MultiMLP's per-angle outputs,
    /// rounded up to multiples of `multiple` by units of zero weight (see
    /// [`Mlp::with_padded_widths`]; the mixer takes each angle's outputs at the padded stride).
    /// `None` where every width is a multiple already.
    ///
    /// Why: cuBLAS runs half-precision products on the tensor cores' fast kernels only when each
    /// matrix's leading dimension is a multiple of 16 bytes (8 halves; 4 floats for TF32). The
    /// paper's widths (370 hidden, 100 features per angle) are not, and neither are the rows of
    /// the activations between layers; the padded network does 2-4 % more multiply-adds (zeros)
    /// in aligned kernels. The first layer's inputs (C' N samples per angle) stay as they are: that
    /// product is thin and bound by memory. Outputs equal the stored network's up to the order of
    /// the sums (the added terms are exact zeros).
    pub fn pad_widths(&self, multiple: i64) -> Option<LofiNet> {
        let hidden_aligned = |mlp: &Mlp, with_output: bool| {
            let last = mlp.layers.len() - 1;
            mlp.layers
                .iter()
                .enumerate()
                .all(|(k, (w, _))| (k == last && !with_output) || w.size()[0] % multiple == 0)
        };
        let _guard = tch::no_grad_guard();
        let network = match &self.network {
            PixelNetwork::MultiMlp { per_angle, mixer } => {
                let first = per_angle.mlps.first()?;
                let features = first.layers.last()?.0.size()[0];
                if hidden_aligned(first, true) && hidden_aligned(mixer, false) {
                    return None;
                }
                let angles = per_angle.mlps.len() as i64;
                PixelNetwork::MultiMlp {
                    per_angle: MlpBank::new(
                        per_angle.mlps.iter().map(|mlp| mlp.with_padded_widths(multiple, true)).collect(),
                    ),
                    mixer: mixer
                        .with_spread_input(angles, features, round_up(features, multiple))
                        .with_padded_widths(multiple, false),
                }
            }
            PixelNetwork::Mlp(mlp) => {
                if hidden_aligned(mlp, false) {
                    return None;
                }
                PixelNetwork::Mlp(mlp.with_padded_widths(multiple, false))
            }
        };
        let mut padded = self.with_networks(
            network,
            self.ccpg.as_ref().map(|c| Ccpg { blocks: c.blocks.iter().map(Mlp::shallow_clone).collect() }),
            self.inr.as_ref().map(Mlp::shallow_clone),
        );
        padded.unpadded_flops = Some(self.flops_per_pixel());
        Some(padded)
    }

    /// This network's geometry and filter (shared) with other MLPs: folded or cast ones.
    fn with_networks(&self, network: PixelNetwork, ccpg: Option<Ccpg>, inr: Option<Mlp>) -> LofiNet {
        LofiNet {
            config: self.config.clone(),
            patch: self.patch.shallow_clone(),
            patch_scale: self.patch_scale.shallow_clone(),
            filter: self.filter.as_ref().map(Tensor::shallow_clone),
            network,
            ccpg,
            inr,
            unpadded_flops: None,
        }
    }

    /// The same model with its pixel MLPs (MultiMLP or MLP, and the CCPG blocks, whose offsets are
    /// relative) cast to `kind`; geometry, filter and the INR coordinate transform stay float32.
    /// The casts are differentiable: mixed-precision training runs a cast of its float32
    /// parameters every step and the gradients reach them.
    pub fn cast_networks(&self, kind: Kind) -> LofiNet {
        let network = match &self.network {
            PixelNetwork::MultiMlp { per_angle, mixer } => PixelNetwork::MultiMlp {
                per_angle: MlpBank::new(per_angle.mlps.iter().map(|m| m.to_kind(kind)).collect()),
                mixer: mixer.to_kind(kind),
            },
            PixelNetwork::Mlp(mlp) => PixelNetwork::Mlp(mlp.to_kind(kind)),
        };
        self.with_networks(
            network,
            self.ccpg.as_ref().map(|c| Ccpg { blocks: c.blocks.iter().map(|b| b.to_kind(kind)).collect() }),
            self.inr.as_ref().map(|m| m.to_kind(Kind::Float)),
        )
    }

    /// The reference's `forward(coordinate, x)`: `image` (B, C, H, W), `coords` (B, P, 2).
    pub fn forward(&self, coords: &Tensor, image: &Tensor) -> Result<Tensor> {
        let prepared = self.prepare(image)?;
        Ok(self.forward_prepared(&prepared, coords))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NoiseLevelInput;
    use tch::Device;

    /// A small MultiMLP of `hidden` units and `features` per angle, with trained-looking (random)
    /// weights: gray, 5 rings x 4 angles.
    fn multi_mlp(hidden: i64, features: i64, layers: i64, noise_aware: bool, filter: bool) -> LofiNet {
        let cfg = LofiConfig {
            image_size: 24,
            c_in: 1,
            c_out: 1,
            network: Network::MultiMLP,
            hidden_dim: hidden,
            num_layers: layers,
            n: 5,
            m: 4,
            angle_features: features,
            fourier_filtering: filter,
            residual_learning: true,
            noise_level: noise_aware.then_some(NoiseLevelInput { sigma_min: 0.0, sigma_max: 0.2 }),
            ..Default::default()
        };
        tch::manual_seed(11);
        LofiNet::init(&cfg, Device::Cpu).unwrap().0
    }

    fn pixels(net: &LofiNet, image: &Tensor, coords: &Tensor, level: Option<&Tensor>) -> Tensor {
        tch::no_grad(|| net.forward_conditioned(&net.prepare(image).unwrap(), coords, level))
    }

    /// Two random 24^2 images, 300 random points in each, and a noise level for each.
    fn inputs() -> (Tensor, Tensor, Tensor) {
        let image = Tensor::rand([2, 1, 24, 24], (Kind::Float, Device::Cpu));
        let coords = Tensor::rand([2, 300, 2], (Kind::Float, Device::Cpu)) - 0.5;
        (image, coords, Tensor::from_slice(&[0.05f32, 0.15]))
    }

    /// `got` equals `want` up to float32 rounding (2e-6 of the largest value, or absolute below 1).
    fn assert_same_values(got: &Tensor, want: &Tensor, what: &str) {
        let scale = want.abs().max().double_value(&[]);
        let diff = (got - want).abs().max().double_value(&[]);
        assert!(diff <= 2e-6 * scale.max(1.0), "{what} differs by {diff} (scale {scale})");
    }

    /// The folded network computes the stored one's values (up to float rounding), with and
    /// without the noise level and the Fourier filter, in float32 and (cast after folding) in
    /// bfloat16 where this CPU has it; and it does the work it promises: H M H_a multiply-adds in
    /// the mixer's first layer, the per-angle MLPs one layer shorter.
    #[test]
    fn folding_the_last_per_angle_layer_into_the_mixer_keeps_the_values() {
        tch::manual_seed(3);
        let (image, coords, level) = inputs();
        for (noise_aware, filter, layers) in
            [(false, false, 3), (true, false, 3), (false, true, 2), (true, false, 1)]
        {
            let net = multi_mlp(16, 12, layers, noise_aware, filter);
            let folded = net.fold_layers().expect("16 x 16 < 12 x (16 + 16): folding pays");
            let level = noise_aware.then_some(&level);
            let want = pixels(&net, &image, &coords, level);
            let got = pixels(&folded, &image, &coords, level);
            assert_same_values(&got, &want, "folded");

            let PixelNetwork::MultiMlp { per_angle, mixer } = &folded.network else { unreachable!() };
            assert_eq!(per_angle.mlps[0].layers.len() as i64, layers);
            assert!(per_angle.mlps.iter().all(|m| m.relu_last));
            assert_eq!(mixer.layers[0].0.size(), vec![16, 4 * 16]);
            let stored_flops = net.flops_per_pixel();
            let saved = 2.0 * 4.0 * (16.0 * 12.0 + 12.0 * 16.0 - 16.0 * 16.0);
            assert_eq!(folded.flops_per_pixel(), stored_flops - saved);
            assert!(folded.fold_layers().is_none(), "a folded network is not folded twice");

            if crate::device::Precision::BF16.check_cpu(crate::device::CpuFeatures::detect()).is_ok() {
                let half = pixels(&folded.cast_networks(Kind::BFloat16), &image, &coords, level);
                let stored_half = pixels(&net.cast_networks(Kind::BFloat16), &image, &coords, level);
                let err = |x: &Tensor| (x - &want).square().mean(Kind::Float).sqrt().double_value(&[]);
                assert!(
                    err(&half) <= 2.0 * err(&stored_half) + 1e-4,
                    "folded bf16 RMS error {} against the stored network's {}",
                    err(&half),
                    err(&stored_half)
                );
            }
        }
    }

    /// Zero units padding the hidden widths and the per-angle outputs to multiples of 8 (what
    /// CUDA loads run) keep the values, stored and folded, with and without the noise level and
    /// the filter, for a MultiMLP and a plain MLP; the work reported stays the unpadded network's;
    /// widths that are multiples already are left alone.
    #[test]
    fn padding_widths_with_zero_units_keeps_the_values() {
        tch::manual_seed(4);
        let (image, coords, level) = inputs();
        let mlp_cfg = LofiConfig {
            network: Network::MLP,
            c_in: 1,
            c_out: 1,
            hidden_dim: 13,
            n: 5,
            m: 4,
            image_size: 24,
            ..Default::default()
        };
        let plain = LofiNet::init(&mlp_cfg, Device::Cpu).unwrap().0;
        let mut nets = vec![(plain, false)];
        for (noise_aware, filter, layers) in
            [(false, false, 3), (true, false, 3), (false, true, 2), (true, false, 1)]
        {
            let net = multi_mlp(13, 10, layers, noise_aware, filter);
            nets.push((net.fold_layers().expect("folding pays"), noise_aware));
            nets.push((net, noise_aware));
        }
        for (net, noise_aware) in &nets {
            let padded = net.pad_widths(8).expect("13 and 10 are no multiples of 8");
            let level = noise_aware.then_some(&level);
            let want = pixels(net, &image, &coords, level);
            let got = pixels(&padded, &image, &coords, level);
            assert_same_values(&got, &want, "padded");
            assert_eq!(padded.flops_per_pixel(), net.flops_per_pixel());
            let widths = |net: &LofiNet| match &net.network {
                PixelNetwork::MultiMlp { per_angle, mixer } => per_angle.mlps[0]
                    .layers
                    .iter()
                    .chain(&mixer.layers)
                    .map(|(w, _)| w.size())
                    .collect::<Vec<_>>(),
                PixelNetwork::Mlp(mlp) => mlp.layers.iter().map(|(w, _)| w.size()).collect(),
            };
            let (stored, wide) = (widths(net), widths(&padded));
            let last = wide.len() - 1;
            for (k, (a, b)) in stored.iter().zip(&wide).enumerate() {
                assert!(b[0] % 8 == 0 || k == last, "layer {k}: {b:?}");
                assert!(b[0] >= a[0] && b[1] >= a[1] && b[0] - a[0] < 8, "layer {k}: {a:?} -> {b:?}");
            }
            assert_eq!(wide[last][0], 1, "the output stays c_out wide");
            assert!(padded.pad_widths(8).is_none(), "a padded network needs no more padding");
        }
        assert!(multi_mlp(16, 8, 2, false, false).pad_widths(8).is_none());
    }

    /// Networks where folding would cost work, or that have nothing to fold, stay as stored.
    #[test]
    fn folding_is_left_out_where_it_does_not_pay() {
        // H H_a = 40^2 = 1600 >= F (H_a + H) = 12 x 80 = 960: the paper-size model's case.
        assert!(multi_mlp(40, 12, 3, false, false).fold_layers().is_none());
        // No hidden layer: the per-angle MLPs are their last layer.
        assert!(multi_mlp(16, 12, 0, false, false).fold_layers().is_none());
        let cfg = LofiConfig {
            network: Network::MLP,
            c_in: 1,
            c_out: 1,
            hidden_dim: 8,
            n: 5,
            m: 4,
            ..Default::default()
        };
        assert!(LofiNet::init(&cfg, Device::Cpu).unwrap().0.fold_layers().is_none());
    }
}
