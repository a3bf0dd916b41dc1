use std::path::PathBuf;

use anyhow::{Context, Result};
use lofi::config::LofiConfig;
use lofi::kernels::LofiNet;

#[derive(clap::Args)]
pub struct Args {
    /// Model configuration: the reference constructor's keyword arguments as JSON (a file, or
    /// inline JSON starting with '{'). Missing keys take the reference's defaults.
    #[arg(long)]
    config: String,
    /// The .lofi file to write.
    #[arg(long)]
    output: PathBuf,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 0)]
    seed: i64,
}

/// Reads a JSON configuration given inline or as a file.
pub fn read_config(text_or_path: &str) -> Result<LofiConfig> {
    let text = if text_or_path.trim_start().starts_with('{') {
        text_or_path.to_string()
    } else {
        std::fs::read_to_string(text_or_path).with_context(|| format!("cannot read {text_or_path}"))?
    };
    Ok(LofiConfig::from_json(&text)?)
}

pub fn run(args: Args) -> Result<()> {
    let config = read_config(&args.config)?;
    tch::manual_seed(args.seed);
    let (_, params) = LofiNet::init(&config, tch::Device::Cpu)?;
    let notes = serde_json::json!({ "made_by": "lofi init", "seed": args.seed, "trained": false });
    lofi::model_file::write(&args.output, &config, &params, Some(&notes))?;
    println!("wrote {} ({} parameters, untrained)", args.output.display(), params.numel());
    Ok(())
}
