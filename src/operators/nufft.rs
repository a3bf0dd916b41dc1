//! Non-uniform FFT between an image and visibilities at arbitrary (u, v): type 2 (image ->
//! visibilities, [`Nufft2d::forward`]) and its exact adjoint, type 1 ([`Nufft2d::adjoint`]),
//! as libtorch tensor operations (CPU and CUDA alike), with the settings of the paper's radio
//! problem: 2x oversampled grid, a 6 x 6 gridding kernel, deapodisation.
//!
//! # Convention (what a visibility is)
//! An image of `H x W` pixels of `delta` radians has direction cosines `l = (c - W/2) delta` along
//! the columns `c` and `m = (r - H/2) delta` along the rows `r` (integer division: the phase
//! centre is pixel `(H/2, W/2)`, as in [`super::fourier::fft2_centred`]). A baseline of
//! `(u, v)` wavelengths measures
//!
//! ```text
//! V(u, v) = sum_{r, c} x[r, c] exp(-2 pi i (u l + v m))
//! ```
//!
//! the radio measurement equation with the `-` sign (Thompson, Moran & Swenson; CASA, WSClean),
//! unnormalised (a unit point source at the phase centre gives `V = 1` on every baseline) and
//! without the `w` term (small fields). `u` pairs with the columns, `v` with the rows; rows grow
//! downwards, so an image displayed with row 0 on top has north (+m) at the bottom: flip it
//! vertically for the astronomer's orientation. The operator itself works in cycles per pixel,
//! `(u delta, v delta)`; [`Nufft2d::from_wavelengths`] converts. Frequencies beyond `|u delta| =
//! 1/2` are computed exactly as the formula says (the formula is periodic): they alias.
//!
//! The adjoint is `x[r, c] = sum_j y_j exp(+2 pi i (u_j l + v_j m))` (the unnormalised dirty
//! image of visibilities `y`); for real images the real-inner-product adjoint is its real part.
//!
//! # Method
//! Type 2: divide the image by the kernel's Fourier transform (deapodisation), zero-pad it to
//! `2H x 2W`, FFT, and interpolate the grid at each point with the separable "exponential of
//! semicircle" kernel `phi(t) = exp(beta (sqrt(1 - (t/3)^2) - 1))`, `|t| <= 3` grid cells (width
//! 6), `beta = 2.30 * 6` (Barnett, Magland & af Klinteberg, SIAM J. Sci. Comput. 41 (2019), the
//! kernel of FINUFFT; its value at the support's edge is `e^-13.8`). The deapodisation factors are
//! the kernel's Fourier transform, computed once by quadrature in float64. Type 1 runs the
//! transposed steps in reverse (spread, inverse FFT, crop, deapodise), so it is the adjoint to
//! rounding. Error against a direct sum: about 1.3e-5 of the largest visibility (the tests
//! check 1e-4 against a direct sum and against FINUFFT at tolerance 1e-12); the adjoint identity
//! holds to 1e-15 in float64.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use super::{complex_kind, real_kind};
use crate::error::{Error, Result};

/// Kernel width in grid cells.
pub const KERNEL_WIDTH: i64 = 6;
/// Oversampling factor of the FFT grid.
pub const OVERSAMPLING: i64 = 2;
/// Shape parameter of the exponential-of-semicircle kernel (FINUFFT's choice for width 6,
/// oversampling 2).
const BETA: f64 = 2.30 * KERNEL_WIDTH as f64;
/// Points interpolated or spread per batch of tensor operations (bounds the working memory to
/// about `points * 36 * B * C` complex values).
const CHUNK: i64 = 1 << 16;

/// The gridding kernel, `t` in grid cells.
pub fn kernel(t: f64) -> f64 {
    let half = KERNEL_WIDTH as f64 / 2.0;
    let z = t / half;
    if z.abs() >= 1.0 {
        0.0
    } else {
        (BETA * ((1.0 - z * z).sqrt() - 1.0)).exp()
    }
}

/// `int phi(t) cos(2 pi s t) dt` over the support (the kernel is even), composite Simpson in
/// float64 with 4096 intervals per half (the kernel is smooth except for a derivative
/// singularity at the edge, where it is 1e-6 of its peak).
fn kernel_transform(s: f64) -> f64 {
    let half = KERNEL_WIDTH as f64 / 2.0;
    let n = 4096;
    let h = half / n as f64;
    let f = |t: f64| kernel(t) * (2.0 * std::f64::consts::PI * s * t).cos();
    let mut sum = f(0.0) + f(half);
    for k in 1..n {
        sum += f(k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 };
    }
    2.0 * sum * h / 3.0
}

/// Converts an angle in arcseconds to radians.
pub fn arcsec_to_rad(arcsec: f64) -> f64 {
    (arcsec / 3600.0).to_radians()
}

/// A type-2 / type-1 NUFFT pair for `H x W` images and a fixed set of points.
#[derive(Debug)]
pub struct Nufft2d {
    height: i64,
    width: i64,
    points: i64,
    /// Grid rows and columns (mod the oversampled size) of each point's 6 taps: (M, 6) int64.
    rows: Tensor,
    cols: Tensor,
    /// Kernel values of those taps: (M, 6) float64.
    row_weights: Tensor,
    col_weights: Tensor,
    /// `1 / (phi_hat(row) phi_hat(col))`: (H, W) float64.
    deapodisation: Tensor,
}

impl Nufft2d {
    /// Points `(u, v)` in cycles per pixel (u along the columns, v along the rows), on `device`.
    pub fn new(height: i64, width: i64, points: &[[f64; 2]], device: Device) -> Result<Nufft2d> {
        if height < 1 || width < 1 || height > 1 << 15 || width > 1 << 15 {
            return Err(Error::invalid_argument(format!(
                "NUFFT: image size {height} x {width} is out of range"
            )));
        }
        if let Some(j) = points.iter().position(|p| !(p[0].is_finite() && p[1].is_finite())) {
            return Err(Error::invalid_argument(format!("NUFFT: point {j} is not finite: {:?}", points[j])));
        }
        let (grid_h, grid_w) = (OVERSAMPLING * height, OVERSAMPLING * width);
        let taps = |cycles_per_pixel: f64, grid: i64, index: &mut Vec<i64>, weight: &mut Vec<f64>| {
            let a = cycles_per_pixel * grid as f64;
            let first = a.floor() as i64 - (KERNEL_WIDTH / 2 - 1);
            for i in 0..KERNEL_WIDTH {
                let k = first + i;
                index.push(k.rem_euclid(grid));
                weight.push(kernel(a - k as f64));
            }
        };
        let m = points.len();
        let (mut rows, mut cols) = (Vec::with_capacity(6 * m), Vec::with_capacity(6 * m));
        let (mut row_weights, mut col_weights) = (Vec::with_capacity(6 * m), Vec::with_capacity(6 * m));
        for &[u, v] in points {
            taps(v, grid_h, &mut rows, &mut row_weights);
            taps(u, grid_w, &mut cols, &mut col_weights);
        }
        let table =
            |values: Vec<i64>| Tensor::from_slice(&values).view([m as i64, KERNEL_WIDTH]).to_device(device);
        let weights =
            |values: Vec<f64>| Tensor::from_slice(&values).view([m as i64, KERNEL_WIDTH]).to_device(device);
        let correction = |n: i64, grid: i64| -> Vec<f64> {
            (0..n).map(|i| 1.0 / kernel_transform((i - n / 2) as f64 / grid as f64)).collect()
        };
        let row_c = Tensor::from_slice(&correction(height, grid_h)).view([height, 1]);
        let col_c = Tensor::from_slice(&correction(width, grid_w)).view([1, width]);
        Ok(Nufft2d {
            height,
            width,
            points: m as i64,
            rows: table(rows),
            cols: table(cols),
            row_weights: weights(row_weights),
            col_weights: weights(col_weights),
            deapodisation: (row_c * col_c).to_device(device),
        })
    }

    /// Baselines `(u, v)` in wavelengths for pixels of `pixel_rad` radians.
    pub fn from_wavelengths(
        height: i64,
        width: i64,
        uv_wavelengths: &[[f64; 2]],
        pixel_rad: f64,
        device: Device,
    ) -> Result<Nufft2d> {
        if !(pixel_rad.is_finite() && pixel_rad > 0.0) {
            return Err(Error::invalid_argument(format!(
                "NUFFT: pixel size {pixel_rad} rad must be positive"
            )));
        }
        let points: Vec<[f64; 2]> =
            uv_wavelengths.iter().map(|&[u, v]| [u * pixel_rad, v * pixel_rad]).collect();
        Nufft2d::new(height, width, &points, device)
    }

    pub fn height(&self) -> i64 {
        self.height
    }
    pub fn width(&self) -> i64 {
        self.width
    }
    /// Number of points M.
    pub fn len(&self) -> usize {
        self.points as usize
    }
    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// Flat grid indices and 2-D kernel weights of points `[start, start + n)`: (n * 36,).
    fn chunk_taps(&self, start: i64, n: i64, device: Device, kind: Kind) -> (Tensor, Tensor) {
        let grid_w = OVERSAMPLING * self.width;
        let rows = self.rows.narrow(0, start, n).to_device(device);
        let cols = self.cols.narrow(0, start, n).to_device(device);
        let index = (rows.unsqueeze(2) * grid_w + cols.unsqueeze(1)).reshape([-1]);
        let rw = self.row_weights.narrow(0, start, n).to_device(device);
        let cw = self.col_weights.narrow(0, start, n).to_device(device);
        let weight =
            (rw.unsqueeze(2) * cw.unsqueeze(1)).to_kind(kind).reshape([n, KERNEL_WIDTH * KERNEL_WIDTH]);
        (index, weight)
    }

    /// Type 2: `(B, C, H, W)` images (real or complex) -> `(B, C, M)` complex visibilities.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [b, c, h, w] = super::dims4(x, "NUFFT forward")?;
        if (h, w) != (self.height, self.width) {
            return Err(Error::invalid_argument(format!(
                "NUFFT forward: the image is {w} x {h}, the operator {} x {}",
                self.width, self.height
            )));
        }
        let (rk, ck, device) = (real_kind(x), complex_kind(x), x.device());
        let (grid_h, grid_w) = (OVERSAMPLING * h, OVERSAMPLING * w);
        let scaled = x.to_kind(ck) * self.deapodisation.to_device(device).to_kind(rk);
        let grid = Tensor::zeros([b, c, grid_h, grid_w], (ck, device));
        grid.narrow(2, 0, h).narrow(3, 0, w).copy_(&scaled);
        let spectrum = grid
            .roll([-(h / 2), -(w / 2)], [2, 3])
            .fft_fft2(None::<&[i64]>, [-2i64, -1], "backward")
            .reshape([b * c, grid_h * grid_w]);
        let mut parts = Vec::new();
        let mut start = 0;
        while start < self.points {
            let n = CHUNK.min(self.points - start);
            let (index, weight) = self.chunk_taps(start, n, device, rk);
            let taps = spectrum.index_select(1, &index).view([b * c, n, KERNEL_WIDTH * KERNEL_WIDTH]);
            parts.push((taps * weight.unsqueeze(0)).sum_dim_intlist(2, false, ck));
            start += n;
        }
        if parts.is_empty() {
            return Ok(Tensor::zeros([b, c, 0], (ck, device)));
        }
        Ok(Tensor::cat(&parts, 1).view([b, c, self.points]))
    }

    /// Type 1, the adjoint of [`Nufft2d::forward`]: `(B, C, M)` visibilities (complex, or real
    /// read as complex with zero imaginary part) -> `(B, C, H, W)` complex images.
    pub fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        let size = y.size();
        let (b, c) = match size.as_slice() {
            &[b, c, m] if m == self.points => (b, c),
            _ => {
                return Err(Error::invalid_argument(format!(
                    "NUFFT adjoint: expected (B, C, {}) visibilities, got {size:?}",
                    self.points
                )))
            }
        };
        let (rk, ck, device) = (real_kind(y), complex_kind(y), y.device());
        let (h, w) = (self.height, self.width);
        let (grid_h, grid_w) = (OVERSAMPLING * h, OVERSAMPLING * w);
        let y = y.to_kind(ck);
        let mut grid = Tensor::zeros([b * c, grid_h * grid_w, 2], (rk, device));
        let mut start = 0;
        while start < self.points {
            let n = CHUNK.min(self.points - start);
            let (index, weight) = self.chunk_taps(start, n, device, rk);
            let spread = y.narrow(2, start, n).reshape([b * c, n, 1]) * weight.unsqueeze(0);
            let spread = spread.view_as_real().reshape([b * c, n * KERNEL_WIDTH * KERNEL_WIDTH, 2]);
            let _ = grid.index_add_(1, &index, &spread);
            start += n;
        }
        let image = grid
            .view_as_complex()
            .view([b, c, grid_h, grid_w])
            .fft_ifft2(None::<&[i64]>, [-2i64, -1], "forward")
            .roll([h / 2, w / 2], [2, 3])
            .narrow(2, 0, h)
            .narrow(3, 0, w);
        Ok(image * self.deapodisation.to_device(device).to_kind(rk))
    }
}

/// How visibilities are weighted in the data term and the dirty image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Weighting {
    /// Each visibility by its own (inverse-variance) weight: best sensitivity, a broad beam.
    #[default]
    Natural,
    /// Each visibility's weight divided by the total weight in its cell of the image's (u, v)
    /// grid (cells of `1 / (N delta)` wavelengths, a visibility counting also at `(-u, -v)`):
    /// every measured cell weighs the same, a sharper beam with higher sidelobe-free resolution
    /// at the price of noise.
    Uniform,
}

/// Imaging weights of points `(u, v)` in cycles per pixel with natural weights `natural`
/// (0: flagged) for an `H x W` image (see [`Weighting`]).
pub fn imaging_weights(
    points: &[[f64; 2]],
    natural: &[f64],
    height: i64,
    width: i64,
    weighting: Weighting,
) -> Result<Vec<f64>> {
    if natural.len() != points.len() {
        return Err(Error::invalid_argument(format!(
            "{} weights for {} visibilities",
            natural.len(),
            points.len()
        )));
    }
    if let Some(j) = natural.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
        return Err(Error::invalid_argument(format!(
            "visibility {j}: weight {} must be finite and >= 0",
            natural[j]
        )));
    }
    match weighting {
        Weighting::Natural => Ok(natural.to_vec()),
        Weighting::Uniform => {
            let cell =
                |[u, v]: [f64; 2]| ((v * height as f64).round() as i64, (u * width as f64).round() as i64);
            let mut density: HashMap<(i64, i64), f64> = HashMap::new();
            for (&p, &w) in points.iter().zip(natural) {
                *density.entry(cell(p)).or_default() += w;
                *density.entry(cell([-p[0], -p[1]])).or_default() += w;
            }
            Ok(points
                .iter()
                .zip(natural)
                .map(|(&p, &w)| if w > 0.0 { w / density[&cell(p)] } else { 0.0 })
                .collect())
        }
    }
}

/// The point-spread function (dirty beam) of weighted points, `Re sum_j w_j exp(+2 pi i (u_j l
/// + v_j m))`, on a `(2H, 2W)` grid of the same pixel size centred at `(H, W)`: every offset
/// between two pixels of an `H x W` image. Not normalised (its peak is `sum w`). float64, on
/// `device`.
pub fn point_spread_function(
    height: i64,
    width: i64,
    points: &[[f64; 2]],
    weights: &[f64],
    device: Device,
) -> Result<Tensor> {
    if weights.len() != points.len() {
        return Err(Error::invalid_argument(format!(
            "{} weights for {} points",
            weights.len(),
            points.len()
        )));
    }
    let double = Nufft2d::new(2 * height, 2 * width, points, device)?;
    let w = Tensor::from_slice(weights).view([1, 1, -1]).to_device(device).to_kind(Kind::ComplexDouble);
    Ok(double.adjoint(&w)?.real().view([2 * height, 2 * width]))
}

/// `Re(A^H W A)` for real `H x W` images as a convolution with the point-spread function,
/// applied through FFTs of size `2H x 2W` (the Toeplitz embedding): exact up to the NUFFT's
/// accuracy, and far cheaper than a type 2 and a type 1 transform per application.
#[derive(Debug)]
pub struct NormalOperator {
    height: i64,
    width: i64,
    /// Real half-spectrum (rfft2 layout) of the PSF placed with offset 0 at (0, 0): (2H, W + 1).
    spectrum: Tensor,
}

impl NormalOperator {
    /// From a PSF of [`point_spread_function`] (any scale).
    pub fn new(psf: &Tensor) -> Result<NormalOperator> {
        let (gh, gw) = match psf.size().as_slice() {
            &[gh, gw] if gh % 2 == 0 && gw % 2 == 0 => (gh, gw),
            other => {
                return Err(Error::invalid_argument(format!(
                    "NormalOperator: a (2H, 2W) PSF is needed, got {other:?}"
                )))
            }
        };
        let placed = psf.to_kind(Kind::Double).roll([-(gh / 2), -(gw / 2)], [0, 1]);
        // The PSF is even (P(-d) = P(d)): its spectrum is real; keeping only the real part makes
        // the operator exactly symmetric, as conjugate gradients need.
        let spectrum = placed.fft_fft2(None::<&[i64]>, [0i64, 1], "backward").real().narrow(1, 0, gw / 2 + 1);
        Ok(NormalOperator { height: gh / 2, width: gw / 2, spectrum })
    }

    /// The largest value of the spectrum: an upper bound of the operator's norm (the norm of the
    /// circulant it is a section of), and close to it.
    pub fn norm_bound(&self) -> f64 {
        self.spectrum.abs().max().double_value(&[])
    }

    /// `(PSF * x)` restricted to the image, for real `(B, C, H, W)` x.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let [b, c, h, w] = super::dims4(x, "NormalOperator::apply")?;
        if (h, w) != (self.height, self.width) {
            return Err(Error::invalid_argument(format!(
                "NormalOperator: the image is {w} x {h}, the operator {} x {}",
                self.width, self.height
            )));
        }
        let rk = real_kind(x);
        let padded = Tensor::zeros([b, c, 2 * h, 2 * w], (rk, x.device()));
        padded.narrow(2, 0, h).narrow(3, 0, w).copy_(&x.to_kind(rk));
        let spectrum = self.spectrum.to_device(x.device()).to_kind(rk);
        let product = padded.fft_rfft2(None::<&[i64]>, [-2i64, -1], "backward") * spectrum;
        let full = product.fft_irfft2(Some([2 * h, 2 * w].as_slice()), [-2i64, -1], "backward");
        Ok(full.narrow(2, 0, h).narrow(3, 0, w))
    }
}

#[cfg(test)]
mod tests {
    use super::super::inner;
    use super::super::test_util::{npy_tensor, read_npy};
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The measurement equation summed directly, float64: (M,) complex.
    fn direct_dft(x: &Tensor, points: &[[f64; 2]]) -> Tensor {
        let (h, w) = (x.size()[0], x.size()[1]);
        let pu: Vec<f64> = points.iter().map(|p| p[0]).collect();
        let pv: Vec<f64> = points.iter().map(|p| p[1]).collect();
        let u = Tensor::from_slice(&pu).view([-1, 1, 1]);
        let v = Tensor::from_slice(&pv).view([-1, 1, 1]);
        let l = (Tensor::arange(w, (Kind::Double, Device::Cpu)) - (w / 2) as f64).view([1, 1, w]);
        let m = (Tensor::arange(h, (Kind::Double, Device::Cpu)) - (h / 2) as f64).view([1, h, 1]);
        let phase = (u * l + v * m) * (-2.0 * std::f64::consts::PI);
        let (re, im) = (phase.cos() * x.unsqueeze(0), phase.sin() * x.unsqueeze(0));
        Tensor::complex(
            &re.sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double),
            &im.sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double),
        )
    }

    fn random_points(m: usize, spread: f64, seed: u64) -> Vec<[f64; 2]> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..m).map(|_| [rng.gen_range(-spread..spread), rng.gen_range(-spread..spread)]).collect()
    }

    fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
        let d = (ours - reference).abs().max().double_value(&[]);
        d / reference.abs().max().double_value(&[])
    }

    #[test]
    fn type2_matches_the_direct_sum_on_random_points() {
        // Even, odd and non-square sizes; points over the whole band and beyond it (aliasing).
        for (h, w, spread) in [(32, 32, 0.5), (21, 16, 0.5), (16, 27, 0.9)] {
            let points = random_points(300, spread, (h * w) as u64);
            let op = Nufft2d::new(h, w, &points, Device::Cpu).unwrap();
            let x = Tensor::randn([h, w], (Kind::Double, Device::Cpu));
            let ours = op.forward(&x.view([1, 1, h, w])).unwrap().view([-1]);
            let e = rel_err(&ours, &direct_dft(&x, &points));
            eprintln!("type 2 {h}x{w}: max error / max |V| = {e:.2e}");
            assert!(e < 1e-4, "{h}x{w}: {e:e}");
            // float32 inputs compute in float32, still within the bound.
            let ours32 = op.forward(&x.to_kind(Kind::Float).view([1, 1, h, w])).unwrap().view([-1]);
            assert_eq!(ours32.kind(), Kind::ComplexFloat);
            assert!(rel_err(&ours32.to_kind(Kind::ComplexDouble), &direct_dft(&x, &points)) < 1e-4);
        }
    }

    #[test]
    fn type1_matches_the_direct_sum_and_is_the_adjoint() {
        let (h, w) = (24, 19);
        let points = random_points(250, 0.5, 9);
        let op = Nufft2d::new(h, w, &points, Device::Cpu).unwrap();
        let y = Tensor::complex(
            &Tensor::randn([1, 2, 250], (Kind::Double, Device::Cpu)),
            &Tensor::randn([1, 2, 250], (Kind::Double, Device::Cpu)),
        );
        let ours = op.adjoint(&y).unwrap();
        // Direct: x[r, c] = sum_j y_j exp(+2 pi i (u_j l + v_j m)) = conj(DFT of delta) . y.
        let l = Tensor::arange(w, (Kind::Double, Device::Cpu)) - (w / 2) as f64;
        let m = Tensor::arange(h, (Kind::Double, Device::Cpu)) - (h / 2) as f64;
        let pu = Tensor::from_slice(&points.iter().map(|p| p[0]).collect::<Vec<_>>()).view([-1, 1, 1]);
        let pv = Tensor::from_slice(&points.iter().map(|p| p[1]).collect::<Vec<_>>()).view([-1, 1, 1]);
        let phase = (pu * l.view([1, 1, w]) + pv * m.view([1, h, 1])) * (2.0 * std::f64::consts::PI);
        let kernel = Tensor::complex(&phase.cos(), &phase.sin()); // (M, H, W)
        let direct =
            (y.view([2, 250, 1, 1]) * kernel.unsqueeze(0)).sum_dim_intlist(1, false, Kind::ComplexDouble);
        let e = rel_err(&ours.view([2, h, w]), &direct);
        eprintln!("type 1 {h}x{w}: max error / max |x| = {e:.2e}");
        assert!(e < 1e-4, "{e:e}");
        // <A x, y> = <x, A^H y> (complex inner products; the real one follows).
        let x = Tensor::complex(
            &Tensor::randn([1, 2, h, w], (Kind::Double, Device::Cpu)),
            &Tensor::randn([1, 2, h, w], (Kind::Double, Device::Cpu)),
        );
        let lhs = (op.forward(&x).unwrap() * y.conj()).sum(Kind::ComplexDouble);
        let rhs = (&x * op.adjoint(&y).unwrap().conj()).sum(Kind::ComplexDouble);
        let gap = (&lhs - &rhs).abs().double_value(&[]) / lhs.abs().double_value(&[]);
        eprintln!("adjoint test: |<Ax,y> - <x,A^H y>| / |<Ax,y>| = {gap:.1e}");
        assert!(gap < 1e-6, "{gap:e}");
        // Real images: <A x, y>_R = <x, Re A^H y>.
        let xr = x.real();
        let gap = (inner(&op.forward(&xr).unwrap(), &y) - inner(&xr, &op.adjoint(&y).unwrap().real())).abs();
        assert!(gap < 1e-6 * inner(&op.forward(&xr).unwrap(), &y).abs().max(1.0));
    }

    #[test]
    fn agrees_with_finufft() {
        // scripts/fixtures/make_nufft_fixtures.py: FINUFFT at tolerance 1e-12, isign -1 (type 2)
        // and +1 (type 1).
        let (_, pts) = read_npy("nufft_points.npy");
        let points: Vec<[f64; 2]> = pts.chunks(2).map(|p| [p[0], p[1]]).collect();
        let image = npy_tensor("nufft_image.npy");
        let (h, w) = (image.size()[0], image.size()[1]);
        let op = Nufft2d::new(h, w, &points, Device::Cpu).unwrap();
        let vis = npy_tensor("nufft_type2.npy").view_as_complex();
        let ours = op.forward(&image.view([1, 1, h, w])).unwrap().view([-1]);
        let e2 = rel_err(&ours, &vis);
        let y = npy_tensor("nufft_y.npy").view_as_complex();
        let reference = npy_tensor("nufft_type1.npy").view_as_complex();
        let ours = op.adjoint(&y.view([1, 1, -1])).unwrap().view([h, w]);
        let e1 = rel_err(&ours, &reference);
        eprintln!("vs FINUFFT {h}x{w}, {} points: type 2 {e2:.2e}, type 1 {e1:.2e}", points.len());
        assert!(e2 < 1e-4 && e1 < 1e-4, "{e2:e} {e1:e}");
    }

    #[test]
    fn wavelengths_and_pixel_size() {
        // A point source one pixel right of the centre: V = exp(-2 pi i u delta).
        let delta = arcsec_to_rad(2.0);
        let op =
            Nufft2d::from_wavelengths(8, 8, &[[1000.0, 0.0], [0.0, 5000.0]], delta, Device::Cpu).unwrap();
        let x = Tensor::zeros([1, 1, 8, 8], (Kind::Double, Device::Cpu));
        let _ = x.get(0).get(0).get(4).get(5).fill_(1.0);
        let v = op.forward(&x).unwrap().view([-1]);
        let phase = -2.0 * std::f64::consts::PI * 1000.0 * delta;
        assert!((v.real().double_value(&[0]) - phase.cos()).abs() < 1e-4);
        assert!((v.imag().double_value(&[0]) - phase.sin()).abs() < 1e-4);
        assert!((v.real().double_value(&[1]) - 1.0).abs() < 1e-4, "no phase along v for m = 0");
        assert!(v.imag().double_value(&[1]).abs() < 1e-4);
        assert!(Nufft2d::from_wavelengths(8, 8, &[[1.0, 0.0]], 0.0, Device::Cpu).is_err());
        assert!(Nufft2d::new(8, 8, &[[f64::NAN, 0.0]], Device::Cpu).is_err());
        assert!(op.forward(&Tensor::zeros([1, 1, 8, 9], (Kind::Float, Device::Cpu))).is_err());
    }

    #[test]
    fn normal_operator_is_the_weighted_gram_matrix() {
        let (h, w) = (20, 18);
        let points = random_points(400, 0.45, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let weights: Vec<f64> = (0..400).map(|_| rng.gen_range(0.0..2.0)).collect();
        let op = Nufft2d::new(h, w, &points, Device::Cpu).unwrap();
        let psf = point_spread_function(h, w, &points, &weights, Device::Cpu).unwrap();
        let total: f64 = weights.iter().sum();
        assert!((psf.double_value(&[h, w]) - total).abs() < 1e-5 * total, "the PSF peaks at sum w");
        let normal = NormalOperator::new(&psf).unwrap();
        let x = Tensor::randn([1, 1, h, w], (Kind::Double, Device::Cpu));
        let wt = Tensor::from_slice(&weights).view([1, 1, -1]);
        let direct = op.adjoint(&(op.forward(&x).unwrap() * wt)).unwrap().real();
        let e = rel_err(&normal.apply(&x).unwrap(), &direct);
        assert!(e < 1e-4, "{e:e}");
        // An upper bound of the Gram matrix's norm: <x, T x> <= bound ||x||^2.
        assert!(inner(&x, &normal.apply(&x).unwrap()) <= normal.norm_bound() * inner(&x, &x));
    }

    /// Throughput on this machine (the figures of the README):
    /// `cargo test --release --lib nufft_throughput -- --ignored --nocapture`. Type 2 and type 1
    /// against the direct sum (per visibility, measured on a subset), and the Toeplitz normal
    /// operator against a type 2 + type 1 pair, in one run.
    #[test]
    #[ignore]
    fn nufft_throughput() {
        let time = |f: &dyn Fn()| {
            f();
            let start = std::time::Instant::now();
            for _ in 0..3 {
                f();
            }
            start.elapsed().as_secs_f64() / 3.0
        };
        for n in [128i64, 256] {
            let m = 250_000;
            let points = random_points(m, 0.5, 1);
            let op = Nufft2d::new(n, n, &points, Device::Cpu).unwrap();
            let x = Tensor::randn([1, 1, n, n], (Kind::Float, Device::Cpu));
            let y = op.forward(&x).unwrap();
            let t2 = time(&|| {
                let _ = op.forward(&x).unwrap();
            });
            let t1 = time(&|| {
                let _ = op.adjoint(&y).unwrap();
            });
            let subset = &points[..2000];
            let xd = x.view([n, n]).to_kind(Kind::Double);
            let td = time(&|| {
                let _ = direct_dft(&xd, subset);
            }) * m as f64
                / subset.len() as f64;
            let w = vec![1.0; m];
            let normal =
                NormalOperator::new(&point_spread_function(n, n, &points, &w, Device::Cpu).unwrap()).unwrap();
            let tn = time(&|| {
                let _ = normal.apply(&x).unwrap();
            });
            eprintln!(
                "{n}x{n}, {m} visibilities, float32, {} threads: type 2 {:.3} s ({:.2e} vis/s), type 1 {:.3} s ({:.2e} vis/s); direct sum (float64, from 2000) {:.1} s ({:.2e} vis/s); normal operator: Toeplitz {:.4} s vs type 2 + type 1 {:.3} s",
                tch::get_num_threads(),
                t2,
                m as f64 / t2,
                t1,
                m as f64 / t1,
                td,
                m as f64 / td,
                tn,
                t1 + t2
            );
        }
    }

    /// CUDA against CPU, for a GPU machine: `cargo test --release --lib nufft_cuda -- --ignored
    /// --nocapture` (says so and passes without CUDA).
    #[test]
    #[ignore]
    fn nufft_cuda_matches_cpu() {
        if !tch::Cuda::is_available() {
            eprintln!("nufft_cuda_matches_cpu: no CUDA device, nothing checked");
            return;
        }
        let gpu = Device::Cuda(0);
        let (h, w) = (40, 36);
        let points = random_points(5000, 0.5, 3);
        let cpu = Nufft2d::new(h, w, &points, Device::Cpu).unwrap();
        let cuda = Nufft2d::new(h, w, &points, gpu).unwrap();
        for kind in [Kind::Float, Kind::Double] {
            let x = Tensor::randn([2, 1, h, w], (kind, Device::Cpu));
            let forward = cuda.forward(&x.to_device(gpu)).unwrap();
            assert_eq!(forward.device(), gpu);
            let e = rel_err(&forward.to_device(Device::Cpu), &cpu.forward(&x).unwrap());
            let y = cpu.forward(&x).unwrap();
            let e1 = rel_err(
                &cuda.adjoint(&y.to_device(gpu)).unwrap().to_device(Device::Cpu),
                &cpu.adjoint(&y).unwrap(),
            );
            eprintln!("NUFFT CUDA vs CPU {kind:?}: type 2 {e:.1e}, type 1 {e1:.1e}");
            let tol = if kind == Kind::Double { 1e-10 } else { 1e-4 };
            assert!(e < tol && e1 < tol, "{e:e} {e1:e}");
        }
        let psf = point_spread_function(h, w, &points, &vec![1.0; 5000], gpu).unwrap();
        let normal = NormalOperator::new(&psf).unwrap();
        let x = Tensor::randn([1, 1, h, w], (Kind::Float, gpu));
        assert_eq!(normal.apply(&x).unwrap().device(), gpu);
    }

    #[test]
    fn uniform_weights_equalise_cells() {
        // Three points in one cell, one alone (its conjugate cell is distinct): the cell of three
        // sums to 1, the lone point gets 1.
        let pts = [[0.1, 0.1], [0.102, 0.1], [0.1, 0.098], [-0.3, 0.2]];
        let w = imaging_weights(&pts, &[1.0; 4], 10, 10, Weighting::Uniform).unwrap();
        assert!((w[0] + w[1] + w[2] - 1.0).abs() < 1e-12 && (w[3] - 1.0).abs() < 1e-12, "{w:?}");
        let w = imaging_weights(&pts, &[1.0, 0.0, 1.0, 2.0], 10, 10, Weighting::Natural).unwrap();
        assert_eq!(w, vec![1.0, 0.0, 1.0, 2.0]);
        assert!(imaging_weights(&pts, &[1.0, -1.0, 1.0, 1.0], 10, 10, Weighting::Uniform).is_err());
        assert!(imaging_weights(&pts, &[1.0], 10, 10, Weighting::Natural).is_err());
    }
}
