//! Images in and out: `.npy` float32 (H, W) or (H, W, C), and PNG, TIFF, JPEG (8/16-bit gray or
//! RGB, scaled to [0, 1]). The format follows the file extension.

use std::io::BufWriter;
use std::path::Path;

use image::{DynamicImage, ImageBuffer, Luma, Rgb};
use npyz::WriterBuilder;
use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// A float image in row-major (H, W, C) order: the layout of `.npy` files and of C callers' buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

/// Largest side accepted from a file (a guard against absurd headers, not a model limit).
pub const MAX_SIDE: usize = 1 << 16;

impl Image {
    pub fn new(height: usize, width: usize, channels: usize, data: Vec<f32>) -> Result<Image> {
        let img = Image { height, width, channels, data };
        img.check_shape()?;
        Ok(img)
    }

    pub fn zeros(height: usize, width: usize, channels: usize) -> Image {
        Image { height, width, channels, data: vec![0.0; height * width * channels] }
    }

    fn check_shape(&self) -> Result<()> {
        if self.height == 0 || self.width == 0 || self.channels == 0 {
            return Err(Error::invalid_input(format!(
                "empty image ({} x {} x {})",
                self.height, self.width, self.channels
            )));
        }
        if self.height > MAX_SIDE || self.width > MAX_SIDE {
            return Err(Error::invalid_input(format!(
                "image of {} x {} is larger than {MAX_SIDE} on a side",
                self.height, self.width
            )));
        }
        if self.data.len() != self.height * self.width * self.channels {
            return Err(Error::invalid_input(format!(
                "image data has {} values, {} x {} x {} needs {}",
                self.data.len(),
                self.height,
                self.width,
                self.channels,
                self.height * self.width * self.channels
            )));
        }
        Ok(())
    }

    /// Rejects NaN and infinite pixels, naming the first one.
    pub fn check_finite(&self) -> Result<()> {
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
            let (pixel, c) = (i / self.channels, i % self.channels);
            return Err(Error::invalid_input(format!(
                "pixel (row {}, column {}, channel {c}) is {} (the image must be finite)",
                pixel / self.width,
                pixel % self.width,
                self.data[i]
            )));
        }
        Ok(())
    }

    /// (1, C, H, W) float32 tensor on the CPU.
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.data)
            .view([self.height as i64, self.width as i64, self.channels as i64])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .contiguous()
    }

    /// From a (C, H, W) or (1, C, H, W) tensor.
    pub fn from_tensor(t: &Tensor) -> Result<Image> {
        let t = if t.dim() == 4 { t.squeeze_dim(0) } else { t.shallow_clone() };
        let (c, h, w) = t.size3().map_err(|_| Error::invalid_argument("expected a (C, H, W) tensor"))?;
        let hwc = t.permute([1, 2, 0]).to_kind(Kind::Float).to_device(tch::Device::Cpu).contiguous();
        let data = Vec::<f32>::try_from(hwc.view([-1])).map_err(|e| Error::Internal(e.to_string()))?;
        Image::new(h as usize, w as usize, c as usize, data)
    }

    /// Per-channel slice view helper: value at (row, column, channel).
    pub fn at(&self, row: usize, col: usize, c: usize) -> f32 {
        self.data[(row * self.width + col) * self.channels + c]
    }
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

/// Reads an image; the format follows the extension.
pub fn read(path: &Path) -> Result<Image> {
    let ext = extension(path);
    let img = match ext.as_str() {
        "npy" => read_npy(path)?,
        "png" | "tif" | "tiff" | "jpg" | "jpeg" => read_raster(path)?,
        "fits" | "fit" | "fts" => crate::formats::fits::read_image(path)?.image,
        // DICOM through the file's own window; `lofi reconstruct --window` chooses another.
        "dcm" | "dicom" => crate::formats::dicom::read_windowed(path, None)?.0,
        _ => {
            return Err(Error::invalid_argument(format!(
                "{}: unknown image format '.{ext}' (use .npy, .png, .tif/.tiff, .jpg, .fits or .dcm)",
                path.display()
            )))
        }
    };
    img.check_finite().map_err(|e| Error::invalid_input(format!("{}: {e}", path.display())))?;
    Ok(img)
}

fn read_npy(path: &Path) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let bad = |what: String| Error::invalid_input(format!("{}: {what}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(format!("not a valid .npy file ({e})")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if !matches!(descr, "<f4" | "=f4" | "|f4") {
        return Err(bad(format!(
            "dtype {descr} is not float32 ('<f4'); convert with arr.astype(np.float32)"
        )));
    }
    if npy.order() != npyz::Order::C {
        return Err(bad("Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into()));
    }
    let (h, w, c) = match shape.as_slice() {
        [h, w] => (*h, *w, 1),
        [h, w, c] => (*h, *w, *c),
        other => return Err(bad(format!("shape {other:?} is not (H, W) or (H, W, C)"))),
    };
    let expected =
        h.checked_mul(w).and_then(|v| v.checked_mul(c)).ok_or_else(|| bad("absurd shape".into()))?;
    if h > MAX_SIDE || w > MAX_SIDE || c > 64 {
        return Err(bad(format!("shape {shape:?} is absurdly large")));
    }
    let data: Vec<f32> = npy.into_vec().map_err(|e| bad(format!("truncated or corrupt data ({e})")))?;
    if data.len() != expected {
        return Err(bad(format!("holds {} values, shape {shape:?} needs {expected}", data.len())));
    }
    Image::new(h, w, c, data).map_err(|e| bad(e.to_string()))
}

fn read_raster(path: &Path) -> Result<Image> {
    let dynimg = image::ImageReader::open(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?
        .with_guessed_format()
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?
        .decode()
        .map_err(|e| Error::invalid_input(format!("{}: cannot decode image ({e})", path.display())))?;
    let (w, h) = (dynimg.width() as usize, dynimg.height() as usize);
    let has_color = dynimg.color().has_color();
    let data: Vec<f32> = if has_color {
        // 16-bit sources keep their precision through the f32 conversion.
        dynimg.to_rgb32f().into_raw()
    } else {
        dynimg.to_luma32f().into_raw()
    };
    Image::new(h, w, if has_color { 3 } else { 1 }, data)
}

/// Writes an image; the format follows the extension. PNG/TIFF outputs are clipped to [0, 1] and
/// quantised (`bits` 8 or 16); `.npy` keeps the float values.
pub fn write(path: &Path, img: &Image, bits: u8) -> Result<()> {
    img.check_shape()?;
    let ext = extension(path);
    match ext.as_str() {
        "npy" => write_npy(path, img),
        "png" | "tif" | "tiff" => write_raster(path, img, bits),
        "fits" | "fit" | "fts" => crate::formats::fits::write_image(path, img, &Default::default()),
        _ => Err(Error::invalid_argument(format!(
            "{}: unknown output format '.{ext}' (use .npy, .png, .tif/.tiff or .fits)",
            path.display()
        ))),
    }
}

fn write_npy(path: &Path, img: &Image) -> Result<()> {
    let io_err = |e| Error::io(format!("cannot write {}", path.display()), e);
    let file = std::fs::File::create(path).map_err(io_err)?;
    let shape: Vec<u64> = if img.channels == 1 {
        vec![img.height as u64, img.width as u64]
    } else {
        vec![img.height as u64, img.width as u64, img.channels as u64]
    };
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .map_err(io_err)?;
    writer.extend(img.data.iter().copied()).map_err(io_err)?;
    writer.finish().map_err(io_err)
}

fn write_raster(path: &Path, img: &Image, bits: u8) -> Result<()> {
    let (w, h) = (img.width as u32, img.height as u32);
    let dynimg = match (img.channels, bits) {
        (1, 8) => DynamicImage::ImageLuma8(
            ImageBuffer::<Luma<u8>, _>::from_raw(w, h, quantise(&img.data, 255.0)).expect("sized"),
        ),
        (1, 16) => DynamicImage::ImageLuma16(
            ImageBuffer::<Luma<u16>, _>::from_raw(w, h, quantise(&img.data, 65535.0)).expect("sized"),
        ),
        (3, 8) => DynamicImage::ImageRgb8(
            ImageBuffer::<Rgb<u8>, _>::from_raw(w, h, quantise(&img.data, 255.0)).expect("sized"),
        ),
        (3, 16) => DynamicImage::ImageRgb16(
            ImageBuffer::<Rgb<u16>, _>::from_raw(w, h, quantise(&img.data, 65535.0)).expect("sized"),
        ),
        (c, 8 | 16) => {
            return Err(Error::invalid_argument(format!(
                "{}: PNG/TIFF hold 1 or 3 channels, the image has {c}; write .npy instead",
                path.display()
            )))
        }
        (_, b) => return Err(Error::invalid_argument(format!("bit depth {b} is not 8 or 16"))),
    };
    dynimg.save(path).map_err(|e| Error::invalid_argument(format!("cannot write {}: {e}", path.display())))
}

/// Clips to [0, 1] and rounds to integers in [0, max].
fn quantise<T: TryFrom<u32>>(data: &[f32], max: f32) -> Vec<T>
where
    <T as TryFrom<u32>>::Error: std::fmt::Debug,
{
    data.iter()
        .map(|&v| {
            let q = (v.clamp(0.0, 1.0) * max).round() as u32;
            T::try_from(q).expect("value within range")
        })
        .collect()
}
