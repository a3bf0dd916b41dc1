//! Adam (Kingma and Ba), written on tensors so that its state can be saved and restored exactly.
//!
//! The update is torch.optim.Adam's default (no AMSGrad, no weight decay), in the same order of
//! operations:
//!
//! ```text
//! t += 1
//! m = lerp(m, g, 1 - beta1)                 (m + (1 - beta1) (g - m))
//! v = beta2 v + (1 - beta2) g g
//! denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//! p = p - (lr / (1 - beta1^t)) m / denom
//! ```
//!
//! The trainable parameters are views into one flat buffer ([`flatten`]), so a step is a dozen
//! element-wise kernels over that buffer rather than a dozen per parameter (hundreds of kernel
//! launches per step on a GPU otherwise); element-wise arithmetic gives the same values either
//! way. Gradients are computed with `run_backward` (nothing accumulates in `.grad`, so there is
//! nothing to zero). A parameter the loss does not reach (the reference's unused CCPG weights)
//! gets a zero gradient: its moments stay zero and its value never changes, as with torch, which
//! skips it. The complex filter is stored as real (..., 2) pairs, on which this is exactly torch's
//! complex Adam (torch runs complex parameters through `view_as_real`).

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use tch::{Device, Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamSettings {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// One trainable parameter: its place in the flat buffer, and the zeros that fill the gap to
/// the next one in the flat gradient.
struct Slot {
    name: String,
    shape: Vec<i64>,
    offset: i64,
    numel: i64,
    gap: Option<Tensor>,
}

/// Every parameter starts at a multiple of this many elements of the flat buffer (64 bytes:
/// aligned loads, and the even offset `view_as_complex` needs for the filter).
const ALIGN: i64 = 16;

fn aligned(n: i64) -> i64 {
    (n + ALIGN - 1) / ALIGN * ALIGN
}

/// The trainable parameters as views of one flat float32 buffer on `device`: returns the buffer
/// and the views (by name, in the order given). Values are copied from `tensors`.
pub fn flatten(tensors: &[(String, Tensor)], device: Device) -> (Tensor, Vec<(String, Tensor)>) {
    let total: i64 = tensors.iter().map(|(_, t)| aligned(t.numel() as i64)).sum();
    let flat = Tensor::zeros([total], (Kind::Float, device));
    let mut views = Vec::new();
    let mut offset = 0;
    tch::no_grad(|| {
        for (name, t) in tensors {
            let n = t.numel() as i64;
            let mut view = flat.narrow(0, offset, n).view(t.size().as_slice());
            view.copy_(&t.to_kind(Kind::Float).to_device(device));
            views.push((name.clone(), view));
            offset += aligned(n);
        }
    });
    (flat, views)
}

pub struct Adam {
    pub settings: AdamSettings,
    slots: Vec<Slot>,
    /// The parameters (views of `flat`), requiring gradients.
    params: Vec<Tensor>,
    flat: Tensor,
    m: Tensor,
    v: Tensor,
    step: u64,
}

impl Adam {
    /// Adam over `flat`, whose views `params` are the trainable parameters (from [`flatten`]);
    /// gradients are switched on for each.
    pub fn new(flat: &Tensor, params: &[(String, Tensor)], settings: AdamSettings) -> Adam {
        let mut slots = Vec::new();
        let mut offset = 0;
        for (name, p) in params {
            let numel = p.numel() as i64;
            let gap = (aligned(numel) > numel)
                .then(|| Tensor::zeros([aligned(numel) - numel], (Kind::Float, p.device())));
            slots.push(Slot { name: name.clone(), shape: p.size(), offset, numel, gap });
            offset += aligned(numel);
        }
        let params = params.iter().map(|(_, p)| p.set_requires_grad(true)).collect();
        Adam {
            settings,
            slots,
            params,
            flat: flat.shallow_clone(),
            m: flat.zeros_like(),
            v: flat.zeros_like(),
            step: 0,
        }
    }

    /// Gradients of `loss` with respect to every parameter, in order (undefined for a parameter
    /// the loss does not reach).
    pub fn gradients(&self, loss: &Tensor) -> Vec<Tensor> {
        if self.params.is_empty() {
            return Vec::new();
        }
        Tensor::run_backward(&[loss], &self.params, false, false)
    }

    /// Names of the parameters whose gradient in `grads` is missing or entirely zero.
    pub fn without_gradient(&self, grads: &[Tensor]) -> Vec<String> {
        self.slots
            .iter()
            .zip(grads)
            .filter(|(_, g)| !g.defined() || g.abs().max().double_value(&[]) == 0.0)
            .map(|(s, _)| s.name.clone())
            .collect()
    }

    /// One update with the gradients from [`gradients`](Self::gradients), at learning rate `lr`
    /// (the schedule's value for this step; `settings.lr` for a constant one).
    pub fn apply(&mut self, grads: Vec<Tensor>, lr: f64) {
        if self.params.is_empty() {
            return;
        }
        let AdamSettings { beta1, beta2, eps, .. } = self.settings;
        tch::no_grad(|| {
            let mut pieces: Vec<Tensor> = Vec::with_capacity(2 * grads.len());
            for ((g, p), slot) in grads.iter().zip(&self.params).zip(&self.slots) {
                pieces.push(if g.defined() { g.reshape([-1]) } else { p.zeros_like().reshape([-1]) });
                if let Some(gap) = &slot.gap {
                    pieces.push(gap.shallow_clone());
                }
            }
            let g = Tensor::cat(&pieces, 0);
            self.step += 1;
            let t = self.step as i32;
            let _ = self.m.lerp_(&g, 1.0 - beta1);
            let _ = self.v.g_mul_scalar_(beta2);
            let _ = self.v.addcmul_(&(&g * (1.0 - beta2)), &g);
            let bias1 = 1.0 - beta1.powi(t);
            let bias2_sqrt = (1.0 - beta2.powi(t)).sqrt();
            let denom = self.v.sqrt() / bias2_sqrt + eps;
            let update = (&self.m * (-lr / bias1)) / denom;
            let _ = self.flat.g_add_(&update);
        });
    }

    /// Gradients of `loss`, then one update at the base learning rate.
    pub fn step(&mut self, loss: &Tensor) {
        let grads = self.gradients(loss);
        self.apply(grads, self.settings.lr);
    }

    /// Step count of every parameter, by name (they all step together).
    pub fn steps(&self) -> BTreeMap<String, u64> {
        self.slots.iter().map(|s| (s.name.clone(), self.step)).collect()
    }

    fn piece(&self, t: &Tensor, s: &Slot) -> Tensor {
        t.narrow(0, s.offset, s.numel).view(s.shape.as_slice())
    }

    /// The moments as a safetensors file (`m.<name>`, `v.<name>`, float32).
    pub fn state_bytes(&self) -> Result<Vec<u8>> {
        let mut host = Vec::new();
        for s in &self.slots {
            for (prefix, t) in [("m", &self.m), ("v", &self.v)] {
                let t = self.piece(t, s).to_device(Device::Cpu).contiguous();
                let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
                let mut data = vec![0u8; t.numel() * 4];
                t.copy_data_u8(&mut data, t.numel());
                host.push((format!("{prefix}.{}", s.name), shape, data));
            }
        }
        let views = host
            .iter()
            .map(|(n, shape, data)| Ok((n.clone(), TensorView::new(Dtype::F32, shape.clone(), data)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| anyhow::anyhow!("optimizer state: {e}"))?;
        let meta: HashMap<String, String> = [("format".to_string(), "lofi-adam".to_string())].into();
        safetensors::tensor::serialize(views, &Some(meta))
            .map_err(|e| anyhow::anyhow!("optimizer state: {e}"))
    }

    /// Restores the moments (from [`state_bytes`](Self::state_bytes)) and the step count.
    pub fn load_state(&mut self, bytes: &[u8], steps: &BTreeMap<String, u64>) -> Result<()> {
        let (mut tensors, _) = lofi::model_file::read_tensors(bytes, false).context("optimizer state")?;
        let mut step = None;
        for s in &self.slots {
            for (prefix, target) in [("m", &self.m), ("v", &self.v)] {
                let key = format!("{prefix}.{}", s.name);
                let t = tensors.remove(&key).with_context(|| format!("optimizer state has no '{key}'"))?;
                if t.size() != s.shape {
                    bail!("optimizer state '{key}' has shape {:?}, the model needs {:?}", t.size(), s.shape);
                }
                tch::no_grad(|| self.piece(target, s).copy_(&t.to_device(target.device())));
            }
            let n = *steps
                .get(&s.name)
                .with_context(|| format!("optimizer state has no step for '{}'", s.name))?;
            if step.is_some_and(|k| k != n) {
                bail!("optimizer state: parameters at different step counts");
            }
            step = Some(n);
        }
        if let Some(extra) = tensors.keys().next() {
            bail!("optimizer state has '{extra}', which the model does not");
        }
        self.step = step.unwrap_or(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps on f(p, q) = sum(c p^2) + 0 q (q unused) against values computed by hand with
    /// torch's formulas.
    #[test]
    fn matches_the_reference_update() {
        let settings = AdamSettings { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
        let p0 = [1.0f64, -2.0, 0.5];
        let c = [1.0f64, 3.0, -0.5];
        let init = vec![
            ("p".to_string(), Tensor::from_slice(&p0.map(|x| x as f32))),
            ("q".to_string(), Tensor::from_slice(&[4.0f32, 5.0])),
        ];
        let (flat, views) = flatten(&init, Device::Cpu);
        let mut adam = Adam::new(&flat, &views, settings);
        let p = views[0].1.shallow_clone();
        let coef = Tensor::from_slice(&c.map(|x| x as f32));
        let (mut q, mut m, mut v) = (p0, [0.0; 3], [0.0; 3]);
        for t in 1..=2 {
            let grads = adam.gradients(&(&coef * &p * &p).sum(Kind::Float));
            assert_eq!(adam.without_gradient(&grads), vec!["q".to_string()]);
            adam.apply(grads, 0.1);
            for i in 0..3 {
                let g = 2.0 * c[i] * q[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let denom = (v[i] / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8;
                q[i] -= 0.1 / (1.0 - 0.9f64.powi(t)) * m[i] / denom;
            }
        }
        let got: Vec<f32> = Vec::try_from(p.detach()).unwrap();
        for i in 0..3 {
            assert!((got[i] as f64 - q[i]).abs() < 1e-6, "{got:?} vs {q:?}");
        }
        let unused: Vec<f32> = Vec::try_from(views[1].1.detach()).unwrap();
        assert_eq!(unused, vec![4.0, 5.0]);
        // State round trip.
        let bytes = adam.state_bytes().unwrap();
        let (flat2, views2) = flatten(&init, Device::Cpu);
        let mut other = Adam::new(&flat2, &views2, settings);
        other.load_state(&bytes, &adam.steps()).unwrap();
        assert!(other.m.equal(&adam.m) && other.v.equal(&adam.v) && other.step == 2);
    }
}
