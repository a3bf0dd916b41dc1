//! Parallel-beam Radon transform, its exact adjoint, ramp-filtered back-projection, and the LDCT
//! noise model, with scikit-image's geometry (`skimage.transform.radon(image, theta,
//! circle=False)` and `iradon(sinogram, theta, filter_name='ramp', interpolation='linear',
//! circle=False)`).
//!
//! # Geometry
//! * Images are `(B, C, H, W)`; every plane is transformed independently.
//! * Angles are in degrees; [`uniform_angles`]`(n)` is `linspace(0, 180, n, endpoint=False)`, and
//!   180 of them is the paper's LDCT setting.
//! * The detector has `n_det = ceil(sqrt(2) * max(H, W))` bins, enough for the image's diagonal
//!   at every angle (no circle restriction). Detector bin `k` sits at offset `s = k - n_det / 2`
//!   (integer division) from the rotation axis, which passes through pixel `(H / 2, W / 2)`
//!   (integer division): the same pixel skimage's zero padding puts at the centre of its square.
//! * Sinograms are `(B, C, A, n_det)`: angle-major, so `sinogram[b, c, a, k]` is skimage's
//!   `radon(...)[k, a]` (skimage returns `(n_det, A)`; transpose the last two axes to compare).
//!
//! # Forward model (what skimage computes, written out)
//! For angle `theta` and detector offset `s`, the ray is sampled at every offset `t` in the
//! same range `[-n_det/2, n_det - 1 - n_det/2]`, at the image point
//! `row = H/2 - s sin(theta) + t cos(theta)`, `col = W/2 + s cos(theta) + t sin(theta)`, with
//! bilinear interpolation that treats pixels outside the image as zero (skimage's
//! `warp(order=1, mode='constant')`), and the samples are summed (unit step, no scaling).
//! We evaluate exactly these sample points and weights, so the only difference from skimage is
//! floating-point rounding (see the tests for the tolerances).
//!
//! The forward pass is torch's fused `grid_sample` (bilinear, zero padding) on a grid of these
//! sample points, chunk by chunk over angles, summed along each ray. [`Radon::adjoint`] is
//! `grid_sample`'s own input-gradient kernel on the same grid (through autograd), so the pair
//! is an exact transpose to rounding (what conjugate-gradient solvers need) on any device. The
//! sample points are computed in float64 and rounded once to the data's kind; in float32 that
//! rounding (about 1e-5 pixel at 128 x 128) is the main difference from skimage.
//!
//! # Filtered back-projection
//! [`Radon::fbp`] reproduces `iradon`'s ramp filter (the spatially band-limited ramp of Kak &
//! Slaney eq. 61, on a zero-padded detector of `max(64, 2^ceil(log2(2 n_det)))` bins), its
//! linear-interpolation back-projection (zero outside the detector), and its final scale
//! `pi / (2 A)`. This back-projection is *not* [`Radon::adjoint`]: it interpolates the sinogram
//! at each pixel's exact detector position instead of transposing the forward interpolation,
//! just as skimage does.

use std::sync::Mutex;

use rand::Rng;
use tch::{Device, Kind, Tensor};

use super::{dims4, real_kind, standard_normal};
use crate::error::{Error, Result};

/// Upper bound on the elements of one chunk's temporaries (samples x planes), about 64 MiB of
/// float32: bounds memory at large sizes without making small problems pay for many launches.
const CHUNK_ELEMENTS: i64 = 1 << 24;
/// Largest grid (in elements) a [`Radon`] keeps between calls: 128 MiB of float32, which holds
/// the forward grid of 180 angles up to about 180 x 180 images (the paper's LDCT is 128 x 128).
pub const CACHE_ELEMENTS: i64 = 1 << 25;
/// grid_sample's interpolation and padding modes (ATen's enum values).
const BILINEAR: i64 = 0;
const ZERO_PADDING: i64 = 0;

/// `n` angles in degrees evenly spaced over `[0, 180)`: numpy's `linspace(0, 180, n, endpoint=False)`.
pub fn uniform_angles(n: usize) -> Vec<f64> {
    (0..n).map(|i| 180.0 * i as f64 / n as f64).collect()
}

/// Detector bins of skimage's `radon(circle=False)` for an H x W image: `ceil(sqrt(2) max(H, W))`.
pub fn detector_count(height: i64, width: i64) -> i64 {
    (std::f64::consts::SQRT_2 * height.max(width) as f64).ceil() as i64
}

/// Parallel-beam geometry for H x W images; see the module documentation for the conventions.
///
/// A `Radon` keeps the sampling grids of its most recent device and kind (when each is under
/// [`CACHE_ELEMENTS`]), so repeated calls, as in data generation or iterative solvers, only
/// pay for the interpolation. It can be shared between threads.
#[derive(Debug)]
pub struct Radon {
    height: i64,
    width: i64,
    angles_deg: Vec<f64>,
    n_det: i64,
    cache: Mutex<GridCache>,
}

impl Clone for Radon {
    fn clone(&self) -> Radon {
        Radon { cache: Mutex::default(), angles_deg: self.angles_deg.clone(), ..*self }
    }
}

/// Grids computed once per (device, kind): see [`Radon::forward_grid`] and [`Radon::fbp_grid`].
#[derive(Debug, Default)]
struct GridCache {
    /// (device, kind) -> forward sampling grid of all angles, `(1, A n, n, 2)`.
    forward: Option<(Device, Kind, Tensor)>,
    /// (device, kind, out_h, out_w) -> back-projection grid `(A, 1, P, 2)` and mask `(A, 1, P)`.
    fbp: Option<(Device, Kind, i64, i64, Tensor, Tensor)>,
}

impl Radon {
    /// A geometry for H x W images at the given angles (degrees, any values and order).
    pub fn new(height: i64, width: i64, angles_deg: Vec<f64>) -> Result<Radon> {
        if height < 1 || width < 1 {
            return Err(Error::invalid_argument(format!("Radon: image size {height} x {width} is empty")));
        }
        if angles_deg.is_empty() || angles_deg.iter().any(|a| !a.is_finite()) {
            return Err(Error::invalid_argument(
                "Radon: the angles must be a non-empty list of finite degrees",
            ));
        }
        Ok(Radon { height, width, angles_deg, n_det: detector_count(height, width), cache: Mutex::default() })
    }

    /// `n_angles` angles evenly over [0, 180) degrees (the paper's LDCT setting is 180).
    pub fn uniform(height: i64, width: i64, n_angles: usize) -> Result<Radon> {
        Radon::new(height, width, uniform_angles(n_angles))
    }

    pub fn height(&self) -> i64 {
        self.height
    }
    pub fn width(&self) -> i64 {
        self.width
    }
    pub fn angles_deg(&self) -> &[f64] {
        &self.angles_deg
    }
    pub fn n_angles(&self) -> i64 {
        self.angles_deg.len() as i64
    }
    /// Detector bins per projection.
    pub fn n_det(&self) -> i64 {
        self.n_det
    }

    /// Sinogram of `(B, C, H, W)` images: `(B, C, A, n_det)`.
    pub fn forward(&self, image: &Tensor) -> Result<Tensor> {
        let [b, c, h, w] = dims4(image, "Radon::forward: the image")?;
        if (h, w) != (self.height, self.width) {
            return Err(Error::invalid_argument(format!(
                "Radon::forward: image is {h} x {w}, the geometry is {} x {}",
                self.height, self.width
            )));
        }
        let kind = real_kind(image);
        let n = self.n_det;
        // All B * C planes share one sampling grid: fold them into grid_sample's channels.
        let planes = image.to_kind(kind).reshape([1, b * c, h, w]);
        let mut chunks = Vec::new();
        for (first, count) in self.angle_chunks(b * c) {
            let grid = self.forward_grid(first, count, kind, image.device());
            let samples = planes.grid_sampler(&grid, BILINEAR, ZERO_PADDING, false);
            // (1, BC, count * n_t, n_s) -> sum over the ray position t.
            chunks.push(samples.view([b * c, count, n, n]).sum_dim_intlist(2, false, kind));
        }
        Ok(Tensor::cat(&chunks, 1).view([b, c, self.n_angles(), n]))
    }

    /// The exact adjoint of [`Radon::forward`] (unfiltered back-projection): `(B, C, A, n_det)`
    /// to `(B, C, H, W)`. Its result carries no gradient: libtorch has no second derivative of
    /// `grid_sample`, so a sinogram that requires grad is refused unless gradients are off
    /// (`tch::no_grad`), rather than silently detached.
    pub fn adjoint(&self, sinogram: &Tensor) -> Result<Tensor> {
        let [b, c] = self.check_sinogram(sinogram, "Radon::adjoint")?;
        if sinogram.requires_grad() && grad_mode_enabled() {
            return Err(Error::invalid_argument(
                "Radon::adjoint cannot be differentiated (libtorch has no second derivative of grid_sample): \
                 detach the sinogram or call it under tch::no_grad",
            ));
        }
        let kind = real_kind(sinogram);
        let device = sinogram.device();
        let n = self.n_det;
        let bins = sinogram.detach().to_kind(kind).reshape([b * c, self.n_angles(), 1, n]);
        let mut image = Tensor::zeros([1, b * c, self.height, self.width], (kind, device));
        for (first, count) in self.angle_chunks(b * c) {
            let grid = self.forward_grid(first, count, kind, device);
            let chunk = bins.narrow(1, first, count);
            // <forward(probe), y> is linear in the probe with gradient forward^T y: grid_sample's
            // input-gradient kernel scatters each bin's value (broadcast along its ray) back
            // through the same bilinear weights the forward pass gathered with.
            let contribution = tch::with_grad(|| {
                let probe = Tensor::zeros([1, b * c, self.height, self.width], (kind, device))
                    .set_requires_grad(true);
                let samples =
                    probe.grid_sampler(&grid, BILINEAR, ZERO_PADDING, false).view([b * c, count, n, n]);
                let pairing = (samples * &chunk).sum(kind);
                Tensor::run_backward(&[pairing], &[&probe], false, false).remove(0)
            });
            image += contribution;
        }
        Ok(image.view([b, c, self.height, self.width]))
    }

    /// Filtered back-projection with the ramp filter onto the geometry's own H x W grid.
    /// For square images this is exactly skimage's `iradon(..., filter_name='ramp',
    /// circle=False)` with its default output size (`floor(n_det / sqrt 2)`, which equals H).
    pub fn fbp(&self, sinogram: &Tensor) -> Result<Tensor> {
        self.fbp_with_size(sinogram, self.height, self.width)
    }

    /// Filtered back-projection onto an `out_h x out_w` grid centred on pixel
    /// `(out_h / 2, out_w / 2)` (skimage's `output_size` argument when square).
    pub fn fbp_with_size(&self, sinogram: &Tensor, out_h: i64, out_w: i64) -> Result<Tensor> {
        if out_h < 1 || out_w < 1 {
            return Err(Error::invalid_argument(format!(
                "Radon::fbp: output size {out_h} x {out_w} is empty"
            )));
        }
        let filtered = self.ramp_filter(sinogram)?;
        let [b, c] = self.check_sinogram(sinogram, "Radon::fbp")?;
        let kind = real_kind(sinogram);
        let device = sinogram.device();
        let n = self.n_det;
        let n_pix = out_h * out_w;
        // Angles become grid_sample's batch, each projection a 1 x n_det "image" whose channels
        // are the B * C planes; every output pixel samples it at its detector position.
        let projections = filtered.reshape([b * c, self.n_angles(), 1, n]).permute([1, 0, 2, 3]);
        let chunk_angles = (CHUNK_ELEMENTS / (n_pix * b * c).max(1)).clamp(1, self.n_angles());
        let mut image = Tensor::zeros([b * c, n_pix], (kind, device));
        let mut first = 0;
        while first < self.n_angles() {
            let count = chunk_angles.min(self.n_angles() - first);
            let (grid, inside) = self.fbp_grid(first, count, out_h, out_w, kind, device);
            let samples =
                projections.narrow(0, first, count).grid_sampler(&grid, BILINEAR, ZERO_PADDING, true);
            // (count, BC, 1, n_pix) -> masked sum over the chunk's angles.
            image += (samples.view([count, b * c, n_pix]) * inside).sum_dim_intlist(0, false, kind);
            first += count;
        }
        let scale = std::f64::consts::PI / (2.0 * self.n_angles() as f64);
        Ok((image * scale).view([b, c, out_h, out_w]))
    }

    /// The ramp-filtered sinogram (`(B, C, A, n_det)`), as `iradon` filters it before
    /// back-projection: zero-pad each projection to [`Radon::filter_length`] bins, multiply its
    /// DFT by [`ramp_filter_response`], invert, keep the first `n_det` bins.
    pub fn ramp_filter(&self, sinogram: &Tensor) -> Result<Tensor> {
        self.check_sinogram(sinogram, "Radon::ramp_filter")?;
        let kind = real_kind(sinogram);
        let padded = self.filter_length();
        // The response is real and even, so a real FFT pair computes skimage's
        // `real(ifft(fft(x) * H))` exactly.
        let response = ramp_filter_response(padded);
        let half_spectrum = Tensor::from_slice(&response[..(padded / 2 + 1) as usize])
            .to_kind(kind)
            .to_device(sinogram.device());
        let spectrum = sinogram.to_kind(kind).fft_rfft(padded, -1, "backward") * half_spectrum;
        Ok(spectrum.fft_irfft(padded, -1, "backward").narrow(-1, 0, self.n_det))
    }

    /// Zero-padded projection length of the ramp filter: `max(64, 2^ceil(log2(2 n_det)))`.
    pub fn filter_length(&self) -> i64 {
        ((2 * self.n_det) as u64).next_power_of_two().max(64) as i64
    }

    fn check_sinogram(&self, sinogram: &Tensor, what: &str) -> Result<[i64; 2]> {
        let [b, c, a, n] = dims4(sinogram, &format!("{what}: the sinogram"))?;
        if (a, n) != (self.n_angles(), self.n_det) {
            return Err(Error::invalid_argument(format!(
                "{what}: sinogram has {a} angles x {n} bins, the geometry has {} x {}",
                self.n_angles(),
                self.n_det
            )));
        }
        Ok([b, c])
    }

    /// The forward grid of angles `first .. first + count`: a view of the cached grid when it
    /// fits [`CACHE_ELEMENTS`], else computed for the chunk.
    fn forward_grid(&self, first: i64, count: i64, kind: Kind, device: Device) -> Tensor {
        let n = self.n_det;
        if self.n_angles() * n * n * 2 > CACHE_ELEMENTS {
            return self.sampling_grid(first, count, kind, device);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let hit = matches!(&cache.forward, Some((d, k, _)) if *d == device && *k == kind);
        if !hit {
            cache.forward = Some((device, kind, self.sampling_grid(0, self.n_angles(), kind, device)));
        }
        let (_, _, grid) = cache.forward.as_ref().expect("just filled");
        grid.narrow(1, first * n, count * n)
    }

    /// Back-projection geometry of angles `first .. first + count` onto an `out_h x out_w`
    /// grid: the grid_sample grid `(count, 1, P, 2)` into each 1-row projection and the mask
    /// `(count, 1, P)` of pixels whose detector position lies within the detector. Cached like
    /// [`Radon::forward_grid`].
    fn fbp_grid(
        &self,
        first: i64,
        count: i64,
        out_h: i64,
        out_w: i64,
        kind: Kind,
        device: Device,
    ) -> (Tensor, Tensor) {
        if self.n_angles() * out_h * out_w * 2 > CACHE_ELEMENTS {
            return self.backprojection_grid(first, count, out_h, out_w, kind, device);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let hit = matches!(&cache.fbp, Some((d, k, h, w, _, _)) if (*d, *k, *h, *w) == (device, kind, out_h, out_w));
        if !hit {
            let (grid, inside) = self.backprojection_grid(0, self.n_angles(), out_h, out_w, kind, device);
            cache.fbp = Some((device, kind, out_h, out_w, grid, inside));
        }
        let (_, _, _, _, grid, inside) = cache.fbp.as_ref().expect("just filled");
        (grid.narrow(0, first, count), inside.narrow(0, first, count))
    }

    fn backprojection_grid(
        &self,
        first: i64,
        count: i64,
        out_h: i64,
        out_w: i64,
        kind: Kind,
        device: Device,
    ) -> (Tensor, Tensor) {
        let n = self.n_det;
        let n_pix = out_h * out_w;
        // Pixel offsets from the output centre, float64 like skimage's index arithmetic.
        let opts = (Kind::Double, device);
        let row_off = (Tensor::arange(out_h, opts) - (out_h / 2) as f64).view([1, out_h, 1]);
        let col_off = (Tensor::arange(out_w, opts) - (out_w / 2) as f64).view([1, 1, out_w]);
        let half = (n / 2) as f64;
        let last = (n - 1) as f64 - half;
        let (cos, sin) = self.trig(first, count, device);
        // Detector offset of each pixel: t = col cos - row sin (skimage's `ypr cos - xpr sin`).
        let t = (&col_off * cos.view([count, 1, 1]) - &row_off * sin.view([count, 1, 1]))
            .view([count, 1, n_pix, 1]);
        // np.interp(left=0, right=0) is zero outside [first bin, last bin]; grid_sample would
        // still weight the edge bin there, so those pixels are masked out.
        let inside = t.ge(-half).logical_and(&t.le(last)).to_kind(kind).view([count, 1, n_pix]);
        // align_corners = true: x = -1 and 1 are the centres of the first and last bins, so
        // x = 2 (t + half) / (n - 1) - 1 (n >= 2 always); y = 0 is the single row, exactly.
        let x = (t + half) * (2.0 / (n - 1) as f64) - 1.0;
        let grid = Tensor::cat(&[x.shallow_clone(), x.zeros_like()], -1).to_kind(kind);
        (grid, inside)
    }

    /// (first angle, count) chunks such that one chunk's samples for `planes` planes stay under
    /// [`CHUNK_ELEMENTS`].
    fn angle_chunks(&self, planes: i64) -> Vec<(i64, i64)> {
        let per_angle = self.n_det * self.n_det * planes.max(1);
        let step = (CHUNK_ELEMENTS / per_angle).clamp(1, self.n_angles());
        (0..self.n_angles())
            .step_by(step as usize)
            .map(|first| (first, step.min(self.n_angles() - first)))
            .collect()
    }

    /// cos and sin of angles `first .. first + count`, float64 on `device`.
    fn trig(&self, first: i64, count: i64, device: Device) -> (Tensor, Tensor) {
        let radians: Vec<f64> = self.angles_deg[first as usize..(first + count) as usize]
            .iter()
            .map(|a| a.to_radians())
            .collect();
        let (cos, sin): (Vec<f64>, Vec<f64>) = radians.iter().map(|r| (r.cos(), r.sin())).unzip();
        (Tensor::from_slice(&cos).to_device(device), Tensor::from_slice(&sin).to_device(device))
    }

    /// grid_sample grid `(1, count * n, n, 2)` of the samples of angles `first .. first + count`:
    /// row `(a, t)`, column `s` holds the image point of ray offset `s` at position `t` (module
    /// documentation), as (x = column, y = row) normalised with `align_corners = false`
    /// (`x = (2 col + 1) / W - 1`, which, unlike `align_corners = true`, also works for
    /// one-pixel-wide images). Computed in float64 and rounded once to the data's kind.
    fn sampling_grid(&self, first: i64, count: i64, kind: Kind, device: Device) -> Tensor {
        let n = self.n_det;
        let (h, w) = (self.height as f64, self.width as f64);
        let offsets = Tensor::arange(n, (Kind::Double, device)) - (n / 2) as f64;
        let s = offsets.view([1, 1, n]);
        let t = offsets.view([1, n, 1]);
        let (cos, sin) = self.trig(first, count, device);
        let (cos, sin) = (cos.view([count, 1, 1]), sin.view([count, 1, 1]));
        // x = (2 (W/2 + s cos + t sin) + 1) / W - 1, y = (2 (H/2 - s sin + t cos) + 1) / H - 1.
        let x0 = (2.0 * (self.width / 2) as f64 + 1.0) / w - 1.0;
        let y0 = (2.0 * (self.height / 2) as f64 + 1.0) / h - 1.0;
        let x = &s * (&cos * (2.0 / w)) + &t * (&sin * (2.0 / w)) + x0;
        let y = &t * (&cos * (2.0 / h)) - &s * (&sin * (2.0 / h)) + y0;
        Tensor::stack(&[x, y], -1).to_kind(kind).view([1, count * n, n, 2])
    }
}

/// Whether libtorch records gradients here (false inside `tch::no_grad`).
fn grad_mode_enabled() -> bool {
    (Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true) * 1.0).requires_grad()
}

/// skimage's ramp filter response on a zero-padded projection of `size` bins (even), in DFT
/// order: the DFT of the sampled band-limited ramp kernel (`h[0] = 1/4`, `h[k] = -1/(pi k)^2`
/// for odd circular offsets `k`, zero for even ones), times two. Computing it from the spatial
/// kernel rather than sampling `|f|` avoids the DC bias of a sampled ramp (Kak & Slaney eq. 61).
pub fn ramp_filter_response(size: i64) -> Vec<f64> {
    let size = size as usize;
    let mut kernel = vec![0.0f64; size];
    kernel[0] = 0.25;
    for (j, value) in kernel.iter_mut().enumerate().skip(1).step_by(2) {
        let k = j.min(size - j) as f64; // circular distance from 0
        *value = -1.0 / (std::f64::consts::PI * k).powi(2);
    }
    // Direct real DFT: the kernel is real and even, so only the cosine terms survive. O(size^2 / 4)
    // is nothing next to the back-projection and keeps the filter independent of FFT rounding.
    let mut response = vec![0.0f64; size];
    for (f, out) in response.iter_mut().enumerate().take(size / 2 + 1) {
        let mut acc = kernel[0];
        for (j, &h) in kernel.iter().enumerate().skip(1).step_by(2) {
            let phase = 2.0 * std::f64::consts::PI * ((j * f) % size) as f64 / size as f64;
            acc += h * phase.cos();
        }
        *out = 2.0 * acc;
    }
    for f in size / 2 + 1..size {
        response[f] = response[size - f];
    }
    response
}

/// Noise standard deviation, per batch element, for a signal-to-noise ratio in dB relative to
/// the signal's RMS: `sigma = rms * 10^(-snr/20)`, the RMS taken over all of an element's
/// values (all dimensions but the first). Returns a `(B,)` tensor.
///
/// This is the effective noise level of the reference's LDCT data: it scales unit noise by
/// `10^(-snr/20) ||s||_2` and then divides by `sqrt(#entries)`, i.e. by exactly the factor that
/// turns the norm into the RMS.
pub fn snr_noise_sigma(signal: &Tensor, snr_db: f64) -> Tensor {
    let kind = real_kind(signal);
    let batch = signal.size()[0];
    let rms = signal.to_kind(kind).reshape([batch, -1]).square().mean_dim(1, false, kind).sqrt();
    rms * 10f64.powf(-snr_db / 20.0)
}

/// The LDCT noise model: `signal + sigma * n` with `n` standard normal and `sigma` from
/// [`snr_noise_sigma`] (each batch element its own). The noise is drawn from `rng` on the CPU.
pub fn add_snr_noise<R: Rng + ?Sized>(signal: &Tensor, snr_db: f64, rng: &mut R) -> Tensor {
    let kind = real_kind(signal);
    let size = signal.size();
    let sigma = snr_noise_sigma(signal, snr_db);
    let mut sigma_shape = vec![size[0]];
    sigma_shape.extend(std::iter::repeat_n(1, size.len() - 1));
    let noise = standard_normal(&size, kind, signal.device(), rng);
    signal.to_kind(kind) + noise * sigma.view(sigma_shape.as_slice())
}

#[cfg(test)]
mod tests {
    use super::super::inner;
    use super::super::test_util::{max_abs_diff, npy_tensor};
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// (image, skimage radon, skimage iradon) for a fixture prefix; the sinograms come as
    /// skimage's (n_det, A) and are transposed to ours.
    fn fixture(name: &str) -> (Tensor, Tensor, Option<Tensor>) {
        let image = npy_tensor(&format!("{name}_image.npy"));
        let sinogram = npy_tensor(&format!("{name}_radon.npy")).tr();
        let fbp = std::path::Path::new(&super::super::test_util::fixture_path(&format!("{name}_iradon.npy")))
            .exists()
            .then(|| npy_tensor(&format!("{name}_iradon.npy")));
        (image, sinogram, fbp)
    }

    fn angles(name: &str) -> Vec<f64> {
        Vec::<f64>::try_from(npy_tensor(&format!("{name}_theta.npy"))).unwrap()
    }

    fn as4(t: &Tensor) -> Tensor {
        t.unsqueeze(0).unsqueeze(0)
    }

    /// Relative tolerances (to the reference's largest magnitude): float64 differs from skimage
    /// only by summation order, float32 by rounding of the data (sample positions are float64).
    fn check_against_skimage(name: &str) {
        let (image, sino_ref, fbp_ref) = fixture(name);
        let (h, w) = (image.size()[0], image.size()[1]);
        let radon = Radon::new(h, w, angles(name)).unwrap();
        for (kind, rel_tol) in [(Kind::Double, 1e-12), (Kind::Float, 2e-6)] {
            let sino = radon.forward(&as4(&image.to_kind(kind))).unwrap();
            assert_eq!(sino.kind(), kind);
            let (diff, scale) = max_abs_diff(&sino.squeeze(), &sino_ref);
            eprintln!("{name} radon {kind:?}: max |diff| / max |ref| = {:.2e}", diff / scale);
            assert!(diff <= rel_tol * scale, "{name} radon {kind:?}: max diff {diff:e} (scale {scale})");
            if let Some(fbp_ref) = &fbp_ref {
                let sino_ref4 = as4(&sino_ref.to_kind(kind));
                let fbp = radon.fbp(&sino_ref4).unwrap();
                let (diff, scale) = max_abs_diff(&fbp.squeeze(), fbp_ref);
                eprintln!("{name} iradon {kind:?}: max |diff| / max |ref| = {:.2e}", diff / scale);
                assert!(
                    diff <= rel_tol * 10.0 * scale,
                    "{name} iradon {kind:?}: max diff {diff:e} (scale {scale})"
                );
            }
        }
    }

    #[test]
    fn radon_and_fbp_match_skimage_32() {
        check_against_skimage("radon_phantom32");
    }

    #[test]
    fn radon_and_fbp_match_skimage_33() {
        check_against_skimage("radon_phantom33");
    }

    #[test]
    fn radon_matches_skimage_non_square_irregular_angles() {
        check_against_skimage("radon_rect20x27");
    }

    #[test]
    fn fbp_of_noisy_sinogram_matches_skimage() {
        // A sinogram that is not the transform of anything (noise included): tests the filter and
        // the back-projection on their own.
        let sino_ref = npy_tensor("radon_noisy33_sinogram.npy").tr();
        let fbp_ref = npy_tensor("radon_noisy33_iradon.npy");
        let radon = Radon::uniform(33, 33, 180).unwrap();
        let fbp = radon.fbp(&as4(&sino_ref)).unwrap();
        let (diff, scale) = max_abs_diff(&fbp.squeeze(), &fbp_ref);
        assert!(diff <= 1e-11 * scale, "max diff {diff:e}");
    }

    #[test]
    fn ramp_filter_matches_skimage_response() {
        let reference = Vec::<f64>::try_from(npy_tensor("ramp_filter_128.npy")).unwrap();
        let ours = ramp_filter_response(128);
        for (a, b) in ours.iter().zip(&reference) {
            assert!((a - b).abs() < 1e-13, "{a} vs {b}");
        }
    }

    #[test]
    fn forward_and_adjoint_are_a_true_adjoint_pair() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (h, w, n_angles) in [(16, 16, 24), (15, 22, 13)] {
            let radon = Radon::uniform(h, w, n_angles).unwrap();
            for kind in [Kind::Double, Kind::Float] {
                let x = standard_normal(&[2, 1, h, w], kind, Device::Cpu, &mut rng);
                let y = standard_normal(&[2, 1, n_angles as i64, radon.n_det()], kind, Device::Cpu, &mut rng);
                let lhs = inner(&radon.forward(&x).unwrap(), &y);
                let rhs = inner(&x, &radon.adjoint(&y).unwrap());
                let tol = if kind == Kind::Double { 1e-12 } else { 1e-5 };
                assert!((lhs - rhs).abs() <= tol * lhs.abs().max(rhs.abs()), "{kind:?}: {lhs} vs {rhs}");
            }
        }
    }

    #[test]
    fn adjoint_works_under_no_grad_and_refuses_to_differentiate() {
        let radon = Radon::uniform(10, 12, 8).unwrap();
        let y = Tensor::randn([1, 1, 8, radon.n_det()], (Kind::Double, Device::Cpu));
        let plain = radon.adjoint(&y).unwrap();
        let inside = tch::no_grad(|| radon.adjoint(&y).unwrap());
        assert!(plain.allclose(&inside, 1e-14, 1e-14, false));
        let y = y.set_requires_grad(true);
        assert!(radon.adjoint(&y).is_err());
        let detached = tch::no_grad(|| radon.adjoint(&y).unwrap());
        assert!(plain.allclose(&detached, 1e-14, 1e-14, false) && !detached.requires_grad());
    }

    #[test]
    fn batch_planes_are_independent() {
        let radon = Radon::uniform(12, 12, 10).unwrap();
        let x = Tensor::rand([3, 2, 12, 12], (Kind::Double, Device::Cpu));
        let all = radon.forward(&x).unwrap();
        let one = radon.forward(&x.narrow(0, 2, 1).narrow(1, 1, 1)).unwrap();
        assert!(all.narrow(0, 2, 1).narrow(1, 1, 1).allclose(&one, 1e-12, 1e-12, false));
        assert_eq!(all.size(), vec![3, 2, 10, radon.n_det()]);
    }

    #[test]
    fn fbp_approximately_inverts_radon() {
        // A smooth disc: FBP with 180 angles should recover it to within discretisation error.
        let n = 40;
        let coords = Tensor::arange(n, (Kind::Double, Device::Cpu)) - (n / 2) as f64;
        let r2 = coords.view([n, 1]).square() + coords.view([1, n]).square();
        let disc = r2.le(100.0).to_kind(Kind::Double).view([1, 1, n, n]);
        let radon = Radon::uniform(n, n, 180).unwrap();
        let rec = radon.fbp(&radon.forward(&disc).unwrap()).unwrap();
        let inner_err = (&rec - &disc).abs() * r2.le(64.0).to_kind(Kind::Double);
        assert!(inner_err.max().double_value(&[]) < 0.05);
    }

    #[test]
    fn snr_noise_has_the_requested_level_and_is_seeded() {
        let sino = Tensor::rand([2, 1, 90, 64], (Kind::Float, Device::Cpu)) + 1.0;
        let noisy_a = add_snr_noise(&sino, 30.0, &mut ChaCha8Rng::seed_from_u64(3));
        let noisy_b = add_snr_noise(&sino, 30.0, &mut ChaCha8Rng::seed_from_u64(3));
        assert!(noisy_a.equal(&noisy_b));
        let sigma = snr_noise_sigma(&sino, 30.0);
        let measured = (&noisy_a - &sino).reshape([2, -1]).std_dim(1, true, false);
        let ratio = (measured / &sigma).to_kind(Kind::Double);
        for i in 0..2 {
            let r = ratio.double_value(&[i]);
            assert!((r - 1.0).abs() < 0.03, "noise std / sigma = {r}");
        }
        let rms = sino.narrow(0, 0, 1).square().mean(Kind::Double).sqrt().double_value(&[]);
        assert!((sigma.double_value(&[0]) - rms * 10f64.powf(-1.5)).abs() < 1e-6 * rms);
    }
}
