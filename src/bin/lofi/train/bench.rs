//! `lofi train --bench-memory`: a few training steps of the configured model and batch sizes on
//! random images of several resolutions, with the peak memory of each. It shows that training
//! memory is set by the batch sizes (objects x pixels), not by the resolution, apart from the
//! images themselves and their filtered copies.
//!
//! Peak memory: on CUDA, the caching allocator's peak (`lofi::engine::cuda_memory`) reset before
//! each resolution; on the CPU, the process's peak resident set size (Linux `VmHWM`, reset
//! through `/proc/self/clear_refs` where the kernel allows it; otherwise it only grows, so the
//! resolutions run in increasing order).

use std::time::Instant;

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use super::config::TrainConfig;
use super::{pixel_grid, Trainer};

fn cpu_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn cpu_reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Runs `steps` training steps at each side in `sizes` and prints a table.
pub fn bench_memory(cfg: &TrainConfig, sizes: &[i64], steps: usize) -> Result<()> {
    let device = super::config::resolve_device(&cfg.train.device)?;
    if device == tch::Device::Cpu {
        // The tool keeps a 1 GiB allocator top pad (main.rs) for speed; it would show in the
        // resident set as if it were training memory. Measure without it.
        // SAFETY: allocator tuning only, before the measured work.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, 0);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 10);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
            libc::malloc_trim(0);
        }
    }
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    let mut trainer = Trainer::new(cfg.clone(), device, None)?;
    let (b, p) = (cfg.train.object_batch as i64, cfg.train.pixel_batch as i64);
    let (c_in, c_out) = (cfg.model.c_in, cfg.model.c_out);
    println!(
        "training memory, {} parameters, batches of {b} objects x {p} pixels, {steps} step(s) per size, on {device:?}",
        trainer.params.numel()
    );
    println!("{:>6}  {:>12}  {:>14}  {:>10}", "side", "images", "peak memory", "s/step");
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    for &side in &sorted {
        tch::manual_seed(side);
        let obs = Tensor::rand([b, c_in, side, side], (Kind::Float, device));
        let target = Tensor::rand([b, c_out, side, side], (Kind::Float, device));
        let grid = pixel_grid(side, device);
        let image_bytes = ((obs.numel() + target.numel()) * 4) as u64;
        let reset = match device {
            Device::Cuda(i) => {
                lofi::engine::cuda_memory::reset_peak(i);
                true
            }
            _ => cpu_reset_peak(),
        };
        let started = Instant::now();
        for step in 0..steps {
            let mut rng = super::rng::Rng::derive(0, super::rng::STREAM_PIXELS, step as u64);
            let pixels: Vec<i64> = (0..p).map(|_| rng.below((side * side) as u64) as i64).collect();
            let pixels = Tensor::from_slice(&pixels).to_device(device);
            let coords = grid.index_select(0, &pixels).unsqueeze(0).expand([b, p, 2], true);
            let wanted = target.view([b, c_out, side * side]).index_select(2, &pixels).permute([0, 2, 1]);
            let prepared = trainer.net.prepare(&obs)?;
            let out = trainer.net.forward_prepared(&prepared, &coords);
            let loss = (out - wanted).abs().mean(Kind::Float);
            trainer.adam.step(&loss);
            let _ = loss.double_value(&[]);
        }
        let per_step = started.elapsed().as_secs_f64() / steps.max(1) as f64;
        let peak = match device {
            Device::Cuda(i) => lofi::engine::cuda_memory::allocated_bytes(i)
                .map(|(_, peak)| mib(peak))
                .unwrap_or_else(|| "n/a (no CUDA statistics in this build)".into()),
            _ => cpu_peak_rss()
                .map(|v| format!("{}{}", mib(v), if reset { " RSS" } else { " RSS (process max)" }))
                .unwrap_or_else(|| "n/a".into()),
        };
        println!("{side:>6}  {:>12}  {peak:>14}  {per_step:>10.3}", mib(image_bytes));
    }
    Ok(())
}
