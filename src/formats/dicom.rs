//! DICOM CT slices in: single-frame, single-sample (grey) images, through dicom-rs
//! (`dicom-object` parses the file, `dicom-pixeldata` decodes the pixel data and applies the
//! modality LUT, i.e. Rescale Slope and Intercept, giving Hounsfield units for CT).
//!
//! The model works on [0, 1] images; a CT slice is mapped there through a window (as on a CT
//! console), see [`Window`]. Only the uncompressed transfer syntaxes (implicit/explicit VR,
//! little/big endian, deflated excepted) and RLE Lossless are decoded; JPEG, JPEG-LS and
//! JPEG 2000 encapsulated files are refused with a message naming the transfer syntax (decompress
//! them first, e.g. `gdcmconv --raw` or `dcmdjpeg`): the codecs would bring C libraries or large
//! decoders into liblofi for a format CT archives can convert once.

use std::path::Path;

use dicom_object::OpenFileOptions;
use dicom_pixeldata::PixelDecoder;

use crate::error::{Error, Result};
use crate::image_io::{Image, MAX_SIDE};

/// Whether the path names a DICOM file (`.dcm`, `.dicom`, any case).
pub fn is_dicom_path(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(ext.as_str(), "dcm" | "dicom")
}

/// A display window in modality units (HU for CT): values from `center - width / 2` to
/// `center + width / 2` map linearly onto [0, 1], values outside are clipped:
///
/// ```text
/// v = clamp((HU - (center - width / 2)) / width, 0, 1)        HU = center - width / 2 + v * width
/// ```
///
/// E.g. a soft-tissue window 40,400 maps -160 HU to 0 and 240 HU to 1; "level/width" on consoles
/// are the same two numbers. (DICOM's own linear VOI function, PS3.3 C.11.2.1.2, differs from
/// this by half a unit at the ends: it is meant for integer display values.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

impl Window {
    /// A window; the width must be positive and both numbers finite.
    pub fn new(center: f64, width: f64) -> Result<Window> {
        if !center.is_finite() || !width.is_finite() || width <= 0.0 {
            return Err(Error::invalid_argument(format!(
                "window center {center}, width {width}: the width must be positive and both finite"
            )));
        }
        Ok(Window { center, width })
    }

    /// Parses `CENTER,WIDTH` (e.g. `40,400`, `-600,1500`).
    pub fn parse(text: &str) -> Result<Window> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let number = |s: &str| {
            s.parse::<f64>()
                .map_err(|_| Error::invalid_argument(format!("window '{text}': '{s}' is not a number")))
        };
        match parts.as_slice() {
            [c, w] => Window::new(number(c)?, number(w)?),
            _ => Err(Error::invalid_argument(format!(
                "window '{text}': expected CENTER,WIDTH in HU, e.g. 40,400"
            ))),
        }
    }

    /// Modality units (HU) to [0, 1], clipped.
    pub fn to_unit(&self, value: f64) -> f32 {
        ((value - (self.center - 0.5 * self.width)) / self.width).clamp(0.0, 1.0) as f32
    }

    /// [0, 1] back to modality units (HU).
    pub fn from_unit(&self, value: f32) -> f64 {
        self.center - 0.5 * self.width + f64::from(value) * self.width
    }
}

/// A decoded slice: the modality values (HU for CT) and what the file says about them.
#[derive(Clone, Debug)]
pub struct DicomSlice {
    /// Rescaled values (slope * stored + intercept), one channel, rows top to bottom.
    pub values: Image,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    /// The file's first Window Center/Width, if it has one.
    pub window: Option<Window>,
    /// Modality (0008,0060), e.g. "CT".
    pub modality: Option<String>,
    /// Transfer syntax UID of the file.
    pub transfer_syntax: String,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("{}: {what}", path.display()))
}

/// Names of the transfer syntaxes users meet most, for error messages.
fn transfer_syntax_name(uid: &str) -> &'static str {
    match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended",
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "JPEG Lossless",
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Near-Lossless",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 Lossless",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => "HTJ2K",
        _ => "a transfer syntax",
    }
}

/// Reads a single-frame grey DICOM slice and applies Rescale Slope/Intercept. Refused with a
/// message naming the file: unreadable or truncated files, compressed transfer syntaxes lofi
/// does not decode, multi-frame objects, colour images and objects without pixel data.
pub fn read_slice(path: &Path) -> Result<DicomSlice> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    super::guard(path, || read_slice_bytes(path, &bytes))
}

fn read_slice_bytes(path: &Path, bytes: &[u8]) -> Result<DicomSlice> {
    // The whole file is parsed (not read up to the pixel data), so a truncated file fails here
    // rather than with short pixel data later.
    // A file starts with a 128-byte preamble and "DICM"; dicom-object's reader wants what follows.
    let body = if bytes.get(128..132) == Some(&b"DICM"[..]) { &bytes[128..] } else { bytes };
    let obj = OpenFileOptions::new()
        .from_reader(body)
        .map_err(|e| bad(path, format!("not a readable DICOM file ({})", first_line(&e.to_string()))))?;
    let uid = obj.meta().transfer_syntax().trim_end_matches('\0').trim().to_string();
    let text =
        |tag| obj.element_opt(tag).ok().flatten().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string());
    let modality = text(dicom_dictionary_std::tags::MODALITY);
    if let Some(frames) = text(dicom_dictionary_std::tags::NUMBER_OF_FRAMES) {
        if frames.parse::<u32>().is_ok_and(|n| n > 1) {
            return Err(bad(
                path,
                format!("holds {frames} frames; lofi reads single-frame slices (split the series first)"),
            ));
        }
    }
    let decoded = obj.decode_pixel_data().map_err(|e| {
        let known = transfer_syntax_name(&uid);
        bad(
            path,
            format!(
                "cannot decode the pixel data ({}); transfer syntax {uid} ({known}). lofi decodes uncompressed \
                 and RLE Lossless slices: decompress JPEG/JPEG-LS/JPEG 2000 files first (e.g. gdcmconv --raw)",
                first_line(&e.to_string())
            ),
        )
    })?;
    if decoded.number_of_frames() != 1 {
        return Err(bad(
            path,
            format!("holds {} frames; lofi reads single-frame slices", decoded.number_of_frames()),
        ));
    }
    if decoded.samples_per_pixel() != 1 {
        return Err(bad(
            path,
            format!("has {} samples per pixel; lofi reads grey (CT) slices", decoded.samples_per_pixel()),
        ));
    }
    let (rows, cols) = (decoded.rows() as usize, decoded.columns() as usize);
    if rows == 0 || cols == 0 || rows > MAX_SIDE || cols > MAX_SIDE {
        return Err(bad(path, format!("a slice of {cols} x {rows} pixels is empty or too large")));
    }
    let rescale = decoded.rescale().map_err(|e| bad(path, format!("bad rescale parameters ({e})")))?[0];
    let values: Vec<f32> = decoded
        .to_vec_frame::<f32>(0)
        .map_err(|e| bad(path, format!("cannot convert the pixel data ({})", first_line(&e.to_string()))))?;
    if values.len() != rows * cols {
        return Err(bad(path, format!("truncated: {} of {} pixels", values.len(), rows * cols)));
    }
    let window = decoded
        .window()
        .ok()
        .flatten()
        .and_then(|w| w.first())
        .and_then(|w| Window::new(w.center, w.width).ok());
    let values = Image::new(rows, cols, 1, values).map_err(|e| bad(path, e))?;
    values.check_finite().map_err(|e| bad(path, e))?;
    Ok(DicomSlice {
        values,
        rescale_slope: rescale.slope,
        rescale_intercept: rescale.intercept,
        window,
        modality,
        transfer_syntax: uid,
    })
}

/// Reads a slice and maps it to [0, 1] through `window`, or the file's own window when None
/// (refused when the file has none: the mapping must be a choice, not a guess).
pub fn read_windowed(path: &Path, window: Option<Window>) -> Result<(Image, Window)> {
    let slice = read_slice(path)?;
    let window = match window.or(slice.window) {
        Some(w) => w,
        None => {
            return Err(Error::invalid_argument(format!(
            "{}: the file has no Window Center/Width; give one with --window CENTER,WIDTH (HU), e.g. 40,400",
            path.display()
        )))
        }
    };
    let mut image = slice.values;
    for v in image.data.iter_mut() {
        *v = window.to_unit(f64::from(*v));
    }
    Ok((image, window))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}
