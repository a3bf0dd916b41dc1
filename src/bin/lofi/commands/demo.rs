//! `lofi demo` (what `make demo` runs): denoise a bundled photograph with fixed noise using the
//! shipped default model, write noisy | LoFi | clean side by side, print PSNR and SSIM, and show
//! the continuous-coordinate side of LoFi with a 4x zoom of a region.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use lofi::engine::{self, ImageView, OutputView, Region, RunOptions};
use lofi::image_io::{self, Image};
use lofi::metrics;
use lofi::Model;
use rand::SeedableRng;

use crate::train::plot;

#[derive(clap::Args)]
pub struct Args {
    /// The denoiser (default: models/denoise-gray.lofi).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The clean image (default: data/images/gray/camera.png, held out from training).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Noise standard deviation (images in [0, 1]).
    #[arg(long, default_value_t = 0.15)]
    sigma: f64,
    /// Seed of the noise: the same seed gives the same noisy image on every machine.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
}

fn repo_path(rel: &str) -> PathBuf {
    // Relative to the working directory (make demo runs from the repository root), falling back to
    // the source tree this binary was built from.
    let here = PathBuf::from(rel);
    if here.exists() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }
}

pub fn run(args: Args) -> Result<()> {
    let default_model = repo_path("models/denoise-gray.lofi");
    let (model_path, trained) = match &args.model {
        Some(p) => (p.clone(), true),
        None if default_model.exists() => (default_model, true),
        None => (repo_path("tests/fixtures/models/tiny-gray.lofi"), false),
    };
    let model = Model::load(&model_path, Default::default())?;
    if !trained {
        println!("note: models/denoise-gray.lofi is missing; using the untrained fixture model (expect noise, not denoising)");
    }
    let image_path = args.image.clone().unwrap_or_else(|| repo_path("data/images/gray/camera.png"));
    let clean = image_io::read(&image_path)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let noise = lofi::operators::standard_normal(
        &[clean.data.len() as i64],
        tch::Kind::Float,
        tch::Device::Cpu,
        &mut rng,
    );
    let noise = Vec::<f32>::try_from(noise)?;
    let noisy = Image::new(
        clean.height,
        clean.width,
        clean.channels,
        clean.data.iter().zip(&noise).map(|(c, n)| c + args.sigma as f32 * n).collect(),
    )?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;

    let c_out = model.config().c_out as usize;
    // A noise-aware model is told the noise level; a fixed-level one was trained at its own.
    let noise_level = model.config().noise_level.map(|_| args.sigma);
    let mut restored = Image::zeros(clean.height, clean.width, c_out);
    let started = Instant::now();
    let report = engine::reconstruct_region(
        &model,
        ImageView::from_image(&noisy),
        Region::whole(clean.height, clean.width),
        clean.width,
        clean.height,
        None,
        OutputView { data: &mut restored.data, row_stride: clean.width * c_out },
        RunOptions { noise_level, ..Default::default() },
    )?;
    let seconds = started.elapsed().as_secs_f64();

    let side_by_side = args.out.join("denoise.png");
    plot::samples(
        &side_by_side,
        &[(&noisy, &restored, &clean)],
        &format!("LoFi (noise sigma {})", args.sigma),
    )?;
    image_io::write(&args.out.join("lofi.png"), &restored, 8)?;
    image_io::write(&args.out.join("noisy.png"), &noisy, 8)?;

    // Any resolution: a quarter of the image around its centre, sampled 4x more densely.
    let (h, w) = (clean.height as f64, clean.width as f64);
    let region = Region { x0: w * 0.375, y0: h * 0.375, x1: w * 0.625, y1: h * 0.625 };
    let (zw, zh) = (4 * (clean.width / 4) + 1, 4 * (clean.height / 4) + 1);
    let mut zoom = Image::zeros(zh, zw, c_out);
    engine::reconstruct_region(
        &model,
        ImageView::from_image(&noisy),
        region,
        zw,
        zh,
        None,
        OutputView { data: &mut zoom.data, row_stride: zw * c_out },
        RunOptions { noise_level, ..Default::default() },
    )?;
    image_io::write(&args.out.join("zoom4x.png"), &zoom, 8)?;

    println!(
        "model:   {} ({} parameters, trained at {2}x{2})",
        model_path.display(),
        model.parameter_count(),
        model.config().image_size
    );
    println!(
        "image:   {} ({} x {}), Gaussian noise sigma {} (seed {})",
        image_path.display(),
        clean.width,
        clean.height,
        args.sigma,
        args.seed
    );
    println!(
        "noisy:   PSNR {:6.2} dB   SSIM {:.4}",
        metrics::psnr(&clean, &noisy)?,
        metrics::ssim(&clean, &noisy)?
    );
    println!(
        "LoFi:    PSNR {:6.2} dB   SSIM {:.4}",
        metrics::psnr(&clean, &restored)?,
        metrics::ssim(&clean, &restored)?
    );
    println!(
        "time:    {seconds:.2} s on {} ({} batches of {} pixels)",
        model.device_spec(),
        report.batches,
        report.plan.batch_pixels
    );
    println!(
        "wrote:   {} (noisy | LoFi | clean), lofi.png, noisy.png, zoom4x.png (the centre at 4x)",
        side_by_side.display()
    );
    Ok(())
}
