//! LoFi-ADMM: plug-and-play reconstruction with a LoFi denoiser as the prior (the paper's
//! Algorithm 1, in the scaled form of the reference code):
//!
//! ```text
//! x_h = A^T y;  x = u = v = 0
//! repeat:  x = argmin ||A x - y||^2 + alpha ||x - (v - u)||^2   i.e. (A^T A + alpha I) x = x_h + alpha (v - u)
//!          v = D(x + u)          (LoFi on every pixel of the working resolution)
//!          u = u + x - v
//! return v
//! ```
//!
//! The data step is closed-form where the operator has one (pixel or Fourier diagonal) and
//! warm-started conjugate gradients otherwise. The denoiser runs through the memory-budgeted
//! engine at the working resolution, which need not be its training resolution.
//!
//! # Noise levels and annealing
//! A noise-level-aware denoiser is told the noise level it should remove: a fixed
//! `denoiser_sigma` (the paper's fixed-sigma ADMM, with a model that takes sigma), or a
//! [`NoiseSchedule`]: sigma_k falls geometrically from `sigma_start` to `sigma_end` over the
//! schedule's iterations and the data weight follows it, `alpha_k = alpha (sigma_end / sigma_k)^2`
//! (as in DPIR's half-quadratic splitting: early iterations trust the prior's strong smoothing,
//! late ones the data). The coupling is ADMM (the scaled dual rescaled when alpha changes) or,
//! with [`Splitting::Hqs`], DPIR's half-quadratic splitting without a dual variable.
//!
//! # Transforms and the returned estimate
//! With [`Transforms::Dihedral`] (the default) the prior sees the image under a different quarter
//! turn or mirror at each iteration ([`transforms`]), and the estimate returned is the mean of the
//! prior's last `average_last` outputs at the final noise level: the denoiser's geometric
//! self-ensemble, spread over the iterations instead of multiplying their cost. The paper's
//! algorithm is [`Transforms::None`] with `average_last = 1`.
//!
//! The estimate starts at zero (the paper), at the operator's cheap first guess where it has one
//! (inpainting: gaps filled by normalised convolution; denoising: the noisy image), or at a
//! caller's warm start ([`Pnp::set_estimate`]). [`Pnp::solve`] stops early once the estimate
//! moves less than `tolerance` (relative) in one iteration, after any schedule has finished.

pub mod operator;
pub mod transforms;

use std::collections::VecDeque;

use tch::{Kind, Tensor};

pub use operator::{
    fill_gaps, ApplyFn, Blur, Callbacks, Ct, FourierSampling, Identity, ImageShape, Inpaint, Lensing,
    Operator, Visibilities,
};

use crate::engine::{self, BatchPlan, PreparedImage, Progress};
use crate::error::{Error, Result};
use crate::model::Model;
pub use transforms::{Dihedral, Transforms};

/// A geometric noise schedule for annealed LoFi-ADMM (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseSchedule {
    /// Noise level of the first iteration (image units), e.g. 50/255.
    pub sigma_start: f64,
    /// Noise level of the last iteration of the schedule and of every later one.
    pub sigma_end: f64,
    /// Iterations over which sigma falls from start to end (at least 1).
    pub iterations: usize,
}

impl NoiseSchedule {
    /// What a noise-level-aware model gets when the caller gives neither a fixed sigma nor a
    /// schedule: from the top of the model's training range down to half of it over 20
    /// iterations (50/255 -> 25/255 for the shipped gray denoiser). Chosen from the README's
    /// inpainting measurements: from a good start (gap-filled inpainting) it is within 0.3 dB of
    /// the best fixed sigma, whose level one cannot know in advance; from the paper's zero start,
    /// annealing (50/255 -> 10/255) was 8 to 16 dB better than a fixed sigma at its last level.
    pub fn default_for(range: &crate::config::NoiseLevelInput) -> NoiseSchedule {
        NoiseSchedule { sigma_start: range.sigma_max, sigma_end: 0.5 * range.sigma_max, iterations: 20 }
    }
}

impl NoiseSchedule {
    /// sigma of iteration `k` (0-based).
    pub fn sigma(&self, k: usize) -> f64 {
        if self.iterations <= 1 || k + 1 >= self.iterations {
            return if k == 0 && self.iterations > 1 { self.sigma_start } else { self.sigma_end };
        }
        let t = k as f64 / (self.iterations - 1) as f64;
        self.sigma_start * (self.sigma_end / self.sigma_start).powf(t)
    }

    fn validate(&self) -> Result<()> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !(ok(self.sigma_start) && ok(self.sigma_end)) || self.iterations == 0 {
            return Err(Error::invalid_argument(format!(
                "the noise schedule needs positive, finite sigmas and at least one iteration (got {} -> {} over {})",
                self.sigma_start, self.sigma_end, self.iterations
            )));
        }
        Ok(())
    }
}

/// How the data and prior steps are coupled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Splitting {
    /// ADMM with the scaled dual variable u (the paper's LoFi-ADMM). Under a schedule, u is
    /// rescaled by alpha_(k-1) / alpha_k whenever the data weight changes, which keeps the
    /// unscaled dual (alpha u) continuous.
    #[default]
    Admm,
    /// Half-quadratic splitting: no dual variable (u = 0), DPIR's scheme.
    Hqs,
}

/// Settings of a plug-and-play solve.
#[derive(Clone, Copy, Debug)]
pub struct PnpParams {
    /// ADMM penalty alpha (> 0): how strongly the data step pulls towards the prior's estimate.
    pub alpha: f64,
    /// Conjugate-gradient iterations per data step, when there is no closed form.
    pub cg_max_iterations: usize,
    /// Relative residual at which conjugate gradients stop.
    pub cg_tolerance: f64,
    /// Working-memory budget of the denoiser, bytes.
    pub memory_budget: usize,
    /// CPU threads (0: libtorch's default).
    pub threads: usize,
    /// The noise level a noise-aware denoiser is told at every iteration (fixed-sigma ADMM);
    /// refused by fixed-level models. A noise-aware model given neither this nor a schedule
    /// runs [`NoiseSchedule::default_for`] its training range.
    pub denoiser_sigma: Option<f64>,
    /// Annealing (noise-aware models, or the TV baseline): overrides `denoiser_sigma`.
    pub schedule: Option<NoiseSchedule>,
    /// ADMM (default) or half-quadratic splitting.
    pub splitting: Splitting,
    /// [`Pnp::solve`] stops once the estimate changes by less than this (relative, the dual
    /// residual) in one iteration, after the schedule; 0 runs every iteration.
    pub tolerance: f64,
    /// What the prior sees at each iteration: the image, or a cycle of its quarter turns and
    /// mirrors (see the module documentation).
    pub transforms: Transforms,
    /// The estimate is the mean of the prior's last `average_last` outputs at the final noise
    /// level (fewer until that many have run); 1 returns the last output. Default 8: one cycle of
    /// the dihedral transforms of a square image. The solve keeps that many images.
    pub average_last: usize,
}

impl Default for PnpParams {
    fn default() -> Self {
        PnpParams {
            alpha: 0.05,
            cg_max_iterations: 100,
            cg_tolerance: 1e-7,
            memory_budget: engine::DEFAULT_MEMORY_BUDGET,
            threads: 0,
            denoiser_sigma: None,
            schedule: None,
            splitting: Splitting::Admm,
            tolerance: 0.0,
            transforms: Transforms::Dihedral,
            average_last: 8,
        }
    }
}

/// Iterations the [`PnpParams::for_inpainting`] settings were measured with.
pub const INPAINTING_ITERATIONS: usize = 40;

impl PnpParams {
    /// The settings measured best for inpainting with a noise-level-aware prior whose training
    /// range is `range`: a fixed sigma of 0.6 x the top of the range (30/255 for the shipped gray
    /// denoiser), alpha 0.01, the dihedral transforms and the mean of the last 8 outputs, run for
    /// [`INPAINTING_ITERATIONS`] iterations from the gap-filled start. On Set12 (30 %
    /// observed, README "Inpainting") they sit on a plateau: sigma 25-35/255, alpha 0.005-0.02
    /// and 16-40 iterations are within 0.05 dB of each other, while the generic defaults
    /// (alpha 0.05, the default schedule, 90 iterations) are 0.24 dB behind. `lofi pnp
    /// --operator inpaint` starts from these.
    pub fn for_inpainting(range: &crate::config::NoiseLevelInput) -> PnpParams {
        PnpParams { alpha: 0.01, denoiser_sigma: Some(0.6 * range.sigma_max), ..Default::default() }
    }

    /// The noise level and data weight of iteration `k` (0-based).
    pub fn iteration_settings(&self, k: usize) -> (Option<f64>, f64) {
        match &self.schedule {
            Some(s) => {
                let sigma = s.sigma(k);
                (Some(sigma), self.alpha * (s.sigma_end / sigma).powi(2))
            }
            None => (self.denoiser_sigma, self.alpha),
        }
    }

    /// Whether the schedule has run its course after `done` iterations (always without one):
    /// iteration `done - 1` ran at the final noise level.
    fn schedule_done(&self, done: usize) -> bool {
        self.schedule.is_none_or(|s| done >= s.iterations)
    }
}

/// Figures of one ADMM iteration.
#[derive(Clone, Copy, Debug, Default)]
pub struct Residuals {
    /// 1-based iteration number.
    pub iteration: usize,
    /// Primal residual ||x - v|| / ||v||: agreement of the data and prior estimates.
    pub primal: f64,
    /// Dual residual: how much the returned estimate moved in this iteration, relative to its
    /// norm.
    pub dual: f64,
    /// Data misfit ||A e - y|| / ||y|| of the returned estimate e.
    pub data_misfit: f64,
    /// PSNR of the returned estimate against the ground truth, when one was given
    /// (scikit-image's definition, data range = max - min of the ground truth).
    pub psnr: Option<f64>,
    /// Conjugate-gradient iterations of the data step (0 for closed forms).
    pub cg_iterations: usize,
    /// The noise level the denoiser was told (None: a fixed-level denoiser).
    pub sigma: Option<f64>,
    /// The data weight alpha of this iteration.
    pub alpha: f64,
}

/// The prior step `v = D(x + u)`: a denoiser of (1, C, H, W) images.
pub trait Prior {
    fn name(&self) -> &str;
    /// Denoises `image`; `sigma` is the noise level to remove (None: the prior's own).
    fn denoise(
        &self,
        image: &Tensor,
        sigma: Option<f64>,
        progress: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    ) -> Result<Tensor>;
    /// Checks that the prior can take the noise levels `params` will hand it.
    fn check_params(&self, _params: &PnpParams) -> Result<()> {
        Ok(())
    }
}

/// LoFi as the prior: the model evaluated on every pixel of the working resolution through the
/// memory-budgeted engine.
pub struct LofiPrior<'m> {
    model: &'m Model,
    plan: BatchPlan,
    threads: usize,
    /// Single-threaded workers sharing each denoising pass ([`engine::cpu_workers`]; 1: one
    /// worker on `threads`).
    workers: usize,
}

impl<'m> LofiPrior<'m> {
    pub fn new(model: &'m Model, shape: ImageShape, params: &PnpParams) -> Result<LofiPrior<'m>> {
        let cfg = model.config();
        if cfg.c_in != cfg.c_out {
            return Err(Error::invalid_argument(format!(
                "plug-and-play needs a denoiser (as many output as input channels); this model maps {} to {}",
                cfg.c_in, cfg.c_out
            )));
        }
        if shape.channels != cfg.c_in {
            return Err(Error::invalid_argument(format!(
                "the operator works on {}-channel images, the model on {}",
                shape.channels, cfg.c_in
            )));
        }
        let (height, width) = (shape.height as usize, shape.width as usize);
        let mut workers = engine::cpu_workers(model, params.threads, height * width);
        let plan = loop {
            // Planned with the threads each batch runs on (the CPU's batch cap depends on them),
            // and each worker's share of the budget; one worker if a share is too small.
            let _threads = engine::ThreadScope::new(if workers > 1 { 1 } else { params.threads });
            match engine::plan_for(model, height, width, params.memory_budget / workers) {
                Ok(plan) if workers == 1 || plan.batch_pixels >= engine::budget::cpu_batch_cap(1) => {
                    break plan
                }
                Err(e) if workers == 1 => return Err(e),
                _ => workers = 1,
            }
        };
        Ok(LofiPrior { model, plan, threads: params.threads, workers })
    }
}

impl Prior for LofiPrior<'_> {
    fn name(&self) -> &str {
        "lofi"
    }
    fn denoise(
        &self,
        image: &Tensor,
        sigma: Option<f64>,
        progress: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    ) -> Result<Tensor> {
        let prepared = PreparedImage::from_tensor(self.model, image)?.with_noise_level(sigma)?;
        if self.workers > 1 {
            return prepared.reconstruct_grid_on_workers(&self.plan, self.workers, progress);
        }
        let _threads = engine::ThreadScope::new(self.threads);
        prepared.reconstruct_grid(&self.plan, progress)
    }
    fn check_params(&self, params: &PnpParams) -> Result<()> {
        let aware = self.model.config().noise_level.is_some();
        match (aware, params.schedule.is_some(), params.denoiser_sigma) {
            (false, true, _) => Err(Error::invalid_argument(
                "a noise schedule needs a noise-level-aware model (this one was trained at one fixed noise level)",
            )),
            (_, true, _) => Ok(()),
            (_, false, sigma) => self.model.check_noise_level(sigma),
        }
    }
}

/// Total variation as the prior (a baseline): `v = argmin_v ||v - z||^2 / 2 + weight TV(v)`,
/// isotropic TV, by Chambolle's projection algorithm (fixed iterations, step 1/8). Told a noise
/// level sigma (annealing), the weight becomes `weight (sigma / reference_sigma)^2`, the ROF
/// weight's scaling with the noise variance.
pub struct TvPrior {
    pub weight: f64,
    pub iterations: usize,
    /// The noise level at which `weight` applies (annealing only).
    pub reference_sigma: f64,
}

impl TvPrior {
    fn gradient(v: &Tensor) -> (Tensor, Tensor) {
        // Forward differences with a zero last row/column (Neumann boundary).
        let gy =
            (v.narrow(2, 1, v.size()[2] - 1) - v.narrow(2, 0, v.size()[2] - 1)).constant_pad_nd([0, 0, 0, 1]);
        let gx =
            (v.narrow(3, 1, v.size()[3] - 1) - v.narrow(3, 0, v.size()[3] - 1)).constant_pad_nd([0, 1, 0, 0]);
        (gy, gx)
    }
    fn divergence(py: &Tensor, px: &Tensor) -> Tensor {
        // The negative adjoint of the forward-difference gradient above.
        let (h, w) = (py.size()[2], py.size()[3]);
        let py = py.narrow(2, 0, h - 1).constant_pad_nd([0, 0, 0, 1]);
        let px = px.narrow(3, 0, w - 1).constant_pad_nd([0, 1, 0, 0]);
        let dy = &py - py.roll([1], [2]);
        let dx = &px - px.roll([1], [3]);
        dy + dx
    }
}

impl Prior for TvPrior {
    fn name(&self) -> &str {
        "tv"
    }
    fn denoise(
        &self,
        z: &Tensor,
        sigma: Option<f64>,
        _: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    ) -> Result<Tensor> {
        let weight = match sigma {
            Some(s) => self.weight * (s / self.reference_sigma).powi(2),
            None => self.weight,
        };
        if weight <= 0.0 {
            return Ok(z.shallow_clone());
        }
        let tau = 0.125;
        let (mut py, mut px) = (z.zeros_like(), z.zeros_like());
        for _ in 0..self.iterations {
            let (gy, gx) = Self::gradient(&(Self::divergence(&py, &px) - z / weight));
            let norm = (gy.square() + gx.square()).sqrt() * tau + 1.0;
            py = (&py + gy * tau) / &norm;
            px = (&px + gx * tau) / &norm;
        }
        Ok(z - Self::divergence(&py, &px) * weight)
    }
}

/// The state of a plug-and-play solve. Owns the operator; the prior may borrow a model.
pub struct Pnp<'m> {
    prior: Box<dyn Prior + 'm>,
    operator: Box<dyn Operator>,
    params: PnpParams,
    shape: ImageShape,
    y: Tensor,
    x_h: Tensor,
    x: Tensor,
    u: Tensor,
    v: Tensor,
    y_norm: f64,
    ground_truth: Option<(Tensor, f64)>,
    iteration: usize,
    /// The prior's last outputs at the final noise level (at most `average_last`), oldest first.
    recent: VecDeque<Tensor>,
    /// What [`Pnp::estimate`] returns: the mean of `recent`, or the start.
    estimate: Tensor,
}

/// Euclidean norm; complex tensors count both parts.
fn norm(t: &Tensor) -> f64 {
    let real = if t.is_complex() { t.view_as_real() } else { t.shallow_clone() };
    real.to_kind(Kind::Double).square().sum(Kind::Double).double_value(&[]).sqrt()
}

impl<'m> Pnp<'m> {
    /// Starts a LoFi-ADMM solve of `y = A x` at the operator's image shape. The model must be a
    /// denoiser: as many output as input channels, matching the shape's channels.
    pub fn new(
        model: &'m Model,
        operator: Box<dyn Operator>,
        shape: ImageShape,
        measurements: Tensor,
        params: PnpParams,
    ) -> Result<Pnp<'m>> {
        Pnp::check_shape(shape)?;
        let mut params = params;
        if let (Some(range), None, None) =
            (&model.config().noise_level, params.denoiser_sigma, params.schedule)
        {
            params.schedule = Some(NoiseSchedule::default_for(range));
            log::info!(
                "noise-level-aware prior without a sigma or a schedule: the default schedule {:?}",
                params.schedule
            );
        }
        let prior = LofiPrior::new(model, shape, &params)?;
        Pnp::with_prior(Box::new(prior), model.device(), operator, shape, measurements, params)
    }

    fn check_shape(shape: ImageShape) -> Result<()> {
        if shape.height < 2 || shape.width < 2 || shape.height > 1 << 15 || shape.width > 1 << 15 {
            return Err(Error::invalid_argument(format!(
                "working resolution {} x {} is out of range",
                shape.width, shape.height
            )));
        }
        Ok(())
    }

    /// The same ADMM with any prior (baselines such as [`TvPrior`]), on `device`.
    pub fn with_prior(
        prior: Box<dyn Prior + 'm>,
        device: tch::Device,
        operator: Box<dyn Operator>,
        shape: ImageShape,
        measurements: Tensor,
        params: PnpParams,
    ) -> Result<Pnp<'m>> {
        Pnp::check_shape(shape)?;
        if !(params.alpha > 0.0 && params.alpha.is_finite()) {
            return Err(Error::invalid_argument(format!(
                "alpha = {} must be positive and finite",
                params.alpha
            )));
        }
        if !(params.cg_tolerance >= 0.0 && params.cg_tolerance.is_finite()) {
            return Err(Error::invalid_argument(format!(
                "cg_tolerance = {} is invalid",
                params.cg_tolerance
            )));
        }
        if !(params.tolerance >= 0.0 && params.tolerance.is_finite()) {
            return Err(Error::invalid_argument(format!("tolerance = {} is invalid", params.tolerance)));
        }
        if params.average_last == 0 {
            return Err(Error::invalid_argument(
                "average_last = 0: the estimate averages at least the last output (1)",
            ));
        }
        if let Some(schedule) = &params.schedule {
            schedule.validate()?;
        }
        prior.check_params(&params)?;
        let _guard = tch::no_grad_guard();
        let y = measurements.to_device(device);
        if !bool::try_from(y.isfinite().all()).unwrap_or(false) {
            return Err(Error::invalid_input("the measurements hold NaN or infinite values"));
        }
        let x_h = operator.adjoint(&y)?.to_kind(Kind::Float);
        if x_h.size() != [1, shape.channels, shape.height, shape.width] {
            return Err(Error::invalid_argument(format!(
                "A^T y has shape {:?}, expected {:?}: the measurements do not fit the operator",
                x_h.size(),
                [1, shape.channels, shape.height, shape.width]
            )));
        }
        let zeros = x_h.zeros_like();
        let start = match operator.initial_estimate(&x_h) {
            Some(estimate) => estimate?.to_kind(Kind::Float),
            None => zeros.copy(),
        };
        let y_norm = norm(&y).max(f64::MIN_POSITIVE);
        Ok(Pnp {
            prior,
            operator,
            params,
            shape,
            y,
            x_h,
            x: start.copy(),
            u: zeros,
            v: start.shallow_clone(),
            y_norm,
            ground_truth: None,
            iteration: 0,
            recent: VecDeque::new(),
            estimate: start,
        })
    }

    /// A ground truth (1, C, H, W) for PSNR reporting.
    pub fn set_ground_truth(&mut self, truth: &Tensor) -> Result<()> {
        let truth = truth.to_device(self.x.device()).to_kind(Kind::Float);
        if !bool::try_from(truth.isfinite().all()).unwrap_or(false) {
            return Err(Error::invalid_input("the ground truth holds NaN or infinite values"));
        }
        if truth.size() != self.x.size() {
            return Err(Error::invalid_argument(format!(
                "the ground truth is {:?}, the estimate {:?}",
                truth.size(),
                self.x.size()
            )));
        }
        let range = (truth.max() - truth.min()).double_value(&[]);
        self.ground_truth = Some((truth, range));
        Ok(())
    }

    /// Warm start: the estimate (1, C, H, W) the next iteration starts from (x = v = estimate,
    /// u = 0), e.g. a classical reconstruction or a previous solve's result.
    pub fn set_estimate(&mut self, estimate: &Tensor) -> Result<()> {
        let estimate = estimate.to_device(self.x.device()).to_kind(Kind::Float);
        if estimate.size() != self.x.size() {
            return Err(Error::invalid_argument(format!(
                "the starting estimate is {:?}, the problem {:?}",
                estimate.size(),
                self.x.size()
            )));
        }
        if !bool::try_from(estimate.isfinite().all()).unwrap_or(false) {
            return Err(Error::invalid_input("the starting estimate holds NaN or infinite values"));
        }
        self.x = estimate.copy();
        self.v = estimate.shallow_clone();
        self.u = self.x.zeros_like();
        self.recent.clear();
        self.estimate = estimate;
        Ok(())
    }

    pub fn params(&self) -> &PnpParams {
        &self.params
    }

    pub fn shape(&self) -> ImageShape {
        self.shape
    }
    pub fn prior(&self) -> &dyn Prior {
        &*self.prior
    }
    pub fn operator(&self) -> &dyn Operator {
        &*self.operator
    }
    pub fn iteration(&self) -> usize {
        self.iteration
    }
    /// The current estimate (1, C, H, W), on the model's device: the mean of the prior's last
    /// `average_last` outputs at the final noise level (the last output when `average_last` is 1
    /// or the schedule is still running), or the start before the first iteration.
    pub fn estimate(&self) -> &Tensor {
        &self.estimate
    }
    /// `A^T y`, the naive reconstruction (the "dirty image" in radio astronomy).
    pub fn back_projection(&self) -> &Tensor {
        &self.x_h
    }

    /// One ADMM iteration. `progress` sees the denoiser's batches.
    pub fn step(&mut self, progress: &mut Option<&mut dyn FnMut(Progress) -> bool>) -> Result<Residuals> {
        crate::error::catch_torch(|| {
            let _guard = tch::no_grad_guard();
            let (sigma, alpha) = self.params.iteration_settings(self.iteration);
            if self.iteration > 0 && self.params.splitting == Splitting::Admm {
                let (_, previous) = self.params.iteration_settings(self.iteration - 1);
                if previous != alpha {
                    self.u = &self.u * (previous / alpha);
                }
            }
            let b = &self.x_h + (&self.v - &self.u) * alpha;
            let (x, cg_iterations) = match self.operator.normal_solve(&b, alpha) {
                Some(x) => (x?.to_kind(Kind::Float), 0),
                None => self.conjugate_gradient(&b, alpha)?,
            };
            let z = &x + &self.u;
            let v = match self.params.transforms {
                Transforms::None => self.prior.denoise(&z, sigma, progress)?,
                Transforms::Dihedral => {
                    let g = Dihedral::at_iteration(self.iteration, self.shape);
                    g.undo(&self.prior.denoise(&g.apply(&z), sigma, progress)?)
                }
            };
            let u = match self.params.splitting {
                Splitting::Admm => &self.u + &x - &v,
                Splitting::Hqs => self.u.shallow_clone(),
            };
            let v_norm = norm(&v).max(f64::MIN_POSITIVE);
            let primal = norm(&(&x - &v)) / v_norm;
            // The returned estimate: the mean of the recent outputs at the final level, or v.
            if self.params.schedule_done(self.iteration + 1) {
                self.recent.push_back(v.shallow_clone());
                while self.recent.len() > self.params.average_last {
                    self.recent.pop_front();
                }
            } else {
                self.recent.clear();
            }
            let estimate = if self.recent.len() <= 1 {
                v.shallow_clone()
            } else {
                let mut sum = self.recent[0].copy();
                for t in self.recent.iter().skip(1) {
                    sum += t;
                }
                sum / self.recent.len() as f64
            };
            let e_norm = norm(&estimate).max(f64::MIN_POSITIVE);
            let dual = norm(&(&estimate - &self.estimate)) / e_norm;
            let data_misfit = norm(&(self.operator.forward(&estimate)? - &self.y)) / self.y_norm;
            self.x = x;
            self.v = v;
            self.u = u;
            self.estimate = estimate;
            self.iteration += 1;
            let psnr = self.ground_truth.as_ref().map(|(t, range)| psnr(t, &self.estimate, *range));
            Ok(Residuals {
                iteration: self.iteration,
                primal,
                dual,
                data_misfit,
                psnr,
                cg_iterations,
                sigma,
                alpha,
            })
        })
    }

    /// Up to `iterations` steps; `progress` sees (iterations done, iterations) and may cancel.
    /// Stops early when the estimate moves less than `params.tolerance` in one iteration (after
    /// the noise schedule, if any, has run its course).
    pub fn solve(
        &mut self,
        iterations: usize,
        mut progress: Option<&mut dyn FnMut(Progress) -> bool>,
        mut on_iteration: impl FnMut(&Residuals),
    ) -> Result<Vec<Residuals>> {
        let mut all = Vec::with_capacity(iterations);
        for k in 0..iterations {
            let r = self.step(&mut None)?;
            on_iteration(&r);
            all.push(r);
            if let Some(cb) = progress.as_mut() {
                if !cb(Progress::new(k + 1, iterations)) {
                    return Err(Error::Cancelled);
                }
            }
            if self.converged(&r) {
                break;
            }
        }
        Ok(all)
    }

    /// Whether the early-stopping rule holds after the iteration that gave `r`.
    pub fn converged(&self, r: &Residuals) -> bool {
        self.params.tolerance > 0.0
            && self.params.schedule_done(self.iteration)
            && r.dual < self.params.tolerance
    }

    fn conjugate_gradient(&self, b: &Tensor, alpha: f64) -> Result<(Tensor, usize)> {
        conjugate_gradient(
            &*self.operator,
            b,
            &self.x,
            alpha,
            self.params.cg_max_iterations,
            self.params.cg_tolerance,
        )
    }
}

/// Solves `(A^T A + alpha I) x = b` by conjugate gradients from `x0` (warm start), stopping at
/// `max_iterations` or when the residual falls below `tolerance * ||b||`. Returns x and the
/// iterations run.
pub fn conjugate_gradient(
    operator: &dyn Operator,
    b: &Tensor,
    x0: &Tensor,
    alpha: f64,
    max_iterations: usize,
    tolerance: f64,
) -> Result<(Tensor, usize)> {
    let apply = |p: &Tensor| -> Result<Tensor> {
        let normal = match operator.normal(p) {
            Some(fast) => fast?,
            None => operator.adjoint(&operator.forward(p)?)?,
        };
        Ok(normal.to_kind(Kind::Float) + p * alpha)
    };
    let dot = |a: &Tensor, c: &Tensor| {
        (a.to_kind(Kind::Double) * c.to_kind(Kind::Double)).sum(Kind::Double).double_value(&[])
    };
    let mut x = x0.copy();
    let mut r = b - apply(&x)?;
    let mut p = r.copy();
    let mut rr = dot(&r, &r);
    let stop = tolerance * tolerance * dot(b, b).max(f64::MIN_POSITIVE);
    let mut k = 0;
    while k < max_iterations && rr > stop {
        let ap = apply(&p)?;
        let step = rr / dot(&p, &ap).max(f64::MIN_POSITIVE);
        x += &p * step;
        r -= &ap * step;
        let rr_next = dot(&r, &r);
        p = &r + &p * (rr_next / rr);
        rr = rr_next;
        k += 1;
    }
    Ok((x, k))
}

/// PSNR with scikit-image's definition: 10 log10(range^2 / MSE).
pub fn psnr(truth: &Tensor, estimate: &Tensor, data_range: f64) -> f64 {
    let mse = (truth.to_kind(Kind::Double) - estimate.to_kind(Kind::Double))
        .square()
        .mean(Kind::Double)
        .double_value(&[]);
    10.0 * (data_range * data_range / mse).log10()
}
