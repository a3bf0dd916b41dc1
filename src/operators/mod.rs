//! Forward models of the paper's inverse problems (§8 of the reference semantics), as batched
//! tensor operators that run wherever their input lives (CPU or CUDA), with exact adjoints.
//!
//! * [`radon`]: parallel-beam CT (scikit-image's `radon(circle=False)` / `iradon(filter='ramp')`),
//!   and the LDCT noise model.
//! * [`lensing`]: weak gravitational lensing (convergence -> shear) and Kaiser-Squires.
//! * [`clean`]: Högbom CLEAN with a fitted restoring beam (the radio baseline).
//! * [`nufft`]: non-uniform FFT (visibilities at arbitrary (u, v)), weighting, the dirty beam.
//! * [`fourier`]: orthonormal FFT helpers, Fourier masks (radio interferometry, MRI-like
//!   problems), periodic blur, and gridding of (u, v) points.
//!
//! Conventions shared by every operator here:
//! * Images are `(B, C, H, W)` tensors (row-major: H is the vertical axis, row 0 on top). Each of
//!   the `B * C` planes is transformed independently (the paper's operators have C = 1).
//! * Complex-valued data that must travel as real tensors (shear, Kaiser-Squires maps) use two
//!   channels, `(re, im)`, exactly as the model's `c_in = 2` input expects. Fourier-domain
//!   operators in [`fourier`] use torch's complex tensors instead.
//! * Real inputs of kind `Double` stay `Double` (tests compare against float64 references);
//!   every other kind is computed in `Float`.
//! * "Adjoint" means the adjoint for the real inner product `<a, b> = sum(a * b)` (with complex
//!   data, `Re sum(conj(a) b)`), so that `<A x, y> = <x, A^T y>` holds to rounding; each module's
//!   tests check it.
//! * Noise is drawn on the CPU from a caller-supplied [`rand::Rng`] (e.g. `ChaCha8Rng::seed_from_u64`)
//!   and then moved to the input's device, so a seed gives the same noise on every device.

pub mod clean;
pub mod fourier;
pub mod lensing;
pub mod nufft;
pub mod radon;

use rand::Rng;
use rand_distr::StandardNormal;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The four sizes of a `(B, C, H, W)` tensor, or an error naming the operator's argument.
pub(crate) fn dims4(t: &Tensor, what: &str) -> Result<[i64; 4]> {
    match t.size().as_slice() {
        &[b, c, h, w] => Ok([b, c, h, w]),
        other => {
            Err(Error::invalid_argument(format!("{what} must be a (B, C, H, W) tensor, got shape {other:?}")))
        }
    }
}

/// The real floating kind an operator computes in for this input (see the module conventions).
pub(crate) fn real_kind(t: &Tensor) -> Kind {
    match t.kind() {
        Kind::Double | Kind::ComplexDouble => Kind::Double,
        _ => Kind::Float,
    }
}

/// The complex kind matching [`real_kind`].
pub(crate) fn complex_kind(t: &Tensor) -> Kind {
    match real_kind(t) {
        Kind::Double => Kind::ComplexDouble,
        _ => Kind::ComplexFloat,
    }
}

/// Standard normal samples of the given shape, drawn on the CPU from `rng` in row-major order
/// and moved to `device` (reproducible across devices for a given seed).
pub fn standard_normal<R: Rng + ?Sized>(shape: &[i64], kind: Kind, device: Device, rng: &mut R) -> Tensor {
    let n: i64 = shape.iter().product();
    let values: Vec<f64> = (0..n).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
    Tensor::from_slice(&values).view(shape).to_kind(kind).to_device(device)
}

/// Real inner product `sum(a * b)` in float64 (for complex tensors `Re sum(conj(a) b)`), used by
/// the adjoint tests and by callers' conjugate-gradient loops.
pub fn inner(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = if a.is_complex() || b.is_complex() {
        (as_real_pairs(a), as_real_pairs(b))
    } else {
        (a.shallow_clone(), b.shallow_clone())
    };
    (a.to_kind(Kind::Double) * b.to_kind(Kind::Double)).sum(Kind::Double).double_value(&[])
}

/// A complex tensor as real (..., 2) pairs; a real tensor as (..., 2) with zero imaginary parts.
fn as_real_pairs(t: &Tensor) -> Tensor {
    if t.is_complex() {
        t.view_as_real()
    } else {
        Tensor::stack(&[t.shallow_clone(), t.zeros_like()], -1)
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Reading the float64 `.npy` fixtures written by `scripts/fixtures/*.py`.
    use std::path::PathBuf;

    pub fn fixture_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/operators").join(name)
    }

    /// (shape, values) of a float64 or float32 `.npy` fixture.
    pub fn read_npy(name: &str) -> (Vec<i64>, Vec<f64>) {
        let path = fixture_path(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let npy = npyz::NpyFile::new(&bytes[..]).expect("valid npy");
        let shape: Vec<i64> = npy.shape().iter().map(|&d| d as i64).collect();
        let values: Vec<f64> = match npy.dtype().descr().trim_matches('\'') {
            "<f8" => npy.into_vec::<f64>().expect("f64 data"),
            "<f4" => npy.into_vec::<f32>().expect("f32 data").into_iter().map(f64::from).collect(),
            other => panic!("{}: unexpected dtype {other}", path.display()),
        };
        (shape, values)
    }

    pub fn npy_tensor(name: &str) -> tch::Tensor {
        let (shape, values) = read_npy(name);
        tch::Tensor::from_slice(&values).view(shape.as_slice())
    }

    /// Largest absolute difference, and the largest absolute value of `reference`.
    pub fn max_abs_diff(ours: &tch::Tensor, reference: &tch::Tensor) -> (f64, f64) {
        let diff = (ours.to_kind(tch::Kind::Double) - reference.to_kind(tch::Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        (diff, reference.abs().max().double_value(&[]))
    }
}

#[cfg(test)]
mod cuda_tests {
    //! CUDA against CPU, for a GPU machine: `cargo test --release --lib cuda_ -- --ignored
    //! --nocapture` (skips, passing, without CUDA). Also prints LDCT-size timings.
    use super::fourier::{FourierBlur, FourierMask};
    use super::radon::Radon;
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn rel_diff(cpu: &Tensor, gpu: &Tensor) -> f64 {
        let gpu = gpu.to_device(Device::Cpu);
        let (cpu, gpu) = if cpu.is_complex() {
            (cpu.view_as_real(), gpu.view_as_real())
        } else {
            (cpu.shallow_clone(), gpu)
        };
        let diff = (cpu.to_kind(Kind::Double) - gpu.to_kind(Kind::Double)).abs().max().double_value(&[]);
        diff / cpu.abs().max().double_value(&[]).max(1e-30)
    }

    #[test]
    #[ignore]
    fn cuda_matches_cpu() {
        if !tch::Cuda::is_available() {
            eprintln!("cuda_matches_cpu: no CUDA device, nothing checked");
            return;
        }
        let gpu = Device::Cuda(0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (kind, tol) in [(Kind::Float, 1e-4), (Kind::Double, 1e-10)] {
            let radon = Radon::uniform(33, 40, 60).unwrap();
            let x = standard_normal(&[3, 1, 33, 40], kind, Device::Cpu, &mut rng);
            let y = standard_normal(&[3, 1, 60, radon.n_det()], kind, Device::Cpu, &mut rng);
            let g = standard_normal(&[3, 2, 33, 40], kind, Device::Cpu, &mut rng);
            let checks = [
                ("radon", radon.forward(&x).unwrap(), radon.forward(&x.to_device(gpu)).unwrap()),
                (
                    "adjoint",
                    radon.adjoint(&y).unwrap(),
                    tch::no_grad(|| radon.adjoint(&y.to_device(gpu)).unwrap()),
                ),
                ("fbp", radon.fbp(&y).unwrap(), radon.fbp(&y.to_device(gpu)).unwrap()),
                ("shear", lensing::shear(&x).unwrap(), lensing::shear(&x.to_device(gpu)).unwrap()),
                (
                    "kaiser_squires",
                    lensing::kaiser_squires(&g).unwrap(),
                    lensing::kaiser_squires(&g.to_device(gpu)).unwrap(),
                ),
            ];
            for (name, cpu, cuda) in checks {
                assert_eq!(cuda.device(), gpu, "{name}");
                let d = rel_diff(&cpu, &cuda);
                eprintln!("{name} {kind:?}: CUDA vs CPU max rel diff {d:.1e}");
                assert!(d < tol, "{name} {kind:?}: {d:e}");
            }
            let xg = x.to_device(gpu);
            let yg = y.to_device(gpu);
            let lhs = inner(&radon.forward(&xg).unwrap(), &yg);
            let rhs = inner(&xg, &radon.adjoint(&yg).unwrap());
            eprintln!("radon adjoint on CUDA {kind:?}: <Ax,y> {lhs:.6e} <x,A^T y> {rhs:.6e}");
            assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(rhs.abs()));
            let mask = FourierMask::from_centred(&Tensor::rand([33, 40], (Kind::Float, Device::Cpu)).lt(0.3))
                .unwrap();
            let d = rel_diff(&mask.normal_solve(&x, 0.1).unwrap(), &mask.normal_solve(&xg, 0.1).unwrap());
            assert!(d < tol, "mask normal_solve {d:e}");
            let blur = FourierBlur::new(&FourierBlur::gaussian_kernel(5, 1.0), 33, 40).unwrap();
            let d = rel_diff(&blur.forward(&x).unwrap(), &blur.forward(&xg).unwrap());
            assert!(d < tol, "blur {d:e}");
        }
        // The paper's LDCT size: 128 x 128, 180 angles, a batch of 64, float32.
        let radon = Radon::uniform(128, 128, 180).unwrap();
        let x = Tensor::rand([64, 1, 128, 128], (Kind::Float, gpu));
        let time = |what: &str, f: &dyn Fn() -> Tensor| {
            let _ = f(); // warm-up (and grid cache)
            tch::Cuda::synchronize(0);
            let start = std::time::Instant::now();
            for _ in 0..5 {
                let _ = f();
            }
            tch::Cuda::synchronize(0);
            eprintln!("{what}: {:.2} ms per batch of 64", start.elapsed().as_secs_f64() * 1e3 / 5.0);
        };
        let sino = radon.forward(&x).unwrap();
        time("radon forward 128x128x180", &|| radon.forward(&x).unwrap());
        time("radon adjoint 128x128x180", &|| tch::no_grad(|| radon.adjoint(&sino).unwrap()));
        time("fbp 128x128x180", &|| radon.fbp(&sino).unwrap());
        time("shear+KS 128x128", &|| lensing::kaiser_squires(&lensing::shear(&x).unwrap()).unwrap());
    }
}
