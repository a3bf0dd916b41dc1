//! `lofi clean`: Högbom CLEAN of visibilities (the radio astronomer's baseline), through the
//! same NUFFT and weighting as `lofi pnp --operator nufft`.
//!
//! ```text
//! lofi clean --visibilities V.npy --pixel-arcsec P --image-size N --output RESTORED.npy
//!            [--weighting natural|uniform] [--gain 0.1] [--iterations 10000] [--threshold X]
//!            [--model M.npy] [--residual R.npy] [--dirty D.npy] [--flux-per-pixel]
//! ```
//! Images are Jy/beam (restored, residual, dirty) and Jy per pixel (model); `--flux-per-pixel`
//! divides the restored, residual and dirty images by the clean beam's area (pixels) to compare
//! them with a sky model in Jy per pixel.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use lofi::image_io::{self, Image};
use lofi::operators::clean::{hogbom, CleanParams};
use lofi::operators::nufft::Weighting;
use lofi::pnp::{ImageShape, Operator, Visibilities};
use tch::{Device, Kind};

use super::pnp::WeightingKind;

#[derive(clap::Args)]
pub struct Args {
    /// Visibilities, .npy or a FITS binary table (see `lofi pnp --help`, --visibilities).
    #[arg(long)]
    visibilities: PathBuf,
    /// Pixel size, arcseconds.
    #[arg(long)]
    pixel_arcsec: f64,
    /// Image size N (N x N pixels).
    #[arg(long)]
    image_size: usize,
    #[arg(long, value_enum, default_value = "natural")]
    weighting: WeightingKind,
    /// Loop gain.
    #[arg(long, default_value_t = 0.1)]
    gain: f64,
    /// Most CLEAN components.
    #[arg(long, default_value_t = 10_000)]
    iterations: usize,
    /// Stop below this residual peak, Jy/beam (default: 3 x the residual's robust noise).
    #[arg(long)]
    threshold: Option<f64>,
    /// The restored image (.npy, .png or .tif).
    #[arg(long)]
    output: PathBuf,
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    residual: Option<PathBuf>,
    #[arg(long)]
    dirty: Option<PathBuf>,
    /// Write the restored, residual and dirty images in Jy per pixel (divided by the clean
    /// beam's area) rather than Jy/beam.
    #[arg(long)]
    flux_per_pixel: bool,
}

fn write(path: &Path, n: usize, values: &[f64]) -> Result<()> {
    let image = Image::new(n, n, 1, values.iter().map(|&v| v as f32).collect())?;
    image_io::write(path, &image, 16)?;
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let n = args.image_size;
    if !(2..=1 << 14).contains(&n) {
        bail!("--image-size {n} is out of range (2 .. 16384)");
    }
    let table = lofi::visibility_io::read(&args.visibilities)?;
    let weighting = match args.weighting {
        WeightingKind::Natural => Weighting::Natural,
        WeightingKind::Uniform => Weighting::Uniform,
    };
    let shape = ImageShape { channels: 1, height: n as i64, width: n as i64 };
    let started = std::time::Instant::now();
    let (dirty, psf) = tch::no_grad(|| -> Result<(Vec<f64>, Vec<f64>)> {
        let op =
            Visibilities::new(shape, &table.uv, &table.weights, args.pixel_arcsec, weighting, Device::Cpu)?;
        let y = op.measurements_from_host(&table.interleaved_values(), Device::Cpu)?;
        let dirty = op.dirty_image(&y)?.to_kind(Kind::Double).reshape([-1]);
        let psf = op.dirty_beam().reshape([-1]);
        Ok((Vec::<f64>::try_from(dirty)?, Vec::<f64>::try_from(psf)?))
    })?;
    let params = CleanParams { gain: args.gain, max_iterations: args.iterations, threshold: args.threshold };
    let result = hogbom(&dirty, &psf, n, n, &params)?;
    let area = if args.flux_per_pixel { result.beam.area() } else { 1.0 };
    let scaled = |v: &[f64]| v.iter().map(|x| x / area).collect::<Vec<_>>();
    write(&args.output, n, &scaled(&result.restored))?;
    if let Some(p) = &args.model {
        write(p, n, &result.model)?;
    }
    if let Some(p) = &args.residual {
        write(p, n, &scaled(&result.residual))?;
    }
    if let Some(p) = &args.dirty {
        write(p, n, &scaled(&dirty))?;
    }
    let (major, minor) = result.beam.fwhm();
    println!(
        "clean: {} visibilities, {n} x {n} at {}\" per pixel; {} components down to {:.3e} Jy/beam; clean beam {:.2}\" x {:.2}\" FWHM ({:.1} pixels in area); {:.1} s; wrote {}",
        table.len(),
        args.pixel_arcsec,
        result.iterations,
        result.threshold,
        major * args.pixel_arcsec,
        minor * args.pixel_arcsec,
        result.beam.area(),
        started.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(())
}
