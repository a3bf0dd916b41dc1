//! `lofi eval`: PSNR and SSIM of a model on test images (and out-of-distribution ones), per image
//! and averaged, as a table and optionally as JSON. Observations are made by the task's forward
//! model with noise drawn on the CPU from --seed, so results are reproducible on any device (and
//! equal those `lofi train` reports for the same images, size and seed).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use lofi::device::{DeviceSpec, Precision};
use lofi::model::LoadOptions;
use serde_json::json;

use crate::train::config::{ResizeMode, TaskConfig, TaskKind};
use crate::train::evaluate::{self, Summary};
use crate::train::tasks::Task;

#[derive(clap::Args)]
pub struct Args {
    /// The .lofi model.
    #[arg(long)]
    model: PathBuf,
    /// The task (default: the one recorded in the model's notes by `lofi train`).
    #[arg(long, value_enum)]
    task: Option<TaskKind>,
    /// Test images: folders or files (for `paired`, folders holding observations/ and targets/).
    #[arg(long, num_args = 1.., required = true)]
    data: Vec<PathBuf>,
    /// Out-of-distribution images, reported beside the test images.
    #[arg(long, num_args = 1..)]
    ood: Vec<PathBuf>,
    /// denoise: noise level for images in [0, 1] (default: the model's notes, else 0.15).
    #[arg(long)]
    sigma: Option<f64>,
    /// ldct: projection angles over [0, 180) (default: the model's notes, else 180).
    #[arg(long)]
    angles: Option<usize>,
    /// ldct: sinogram SNR in dB (default: the model's notes, else 30).
    #[arg(long)]
    snr_db: Option<f64>,
    /// Seed of the observations' noise (test images use it, OOD images seed + 1).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Resize every image to SIZE x SIZE first (default: native size).
    #[arg(long)]
    size: Option<i64>,
    /// How --size is reached: area, square-area or crop (default: square-area).
    #[arg(long, value_enum)]
    resize: Option<ResizeMode>,
    /// At most this many images per split (0: all).
    #[arg(long, default_value_t = 0)]
    max_images: usize,
    /// Write the results as JSON here ("-" for standard output).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write observation | LoFi | truth for the first test images to this PNG.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Write every reconstruction to this folder as <split>_<name>.fits; a FITS test image's
    /// header (WCS...) is carried when images are not resized (no --size).
    #[arg(long)]
    reconstructions: Option<PathBuf>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Working-memory budget of each reconstruction, e.g. 512MiB.
    #[arg(long, default_value = "512MiB")]
    memory_budget: String,
    /// Network precision: f32; bf16 or f16 on CUDA; bf16 on CPUs with avx512_bf16 or amx_bf16. On
    /// CUDA, f32 products use TF32 tensor cores unless LOFI_CUDA_TF32=0.
    #[arg(long, default_value = "f32")]
    precision: String,
}

fn note<'a>(notes: Option<&'a serde_json::Value>, key: &str) -> Option<&'a serde_json::Value> {
    notes.and_then(|n| n.get("task")).and_then(|t| t.get(key))
}

pub fn run(args: Args) -> Result<()> {
    let device = match crate::train::config::resolve_device(&args.device)? {
        tch::Device::Cuda(i) => DeviceSpec::Cuda(i),
        _ => DeviceSpec::Cpu,
    };
    let budget = lofi::engine::parse_bytes(&args.memory_budget)?;
    let precision: Precision = args.precision.parse()?;
    let model = lofi::Model::load(&args.model, LoadOptions::new(device, precision))?;
    let notes = model.notes();
    let kind = match args.task {
        Some(k) => k,
        None => {
            let name = note(notes, "kind")
                .and_then(|v| v.as_str())
                .context("the model's notes do not say which task it was trained for: give --task")?;
            serde_json::from_value(json!(name))
                .with_context(|| format!("unknown task '{name}' in the model's notes"))?
        }
    };
    let defaults = TaskConfig::default();
    let cfg = TaskConfig {
        kind,
        sigma: args.sigma.or_else(|| note(notes, "sigma").and_then(|v| v.as_f64())).unwrap_or(defaults.sigma),
        angles: args
            .angles
            .or_else(|| note(notes, "angles").and_then(|v| v.as_u64()).map(|v| v as usize))
            .unwrap_or(defaults.angles),
        snr_db: args
            .snr_db
            .or_else(|| note(notes, "snr_db").and_then(|v| v.as_f64()))
            .unwrap_or(defaults.snr_db),
        ..defaults
    };
    if cfg.sigma.is_nan() || cfg.sigma < 0.0 {
        bail!("--sigma must be non-negative");
    }
    let task = Task::new(&cfg, model.config())?;
    let (size, mode) = match args.size {
        Some(s) if s >= 2 => (s, args.resize.unwrap_or(ResizeMode::SquareArea)),
        Some(_) => bail!("--size must be at least 2"),
        None => (0, ResizeMode::None),
    };

    let mut results = Vec::new();
    for (split, paths, seed) in
        [("test", &args.data, args.seed), ("ood", &args.ood, args.seed.wrapping_add(1))]
    {
        if paths.is_empty() {
            continue;
        }
        let items = evaluate::load_test_set(&task, paths, size, mode, seed, args.max_images)?;
        if items.is_empty() {
            bail!("no {split} images found in {paths:?}");
        }
        let keep = if args.reconstructions.is_some() {
            items.len()
        } else if split == "test" && args.samples.is_some() {
            4
        } else {
            0
        };
        let (summary, recs) = evaluate::evaluate(&model, &items, budget, keep)?;
        if let Some(dir) = &args.reconstructions {
            write_reconstructions(dir, split, paths, &items, &recs, size == 0, &args.model, model.digest())?;
        }
        if let (Some(path), false, "test") = (&args.samples, recs.is_empty(), split) {
            let rows: Vec<_> =
                items.iter().zip(&recs).take(4).map(|(it, r)| (&it.observation, r, &it.target)).collect();
            crate::train::plot::samples(path, &rows, "LoFi")?;
        }
        results.push((split, summary));
    }

    let json_to_stdout = args.json.as_ref().is_some_and(|p| p.as_os_str() == "-");
    print_table(&results, json_to_stdout);
    if let Some(path) = &args.json {
        let mut splits = serde_json::Map::new();
        for (split, summary) in &results {
            splits.insert(split.to_string(), serde_json::to_value(summary)?);
        }
        let mut task_json = json!({ "kind": kind.to_string() });
        match kind {
            TaskKind::Denoise => task_json["sigma"] = cfg.sigma.into(),
            TaskKind::Ldct => {
                task_json["angles"] = cfg.angles.into();
                task_json["snr_db"] = cfg.snr_db.into();
            }
            _ => {}
        }
        let doc = json!({
            "model": args.model,
            "task": task_json,
            "seed": args.seed,
            "size": args.size,
            "device": device.to_string(),
            "splits": splits,
        });
        let text = serde_json::to_string_pretty(&doc)? + "\n";
        if path.as_os_str() == "-" {
            print!("{text}");
        } else {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

/// Writes each reconstruction as FITS, carrying the header of the FITS file it came from (found
/// by name among the --data/--ood files) when the images kept their native size.
#[allow(clippy::too_many_arguments)]
fn write_reconstructions(
    dir: &std::path::Path,
    split: &str,
    paths: &[PathBuf],
    items: &[evaluate::TestItem],
    recs: &[lofi::image_io::Image],
    native_size: bool,
    model_path: &std::path::Path,
    digest: Option<&str>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = crate::train::data::list_images(paths, &[])?;
    let mut history = lofi::formats::history_lines("eval", model_path, digest);
    for (item, rec) in items.iter().zip(recs) {
        let source = files.iter().find(|f| {
            native_size && lofi::formats::fits::is_fits_path(f) && crate::train::data::stem(f) == item.name
        });
        let header = source.map(|f| lofi::formats::fits::read_image(f)).transpose()?.map(|f| f.header);
        history.truncate(2);
        history.push(format!(
            "eval: {split} image {} (observation simulated by the task, seed-dependent)",
            item.name
        ));
        let path = dir.join(format!("{split}_{}.fits", item.name));
        lofi::formats::write_output(&path, rec, 8, header.as_ref(), &history)?;
    }
    eprintln!("lofi eval: wrote {} {split} reconstructions to {}", recs.len(), dir.display());
    Ok(())
}

/// The table goes to standard output, or to standard error when the JSON does.
fn print_table(results: &[(&str, Summary)], to_stderr: bool) {
    let out = |line: String| {
        if to_stderr {
            eprintln!("{line}")
        } else {
            println!("{line}")
        }
    };
    out(format!("{:<6}  {:<28}  {:>9}  {:>7}", "split", "image", "PSNR (dB)", "SSIM"));
    for (split, s) in results {
        for img in &s.images {
            out(format!("{split:<6}  {:<28}  {:>9.2}  {:>7.4}", img.name, img.psnr, img.ssim));
        }
    }
    out(String::new());
    let mut header = format!("{:<10}", "");
    let (mut n, mut p, mut q) =
        (format!("{:<10}", "images"), format!("{:<10}", "PSNR (dB)"), format!("{:<10}", "SSIM"));
    for (split, s) in results {
        let name = if *split == "test" { "test (in-dist.)" } else { "out-of-dist." };
        header += &format!("  {name:>16}");
        n += &format!("  {:>16}", s.count);
        p += &format!("  {:>16.2}", s.mean_psnr);
        q += &format!("  {:>16.4}", s.mean_ssim);
    }
    for line in [header, n, p, q] {
        out(line);
    }
}
