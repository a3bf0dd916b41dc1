//! `lofi simulate`: synthetic objects (and, with `--pairs`, their observations) for the paper's
//! tasks, written as `.npy` files or produced in memory for the training code.
//!
//! ```text
//! lofi simulate TASK --count N --out DIR [--size S | --size HxW] [--seed K] [--pairs] ...
//! ```
//! TASK: `ellipses` (CT phantoms), `convergence` (weak-lensing kappa maps), `galaxies`
//! (Sersic-galaxy skies for radio interferometry), `uv-coverage` (Earth-rotation synthesis),
//! `dead-leaves` (occluding textured discs with power-law radii: license-free natural-like
//! images for denoisers; gray, or RGB with `--channels 3`, the only task with colour).
//!
//! # Determinism
//! Sample `i` is drawn from its own ChaCha8 stream, [`sample_rng`]`(seed, i)`, so it depends only
//! on (seed, i, parameters): `--count 10` writes the first ten samples of `--count 1000`, and
//! `--first-index` continues a set (e.g. a test set at `--first-index 1000000`, or simply another
//! seed). Nothing depends on libtorch's global generator or the machine.
//!
//! # Files
//! * Objects only: `DIR/<task>_<index:05>.npy`, float32 (H, W); dead-leaves `--channels 3`:
//!   (H, W, 3) RGB.
//! * `--pairs`: `DIR/targets/<name>.npy` and `DIR/observations/<name>.npy` (the layout the
//!   training tool's `paired` task reads): ellipses -> FBP of the noisy 180-angle sinogram
//!   (H, W); convergence -> Kaiser-Squires of the noisy shear, (H, W, 2) = (re, im); galaxies ->
//!   the dirty image `A^T (A x + n)` of the masked-Fourier operator `A = M F` over the default
//!   coverage (written to `DIR/mask.npy`). Dead-leaves have no `--pairs` (denoising adds its
//!   noise at training time).
//! * `uv-coverage`: `DIR/uv_<index:05>.npy` (P, 2) float64 (u, v) in wavelengths, and
//!   `DIR/mask_<index:05>.npy` (H, W) float32 0/1, the gridded coverage with conjugates on the
//!   centred Fourier plane ([`lofi::operators::fourier`] conventions).
//! * `DIR/simulation.json`: the command's parameters.
//!
//! # In-memory API (for the training code)
//! ```ignore
//! pub fn sample_rng(seed: u64, index: u64) -> ChaCha8Rng;
//! pub fn object(task: SimTask, height: usize, width: usize, seed: u64, index: u64,
//!               convergence: &ConvergenceParams) -> Result<Vec<f32>>;     // row-major (H, W)
//! pub fn objects(task: SimTask, count: usize, height: usize, width: usize, seed: u64,
//!                first_index: u64, convergence: &ConvergenceParams) -> Result<Tensor>;
//!                                                                 // (N, 1, H, W) float32, CPU
//! pub fn dead_leaves_objects(count: usize, size: usize, channels: usize, seed: u64,
//!                            first_index: u64) -> Result<Tensor>;  // (N, C, S, S) float32, CPU
//! ellipses::ellipse_phantom(height, width, rng) -> Vec<f32>             // [0, 1], max 1
//! ellipses::random_ellipses(rng) -> Vec<Ellipse>;  ellipses::render(&[Ellipse], h, w, ss) -> Vec<f32>
//! convergence::convergence_map(height, width, &ConvergenceParams, rng) -> Vec<f32>
//! convergence::gaussian_field(height, width, beta, rng) -> Vec<f64>    // unit variance
//! galaxies::galaxy_field(height, width, rng) -> Vec<f32>               // [0, 1], max 1
//! galaxies::random_galaxies(h, w, count: Option<usize>, rng) -> Vec<Galaxy>;  galaxies::render(..) -> Vec<f64>
//! uv::vla_like_y(arm_length_m) -> Vec<[f64; 3]>                         // ENU metres
//! uv::read_antennas(&Path) -> Result<Vec<[f64; 3]>>
//! uv::earth_rotation_uv(&antennas, &Observation) -> Vec<[f64; 2]>       // wavelengths
//! uv::nyquist_pixel_arcsec(&uv, h, w) -> f64
//! uv::coverage_mask(&uv, h, w, pixel_arcsec) -> (Vec<f32>, usize)      // (H, W) 0/1, outside
//! dead_leaves::dead_leaves_image(height, width, channels, &DeadLeavesParams, rng) -> Vec<f32>
//!                                                     // (H, W, C) interleaved, C 1 or 3, [0, 1]
//! ```
//! `object`/`objects` give gray dead leaves with the default [`DeadLeavesParams`].
//! `rng` is any `rand::Rng` (use [`sample_rng`]).

// Until the CLI wires `lofi simulate` (and the training code calls `objects`), parts are unused.

pub mod convergence;
pub mod dead_leaves;
pub mod ellipses;
pub mod galaxies;
pub mod uv;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lofi::image_io::{self, Image};
use lofi::operators::{fourier::FourierMask, lensing, radon};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

pub use convergence::{ConvergenceParams, FieldModel};
pub use dead_leaves::DeadLeavesParams;

/// What to simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SimTask {
    /// Random-ellipse (Shepp-Logan-like) phantoms for CT, in [0, 1].
    Ellipses,
    /// Gaussian or log-normal convergence maps with a power-law spectrum (weak lensing).
    Convergence,
    /// A few Sersic-profile galaxies per image (radio astronomy), in [0, 1].
    Galaxies,
    /// Earth-rotation synthesis (u, v) coverage of an antenna array, and its mask.
    UvCoverage,
    /// Dead-leaves images: occluding textured discs with power-law radii, in [0, 1] (gray, or
    /// RGB with --channels 3): natural-like, license-free training images for denoisers.
    DeadLeaves,
}

impl SimTask {
    fn name(self) -> &'static str {
        match self {
            SimTask::Ellipses => "ellipses",
            SimTask::Convergence => "convergence",
            SimTask::Galaxies => "galaxies",
            SimTask::UvCoverage => "uv-coverage",
            SimTask::DeadLeaves => "dead-leaves",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to simulate.
    #[arg(value_enum)]
    pub task: SimTask,
    /// Number of samples.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Image size: S (square) or HxW, in pixels.
    #[arg(long, default_value = "128", value_parser = parse_size)]
    pub size: (usize, usize),
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Index of the first sample (samples are seeded by index: see --help of the module).
    #[arg(long, default_value_t = 0)]
    pub first_index: u64,
    /// Channels: 1 (gray) or 3 (RGB, written (H, W, 3); dead-leaves only).
    #[arg(long, default_value_t = 1, value_parser = parse_channels)]
    pub channels: usize,
    /// Also write observations: targets/ and observations/ sub-folders (ellipses: LDCT FBP;
    /// convergence: Kaiser-Squires (re, im); galaxies: dirty image over the default coverage).
    #[arg(long)]
    pub pairs: bool,
    /// Noise of --pairs observations, dB: LDCT relative to the sinogram RMS, radio the input SNR
    /// of the visibilities. (Lensing uses galaxy shape noise: --n-gal, --theta.)
    #[arg(long, default_value_t = 30.0, allow_hyphen_values = true)]
    pub snr_db: f64,
    /// Projection angles over [0, 180) of ellipses --pairs.
    #[arg(long, default_value_t = 180)]
    pub angles: usize,
    /// Lensing --pairs: source galaxies per square arcminute.
    #[arg(long, default_value_t = lensing::DEFAULT_N_GAL)]
    pub n_gal: f64,
    /// Lensing --pairs: field of view, degrees.
    #[arg(long, default_value_t = lensing::DEFAULT_THETA_DEG)]
    pub theta: f64,
    /// Convergence: spectral index beta of P(k) ∝ k^-beta.
    #[arg(long, default_value_t = 2.0)]
    pub beta: f64,
    /// Convergence: one-point distribution.
    #[arg(long, value_enum, default_value = "lognormal")]
    pub field: FieldModel,
    /// Convergence: standard deviation of kappa.
    #[arg(long, default_value_t = 0.02)]
    pub kappa_std: f64,
    /// Convergence: log-normal shift (the lowest kappa).
    #[arg(long, default_value_t = 0.02)]
    pub kappa_shift: f64,
    /// uv-coverage: antenna positions file, "E N [U]" metres per line (default: a VLA-like Y).
    #[arg(long)]
    pub antennas: Option<PathBuf>,
    /// uv-coverage: a real array (data/arrays, from pyvisgen's layouts): meerkat or vla (B
    /// configuration). Sets the latitude unless --latitude is given.
    #[arg(long, value_enum, conflicts_with = "antennas")]
    pub array: Option<uv::Array>,
    /// uv-coverage: frequency channels, spread evenly over --bandwidth-mhz around the frequency
    /// of --wavelength (the points of all channels are written, channel after channel).
    #[arg(long, default_value_t = 1)]
    pub frequency_channels: usize,
    /// uv-coverage: total bandwidth of the channels, MHz.
    #[arg(long, default_value_t = 0.0)]
    pub bandwidth_mhz: f64,
    /// uv-coverage: arm length of the built-in VLA-like Y array, metres.
    #[arg(long, default_value_t = 1000.0)]
    pub arm_length: f64,
    /// uv-coverage: array latitude, degrees (default: that of --array, else 34.0784, the VLA's).
    #[arg(long, allow_hyphen_values = true)]
    pub latitude: Option<f64>,
    /// uv-coverage: source declination, degrees.
    #[arg(long, default_value_t = 45.0, allow_hyphen_values = true)]
    pub declination: f64,
    /// uv-coverage: hour-angle range START:END in hours.
    #[arg(long, default_value = "-4:4", value_parser = parse_hour_angles, allow_hyphen_values = true)]
    pub hour_angle: (f64, f64),
    /// uv-coverage: integrations along the track.
    #[arg(long, default_value_t = 64)]
    pub times: usize,
    /// uv-coverage: wavelength, metres.
    #[arg(long, default_value_t = 0.21)]
    pub wavelength: f64,
    /// uv-coverage: lowest source elevation, degrees.
    #[arg(long, default_value_t = 10.0, allow_hyphen_values = true)]
    pub min_elevation: f64,
    /// uv-coverage: pixel size of the mask's image, arcseconds (default: Nyquist for the
    /// longest projected baseline, so the coverage fills the plane).
    #[arg(long)]
    pub pixel_arcsec: Option<f64>,
    /// uv-coverage: draw each sample's declination within ±15 degrees of --declination and its
    /// track centre within ±1 hour (same track length), for a variety of coverages.
    #[arg(long)]
    pub vary_pointing: bool,
}

fn parse_size(text: &str) -> std::result::Result<(usize, usize), String> {
    let parse = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("'{text}' is not S or HxW (pixels)"));
    let (h, w) = match text.split_once(['x', 'X']) {
        Some((h, w)) => (parse(h)?, parse(w)?),
        None => {
            let s = parse(text)?;
            (s, s)
        }
    };
    if h < 8 || w < 8 || h > 8192 || w > 8192 {
        return Err(format!("size {h} x {w} is outside 8 .. 8192 pixels"));
    }
    Ok((h, w))
}

fn parse_channels(text: &str) -> std::result::Result<usize, String> {
    match text.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!("'{text}' channels: use 1 (gray) or 3 (RGB)")),
    }
}

fn parse_hour_angles(text: &str) -> std::result::Result<(f64, f64), String> {
    let bad = || format!("'{text}' is not START:END (hours, e.g. -4:4)");
    let (a, b) = text.split_once(':').ok_or_else(bad)?;
    let (a, b) = (a.trim().parse::<f64>().map_err(|_| bad())?, b.trim().parse::<f64>().map_err(|_| bad())?);
    if !(a.is_finite() && b.is_finite() && a <= b && b - a <= 24.0) {
        return Err(format!("hour-angle range {a}:{b} must be increasing and at most 24 hours"));
    }
    Ok((a, b))
}

/// The random stream of sample `index` (ChaCha8: portable and reproducible).
pub fn sample_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Object `index` of an image task, row-major (H, W).
pub fn object(
    task: SimTask,
    height: usize,
    width: usize,
    seed: u64,
    index: u64,
    convergence: &ConvergenceParams,
) -> Result<Vec<f32>> {
    let mut rng = sample_rng(seed, index);
    object_from(task, height, width, convergence, &mut rng)
}

fn object_from<R: Rng + ?Sized>(
    task: SimTask,
    height: usize,
    width: usize,
    convergence: &ConvergenceParams,
    rng: &mut R,
) -> Result<Vec<f32>> {
    Ok(match task {
        SimTask::Ellipses => ellipses::ellipse_phantom(height, width, rng),
        SimTask::Convergence => {
            convergence.check()?;
            convergence::convergence_map(height, width, convergence, rng)
        }
        SimTask::Galaxies => galaxies::galaxy_field(height, width, rng),
        SimTask::UvCoverage => {
            bail!("uv-coverage produces (u, v) points, not images; see uv::earth_rotation_uv")
        }
        SimTask::DeadLeaves => {
            dead_leaves::dead_leaves_image(height, width, 1, &DeadLeavesParams::default(), &mut &mut *rng)
        }
    })
}

/// Objects `first_index .. first_index + count` as one `(N, 1, H, W)` float32 CPU tensor.
pub fn objects(
    task: SimTask,
    count: usize,
    height: usize,
    width: usize,
    seed: u64,
    first_index: u64,
    convergence: &ConvergenceParams,
) -> Result<Tensor> {
    let mut data = Vec::with_capacity(count * height * width);
    for i in 0..count as u64 {
        data.extend(object(task, height, width, seed, first_index + i, convergence)?);
    }
    Ok(Tensor::from_slice(&data).view([count as i64, 1, height as i64, width as i64]))
}

/// Dead-leaves images `first_index .. first_index + count` (default [`DeadLeavesParams`]) as one
/// `(N, C, S, S)` float32 CPU tensor, `channels` 1 or 3; sample `i` from [`sample_rng`]`(seed, i)`.
pub fn dead_leaves_objects(
    count: usize,
    size: usize,
    channels: usize,
    seed: u64,
    first_index: u64,
) -> Result<Tensor> {
    if channels != 1 && channels != 3 {
        bail!("dead leaves have 1 (gray) or 3 (RGB) channels, not {channels}");
    }
    if size == 0 {
        bail!("dead leaves need a size of at least one pixel");
    }
    let params = DeadLeavesParams::default();
    let mut data = Vec::with_capacity(count * size * size * channels);
    for i in 0..count as u64 {
        let mut rng = sample_rng(seed, first_index + i);
        data.extend(dead_leaves::dead_leaves_image(size, size, channels, &params, &mut rng));
    }
    let (n, s, c) = (count as i64, size as i64, channels as i64);
    Ok(Tensor::from_slice(&data).view([n, s, s, c]).permute([0, 3, 1, 2]).contiguous())
}

pub fn run(args: Args) -> Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if args.channels != 1 && args.task != SimTask::DeadLeaves {
        bail!(
            "--channels {} is only for dead-leaves: {} samples have one channel",
            args.channels,
            args.task.name()
        );
    }
    if args.pairs && args.task == SimTask::DeadLeaves {
        bail!("dead-leaves has no observation model (denoisers add their noise in training); drop --pairs");
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let summary = match args.task {
        SimTask::UvCoverage => {
            if args.pairs {
                bail!("uv-coverage has no (object, observation) pairs; drop --pairs");
            }
            run_uv(&args)?
        }
        _ => run_images(&args)?,
    };
    let mut meta = serde_json::json!({
        "made_by": format!("lofi simulate {}", args.task.name()),
        "lofi_version": lofi::VERSION,
        "count": args.count,
        "first_index": args.first_index,
        "seed": args.seed,
        "height": args.size.0,
        "width": args.size.1,
        "pairs": args.pairs,
    });
    if let (Some(meta), Some(extra)) = (meta.as_object_mut(), summary.as_object()) {
        meta.extend(extra.clone());
    }
    let meta_path = args.out.join("simulation.json");
    std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)? + "\n")
        .with_context(|| format!("cannot write {}", meta_path.display()))?;
    println!("wrote {} {} sample(s) to {}", args.count, args.task.name(), args.out.display());
    Ok(())
}

fn convergence_params(args: &Args) -> ConvergenceParams {
    ConvergenceParams { beta: args.beta, std: args.kappa_std, shift: args.kappa_shift, model: args.field }
}

fn observation(args: &Args) -> uv::Observation {
    uv::Observation {
        latitude_deg: args.latitude.or(args.array.map(|a| a.latitude_deg())).unwrap_or(34.0784),
        declination_deg: args.declination,
        hour_angle_start_h: args.hour_angle.0,
        hour_angle_end_h: args.hour_angle.1,
        times: args.times,
        wavelength_m: args.wavelength,
        min_elevation_deg: args.min_elevation,
    }
}

fn antennas(args: &Args) -> Result<Vec<[f64; 3]>> {
    if let Some(array) = args.array {
        return Ok(array.antennas());
    }
    match &args.antennas {
        Some(path) => uv::read_antennas(path),
        None => {
            if !(args.arm_length > 0.0 && args.arm_length.is_finite()) {
                bail!("--arm-length must be a positive number of metres");
            }
            Ok(uv::vla_like_y(args.arm_length))
        }
    }
}

fn write_plane(path: &Path, height: usize, width: usize, channels: usize, data: Vec<f32>) -> Result<()> {
    let image = Image::new(height, width, channels, data)?;
    image_io::write(path, &image, 16).with_context(|| format!("cannot write {}", path.display()))
}

/// Objects (and observations) of the image tasks.
fn run_images(args: &Args) -> Result<serde_json::Value> {
    let (h, w) = args.size;
    let params = convergence_params(args);
    let (target_dir, observation_dir) = if args.pairs {
        let (t, o) = (args.out.join("targets"), args.out.join("observations"));
        for dir in [&t, &o] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        (t, Some(o))
    } else {
        (args.out.clone(), None)
    };
    let mut summary = serde_json::json!({});
    if args.task == SimTask::Convergence {
        summary["convergence"] = serde_json::json!({
            "beta": params.beta, "std": params.std, "shift": params.shift,
            "field": format!("{:?}", params.model).to_lowercase(),
        });
    }
    let leaves = DeadLeavesParams::default();
    if args.task == SimTask::DeadLeaves {
        leaves.check()?;
        let (r_min, r_max) = leaves.radii(h, w);
        summary["dead_leaves"] = serde_json::json!({
            "channels": args.channels, "alpha": leaves.alpha, "r_min": r_min, "r_max": r_max,
            "texture": leaves.texture, "blur_probability": leaves.blur_probability,
            "layout": if args.channels == 1 { "(H, W)" } else { "(H, W, 3) RGB" },
        });
    }
    let observer = match (&observation_dir, args.task) {
        (None, _) => None,
        (Some(_), SimTask::Ellipses) => {
            if args.angles == 0 {
                bail!("--angles must be at least 1");
            }
            summary["observation"] = serde_json::json!({
                "kind": "ldct", "angles": args.angles, "snr_db": args.snr_db,
                "operator": "fbp(radon(x) + n), ramp filter, skimage geometry",
            });
            Some(Observer::Ldct(radon::Radon::uniform(h as i64, w as i64, args.angles)?))
        }
        (Some(_), SimTask::Convergence) => {
            let sigma = lensing::shape_noise_sigma(w as i64, args.theta, args.n_gal);
            summary["observation"] = serde_json::json!({
                "kind": "lensing", "theta_deg": args.theta, "n_gal": args.n_gal, "shape_noise_sigma": sigma,
                "operator": "kaiser_squires(shear(kappa) + n), channels (re, im)",
            });
            Some(Observer::Lensing { sigma })
        }
        (Some(_), SimTask::Galaxies) => {
            let points = uv::earth_rotation_uv(&antennas(args)?, &observation(args));
            let pixel =
                args.pixel_arcsec.unwrap_or_else(|| uv::nyquist_pixel_arcsec(&points, h as i64, w as i64));
            let (mask, _) = uv::coverage_mask(&points, h as i64, w as i64, pixel);
            write_plane(&args.out.join("mask.npy"), h, w, 1, mask.clone())?;
            summary["observation"] = serde_json::json!({
                "kind": "radio", "snr_db": args.snr_db, "pixel_arcsec": pixel,
                "measured_fraction": mask.iter().sum::<f32>() / mask.len() as f32,
                "operator": "A^T (A x + n), A = M F (centred orthonormal FFT), mask in mask.npy",
            });
            let mask = Tensor::from_slice(&mask).view([h as i64, w as i64]);
            Some(Observer::Radio(FourierMask::from_centred(&mask)?))
        }
        (Some(_), SimTask::UvCoverage) => unreachable!("handled by run_uv"),
        (Some(_), SimTask::DeadLeaves) => unreachable!("refused by run"),
    };
    for i in 0..args.count as u64 {
        let index = args.first_index + i;
        let name = format!("{}_{index:05}.npy", args.task.name());
        let mut rng = sample_rng(args.seed, index);
        let target = match args.task {
            SimTask::DeadLeaves => dead_leaves::dead_leaves_image(h, w, args.channels, &leaves, &mut rng),
            task => object_from(task, h, w, &params, &mut rng)?,
        };
        if let (Some(observer), Some(dir)) = (&observer, &observation_dir) {
            // The noise continues the sample's own stream, after the object's draws.
            let (channels, observed) = observer.observe(&target, h, w, args.snr_db, &mut rng)?;
            write_plane(&dir.join(&name), h, w, channels, observed)?;
        }
        write_plane(&target_dir.join(&name), h, w, args.channels, target)?;
    }
    Ok(summary)
}

/// The forward models of `--pairs`, set up once per run.
enum Observer {
    Ldct(radon::Radon),
    Lensing { sigma: f64 },
    Radio(FourierMask),
}

impl Observer {
    /// (channels, row-major (H, W, C) values) of the observation of one object.
    fn observe(
        &self,
        target: &[f32],
        h: usize,
        w: usize,
        snr_db: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<(usize, Vec<f32>)> {
        let x = Tensor::from_slice(target).view([1, 1, h as i64, w as i64]).to_kind(Kind::Float);
        let y = tch::no_grad(|| -> Result<Tensor> {
            Ok(match self {
                Observer::Ldct(radon) => {
                    let sinogram = radon.forward(&x)?;
                    radon.fbp(&radon::add_snr_noise(&sinogram, snr_db, rng))?
                }
                Observer::Lensing { sigma } => {
                    let gamma = lensing::add_shape_noise(&lensing::shear(&x)?, *sigma, rng);
                    lensing::kaiser_squires(&gamma)?
                }
                Observer::Radio(mask) => {
                    let visibilities = mask.add_noise(&mask.forward(&x)?, snr_db, rng)?;
                    mask.adjoint(&visibilities)?
                }
            })
        })?;
        let channels = y.size()[1] as usize;
        let hwc =
            y.squeeze_dim(0).permute([1, 2, 0]).to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
        Ok((channels, Vec::<f32>::try_from(hwc.reshape([-1]))?))
    }
}

/// uv points and masks.
fn run_uv(args: &Args) -> Result<serde_json::Value> {
    let (h, w) = args.size;
    if args.times == 0 || !(args.wavelength > 0.0 && args.wavelength.is_finite()) {
        bail!("--times must be at least 1 and --wavelength positive");
    }
    let antennas = antennas(args)?;
    let base = observation(args);
    let mut pixel_scales = Vec::new();
    for i in 0..args.count as u64 {
        let index = args.first_index + i;
        let mut obs = base;
        if args.vary_pointing {
            let mut rng = sample_rng(args.seed, index);
            obs.declination_deg = (base.declination_deg + rng.gen_range(-15.0..15.0)).clamp(-90.0, 90.0);
            let shift = rng.gen_range(-1.0..1.0);
            obs.hour_angle_start_h += shift;
            obs.hour_angle_end_h += shift;
        }
        if args.frequency_channels == 0 || !(args.bandwidth_mhz >= 0.0 && args.bandwidth_mhz.is_finite()) {
            bail!("--frequency-channels must be at least 1 and --bandwidth-mhz >= 0");
        }
        let wavelengths =
            uv::channel_wavelengths(obs.wavelength_m, args.frequency_channels, args.bandwidth_mhz * 1e6);
        let points = uv::multi_channel_uv(&antennas, &obs, &wavelengths);
        if points.is_empty() {
            bail!(
                "sample {index}: the source (declination {:.1}) never rises above {} degrees during the track",
                obs.declination_deg,
                obs.min_elevation_deg
            );
        }
        let pixel =
            args.pixel_arcsec.unwrap_or_else(|| uv::nyquist_pixel_arcsec(&points, h as i64, w as i64));
        let (mask, outside) = uv::coverage_mask(&points, h as i64, w as i64, pixel);
        if outside > 0 {
            log::warn!("sample {index}: {outside} of {} (u, v) points (with conjugates) fall outside the plane at {pixel} arcsec per pixel", 2 * points.len());
        }
        lofi::visibility_io::write_uv_points(&args.out.join(format!("uv_{index:05}.npy")), &points)?;
        write_plane(&args.out.join(format!("mask_{index:05}.npy")), h, w, 1, mask)?;
        pixel_scales.push(pixel);
    }
    Ok(serde_json::json!({
        "uv": {
            "antennas": antennas.len(),
            "array": args.array.map(|a| a.name().to_string()).or_else(|| args.antennas.as_ref().map(|p| p.display().to_string())).unwrap_or_else(|| format!("vla-like-y, arm {} m", args.arm_length)),
            "frequency_channels": args.frequency_channels, "bandwidth_mhz": args.bandwidth_mhz,
            "latitude_deg": base.latitude_deg, "declination_deg": base.declination_deg,
            "hour_angle_h": [base.hour_angle_start_h, base.hour_angle_end_h], "times": base.times,
            "wavelength_m": base.wavelength_m, "min_elevation_deg": base.min_elevation_deg,
            "vary_pointing": args.vary_pointing, "pixel_arcsec": pixel_scales,
            "units": "uv_*.npy: (u, v) in wavelengths; mask_*.npy: centred Fourier plane, conjugates included",
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(cmd: &str) -> Args {
        Cli::try_parse_from(std::iter::once("simulate").chain(cmd.split_whitespace())).unwrap().args
    }

    fn read(path: &Path) -> (Vec<u64>, Vec<f32>) {
        let bytes = std::fs::read(path).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        let shape = npy.shape().to_vec();
        (shape, npy.into_vec::<f32>().unwrap())
    }

    #[test]
    fn objects_are_indexed_not_ordered() {
        let p = ConvergenceParams::default();
        let batch = objects(SimTask::Ellipses, 3, 32, 32, 7, 10, &p).unwrap();
        assert_eq!(batch.size(), vec![3, 1, 32, 32]);
        let third = object(SimTask::Ellipses, 32, 32, 7, 12, &p).unwrap();
        assert_eq!(Vec::<f32>::try_from(batch.get(2).reshape([-1])).unwrap(), third);
        assert!(object(SimTask::UvCoverage, 32, 32, 0, 0, &p).is_err());
    }

    #[test]
    fn writes_pairs_for_every_image_task() {
        let dir = tempfile::tempdir().unwrap();
        for (task, channels) in [("ellipses", 1), ("convergence", 2), ("galaxies", 1)] {
            let out = dir.path().join(task);
            run(parse(&format!(
                "{task} --count 2 --out {} --size 24x20 --seed 3 --pairs --angles 30",
                out.display()
            )))
            .unwrap();
            for i in 0..2 {
                let name = format!("{task}_{i:05}.npy");
                let (shape, target) = read(&out.join("targets").join(&name));
                assert_eq!(shape, vec![24, 20]);
                assert!(target.iter().all(|v| v.is_finite()));
                let (shape, observed) = read(&out.join("observations").join(&name));
                let expected: Vec<u64> = if channels == 1 { vec![24, 20] } else { vec![24, 20, 2] };
                assert_eq!(shape, expected, "{task}");
                assert!(observed.iter().all(|v| v.is_finite()));
            }
            assert!(out.join("simulation.json").is_file());
        }
        assert!(dir.path().join("galaxies/mask.npy").is_file());
        // Reproducible: the same command writes the same bytes.
        let again = dir.path().join("again");
        run(parse(&format!("galaxies --count 2 --out {} --size 24x20 --seed 3 --pairs", again.display())))
            .unwrap();
        for sub in ["targets", "observations"] {
            let a = std::fs::read(dir.path().join("galaxies").join(sub).join("galaxies_00001.npy")).unwrap();
            let b = std::fs::read(again.join(sub).join("galaxies_00001.npy")).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn writes_uv_coverage() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("uv");
        run(parse(&format!(
            "uv-coverage --count 2 --out {} --size 32 --times 8 --hour-angle -2:3 --declination -10 --vary-pointing",
            out.display()
        )))
        .unwrap();
        let uv = lofi::visibility_io::read_uv_points(&out.join("uv_00001.npy")).unwrap();
        assert!(!uv.is_empty());
        let (shape, mask) = read(&out.join("mask_00000.npy"));
        assert_eq!(shape, vec![32, 32]);
        assert!(mask.iter().all(|&v| v == 0.0 || v == 1.0) && mask.contains(&1.0));
        assert!(run(parse(&format!("uv-coverage --out {} --pairs", out.display()))).is_err());
    }

    #[test]
    fn writes_dead_leaves_gray_and_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rgb");
        run(parse(&format!("dead-leaves --count 2 --size 64 --channels 3 --out {}", out.display()))).unwrap();
        for i in 0..2 {
            let (shape, x) = read(&out.join(format!("dead-leaves_{i:05}.npy")));
            assert_eq!(shape, vec![64, 64, 3]);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        let meta = std::fs::read_to_string(out.join("simulation.json")).unwrap();
        assert!(meta.contains("\"dead_leaves\"") && meta.contains("\"r_max\": 32.0"), "{meta}");
        // Gray by default, (H, W); sample i is the i-th image of the in-memory API.
        let gray = dir.path().join("gray");
        run(parse(&format!("dead-leaves --count 2 --size 24x20 --seed 4 --out {}", gray.display()))).unwrap();
        let (shape, x) = read(&gray.join("dead-leaves_00001.npy"));
        assert_eq!(shape, vec![24, 20]);
        assert_eq!(x, object(SimTask::DeadLeaves, 24, 20, 4, 1, &ConvergenceParams::default()).unwrap());
        // Colour is dead-leaves only; dead leaves have no observations.
        for cmd in ["ellipses --channels 3", "dead-leaves --channels 2", "dead-leaves --pairs"] {
            let args = format!("{cmd} --out {}", dir.path().join("refused").display());
            let refused = Cli::try_parse_from(std::iter::once("simulate").chain(args.split_whitespace()))
                .map(|c| c.args);
            assert!(refused.map_err(|e| anyhow::anyhow!("{e}")).and_then(run).is_err(), "{cmd}");
        }
        assert!(!dir.path().join("refused").exists());
    }

    #[test]
    fn dead_leaves_objects_are_indexed() {
        let batch = dead_leaves_objects(3, 32, 3, 7, 10).unwrap();
        assert_eq!(batch.size(), vec![3, 3, 32, 32]);
        let third =
            dead_leaves::dead_leaves_image(32, 32, 3, &DeadLeavesParams::default(), &mut sample_rng(7, 12));
        // (C, H, W) of the tensor against (H, W, C) of the image.
        let chw = Vec::<f32>::try_from(batch.get(2).permute([1, 2, 0]).contiguous().reshape([-1])).unwrap();
        assert_eq!(chw, third);
        assert_eq!(dead_leaves_objects(2, 16, 1, 0, 0).unwrap().size(), vec![2, 1, 16, 16]);
        assert!(dead_leaves_objects(1, 16, 2, 0, 0).is_err());
    }

    #[test]
    fn parses_sizes_and_hour_angles() {
        assert_eq!(parse_size("64").unwrap(), (64, 64));
        assert_eq!(parse_size("48x64").unwrap(), (48, 64));
        assert!(parse_size("4").is_err() && parse_size("ax3").is_err());
        assert_eq!(parse_hour_angles("-4:4").unwrap(), (-4.0, 4.0));
        assert!(parse_hour_angles("4:-4").is_err());
    }
}
