//! Patch geometry and sampling: where the K = N x M samples of a pixel are taken, and the
//! bicubic, reflection-padded, align-corners sampling itself.

use std::f64::consts::PI;

use tch::{Device, Kind, Tensor};

use crate::config::PatchShape;

/// libtorch's `grid_sampler` mode and padding codes.
const BICUBIC: i64 = 2;
const REFLECTION: i64 = 2;

/// The initial offsets (N, M, 2) in normalised units of the training size S (row, column).
/// `random` draws from libtorch's global generator.
pub fn initial_patch(shape: PatchShape, n: i64, m: i64, s: i64) -> Tensor {
    let s = s as f64;
    match shape {
        PatchShape::Round => {
            // patch[n, m] = n / (2S) * (cos(2 pi m / M), sin(2 pi m / M)); computed in float32
            // exactly as the reference does, so initial geometries agree bit for bit.
            let theta = Tensor::arange(m, (Kind::Float, Device::Cpu)) * (2.0 * PI / m as f64);
            let r = n as f64 / s;
            let x = theta.cos() * r / (2.0 * n as f64);
            let y = theta.sin() * r / (2.0 * n as f64);
            let unit = Tensor::stack(&[x, y], 1).unsqueeze(0); // (1, M, 2)
            let ring = Tensor::arange(n, (Kind::Float, Device::Cpu)).view([n, 1, 1]);
            ring * unit
        }
        PatchShape::Square => {
            let a = Tensor::arange_start(-(n / 2), n / 2 + 1, (Kind::Float, Device::Cpu)) / s;
            let b = Tensor::arange_start(-(m / 2), m / 2 + 1, (Kind::Float, Device::Cpu)) / s;
            // For even N or M the reference's arange has N+1 (M+1) entries; keep the first N (M).
            let a = a.narrow(0, 0, n);
            let b = b.narrow(0, 0, m);
            let grids = Tensor::meshgrid_indexing(&[a, b], "ij");
            Tensor::stack(&[&grids[0], &grids[1]], 2)
        }
        PatchShape::Random => {
            (Tensor::rand([n, m, 2], (Kind::Float, Device::Cpu)) - 0.5) * (2.0 * n as f64) / s
        }
    }
}

/// Scale that keeps an offset the same size in input pixels at any input size: S/H for rows,
/// S/W for columns (the reference divides by H/S; it only ever sees square inputs).
pub fn resolution_scale(image_size: i64, height: i64, width: i64, device: Device) -> Tensor {
    let s = image_size as f64;
    Tensor::from_slice(&[(s / height as f64) as f32, (s / width as f64) as f32]).to_device(device)
}

/// Samples `image` (B, C, H, W) around every target coordinate.
///
/// * `coords`: (B, P, 2) normalised coordinates in [-0.5, 0.5] (row, column).
/// * `offsets`: (N, M, 2) shared by every pixel, or (B, P, N, M, 2) per pixel (CCPG), already
///   multiplied by `patch_scale` and the resolution scale, in the same units as `2 * coords`.
///
/// Returns the crop (B, C, P, N, M) (a permuted view of [`sample_patches_by_angle`]'s).
pub fn sample_patches(image: &Tensor, coords: &Tensor, offsets: &Tensor) -> Tensor {
    sample_patches_by_angle(image, coords, offsets).permute([0, 1, 3, 4, 2])
}

/// Points per vector of libtorch's CPU sampling kernel (16 float32 lanes with AVX-512, 8 with
/// AVX2). A run of points whose length is not a multiple of it ends in a partial vector, whose
/// lanes can round differently (measured: 1 ulp) from the same points inside a full vector.
const SAMPLER_LANES: i64 = 16;

/// How many equal pieces to cut `points` sampling points into so that `threads` threads get about
/// the same share, each piece a whole number of [`SAMPLER_LANES`] (so that every point lands in
/// the same lane as in one image): `threads` where that works, else the most pieces up to 16 per
/// thread that do (an odd batch: the threads end at most a few per cent apart), else 1.
fn sampling_pieces(points: i64, threads: i32) -> i64 {
    let threads = i64::from(threads.max(1));
    let fits = |pieces: i64| points % pieces == 0 && (points / pieces) % SAMPLER_LANES == 0;
    if threads == 1 || points == 0 {
        return 1;
    }
    if fits(threads) {
        return threads;
    }
    (2..=16 * threads).rev().find(|&pieces| fits(pieces)).unwrap_or(1)
}

/// Samples one one-channel `image` (1, 1, H, W) at `grid` (1, rows, columns, 2) as `pieces`
/// images: the grid cut into that many equal runs of points, each against a stride-0 view of the
/// image, so that libtorch's CPU kernel (parallel over images) gives each thread a run. Every point
/// goes through the same arithmetic as in one image (bit-identical); the output (pieces, 1, 1,
/// points / pieces) is the one image's output in the same order. `pieces` divides the points.
fn sample_in_pieces(image: &Tensor, grid: &Tensor, pieces: i64) -> Tensor {
    let (h, w) = (image.size()[2], image.size()[3]);
    image.expand([pieces, 1, h, w], false).grid_sampler(
        &grid.view([pieces, 1, -1, 2]),
        BICUBIC,
        REFLECTION,
        true,
    )
}

/// As [`sample_patches`], laid out for the per-angle MLPs: returns (B, C, M, P, N), so that with
/// one image and one channel the M inputs (P, N) are a view, not a copy. The grid is built in
/// that order directly, and (x = column, y = row) swapped on the small centre and offset tensors
/// rather than on the whole grid.
///
/// Points on the image's pixel centres with shared offsets (denoising, plug-and-play) are sampled
/// by [`super::grid_sampler`], the others by libtorch; see `sample_on_pixel_grid`.
pub fn sample_patches_by_angle(image: &Tensor, coords: &Tensor, offsets: &Tensor) -> Tensor {
    if let Some(crop) = sample_on_pixel_grid(image, coords, offsets) {
        return crop;
    }
    sample_with_grid_sampler(image, coords, offsets)
}

/// [`sample_patches_by_angle`] by libtorch's `grid_sampler`, for any points.
fn sample_with_grid_sampler(image: &Tensor, coords: &Tensor, offsets: &Tensor) -> Tensor {
    let (b, c, _, _) = image.size4().expect("image is (B, C, H, W)");
    let p = coords.size()[1];
    let dims = offsets.size();
    let (n, m) = (dims[dims.len() - 3], dims[dims.len() - 2]);
    // grid_sample wants (x = column, y = row): swap the two on the small tensors.
    let centre = (coords * 2.0).flip([-1]).view([b, 1, p, 1, 2]);
    // Each grid's layout: (B, M, P, N, 2) for per-pixel offsets; for shared offsets, summed as
    // (B, 1, P, 1, 2) + (1, M, 1, N, 2) the innermost dimension would be (x, y), too short for
    // libtorch's vectorised loop (3.2-3.6 ms per batch of 2,048 pixels of the 21 x 9 geometry on 2
    // cores, against 0.65 ms): each pixel's centre is repeated N times first and the N pairs lie
    // side by side, (B, 1, P, 2N) + (1, M, 1, 2N). The same additions, so the same values.
    let (centre, offsets, layout) = if dims.len() == 5 {
        (centre, offsets.flip([-1]).permute([0, 3, 1, 2, 4]), [b, m, p, n, 2].to_vec())
    } else {
        (
            centre.expand([b, 1, p, n, 2], false).contiguous().view([b, 1, p, 2 * n]),
            offsets.reshape([n, m, 2]).flip([-1]).permute([1, 0, 2]).reshape([1, m, 1, 2 * n]),
            [b, m, p, 2 * n].to_vec(),
        )
    };
    // A broadcast sum follows the permuted layout of its inputs: without autograd, write it into
    // a tensor of the layout; with it (training; out= has no gradient), reshape, which copies.
    let grid = if centre.requires_grad() || offsets.requires_grad() {
        (centre + offsets).reshape([b, m, p * n, 2])
    } else {
        let grid = Tensor::empty(layout.as_slice(), (Kind::Float, coords.device()));
        centre.add_out(&grid, &offsets).view([b, m, p * n, 2])
    };
    let grid = grid.to_kind(image.kind());
    if c == 1 {
        if b == 1 && !image.requires_grad() && image.device() == Device::Cpu {
            // libtorch's CPU kernel runs the images of a batch in parallel but each image on one
            // thread: one image would leave the other threads waiting (a quarter of the inference
            // time on 2 cores). See `sample_in_pieces`.
            let pieces = sampling_pieces(m * p * n, tch::get_num_threads());
            return sample_in_pieces(image, &grid, pieces).view([b, c, m, p, n]);
        }
        return image.grid_sampler(&grid, BICUBIC, REFLECTION, true).view([b, c, m, p, n]);
    }
    // Several channels are sampled as a batch of one-channel images sharing the grid: the same
    // arithmetic per channel (bit-identical), but libtorch's CPU kernel is 2.4x (3 channels) to 3x
    // (5) faster this way than with the channels inside one image. One image needs no copy of
    // the grid (a broadcast view); a batch of B images repeats its grid for each channel.
    let (h, w) = (image.size()[2], image.size()[3]);
    let planes = image.reshape([b * c, 1, h, w]);
    let grid = if b == 1 {
        grid.expand([c, m, p * n, 2], false)
    } else {
        grid.unsqueeze(1).expand([b, c, m, p * n, 2], false).reshape([b * c, m, p * n, 2])
    };
    planes.grid_sampler(&grid, BICUBIC, REFLECTION, true).view([b, c, m, p, n])
}

/// [`sample_patches_by_angle`] by [`grid_sampler`](super::grid_sampler) when it applies: one
/// float32 image on the CPU (unit column stride), offsets shared by every point, nothing that
/// needs a gradient, and every point on a pixel centre of the image (denoising, plug-and-play:
/// the same values up to rounding, in a few per cent of the time). `None` otherwise.
fn sample_on_pixel_grid(image: &Tensor, coords: &Tensor, offsets: &Tensor) -> Option<Tensor> {
    let (b, _, h, w) = image.size4().ok()?;
    let applies = b == 1
        && offsets.dim() != 5
        && image.device() == Device::Cpu
        && image.kind() == Kind::Float
        && image.stride()[3] == 1
        && !(image.requires_grad() || coords.requires_grad() || offsets.requires_grad());
    if !applies {
        return None;
    }
    let split = super::grid_sampler::split_points(coords, h, w)?;
    if split.runs.is_empty() {
        return None;
    }
    let points = coords.size()[1] as usize;
    let threads = tch::get_num_threads().max(1) as usize;
    let mut crop = super::grid_sampler::sample_on_grid(image, &split.runs, points, offsets, threads);
    if let Some(&last) = split.off_grid.last() {
        // The other points by libtorch, padded with copies of the last to whole vectors of its
        // kernel: a partial vector can round differently (see `SAMPLER_LANES`), and which points
        // share a batch differs between the engine's paths.
        let lanes = SAMPLER_LANES as usize;
        let mut index = split.off_grid.clone();
        index.resize(index.len().div_ceil(lanes) * lanes, last);
        let index = Tensor::from_slice(&index);
        let count = split.off_grid.len() as i64;
        let others =
            sample_with_grid_sampler(image, &coords.index_select(1, &index), offsets).narrow(3, 0, count);
        let _ = crop.index_copy_(3, &index.narrow(0, 0, count), &others);
    }
    Some(crop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on the pixel grid (the grid kernel) and off it (libtorch) in one batch: each point's
    /// samples are the same bits whichever points share its batch and in whichever order, and the
    /// ones on the grid agree with libtorch up to rounding.
    #[test]
    fn a_points_samples_do_not_depend_on_its_batch() {
        tch::manual_seed(12);
        let (h, w) = (23i64, 31i64);
        let image = Tensor::rand([1, 1, h, w], (Kind::Float, Device::Cpu));
        let offsets = initial_patch(PatchShape::Round, 5, 9, 16) * 1.7;
        let mut pts: Vec<f32> = Vec::new();
        for i in 0..70 {
            let (y, x) = ((i * 5 % h) as f64, (i * 3 % w) as f64);
            let (y, x) = if i % 4 == 1 { (y + 0.37, x) } else { (y, x) }; // a quarter off the grid
            pts.extend([(y / (h - 1) as f64 - 0.5) as f32, (x / (w - 1) as f64 - 0.5) as f32]);
        }
        let coords = Tensor::from_slice(&pts).view([1, 70, 2]);
        let all = sample_patches_by_angle(&image, &coords, &offsets);
        let reversed = Tensor::arange(70, (Kind::Int64, Device::Cpu)).flip([0]);
        let alone = sample_patches_by_angle(&image, &coords.index_select(1, &reversed), &offsets);
        assert!(alone.index_select(3, &reversed).equal(&all), "reversed batch");
        let on_grid = Tensor::from_slice(&(0..70).filter(|i| i % 4 != 1).collect::<Vec<i64>>());
        let only = sample_patches_by_angle(&image, &coords.index_select(1, &on_grid), &offsets);
        assert!(only.equal(&all.index_select(3, &on_grid)), "the points on the grid alone");
        let libtorch = sample_with_grid_sampler(&image, &coords, &offsets);
        let err = f64::try_from((&all - &libtorch).abs().max()).unwrap();
        assert!(err < 1e-5, "max error against libtorch {err}");
    }

    #[test]
    fn sampling_pieces_share_the_points_equally_among_the_threads() {
        assert_eq!(sampling_pieces(9 * 2048 * 21, 1), 1);
        assert_eq!(sampling_pieces(9 * 2048 * 21, 2), 2);
        assert_eq!(sampling_pieces(9 * 2048 * 21, 4), 4);
        // 3 x 16 x 5 points on 2 threads: halves of 120 would end in a partial vector; 15 pieces
        // of 16 points do not (8 and 7 per thread).
        assert_eq!(sampling_pieces(3 * 16 * 5, 2), 15);
        assert_eq!(sampling_pieces(9 * 21 * 3, 2), 1); // no multiple of 16 points: one piece
        assert_eq!(sampling_pieces(0, 2), 1);
        assert_eq!(sampling_pieces(100, 0), 1); // no thread count: one piece
    }

    /// Cut into pieces of whole vectors, the grid gives libtorch's one-image output bit for bit,
    /// near the borders (reflection) as inside; the patch sampler's grid (the centres repeated,
    /// offsets side by side) holds the sums of the plain broadcast.
    #[test]
    fn sampling_in_pieces_equals_one_image() {
        tch::manual_seed(11);
        let image = Tensor::rand([1, 1, 37, 53], (Kind::Float, Device::Cpu));
        // 3 x 64 points, some beyond the borders, where reflection padding applies.
        let grid = Tensor::rand([1, 3, 64, 2], (Kind::Float, Device::Cpu)) * 2.4 - 1.2;
        let whole = image.grid_sampler(&grid, BICUBIC, REFLECTION, true);
        for pieces in [1, 2, 3, 4, 6, 12] {
            let cut = sample_in_pieces(&image, &grid, pieces).view([1, 1, 3, 64]);
            assert!(cut.equal(&whole), "{pieces} pieces");
        }
        // Through the patch sampler, with the thread count of the test run.
        let coords = Tensor::rand([1, 64, 2], (Kind::Float, Device::Cpu)) - 0.5;
        let offsets = initial_patch(PatchShape::Round, 5, 9, 16);
        let crop = sample_patches_by_angle(&image, &coords, &offsets);
        let grid = ((&coords * 2.0).flip([-1]).view([1, 1, 64, 1, 2])
            + offsets.flip([-1]).permute([1, 0, 2]).reshape([1, 9, 1, 5, 2]))
        .reshape([1, 9, 320, 2]);
        let want = image.grid_sampler(&grid, BICUBIC, REFLECTION, true).view([1, 1, 9, 64, 5]);
        assert!(crop.equal(&want));
        // Learned offsets (training): the grid is built with autograd, to the same values.
        let learned = offsets.set_requires_grad(true);
        assert!(sample_patches_by_angle(&image, &coords, &learned).equal(&want));
    }
}
