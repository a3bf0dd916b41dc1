//! Random-ellipse phantoms for CT: Shepp-Logan-like heads (a bright skull ring, a darker brain,
//! and additive interior features, some nested inside others), every shape random.
//!
//! Geometry is in "phantom units": the pixel grid is mapped so that the shorter image side spans
//! [-1, 1] (square pixels; for H != W the longer side spans more), x to the right (columns),
//! y downwards (rows). Intensities add up as in Shepp-Logan; the result is clipped at 0 and
//! divided by its maximum, so phantoms lie in [0, 1] with a maximum of exactly 1.

use rand::Rng;
use rand_distr::{Distribution, Normal};

/// One ellipse: centre, semi-axes along its own axes, rotation (radians, counter-clockwise from
/// the x axis in the image seen with y down, i.e. clockwise on screen), additive intensity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ellipse {
    pub cx: f64,
    pub cy: f64,
    pub a: f64,
    pub b: f64,
    pub angle: f64,
    pub value: f64,
}

impl Ellipse {
    /// Whether (x, y) lies inside (boundary included).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let (s, c) = self.angle.sin_cos();
        let (dx, dy) = (x - self.cx, y - self.cy);
        let u = (dx * c + dy * s) / self.a;
        let v = (-dx * s + dy * c) / self.b;
        u * u + v * v <= 1.0
    }

    /// Whether `inner` lies inside `self`, tested on points of `inner`'s boundary (dense enough
    /// for the axis ratios generated here).
    fn encloses(&self, inner: &Ellipse) -> bool {
        let (s, c) = inner.angle.sin_cos();
        (0..48).all(|k| {
            let t = std::f64::consts::TAU * k as f64 / 48.0;
            let (u, v) = (inner.a * t.cos(), inner.b * t.sin());
            self.contains(inner.cx + u * c - v * s, inner.cy + u * s + v * c)
        })
    }

    /// The same ellipse with both semi-axes scaled.
    fn scaled(&self, factor: f64) -> Ellipse {
        Ellipse { a: self.a * factor, b: self.b * factor, ..*self }
    }
}

/// A random phantom's ellipses, in drawing (additive) order.
pub fn random_ellipses<R: Rng + ?Sized>(rng: &mut R) -> Vec<Ellipse> {
    let jitter = Normal::new(0.0, 0.03).expect("valid normal");
    // The head: skull (bright) and brain (the skull's interior, made darker by a negative
    // ellipse of the same centre and orientation), like Shepp-Logan's first two ellipses.
    let skull = Ellipse {
        cx: jitter.sample(rng),
        cy: jitter.sample(rng),
        a: rng.gen_range(0.62..0.88),
        b: rng.gen_range(0.72..0.92),
        angle: rng.gen_range(-0.5..0.5),
        value: 1.0,
    };
    let brain = Ellipse { value: -rng.gen_range(0.6..0.85), ..skull.scaled(rng.gen_range(0.86..0.95)) };
    let mut shapes = vec![skull, brain];
    // Interior features: lesions, ventricles... anywhere inside the brain, sometimes with a
    // nested feature inside them (Shepp-Logan's small ellipses inside larger ones).
    let features = rng.gen_range(3..=10);
    let brain_radius = brain.a.min(brain.b);
    for _ in 0..features {
        let Some(feature) = random_inside(&brain, brain_radius * 0.05, brain_radius * 0.45, rng) else {
            continue;
        };
        let feature = Ellipse { value: signed_value(rng, 0.08, 0.35), ..feature };
        shapes.push(feature);
        if rng.gen_bool(0.3) {
            let radius = feature.a.min(feature.b);
            if let Some(child) = random_inside(&feature, radius * 0.2, radius * 0.7, rng) {
                shapes.push(Ellipse { value: signed_value(rng, 0.05, 0.25), ..child });
            }
        }
    }
    shapes
}

/// An intensity of magnitude in [lo, hi), positive two times out of three (features are mostly
/// denser than the brain, as in Shepp-Logan).
fn signed_value<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    let magnitude = rng.gen_range(lo..hi);
    if rng.gen_bool(2.0 / 3.0) {
        magnitude
    } else {
        -magnitude
    }
}

/// A random ellipse with semi-axes in [min_axis, max_axis) lying inside `parent`, by rejection
/// (shrinking on repeated failure); None if none fits after a few tries.
fn random_inside<R: Rng + ?Sized>(
    parent: &Ellipse,
    min_axis: f64,
    max_axis: f64,
    rng: &mut R,
) -> Option<Ellipse> {
    let mut scale = 1.0;
    for attempt in 0..40 {
        if attempt % 10 == 9 {
            scale *= 0.6;
        }
        // A centre uniform over the parent's area.
        let (r, t) = (rng.gen::<f64>().sqrt(), rng.gen_range(0.0..std::f64::consts::TAU));
        let (s, c) = parent.angle.sin_cos();
        let (u, v) = (parent.a * r * t.cos(), parent.b * r * t.sin());
        let candidate = Ellipse {
            cx: parent.cx + u * c - v * s,
            cy: parent.cy + u * s + v * c,
            a: rng.gen_range(min_axis..max_axis) * scale,
            b: rng.gen_range(min_axis..max_axis) * scale,
            angle: rng.gen_range(0.0..std::f64::consts::PI),
            value: 0.0,
        };
        if parent.encloses(&candidate) {
            return Some(candidate);
        }
    }
    None
}

/// Rasterises ellipses on an H x W grid with `supersample`^2 samples per pixel (area
/// anti-aliasing of the edges), adding their intensities. Row-major (H, W), not normalised.
pub fn render(shapes: &[Ellipse], height: usize, width: usize, supersample: usize) -> Vec<f32> {
    let half = height.min(width) as f64 / 2.0;
    let ss = supersample.max(1);
    let weight = 1.0 / (ss * ss) as f64;
    let mut image = vec![0f64; height * width];
    for e in shapes {
        // Only pixels within the bounding box of the ellipse's circumscribed circle.
        let reach = e.a.max(e.b) * half + 1.0;
        let (row_c, col_c) = (e.cy * half + height as f64 / 2.0, e.cx * half + width as f64 / 2.0);
        let rows = clamp_range(row_c - reach, row_c + reach, height);
        let cols = clamp_range(col_c - reach, col_c + reach, width);
        for row in rows {
            for col in cols.clone() {
                let mut covered = 0usize;
                for i in 0..ss {
                    for j in 0..ss {
                        let y = (row as f64 + (i as f64 + 0.5) / ss as f64 - height as f64 / 2.0) / half;
                        let x = (col as f64 + (j as f64 + 0.5) / ss as f64 - width as f64 / 2.0) / half;
                        covered += usize::from(e.contains(x, y));
                    }
                }
                image[row * width + col] += e.value * covered as f64 * weight;
            }
        }
    }
    image.into_iter().map(|v| v as f32).collect()
}

fn clamp_range(lo: f64, hi: f64, n: usize) -> std::ops::Range<usize> {
    let lo = lo.floor().max(0.0) as usize;
    let hi = (hi.ceil().max(0.0) as usize).min(n);
    lo.min(hi)..hi
}

/// A random phantom, row-major (H, W), in [0, 1] with maximum 1 (2 x 2 supersampling).
pub fn ellipse_phantom<R: Rng + ?Sized>(height: usize, width: usize, rng: &mut R) -> Vec<f32> {
    let mut image = render(&random_ellipses(rng), height, width, 2);
    let max = image.iter().fold(0f32, |m, &v| m.max(v));
    for v in &mut image {
        *v = if max > 0.0 { v.max(0.0) / max } else { 0.0 };
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn phantoms_are_in_range_varied_and_seeded() {
        let a = ellipse_phantom(64, 64, &mut ChaCha8Rng::seed_from_u64(1));
        let b = ellipse_phantom(64, 64, &mut ChaCha8Rng::seed_from_u64(1));
        let c = ellipse_phantom(64, 64, &mut ChaCha8Rng::seed_from_u64(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        for img in [&a, &c] {
            assert!(img.iter().all(|&v| (0.0..=1.0).contains(&v)));
            assert_eq!(img.iter().fold(0f32, |m, &v| m.max(v)), 1.0);
            // The corners are outside the head; the centre is inside it.
            assert_eq!(img[0], 0.0);
            assert!(img[32 * 64 + 32] > 0.0);
            // Several distinct intensity levels (features, not just a ring).
            let mut levels: Vec<i32> = img.iter().map(|v| (v * 50.0) as i32).collect();
            levels.sort();
            levels.dedup();
            assert!(levels.len() > 5);
        }
    }

    #[test]
    fn features_stay_inside_their_parents() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..20 {
            let shapes = random_ellipses(&mut rng);
            assert!(shapes.len() >= 3);
            let brain = shapes[1];
            for e in &shapes[2..] {
                assert!(brain.encloses(e));
            }
        }
    }

    #[test]
    fn non_square_and_rendering_geometry() {
        // A centred circle of radius 0.5 covers pi/16 of a square image.
        let disc = Ellipse { cx: 0.0, cy: 0.0, a: 0.5, b: 0.5, angle: 0.3, value: 1.0 };
        let img = render(&[disc], 80, 80, 4);
        let area: f32 = img.iter().sum::<f32>() / (80.0 * 80.0);
        assert!((area - std::f32::consts::PI / 16.0).abs() < 0.005, "{area}");
        let img = ellipse_phantom(40, 70, &mut ChaCha8Rng::seed_from_u64(4));
        assert_eq!(img.len(), 40 * 70);
    }
}
