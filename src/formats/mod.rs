//! Scientific and medical image formats: FITS (astronomy) and DICOM (CT). `image_io` dispatches
//! to these by extension; the CLI uses them directly to carry FITS headers and to choose a DICOM
//! window.

pub mod dicom;
pub mod fits;

use std::path::Path;

use crate::error::{Error, Result};
use crate::image_io::{self, Image};

/// Runs a reader of `path`, turning a panic in a third-party decoder into an error naming the
/// file: fitsrs and dicom-rs trust some lengths in the files they parse (dicom-rs 0.10's RLE
/// decoder indexes past a short segment, for one), and a damaged file must not take the host
/// process down.
pub(crate) fn guard<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(result) => result,
        Err(panic) => Err(Error::invalid_input(format!(
            "{}: malformed file (the decoder failed: {})",
            path.display(),
            crate::error::panic_message(&*panic)
        ))),
    }
}

/// An input image and what its file says beyond the pixels: the FITS header to carry to
/// outputs, or the window a DICOM slice was mapped to [0, 1] with.
#[derive(Clone, Debug)]
pub struct InputImage {
    pub image: Image,
    pub fits_header: Option<fits::FitsHeader>,
    pub window: Option<dicom::Window>,
}

/// Reads any image `image_io` reads, keeping the FITS header of FITS files and mapping DICOM
/// slices through `window` (or the file's own window). `window` given for another format is an
/// error rather than silently ignored.
pub fn read_input(path: &Path, window: Option<dicom::Window>) -> Result<InputImage> {
    if dicom::is_dicom_path(path) {
        let (image, window) = dicom::read_windowed(path, window)?;
        return Ok(InputImage { image, fits_header: None, window: Some(window) });
    }
    if window.is_some() {
        return Err(Error::invalid_argument(format!(
            "{}: --window applies to DICOM (.dcm) inputs only",
            path.display()
        )));
    }
    if fits::is_fits_path(path) {
        let f = fits::read_image(path)?;
        return Ok(InputImage { image: f.image, fits_header: Some(f.header), window: None });
    }
    Ok(InputImage { image: image_io::read(path)?, fits_header: None, window: None })
}

/// Writes an output image: FITS outputs carry `header` (the input's, when it was FITS) plus the
/// `history` lines; other formats go through `image_io::write` (`bits` for PNG/TIFF).
pub fn write_output(
    path: &Path,
    image: &Image,
    bits: u8,
    header: Option<&fits::FitsHeader>,
    history: &[String],
) -> Result<()> {
    if !fits::is_fits_path(path) {
        return image_io::write(path, image, bits);
    }
    let mut header = header.cloned().unwrap_or_default();
    for line in history {
        header.add_history(line);
    }
    fits::write_image(path, image, &header)
}

/// HISTORY lines recording what made an output: the lofi version and command, the model (file
/// name and the first 16 hex digits of its digest), and the command line as given.
pub fn history_lines(command: &str, model_path: &Path, digest: Option<&str>) -> Vec<String> {
    let model = model_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let digest = digest
        .map(|d| d.strip_prefix("sha256:").unwrap_or(d))
        .map(|d| format!(" (sha256 {})", d.get(..16).unwrap_or(d)))
        .unwrap_or_default();
    // The program by its name, not the path it was run from.
    let argv: Vec<String> =
        std::env::args().enumerate().map(|(i, a)| if i == 0 { "lofi".to_string() } else { a }).collect();
    vec![
        format!("lofi {} {command}: model {model}{digest}", crate::VERSION),
        format!("command: {}", argv.join(" ")),
    ]
}
