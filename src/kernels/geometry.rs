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

/// As [`sample_patches`], laid out for the per-angle MLPs: returns (B, C, M, P, N), so that with
/// one image and one channel the M inputs (P, N) are a view, not a copy. The grid is built in
/// that order directly, and (x = column, y = row) swapped on the small centre and offset tensors
/// rather than on the whole grid.
pub fn sample_patches_by_angle(image: &Tensor, coords: &Tensor, offsets: &Tensor) -> Tensor {
    let (b, c, _, _) = image.size4().expect("image is (B, C, H, W)");
    let p = coords.size()[1];
    let dims = offsets.size();
    let (n, m) = (dims[dims.len() - 3], dims[dims.len() - 2]);
    // grid_sample wants (x = column, y = row): swap the two on the small tensors.
    let centre = (coords * 2.0).flip([-1]).view([b, 1, p, 1, 2]);
    let offsets = if dims.len() == 5 {
        offsets.flip([-1]).permute([0, 3, 1, 2, 4]) // (B, M, P, N, 2)
    } else {
        offsets.reshape([n, m, 2]).flip([-1]).permute([1, 0, 2]).reshape([1, m, 1, n, 2])
    };
    // A broadcast sum follows the permuted layout of its inputs: without autograd, write it into
    // a tensor of this layout; with it (training; out= has no gradient), reshape, which copies.
    let grid = if centre.requires_grad() || offsets.requires_grad() {
        (centre + offsets).reshape([b, m, p * n, 2])
    } else {
        let grid = Tensor::empty([b, m, p, n, 2], (Kind::Float, coords.device()));
        centre.add_out(&grid, &offsets).view([b, m, p * n, 2])
    };
    let grid = grid.to_kind(image.kind());
    if c == 1 {
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
