//! The inverse problems: how an observation (the network's input) and a target are made from a
//! source object.
//!
//! * `denoise`: y = x + sigma n; source = target = x (c_in = c_out).
//! * `transpose`: y = x, target = x^T (INR-LoFi's toy task; c_in = c_out).
//! * `paired`: observation and target are both given (files).
//! * `ldct`: y = FBP(R x + n), parallel beam, `angles` over [0, 180), n Gaussian at `snr_db`
//!   relative to the sinogram's RMS (`lofi::operators::radon`); target x.
//! * `lensing`: y = (Re, Im) of Kaiser-Squires(shear(kappa) + n), n complex Gaussian with the
//!   shape noise of `n_gal` galaxies per arcmin^2 over a `theta_deg` field whose side is the
//!   map's width (`lofi::operators::lensing`); target kappa.
//!
//! Training observations are drawn on the training device with libtorch's generator, seeded per
//! step by the caller; test observations are drawn on the CPU from a seed, so that a test set is
//! the same on every device and in every run.

use anyhow::{bail, Result};
use lofi::config::LofiConfig;
use tch::{Device, Kind, Tensor};

use super::config::{NoiseMode, TaskConfig, TaskKind};

pub struct Task {
    pub cfg: TaskConfig,
    pub c_in: i64,
    pub c_out: i64,
    /// Noise-level-aware denoising: sigma is drawn per object, uniformly in this range, and
    /// handed to the network with the observation.
    pub sigma_range: Option<(f64, f64)>,
}

impl Task {
    /// The task for a model, checking that the model's channels fit it.
    pub fn new(cfg: &TaskConfig, model: &LofiConfig) -> Result<Task> {
        let (c_in, c_out) = (model.c_in, model.c_out);
        let need = |ci: i64, co: i64| -> Result<()> {
            if (c_in, c_out) != (ci, co) {
                bail!("task {} needs model.c_in = {ci} and model.c_out = {co} (the model has {c_in} and {c_out})", cfg.kind);
            }
            Ok(())
        };
        match cfg.kind {
            TaskKind::Denoise | TaskKind::Transpose => {
                if c_in != c_out {
                    bail!(
                        "task {} needs model.c_in = model.c_out (the model has {c_in} and {c_out})",
                        cfg.kind
                    );
                }
            }
            TaskKind::Paired => {}
            TaskKind::Ldct => need(1, 1)?,
            TaskKind::Lensing => need(2, 1)?,
        }
        if !(cfg.snr_db.is_finite() && cfg.n_gal > 0.0 && cfg.theta_deg > 0.0) {
            bail!("task.snr_db must be finite, task.n_gal and task.theta_deg positive");
        }
        let sigma_range = model.noise_level.map(|r| (r.sigma_min, r.sigma_max));
        if sigma_range.is_some() {
            if cfg.kind != TaskKind::Denoise {
                bail!("model.noise_level (a noise-level input) needs task.kind = \"denoise\"");
            }
            if cfg.noise == NoiseMode::Fixed {
                bail!("model.noise_level draws sigma per object at every step: use task.noise = \"step\" or \"batch\"");
            }
        }
        Ok(Task { cfg: cfg.clone(), c_in, c_out, sigma_range })
    }

    pub fn kind(&self) -> TaskKind {
        self.cfg.kind
    }

    /// Channels of the source objects read from files (the targets).
    pub fn source_channels(&self) -> i64 {
        self.c_out
    }

    /// Whether training observations are computed once, when the data are loaded (they are then
    /// stored next to the sources), rather than drawn afresh for every batch.
    pub fn fixed_observations(&self) -> bool {
        match self.cfg.kind {
            TaskKind::Denoise | TaskKind::Ldct | TaskKind::Lensing => self.cfg.noise == NoiseMode::Fixed,
            TaskKind::Transpose => false,
            TaskKind::Paired => true,
        }
    }

    /// The target of a source (B, C, H, W).
    pub fn target(&self, source: &Tensor) -> Tensor {
        match self.cfg.kind {
            TaskKind::Transpose => source.transpose(2, 3),
            _ => source.shallow_clone(),
        }
    }

    /// An observation of `source` (B, C, H, W), on its device; random draws use libtorch's global
    /// generator, which the caller seeds.
    pub fn observe(&self, source: &Tensor) -> Result<Tensor> {
        Ok(match self.cfg.kind {
            TaskKind::Denoise => source + source.randn_like() * self.cfg.sigma,
            TaskKind::Transpose => source.shallow_clone(),
            TaskKind::Paired => bail!("paired data come with their observations"),
            TaskKind::Ldct => {
                let (_, _, h, w) = source.size4()?;
                let radon = lofi::operators::radon::Radon::uniform(h, w, self.cfg.angles)?;
                let sinogram = radon.forward(source)?;
                let sigma = lofi::operators::radon::snr_noise_sigma(&sinogram, self.cfg.snr_db);
                let noisy = &sinogram + sinogram.randn_like() * sigma.view([-1, 1, 1, 1]);
                radon.fbp(&noisy)?.to_kind(Kind::Float)
            }
            TaskKind::Lensing => {
                use lofi::operators::lensing;
                let width = source.size()[3];
                let gamma = lensing::shear(source)?;
                let sigma = lensing::shape_noise_sigma(width, self.cfg.theta_deg, self.cfg.n_gal);
                let noisy = &gamma + gamma.randn_like() * sigma;
                lensing::kaiser_squires(&noisy)?.to_kind(Kind::Float)
            }
        })
    }

    /// Observations of many sources (N, C, S, S), in chunks on `device`, the noise seeded by
    /// `seed` (one fixed realisation per object). Returns them on `device`.
    pub fn observe_all(&self, sources: &Tensor, seed: i64, device: Device) -> Result<Tensor> {
        tch::manual_seed(seed);
        let n = sources.size()[0];
        let chunk = 64;
        let mut parts = Vec::new();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let part = sources.narrow(0, start, len).to_device(device);
            parts.push(tch::no_grad(|| self.observe(&part))?);
            start += len;
        }
        Ok(Tensor::cat(&parts, 0))
    }

    /// A test observation of one source (1, C, H, W) drawn on the CPU from `seed`.
    pub fn observe_test(&self, source: &Tensor, seed: i64) -> Result<Tensor> {
        tch::manual_seed(seed);
        tch::no_grad(|| self.observe(&source.to_device(Device::Cpu)))
    }

    /// (observation, target, noise levels) of a training batch of sources (B, C, S, S); `stored`
    /// holds the observations computed at load time, for tasks that have them. `seed` seeds the
    /// noise. The noise levels (B,) are drawn per object for a noise-level-aware model.
    pub fn training_pair(
        &self,
        sources: &Tensor,
        stored: Option<&Tensor>,
        seed: i64,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let target = self.target(sources);
        if let Some((lo, hi)) = self.sigma_range {
            tch::manual_seed(seed);
            let b = sources.size()[0];
            let sigma = Tensor::rand([b], (Kind::Float, sources.device())) * (hi - lo) + lo;
            let noisy = tch::no_grad(|| sources + sources.randn_like() * sigma.view([-1, 1, 1, 1]));
            return Ok((noisy, target, Some(sigma)));
        }
        let observation = match stored {
            Some(obs) => obs.shallow_clone(),
            None => {
                tch::manual_seed(seed);
                tch::no_grad(|| self.observe(sources))?
            }
        };
        Ok((observation, target, None))
    }

    /// The noise level handed to a noise-aware model with a test observation (the task's sigma).
    pub fn test_noise_level(&self) -> Option<f64> {
        self.sigma_range.map(|_| self.cfg.sigma)
    }
}
