//! `lofi bench`: throughput and peak working memory of the engine against output size and budget,
//! and tiles against the whole image. Prints figures; asserts nothing about speed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use lofi::config::LofiConfig;
use lofi::device::{DeviceSpec, Precision};
use lofi::engine::{self, format_bytes, parse_bytes, ImageView, OutputView, Region, RunOptions, Window};
use lofi::image_io::Image;
use lofi::kernels::LofiNet;
use lofi::model::LoadOptions;
use lofi::Model;

#[derive(clap::Args)]
pub struct Args {
    /// Model to benchmark (default: a randomly initialised model of the paper's size,
    /// MultiMLP 9 x 9, 3 hidden layers of 370, Fourier filter, gray).
    #[arg(long)]
    model: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Network precision: f32; bf16 or f16 on CUDA; bf16 on CPUs with avx512_bf16 or amx_bf16. On
    /// CUDA, f32 products use TF32 tensor cores unless LOFI_CUDA_TF32=0.
    #[arg(long, default_value = "f32")]
    precision: String,
    /// Side of the (random) input image.
    #[arg(long, default_value_t = 256)]
    input_size: usize,
    /// Output sides to time (default: 256,512,1024 on the CPU; 256 to 4096 on CUDA).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Memory budgets to try, e.g. 64MiB,512MiB.
    #[arg(long, value_delimiter = ',', default_value = "64MiB,512MiB")]
    budgets: Vec<String>,
    /// Also time the largest output as N x N tiles and check them against the whole image.
    #[arg(long, default_value_t = 2)]
    tiles: usize,
    /// CPU threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Compare a half-precision run with float32 on the same input.
    #[arg(long)]
    compare_precision: bool,
    /// Print the figures of the speed targets instead of the table: the paper-size model at
    /// 384^2 in f32 and bf16, training samples/s (f32, bf16), the shipped denoiser at 512^2 on 2
    /// threads and, on CUDA, the achieved TFLOP/s against the device's matrix-product rate.
    #[arg(long)]
    targets: bool,
    /// With --targets: a Python with torch that runs scripts/reference/bench_reference_loop.py
    /// (the reference's loops, timed in the same run), e.g. $VIRTUAL_ENV/bin/python.
    #[arg(long)]
    reference_python: Option<PathBuf>,
    /// With --targets: the shipped denoiser to time.
    #[arg(long, default_value = "models/denoise-gray.lofi")]
    denoiser: PathBuf,
}

/// Resident-set high-water mark of this process, resettable (Linux): the CPU counterpart of the
/// CUDA allocator's peak statistics.
struct HostPeak {
    base: u64,
}

impl HostPeak {
    fn status_kib(field: &str) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
    /// With `on`, freed tensors return to the OS at once, so that the resident set follows live
    /// memory: glibc otherwise keeps freed heap pages, and the high-water mark would show only
    /// growth beyond what earlier runs left behind. It slows many-batch runs (every batch maps
    /// fresh pages), so timings are taken with it off.
    /// (The tool's 1 GiB top pad, set in main, is dropped for the measured pass, and the heap
    /// trimmed: allocations served from an already resident top chunk would not show.)
    fn track_live_memory(on: bool) {
        let (mmap, trim, pad) = if on { (64 << 10, 128 << 10, 0) } else { (32 << 20, 64 << 20, 1 << 30) };
        // SAFETY: mallopt and malloc_trim only change allocator tuning between runs.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap);
            libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
            libc::mallopt(libc::M_TOP_PAD, pad);
            if on {
                libc::malloc_trim(0);
            }
        }
    }
    fn start() -> Option<HostPeak> {
        // Writing 5 to clear_refs resets VmHWM to the current RSS.
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        Some(HostPeak { base: Self::status_kib("VmRSS:")? * 1024 })
    }
    fn finish(self) -> Option<u64> {
        Some((Self::status_kib("VmHWM:")? * 1024).saturating_sub(self.base))
    }
    /// The resident set now: the process's baseline (libtorch loaded, model loaded, caller's
    /// buffers resident) before a measured call.
    fn resident() -> Option<u64> {
        Some(Self::status_kib("VmRSS:")? * 1024)
    }
}

fn default_model(device: DeviceSpec) -> Result<Model> {
    let mut cfg = LofiConfig::paper(128, 1, 1);
    cfg.fourier_filtering = true;
    tch::manual_seed(0);
    let (net, params) = LofiNet::init(&cfg, device.resolve()?)?;
    Ok(Model::from_parts(net, params, None))
}

fn random_input(size: usize, channels: usize) -> Image {
    let mut state = 0x2545F4914F6CDD1Du64;
    let data = (0..size * size * channels)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Image::new(size, size, channels, data).expect("sized")
}

struct Measured {
    seconds: f64,
    report: engine::RunReport,
    /// Peak resident set above the baseline during the call (CPU, measured pass only).
    host_peak: Option<u64>,
    /// The resident set before the call (CPU, measured pass only).
    host_baseline: Option<u64>,
}

/// What one timed reconstruction runs: a model on an input, the whole `size`^2 grid (or a window of
/// it) under a budget.
struct Job<'a> {
    model: &'a Model,
    input: &'a Image,
    size: usize,
    budget: usize,
    threads: usize,
}

/// Runs `job` into `out`; `host_memory` measures the CPU peak in a separate, untimed pass.
fn run_once(job: &Job<'_>, out: &mut [f32], window: Option<Window>, host_memory: bool) -> Result<Measured> {
    let mut measured = run_pass(job, out, window, false)?;
    if host_memory {
        let tracked = run_pass(job, out, window, true)?;
        measured.host_peak = tracked.host_peak;
        measured.host_baseline = tracked.host_baseline;
    }
    Ok(measured)
}

fn run_pass(job: &Job<'_>, out: &mut [f32], window: Option<Window>, track_host: bool) -> Result<Measured> {
    let Job { model, input, size, budget, threads } = *job;
    let c_out = model.config().c_out as usize;
    let cols = window.map_or(size, |w| w.cols);
    HostPeak::track_live_memory(track_host);
    // The caller's output buffer is not the call's memory: make its pages resident first (a
    // fresh zeroed vector is mapped lazily and would show up as the call writes it).
    out.fill(0.0);
    let host_baseline = if track_host { HostPeak::resident() } else { None };
    let host = if track_host { HostPeak::start() } else { None };
    let started = Instant::now();
    let report = engine::reconstruct_region(
        model,
        ImageView::from_image(input),
        Region::whole(input.height, input.width),
        size,
        size,
        window,
        OutputView { data: out, row_stride: cols * c_out },
        // Noise-aware models run at 25/255 (the cost does not depend on the value).
        RunOptions {
            memory_budget: budget,
            threads,
            progress: None,
            noise_level: model.config().noise_level.map(|_| 0.1),
            ..Default::default()
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measured { seconds, report, host_peak: host.and_then(HostPeak::finish), host_baseline })
}

/// The measured peak: the CUDA allocator's, or on the CPU the resident set's rise above the
/// baseline during the call.
fn measured_peak(m: &Measured, cuda: bool) -> Option<u64> {
    if cuda {
        m.report.measured_peak_bytes
    } else {
        m.host_peak
    }
}

fn peak_text(m: &Measured, cuda: bool) -> String {
    match measured_peak(m, cuda) {
        Some(b) => format!("{} ({})", format_bytes(b as usize), if cuda { "CUDA" } else { "RSS" }),
        None => "n/a".into(),
    }
}

/// The bound's verdict for one row: "yes" when the measured peak is within the budget.
fn bound_text(m: &Measured, cuda: bool, budget: usize) -> &'static str {
    match measured_peak(m, cuda) {
        Some(b) if b as usize <= budget => "yes",
        Some(_) => "NO",
        None => "n/a",
    }
}

pub fn run(args: Args) -> Result<()> {
    let device: DeviceSpec = args.device.parse()?;
    if args.targets {
        return targets(&args, device);
    }
    let precision: Precision = args.precision.parse()?;
    let model = match &args.model {
        Some(path) => Model::load(path, LoadOptions::new(device, precision))?,
        None if precision == Precision::F32 => default_model(device)?,
        None => bail!("--precision other than f32 needs --model (a .lofi file to load in that precision)"),
    };
    let cuda = matches!(device, DeviceSpec::Cuda(_));
    let sizes = if args.sizes.is_empty() {
        if cuda {
            vec![256, 512, 1024, 2048, 4096]
        } else {
            vec![256, 512, 1024]
        }
    } else {
        args.sizes.clone()
    };
    let budgets = args.budgets.iter().map(|b| parse_bytes(b)).collect::<lofi::Result<Vec<_>>>()?;
    let cfg = model.config();
    let c_out = cfg.c_out as usize;
    let input = random_input(args.input_size, cfg.c_in as usize);
    println!(
        "lofi bench: {} parameters, {}x{} samples/pixel, hidden {}x{}, input {}^2, device {}, precision {}, libtorch threads {}",
        model.parameter_count(),
        cfg.n,
        cfg.m,
        cfg.num_layers,
        cfg.hidden_dim,
        args.input_size,
        model.device_spec(),
        model.precision(),
        tch::get_num_threads()
    );
    // Warm-up: first CUDA calls load kernels, first CPU calls fault pages in.
    let mut warm = vec![0f32; 64 * 64 * c_out];
    let warm_job = Job {
        model: &model,
        input: &input,
        size: 64,
        budget: budgets[0].max(64 << 20),
        threads: args.threads,
    };
    run_once(&warm_job, &mut warm, None, false)?;

    if !cuda {
        println!(
            "measured: the resident set's peak above the baseline (the resident set before each call: libtorch, \
             the model, the input and output buffers); within: measured <= budget"
        );
    }
    println!(
        "{:>7} {:>10} {:>8} {:>8} {:>12} {:>14} {:>11} {:>16} {:>6} {:>9}",
        "output",
        "budget",
        "batch",
        "batches",
        "pixels/s",
        "estimated",
        "baseline",
        "measured",
        "within",
        "seconds"
    );
    for &budget in &budgets {
        for &size in &sizes {
            let mut out = vec![0f32; size * size * c_out];
            let job = Job { model: &model, input: &input, size, budget, threads: args.threads };
            let m = match run_once(&job, &mut out, None, !cuda) {
                Ok(m) => m,
                Err(e) => {
                    println!("{:>7} {:>10}  {e}", format!("{size}^2"), format_bytes(budget));
                    continue;
                }
            };
            println!(
                "{:>7} {:>10} {:>8} {:>8} {:>12.0} {:>14} {:>11} {:>16} {:>6} {:>9.3}",
                format!("{size}^2"),
                format_bytes(budget),
                m.report.plan.batch_pixels,
                m.report.batches,
                (size * size) as f64 / m.seconds,
                format_bytes(m.report.plan.estimated_bytes()),
                m.host_baseline.map_or("n/a".into(), |b| format_bytes(b as usize)),
                peak_text(&m, cuda),
                bound_text(&m, cuda, budget),
                m.seconds
            );
        }
    }

    if args.tiles > 1 {
        let size = *sizes.last().expect("at least one size");
        let budget = *budgets.last().expect("at least one budget");
        let mut whole = vec![0f32; size * size * c_out];
        let job = Job { model: &model, input: &input, size, budget, threads: args.threads };
        let w = run_once(&job, &mut whole, None, false)?;
        let step = size.div_ceil(args.tiles);
        let (mut seconds, mut identical, mut max_diff) = (0.0, true, 0f32);
        for row0 in (0..size).step_by(step) {
            for col0 in (0..size).step_by(step) {
                let window = Window { col0, row0, cols: step.min(size - col0), rows: step.min(size - row0) };
                let mut tile = vec![0f32; window.cols * window.rows * c_out];
                seconds += run_once(&job, &mut tile, Some(window), false)?.seconds;
                for r in 0..window.rows {
                    let got = &tile[r * window.cols * c_out..(r + 1) * window.cols * c_out];
                    let at = ((row0 + r) * size + col0) * c_out;
                    let want = &whole[at..at + window.cols * c_out];
                    for (a, b) in got.iter().zip(want) {
                        identical &= a.to_bits() == b.to_bits();
                        max_diff = max_diff.max((a - b).abs());
                    }
                }
            }
        }
        println!(
            "tiles: {size}^2 as {n}x{n} tiles in {seconds:.3} s vs whole in {:.3} s; tiles == whole: {} (max |diff| {max_diff:e})",
            w.seconds,
            if identical { "bit for bit" } else { "no" },
            n = args.tiles
        );
    }

    if args.compare_precision {
        let Some(path) = &args.model else { bail!("--compare-precision needs --model") };
        let size = sizes[0];
        let reference = Model::load(path, LoadOptions::new(device, Precision::F32))?;
        let budget = *budgets.last().expect("a budget");
        let mut want = vec![0f32; size * size * c_out];
        run_once(
            &Job { model: &reference, input: &input, size, budget, threads: args.threads },
            &mut want,
            None,
            false,
        )?;
        let mut got = vec![0f32; size * size * c_out];
        run_once(
            &Job { model: &model, input: &input, size, budget, threads: args.threads },
            &mut got,
            None,
            false,
        )?;
        let Differences { max, relative_max, rms } = differences(&got, &want);
        println!(
            "precision {} vs f32 at {size}^2: max |diff| {max:.3e} ({relative_max:.3e} of max |f32|), rms diff {rms:.3e}",
            model.precision(),
        );
    }
    Ok(())
}

/// Seconds of the whole `size`^2 reconstruction of `input` (after a 64^2 warm-up).
fn time_grid(model: &Model, input: &Image, size: usize, threads: usize) -> Result<f64> {
    let c_out = model.config().c_out as usize;
    let budget = engine::DEFAULT_MEMORY_BUDGET;
    let mut warm = vec![0f32; 64 * 64 * c_out];
    run_once(&Job { model, input, size: 64, budget, threads }, &mut warm, None, false)?;
    let mut out = vec![0f32; size * size * c_out];
    Ok(run_once(&Job { model, input, size, budget, threads }, &mut out, None, false)?.seconds)
}

/// [`time_grid`] with `workers` single-threaded workers sharing `model`, each on its own bands of
/// the output (as `lofi reconstruct --cpu-workers`).
fn time_grid_workers(model: &Model, input: &Image, size: usize, workers: usize) -> Result<f64> {
    let c_out = model.config().c_out as usize;
    let replicas = vec![model; workers];
    let run = |size: usize| -> Result<f64> {
        let mut out = vec![0f32; size * size * c_out];
        let started = Instant::now();
        engine::reconstruct_region_on_devices(
            &replicas,
            ImageView::from_image(input),
            Region::whole(input.height, input.width),
            size,
            size,
            None,
            OutputView { data: &mut out, row_stride: size * c_out },
            RunOptions {
                memory_budget: engine::DEFAULT_MEMORY_BUDGET / workers,
                threads: 1,
                progress: None,
                noise_level: model.config().noise_level.map(|_| 0.1),
                ..Default::default()
            },
        )?;
        Ok(started.elapsed().as_secs_f64())
    };
    run(64)?;
    run(size)
}

/// The reference stand-in's JSON figures (scripts/reference/bench_reference_loop.py).
fn reference_figures(python: &std::path::Path, size: usize, threads: usize) -> Result<serde_json::Value> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/reference/bench_reference_loop.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(["--size", &size.to_string(), "--threads", &threads.to_string()])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Training samples per second of the paper-size model, 8 objects x 512 pixels per step, with the
/// MLPs in `precision` (f32 or bf16 mixed precision): the mean of 3 steps after one warm-up.
fn training_rate(device: DeviceSpec, precision: Precision, threads: usize) -> Result<f64> {
    use crate::train::config::TrainConfig;
    let mut cfg = TrainConfig { model: LofiConfig::paper(128, 1, 1), ..Default::default() };
    cfg.model.fourier_filtering = true;
    cfg.train.object_batch = 8;
    cfg.train.pixel_batch = 512;
    cfg.train.device = device.to_string();
    cfg.train.threads = threads;
    cfg.train.precision = precision.to_string();
    let device = device.resolve()?;
    let mut trainer = crate::train::Trainer::new(cfg, device, None)?;
    tch::manual_seed(1);
    let data = crate::train::TrainSet {
        sources: tch::Tensor::rand([16, 1, 128, 128], (tch::Kind::Float, device)),
        observations: None,
    };
    let _ = trainer.train_step(&data)?.0.double_value(&[]);
    let started = Instant::now();
    let mut samples = 0;
    for _ in 0..3 {
        let (loss, n) = trainer.train_step(&data)?;
        let _ = loss.double_value(&[]); // waits for the device
        samples += n;
    }
    Ok(samples as f64 / started.elapsed().as_secs_f64())
}

/// The device's float matrix-product rate in `kind` (FLOP/s): square products of 8192 on CUDA,
/// 2048 on the CPU (17 GFLOP each, a fifth of a second on 2 cores). Through
/// [`lofi::kernels::linear::linear`], so that a float32 CPU figure is the rate of the backend the
/// network's products use (see [`cpu_f32_backends`]).
fn matmul_rate(device: tch::Device, kind: tch::Kind) -> f64 {
    use lofi::kernels::linear::linear;
    let n = if device == tch::Device::Cpu { 2048i64 } else { 8192 };
    let a = tch::Tensor::rand([n, n], (kind, device));
    let b = tch::Tensor::rand([n, n], (kind, device));
    let _ = linear(&a, &b, None).sum(tch::Kind::Float).double_value(&[]);
    let reps = 10;
    let started = Instant::now();
    let mut acc = linear(&a, &b, None);
    for _ in 1..reps {
        acc = linear(&a, &b, None);
    }
    let _ = acc.sum(tch::Kind::Float).double_value(&[]);
    2.0 * (n * n * n) as f64 * reps as f64 / started.elapsed().as_secs_f64()
}

/// Runs `f` with float32 CPU products through `backend`, then restores the previous choice.
fn with_cpu_backend<T>(backend: lofi::kernels::linear::CpuBackend, f: impl FnOnce() -> T) -> T {
    use lofi::kernels::linear::{cpu_backend, set_cpu_backend};
    let previous = cpu_backend();
    set_cpu_backend(backend);
    let out = f();
    set_cpu_backend(previous);
    out
}

/// Prints the float32 CPU product rate of libtorch's own products (MKL) and of oneDNN, measured
/// now, and which one the network uses (`LOFI_CPU_MATMUL`, else the CPU's default); returns
/// whether that is oneDNN.
fn cpu_f32_backends() -> bool {
    use lofi::kernels::linear::{cpu_backend, onednn_available, CpuBackend};
    let used = cpu_backend();
    let blas = with_cpu_backend(CpuBackend::Blas, || matmul_rate(tch::Device::Cpu, tch::Kind::Float));
    if onednn_available() {
        let onednn = with_cpu_backend(CpuBackend::OneDnn, || matmul_rate(tch::Device::Cpu, tch::Kind::Float));
        println!(
            "float32 CPU products (2048^2): oneDNN {:.0} GFLOP/s, libtorch's own (MKL) {:.0} GFLOP/s; the network \
             uses {} (LOFI_CPU_MATMUL=onednn|blas chooses)",
            onednn / 1e9,
            blas / 1e9,
            used.name()
        );
    } else {
        println!("float32 CPU products (2048^2): libtorch's own (MKL) {:.0} GFLOP/s (no oneDNN)", blas / 1e9);
    }
    used == CpuBackend::OneDnn
}

/// `lofi bench --targets`: the figures of the speed targets, each beside its target.
fn targets(args: &Args, device: DeviceSpec) -> Result<()> {
    use lofi::device::CpuFeatures;
    use lofi::kernels::linear::CpuBackend;
    let threads = args.threads;
    let cuda = matches!(device, DeviceSpec::Cuda(_));
    let bf16 = cuda || CpuFeatures::detect().has_native_bf16();
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
    println!(
        "lofi bench --targets: device {device}, libtorch threads {}, bf16 {}",
        tch::get_num_threads(),
        if bf16 { "native" } else { "not available (no avx512_bf16 / amx_bf16)" }
    );
    if cuda {
        return cuda_targets(args, device);
    }
    let onednn = !cuda && cpu_f32_backends();
    // The paper-size model (random weights: the cost does not depend on them), loaded from bytes as
    // a file would be, in each precision.
    let bytes = default_model(DeviceSpec::Cpu)?.to_bytes()?;
    let load = |precision| Model::load_from_memory(&bytes, LoadOptions::new(device, precision));
    let side = 384;
    let input = random_input(side, 1);
    let mut precisions = vec![Precision::F32];
    if bf16 {
        precisions.push(Precision::BF16);
    }
    if cuda {
        precisions.push(Precision::F16);
    }
    // The reference runs before and after ours (the machine's load drifts; the ratios use the
    // mean of both runs).
    let reference_before = match &args.reference_python {
        Some(python) => Some(reference_figures(python, side, threads)?),
        None => None,
    };
    let mut ours = Vec::new();
    for &precision in &precisions {
        let model = load(precision)?;
        let seconds = time_grid(&model, &input, side, threads)?;
        let rate = (side * side) as f64 / seconds;
        let flops = model.pixel_net().flops_per_pixel() * rate;
        println!(
            "inference, paper-size model ({} parameters, {:.1} MFLOP/pixel), {side}^2, {precision}: {seconds:.2} s, \
             {rate:.0} pixels/s, {:.1} GFLOP/s",
            model.parameter_count(),
            model.pixel_net().flops_per_pixel() / 1e6,
            flops / 1e9
        );
        if onednn && precision == Precision::F32 {
            let blas = with_cpu_backend(CpuBackend::Blas, || time_grid(&model, &input, side, threads))?;
            println!(
                "  with libtorch's own f32 products (MKL, LOFI_CPU_MATMUL=blas): {blas:.2} s; oneDNN's are {:.2}x faster",
                blas / seconds
            );
        }
        if cuda {
            let kind = if precision == Precision::F32 { tch::Kind::Float } else { precision.kind() };
            let peak = matmul_rate(model.device(), kind);
            println!(
                "  GPU: {:.1} TFLOP/s achieved, {:.1} % of this device's measured {:.1} TFLOP/s ({precision} matmul); \
                 target >= {} M pixels/s: {:.2} M",
                flops / 1e12,
                100.0 * flops / peak,
                peak / 1e12,
                if precision == Precision::F32 { 8 } else { 20 },
                rate / 1e6
            );
        }
        // The same as single-threaded workers on bands (`lofi reconstruct`'s default on the CPU).
        // Timed whatever `cpu_workers` would choose: the figure shows whether its choice holds.
        let workers = if cuda { 1 } else { engine::resolve_threads(threads) };
        let workers_rate = if workers > 1 {
            let seconds = time_grid_workers(&model, &input, side, workers)?;
            println!(
                "  as {workers} single-threaded workers: {seconds:.2} s, {:.0} pixels/s (`lofi reconstruct` runs {})",
                (side * side) as f64 / seconds,
                match engine::cpu_workers(&model, threads, side * side) {
                    1 => "one worker".to_string(),
                    n => format!("{n} workers"),
                }
            );
            Some((side * side) as f64 / seconds)
        } else {
            None
        };
        ours.push((precision, rate, workers_rate));
    }
    let mut train = Vec::new();
    for &precision in precisions.iter().filter(|p| **p != Precision::F16) {
        let rate = training_rate(device, precision, threads)?;
        println!(
            "training, paper-size model, 8 objects x 512 pixels per step, {precision}: {rate:.0} samples/s"
        );
        if onednn && precision == Precision::F32 {
            let blas = with_cpu_backend(CpuBackend::Blas, || training_rate(device, precision, threads))?;
            println!(
                "  with libtorch's own f32 products (MKL, LOFI_CPU_MATMUL=blas): {blas:.0} samples/s; oneDNN's are \
                 {:.2}x faster",
                rate / blas
            );
        }
        train.push((precision, rate));
    }
    if !cuda {
        // How close training runs to the hardware: a step costs about 3 forward passes (the
        // forward, and the backward's two products per layer: inputs and weights).
        let flops = 3.0 * load(Precision::F32)?.pixel_net().flops_per_pixel();
        for (precision, rate) in &train {
            let peak = matmul_rate(tch::Device::Cpu, precision.kind());
            println!(
                "  training {precision}: {:.0} GFLOP/s, {:.0} % of this CPU's {precision} matmul rate ({:.0} GFLOP/s, \
                 2048^2 products, measured now)",
                rate * flops / 1e9,
                100.0 * rate * flops / peak,
                peak / 1e9
            );
        }
    }
    if let (Some(python), Some(before)) = (&args.reference_python, reference_before) {
        let after = reference_figures(python, side, threads)?;
        let figure = |key: &str| {
            let (a, b) = (before[key].as_f64().unwrap_or(f64::NAN), after[key].as_f64().unwrap_or(f64::NAN));
            (a, b, 0.5 * (a + b))
        };
        let (inf_a, inf_b, ref_inference) = figure("inference_pixels_per_s");
        let (train_a, train_b, ref_train) = figure("train_samples_per_s");
        println!(
            "reference loop stand-in (scripts/reference/bench_reference_loop.py, torch {}, {} threads), run before \
             and after ours: inference {inf_a:.0} and {inf_b:.0} pixels/s, training {train_a:.0} and {train_b:.0} \
             samples/s",
            after["torch"].as_str().unwrap_or("?"),
            after["threads"]
        );
        for (precision, rate, workers_rate) in &ours {
            let target = match precision {
                Precision::F32 => " (target >= 1.25x)",
                Precision::BF16 => " (target >= 2.5x)",
                Precision::F16 => "",
            };
            let workers = workers_rate
                .map(|r| format!(", {:.2}x as single-threaded workers", r / ref_inference))
                .unwrap_or_default();
            println!(
                "  inference {precision}: {:.2}x the reference loop{workers}{target}",
                rate / ref_inference
            );
        }
        for (precision, rate) in &train {
            let target = if *precision == Precision::F32 { " (target >= 1.5x)" } else { "" };
            println!("  training {precision}: {:.2}x the reference loop{target}", rate / ref_train);
        }
        if !cuda {
            let flops = 3.0 * load(Precision::F32)?.pixel_net().flops_per_pixel();
            println!(
                "  the reference loop trains at {:.0} GFLOP/s; 1.5x of it would be {:.0} GFLOP/s",
                ref_train * flops / 1e9,
                1.5 * ref_train * flops / 1e9
            );
        }
    }
    if args.denoiser.exists() {
        let input = random_input(512, 1);
        for &precision in precisions.iter().filter(|p| **p != Precision::F16) {
            let model = Model::load(&args.denoiser, LoadOptions::new(device, precision))?;
            // The target is for two cores: two threads whatever --threads says, as one worker
            // (libtorch's threads share each operation) and as two single-threaded workers on
            // bands of the output (what `lofi reconstruct` runs by default on two cores).
            let seconds = time_grid(&model, &input, 512, 2)?;
            let workers = time_grid_workers(&model, &input, 512, 2)?;
            println!(
                "shipped denoiser {} at 512^2, {precision}, 2 threads: {seconds:.2} s as one worker, {workers:.2} s as \
                 two single-threaded workers (target <= 2 s)",
                args.denoiser.display()
            );
            if onednn && precision == Precision::F32 {
                let blas = with_cpu_backend(CpuBackend::Blas, || time_grid_workers(&model, &input, 512, 2))?;
                println!(
                    "  with libtorch's own f32 products (MKL, LOFI_CPU_MATMUL=blas): {blas:.2} s as two single-threaded \
                     workers"
                );
            }
            if model.pixel_net().flops_per_pixel() < model.net().flops_per_pixel() {
                // The other side of the layer folding (LofiNet::fold_layers), in the same run.
                let options = LoadOptions { fold_layers: false, ..LoadOptions::new(device, precision) };
                let stored = Model::load(&args.denoiser, options)?;
                // Alternating, so that a drift of the machine's speed shows on both sides.
                let mut pairs = Vec::new();
                for _ in 0..2 {
                    let stored_s = time_grid_workers(&stored, &input, 512, 2)?;
                    pairs.push((stored_s, time_grid_workers(&model, &input, 512, 2)?));
                }
                let list = |side: fn(&(f64, f64)) -> f64| {
                    pairs.iter().map(|p| format!("{:.2}", side(p))).collect::<Vec<_>>().join(", ")
                };
                println!(
                    "  with every stored layer (the per-angle MLPs' last layer not folded into the mixer, {:.2} \
                     against {:.2} MFLOP per pixel), two workers, alternating: stored {} s, folded {} s",
                    stored.pixel_net().flops_per_pixel() / 1e6,
                    model.pixel_net().flops_per_pixel() / 1e6,
                    list(|p| p.0),
                    list(|p| p.1)
                );
            }
        }
    } else {
        println!("shipped denoiser: {} not found (--denoiser)", args.denoiser.display());
    }
    Ok(())
}

/// One CUDA configuration of the inference timing: precision, TF32 for float32 products, and
/// this release's two changes of the CUDA path (zero-padded widths, bias + ReLU in the product's
/// epilogue), so that each can be timed against the path without it in the same run.
#[derive(Clone, Copy)]
struct CudaPath {
    precision: Precision,
    tf32: bool,
    padded: bool,
    fused: bool,
    /// Results copied to the host asynchronously while the next batch runs.
    overlap: bool,
}

impl CudaPath {
    fn load(&self, bytes: &[u8], device: DeviceSpec) -> Result<Model> {
        use lofi::kernels::linear::{set_cuda_fused_epilogue, set_cuda_tf32};
        set_cuda_tf32(self.tf32);
        set_cuda_fused_epilogue(self.fused);
        engine::host_copy::set_overlapped_copies(self.overlap);
        let options =
            LoadOptions { tensor_core_padding: self.padded, ..LoadOptions::new(device, self.precision) };
        Ok(Model::load_from_memory(bytes, options)?)
    }

    fn name(&self) -> String {
        let tf32 = match (self.precision, self.tf32) {
            (Precision::F32, true) => " TF32",
            (Precision::F32, false) => " (IEEE)",
            _ => "",
        };
        format!("{}{tf32}", self.precision)
    }
}

/// Seconds of a `size`^2 reconstruction of `input` on CUDA under `budget`: the best of three runs
/// after a warm-up of the same size (the first run loads kernels and fills the allocator's cache).
fn time_cuda(model: &Model, input: &Image, size: usize, budget: usize) -> Result<(f64, engine::RunReport)> {
    let c_out = model.config().c_out as usize;
    let mut out = vec![0f32; size * size * c_out];
    let job = Job { model, input, size, budget, threads: 0 };
    run_pass(&job, &mut out, None, false)?;
    let mut best: Option<Measured> = None;
    for _ in 0..3 {
        let m = run_pass(&job, &mut out, None, false)?;
        if best.as_ref().is_none_or(|b| m.seconds < b.seconds) {
            best = Some(m);
        }
    }
    let best = best.expect("three runs");
    Ok((best.seconds, best.report))
}

/// The output of `model` on `input` at `size`^2 (noise-aware models told sigma 0.1).
fn output_of(model: &Model, input: &Image, size: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; size * size * model.config().c_out as usize];
    run_pass(&Job { model, input, size, budget: 1 << 30, threads: 0 }, &mut out, None, false)?;
    Ok(out)
}

/// How far `got` is from `want`.
fn differences(got: &[f32], want: &[f32]) -> Differences {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12) as f64;
    let max = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) as f64;
    let rms =
        (got.iter().zip(want).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / want.len() as f64).sqrt();
    Differences { max, relative_max: max / scale, rms }
}

/// How far one output is from another: the largest |difference|, the same relative to the
/// largest |value| of the reference, and the RMS difference.
struct Differences {
    max: f64,
    relative_max: f64,
    rms: f64,
}

/// `lofi bench --targets --device cuda`: the GPU targets. The paper-size model on a 384^2 input
/// rendered at 2048^2 (4.2 M pixels: a 384^2 output is a single batch on a GPU, too short to
/// time) under an 8 GiB budget, in f32 (IEEE and TF32), bf16 and f16; each beside the path
/// without the padding and the fused epilogue, the achieved TFLOP/s beside the device's matmul
/// rate measured now; the accuracy of TF32 and the half precisions against IEEE f32 on every
/// shipped model; training rates.
fn cuda_targets(args: &Args, device: DeviceSpec) -> Result<()> {
    use lofi::kernels::linear::{apply_cuda_tf32_default, cuda_tf32, set_cuda_fused_epilogue, set_cuda_tf32};
    // The paths below set TF32 each way; the process's own choice is restored at the end.
    apply_cuda_tf32_default();
    let tf32_chosen = cuda_tf32();
    let (side, size, budget) = (384, 2048, 8usize << 30);
    let bytes = default_model(DeviceSpec::Cpu)?.to_bytes()?;
    let input = random_input(side, 1);
    println!(
        "paper-size model on {device}: {side}^2 input rendered at {size}^2, budget {}",
        format_bytes(budget)
    );
    let paths = [
        CudaPath { precision: Precision::F32, tf32: false, padded: true, fused: true, overlap: true },
        CudaPath { precision: Precision::F32, tf32: true, padded: true, fused: true, overlap: true },
        CudaPath { precision: Precision::BF16, tf32: false, padded: true, fused: true, overlap: true },
        CudaPath { precision: Precision::F16, tf32: false, padded: true, fused: true, overlap: true },
    ];
    for path in paths {
        let model = path.load(&bytes, device)?;
        let flops_per_pixel = model.pixel_net().flops_per_pixel();
        let (seconds, report) = time_cuda(&model, &input, size, budget)?;
        let rate = (size * size) as f64 / seconds;
        let kind = if path.precision == Precision::F32 { tch::Kind::Float } else { path.precision.kind() };
        let peak = matmul_rate(model.device(), kind);
        println!(
            "inference {}: {seconds:.3} s, {:.2} M pixels/s, {:.1} TFLOP/s = {:.1} % of this device's {} matmul \
             measured now ({:.1} TFLOP/s, 8192^2); batches of {} pixels; target >= {} M pixels/s",
            path.name(),
            rate / 1e6,
            flops_per_pixel * rate / 1e12,
            100.0 * flops_per_pixel * rate / peak,
            path.name(),
            peak / 1e12,
            report.plan.batch_pixels,
            if path.precision == Precision::F32 { 8 } else { 20 },
        );
        // The other sides: without each change, and without both (the previous release's path).
        let others: &[(bool, bool, bool)] =
            if path.precision == Precision::BF16 || !path.tf32 && path.precision == Precision::F32 {
                &[(false, false, false)]
            } else {
                &[(false, true, true), (true, false, true), (true, true, false), (false, false, false)]
            };
        for &(padded, fused, overlap) in others {
            let other = CudaPath { padded, fused, overlap, ..path };
            let (s, _) = time_cuda(&other.load(&bytes, device)?, &input, size, budget)?;
            println!(
                "  without {}: {:.2} M pixels/s ({:.2}x slower)",
                match (padded, fused, overlap) {
                    (false, true, true) => "the padded widths",
                    (true, false, true) => "the fused bias + ReLU",
                    (true, true, false) => "the overlapped copies to the host",
                    _ => "all three (the previous release's path)",
                },
                (size * size) as f64 / s / 1e6,
                s / seconds
            );
        }
    }
    set_cuda_fused_epilogue(true);
    engine::host_copy::set_overlapped_copies(true);

    // Accuracy against IEEE float32, on every shipped model (a random input of the model's
    // training size, rendered at 512^2).
    let models_dir = args.denoiser.parent().map_or_else(|| PathBuf::from("models"), PathBuf::from);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&models_dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "lofi"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for file in &files {
        let bytes = std::fs::read(file)?;
        let ieee =
            CudaPath { precision: Precision::F32, tf32: false, padded: true, fused: true, overlap: true };
        let reference = ieee.load(&bytes, device)?;
        let cfg = reference.config();
        let input = random_input(cfg.image_size as usize, cfg.c_in as usize);
        let want = output_of(&reference, &input, 512)?;
        let unpadded = output_of(
            &CudaPath { padded: false, fused: false, overlap: false, ..ieee }.load(&bytes, device)?,
            &input,
            512,
        )?;
        let mut line = format!("accuracy against IEEE f32, {} at 512^2:", file.display());
        let Differences { max: _, relative_max: max, rms } = differences(&unpadded, &want);
        line += &format!(" f32 unpadded, unfused: max {max:.1e}, RMS {rms:.1e};");
        for path in &paths[1..] {
            let got = output_of(&path.load(&bytes, device)?, &input, 512)?;
            let Differences { max: _, relative_max: max, rms } = differences(&got, &want);
            line += &format!(" {}: max {max:.1e} (of max |f32|), RMS {rms:.1e};", path.name());
        }
        println!("{}", line.trim_end_matches(';'));
    }

    for (precision, tf32) in [(Precision::F32, false), (Precision::F32, true), (Precision::BF16, false)] {
        set_cuda_tf32(tf32);
        let rate = training_rate(device, precision, 0)?;
        println!(
            "training, paper-size model, 8 objects x 512 pixels per step, {}: {rate:.0} samples/s",
            CudaPath { precision, tf32, padded: true, fused: true, overlap: true }.name()
        );
    }
    set_cuda_tf32(tf32_chosen);
    Ok(())
}
