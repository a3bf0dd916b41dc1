//! `lofi train`: train a LoFi model from a TOML configuration (see `configs/`); every key of the
//! file is also a flag, and flags override the file.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::train::config::{ConfigFlags, TrainConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The training configuration (TOML). With --resume it may be left out: the checkpoint holds
    /// the configuration it was trained with.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue a run exactly where its checkpoint left it: the checkpoint directory, or the run
    /// directory that holds checkpoint/. Flags (e.g. --max-steps) still apply.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Print the resolved configuration (file, checkpoint and flags merged) as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Instead of training, run a few steps on random images at each of --bench-sizes and print
    /// the peak memory (CUDA allocator peak, or the process's peak RSS on the CPU).
    #[arg(long)]
    bench_memory: bool,
    /// Image sides for --bench-memory.
    #[arg(long, value_delimiter = ',', default_value = "128,512,1024")]
    bench_sizes: Vec<i64>,
    /// Steps per side for --bench-memory.
    #[arg(long, default_value_t = 3)]
    bench_steps: usize,
    #[command(flatten)]
    flags: Box<ConfigFlags>,
}

pub fn run(args: Args) -> Result<()> {
    let base = match (&args.config, &args.resume) {
        (Some(path), _) => TrainConfig::read(path)?,
        (None, Some(dir)) => crate::train::checkpoint::load(dir)?.state.config,
        (None, None) => bail!("give --config FILE.toml (or --resume DIR)"),
    };
    let cfg = base.with_flags(&args.flags)?;
    if args.print_config {
        print!("{}", toml::to_string(&cfg)?);
        return Ok(());
    }
    cfg.validate()?;
    if args.bench_memory {
        if args.bench_sizes.iter().any(|&s| s < 2) {
            bail!("--bench-sizes must be at least 2");
        }
        return crate::train::bench::bench_memory(&cfg, &args.bench_sizes, args.bench_steps.max(1));
    }
    crate::train::run(cfg, crate::train::RunOptions { resume: args.resume })
}
