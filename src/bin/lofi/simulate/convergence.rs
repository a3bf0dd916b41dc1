//! Random convergence (kappa) maps for weak lensing: Gaussian or log-normal random fields with a
//! power-law spectrum `P(k) ∝ k^-beta`.
//!
//! A Gaussian field `g` is white noise filtered by `k^(-beta/2)` (k in cycles per pixel, so
//! the spectrum is isotropic in pixel space for any H x W; the k = 0 mode is zero, i.e. zero
//! mean), normalised to unit standard deviation over the map. Then:
//! * `Gaussian`: `kappa = std * g`;
//! * `LogNormal` (the usual model of the skewed convergence of large-scale structure, e.g.
//!   Hilbert et al. 2011): `kappa = shift * (exp(s g - s^2/2) - 1)` with
//!   `s^2 = ln(1 + std^2 / shift^2)`, which has mean 0, standard deviation `std` (in
//!   expectation over maps) and the lower bound `-shift` (empty regions), with high peaks.
//!
//! Maps are physical convergence values (not rescaled to [0, 1]).

use anyhow::{bail, Result};
use rand::Rng;
use tch::{Device, Kind, Tensor};

/// The one-point distribution of the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FieldModel {
    Gaussian,
    #[value(name = "lognormal")]
    LogNormal,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvergenceParams {
    /// Spectral index: `P(k) ∝ k^-beta` (larger is smoother).
    pub beta: f64,
    /// Standard deviation of kappa.
    pub std: f64,
    /// Log-normal shift (the most negative kappa); unused for Gaussian fields.
    pub shift: f64,
    pub model: FieldModel,
}

impl Default for ConvergenceParams {
    /// Defaults comparable to the paper's 128 x 128, 5-degree maps, whose per-pixel shape noise
    /// is about 0.029: a kappa standard deviation of 0.02 and a shift of 0.02.
    fn default() -> Self {
        ConvergenceParams { beta: 2.0, std: 0.02, shift: 0.02, model: FieldModel::LogNormal }
    }
}

impl ConvergenceParams {
    pub fn check(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.std > 0.0 && self.std.is_finite()) {
            bail!("convergence: beta must be finite and std > 0 (got beta {}, std {})", self.beta, self.std);
        }
        if self.model == FieldModel::LogNormal && !(self.shift > 0.0 && self.shift.is_finite()) {
            bail!("convergence: the log-normal shift must be > 0 (got {})", self.shift);
        }
        Ok(())
    }
}

/// A random convergence map, row-major (H, W).
pub fn convergence_map<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    params: &ConvergenceParams,
    rng: &mut R,
) -> Vec<f32> {
    let g = gaussian_field(height, width, params.beta, rng);
    match params.model {
        FieldModel::Gaussian => g.iter().map(|v| (params.std * v) as f32).collect(),
        FieldModel::LogNormal => {
            let s2 = (1.0 + (params.std / params.shift).powi(2)).ln();
            let s = s2.sqrt();
            g.iter().map(|v| (params.shift * ((s * v - s2 / 2.0).exp() - 1.0)) as f32).collect()
        }
    }
}

/// Zero-mean, unit-variance Gaussian random field with `P(k) ∝ k^-beta`, row-major (H, W).
pub fn gaussian_field<R: Rng + ?Sized>(height: usize, width: usize, beta: f64, rng: &mut R) -> Vec<f64> {
    let (h, w) = (height as i64, width as i64);
    let white = lofi::operators::standard_normal(&[h, w], Kind::Double, Device::Cpu, rng);
    let opts = (Kind::Double, Device::Cpu);
    let k1 = Tensor::fft_fftfreq(h, 1.0, opts).view([h, 1]);
    let k2 = Tensor::fft_fftfreq(w, 1.0, opts).view([1, w]);
    let k = (k1.square() + k2.square()).sqrt();
    let is_dc = k.eq(0.0);
    let amplitude = k.masked_fill(&is_dc, 1.0).pow_tensor_scalar(-beta / 2.0).masked_fill(&is_dc, 0.0);
    let field = (white.fft_fft2(None::<&[i64]>, [0, 1], "backward") * amplitude)
        .fft_ifft2(None::<&[i64]>, [0, 1], "backward")
        .real();
    // Normalise this realisation: maps of one configuration then share one amplitude scale.
    let field = &field - field.mean(Kind::Double);
    let std = field.square().mean(Kind::Double).sqrt().double_value(&[]);
    let field = if std > 0.0 { field / std } else { field };
    Vec::<f64>::try_from(field.reshape([-1])).expect("float64 field")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Mean power in a band of |k| (cycles per pixel).
    fn band_power(map: &[f64], n: i64, lo: f64, hi: f64) -> f64 {
        let t = Tensor::from_slice(map).view([n, n]);
        let power = t.fft_fft2(None::<&[i64]>, [0, 1], "backward").abs().square();
        let f = Tensor::fft_fftfreq(n, 1.0, (Kind::Double, Device::Cpu));
        let k = (f.view([n, 1]).square() + f.view([1, n]).square()).sqrt();
        let band = k.ge(lo).logical_and(&k.lt(hi)).to_kind(Kind::Double);
        ((power * &band).sum(Kind::Double) / band.sum(Kind::Double)).double_value(&[])
    }

    #[test]
    fn gaussian_field_has_the_power_law() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for beta in [1.0, 3.0] {
            let mut ratio = 0.0;
            for _ in 0..4 {
                let g = gaussian_field(64, 64, beta, &mut rng);
                ratio += band_power(&g, 64, 0.05, 0.07) / band_power(&g, 64, 0.2, 0.28) / 4.0;
            }
            // Centres of the bands: 0.06 and 0.24 cycles per pixel, a factor 4.
            let expected = 4f64.powf(beta);
            assert!((ratio / expected).ln().abs() < 0.35, "beta {beta}: ratio {ratio} vs {expected}");
        }
    }

    #[test]
    fn lognormal_maps_have_the_requested_moments() {
        let params = ConvergenceParams::default();
        let mut all = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..8 {
            all.extend(convergence_map(48, 40, &params, &mut rng));
        }
        let n = all.len() as f64;
        let mean = all.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (all.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(mean.abs() < 0.004, "mean {mean}");
        assert!((std / params.std - 1.0).abs() < 0.2, "std {std}");
        assert!(all.iter().all(|&v| v as f64 > -params.shift));
        // Positive skew: peaks reach further than voids.
        let max = all.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
        let min = all.iter().fold(f32::MAX, |m, &v| m.min(v)) as f64;
        assert!(max > -2.0 * min);
    }

    #[test]
    fn maps_are_seeded() {
        let p = ConvergenceParams { model: FieldModel::Gaussian, ..Default::default() };
        let a = convergence_map(16, 20, &p, &mut ChaCha8Rng::seed_from_u64(5));
        let b = convergence_map(16, 20, &p, &mut ChaCha8Rng::seed_from_u64(5));
        let c = convergence_map(16, 20, &p, &mut ChaCha8Rng::seed_from_u64(6));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
