use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Reference state dict as safetensors (complex tensors as a trailing axis of 2).
    #[arg(long)]
    state_dict: PathBuf,
    /// The reference constructor's keyword arguments as JSON.
    #[arg(long)]
    hyper: PathBuf,
    /// The .lofi file to write.
    #[arg(long)]
    output: PathBuf,
    /// Optional notes (a JSON object: task, data, noise level...) stored in the model.
    #[arg(long)]
    notes: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let state = std::fs::read(&args.state_dict)
        .with_context(|| format!("cannot read {}", args.state_dict.display()))?;
    let hyper = std::fs::read_to_string(&args.hyper)
        .with_context(|| format!("cannot read {}", args.hyper.display()))?;
    let notes = match &args.notes {
        Some(text) => Some(serde_json::from_str::<serde_json::Value>(text).context("--notes is not JSON")?),
        None => None,
    };
    let bytes = lofi::model_file::import_reference(&state, &hyper, notes.as_ref())
        .with_context(|| format!("importing {}", args.state_dict.display()))?;
    lofi::model_file::write_atomically(&args.output, &bytes)?;
    let model = lofi::Model::load_from_memory(&bytes, Default::default())?;
    println!(
        "wrote {} ({} parameters, trained at {}x{})",
        args.output.display(),
        model.parameter_count(),
        model.config().image_size,
        model.config().image_size
    );
    Ok(())
}
