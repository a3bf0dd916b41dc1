//! Weak gravitational lensing: convergence `kappa` -> shear `gamma`, its adjoint, the
//! Kaiser-Squires inverse, and galaxy shape noise (reference semantics §8, the paper's
//! dark-matter mapping task).
//!
//! # Conventions
//! * `kappa` is real, `(B, 1, H, W)`; shear and Kaiser-Squires maps are complex fields carried as
//!   two channels `(B, 2, H, W)` = (real part, imaginary part), which is the LoFi input layout
//!   (`c_in = 2`).
//! * The kernel, in unshifted DFT order (DC at index (0, 0)), is
//!   `D(k1, k2) = ((k1^2 - k2^2) + 2 i k1 k2) / (k1^2 + k2^2)` with `D = 1` at `k = 0`, where
//!   `k1` is the frequency along the rows axis (H, axis -2) and `k2` along the columns axis
//!   (W, axis -1), both in cycles per pixel (`fftfreq`). For an even square N x N grid this is
//!   exactly the reference's kernel (`k = -N/2 .. N/2 - 1`, then `ifftshift`; the kernel depends
//!   only on the ratio k1/k2, so integer or per-pixel units agree). For odd N the reference's
//!   `arange(N) - N/2` gives half-integer frequencies with no zero mode, which is not a
//!   frequency grid at all; we use the true DFT frequencies. For H != W, cycles per pixel on
//!   both axes is the physical choice for square pixels.
//! * `|D| = 1` at every frequency, so Kaiser-Squires `ifft2(fft2(gamma) conj(D) / |D|^2)` equals
//!   the adjoint of the complex shear operator and inverts noiseless shear exactly (the k = 0
//!   mode included, since the reference's convention there is D = 1; physically the mean
//!   convergence is unconstrained by shear, the mass-sheet degeneracy).
//! * FFTs are unnormalised forward / `1/(HW)` inverse (torch's default), as in the reference;
//!   the pair `ifft2(. fft2(.))` is normalisation-free anyway.

use rand::Rng;
use tch::{Device, Kind, Tensor};

use super::{complex_kind, dims4, real_kind, standard_normal};
use crate::error::{Error, Result};

/// Opening angle of the simulated field of view, degrees (the paper's 5 deg x 5 deg maps).
pub const DEFAULT_THETA_DEG: f64 = 5.0;
/// Source galaxy density, per square arcminute (the paper's 30 arcmin^-2).
pub const DEFAULT_N_GAL: f64 = 30.0;
/// Intrinsic ellipticity dispersion per galaxy (shear component), the reference's 0.37.
pub const SHAPE_NOISE_PER_GALAXY: f64 = 0.37;

/// The kernel `D` for an H x W grid in unshifted DFT order, complex of `kind`'s precision.
pub fn kernel(height: i64, width: i64, kind: Kind, device: Device) -> Tensor {
    let opts = (Kind::Double, device);
    let k1 = Tensor::fft_fftfreq(height, 1.0, opts).view([height, 1]);
    let k2 = Tensor::fft_fftfreq(width, 1.0, opts).view([1, width]);
    let k_sq = k1.square() + k2.square();
    let is_dc = k_sq.eq(0.0);
    // Avoid 0/0 at DC; the value there is replaced by 1 below.
    let denom = k_sq.masked_fill(&is_dc, 1.0);
    let re = ((k1.square() - k2.square()) / &denom).masked_fill(&is_dc, 1.0);
    let im = ((&k1 * &k2 * 2.0) / &denom).masked_fill(&is_dc, 0.0);
    let complex = if matches!(kind, Kind::Double | Kind::ComplexDouble) {
        Kind::ComplexDouble
    } else {
        Kind::ComplexFloat
    };
    Tensor::complex(&re, &im).to_kind(complex)
}

/// Shear of a convergence map: `gamma = ifft2(fft2(kappa) D)`, `(B, 1, H, W)` -> `(B, 2, H, W)`.
pub fn shear(kappa: &Tensor) -> Result<Tensor> {
    let [b, c, h, w] = dims4(kappa, "lensing::shear: kappa")?;
    if c != 1 {
        return Err(Error::invalid_argument(format!("lensing::shear: kappa must have 1 channel, got {c}")));
    }
    let d = kernel(h, w, real_kind(kappa), kappa.device());
    let spectrum =
        kappa.to_kind(complex_kind(kappa)).view([b, h, w]).fft_fft2(None::<&[i64]>, [-2, -1], "backward");
    Ok(to_channels(&(spectrum * d).fft_ifft2(None::<&[i64]>, [-2, -1], "backward")))
}

/// Adjoint of [`shear`] for the real inner product: `Re(ifft2(fft2(g) conj(D)))` with
/// `g = gamma_re + i gamma_im`, `(B, 2, H, W)` -> `(B, 1, H, W)`.
pub fn shear_adjoint(gamma: &Tensor) -> Result<Tensor> {
    let field = from_channels(gamma, "lensing::shear_adjoint: gamma")?;
    let (h, w) = (field.size()[1], field.size()[2]);
    let d = kernel(h, w, real_kind(gamma), gamma.device());
    let spectrum = field.fft_fft2(None::<&[i64]>, [-2, -1], "backward") * d.conj();
    Ok(spectrum.fft_ifft2(None::<&[i64]>, [-2, -1], "backward").real().unsqueeze(1))
}

/// Kaiser-Squires inversion `ifft2(fft2(g) conj(D) / |D|^2)`, `(B, 2, H, W)` -> `(B, 2, H, W)`:
/// the real part estimates `kappa` (E mode), the imaginary part is the B mode (zero for noiseless
/// shear). This pair of channels is the network input of the lensing task.
pub fn kaiser_squires(gamma: &Tensor) -> Result<Tensor> {
    let field = from_channels(gamma, "lensing::kaiser_squires: gamma")?;
    let (h, w) = (field.size()[1], field.size()[2]);
    let d = kernel(h, w, real_kind(gamma), gamma.device());
    // |D| = 1 analytically; dividing keeps the formula the paper states and costs nothing.
    let inverse = d.conj() / d.abs().square();
    let spectrum = field.fft_fft2(None::<&[i64]>, [-2, -1], "backward") * inverse;
    Ok(to_channels(&spectrum.fft_ifft2(None::<&[i64]>, [-2, -1], "backward")))
}

/// Per-component shape noise of the shear averaged in one pixel:
/// `0.37 / sqrt(pixel_area_arcmin2 * n_gal)` with `pixel side = theta_deg * 60 / n_grid` arcmin.
/// `n_grid` is the number of pixels across the `theta_deg`-wide field (the map's side).
pub fn shape_noise_sigma(n_grid: i64, theta_deg: f64, n_gal: f64) -> f64 {
    let pixel_arcmin = theta_deg * 60.0 / n_grid as f64;
    SHAPE_NOISE_PER_GALAXY / (pixel_arcmin * pixel_arcmin * n_gal).sqrt()
}

/// [`shape_noise_sigma`] with the paper's field (5 deg, 30 galaxies per arcmin^2).
pub fn default_shape_noise_sigma(n_grid: i64) -> f64 {
    shape_noise_sigma(n_grid, DEFAULT_THETA_DEG, DEFAULT_N_GAL)
}

/// `gamma + sigma n`, with independent standard normal `n` for every value of both channels
/// (complex noise whose real and imaginary parts each have variance `sigma^2`, as the reference).
pub fn add_shape_noise<R: Rng + ?Sized>(gamma: &Tensor, sigma: f64, rng: &mut R) -> Tensor {
    let kind = real_kind(gamma);
    gamma.to_kind(kind) + standard_normal(&gamma.size(), kind, gamma.device(), rng) * sigma
}

/// The lensing task's network input from a convergence map: Kaiser-Squires of the noisy shear
/// with the paper's noise level for the map's width, `(B, 1, H, W)` -> `(B, 2, H, W)`.
pub fn simulate_ks_input<R: Rng + ?Sized>(kappa: &Tensor, rng: &mut R) -> Result<Tensor> {
    let gamma = shear(kappa)?;
    let sigma = default_shape_noise_sigma(kappa.size()[3]);
    kaiser_squires(&add_shape_noise(&gamma, sigma, rng))
}

/// `(B, H, W)` complex -> `(B, 2, H, W)` real (re, im).
fn to_channels(field: &Tensor) -> Tensor {
    field.view_as_real().permute([0, 3, 1, 2]).contiguous()
}

/// `(B, 2, H, W)` real (re, im) -> `(B, H, W)` complex.
fn from_channels(t: &Tensor, what: &str) -> Result<Tensor> {
    let [_, c, _, _] = dims4(t, what)?;
    if c != 2 {
        return Err(Error::invalid_argument(format!("{what} must have 2 channels (re, im), got {c}")));
    }
    let t = t.to_kind(real_kind(t));
    Ok(Tensor::complex(&t.select(1, 0), &t.select(1, 1)))
}

#[cfg(test)]
mod tests {
    use super::super::inner;
    use super::super::test_util::{max_abs_diff, npy_tensor};
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn kernel_matches_reference_construction_even_square() {
        let d = npy_tensor("lensing_kernel16.npy"); // (16, 16, 2): re, im
        let ours = kernel(16, 16, Kind::Double, Device::Cpu).view_as_real();
        let (diff, _) = max_abs_diff(&ours, &d);
        assert!(diff < 1e-14, "max diff {diff:e}");
    }

    #[test]
    fn shear_and_kaiser_squires_match_numpy() {
        for name in ["16x16", "15x15", "12x20"] {
            let kappa = npy_tensor(&format!("lensing_{name}_kappa.npy")); // (B, 1, H, W)
            let gamma_ref = npy_tensor(&format!("lensing_{name}_gamma.npy")); // (B, 2, H, W)
            let noisy = npy_tensor(&format!("lensing_{name}_noisy_gamma.npy"));
            let ks_ref = npy_tensor(&format!("lensing_{name}_ks.npy"));
            let adj_ref = npy_tensor(&format!("lensing_{name}_adjoint.npy"));
            for (kind, tol) in [(Kind::Double, 1e-12), (Kind::Float, 1e-5)] {
                let check = |ours: &Tensor, reference: &Tensor, what: &str| {
                    let (diff, scale) = max_abs_diff(ours, reference);
                    assert!(diff <= tol * scale.max(1.0), "{name} {what} {kind:?}: {diff:e}");
                };
                check(&shear(&kappa.to_kind(kind)).unwrap(), &gamma_ref, "shear");
                check(&kaiser_squires(&noisy.to_kind(kind)).unwrap(), &ks_ref, "kaiser_squires");
                check(&shear_adjoint(&noisy.to_kind(kind)).unwrap(), &adj_ref, "adjoint");
            }
        }
    }

    #[test]
    fn kaiser_squires_inverts_noiseless_shear() {
        let kappa = Tensor::randn([3, 1, 24, 18], (Kind::Double, Device::Cpu));
        let ks = kaiser_squires(&shear(&kappa).unwrap()).unwrap();
        let (diff, _) = max_abs_diff(&ks.narrow(1, 0, 1), &kappa);
        assert!(diff < 1e-12, "E mode differs by {diff:e}");
        assert!(ks.select(1, 1).abs().max().double_value(&[]) < 1e-12, "B mode not zero");
    }

    #[test]
    fn shear_adjoint_is_the_adjoint() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (h, w) in [(16, 16), (9, 14)] {
            for kind in [Kind::Double, Kind::Float] {
                let kappa = standard_normal(&[2, 1, h, w], kind, Device::Cpu, &mut rng);
                let gamma = standard_normal(&[2, 2, h, w], kind, Device::Cpu, &mut rng);
                let lhs = inner(&shear(&kappa).unwrap(), &gamma);
                let rhs = inner(&kappa, &shear_adjoint(&gamma).unwrap());
                let tol = if kind == Kind::Double { 1e-12 } else { 1e-5 };
                assert!((lhs - rhs).abs() <= tol * lhs.abs().max(rhs.abs()), "{lhs} vs {rhs}");
            }
        }
    }

    #[test]
    fn shape_noise_sigma_has_the_papers_value() {
        // 128 x 128 over 5 deg: pixels of 2.34375 arcmin, 164.8 galaxies per pixel.
        let sigma = default_shape_noise_sigma(128);
        assert!((sigma - 0.37 / (2.34375f64 * 2.34375 * 30.0).sqrt()).abs() < 1e-15);
        assert!((sigma - 0.028822).abs() < 1e-5, "{sigma}");
    }

    #[test]
    fn simulated_input_is_seeded() {
        let kappa = Tensor::randn([1, 1, 16, 16], (Kind::Float, Device::Cpu));
        let a = simulate_ks_input(&kappa, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        let b = simulate_ks_input(&kappa, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        assert!(a.equal(&b));
        assert_eq!(a.size(), vec![1, 2, 16, 16]);
    }
}
