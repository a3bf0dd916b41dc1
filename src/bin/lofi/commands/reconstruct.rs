use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lofi::device::{DeviceSpec, Precision};
use lofi::engine::{
    self, format_bytes, parse_bytes, GridJob, ImageView, InputSource, OutputView, Progress, Refinement,
    Region, RunOptions, SelfEnsemble,
};
use lofi::image_io::Image;
use lofi::model::LoadOptions;
use lofi::npy_bands::{NpyInput, NpyOutput};

#[derive(clap::Args)]
pub struct Args {
    /// The .lofi model.
    #[arg(long)]
    model: PathBuf,
    /// The observation: .npy float32 (H, W) or (H, W, C), PNG or TIFF (8/16-bit, scaled to [0, 1]),
    /// FITS (physical values) or a DICOM CT slice (through --window).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the reconstruction (.npy, .png, .tif or .fits; PNG/TIFF are clipped to
    /// [0, 1]; FITS carries a FITS input's header, WCS adjusted to the output grid).
    #[arg(long)]
    output: PathBuf,
    /// Output samples across the region (default: the input's width).
    #[arg(long)]
    width: Option<usize>,
    /// Output samples down the region (default: the input's height).
    #[arg(long)]
    height: Option<usize>,
    /// X0,Y0,X1,Y1 in input pixel coordinates (pixel centres at integers; x = column).
    /// Default: the whole image, 0,0,W-1,H-1.
    #[arg(long, value_parser = parse_region, allow_hyphen_values = true)]
    region: Option<Region>,
    /// cpu, cuda or cuda:N; a list (cuda:0,cuda:1) runs one model replica per device, output
    /// bands dealt out to them.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Working-memory budget (device memory on CUDA), e.g. 512MiB.
    #[arg(long, default_value = "512MiB")]
    memory_budget: String,
    /// Network precision: f32; bf16 or f16 on CUDA; bf16 on CPUs with avx512_bf16 or amx_bf16. On
    /// CUDA, f32 products use TF32 tensor cores unless LOFI_CUDA_TF32=0.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// CPU threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// --device cpu: workers sharing the threads, each on its own bands of the output (0: one
    /// per thread when each gets four batches or more; 1: one worker on all threads). Faster than
    /// one worker, whose threads wait for one another at the end of every operation. At most 256.
    #[arg(long, default_value_t = 0)]
    cpu_workers: usize,
    /// Noise standard deviation of the input, for noise-level-aware models (`lofi info` says
    /// which): a number in image units (0.1) or a fraction (25/255). Fixed-level models refuse it.
    /// An RGB input and a gray denoiser: each channel of CBM3D's opponent colour space is
    /// denoised, told its share of sigma (the whole image on its own grid, three passes' work).
    #[arg(long, value_parser = super::parse_sigma, allow_hyphen_values = true)]
    sigma: Option<f64>,
    /// Geometric self-ensemble: each value is the mean of N network passes with the sampling
    /// geometry turned and mirrored (1: off; 2: half turn; 4: quarter turns; 8: quarter turns
    /// and mirrors). N times the time, the same memory; +0.1 dB on Set12 denoising at 8.
    #[arg(long, default_value_t = 1, value_parser = parse_self_ensemble)]
    self_ensemble: u64,
    /// Refined denoising, for noise-level-aware denoisers on the whole image at its own grid: a
    /// second pass at half resolution (the 2 x 2 means on two grids, at half the noise) replaces
    /// the result's low frequencies, then a clean-up pass at a tenth of the noise level. About 2.5
    /// times the time of one pass; on Set12 +0.29 dB at sigma 50, +0.12 at 25, +0.04 at 15,
    /// above BM3D at all three with the quality model (README).
    #[arg(long)]
    refine: bool,
    /// --refine: the Gaussian (standard deviation in pixels) through which the half-resolution
    /// estimate replaces the low frequencies; 0 leaves out the coarse scale.
    #[arg(long, requires = "refine", default_value_t = engine::refine::DEFAULT_COARSE_BLUR)]
    refine_blur: f64,
    /// --refine: the clean-up pass's noise level as a fraction of --sigma; 0 leaves the pass out.
    #[arg(long, requires = "refine", default_value_t = engine::refine::DEFAULT_CLEANUP)]
    refine_cleanup: f64,
    /// Bits per sample of PNG/TIFF outputs: 8 or 16.
    #[arg(long, default_value_t = 8)]
    bits: u8,
    /// DICOM inputs: the window CENTER,WIDTH in HU mapped onto the model's [0, 1] (e.g. 40,400;
    /// default: the file's Window Center/Width). See README, "FITS and DICOM".
    #[arg(long, allow_hyphen_values = true)]
    window: Option<String>,
    /// DICOM inputs: write the output in HU (the window's mapping inverted) instead of [0, 1].
    #[arg(long)]
    output_hu: bool,
    /// Print the run report as JSON on stdout (pixels, batches, budget, estimated and measured
    /// peak memory, seconds; one line per MPI rank).
    #[arg(long)]
    json: bool,
    /// Output bytes held in memory at once when writing .npy in row bands.
    #[arg(long, default_value = "32MiB")]
    band_size: String,
}

/// This process's place among the processes an MPI launcher started (rank, size), read from the
/// launcher's environment: MPICH/Hydra (`PMI_RANK`, `PMI_SIZE`) or Open MPI
/// (`OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`). No MPI library is linked: the ranks share
/// nothing but the output file, each writing its own rows.
fn launcher_rank() -> Result<(usize, usize)> {
    for (rank, size) in [("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")] {
        if let (Ok(r), Ok(n)) = (std::env::var(rank), std::env::var(size)) {
            let (r, n): (usize, usize) = (
                r.trim().parse().with_context(|| format!("{rank}={r} is not a rank"))?,
                n.trim().parse().with_context(|| format!("{size}={n} is not a process count"))?,
            );
            if n == 0 || r >= n {
                bail!("{rank}={r} is not below {size}={n}");
            }
            return Ok((r, n));
        }
    }
    Ok((0, 1))
}

/// Resident set of this process from /proc/self/status (`VmRSS:` or `VmHWM:`), in bytes.
fn status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    Some(line[key.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok()? * 1024)
}

fn is_npy(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

fn parse_region(text: &str) -> Result<Region, String> {
    let v: Vec<f64> = text
        .split(',')
        .map(|s| s.trim().parse::<f64>().map_err(|_| format!("'{s}' is not a number")))
        .collect::<Result<_, _>>()?;
    match v.as_slice() {
        [x0, y0, x1, y1] => Ok(Region { x0: *x0, y0: *y0, x1: *x1, y1: *y1 }),
        _ => Err("expected four numbers X0,Y0,X1,Y1".into()),
    }
}

/// The most `--cpu-workers` accepted (each is a thread with its own batch buffers).
const MAX_CPU_WORKERS: usize = 256;

pub fn run(args: Args) -> Result<()> {
    let devices: Vec<DeviceSpec> = lofi::device::parse_device_list(&args.device)?;
    let precision: Precision = args.precision.parse()?;
    let budget = parse_bytes(&args.memory_budget)?;
    let band_bytes = parse_bytes(&args.band_size)?;
    if args.bits != 8 && args.bits != 16 {
        bail!("--bits must be 8 or 16");
    }
    let window = args.window.as_deref().map(lofi::formats::dicom::Window::parse).transpose()?;
    let (rank, ranks) = launcher_rank()?;
    let whole_image_only = |what: &str| -> Result<()> {
        if args.region.is_some() || args.width.is_some() || args.height.is_some() {
            bail!(
                "{what} denoises the whole image on its own grid: leave out --region, --width and --height"
            );
        }
        if ranks > 1 {
            bail!("{what} runs in one process (its passes need the whole image): not under MPI");
        }
        Ok(())
    };
    let mut refinement = if args.refine {
        whole_image_only("--refine")?;
        let refinement = Refinement { coarse_blur: args.refine_blur, cleanup: args.refine_cleanup };
        refinement.check()?;
        Some(refinement)
    } else {
        None
    };
    if ranks > 1 && !is_npy(&args.output) {
        bail!("under MPI ({ranks} processes) the output must be .npy: each rank writes its rows into it");
    }
    let models = devices
        .iter()
        .map(|&device| lofi::Model::load(&args.model, LoadOptions::new(device, precision)))
        .collect::<Result<Vec<_>, _>>()?;
    let replicas: Vec<&lofi::Model> = models.iter().collect();
    let model = replicas[0];
    if let (Some(range), None) = (&model.config().noise_level, args.sigma) {
        bail!(
            "{} is noise-level aware: give the input's noise level with --sigma (e.g. --sigma 25/255; trained for [{:.4}, {:.4}])",
            args.model.display(),
            range.sigma_min,
            range.sigma_max
        );
    }
    // The baseline: libtorch and the model loaded, no input yet. The peak is measured from here
    // (writing 5 to clear_refs resets the high-water mark to the current resident set).
    let baseline = status_bytes("VmRSS:");
    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();

    // A .npy input stays on disk (read in pieces as batches need them); other formats (PNG, TIFF, FITS, DICOM)
    // are decoded whole, keeping a FITS input's header and a DICOM input's window.
    let (mapped, decoded, view);
    let mut whole: Option<ImageView> = None;
    let (mut fits_header, mut window) = (None, window);
    // --refine needs the whole image in memory (its passes feed one another).
    // An RGB input and a gray noise-level-aware denoiser: the opponent colour path, which needs
    // the whole image too (engine::colour).
    let gray_denoiser = {
        let config = model.config();
        config.c_in == 1 && config.c_out == 1 && config.noise_level.is_some()
    };
    let mut colour = false;
    let mapped_npy = if is_npy(&args.input) && refinement.is_none() {
        let npy = NpyInput::open(&args.input)?;
        colour = gray_denoiser && npy.channels() == 3;
        (!colour).then_some(npy)
    } else {
        None
    };
    let source: &(dyn InputSource + Sync) = if let Some(npy) = mapped_npy {
        mapped = npy;
        &mapped
    } else {
        let input = lofi::formats::read_input(&args.input, window)?;
        (fits_header, window) = (input.fits_header, input.window);
        decoded = input.image;
        view = ImageView::from_image(&decoded);
        whole = Some(view);
        colour = gray_denoiser && decoded.channels == 3;
        &view
    };
    if colour {
        whole_image_only("an RGB image through a gray denoiser (the opponent colour path)")?;
        // Without --refine, one pass per channel.
        refinement = Some(refinement.unwrap_or(Refinement { coarse_blur: 0.0, cleanup: 0.0 }));
    }
    if args.output_hu && window.is_none() {
        bail!("--output-hu applies to DICOM inputs");
    }
    // DICOM with --output-hu: the window's mapping inverted on the way out.
    let to_output = |values: &[f32]| -> Vec<f32> {
        match (args.output_hu, window) {
            (true, Some(w)) => values.iter().map(|&v| w.from_unit(v) as f32).collect(),
            _ => values.to_vec(),
        }
    };
    let (in_h, in_w) = (source.height(), source.width());
    let c_out = if colour { 3 } else { model.config().c_out as usize };
    let region = args.region.unwrap_or_else(|| Region::whole(in_h, in_w));
    let width = args.width.unwrap_or(in_w);
    let height = args.height.unwrap_or(in_h);
    if width == 0 || height == 0 {
        bail!("--width and --height must be at least 1");
    }
    width
        .checked_mul(height)
        .and_then(|v| v.checked_mul(c_out))
        .filter(|&v| v <= 1 << 36)
        .with_context(|| format!("an output of {width} x {height} is absurdly large"))?;
    // This rank's share of the output rows.
    let rows = height * rank / ranks..height * (rank + 1) / ranks;
    if rows.is_empty() {
        bail!("{ranks} processes for an output of {height} rows: rank {rank} has no rows");
    }

    // One CPU model runs as several single-threaded workers where that is faster (the model is
    // shared: workers only read its weights).
    let workers = match (devices.as_slice(), args.cpu_workers) {
        ([DeviceSpec::Cpu], 0) => {
            engine::cpu_workers_within(model, args.threads, rows.len() * width, budget, in_h, in_w)
        }
        // Each worker is a thread: a count no machine has would only exhaust the process.
        ([DeviceSpec::Cpu], n) if n > MAX_CPU_WORKERS => {
            bail!("--cpu-workers {n} is more than {MAX_CPU_WORKERS}")
        }
        ([DeviceSpec::Cpu], n) => n,
        (_, 0 | 1) => 1,
        _ => bail!("--cpu-workers applies to --device cpu"),
    };
    let (replicas, threads, budget_each) = if workers > 1 {
        let (threads, budget) = engine::worker_share(args.threads, budget, workers);
        (vec![model; workers], threads, budget)
    } else {
        (replicas, args.threads, budget)
    };

    let started = Instant::now();
    let pixels = (rows.len() * width) as u64;
    let bar = ProgressBar::with_draw_target(Some(pixels), ProgressDrawTarget::hidden());
    let style = |template: &str| {
        ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ")
    };
    let pixel_style =
        style("{elapsed_precise} [{bar:30}] {percent:>3}% {human_pos}/{human_len} px, {per_sec}, ETA {eta}");
    // A Fourier filter too large for half the budget runs in bands before the first pixel
    // (minutes on gigapixel inputs): the bar counts them, then the pixels.
    let filter_style =
        style("{elapsed_precise} [{bar:30}] {percent:>3}% Fourier filter in bands: {pos}/{len}, ETA {eta}");
    bar.set_style(pixel_style.clone());
    let show_bar = rank == 0 && std::io::stderr().is_terminal();
    let (mut shown, mut filtering) = (false, false);
    let mut progress = |p: Progress| {
        if show_bar && !shown && started.elapsed() > Duration::from_secs(1) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
        match p.filter {
            Some([done, all]) => {
                if !filtering {
                    bar.set_style(filter_style.clone());
                    bar.set_length(all as u64);
                    filtering = true;
                }
                bar.set_position(done as u64);
            }
            None => {
                if filtering {
                    bar.set_style(pixel_style.clone());
                    bar.set_length(pixels);
                    bar.reset_eta();
                    filtering = false;
                }
                // --refine's passes count together (more than the output's pixels).
                if bar.length() != Some(p.total as u64) {
                    bar.set_length(p.total as u64);
                }
                bar.set_position(p.done as u64);
            }
        }
        true
    };
    let options = RunOptions {
        memory_budget: budget_each,
        threads,
        progress: Some(&mut progress),
        noise_level: args.sigma,
        self_ensemble: SelfEnsemble::from_passes(args.self_ensemble)?,
    };
    let job = GridJob { region, grid_width: width, grid_height: height };
    let report = if is_npy(&args.output) && refinement.is_none() {
        // Created at the first band, once the input is checked and the plan made: a refused call
        // leaves no file behind. A single process removes it again if a later band fails (ranks
        // leave it: the others are writing to it).
        let mut output: Option<NpyOutput> = None;
        let result = engine::stream::reconstruct_rows_on_devices(
            &replicas,
            source,
            job,
            rows.clone(),
            band_bytes,
            options,
            &mut |row0, values| {
                if output.is_none() {
                    output = Some(NpyOutput::create(&args.output, height, width, c_out)?);
                }
                let out = output.as_ref().expect("created above");
                if args.output_hu {
                    out.write_rows(row0, &to_output(values))
                } else {
                    out.write_rows(row0, values)
                }
            },
        );
        match (result, output) {
            (Ok(report), Some(output)) => {
                output.finish()?;
                report
            }
            (Ok(_), None) => bail!("no rows were written to {}", args.output.display()),
            (Err(e), output) => {
                if output.is_some() && ranks == 1 {
                    let _ = std::fs::remove_file(&args.output);
                }
                return Err(e.into());
            }
        }
    } else {
        let mut image = Image::zeros(height, width, c_out);
        let row_values = width * c_out;
        let report = if let Some(refinement) = refinement {
            let out = OutputView { data: &mut image.data, row_stride: row_values };
            let image = whole.context("--refine and the colour path read the whole input")?;
            engine::denoise_refined(&replicas, image, out, options, refinement)?
        } else {
            engine::stream::reconstruct_rows_on_devices(
                &replicas,
                source,
                job,
                rows.clone(),
                usize::MAX,
                options,
                &mut |row0, values| {
                    image.data[row0 * row_values..row0 * row_values + values.len()].copy_from_slice(values);
                    Ok(())
                },
            )?
        };
        if args.output_hu {
            image.data = to_output(&image.data);
        }
        // The output grid samples the input at x0 + j * step: its WCS moves and scales accordingly.
        let step = |lo: f64, hi: f64, n: usize| if n > 1 { (hi - lo) / (n as f64 - 1.0) } else { 1.0 };
        let fits_header = fits_header.take().map(|mut h| {
            let (sx, sy) = (step(region.x0, region.x1, width), step(region.y0, region.y1, height));
            let x0 = if width > 1 { region.x0 } else { 0.5 * (region.x0 + region.x1) };
            let y0 = if height > 1 { region.y0 } else { 0.5 * (region.y0 + region.y1) };
            h.resample(x0, sx, y0, sy);
            h
        });
        let mut history = lofi::formats::history_lines("reconstruct", &args.model, model.digest());
        if let Some(w) = window {
            history.push(format!(
                "DICOM window center {} width {} (HU) mapped to [0, 1]{}",
                w.center,
                w.width,
                if args.output_hu { ", output in HU" } else { "" }
            ));
        }
        lofi::formats::write_output(&args.output, &image, args.bits, fits_header.as_ref(), &history)?;
        report
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let peak = if peak_reset { status_bytes("VmHWM:") } else { None };
    let measured = report
        .measured_peak_bytes
        .map(|b| format!(", measured peak {}", format_bytes(b as usize)))
        .unwrap_or_default();
    let rss = match (baseline, peak) {
        (Some(b), Some(p)) => format!(
            ", peak RSS {} above the {} baseline",
            format_bytes(p.saturating_sub(b) as usize),
            format_bytes(b as usize)
        ),
        _ => String::new(),
    };
    let share = if ranks > 1 {
        format!("rank {rank} of {ranks}: rows {}..{} of ", rows.start, rows.end)
    } else {
        String::new()
    };
    eprintln!(
        "lofi: {share}{} x {} ({} channel{}) from a {} x {} input on {} in {:.2} s: {} batch{} of {} pixels, \
         working memory <= {}{}{measured}{rss}; wrote {}",
        width,
        height,
        c_out,
        if c_out == 1 { "" } else { "s" },
        in_w,
        in_h,
        devices.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",")
            + &if workers > 1 { format!(" ({workers} workers)") } else { String::new() },
        seconds,
        report.batches,
        if report.batches == 1 { "" } else { "es" },
        report.plan.batch_pixels,
        format_bytes(report.plan.estimated_bytes()),
        if workers > 1 { " per worker" } else { "" },
        args.output.display()
    );
    if args.json {
        let json = serde_json::json!({
            "pixels": report.pixels,
            "batches": report.batches,
            "batch_pixels": report.plan.batch_pixels,
            "budget_bytes": budget,
            "estimated_peak_bytes": report.plan.estimated_bytes() * workers,
            "measured_peak_device_bytes": report.measured_peak_bytes,
            "baseline_rss_bytes": baseline,
            "peak_rss_bytes": peak,
            "peak_rss_above_baseline_bytes": baseline.zip(peak).map(|(b, p)| p.saturating_sub(b)),
            "seconds": seconds,
            "self_ensemble_passes": args.self_ensemble.max(1),
            "colour_space": colour.then_some("opponent"),
            "refinement": refinement.filter(|_| args.refine).map(|r| serde_json::json!({"coarse_blur": r.coarse_blur, "cleanup": r.cleanup})),
            "cpu_workers": workers,
            "rank": rank,
            "ranks": ranks,
            "rows": [rows.start, rows.end],
            "input": [in_h, in_w],
            "output": [height, width, c_out],
        });
        println!("{json}");
    }
    Ok(())
}

/// `--self-ensemble`: checked when parsed, so that a wrong count is a usage error.
fn parse_self_ensemble(text: &str) -> Result<u64, String> {
    let passes: u64 = text.parse().map_err(|_| format!("\"{text}\" is not a number of passes"))?;
    SelfEnsemble::from_passes(passes).map_err(|e| e.to_string())?;
    Ok(passes)
}
