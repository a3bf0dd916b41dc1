//! Training and test data: image files (PNG, JPEG, TIFF, `.npy`) or synthetic objects, brought to
//! a common size and held in memory as tensors.
//!
//! Resizing (see [`ResizeMode`]): `area` averages over each output pixel's footprint when
//! shrinking (libtorch's adaptive average pooling, PyTorch's `interpolate(mode="area")`) and
//! interpolates bilinearly when enlarging; `square-area` first crops the largest centred square,
//! so the aspect ratio is kept; `crop` takes a centred window at the native resolution; `tiles`
//! cuts every image into all its non-overlapping S x S tiles at the native resolution.
//! Channels: a colour image becomes gray by ITU-R BT.601 luma (as PIL's `convert("L")`); a gray
//! image becomes RGB by repetition; other channel counts (`.npy`) must match.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use super::config::ResizeMode;

const EXTENSIONS: [&str; 11] =
    ["png", "jpg", "jpeg", "tif", "tiff", "npy", "fits", "fit", "fts", "dcm", "dicom"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The file's name without its extension.
pub fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Every image file of the given folders (sorted by name) and the given files, minus `exclude`
/// (matched against the file name or its stem).
pub fn list_images(paths: &[PathBuf], exclude: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            entries.sort();
            if entries.is_empty() {
                bail!("{} holds no PNG, JPEG, TIFF, .npy, FITS or DICOM file", path.display());
            }
            files.extend(entries);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            bail!("{}: no such file or folder", path.display());
        }
    }
    files.retain(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        !exclude.iter().any(|x| *x == name || *x == stem(p))
    });
    Ok(files)
}

/// An image file as a (1, C, H, W) float32 CPU tensor with `channels` channels.
pub fn read_image(path: &Path, channels: i64) -> Result<Tensor> {
    let img = lofi::image_io::read(path)?;
    convert_channels(&img.to_tensor(), channels).with_context(|| path.display().to_string())
}

/// Gray <-> RGB conversion of a (B, C, H, W) tensor.
pub fn convert_channels(t: &Tensor, channels: i64) -> Result<Tensor> {
    let c = t.size()[1];
    Ok(match (c, channels) {
        (a, b) if a == b => t.shallow_clone(),
        (3, 1) => {
            let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114]).view([1, 3, 1, 1]).to_device(t.device());
            (t * w).sum_dim_intlist([1].as_slice(), true, Kind::Float)
        }
        (1, 3) => t.repeat([1, 3, 1, 1]),
        (a, b) => bail!("the image has {a} channel(s), {b} are needed"),
    })
}

/// Resizes a (B, C, H, W) tensor to `height` x `width`: area averaging along an axis that
/// shrinks, bilinear interpolation (align_corners = false) along one that grows.
pub fn resize_to(t: &Tensor, height: i64, width: i64) -> Tensor {
    let (_, _, h, w) = t.size4().expect("(B, C, H, W)");
    let mut t = t.shallow_clone();
    let (mh, mw) = (h.min(height), w.min(width));
    if (mh, mw) != (h, w) {
        t = t.adaptive_avg_pool2d([mh, mw]);
    }
    if (mh, mw) != (height, width) {
        t = t.upsample_bilinear2d([height, width], false, None, None);
    }
    t
}

/// Centred `height` x `width` window.
pub fn centre_crop(t: &Tensor, height: i64, width: i64) -> Tensor {
    let (_, _, h, w) = t.size4().expect("(B, C, H, W)");
    t.narrow(2, (h - height) / 2, height).narrow(3, (w - width) / 2, width)
}

/// Brings a (B, C, H, W) tensor to `size` x `size` (or keeps it, for `ResizeMode::None`).
/// `Tiles` gives the first tile; see [`fit_many`].
#[cfg(test)]
pub fn fit(t: &Tensor, size: i64, mode: ResizeMode) -> Result<Tensor> {
    Ok(fit_many(t, size, mode)?.swap_remove(0))
}

/// As [`fit`], but `Tiles` gives every non-overlapping `size` x `size` tile of a centred grid
/// (row-major), or the `square-area` resize of an image smaller than a tile.
pub fn fit_many(t: &Tensor, size: i64, mode: ResizeMode) -> Result<Vec<Tensor>> {
    let (_, _, h, w) = t.size4().expect("(B, C, H, W)");
    Ok(vec![match mode {
        ResizeMode::None => t.shallow_clone(),
        ResizeMode::Area => resize_to(t, size, size),
        ResizeMode::SquareArea => {
            let side = h.min(w);
            resize_to(&centre_crop(t, side, side), size, size)
        }
        ResizeMode::Tiles if h < size || w < size => return fit_many(t, size, ResizeMode::SquareArea),
        ResizeMode::Tiles => {
            let (nh, nw) = (h / size, w / size);
            let (r0, c0) = ((h - nh * size) / 2, (w - nw * size) / 2);
            let mut tiles = Vec::new();
            for i in 0..nh {
                for j in 0..nw {
                    tiles.push(t.narrow(2, r0 + i * size, size).narrow(3, c0 + j * size, size));
                }
            }
            return Ok(tiles);
        }
        ResizeMode::Cover if h < size || w < size => return fit_many(t, size, ResizeMode::SquareArea),
        ResizeMode::Cover => {
            // The fewest windows per axis that cover it, evenly spaced (overlapping).
            let starts = |len: i64| -> Vec<i64> {
                let count = (len + size - 1) / size;
                if count == 1 {
                    return vec![0];
                }
                (0..count).map(|k| k * (len - size) / (count - 1)).collect()
            };
            let mut tiles = Vec::new();
            for &r in &starts(h) {
                for &c in &starts(w) {
                    tiles.push(t.narrow(2, r, size).narrow(3, c, size));
                }
            }
            return Ok(tiles);
        }
        ResizeMode::Crop => {
            if h < size || w < size {
                bail!(
                    "the image is {h} x {w}, smaller than the {size} x {size} crop (use resize = \"area\")"
                );
            }
            centre_crop(t, size, size)
        }
    }])
}

/// Names of the pieces of one image: its stem, or `stem#k` for its tiles.
fn piece_names(name: &str, count: usize) -> Vec<String> {
    if count == 1 {
        vec![name.to_string()]
    } else {
        (0..count).map(|k| format!("{name}#{k}")).collect()
    }
}

/// Images of `files` with `channels` channels, each fitted to `size` (with `ResizeMode::None`
/// they keep their sizes; with `Tiles` each gives its tiles): (name, (1, C, S, S)) pairs on the CPU.
pub fn load_images(
    files: &[PathBuf],
    channels: i64,
    size: i64,
    mode: ResizeMode,
) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for f in files {
        let t = read_image(f, channels)?;
        let pieces = fit_many(&t, size, mode).with_context(|| f.display().to_string())?;
        for (name, piece) in piece_names(&stem(f), pieces.len()).into_iter().zip(pieces) {
            out.push((name, piece.contiguous()));
        }
    }
    Ok(out)
}

/// (name, observation, target) triples of `paired` data: every folder holds `observations/` and
/// `targets/`, whose files are matched by stem.
pub fn load_pairs(
    folders: &[PathBuf],
    c_in: i64,
    c_out: i64,
    size: i64,
    mode: ResizeMode,
) -> Result<Vec<(String, Tensor, Tensor)>> {
    let mut out = Vec::new();
    for folder in folders {
        let (obs_dir, tgt_dir) = (folder.join("observations"), folder.join("targets"));
        if !obs_dir.is_dir() || !tgt_dir.is_dir() {
            bail!(
                "{}: paired data needs the sub-folders observations/ and targets/ (files matched by name)",
                folder.display()
            );
        }
        let observations = list_images(std::slice::from_ref(&obs_dir), &[])?;
        let targets = list_images(std::slice::from_ref(&tgt_dir), &[])?;
        for t in &targets {
            if !observations.iter().any(|o| stem(o) == stem(t)) {
                bail!("{}: no observation named {}.* in {}", t.display(), stem(t), obs_dir.display());
            }
        }
        for o in &observations {
            let name = stem(o);
            let t = targets.iter().find(|t| stem(t) == name).with_context(|| {
                format!("{}: no target named {name}.* in {}", o.display(), tgt_dir.display())
            })?;
            let (obs, tgt) = (read_image(o, c_in)?, read_image(t, c_out)?);
            if matches!(mode, ResizeMode::None | ResizeMode::Tiles) && obs.size()[2..] != tgt.size()[2..] {
                bail!(
                    "{name}: the observation is {:?} and the target {:?}",
                    &obs.size()[2..],
                    &tgt.size()[2..]
                );
            }
            let obs = fit_many(&obs, size, mode).with_context(|| o.display().to_string())?;
            let tgt = fit_many(&tgt, size, mode).with_context(|| t.display().to_string())?;
            for ((piece, o), t) in piece_names(&name, obs.len()).into_iter().zip(obs).zip(tgt) {
                out.push((piece, o.contiguous(), t.contiguous()));
            }
        }
    }
    Ok(out)
}

/// Applies one of the eight flips/rotations of the square (`which` in 0..8) to (B, C, S, S).
pub fn dihedral(t: &Tensor, which: u64) -> Tensor {
    let r = t.rot90((which % 4) as i64, [2, 3]);
    if which >= 4 {
        r.flip([3])
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_resize_averages_blocks() {
        let t = Tensor::arange(16, (Kind::Float, tch::Device::Cpu)).view([1, 1, 4, 4]);
        let r = resize_to(&t, 2, 2);
        let v: Vec<f32> = Vec::try_from(r.view([-1])).unwrap();
        assert_eq!(v, vec![2.5, 4.5, 10.5, 12.5]);
        let up = fit(&t, 8, ResizeMode::Area).unwrap();
        assert_eq!(up.size(), vec![1, 1, 8, 8]);
        let wide = Tensor::zeros([1, 3, 4, 10], (Kind::Float, tch::Device::Cpu));
        assert_eq!(fit(&wide, 2, ResizeMode::SquareArea).unwrap().size(), vec![1, 3, 2, 2]);
        assert_eq!(convert_channels(&wide, 1).unwrap().size(), vec![1, 1, 4, 10]);
        assert!(fit(&wide, 5, ResizeMode::Crop).is_err());
        let big = Tensor::zeros([1, 1, 9, 7], (Kind::Float, tch::Device::Cpu));
        assert_eq!(fit_many(&big, 3, ResizeMode::Tiles).unwrap().len(), 6);
        assert_eq!(fit_many(&big, 8, ResizeMode::Tiles).unwrap()[0].size(), vec![1, 1, 8, 8]);
        // Cover: 180 = two overlapping windows of 128 per axis, at 0 and 52, reaching the far edge.
        let photo = Tensor::arange(180 * 180, tch::kind::FLOAT_CPU).view([1, 1, 180, 180]);
        let cover = fit_many(&photo, 128, ResizeMode::Cover).unwrap();
        assert_eq!(cover.len(), 4);
        assert_eq!(cover[3].get(0).get(0).get(127).get(127).double_value(&[]), (179 * 180 + 179) as f64);
        assert_eq!(cover[1].get(0).get(0).get(0).get(0).double_value(&[]), 52.0);
    }
}
