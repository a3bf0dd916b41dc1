//! Dead-leaves images (Lee, Mumford & Huang 2001): license-free natural-looking training images
//! for denoisers and other restoration networks (Achddou et al. 2021, "Synthetic images as a
//! regularity prior for image restoration neural networks").
//!
//! Discs ("leaves") fall one after another, each new one landing UNDER those already there, until
//! the image is covered: an occlusion model whose regions have edges at every scale, and whose
//! power spectrum falls roughly as `1 / k^2`, like that of natural images.
//!
//! * Radii: power law `p(r) ∝ r^-alpha` on `[r_min, r_max]` (defaults alpha = 3, r_min = 1.5
//!   pixels, r_max = half the shorter side), drawn by inverse CDF. Alpha = 3 makes the model
//!   scale invariant between the two cut-offs, so a fixed `r_min` in pixels and an `r_max`
//!   proportional to the size give the same statistics at every size.
//! * Centres: uniform over the image grown by `r_max + 1/2` on each side; discs that miss the
//!   image are skipped. This is the stationary Poisson model restricted to the window (no thinner
//!   coverage near the borders, no bias towards small discs there).
//! * Colours: gray uniform in [0, 1]; RGB either three independent uniforms (a quarter of the
//!   discs: vivid) or a uniform gray plus a small per-channel chroma offset (natural, correlated
//!   channels), clipped to [0, 1].
//! * Texture (`texture`): a linear gradient (up to 0.3 across the disc) plus zero to two
//!   oriented sinusoidal stripes (wavelength log-uniform from 3 pixels to the diameter,
//!   amplitude up to 0.12), the same on every channel, clipped to [0, 1].
//! * Edges are antialiased with a 1-pixel linear ramp of the coverage (`clamp(r + 1/2 - d, 0, 1)`
//!   at distance `d` from the centre, a close approximation of the pixel's area fraction) and
//!   composited front to back: colour `+= T a c`, transmittance `T *= 1 - a`. A pixel is covered
//!   once `T <= 1e-3`; the leftover is renormalised away. Discs only touch pixels not yet covered,
//!   so the cost is about one texture evaluation per pixel plus the discs' bounding spans.
//! * Generation stops when every pixel is covered, or after a cap on the number of draws (far
//!   beyond what covering needs: about `ln(pixels) + 20` expected coverings of each pixel); any
//!   pixel still open then takes the colour of the last disc.
//! * Depth of field (`blur_probability`): a fraction of the images get a sharp foreground over a
//!   blurred background: after a random fraction (0 .. 80 %) of the image is covered, the
//!   following discs go to a second layer, which, once complete, is blurred by a Gaussian of
//!   sigma 0.6 .. 2 pixels and seen through the foreground's transmittance. A cut at 0 % blurs the
//!   whole image (out of focus).
//!
//! Values are in [0, 1]. Everything is drawn from the caller's generator (use
//! [`super::sample_rng`]), so an image depends only on (seed, index, size, channels, params).

use rand::Rng;

/// A pixel is covered when its transmittance is at most this.
const COVERED: f32 = 1e-3;
/// Stripes per disc, at most.
const MAX_WAVES: usize = 2;

/// Parameters of the dead-leaves model.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLeavesParams {
    /// Exponent of the radius density `p(r) ∝ r^-alpha` (3: scale invariant).
    pub alpha: f64,
    /// Smallest radius, pixels.
    pub r_min: f64,
    /// Largest radius, pixels; 0 = half the shorter side.
    pub r_max: f64,
    /// Textured (gradient and stripes) rather than flat discs.
    pub texture: bool,
    /// Probability that an image gets a blurred background (depth of field).
    pub blur_probability: f64,
}

impl Default for DeadLeavesParams {
    fn default() -> Self {
        DeadLeavesParams { alpha: 3.0, r_min: 1.5, r_max: 0.0, texture: true, blur_probability: 0.1 }
    }
}

impl DeadLeavesParams {
    /// Rejects parameters the model cannot use.
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.alpha.is_finite() {
            anyhow::bail!("dead leaves: alpha {} is not a finite number", self.alpha);
        }
        if !(self.r_min.is_finite() && self.r_min > 0.0) {
            anyhow::bail!("dead leaves: r_min {} must be a positive number of pixels", self.r_min);
        }
        if !(self.r_max == 0.0 || (self.r_max.is_finite() && self.r_max >= self.r_min)) {
            anyhow::bail!("dead leaves: r_max {} must be 0 (half the size) or at least r_min", self.r_max);
        }
        if !(0.0..=1.0).contains(&self.blur_probability) {
            anyhow::bail!("dead leaves: blur_probability {} is not in [0, 1]", self.blur_probability);
        }
        Ok(())
    }

    /// (r_min, r_max) in pixels for an H x W image.
    pub fn radii(&self, height: usize, width: usize) -> (f64, f64) {
        let r_max = if self.r_max > 0.0 { self.r_max } else { height.min(width) as f64 / 2.0 };
        (self.r_min, r_max.max(self.r_min))
    }
}

/// One image, row-major (H, W, C) interleaved, values in [0, 1].
///
/// Panics if `channels` is not 1 or 3 or the parameters fail [`DeadLeavesParams::check`].
pub fn dead_leaves_image(
    height: usize,
    width: usize,
    channels: usize,
    params: &DeadLeavesParams,
    rng: &mut impl rand::Rng,
) -> Vec<f32> {
    render(height, width, channels, params, rng, None)
}

/// The power law `p(r) ∝ r^-alpha` on [a, b].
struct PowerLaw {
    a: f64,
    b: f64,
    alpha: f64,
}

impl PowerLaw {
    fn sample(&self, u: f64) -> f64 {
        let (a, b) = (self.a, self.b);
        if b - a <= 1e-12 * a {
            return a;
        }
        let e = 1.0 - self.alpha;
        if e.abs() < 1e-9 {
            return a * (b / a).powf(u);
        }
        let (ae, be) = (a.powf(e), b.powf(e));
        (ae + u * (be - ae)).powf(1.0 / e).clamp(a, b)
    }

    /// `∫_a^b r^p dr`.
    fn integral(&self, p: f64) -> f64 {
        let (a, b) = (self.a, self.b);
        if (p + 1.0).abs() < 1e-9 {
            (b / a).ln()
        } else {
            (b.powf(p + 1.0) - a.powf(p + 1.0)) / (p + 1.0)
        }
    }

    /// `E[r^k]`.
    fn moment(&self, k: f64) -> f64 {
        if self.b - self.a <= 1e-12 * self.a {
            return self.a.powf(k);
        }
        self.integral(k - self.alpha) / self.integral(-self.alpha)
    }
}

/// One leaf: a disc, its colour and its texture, in pixel units (x = column, y = row, pixel
/// centres at integers).
struct Disc {
    x: f64,
    y: f64,
    r: f64,
    colour: [f32; 3],
    /// Gradient of the linear ramp, per pixel.
    gradient: [f64; 2],
    /// (kx, ky, phase, amplitude) of each stripe pattern.
    waves: [[f64; 4]; MAX_WAVES],
    n_waves: usize,
}

impl Disc {
    fn draw<R: Rng + ?Sized>(x: f64, y: f64, r: f64, channels: usize, texture: bool, rng: &mut R) -> Disc {
        let mut colour = [0f32; 3];
        if channels == 1 {
            colour[0] = rng.gen::<f32>();
        } else if rng.gen_bool(0.25) {
            for c in &mut colour {
                *c = rng.gen::<f32>();
            }
        } else {
            let gray = rng.gen::<f32>();
            let chroma = rng.gen_range(0.0..0.2f32);
            for c in &mut colour {
                *c = (gray + chroma * rng.gen_range(-1.0..1.0f32)).clamp(0.0, 1.0);
            }
        }
        let mut disc = Disc { x, y, r, colour, gradient: [0.0; 2], waves: [[0.0; 4]; MAX_WAVES], n_waves: 0 };
        if texture {
            let tau = std::f64::consts::TAU;
            // Up to 0.3 from one side of the disc to the other.
            let slope = rng.gen_range(0.0..0.3) / (2.0 * r + 1.0);
            let (s, c) = rng.gen_range(0.0..tau).sin_cos();
            disc.gradient = [slope * c, slope * s];
            disc.n_waves = rng.gen_range(0..=MAX_WAVES);
            let (lo, hi) = (3f64.ln(), (2.0 * r).max(3.5).ln());
            for wave in disc.waves.iter_mut().take(disc.n_waves) {
                let k = tau / rng.gen_range(lo..hi).exp();
                let (s, c) = rng.gen_range(0.0..tau).sin_cos();
                *wave = [k * c, k * s, rng.gen_range(0.0..tau), rng.gen_range(0.0..0.12)];
            }
        }
        disc
    }

    /// The texture's offset at (dx, dy) from the centre.
    fn texture(&self, dx: f64, dy: f64) -> f32 {
        let mut t = self.gradient[0] * dx + self.gradient[1] * dy;
        for [kx, ky, phase, amplitude] in &self.waves[..self.n_waves] {
            t += amplitude * (kx * dx + ky * dy + phase).sin();
        }
        t as f32
    }
}

/// Discs composited front to back: premultiplied colour and transmittance per pixel.
struct Layer {
    colour: Vec<f32>,
    transmittance: Vec<f32>,
    uncovered: usize,
}

impl Layer {
    fn new(pixels: usize, channels: usize) -> Layer {
        Layer { colour: vec![0.0; pixels * channels], transmittance: vec![1.0; pixels], uncovered: pixels }
    }

    /// Puts `disc` under what the layer holds. False if the disc misses the image.
    fn add(&mut self, disc: &Disc, height: usize, width: usize, channels: usize, texture: bool) -> bool {
        let reach = disc.r + 0.5;
        let (row0, row1) = ((disc.y - reach).ceil(), (disc.y + reach).floor());
        let (col0, col1) = ((disc.x - reach).ceil(), (disc.x + reach).floor());
        if row1 < 0.0 || col1 < 0.0 || row0 > (height - 1) as f64 || col0 > (width - 1) as f64 {
            return false;
        }
        let (row0, row1) = (row0.max(0.0) as usize, (row1 as usize).min(height - 1));
        // Pixels closer than this are wholly inside the disc.
        let inner = (disc.r - 0.5).max(0.0).powi(2);
        for row in row0..=row1 {
            let dy = row as f64 - disc.y;
            let half = reach * reach - dy * dy;
            if half <= 0.0 {
                continue;
            }
            let half = half.sqrt();
            let (c0, c1) = ((disc.x - half).ceil(), (disc.x + half).floor());
            if c1 < 0.0 || c0 > (width - 1) as f64 {
                continue;
            }
            let (c0, c1) = (c0.max(0.0) as usize, (c1 as usize).min(width - 1));
            for col in c0..=c1 {
                let p = row * width + col;
                let t = self.transmittance[p];
                if t <= COVERED {
                    continue;
                }
                let dx = col as f64 - disc.x;
                let d2 = dx * dx + dy * dy;
                let a = if d2 <= inner { 1.0 } else { (reach - d2.sqrt()).min(1.0) as f32 };
                if a <= 0.0 {
                    continue;
                }
                let offset = if texture { disc.texture(dx, dy) } else { 0.0 };
                let weight = t * a;
                for (out, c) in self.colour[p * channels..(p + 1) * channels].iter_mut().zip(disc.colour) {
                    *out += weight * (c + offset).clamp(0.0, 1.0);
                }
                let t = t * (1.0 - a);
                if t <= COVERED {
                    self.uncovered -= 1;
                }
                self.transmittance[p] = t;
            }
        }
        true
    }

    /// Straight (not premultiplied) colours: covered pixels renormalised by their coverage,
    /// open ones completed with `fill` (the last disc's colour) or set to `sentinel`.
    fn finish(mut self, channels: usize, fill: [f32; 3], sentinel: Option<f32>) -> Vec<f32> {
        for (p, &t) in self.transmittance.iter().enumerate() {
            let pixel = &mut self.colour[p * channels..(p + 1) * channels];
            if t <= COVERED {
                pixel.iter_mut().for_each(|v| *v = (*v / (1.0 - t)).clamp(0.0, 1.0));
            } else if let Some(s) = sentinel {
                pixel.fill(s);
            } else {
                pixel.iter_mut().zip(fill).for_each(|(v, f)| *v = (*v + t * f).clamp(0.0, 1.0));
            }
        }
        self.colour
    }
}

/// [`dead_leaves_image`], with pixels left open at the cap set to `sentinel` when given (tests).
fn render<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    channels: usize,
    params: &DeadLeavesParams,
    rng: &mut R,
    sentinel: Option<f32>,
) -> Vec<f32> {
    assert!(channels == 1 || channels == 3, "dead leaves have 1 or 3 channels, not {channels}");
    if let Err(e) = params.check() {
        panic!("{e}");
    }
    let pixels = height * width;
    if pixels == 0 {
        return Vec::new();
    }
    let (r_min, r_max) = params.radii(height, width);
    let radii = PowerLaw { a: r_min, b: r_max, alpha: params.alpha };
    // Centres over the image grown by the largest reach: every disc that can touch it.
    let margin = r_max + 0.5;
    let (x_range, y_range) = (-margin..(width - 1) as f64 + margin, -margin..(height - 1) as f64 + margin);
    let box_area = (width as f64 - 1.0 + 2.0 * margin) * (height as f64 - 1.0 + 2.0 * margin);
    // Draws per expected covering of a pixel (a disc covers a pixel wholly within r - 1/2).
    let inner_area = std::f64::consts::PI
        * (radii.moment(2.0) - radii.moment(1.0) + 0.25).max(0.25 * radii.moment(2.0)).max(0.1);
    let max_draws = ((box_area / inner_area) * ((pixels as f64).ln() + 20.0)).ceil() as u64;

    let depth_of_field = rng.gen::<f64>() < params.blur_probability;
    let (cut, sigma) =
        if depth_of_field { (rng.gen_range(0.0..0.8), rng.gen_range(0.6..2.0)) } else { (1.0, 0.0) };
    // The foreground takes discs until this many pixels are left open; the background the rest.
    let open_at_cut = ((1.0 - cut) * pixels as f64).round() as usize;

    let mut front = Layer::new(pixels, channels);
    let mut back: Option<Layer> = None;
    let mut last = [0.5f32; 3];
    for _ in 0..max_draws {
        if depth_of_field && back.is_none() && front.uncovered <= open_at_cut {
            back = Some(Layer::new(pixels, channels));
        }
        let layer = back.as_mut().unwrap_or(&mut front);
        if layer.uncovered == 0 {
            break;
        }
        let r = radii.sample(rng.gen::<f64>());
        let (x, y) = (rng.gen_range(x_range.clone()), rng.gen_range(y_range.clone()));
        let reach = r + 0.5;
        if x + reach < 0.0
            || y + reach < 0.0
            || x - reach > (width - 1) as f64
            || y - reach > (height - 1) as f64
        {
            continue;
        }
        let disc = Disc::draw(x, y, r, channels, params.texture, rng);
        if layer.add(&disc, height, width, channels, params.texture) {
            last = disc.colour;
        }
    }
    match back {
        None => front.finish(channels, last, sentinel),
        Some(back) => {
            let mut background = back.finish(channels, last, sentinel);
            gaussian_blur(&mut background, height, width, channels, sigma);
            let mut image = front.colour;
            for (p, &t) in front.transmittance.iter().enumerate() {
                for c in p * channels..(p + 1) * channels {
                    // Both terms are non-negative (but for a test's sentinel): only rounding to cap.
                    image[c] = (image[c] + t * background[c]).min(1.0);
                }
            }
            image
        }
    }
}

/// Separable Gaussian blur of an (H, W, C) image, edges replicated.
fn gaussian_blur(image: &mut [f32], height: usize, width: usize, channels: usize, sigma: f64) {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> =
        (-radius..=radius).map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp() as f32).collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let pass = |image: &mut [f32], along_rows: bool| {
        let source = image.to_vec();
        let (lines, length) = if along_rows { (height, width) } else { (width, height) };
        for line in 0..lines {
            for i in 0..length {
                for c in 0..channels {
                    let mut sum = 0.0;
                    for (j, k) in kernel.iter().enumerate() {
                        let at = (i as isize + j as isize - radius).clamp(0, length as isize - 1) as usize;
                        let p = if along_rows { line * width + at } else { at * width + line };
                        sum += k * source[p * channels + c];
                    }
                    let p = if along_rows { line * width + i } else { i * width + line };
                    image[p * channels + c] = sum;
                }
            }
        }
    };
    pass(image, true);
    pass(image, false);
}

#[cfg(test)]
mod tests {
    use super::super::sample_rng;
    use super::*;
    use tch::{Kind, Tensor};

    fn image(size: usize, channels: usize, seed: u64, index: u64) -> Vec<f32> {
        dead_leaves_image(size, size, channels, &DeadLeavesParams::default(), &mut sample_rng(seed, index))
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn dead_leaves_are_deterministic_per_index() {
        for channels in [1, 3] {
            let a = image(64, channels, 5, 17);
            assert_eq!(a.len(), 64 * 64 * channels);
            assert_eq!(bits(&a), bits(&image(64, channels, 5, 17)), "same (seed, index), same bytes");
            assert_ne!(bits(&a), bits(&image(64, channels, 5, 18)), "another index, another image");
            assert_ne!(bits(&a), bits(&image(64, channels, 6, 17)), "another seed, another image");
        }
        // Every depth-of-field image too (the blur's draws come from the same stream).
        let p = DeadLeavesParams { blur_probability: 1.0, ..Default::default() };
        let a = dead_leaves_image(48, 40, 3, &p, &mut sample_rng(1, 2));
        assert_eq!(bits(&a), bits(&dead_leaves_image(48, 40, 3, &p, &mut sample_rng(1, 2))));
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn dead_leaves_cover_the_image_with_plausible_statistics() {
        const SENTINEL: f32 = -1.0;
        let (size, count) = (128, 32);
        let mut values = Vec::with_capacity(count * size * size);
        for (i, blur) in (0..count as u64).zip([0.0, 1.0].into_iter().cycle()) {
            // Half of them with a blurred background: both layers must be covered.
            let p = DeadLeavesParams { blur_probability: blur, ..Default::default() };
            let x = render(size, size, 1, &p, &mut sample_rng(0, i), Some(SENTINEL));
            // (A sentinel under a blurred background is smeared, but stays negative.)
            assert!(!x.contains(&SENTINEL), "image {i}: pixels left unpainted");
            assert!(
                x.iter().all(|v| (0.0..=1.0).contains(v)),
                "image {i}: values outside [0, 1] (unpainted?)"
            );
            values.extend(x.iter().map(|&v| v as f64));
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        eprintln!("dead leaves over {count} images {size}x{size}: mean {mean:.4}, std {std:.4}");
        assert!((mean - 0.5).abs() < 0.1, "mean {mean}");
        assert!((0.15..0.4).contains(&std), "standard deviation {std}");
        // Not flat: textured discs have gradients inside, and there are edges at many scales.
        let distinct: std::collections::HashSet<u32> = values.iter().map(|&v| (v as f32).to_bits()).collect();
        assert!(distinct.len() > values.len() / 10, "only {} distinct values", distinct.len());

        // Flat discs, a fixed range of radii and a steep law: still covered.
        let p =
            DeadLeavesParams { alpha: 4.0, r_min: 3.0, r_max: 20.0, texture: false, blur_probability: 0.0 };
        let x = render(64, 96, 3, &p, &mut sample_rng(0, 0), Some(SENTINEL));
        assert!(!x.contains(&SENTINEL) && x.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn dead_leaves_power_spectrum_falls_as_a_power_law() {
        let (size, count) = (128i64, 16usize);
        let mut data = Vec::new();
        for i in 0..count as u64 {
            data.extend(image(size as usize, 1, 3, i));
        }
        let x = Tensor::from_slice(&data).view([count as i64, size, size]).to_kind(Kind::Double);
        let x = &x - x.mean_dim([-2i64, -1].as_slice(), true, Kind::Double);
        let power =
            x.fft_fft2(None::<&[i64]>, [-2, -1], "backward").abs().square().mean_dim(0, false, Kind::Double);
        let power = Vec::<f64>::try_from(power.reshape([-1])).unwrap();
        // Radial average over integer frequency rings.
        let n = size as usize;
        let (mut sum, mut hits) = (vec![0.0; n], vec![0usize; n]);
        let freq = |i: usize| if i <= n / 2 { i as f64 } else { i as f64 - n as f64 };
        for (p, v) in power.iter().enumerate() {
            let k = (freq(p / n).powi(2) + freq(p % n).powi(2)).sqrt().round() as usize;
            if k < n / 2 {
                sum[k] += v;
                hits[k] += 1;
            }
        }
        // Least-squares slope of log P against log k over mid frequencies.
        let points: Vec<(f64, f64)> =
            (4..=32).map(|k| ((k as f64).ln(), (sum[k] / hits[k] as f64).ln())).collect();
        let m = points.len() as f64;
        let (mx, my) =
            (points.iter().map(|p| p.0).sum::<f64>() / m, points.iter().map(|p| p.1).sum::<f64>() / m);
        let slope = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>()
            / points.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
        eprintln!("dead-leaves radial power spectrum slope {slope:.3}");
        assert!((-3.5..=-1.5).contains(&slope), "log-log slope {slope}");
    }

    #[test]
    fn dead_leaves_rgb_channels_differ() {
        let (size, channels) = (64, 3);
        for index in 0..4 {
            let x = image(size, channels, 9, index);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
            let plane = |c: usize| x.iter().skip(c).step_by(channels).copied().collect::<Vec<f32>>();
            let (r, g, b) = (plane(0), plane(1), plane(2));
            let mad = |a: &[f32], b: &[f32]| {
                a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).sum::<f64>() / a.len() as f64
            };
            for (name, d) in [("r-g", mad(&r, &g)), ("g-b", mad(&g, &b)), ("r-b", mad(&r, &b))] {
                assert!(d > 0.01, "image {index}: channels {name} differ by only {d}");
            }
            // ... yet correlated, as in natural images (most discs are gray plus a small chroma).
            let corr = {
                let (mr, mg) =
                    (r.iter().sum::<f32>() / r.len() as f32, g.iter().sum::<f32>() / g.len() as f32);
                let cov: f32 = r.iter().zip(&g).map(|(a, b)| (a - mr) * (b - mg)).sum();
                let vr: f32 = r.iter().map(|a| (a - mr).powi(2)).sum();
                let vg: f32 = g.iter().map(|b| (b - mg).powi(2)).sum();
                cov / (vr * vg).sqrt()
            };
            assert!(corr > 0.3, "image {index}: r-g correlation {corr}");
        }
    }

    #[test]
    fn dead_leaves_radii_follow_the_power_law() {
        let law = PowerLaw { a: 1.5, b: 48.0, alpha: 3.0 };
        let mut rng = sample_rng(0, 0);
        let draws: Vec<f64> = (0..200_000).map(|_| law.sample(rng.gen::<f64>())).collect();
        assert!(draws.iter().all(|r| (1.5..=48.0).contains(r)));
        for k in [1.0, 2.0] {
            let empirical = draws.iter().map(|r| r.powf(k)).sum::<f64>() / draws.len() as f64;
            let expected = law.moment(k);
            assert!((empirical / expected - 1.0).abs() < 0.03, "E[r^{k}] {empirical} vs {expected}");
        }
        // The median of r^-3 on [a, inf) is a sqrt(2).
        let mut sorted = draws.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let median = sorted[sorted.len() / 2];
        assert!((median / (1.5 * 2f64.sqrt()) - 1.0).abs() < 0.02, "median {median}");
        let log_uniform = PowerLaw { a: 2.0, b: 8.0, alpha: 1.0 };
        assert!((log_uniform.sample(0.5) - 4.0).abs() < 1e-9);
        assert!(DeadLeavesParams { r_min: 0.0, ..Default::default() }.check().is_err());
        assert!(DeadLeavesParams { r_max: 1.0, ..Default::default() }.check().is_err());
        assert!(DeadLeavesParams::default().check().is_ok());
    }
}
