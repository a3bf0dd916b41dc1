use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use lofi::device::{DeviceSpec, Precision};
use lofi::engine::{self, format_bytes, parse_bytes, ImageView, OutputView, Region, RunOptions};
use lofi::image_io::Image;
use lofi::model::LoadOptions;

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
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Working-memory budget (device memory on CUDA), e.g. 512MiB.
    #[arg(long, default_value = "512MiB")]
    memory_budget: String,
    /// Network precision: f32; bf16 or f16 on CUDA; bf16 on CPUs with avx512_bf16 or amx_bf16.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// CPU threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Noise standard deviation of the input, for noise-level-aware models (`lofi info` says
    /// which): a number in image units (0.1) or a fraction (25/255). Fixed-level models refuse it.
    #[arg(long, value_parser = super::parse_sigma, allow_hyphen_values = true)]
    sigma: Option<f64>,
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

pub fn run(args: Args) -> Result<()> {
    let device: DeviceSpec = args.device.parse()?;
    let precision: Precision = args.precision.parse()?;
    let budget = parse_bytes(&args.memory_budget)?;
    if args.bits != 8 && args.bits != 16 {
        bail!("--bits must be 8 or 16");
    }
    let window = args.window.as_deref().map(lofi::formats::dicom::Window::parse).transpose()?;
    let lofi::formats::InputImage { image: input, fits_header, window } =
        lofi::formats::read_input(&args.input, window)?;
    if args.output_hu && window.is_none() {
        bail!("--output-hu applies to DICOM inputs");
    }
    let model = lofi::Model::load(&args.model, LoadOptions { device, precision })?;
    if let (Some(range), None) = (&model.config().noise_level, args.sigma) {
        bail!(
            "{} is noise-level aware: give the input's noise level with --sigma (e.g. --sigma 25/255; trained for [{:.4}, {:.4}])",
            args.model.display(),
            range.sigma_min,
            range.sigma_max
        );
    }
    let c_out = model.config().c_out as usize;
    let region = args.region.unwrap_or_else(|| Region::whole(input.height, input.width));
    let width = args.width.unwrap_or(input.width);
    let height = args.height.unwrap_or(input.height);
    if width == 0 || height == 0 {
        bail!("--width and --height must be at least 1");
    }
    let values = width
        .checked_mul(height)
        .and_then(|v| v.checked_mul(c_out))
        .filter(|&v| v <= 1 << 34)
        .with_context(|| format!("an output of {width} x {height} is absurdly large"))?;

    let mut output = Image::zeros(height, width, c_out);
    debug_assert_eq!(output.data.len(), values);
    let started = Instant::now();
    let report = engine::reconstruct_region(
        &model,
        ImageView::from_image(&input),
        region,
        width,
        height,
        None,
        OutputView { data: &mut output.data, row_stride: width * c_out },
        RunOptions { memory_budget: budget, threads: args.threads, progress: None, noise_level: args.sigma },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    if let (true, Some(w)) = (args.output_hu, window) {
        output.data.iter_mut().for_each(|v| *v = w.from_unit(*v) as f32);
    }
    // The output grid samples the input at x0 + j * step: its WCS moves and scales accordingly.
    let step = |lo: f64, hi: f64, n: usize| if n > 1 { (hi - lo) / (n as f64 - 1.0) } else { 1.0 };
    let fits_header = fits_header.map(|mut h| {
        let (sx, sy) = (step(region.x0, region.x1, width), step(region.y0, region.y1, height));
        let x0 = if width > 1 { region.x0 } else { 0.5 * (region.x0 + region.x1) };
        let y0 = if height > 1 { region.y0 } else { 0.5 * (region.y0 + region.y1) };
        h.resample(x0, sx, y0, sy);
        h
    });
    let mut history = lofi::formats::history_lines("reconstruct", &args.model, model.digest());
    if let Some(w) = window {
        history.push(format!("DICOM window center {} width {} (HU) mapped to [0, 1]{}", w.center, w.width, if args.output_hu { ", output in HU" } else { "" }));
    }
    lofi::formats::write_output(&args.output, &output, args.bits, fits_header.as_ref(), &history)?;
    let measured = report
        .measured_peak_bytes
        .map(|b| format!(", measured peak {}", format_bytes(b as usize)))
        .unwrap_or_default();
    eprintln!(
        "lofi: {} x {} ({} channel{}) from a {} x {} input on {} in {:.2} s: {} batch{} of {} pixels, \
         working memory <= {}{measured}; wrote {}",
        width,
        height,
        c_out,
        if c_out == 1 { "" } else { "s" },
        input.width,
        input.height,
        model.device_spec(),
        seconds,
        report.batches,
        if report.batches == 1 { "" } else { "es" },
        report.plan.batch_pixels,
        format_bytes(report.plan.estimated_bytes()),
        args.output.display()
    );
    Ok(())
}
