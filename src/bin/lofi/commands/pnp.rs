//! `lofi pnp`: LoFi-ADMM (plug-and-play) for inverse problems at any working resolution.
//!
//! Measurements come from `--input` (in the operator's layout, see `lofi_operator` in lofi.h), or
//! are simulated from `--ground-truth` (y = A x + noise) when no input is given: that is how the
//! README's experiments are run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use lofi::device::DeviceSpec;
use lofi::engine::parse_bytes;
use lofi::image_io::{self, Image};
use lofi::model::LoadOptions;
use lofi::pnp::{
    Blur, Ct, FourierSampling, Identity, ImageShape, Inpaint, Lensing, Operator, Pnp, PnpParams, Residuals,
    TvPrior, Visibilities,
};
use lofi::visibility_io::VisibilityTable;
use lofi::Model;
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

use crate::train::plot;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OperatorKind {
    Denoise,
    Inpaint,
    FourierMask,
    Blur,
    Lensing,
    Radon,
    /// Radio visibilities at their own (u, v) through a NUFFT (--visibilities, or --uv with
    /// --ground-truth to simulate), --pixel-arcsec and --image-size.
    Nufft,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightingKind {
    Natural,
    Uniform,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SplittingKind {
    Admm,
    Hqs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransformsKind {
    /// The image as it is (the paper's LoFi-ADMM).
    None,
    /// A different quarter turn or mirror of the image at each iteration.
    Dihedral,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PriorKind {
    /// The LoFi model (LoFi-ADMM).
    Lofi,
    /// Total variation (baseline), weight --tv-weight.
    Tv,
}

#[derive(clap::Args)]
pub struct Args {
    /// The denoiser (.lofi) used as the prior.
    #[arg(long)]
    model: PathBuf,
    /// The forward operator A.
    #[arg(long, value_enum)]
    operator: OperatorKind,
    /// Measurements y: an image (denoise, inpaint, blur) or .npy float32 holding the operator's
    /// layout (fourier-mask: (C, P, 2) measured frequencies; lensing: (H, W, 2); radon:
    /// (angles, detectors)). Without it, y is simulated from --ground-truth.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write the reconstruction (.npy, .png or .tif).
    #[arg(long)]
    output: PathBuf,
    /// ADMM iterations [default: 90; inpainting with a noise-level-aware prior: 40].
    #[arg(long)]
    iterations: Option<usize>,
    /// ADMM penalty alpha (under --anneal: the data weight at the last sigma) [default: 0.05;
    /// inpainting with a noise-level-aware prior: 0.01].
    #[arg(long)]
    alpha: Option<f64>,
    /// Noise level a noise-level-aware denoiser is told at every iteration (fixed-sigma ADMM):
    /// image units (0.05) or a fraction (12/255). Fixed-level models take none. [default: the
    /// annealing schedule below; inpainting: 0.6 x the top of the model's training range, 30/255
    /// for the shipped gray denoiser]
    #[arg(long, value_parser = super::parse_sigma, allow_hyphen_values = true)]
    denoiser_sigma: Option<f64>,
    /// Annealed LoFi-ADMM (noise-level-aware models, or --prior tv): START,END[,ITERATIONS], the
    /// denoiser's sigma falling geometrically from START to END over ITERATIONS (default: all
    /// --iterations), e.g. 50/255,2/255. The data weight follows: alpha (END / sigma_k)^2.
    #[arg(long)]
    anneal: Option<String>,
    /// admm (the paper's LoFi-ADMM; under --anneal the dual is rescaled as alpha changes) or hqs
    /// (half-quadratic splitting, no dual variable, as DPIR).
    #[arg(long, value_enum, default_value = "admm")]
    splitting: SplittingKind,
    /// Stop once an iteration changes the estimate by less than this (relative), after the
    /// schedule; 0 runs every iteration.
    #[arg(long, default_value_t = 0.0)]
    tolerance: f64,
    /// What the prior sees: dihedral (a different quarter turn or mirror of the image at each
    /// iteration, which removes the denoiser's preferred directions) or none (the image as it is).
    #[arg(long, value_enum, default_value = "dihedral")]
    transforms: TransformsKind,
    /// The output is the mean of the prior's last N outputs at the final noise level (with
    /// --transforms dihedral, 8 is one cycle of a square image's transforms); 1: the last output.
    #[arg(long, default_value_t = 8)]
    average_last: usize,
    /// Start from this estimate (an image of the working resolution) instead of the operator's
    /// first guess (inpainting: gaps filled by normalised convolution; zero for most others).
    #[arg(long)]
    warm_start: Option<PathBuf>,
    /// Ground truth for PSNR per iteration (and for simulating y when --input is absent).
    #[arg(long)]
    ground_truth: Option<PathBuf>,
    /// CSV of per-iteration figures.
    #[arg(long)]
    log: Option<PathBuf>,
    /// PNG plot of PSNR (or the residuals) against the iteration (default: beside --log).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Working resolution W x H (default: that of the input, ground truth or mask).
    #[arg(long)]
    width: Option<usize>,
    #[arg(long)]
    height: Option<usize>,
    /// inpaint: pixel mask image (nonzero = observed).
    #[arg(long)]
    mask: Option<PathBuf>,
    /// inpaint: observed fraction of pixels for a random mask (with --seed).
    #[arg(long)]
    observed: Option<f64>,
    /// fourier-mask: (u, v) points, .npy (P, 2) in cycles per image (u along columns), gridded
    /// onto the Fourier plane; or use --mask with a centred (H, W) mask image/.npy.
    #[arg(long)]
    uv: Option<PathBuf>,
    /// fourier-mask: the --uv points are in wavelengths (as `lofi simulate uv-coverage` writes
    /// them) and a pixel spans this many arcseconds. nufft: the pixel size (required).
    #[arg(long)]
    pixel_arcsec: Option<f64>,
    /// blur: kernel .npy (kh, kw); or a Gaussian of --blur-sigma pixels.
    #[arg(long)]
    kernel: Option<PathBuf>,
    #[arg(long, default_value_t = 2.0)]
    blur_sigma: f64,
    /// radon: projection angles in degrees, comma separated, or `START:STOP:COUNT` (STOP excluded).
    #[arg(long, default_value = "0:180:30")]
    angles: String,
    /// Simulation noise: input SNR in dB (fourier-mask, blur, radon) ...
    #[arg(long)]
    snr: Option<f64>,
    /// ... or standard deviation of Gaussian noise (denoise, inpaint, lensing).
    #[arg(long)]
    sigma: Option<f64>,
    /// Seed of random masks and simulated noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write A^T y (the back-projection, or "dirty image") here too.
    #[arg(long)]
    back_projection: Option<PathBuf>,
    /// The prior: lofi, or tv (a total-variation baseline in the same ADMM).
    #[arg(long, value_enum, default_value = "lofi")]
    prior: PriorKind,
    #[arg(long, default_value_t = 0.05)]
    tv_weight: f64,
    /// Conjugate-gradient iterations per data step (radon) and tolerance.
    #[arg(long, default_value_t = 100)]
    cg_iterations: usize,
    #[arg(long, default_value_t = 1e-7)]
    cg_tolerance: f64,
    /// nufft: visibilities .npy, (M, 5) columns u, v (wavelengths), re, im, weight, or a
    /// structured array with fields u, v, re, im (or a complex vis) and weight, or a FITS
    /// binary table with columns UU, VV, VIS (or RE, IM) and WEIGHT (see lofi::visibility_io). The measurements of the solve (--ground-truth then only scores).
    #[arg(long)]
    visibilities: Option<PathBuf>,
    /// nufft: natural (each visibility by its weight) or uniform (every measured (u, v) cell
    /// weighs the same) weighting in the data term.
    #[arg(long, value_enum, default_value = "natural")]
    weighting: WeightingKind,
    /// Square working resolution N x N (instead of --width and --height).
    #[arg(long)]
    image_size: Option<usize>,
    /// nufft, simulating from --ground-truth: write the simulated visibilities here ((M, 5)
    /// columns u, v, re, im, weight = 1 / (2 sigma^2), the inverse variance of the complex noise).
    #[arg(long)]
    save_visibilities: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value = "512MiB")]
    memory_budget: String,
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Parses START,END[,ITERATIONS] of --anneal.
fn parse_anneal(text: &str, iterations: usize) -> Result<lofi::pnp::NoiseSchedule> {
    let parts: Vec<&str> = text.split(',').collect();
    let sigma = |s: &str| super::parse_sigma(s).map_err(anyhow::Error::msg);
    let (start, end, count) = match parts.as_slice() {
        [a, b] => (sigma(a)?, sigma(b)?, iterations),
        [a, b, n] => (
            sigma(a)?,
            sigma(b)?,
            n.trim().parse::<usize>().with_context(|| format!("--anneal iterations '{n}'"))?,
        ),
        _ => bail!("--anneal takes START,END or START,END,ITERATIONS (e.g. 50/255,2/255)"),
    };
    Ok(lofi::pnp::NoiseSchedule { sigma_start: start, sigma_end: end, iterations: count })
}

fn to_tensor(img: &Image, device: Device) -> Tensor {
    img.to_tensor().to_device(device)
}

fn read_npy_values(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let img = image_io::read(path)?;
    Ok((vec![img.height, img.width, img.channels], img.data))
}

/// Parses `0,30,60` or `0:180:30` (STOP excluded).
fn parse_angles(text: &str) -> Result<Vec<f64>> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() == 3 {
        let (a, b): (f64, f64) = (parts[0].trim().parse()?, parts[1].trim().parse()?);
        let n: usize = parts[2].trim().parse()?;
        if n == 0 {
            bail!("--angles needs at least one angle");
        }
        return Ok((0..n).map(|k| a + (b - a) * k as f64 / n as f64).collect());
    }
    text.split(',').map(|s| s.trim().parse::<f64>().with_context(|| format!("angle '{s}'"))).collect()
}

fn build_operator(
    args: &Args,
    shape: ImageShape,
    device: Device,
    table: Option<&VisibilityTable>,
) -> Result<Box<dyn Operator>> {
    let plane = shape.height as usize * shape.width as usize;
    let read_mask = |path: &Path| -> Result<Vec<f32>> {
        let img = image_io::read(path)?;
        if img.height != shape.height as usize || img.width != shape.width as usize {
            bail!(
                "the mask is {} x {}, the working resolution {} x {}",
                img.width,
                img.height,
                shape.width,
                shape.height
            );
        }
        Ok((0..plane).map(|i| img.data[i * img.channels]).collect())
    };
    Ok(match args.operator {
        OperatorKind::Denoise => Box::new(Identity { shape }),
        OperatorKind::Inpaint => match (&args.mask, args.observed) {
            (Some(path), _) => Box::new(Inpaint::new(shape, &read_mask(path)?, device)?),
            (None, Some(fraction)) => Box::new(Inpaint::random(shape, fraction, args.seed, device)?),
            (None, None) => bail!("inpaint needs --mask or --observed"),
        },
        OperatorKind::FourierMask => {
            let mask = match (&args.mask, &args.uv) {
                (Some(path), _) => read_mask(path)?,
                (None, Some(path)) => {
                    let mut points = lofi::visibility_io::read_uv_points(path)?;
                    if let Some(arcsec) = args.pixel_arcsec {
                        points = lofi::operators::fourier::wavelengths_to_cycles(
                            &points,
                            shape.height,
                            shape.width,
                            arcsec,
                        );
                    }
                    let (m, _) = lofi::operators::fourier::grid_uv(&points, shape.height, shape.width, true);
                    Vec::<f32>::try_from(m.to_kind(Kind::Float).view([-1]))?
                }
                (None, None) => bail!("fourier-mask needs --mask or --uv"),
            };
            Box::new(FourierSampling::new(shape, &mask, device)?)
        }
        OperatorKind::Blur => match &args.kernel {
            Some(path) => {
                let img = image_io::read(path)?;
                Box::new(Blur::new(shape, &img.data, img.height, img.width)?)
            }
            None => {
                let size = (6.0 * args.blur_sigma).ceil() as i64 | 1;
                let k = lofi::operators::fourier::FourierBlur::gaussian_kernel(size, args.blur_sigma)
                    .to_kind(Kind::Float);
                Box::new(Blur::new(
                    shape,
                    &Vec::<f32>::try_from(k.view([-1]))?,
                    size as usize,
                    size as usize,
                )?)
            }
        },
        OperatorKind::Lensing => Box::new(Lensing::new(shape)?),
        OperatorKind::Radon => Box::new(Ct::new(shape, parse_angles(&args.angles)?)?),
        OperatorKind::Nufft => {
            let Some(arcsec) = args.pixel_arcsec else { bail!("nufft needs --pixel-arcsec") };
            let (uv, weights) = match (table, &args.uv) {
                (Some(t), _) => (t.uv.clone(), t.weights.clone()),
                (None, Some(path)) => {
                    let uv = lofi::visibility_io::read_uv_points(path)?;
                    let ones = vec![1.0; uv.len()];
                    (uv, ones)
                }
                (None, None) => bail!("nufft needs --visibilities (or --uv and --ground-truth to simulate)"),
            };
            let weighting = match args.weighting {
                WeightingKind::Natural => lofi::operators::nufft::Weighting::Natural,
                WeightingKind::Uniform => lofi::operators::nufft::Weighting::Uniform,
            };
            let delta = lofi::operators::nufft::arcsec_to_rad(arcsec);
            let beyond =
                uv.iter().filter(|p| (p[0] * delta).abs() > 0.5 || (p[1] * delta).abs() > 0.5).count();
            if beyond > 0 {
                log::warn!("{beyond} of {} visibilities lie beyond the image's Nyquist frequency at {arcsec} arcsec per pixel (they alias); use smaller pixels", uv.len());
            }
            Box::new(Visibilities::new(shape, &uv, &weights, arcsec, weighting, device)?)
        }
    })
}

/// y = A x + noise, noise from --snr (dB, relative to the RMS of A x) or --sigma.
fn simulate(op: &dyn Operator, truth: &Tensor, args: &Args) -> Result<(Tensor, f64)> {
    let clean = tch::no_grad(|| op.forward(truth))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let noise = |like: &Tensor, rng: &mut rand_chacha::ChaCha8Rng| -> Tensor {
        let real = if like.is_complex() { like.view_as_real() } else { like.shallow_clone() };
        lofi::operators::standard_normal(&real.size(), Kind::Float, real.device(), rng)
    };
    let sigma = match (args.snr, args.sigma) {
        (Some(_), Some(_)) => bail!("give --snr or --sigma, not both"),
        (Some(snr), None) => {
            // Over the measured values only (zeros off a mask are not measurements).
            let host = op.measurements_to_host(&clean);
            let rms = (host.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / host.len() as f64).sqrt();
            rms * 10f64.powf(-snr / 20.0)
        }
        (None, Some(s)) => s,
        (None, None) => 0.0,
    };
    if sigma == 0.0 {
        return Ok((clean, 0.0));
    }
    if args.operator == OperatorKind::Nufft {
        // Thermal noise: the same standard deviation on every visibility's real and imaginary
        // parts, whatever the imaging weights (which the operator applies on the way in).
        let mut host = op.measurements_to_host(&clean);
        let n = noise(&Tensor::zeros([host.len() as i64], (Kind::Float, Device::Cpu)), &mut rng) * sigma;
        for (value, e) in host.iter_mut().zip(Vec::<f32>::try_from(n)?) {
            *value += e;
        }
        return Ok((op.measurements_from_host(&host, truth.device())?, sigma));
    }
    let n = noise(&clean, &mut rng) * sigma;
    let noisy = if clean.is_complex() { (clean.view_as_real() + n).view_as_complex() } else { clean + n };
    // Keep the operator's support: re-apply the measurement mask through a host round trip.
    let host = op.measurements_to_host(&noisy);
    Ok((op.measurements_from_host(&host, truth.device()).unwrap_or(noisy), sigma))
}

/// Writes simulated visibilities ((M, 5) columns) with the --uv coordinates they were made at.
fn save_visibilities(path: &Path, op: &dyn Operator, y: &Tensor, args: &Args, sigma: f64) -> Result<()> {
    let Some(uv_path) = &args.uv else {
        bail!("--save-visibilities needs the --uv points of the simulation")
    };
    let uv = lofi::visibility_io::read_uv_points(uv_path)?;
    let values = op.measurements_to_host(y);
    let weight = if sigma > 0.0 { 1.0 / (2.0 * sigma * sigma) } else { 1.0 };
    let table = VisibilityTable {
        uv,
        values: values.chunks(2).map(|p| [p[0] as f64, p[1] as f64]).collect(),
        weights: vec![weight; values.len() / 2],
    };
    lofi::visibility_io::write_npy(path, &table)?;
    Ok(())
}

/// What FITS outputs carry: the header of --input, else of --ground-truth, when that is a FITS
/// image (its WCS rescaled to the working resolution), and the HISTORY lines.
type FitsCarry = (Option<lofi::formats::fits::FitsHeader>, Vec<String>);

fn fits_carry(args: &Args, width: usize, height: usize, history: Vec<String>) -> Result<FitsCarry> {
    let is_fits = |p: &&PathBuf| lofi::formats::fits::is_fits_path(p);
    let image_input =
        matches!(args.operator, OperatorKind::Denoise | OperatorKind::Inpaint | OperatorKind::Blur);
    let source = args
        .input
        .as_ref()
        .filter(|_| image_input)
        .filter(is_fits)
        .or(args.ground_truth.as_ref().filter(is_fits));
    let header = match source {
        Some(path) => {
            let f = lofi::formats::fits::read_image(path)?;
            let mut h = f.header;
            let step =
                |from: usize, to: usize| if to > 1 { (from as f64 - 1.0) / (to as f64 - 1.0) } else { 1.0 };
            h.resample(0.0, step(f.image.width, width), 0.0, step(f.image.height, height));
            Some(h)
        }
        None => None,
    };
    Ok((header, history))
}

fn write_tensor(path: &Path, t: &Tensor, fits: &FitsCarry) -> Result<()> {
    let img = Image::from_tensor(&t.to_device(Device::Cpu))?;
    lofi::formats::write_output(path, &img, 8, fits.0.as_ref(), &fits.1)?;
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let device_spec: DeviceSpec = args.device.parse()?;
    let budget = parse_bytes(&args.memory_budget)?;
    let model = Model::load(&args.model, LoadOptions::new(device_spec, Default::default()))?;
    let device = model.device();
    let channels = model.config().c_in;
    if args.prior == PriorKind::Lofi && model.config().c_out != channels {
        bail!(
            "plug-and-play needs a denoiser (as many output as input channels); {} maps {channels} channel(s) to {}",
            args.model.display(),
            model.config().c_out
        );
    }
    let truth = args.ground_truth.as_deref().map(image_io::read).transpose()?;
    let input_image = match (&args.input, args.operator) {
        (Some(p), OperatorKind::Denoise | OperatorKind::Inpaint | OperatorKind::Blur) => {
            Some(image_io::read(p)?)
        }
        _ => None,
    };
    let mask_size = match &args.mask {
        Some(p) => Some(image_io::read(p)?),
        None => None,
    };
    let (w, h) = match (args.width, args.height) {
        _ if args.image_size.is_some() && (args.width.is_some() || args.height.is_some()) => {
            bail!("give --image-size or --width and --height, not both")
        }
        _ if args.image_size.is_some() => (args.image_size.unwrap_or(0), args.image_size.unwrap_or(0)),
        (Some(w), Some(h)) => (w, h),
        (None, None) => {
            let from = truth.as_ref().or(input_image.as_ref()).or(mask_size.as_ref());
            match from {
                Some(img) => (img.width, img.height),
                None => bail!("give --width and --height (no image fixes the working resolution)"),
            }
        }
        _ => bail!("give both --width and --height"),
    };
    let shape = ImageShape { channels, height: h as i64, width: w as i64 };
    if args.operator != OperatorKind::Nufft
        && (args.visibilities.is_some() || args.save_visibilities.is_some())
    {
        bail!("--visibilities and --save-visibilities belong to --operator nufft");
    }
    let table = args.visibilities.as_deref().map(lofi::visibility_io::read).transpose()?;
    if table.is_some() && args.input.is_some() {
        bail!("give --visibilities or --input, not both");
    }
    let op = build_operator(&args, shape, device, table.as_ref())?;
    let truth_t = match &truth {
        Some(img) => {
            if (img.height, img.width, img.channels as i64) != (h, w, channels) {
                bail!(
                    "the ground truth is {} x {} x {}, the problem {w} x {h} x {channels}",
                    img.width,
                    img.height,
                    img.channels
                );
            }
            Some(to_tensor(img, device))
        }
        None => None,
    };
    let y = match (&args.input, &truth_t) {
        _ if table.is_some() => {
            if channels != 1 {
                bail!("visibilities image one channel; the model has {channels}");
            }
            op.measurements_from_host(
                &table.as_ref().map(|t| t.interleaved_values()).unwrap_or_default(),
                device,
            )?
        }
        (Some(path), _) => {
            let values = match &input_image {
                Some(img) => img.data.clone(),
                None => read_npy_values(path)?.1,
            };
            op.measurements_from_host(&values, device)?
        }
        (None, Some(t)) => {
            let (y, sigma) = simulate(&*op, t, &args)?;
            if let Some(path) = &args.save_visibilities {
                save_visibilities(path, &*op, &y, &args, sigma)?;
            }
            y
        }
        (None, None) => bail!("give --input (measurements) or --ground-truth (to simulate them)"),
    };
    // Inpainting with a noise-level-aware prior has its own measured defaults (see
    // `PnpParams::for_inpainting`); every other case the generic ones. Each flag given wins.
    let (defaults, default_iterations) = match (args.operator, args.prior, &model.config().noise_level) {
        (OperatorKind::Inpaint, PriorKind::Lofi, Some(range)) => {
            (PnpParams::for_inpainting(range), lofi::pnp::INPAINTING_ITERATIONS)
        }
        _ => (PnpParams::default(), 90),
    };
    let iterations = args.iterations.unwrap_or(default_iterations);
    let alpha = args.alpha.unwrap_or(defaults.alpha);
    let schedule = args.anneal.as_deref().map(|a| parse_anneal(a, iterations)).transpose()?;
    if schedule.is_some() && args.denoiser_sigma.is_some() {
        bail!("give --denoiser-sigma (fixed) or --anneal (a schedule), not both");
    }
    // A schedule replaces the default sigma; the TV prior takes none.
    let denoiser_sigma = match args.prior {
        PriorKind::Lofi => args.denoiser_sigma.or(defaults.denoiser_sigma.filter(|_| schedule.is_none())),
        PriorKind::Tv => None,
    };
    let params = PnpParams {
        alpha,
        cg_max_iterations: args.cg_iterations,
        cg_tolerance: args.cg_tolerance,
        memory_budget: budget,
        threads: args.threads,
        denoiser_sigma,
        schedule,
        splitting: match args.splitting {
            SplittingKind::Admm => lofi::pnp::Splitting::Admm,
            SplittingKind::Hqs => lofi::pnp::Splitting::Hqs,
        },
        tolerance: args.tolerance,
        transforms: match args.transforms {
            TransformsKind::None => lofi::pnp::Transforms::None,
            TransformsKind::Dihedral => lofi::pnp::Transforms::Dihedral,
        },
        average_last: args.average_last,
    };
    let op_name = op.name().to_string();
    let mut pnp = match args.prior {
        PriorKind::Lofi => Pnp::new(&model, op, shape, y, params)?,
        PriorKind::Tv => Pnp::with_prior(
            Box::new(TvPrior {
                weight: args.tv_weight,
                iterations: 100,
                reference_sigma: schedule.map_or(1.0, |s| s.sigma_end),
            }),
            device,
            op,
            shape,
            y,
            params,
        )?,
    };
    if let Some(t) = &truth_t {
        pnp.set_ground_truth(t)?;
    }
    if let Some(path) = &args.warm_start {
        let start = image_io::read(path)?;
        if (start.height, start.width, start.channels as i64) != (h, w, channels) {
            bail!(
                "the --warm-start image is {} x {} x {}, the problem {w} x {h} x {channels}",
                start.width,
                start.height,
                start.channels
            );
        }
        pnp.set_estimate(&to_tensor(&start, device))?;
    }
    let mut history = lofi::formats::history_lines("pnp", &args.model, model.digest());
    history.push(format!("pnp: operator {op_name}, prior {}, {} iterations", pnp.prior().name(), iterations));
    let fits = fits_carry(&args, w, h, history)?;
    if let Some(path) = &args.back_projection {
        write_tensor(path, pnp.back_projection(), &fits)?;
    }
    let baseline = truth_t.as_ref().map(|t| {
        let range = (t.max() - t.min()).double_value(&[]);
        lofi::pnp::psnr(t, pnp.back_projection(), range)
    });
    let noise = match (&pnp.params().schedule, pnp.params().denoiser_sigma) {
        (Some(s), _) => {
            format!(", sigma {:.4} -> {:.4} over {} iterations", s.sigma_start, s.sigma_end, s.iterations)
        }
        (None, Some(s)) => format!(", sigma {s:.4}"),
        (None, None) => String::new(),
    };
    eprintln!(
        "lofi pnp: {op_name}, {w} x {h} x {channels}, prior {}, alpha {}{noise}, {} iterations on {}{}",
        pnp.prior().name(),
        alpha,
        iterations,
        model.device_spec(),
        baseline.map(|p| format!("; PSNR of A^T y: {p:.2} dB")).unwrap_or_default()
    );
    let started = Instant::now();
    let mut rows: Vec<(Residuals, f64)> = Vec::new();
    let progress_every = (iterations / 10).max(1);
    pnp.solve(iterations, None, |r| {
        let t = started.elapsed().as_secs_f64();
        rows.push((*r, t));
        if r.iteration % progress_every == 0 || r.iteration == iterations {
            eprintln!(
                "  iteration {:>4}: primal {:.3e}  dual {:.3e}  misfit {:.3e}{}  ({t:.1} s)",
                r.iteration,
                r.primal,
                r.dual,
                r.data_misfit,
                r.psnr.map(|p| format!("  PSNR {p:.2} dB")).unwrap_or_default()
            );
        }
    })?;
    write_tensor(&args.output, pnp.estimate(), &fits)?;
    if let Some(log) = &args.log {
        let mut f = std::fs::File::create(log).with_context(|| format!("cannot write {}", log.display()))?;
        writeln!(f, "iteration,primal,dual,data_misfit,psnr,cg_iterations,sigma,alpha,seconds")?;
        for (r, t) in &rows {
            let psnr = r.psnr.map(|p| format!("{p:.4}")).unwrap_or_default();
            let sigma = r.sigma.map(|s| format!("{s:.6}")).unwrap_or_default();
            writeln!(
                f,
                "{},{:.6e},{:.6e},{:.6e},{psnr},{},{sigma},{:.6e},{t:.3}",
                r.iteration, r.primal, r.dual, r.data_misfit, r.cg_iterations, r.alpha
            )?;
        }
    }
    let plot_path = args.plot.clone().or_else(|| args.log.as_ref().map(|l| l.with_extension("png")));
    if let Some(path) = plot_path {
        let primal: Vec<(u64, f64)> = rows.iter().map(|(r, _)| (r.iteration as u64, r.primal)).collect();
        let psnr: Vec<(u64, f64)> =
            rows.iter().filter_map(|(r, _)| r.psnr.map(|p| (r.iteration as u64, p))).collect();
        plot::pnp_curves(&path, &primal, &psnr, baseline)?;
    }
    let last = rows.last().map(|(r, _)| *r).unwrap_or_default();
    println!(
        "{op_name}: {} iterations in {:.1} s{}; wrote {}",
        last.iteration,
        started.elapsed().as_secs_f64(),
        last.psnr.map(|p| format!(", PSNR {p:.2} dB")).unwrap_or_default(),
        args.output.display()
    );
    Ok(())
}
