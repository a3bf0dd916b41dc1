//! Bicubic sampling of points that lie on the input's own pixel grid, at offsets shared by every
//! point: denoising, and every iteration of plug-and-play, reconstruct exactly such points.
//!
//! For a point on pixel (i, j), the sample at offset k is at (i + dy_k, j + dx_k) pixels, so its
//! integer part and its fraction, hence its 4 x 4 bicubic weights, depend on k alone. Sample k
//! of a run of points along a row is then one 4 x 4 filter slid along four image rows: the
//! weights computed once per offset instead of once per sample, contiguous loads instead of
//! gathers, and each offset's samples written contiguously. libtorch's `grid_sampler`, which
//! must assume every sample anywhere, spends 17 % of a shipped-denoiser pass in float32 (more
//! in bfloat16); this kernel does the same arithmetic in a few per cent.
//!
//! Same semantics as `grid_sampler(bicubic, reflection, align_corners = true)`: the cubic
//! convolution of Keys with A = -0.75, each tap's index reflected about the first and the last
//! pixel. The values differ from libtorch's only by rounding (libtorch sums the coordinate and
//! the offset in float32, so its fraction carries an error of about 1e-7 x the image size).

use tch::{Device, Kind, Tensor};

/// The cubic convolution's A, as in libtorch and OpenCV.
const A: f32 = -0.75;

/// The four weights of taps at -1, 0, 1, 2 for the fraction `t` in [0, 1) (libtorch's
/// `get_cubic_upsample_coefficients`).
fn cubic_weights(t: f32) -> [f32; 4] {
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// Index `t` reflected into [0, n) about the first and the last pixel (align-corners reflection:
/// -1 reads 1, n reads n - 2; period 2 (n - 1)). `n` >= 2.
fn reflect(t: i64, n: i64) -> i64 {
    let period = 2 * (n - 1);
    let t = t.abs() % period;
    if t > n - 1 {
        period - t
    } else {
        t
    }
}

/// A run of points along one image row: `len` points from column `col` on, the first of them
/// the batch's point `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub first: usize,
    pub row: i64,
    pub col: i64,
    pub len: usize,
}

/// The points of a batch split by where they lie: `runs` of points on pixel centres of the
/// image, along its rows, and the indices of the others (`off_grid`, in order).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PointSplit {
    pub runs: Vec<Run>,
    pub off_grid: Vec<i64>,
}

/// Splits the points `coords` ((1, P, 2) float32 on the CPU, normalised (row, column) in
/// [-0.5, 0.5]) of an `height` x `width` image into runs of points on its pixel centres (inside
/// the image) and the others; `None` for coordinates this kernel does not read (another device
/// or kind, a 1-pixel side). "On" allows for the rounding of a normalised float32 coordinate
/// (about 1.5e-8 x the side), with 64 times that as margin. Decided point by point, so that a
/// point's value does not depend on the batch it comes in.
pub fn split_points(coords: &Tensor, height: i64, width: i64) -> Option<PointSplit> {
    if height < 2 || width < 2 || coords.device() != Device::Cpu || coords.kind() != Kind::Float {
        return None;
    }
    let values = Vec::<f32>::try_from(coords.reshape([-1])).ok()?;
    let on_pixel = |c: f32, n: i64| -> Option<i64> {
        let last = (n - 1) as f64;
        let at = (f64::from(c) + 0.5) * last;
        let pixel = at.round();
        ((at - pixel).abs() <= last * 2f64.powi(-20) && (0.0..=last).contains(&pixel)).then_some(pixel as i64)
    };
    let mut split = PointSplit::default();
    for (p, point) in values.chunks_exact(2).enumerate() {
        let Some((row, col)) = on_pixel(point[0], height).zip(on_pixel(point[1], width)) else {
            split.off_grid.push(p as i64);
            continue;
        };
        match split.runs.last_mut() {
            Some(run) if run.row == row && run.col + run.len as i64 == col && run.first + run.len == p => {
                run.len += 1
            }
            _ => split.runs.push(Run { first: p, row, col, len: 1 }),
        }
    }
    Some(split)
}

/// Where sample k of every point lies relative to its pixel: the first tap's row and column and
/// the four weights along each axis.
#[derive(Clone, Copy, Debug)]
struct Tap {
    row: i64,
    col: i64,
    wy: [f32; 4],
    wx: [f32; 4],
}

impl Tap {
    /// `offset` (row, column) in grid units (the image spans [-1, 1] along each axis).
    fn new(offset: [f32; 2], height: i64, width: i64) -> Tap {
        let pixels = |o: f32, n: i64| f64::from(o) * (n - 1) as f64 / 2.0;
        let (dy, dx) = (pixels(offset[0], height), pixels(offset[1], width));
        let (fy, fx) = (dy.floor(), dx.floor());
        Tap {
            row: fy as i64 - 1,
            col: fx as i64 - 1,
            wy: cubic_weights((dy - fy) as f32),
            wx: cubic_weights((dx - fx) as f32),
        }
    }
}

/// One plane of the image: element (y, x) at `base + y * row_stride + x`.
#[derive(Clone, Copy)]
struct Plane {
    base: *const f32,
    row_stride: isize,
    height: i64,
    width: i64,
}

impl Plane {
    /// The `len` values of row `y` from column `x` on. Safety: the caller keeps them inside the
    /// memory the image tensor covers.
    unsafe fn row(&self, y: i64, x: i64, len: usize) -> &[f32] {
        // SAFETY: see the function's contract.
        unsafe {
            std::slice::from_raw_parts(self.base.offset(y as isize * self.row_stride + x as isize), len)
        }
    }
}

/// The samples of one tap along one run into `out` (`run.len` values). The interior (every tap
/// inside the image) runs over contiguous rows, which the compiler vectorises; the ends reflect
/// each tap. Both evaluate the same expression in the same order (Rust does not contract
/// multiply-adds), so a point's value does not depend on which part of a run it falls in.
#[inline(always)]
fn sample_run(plane: &Plane, tap: &Tap, run: &Run, out: &mut [f32]) {
    let (h, w) = (plane.height, plane.width);
    let rows = [0, 1, 2, 3].map(|a| reflect(run.row + tap.row + a, h));
    let (wy, wx) = (tap.wy, tap.wx);
    let bicubic = |v: [[f32; 4]; 4]| {
        let line = |r: [f32; 4]| r[0] * wx[0] + r[1] * wx[1] + r[2] * wx[2] + r[3] * wx[3];
        line(v[0]) * wy[0] + line(v[1]) * wy[1] + line(v[2]) * wy[2] + line(v[3]) * wy[3]
    };
    // Points q with every column tap inside [0, w): col + q + tap.col >= 0 and
    // col + q + tap.col + 3 <= w - 1.
    let start = run.col + tap.col;
    let lo = (-start).clamp(0, run.len as i64) as usize;
    let hi = (w - 4 - start + 1).clamp(lo as i64, run.len as i64) as usize;
    for q in (0..lo).chain(hi..run.len) {
        let x = start + q as i64;
        let cols = [0, 1, 2, 3].map(|b| reflect(x + b, w));
        // SAFETY: reflected indices lie inside the image.
        out[q] = bicubic(rows.map(|y| cols.map(|x| unsafe { plane.row(y, x, 1)[0] })));
    }
    if hi > lo {
        let n = hi - lo;
        // SAFETY: columns start + lo .. start + hi + 3 lie inside the image (lo and hi above).
        let r = rows.map(|y| unsafe { plane.row(y, start + lo as i64, n + 3) });
        for (q, o) in out[lo..hi].iter_mut().enumerate() {
            *o = bicubic([0, 1, 2, 3].map(|a| [r[a][q], r[a][q + 1], r[a][q + 2], r[a][q + 3]]));
        }
    }
}

/// The taps to sample along the runs: `taps` on each of `planes`, tap k of plane p being slot
/// p x taps + k of an output of `points` values per slot.
struct TapWork<'a> {
    planes: &'a [Plane],
    taps: &'a [Tap],
    runs: &'a [Run],
    points: usize,
}

// SAFETY: the planes point into an image tensor that outlives the scoped threads and that no one
// writes while they run; everything else is plain data.
unsafe impl Sync for TapWork<'_> {}

impl TapWork<'_> {
    /// Slots `ks` along every run, into `out` (`ks.len()` x `points` values).
    #[inline(always)]
    fn sample(&self, ks: std::ops::Range<usize>, out: &mut [f32]) {
        let taps = self.taps.len();
        for (slot, k) in ks.enumerate() {
            let (plane, tap) = (&self.planes[k / taps], &self.taps[k % taps]);
            let dst = &mut out[slot * self.points..(slot + 1) * self.points];
            for run in self.runs {
                sample_run(plane, tap, run, &mut dst[run.first..run.first + run.len]);
            }
        }
    }

    /// [`sample`](Self::sample) compiled for AVX2 where the CPU has it (twice the vector width of
    /// the baseline; no fused multiply-add, so the same values).
    fn sample_dispatch(&self, ks: std::ops::Range<usize>, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { sample_avx2(self, ks, out) };
        }
        self.sample(ks, out)
    }
}

/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sample_avx2(work: &TapWork<'_>, ks: std::ops::Range<usize>, out: &mut [f32]) {
    work.sample(ks, out)
}

/// Samples `image` (1, C, H, W), float32 on the CPU with unit column stride, around the points
/// `runs` (`points` in all) at the shared `offsets` (N, M, 2), in grid units, (row, column) (as
/// [`super::geometry::sample_patches_by_angle`] takes them). Returns (1, C, M, P, N), contiguous
/// as libtorch's sampler returns it: the matrix products that follow round differently on a
/// transposed input, and a batch's values must not depend on which sampler served it. (The taps
/// are sampled as contiguous (M, N, P) planes, each tap's values along the points, then
/// transposed.) `threads` share the C M N planes.
///
/// The image may be a view over a window of a larger allocation (the engine's streamed input):
/// only the pixels the taps reach are read, the same pixels `grid_sampler` would read.
pub fn sample_on_grid(
    image: &Tensor,
    runs: &[Run],
    points: usize,
    offsets: &Tensor,
    threads: usize,
) -> Tensor {
    let (_, c, h, w) = image.size4().expect("image is (1, C, H, W)");
    let stride = image.stride();
    debug_assert!(image.kind() == Kind::Float && stride[3] == 1);
    let dims = offsets.size();
    let (n, m) = (dims[dims.len() - 3], dims[dims.len() - 2]);
    let pairs = Vec::<f32>::try_from(offsets.reshape([-1]).to_kind(Kind::Float)).expect("offsets on the CPU");
    // Output plane order (C, M, N): tap (m, n) of the (N, M, 2) offsets.
    let taps: Vec<Tap> = (0..m)
        .flat_map(|mi| (0..n).map(move |ni| ((ni * m + mi) * 2) as usize))
        .map(|at| Tap::new([pairs[at], pairs[at + 1]], h, w))
        .collect();
    let base = image.data_ptr() as *const f32;
    let planes: Vec<Plane> = (0..c)
        .map(|ci| Plane {
            // SAFETY: the channel's first element, inside the tensor.
            base: unsafe { base.offset((ci * stride[1]) as isize) },
            row_stride: stride[2] as isize,
            height: h,
            width: w,
        })
        .collect();
    let total = planes.len() * taps.len();
    let out = Tensor::empty([1, c, m, n, points as i64], (Kind::Float, Device::Cpu));
    if total * points == 0 {
        return out.permute([0, 1, 2, 4, 3]).contiguous();
    }
    // SAFETY: a fresh contiguous float32 tensor of total x points elements, written only here.
    let values = unsafe { std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, total * points) };
    let threads = threads.clamp(1, total);
    let work = TapWork { planes: &planes, taps: &taps, runs, points };
    if threads == 1 {
        work.sample_dispatch(0..total, values);
    } else {
        let per = total.div_ceil(threads);
        std::thread::scope(|scope| {
            for (t, chunk) in values.chunks_mut(per * points).enumerate() {
                let work = &work;
                scope.spawn(move || work.sample_dispatch(t * per..(t * per + chunk.len() / points), chunk));
            }
        });
    }
    out.permute([0, 1, 2, 4, 3]).contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_matches_align_corners_padding() {
        let got: Vec<i64> = (-6..=10).map(|t| reflect(t, 5)).collect();
        assert_eq!(got, [2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2]);
        assert_eq!(reflect(-1, 2), 1);
        assert_eq!(reflect(2, 2), 0);
    }

    #[test]
    fn weights_sum_to_one_and_interpolate() {
        for t in [0.0f32, 0.25, 0.5, 0.9] {
            let w = cubic_weights(t);
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{t}: {w:?}");
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn points_split_into_runs_along_the_rows_and_the_others() {
        let (h, w) = (5i64, 7i64);
        let norm = |y: f64, x: f64| [(y / (h - 1) as f64 - 0.5) as f32, (x / (w - 1) as f64 - 0.5) as f32];
        let mut pts: Vec<f32> = Vec::new();
        // A tenth of a pixel off (3) and outside the image (6) are not on the grid.
        for (y, x) in
            [(1.0, 5.0), (1.0, 6.0), (2.0, 0.0), (2.1, 1.0), (2.0, 1.0), (2.0, 1.0), (5.0, 3.0), (4.0, 3.0)]
        {
            pts.extend(norm(y, x));
        }
        let coords = Tensor::from_slice(&pts).view([1, -1, 2]);
        let split = split_points(&coords, h, w).expect("CPU float32");
        let want = PointSplit {
            runs: vec![
                Run { first: 0, row: 1, col: 5, len: 2 },
                Run { first: 2, row: 2, col: 0, len: 1 },
                Run { first: 4, row: 2, col: 1, len: 1 },
                Run { first: 5, row: 2, col: 1, len: 1 },
                Run { first: 7, row: 4, col: 3, len: 1 },
            ],
            off_grid: vec![3, 6],
        };
        assert_eq!(split, want);
        assert!(split_points(&coords.to_kind(Kind::Double), h, w).is_none());
    }

    /// Against libtorch's sampler in float64 at the same points and offsets: near the borders
    /// (reflection, reaches of several image sizes beyond the image), inside, in runs and single
    /// points, for several channels and thread counts. (libtorch's float32 sampler is itself
    /// 5e-6 from it here: it rounds the positions, 42 pixels away, to float32.)
    #[test]
    fn equals_libtorch_bicubic_reflection_sampling() {
        tch::manual_seed(5);
        let (h, w) = (13i64, 29i64);
        let image = Tensor::rand([1, 2, h, w], (Kind::Float, Device::Cpu));
        let (n, m) = (4i64, 3i64);
        // Offsets reaching up to 1.5 image sizes away (several reflections).
        let offsets = (Tensor::rand([n, m, 2], (Kind::Float, Device::Cpu)) - 0.5) * 6.0;
        let mut pts: Vec<f32> = Vec::new();
        for y in 0..h {
            for x in 0..w {
                if (y * 7 + x) % 3 != 0 {
                    pts.extend([
                        (y as f64 / (h - 1) as f64 - 0.5) as f32,
                        (x as f64 / (w - 1) as f64 - 0.5) as f32,
                    ]);
                }
            }
        }
        let p = (pts.len() / 2) as i64;
        let coords = Tensor::from_slice(&pts).view([1, p, 2]);
        let split = split_points(&coords, h, w).expect("CPU float32");
        assert!(split.off_grid.is_empty());
        let runs = split.runs;
        // libtorch: grid (x = column, y = row) = 2 coords + offset, laid out (M, P, N).
        let exact: Vec<f64> = pts
            .chunks_exact(2)
            .enumerate()
            .flat_map(|(i, _)| {
                [
                    runs_pixel(&runs, i, 0) / (h - 1) as f64 - 0.5,
                    runs_pixel(&runs, i, 1) / (w - 1) as f64 - 0.5,
                ]
            })
            .collect();
        let centre = (Tensor::from_slice(&exact).view([1, p, 2]) * 2.0).flip([-1]).view([1, 1, p, 1, 2]);
        let offs = offsets.to_kind(Kind::Double).flip([-1]).permute([1, 0, 2]).view([1, m, 1, n, 2]);
        let grid = (centre + offs).reshape([1, m, p * n, 2]);
        let planes = image.to_kind(Kind::Double).reshape([2, 1, h, w]);
        let want =
            planes.grid_sampler(&grid.expand([2, m, p * n, 2], false), 2, 2, true).view([1, 2, m, p, n]);
        for threads in [1, 2, 5] {
            let got = sample_on_grid(&image, &runs, p as usize, &offsets, threads);
            assert_eq!(got.size(), [1, 2, m, p, n]);
            let err = f64::try_from((got.to_kind(Kind::Double) - &want).abs().max()).unwrap();
            assert!(err < 1e-6, "{threads} threads: max error {err}");
        }
    }

    /// The pixel (row: `axis` 0, column: 1) of point `i` of `runs`.
    fn runs_pixel(runs: &[Run], i: usize, axis: usize) -> f64 {
        let run = runs.iter().find(|r| (r.first..r.first + r.len).contains(&i)).expect("covered");
        if axis == 0 {
            run.row as f64
        } else {
            (run.col + (i - run.first) as i64) as f64
        }
    }
}
