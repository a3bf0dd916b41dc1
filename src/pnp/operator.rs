//! Forward operators `A` of the inverse problems LoFi-ADMM solves, with their adjoints and, where
//! `A^T A` is diagonal in pixels or in Fourier space, the closed-form solve of the ADMM data step.
//!
//! Images are `(1, C, H, W)` float32 tensors on the model's device. Measurements are tensors in
//! each operator's natural layout; [`Operator::measurements_from_host`] and
//! [`Operator::measurements_to_host`] convert them to and from the flat float arrays C callers use
//! (layouts documented on each operator).

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::operators::fourier::{FourierBlur, FourierMask};
use crate::operators::{lensing, radon::Radon};

/// A linear forward operator `A` from images to measurements.
pub trait Operator: Send {
    /// Short name for logs ("inpaint", "radon", ...).
    fn name(&self) -> &str;
    /// `A x`.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// `A^T y`.
    fn adjoint(&self, y: &Tensor) -> Result<Tensor>;
    /// `(A^T A + alpha I)^{-1} b` in closed form, if this operator has one.
    fn normal_solve(&self, _b: &Tensor, _alpha: f64) -> Option<Result<Tensor>> {
        None
    }
    /// Number of floats in the flat host layout of a measurement.
    fn measurement_len(&self) -> usize;
    /// Measurement tensor from the flat host layout.
    fn measurements_from_host(&self, y: &[f32], device: Device) -> Result<Tensor>;
    /// Flat host layout of a measurement tensor.
    fn measurements_to_host(&self, y: &Tensor) -> Vec<f32> {
        let flat = y.to_kind(Kind::Float).to_device(Device::Cpu).contiguous().view([-1]);
        Vec::<f32>::try_from(&flat).expect("float tensor")
    }
    /// A first estimate of the image from `A^T y`, where the operator has a cheap and better one
    /// than zero (inpainting: the gaps filled by normalised convolution). `None`: start at zero.
    fn initial_estimate(&self, _back_projection: &Tensor) -> Option<Result<Tensor>> {
        None
    }
}

/// Fills the unobserved pixels of `observed` (mask 0) by normalised convolution with Gaussians of
/// growing width (1, 2, 4, ... pixels): each gap pixel takes the finest scale whose window holds
/// enough observed weight. Observed pixels keep their values. `observed`, `mask`: (1, C, H, W).
pub fn fill_gaps(observed: &Tensor, mask: &Tensor) -> Tensor {
    let (_, c, h, w) = observed.size4().expect("(1, C, H, W)");
    let mut estimate = observed * mask;
    let mut filled = mask.shallow_clone();
    let mut sigma = 1.0f64;
    while sigma <= (h.max(w) as f64) && bool::try_from(filled.lt(0.5).any()).unwrap_or(false) {
        let radius = (3.0 * sigma).ceil() as i64;
        let taps = Tensor::arange_start(-radius, radius + 1, (Kind::Float, observed.device()));
        let g = (taps.square() / (-2.0 * sigma * sigma)).exp();
        let g = &g / g.sum(Kind::Float);
        let blur = |t: &Tensor| -> Tensor {
            // Separable, zero padded, channel by channel (groups = C).
            let kr = g.view([1, 1, 1, -1]).expand([c, 1, 1, 2 * radius + 1], true);
            let kc = g.view([1, 1, -1, 1]).expand([c, 1, 2 * radius + 1, 1], true);
            let t = t.conv2d(&kr, None::<Tensor>, [1, 1], [0, radius], [1, 1], c);
            t.conv2d(&kc, None::<Tensor>, [1, 1], [radius, 0], [1, 1], c)
        };
        let weight = blur(mask);
        let value = blur(&(observed * mask)) / weight.clamp_min(1e-12);
        let take = filled.lt(0.5).logical_and(&weight.gt(1e-3 / (sigma * sigma)));
        estimate = estimate.where_self(&take.logical_not(), &value);
        filled = filled.where_self(&take.logical_not(), &filled.ones_like());
        sigma *= 2.0;
    }
    estimate
}

/// The image shape (C, H, W) an operator works at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: i64,
    pub height: i64,
    pub width: i64,
}

impl ImageShape {
    pub fn numel(&self) -> usize {
        (self.channels * self.height * self.width) as usize
    }
    fn dims(&self) -> [i64; 4] {
        [1, self.channels, self.height, self.width]
    }
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::invalid_argument(format!("{what}: {got} measurement values, expected {want}")));
    }
    if want == 0 {
        return Err(Error::invalid_argument(format!("{what}: the operator measures nothing")));
    }
    Ok(())
}

/// Image-layout measurements: host (H, W, C) interleaved <-> tensor (1, C, H, W).
fn image_from_host(shape: ImageShape, y: &[f32], device: Device, what: &str) -> Result<Tensor> {
    check_len(what, y.len(), shape.numel())?;
    if let Some(i) = y.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid_input(format!("{what}: measurement {i} is not finite")));
    }
    Ok(Tensor::from_slice(y)
        .view([shape.height, shape.width, shape.channels])
        .permute([2, 0, 1])
        .unsqueeze(0)
        .contiguous()
        .to_device(device))
}

fn image_to_host(y: &Tensor) -> Vec<f32> {
    let hwc = y.squeeze_dim(0).permute([1, 2, 0]).to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    Vec::<f32>::try_from(hwc.view([-1])).expect("float tensor")
}

/// `A = I` (denoising). Measurements: the noisy image, (H, W, C) floats.
pub struct Identity {
    pub shape: ImageShape,
}

impl Operator for Identity {
    fn name(&self) -> &str {
        "denoise"
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.shallow_clone())
    }
    fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.shallow_clone())
    }
    fn normal_solve(&self, b: &Tensor, alpha: f64) -> Option<Result<Tensor>> {
        Some(Ok(b / (1.0 + alpha)))
    }
    fn measurement_len(&self) -> usize {
        self.shape.numel()
    }
    fn measurements_from_host(&self, y: &[f32], device: Device) -> Result<Tensor> {
        image_from_host(self.shape, y, device, "denoise")
    }
    fn measurements_to_host(&self, y: &Tensor) -> Vec<f32> {
        image_to_host(y)
    }
    fn initial_estimate(&self, back_projection: &Tensor) -> Option<Result<Tensor>> {
        // The noisy image itself.
        Some(Ok(back_projection.shallow_clone()))
    }
}

/// `A = diag(mask)` (inpainting): observed pixels where the mask is 1. Measurements: the image
/// (H, W, C) floats, values at unobserved pixels ignored.
pub struct Inpaint {
    pub shape: ImageShape,
    /// (1, C, H, W) of 0 and 1.
    mask: Tensor,
}

impl Inpaint {
    /// `mask`: (H, W) or (H, W, C) host values; nonzero means observed.
    pub fn new(shape: ImageShape, mask: &[f32], device: Device) -> Result<Inpaint> {
        let plane = (shape.height * shape.width) as usize;
        let mask = if mask.len() == plane {
            Tensor::from_slice(mask).view([1, 1, shape.height, shape.width]).expand(shape.dims(), false)
        } else if mask.len() == shape.numel() {
            Tensor::from_slice(mask)
                .view([shape.height, shape.width, shape.channels])
                .permute([2, 0, 1])
                .unsqueeze(0)
        } else {
            return Err(Error::invalid_argument(format!(
                "inpaint: the mask has {} values, expected {plane} (H x W) or {} (H x W x C)",
                mask.len(),
                shape.numel()
            )));
        };
        let mask = mask.ne(0.0).to_kind(Kind::Float).contiguous().to_device(device);
        if mask.sum(Kind::Float).double_value(&[]) == 0.0 {
            return Err(Error::invalid_argument("inpaint: the mask observes no pixel"));
        }
        Ok(Inpaint { shape, mask })
    }

    /// A random mask observing each pixel with probability `fraction` (same pixels in every
    /// channel), from a seeded generator.
    pub fn random(shape: ImageShape, fraction: f64, seed: u64, device: Device) -> Result<Inpaint> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(Error::invalid_argument(format!(
                "inpaint: observed fraction {fraction} is not in (0, 1]"
            )));
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mask: Vec<f32> = (0..shape.height * shape.width)
            .map(|_| if rng.gen::<f64>() < fraction { 1.0 } else { 0.0 })
            .collect();
        Inpaint::new(shape, &mask, device)
    }

    pub fn mask(&self) -> &Tensor {
        &self.mask
    }
}

impl Operator for Inpaint {
    fn name(&self) -> &str {
        "inpaint"
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x * &self.mask)
    }
    fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y * &self.mask)
    }
    fn normal_solve(&self, b: &Tensor, alpha: f64) -> Option<Result<Tensor>> {
        Some(Ok(b / (&self.mask + alpha)))
    }
    fn measurement_len(&self) -> usize {
        self.shape.numel()
    }
    fn measurements_from_host(&self, y: &[f32], device: Device) -> Result<Tensor> {
        // Unobserved values are ignored, so NaN there is allowed (a common "missing" marker).
        check_len("inpaint", y.len(), self.shape.numel())?;
        let t = Tensor::from_slice(y)
            .view([self.shape.height, self.shape.width, self.shape.channels])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .to_device(device);
        let observed = t.where_self(&self.mask.ne(0.0), &t.zeros_like());
        if !bool::try_from(observed.isfinite().all()).unwrap_or(false) {
            return Err(Error::invalid_input("inpaint: an observed measurement is not finite"));
        }
        Ok(observed * &self.mask)
    }
    fn measurements_to_host(&self, y: &Tensor) -> Vec<f32> {
        image_to_host(y)
    }
    fn initial_estimate(&self, back_projection: &Tensor) -> Option<Result<Tensor>> {
        Some(Ok(fill_gaps(back_projection, &self.mask)))
    }
}

/// `A = M F`: masked, centred, unitary Fourier transform (radio interferometry in the paper's
/// simplified form). Measurements: the measured frequencies in row-major order of the mask
/// (centred layout, DC at (H/2, W/2)), per channel, as (real, imaginary) pairs:
/// `C * count * 2` floats.
pub struct FourierSampling {
    pub shape: ImageShape,
    op: FourierMask,
    /// Flat indices of the measured frequencies.
    index: Tensor,
}

impl FourierSampling {
    /// `mask`: (H, W) host values in the centred layout; nonzero means measured.
    pub fn new(shape: ImageShape, mask: &[f32], device: Device) -> Result<FourierSampling> {
        let plane = (shape.height * shape.width) as usize;
        if mask.len() != plane {
            return Err(Error::invalid_argument(format!(
                "fourier-mask: the mask has {} values, expected {plane} (H x W)",
                mask.len()
            )));
        }
        let m = Tensor::from_slice(mask).view([shape.height, shape.width]).to_device(device);
        let op = FourierMask::from_centred(&m)?;
        if op.count() == 0 {
            return Err(Error::invalid_argument("fourier-mask: the mask measures no frequency"));
        }
        let index = op.mask().reshape([-1]).nonzero().view([-1]);
        Ok(FourierSampling { shape, op, index })
    }

    pub fn count(&self) -> usize {
        self.index.size()[0] as usize
    }
}

impl Operator for FourierSampling {
    fn name(&self) -> &str {
        "fourier-mask"
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.op.forward(x)
    }
    fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        Ok(self.op.adjoint(y)?.to_kind(Kind::Float))
    }
    fn normal_solve(&self, b: &Tensor, alpha: f64) -> Option<Result<Tensor>> {
        Some(self.op.normal_solve(b, alpha).map(|x| x.to_kind(Kind::Float)))
    }
    fn measurement_len(&self) -> usize {
        self.shape.channels as usize * self.count() * 2
    }
    fn measurements_from_host(&self, y: &[f32], device: Device) -> Result<Tensor> {
        check_len("fourier-mask", y.len(), self.measurement_len())?;
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_input(format!("fourier-mask: measurement value {i} is not finite")));
        }
        let (c, p) = (self.shape.channels, self.count() as i64);
        let values = Tensor::from_slice(y).view([c, p, 2]).to_device(device).view_as_complex();
        let plane = Tensor::zeros([c, self.shape.height * self.shape.width], (Kind::ComplexFloat, device));
        let plane = plane.index_copy(1, &self.index.to_device(device), &values);
        Ok(plane.view(self.shape.dims()))
    }
    fn measurements_to_host(&self, y: &Tensor) -> Vec<f32> {
        let c = self.shape.channels;
        let values = y.view([c, -1]).index_select(1, &self.index.to_device(y.device()));
        let pairs = values.to_kind(Kind::ComplexFloat).view_as_real().to_device(Device::Cpu).contiguous();
        Vec::<f32>::try_from(pairs.view([-1])).expect("float tensor")
    }
}

/// `A` = periodic convolution by a kernel (deblurring). Measurements: the blurred image,
/// (H, W, C) floats.
pub struct Blur {
    pub shape: ImageShape,
    op: FourierBlur,
}

impl Blur {
    /// `kernel`: (kh, kw) row-major host values.
    pub fn new(shape: ImageShape, kernel: &[f32], kh: usize, kw: usize) -> Result<Blur> {
        if kh == 0 || kw == 0 || kernel.len() != kh * kw {
            return Err(Error::invalid_argument(format!(
                "blur: the kernel has {} values, {kh} x {kw} needs {}",
                kernel.len(),
                kh * kw
            )));
        }
        if kernel.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid_argument("blur: the kernel holds NaN or infinite values"));
        }
        let k = Tensor::from_slice(kernel).view([kh as i64, kw as i64]);
        Ok(Blur { shape, op: FourierBlur::new(&k, shape.height, shape.width)? })
    }
}

impl Operator for Blur {
    fn name(&self) -> &str {
        "blur"
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.op.forward(x)?.to_kind(Kind::Float))
    }
    fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        Ok(self.op.adjoint(y)?.to_kind(Kind::Float))
    }
    fn normal_solve(&self, b: &Tensor, alpha: f64) -> Option<Result<Tensor>> {
        Some(self.op.normal_solve(b, alpha).map(|x| x.to_kind(Kind::Float)))
    }
    fn measurement_len(&self) -> usize {
        self.shape.numel()
    }
    fn measurements_from_host(&self, y: &[f32], device: Device) -> Result<Tensor> {
        image_from_host(self.shape, y, device, "blur")
    }
    fn measurements_to_host(&self, y: &Tensor) -> Vec<f32> {
        image_to_host(y)
    }
}

/// Weak-lensing shear `gamma = F^-1 D F kappa` (one channel). `|D| = 1`, so `A^T A = I` and the
/// data step is closed-form. Measurements: the shear, (H, W, 2) floats (real, imaginary).
pub struct Lensing {
    pub shape: ImageShape,
}

impl Lensing {
    pub fn new(shape: ImageShape) -> Result<Lensing> {
        if shape.channels != 1 {
            return Err(Error::invalid_argument(format!(
                "lensing: the convergence has 1 channel, the model produces {}",
                shape.channels
            )));
        }
        Ok(Lensing { shape })
    }
}

impl Operator for Lensing {
    fn name(&self) -> &str {
        "lensing"
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(lensing::shear(x)?.to_kind(Kind::Float))
    }
    fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        Ok(lensing::shear_adjoint(y)?.to_kind(Kind::Float))
    }
    fn normal_solve(&self, b: &Tensor, alpha: f64) -> Option<Result<Tensor>> {
        Some(Ok(b / (1.0 + alpha)))
    }
    fn measurement_len(&self) -> usize {
        (self.shape.height * self.shape.width * 2) as usize
    }
    fn measurements_from_host(&self, y: &[f32], device: Device) -> Result<Tensor> {
        image_from_host(ImageShape { channels: 2, ..self.shape }, y, device, "lensing")
    }
    fn measurements_to_host(&self, y: &Tensor) -> Vec<f32> {
        image_to_host(y)
    }
}

/// Parallel-beam CT (sparse-view or limited-angle): no closed form, the data step runs
/// conjugate gradients. Measurements: the sinogram, (angles, detectors) floats row-major, per
/// channel.
pub struct Ct {
    pub shape: ImageShape,
    radon: Radon,
}

impl Ct {
    pub fn new(shape: ImageShape, angles_deg: Vec<f64>) -> Result<Ct> {
        Ok(Ct { shape, radon: Radon::new(shape.height, shape.width, angles_deg)? })
    }
    pub fn radon(&self) -> &Radon {
        &self.radon
    }
}

impl Operator for Ct {
    fn name(&self) -> &str {
        "radon"
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.radon.forward(x)?.to_kind(Kind::Float))
    }
    fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        Ok(self.radon.adjoint(y)?.to_kind(Kind::Float))
    }
    fn measurement_len(&self) -> usize {
        (self.shape.channels * self.radon.n_angles() * self.radon.n_det()) as usize
    }
    fn measurements_from_host(&self, y: &[f32], device: Device) -> Result<Tensor> {
        check_len("radon", y.len(), self.measurement_len())?;
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_input(format!("radon: sinogram value {i} is not finite")));
        }
        Ok(Tensor::from_slice(y)
            .view([1, self.shape.channels, self.radon.n_angles(), self.radon.n_det()])
            .to_device(device))
    }
}

/// A user operator given as two functions on host buffers (the C ABI's callbacks):
/// `forward(x, y)` writes `A x` into `y` (`measurement_len` floats), `adjoint(y, x)` writes
/// `A^T y` into `x` (`C H W` floats, (H, W, C) interleaved). Errors are reported as strings.
pub struct Callbacks {
    pub shape: ImageShape,
    pub measurement_len: usize,
    pub forward: Box<ApplyFn>,
    pub adjoint: Box<ApplyFn>,
}

/// A user operator's map on host buffers: reads the input, fills the output, or says why not.
pub type ApplyFn = dyn Fn(&[f32], &mut [f32]) -> std::result::Result<(), String> + Send;

impl Callbacks {
    fn call(
        &self,
        f: &ApplyFn,
        input: Vec<f32>,
        out_len: usize,
        what: &str,
    ) -> Result<Vec<f32>> {
        let mut out = vec![0f32; out_len];
        f(&input, &mut out)
            .map_err(|e| Error::invalid_argument(format!("the user operator's {what} failed: {e}")))?;
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_input(format!(
                "the user operator's {what} wrote a non-finite value at {i}"
            )));
        }
        Ok(out)
    }
}

impl Operator for Callbacks {
    fn name(&self) -> &str {
        "user"
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.call(&*self.forward, image_to_host(x), self.measurement_len, "forward")?;
        Ok(Tensor::from_slice(&y).to_device(x.device()))
    }
    fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        let host =
            Vec::<f32>::try_from(y.to_kind(Kind::Float).to_device(Device::Cpu).contiguous().view([-1]))
                .expect("float tensor");
        let x = self.call(&*self.adjoint, host, self.shape.numel(), "adjoint")?;
        image_from_host(self.shape, &x, y.device(), "user adjoint")
    }
    fn measurement_len(&self) -> usize {
        self.measurement_len
    }
    fn measurements_from_host(&self, y: &[f32], device: Device) -> Result<Tensor> {
        check_len("user operator", y.len(), self.measurement_len)?;
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_input(format!("user operator: measurement {i} is not finite")));
        }
        Ok(Tensor::from_slice(y).to_device(device))
    }
}
