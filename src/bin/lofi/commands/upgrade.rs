//! `lofi upgrade`: rewrites a `.lofi` file in the current format, so that a file written before
//! the format recorded a SHA-256 digest gets one (and loads without the integrity warning).

use std::path::PathBuf;

use anyhow::{Context, Result};
use lofi::model::LoadOptions;

#[derive(clap::Args)]
pub struct Args {
    /// The .lofi model to read.
    model: PathBuf,
    /// Where to write it (may be the same path: the file is replaced atomically).
    #[arg(long)]
    output: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let model = lofi::Model::load(&args.model, LoadOptions::default())?;
    let bytes = model.to_bytes().with_context(|| format!("serialising {}", args.model.display()))?;
    lofi::model_file::write_atomically(&args.output, &bytes)?;
    println!(
        "wrote {} ({} parameters, with its SHA-256 digest)",
        args.output.display(),
        model.parameter_count()
    );
    Ok(())
}
