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
/// Returns the crop (B, C, P, N, M).
pub fn sample_patches(image: &Tensor, coords: &Tensor, offsets: &Tensor) -> Tensor {
    let (b, c, _, _) = image.size4().expect("image is (B, C, H, W)");
    let p = coords.size()[1];
    let (n, m) = {
        let s = offsets.size();
        (s[s.len() - 3], s[s.len() - 2])
    };
    let centre = (coords * 2.0).view([b, p, 1, 1, 2]);
    let grid = (centre + offsets).view([b, p * n, m, 2]).flip([-1]); // grid_sample wants (x=col, y=row)
    let grid = grid.to_kind(image.kind());
    image.grid_sampler(&grid, BICUBIC, REFLECTION, true).view([b, c, p, n, m])
}
