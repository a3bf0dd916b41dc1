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

pub mod operator;

use tch::{Kind, Tensor};

pub use operator::{Blur, Callbacks, Ct, FourierSampling, Identity, ImageShape, Inpaint, Lensing, Operator};

use crate::engine::{self, BatchPlan, PreparedImage, Progress};
use crate::error::{Error, Result};
use crate::model::Model;

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
}

impl Default for PnpParams {
    fn default() -> Self {
        PnpParams {
            alpha: 0.05,
            cg_max_iterations: 100,
            cg_tolerance: 1e-7,
            memory_budget: engine::DEFAULT_MEMORY_BUDGET,
            threads: 0,
        }
    }
}

/// Figures of one ADMM iteration.
#[derive(Clone, Copy, Debug, Default)]
pub struct Residuals {
    /// 1-based iteration number.
    pub iteration: usize,
    /// Primal residual ||x - v|| / ||v||: agreement of the data and prior estimates.
    pub primal: f64,
    /// Dual residual ||v - v_prev|| / ||v||: how much the estimate still moves.
    pub dual: f64,
    /// Data misfit ||A v - y|| / ||y||.
    pub data_misfit: f64,
    /// PSNR of v against the ground truth, when one was given (scikit-image's definition,
    /// data range = max - min of the ground truth).
    pub psnr: Option<f64>,
    /// Conjugate-gradient iterations of the data step (0 for closed forms).
    pub cg_iterations: usize,
}

/// The prior step `v = D(x + u)`: a denoiser of (1, C, H, W) images.
pub trait Prior {
    fn name(&self) -> &str;
    fn denoise(
        &self,
        image: &Tensor,
        progress: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    ) -> Result<Tensor>;
}

/// LoFi as the prior: the model evaluated on every pixel of the working resolution through the
/// memory-budgeted engine.
pub struct LofiPrior<'m> {
    model: &'m Model,
    plan: BatchPlan,
    threads: usize,
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
        let plan =
            engine::plan_for(model, shape.height as usize, shape.width as usize, params.memory_budget)?;
        Ok(LofiPrior { model, plan, threads: params.threads })
    }
}

impl Prior for LofiPrior<'_> {
    fn name(&self) -> &str {
        "lofi"
    }
    fn denoise(
        &self,
        image: &Tensor,
        progress: &mut Option<&mut dyn FnMut(Progress) -> bool>,
    ) -> Result<Tensor> {
        let prepared = PreparedImage::from_tensor(self.model, image)?;
        let _threads = engine::ThreadScope::new(self.threads);
        prepared.reconstruct_grid(&self.plan, progress)
    }
}

/// Total variation as the prior (a baseline): `v = argmin_v ||v - z||^2 / 2 + weight TV(v)`,
/// isotropic TV, by Chambolle's projection algorithm (fixed iterations, step 1/8).
pub struct TvPrior {
    pub weight: f64,
    pub iterations: usize,
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
    fn denoise(&self, z: &Tensor, _: &mut Option<&mut dyn FnMut(Progress) -> bool>) -> Result<Tensor> {
        if self.weight <= 0.0 {
            return Ok(z.shallow_clone());
        }
        let tau = 0.125;
        let (mut py, mut px) = (z.zeros_like(), z.zeros_like());
        for _ in 0..self.iterations {
            let (gy, gx) = Self::gradient(&(Self::divergence(&py, &px) - z / self.weight));
            let norm = (gy.square() + gx.square()).sqrt() * tau + 1.0;
            py = (&py + gy * tau) / &norm;
            px = (&px + gx * tau) / &norm;
        }
        Ok(z - Self::divergence(&py, &px) * self.weight)
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
        let y_norm = norm(&y).max(f64::MIN_POSITIVE);
        Ok(Pnp {
            prior,
            operator,
            params,
            shape,
            y,
            x_h,
            x: zeros.copy(),
            u: zeros.copy(),
            v: zeros,
            y_norm,
            ground_truth: None,
            iteration: 0,
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
    /// The current estimate v (1, C, H, W), on the model's device.
    pub fn estimate(&self) -> &Tensor {
        &self.v
    }
    /// `A^T y`, the naive reconstruction (the "dirty image" in radio astronomy).
    pub fn back_projection(&self) -> &Tensor {
        &self.x_h
    }

    /// One ADMM iteration. `progress` sees the denoiser's batches.
    pub fn step(&mut self, progress: &mut Option<&mut dyn FnMut(Progress) -> bool>) -> Result<Residuals> {
        crate::error::catch_torch(|| {
            let _guard = tch::no_grad_guard();
            let alpha = self.params.alpha;
            let b = &self.x_h + (&self.v - &self.u) * alpha;
            let (x, cg_iterations) = match self.operator.normal_solve(&b, alpha) {
                Some(x) => (x?.to_kind(Kind::Float), 0),
                None => self.conjugate_gradient(&b)?,
            };
            let v = self.prior.denoise(&(&x + &self.u), progress)?;
            let u = &self.u + &x - &v;
            let v_norm = norm(&v).max(f64::MIN_POSITIVE);
            let primal = norm(&(&x - &v)) / v_norm;
            let dual = norm(&(&v - &self.v)) / v_norm;
            let data_misfit = norm(&(self.operator.forward(&v)? - &self.y)) / self.y_norm;
            self.x = x;
            self.v = v;
            self.u = u;
            self.iteration += 1;
            let psnr = self.ground_truth.as_ref().map(|(t, range)| psnr(t, &self.v, *range));
            Ok(Residuals { iteration: self.iteration, primal, dual, data_misfit, psnr, cg_iterations })
        })
    }

    /// `iterations` steps; `progress` sees (iterations done, iterations) and may cancel.
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
                if !cb(Progress { done: k + 1, total: iterations }) {
                    return Err(Error::Cancelled);
                }
            }
        }
        Ok(all)
    }

    fn conjugate_gradient(&self, b: &Tensor) -> Result<(Tensor, usize)> {
        conjugate_gradient(
            &*self.operator,
            b,
            &self.x,
            self.params.alpha,
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
        Ok(operator.adjoint(&operator.forward(p)?)?.to_kind(Kind::Float) + p * alpha)
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
