//! Fourier-domain helpers: orthonormal 2-D FFTs, the masked-Fourier operator `A = M F` (radio
//! interferometry without gridding, MRI-like sampling), periodic blur as a Fourier multiplier,
//! and gridding of (u, v) points onto the image's Fourier plane.
//!
//! # Conventions
//! * Transforms act on the last two axes of `(..., H, W)` tensors and use `norm = "ortho"`
//!   (unitary: `||F x|| = ||x||`), so the adjoint of a transform is its inverse.
//! * Uncentred ([`fft2`], [`ifft2`]): DC at index `(0, 0)`, the image origin at pixel `(0, 0)`.
//! * Centred ([`fft2_centred`], [`ifft2_centred`]): `fftshift(fft2(ifftshift(x)))`. The image
//!   origin is pixel `(H/2, W/2)` and DC sits at `(H/2, W/2)` of the spectrum (integer
//!   division): frequency index `(H/2 + v, W/2 + u)` holds `(v, u)` cycles per image. This is
//!   the layout of a uv-coverage picture, and the phase convention of visibilities measured
//!   relative to a phase centre in the middle of the image. (The reference's radio code uses
//!   `fftshift` on the image side, which equals `ifftshift` for the even sizes it uses.)
//! * [`FourierMask`] is defined on the **centred** plane: masks and measurements are both in the
//!   centred layout.
//! * (u, v) coordinates for [`grid_uv`] are in **cycles per image** along the columns (u, the W
//!   axis) and the rows (v, the H axis). [`wavelengths_to_cycles`] converts baselines in
//!   wavelengths for a given pixel scale: an image of `N` pixels of `delta` radians spans
//!   `N delta` radians, so a baseline of `b` wavelengths is `b N delta` cycles per image.

use rand::Rng;
use tch::{Device, Kind, Tensor};

use super::{complex_kind, dims4, real_kind, standard_normal};
use crate::error::{Error, Result};

const LAST_TWO: [i64; 2] = [-2, -1];

/// Unitary 2-D DFT over the last two axes, DC at `(0, 0)`. Real inputs are promoted to complex.
pub fn fft2(x: &Tensor) -> Tensor {
    x.to_kind(complex_kind(x)).fft_fft2(None::<&[i64]>, LAST_TWO, "ortho")
}

/// Inverse of [`fft2`] (and its adjoint). Returns a complex tensor.
pub fn ifft2(k: &Tensor) -> Tensor {
    k.to_kind(complex_kind(k)).fft_ifft2(None::<&[i64]>, LAST_TWO, "ortho")
}

/// Centred unitary 2-D DFT: image origin and DC both at `(H/2, W/2)`.
pub fn fft2_centred(x: &Tensor) -> Tensor {
    fft2(&x.fft_ifftshift(LAST_TWO.as_slice())).fft_fftshift(LAST_TWO.as_slice())
}

/// Inverse of [`fft2_centred`] (and its adjoint).
pub fn ifft2_centred(k: &Tensor) -> Tensor {
    ifft2(&k.fft_ifftshift(LAST_TWO.as_slice())).fft_fftshift(LAST_TWO.as_slice())
}

/// `A x = M . fft2_centred(x)` for real images `x` `(B, C, H, W)`: complex measurements on a
/// boolean mask `M` `(H, W)` of the centred Fourier plane, returned as the full complex plane
/// `(B, C, H, W)` with zeros off the mask (that keeps batches of different masks out of the
/// picture and lets closed-form solvers stay in the Fourier domain; [`FourierMask::gather`]
/// lists the measured values).
#[derive(Debug)]
pub struct FourierMask {
    /// Centred layout, bool, (H, W).
    mask: Tensor,
    /// `(M(k) + M(-k)) / 2` in the unshifted layout, float64: the spectrum of `A^T A` for real
    /// images (see [`FourierMask::normal_solve`]).
    normal_spectrum: Tensor,
}

impl FourierMask {
    /// From a mask in the centred layout (DC at `(H/2, W/2)`); any kind, nonzero means measured.
    pub fn from_centred(mask: &Tensor) -> Result<FourierMask> {
        if mask.dim() != 2 {
            return Err(Error::invalid_argument(format!(
                "FourierMask: mask must be (H, W), got {:?}",
                mask.size()
            )));
        }
        let mask = mask.ne(0.0);
        let unshifted = mask.fft_ifftshift(LAST_TWO.as_slice()).to_kind(Kind::Double);
        // M(-k) in DFT order: index (i, j) -> ((H - i) mod H, (W - j) mod W): flip, then roll by one.
        let mirrored = unshifted.flip(LAST_TWO).roll([1, 1], LAST_TWO);
        let normal_spectrum = (&unshifted + mirrored) * 0.5;
        Ok(FourierMask { mask, normal_spectrum })
    }

    /// From a mask in the unshifted DFT layout (DC at `(0, 0)`).
    pub fn from_uncentred(mask: &Tensor) -> Result<FourierMask> {
        FourierMask::from_centred(&mask.fft_fftshift(LAST_TWO.as_slice()))
    }

    /// The mask, centred layout, bool `(H, W)`.
    pub fn mask(&self) -> &Tensor {
        &self.mask
    }

    /// Number of measured frequencies.
    pub fn count(&self) -> i64 {
        self.mask.sum(Kind::Int64).int64_value(&[])
    }

    /// `A x`: `(B, C, H, W)` real -> `(B, C, H, W)` complex, zero off the mask.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check(x, "FourierMask::forward")?;
        let mask = self.mask.to_device(x.device());
        Ok(fft2_centred(&x.to_kind(real_kind(x))) * mask)
    }

    /// `A^T y = Re(ifft2_centred(M . y))`: `(B, C, H, W)` complex -> real.
    pub fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        self.check(y, "FourierMask::adjoint")?;
        let mask = self.mask.to_device(y.device());
        Ok(ifft2_centred(&(y.to_kind(complex_kind(y)) * mask)).real())
    }

    /// The measured values, `(B, C, P)` complex, in row-major order of the mask.
    pub fn gather(&self, y: &Tensor) -> Result<Tensor> {
        let [b, c, h, w] = self.check(y, "FourierMask::gather")?;
        let flat_index = self.mask.reshape([-1]).nonzero().view([-1]).to_device(y.device());
        Ok(y.reshape([b, c, h * w]).index_select(2, &flat_index))
    }

    /// Solves `(A^T A + alpha I) x = b` exactly for real `b` (the x-update of ADMM): for real
    /// images `A^T A = F^H diag((M(k) + M(-k)) / 2) F`, diagonal in the Fourier domain even when
    /// the mask is not symmetric. `alpha > 0`.
    pub fn normal_solve(&self, b: &Tensor, alpha: f64) -> Result<Tensor> {
        self.check(b, "FourierMask::normal_solve")?;
        if alpha.is_nan() || alpha <= 0.0 {
            return Err(Error::invalid_argument(format!(
                "FourierMask::normal_solve: alpha must be > 0, got {alpha}"
            )));
        }
        let denom = (&self.normal_spectrum + alpha).to_kind(real_kind(b)).to_device(b.device());
        Ok(ifft2(&(fft2(&b.to_kind(real_kind(b))) / denom)).real())
    }

    /// Adds complex Gaussian noise on the measured frequencies at an input SNR in dB, per batch
    /// element (reference §8): `sigma = 10^(-snr/20) ||y||_2 / sqrt(P)` over the P measured
    /// values, real and imaginary parts each with standard deviation `sigma / sqrt(2)`.
    pub fn add_noise<R: Rng + ?Sized>(&self, y: &Tensor, snr_db: f64, rng: &mut R) -> Result<Tensor> {
        let [b, _, _, _] = self.check(y, "FourierMask::add_noise")?;
        let kind = real_kind(y);
        let y = y.to_kind(complex_kind(y));
        let mask = self.mask.to_device(y.device());
        let measured = (self.count() * y.size()[1]).max(1) as f64;
        let norm = y.abs().square().reshape([b, -1]).sum_dim_intlist(1, false, kind).sqrt();
        let sigma = (norm / measured.sqrt() * 10f64.powf(-snr_db / 20.0) / std::f64::consts::SQRT_2)
            .view([b, 1, 1, 1]);
        let re = standard_normal(&y.size(), kind, y.device(), rng);
        let im = standard_normal(&y.size(), kind, y.device(), rng);
        Ok(y + Tensor::complex(&re, &im) * sigma * mask)
    }

    fn check(&self, t: &Tensor, what: &str) -> Result<[i64; 4]> {
        let dims = dims4(t, what)?;
        let (h, w) = (self.mask.size()[0], self.mask.size()[1]);
        if (dims[2], dims[3]) != (h, w) {
            return Err(Error::invalid_argument(format!(
                "{what}: plane is {} x {}, the mask {h} x {w}",
                dims[2], dims[3]
            )));
        }
        Ok(dims)
    }
}

/// Periodic (circular) convolution by a kernel, as a Fourier multiplier: `A x = ifft2(K fft2(x))`,
/// `K` the DFT of the kernel placed with its centre `(kh/2, kw/2)` at pixel `(0, 0)` (wrapping
/// around). So `(A x)[i, j] = sum_{p,q} kernel[p, q] x[(i - p + kh/2) mod H, (j - q + kw/2) mod W]`:
/// a true convolution (not correlation); a symmetric kernel blurs without shifting.
#[derive(Debug)]
pub struct FourierBlur {
    /// Unshifted multiplier, complex128, (H, W).
    multiplier: Tensor,
}

impl FourierBlur {
    /// A blur of H x W images by a real kernel `(kh, kw)` with `kh <= H`, `kw <= W`.
    pub fn new(kernel: &Tensor, height: i64, width: i64) -> Result<FourierBlur> {
        let (kh, kw) = match kernel.size().as_slice() {
            &[kh, kw] => (kh, kw),
            other => {
                return Err(Error::invalid_argument(format!(
                    "FourierBlur: kernel must be 2-D, got {other:?}"
                )))
            }
        };
        if kh > height || kw > width || kh < 1 || kw < 1 {
            return Err(Error::invalid_argument(format!(
                "FourierBlur: a {kh} x {kw} kernel does not fit {height} x {width} images"
            )));
        }
        let placed = Tensor::zeros([height, width], (Kind::Double, Device::Cpu));
        placed.narrow(0, 0, kh).narrow(1, 0, kw).copy_(&kernel.to_kind(Kind::Double).to_device(Device::Cpu));
        let placed = placed.roll([-(kh / 2), -(kw / 2)], [0, 1]);
        // Unnormalised DFT: the multiplier of a convolution is the plain DFT of its kernel.
        let multiplier = placed.to_kind(Kind::ComplexDouble).fft_fft2(None::<&[i64]>, [0, 1], "backward");
        Ok(FourierBlur { multiplier })
    }

    /// A normalised isotropic Gaussian kernel of standard deviation `sigma` pixels, `size` x `size`.
    pub fn gaussian_kernel(size: i64, sigma: f64) -> Tensor {
        let x = Tensor::arange(size, (Kind::Double, Device::Cpu)) - ((size - 1) as f64 / 2.0);
        let g = (x.square() / (-2.0 * sigma * sigma)).exp();
        let k = g.view([size, 1]) * g.view([1, size]);
        &k / k.sum(Kind::Double)
    }

    /// The multiplier `K` (unshifted, complex128, `(H, W)`).
    pub fn multiplier(&self) -> &Tensor {
        &self.multiplier
    }

    /// Blurred images, `(..., H, W)` real -> real.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, false)
    }

    /// Adjoint (correlation with the kernel: multiplier `conj(K)`).
    pub fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        self.apply(y, true)
    }

    /// Solves `(A^T A + alpha I) x = b`: multiplier `1 / (|K|^2 + alpha)`.
    pub fn normal_solve(&self, b: &Tensor, alpha: f64) -> Result<Tensor> {
        self.check(b)?;
        let denom = (self.multiplier.abs().square() + alpha).to_kind(real_kind(b)).to_device(b.device());
        Ok(ifft2(&(fft2(&b.to_kind(real_kind(b))) / denom)).real())
    }

    fn apply(&self, x: &Tensor, conjugate: bool) -> Result<Tensor> {
        self.check(x)?;
        let m = if conjugate { self.multiplier.conj() } else { self.multiplier.shallow_clone() };
        let m = m.to_kind(complex_kind(x)).to_device(x.device());
        Ok(ifft2(&(fft2(&x.to_kind(real_kind(x))) * m)).real())
    }

    fn check(&self, x: &Tensor) -> Result<()> {
        let size = x.size();
        let (h, w) = (self.multiplier.size()[0], self.multiplier.size()[1]);
        if size.len() < 2 || size[size.len() - 2..] != [h, w] {
            return Err(Error::invalid_argument(format!(
                "FourierBlur: expected (..., {h}, {w}), got {size:?}"
            )));
        }
        Ok(())
    }
}

/// Converts (u, v) baselines in wavelengths to cycles per image for an `height x width` image
/// of square pixels of `pixel_arcsec` arcseconds (see the module conventions).
pub fn wavelengths_to_cycles(
    uv_wavelengths: &[[f64; 2]],
    height: i64,
    width: i64,
    pixel_arcsec: f64,
) -> Vec<[f64; 2]> {
    let pixel_rad = (pixel_arcsec / 3600.0).to_radians();
    uv_wavelengths
        .iter()
        .map(|&[u, v]| [u * width as f64 * pixel_rad, v * height as f64 * pixel_rad])
        .collect()
}

/// Grids (u, v) points, in cycles per image (u along W, v along H), onto a centred `height x
/// width` Fourier plane by nearest-cell rounding: cell `(H/2 + round(v), W/2 + round(u))`.
/// With `hermitian`, each point also marks `(-u, -v)`, the conjugate visibility every real
/// image has. Points outside the plane are skipped; returns the bool mask `(H, W)` and how many
/// points (or conjugates) fell outside.
pub fn grid_uv(points: &[[f64; 2]], height: i64, width: i64, hermitian: bool) -> (Tensor, usize) {
    let mut cells = vec![false; (height * width) as usize];
    let mut outside = 0usize;
    let (h, w) = (height as f64, width as f64);
    let mut mark = |u: f64, v: f64| {
        let row = (height / 2) as f64 + v.round();
        let col = (width / 2) as f64 + u.round();
        if row >= 0.0 && row < h && col >= 0.0 && col < w {
            cells[(row as i64 * width + col as i64) as usize] = true;
        } else {
            outside += 1;
        }
    };
    for &[u, v] in points {
        mark(u, v);
        if hermitian {
            mark(-u, -v);
        }
    }
    (Tensor::from_slice(&cells).view([height, width]), outside)
}

#[cfg(test)]
mod tests {
    use super::super::inner;
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(23)
    }

    fn random_mask(h: i64, w: i64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::rand([h, w], (Kind::Float, Device::Cpu)).lt(0.3)
    }

    #[test]
    fn ffts_are_unitary_and_inverse() {
        let x = Tensor::randn([2, 1, 9, 12], (Kind::Double, Device::Cpu));
        for (f, fi) in
            [(fft2 as fn(&Tensor) -> Tensor, ifft2 as fn(&Tensor) -> Tensor), (fft2_centred, ifft2_centred)]
        {
            let k = f(&x);
            assert!((inner(&k, &k) - inner(&x, &x)).abs() < 1e-10);
            assert!(fi(&k).real().allclose(&x, 1e-12, 1e-12, false));
        }
        // Centred: a delta at the image centre has a flat, real, positive spectrum.
        let delta = Tensor::zeros([9, 12], (Kind::Double, Device::Cpu));
        let _ = delta.get(4).get(6).fill_(1.0);
        let k = fft2_centred(&delta);
        assert!(k.imag().abs().max().double_value(&[]) < 1e-12);
        assert!((k.real() - 1.0 / 108f64.sqrt()).abs().max().double_value(&[]) < 1e-12);
    }

    #[test]
    fn fourier_mask_adjoint_and_normal_solve() {
        let mask = FourierMask::from_centred(&random_mask(10, 13, 1)).unwrap();
        let mut rng = rng();
        for kind in [Kind::Double, Kind::Float] {
            let x = standard_normal(&[2, 1, 10, 13], kind, Device::Cpu, &mut rng);
            let y = Tensor::complex(
                &standard_normal(&[2, 1, 10, 13], kind, Device::Cpu, &mut rng),
                &standard_normal(&[2, 1, 10, 13], kind, Device::Cpu, &mut rng),
            );
            let lhs = inner(&mask.forward(&x).unwrap(), &y);
            let rhs = inner(&x, &mask.adjoint(&y).unwrap());
            let tol = if kind == Kind::Double { 1e-12 } else { 1e-5 };
            assert!((lhs - rhs).abs() <= tol * lhs.abs().max(rhs.abs()), "{lhs} vs {rhs}");
        }
        // (A^T A + alpha) applied to the closed-form solution gives back b.
        let b = Tensor::randn([1, 1, 10, 13], (Kind::Double, Device::Cpu));
        let x = mask.normal_solve(&b, 0.05).unwrap();
        let back = mask.adjoint(&mask.forward(&x).unwrap()).unwrap() + &x * 0.05;
        assert!(back.allclose(&b, 1e-10, 1e-10, false));
    }

    #[test]
    fn uncentred_mask_is_the_shifted_centred_one() {
        let centred = random_mask(8, 8, 2);
        let a = FourierMask::from_centred(&centred).unwrap();
        let b = FourierMask::from_uncentred(&centred.fft_ifftshift([-2i64, -1].as_slice())).unwrap();
        assert!(a.mask().equal(b.mask()));
        assert_eq!(a.count(), centred.sum(Kind::Int64).int64_value(&[]));
    }

    #[test]
    fn gather_and_noise() {
        let mask = FourierMask::from_centred(&random_mask(32, 32, 3)).unwrap();
        let x = Tensor::rand([1, 1, 32, 32], (Kind::Double, Device::Cpu));
        let y = mask.forward(&x).unwrap();
        assert_eq!(mask.gather(&y).unwrap().size(), vec![1, 1, mask.count()]);
        let noisy = mask.add_noise(&y, 10.0, &mut rng()).unwrap();
        let noise = &noisy - &y;
        // Nothing off the mask; the noise power matches the requested SNR within sampling error.
        assert_eq!((noise.abs() * mask.mask().logical_not()).max().double_value(&[]), 0.0);
        let snr = 10.0 * (inner(&y, &y) / inner(&noise, &noise)).log10();
        assert!((snr - 10.0).abs() < 0.5, "snr {snr}");
    }

    #[test]
    fn blur_matches_direct_periodic_convolution_and_is_adjoint() {
        let (h, w) = (7, 9);
        let kernel = Tensor::rand([3, 4], (Kind::Double, Device::Cpu));
        let blur = FourierBlur::new(&kernel, h, w).unwrap();
        let x = Tensor::randn([1, 1, h, w], (Kind::Double, Device::Cpu));
        let ours = blur.forward(&x).unwrap();
        let xv = Vec::<f64>::try_from(x.reshape([-1])).unwrap();
        let kv = Vec::<f64>::try_from(kernel.reshape([-1])).unwrap();
        for i in 0..h {
            for j in 0..w {
                let mut acc = 0.0;
                for p in 0..3 {
                    for q in 0..4 {
                        let r = (i - p + 3 / 2).rem_euclid(h);
                        let c = (j - q + 4 / 2).rem_euclid(w);
                        acc += kv[(p * 4 + q) as usize] * xv[(r * w + c) as usize];
                    }
                }
                assert!((ours.double_value(&[0, 0, i, j]) - acc).abs() < 1e-12);
            }
        }
        let y = Tensor::randn([1, 1, h, w], (Kind::Double, Device::Cpu));
        let lhs = inner(&blur.forward(&x).unwrap(), &y);
        let rhs = inner(&x, &blur.adjoint(&y).unwrap());
        assert!((lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0));
        let b = blur.normal_solve(&y, 0.1).unwrap();
        let back = blur.adjoint(&blur.forward(&b).unwrap()).unwrap() + &b * 0.1;
        assert!(back.allclose(&y, 1e-10, 1e-10, false));
    }

    #[test]
    fn gridding_rounds_to_centred_cells() {
        let (mask, outside) = grid_uv(&[[0.0, 0.0], [2.4, -1.6], [100.0, 0.0]], 8, 10, true);
        assert_eq!(outside, 2); // (100, 0) and its conjugate
        let marked: Vec<(i64, i64)> = {
            let nz = mask.nonzero();
            (0..nz.size()[0]).map(|i| (nz.int64_value(&[i, 0]), nz.int64_value(&[i, 1]))).collect()
        };
        // DC (4, 5); (u, v) = (2, -2) -> (2, 7); conjugate (-2, 2) -> (6, 3).
        assert_eq!(marked, vec![(2, 7), (4, 5), (6, 3)]);
        let cycles = wavelengths_to_cycles(&[[1000.0, -500.0]], 64, 128, 1.0);
        let rad = (1.0f64 / 3600.0).to_radians();
        assert!((cycles[0][0] - 1000.0 * 128.0 * rad).abs() < 1e-12);
        assert!((cycles[0][1] + 500.0 * 64.0 * rad).abs() < 1e-12);
    }
}
