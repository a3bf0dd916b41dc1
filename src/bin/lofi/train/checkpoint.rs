//! Checkpoints: a directory holding `model.lofi` (the parameters, a normal model file),
//! `optimizer.safetensors` (Adam's moments) and `state.json` (step, epoch, RNG state, Adam's
//! step counts, the full configuration). Written to a temporary directory and renamed into place,
//! so that a crash never leaves a half-written checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;

pub const MODEL: &str = "model.lofi";
pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const STATE: &str = "state.json";
const VERSION: u32 = 1;

/// Where the data randomness stands. Every draw of step t comes from streams derived from
/// (seed, purpose, t) (see `rng.rs`), so the seed and the next step determine it completely;
/// the next step's pixel stream is recorded too, for inspection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RngState {
    pub scheme: String,
    pub seed: u64,
    pub next_step: u64,
    pub next_pixel_stream: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Optimisation steps done.
    pub step: u64,
    /// Object batches done / batches per epoch.
    pub epoch: f64,
    pub rng: RngState,
    /// Adam's step count per parameter.
    pub adam_steps: BTreeMap<String, u64>,
    /// Seconds spent training (not evaluating) so far, over all invocations.
    pub train_seconds: f64,
    pub config: TrainConfig,
}

impl State {
    pub fn new(
        step: u64,
        epoch: f64,
        rng: RngState,
        adam_steps: BTreeMap<String, u64>,
        train_seconds: f64,
        config: TrainConfig,
    ) -> State {
        State { version: VERSION, step, epoch, rng, adam_steps, train_seconds, config }
    }
}

/// Writes a checkpoint directory atomically.
pub fn save(dir: &Path, model_bytes: &[u8], optimizer_bytes: &[u8], state: &State) -> Result<()> {
    let partial = sibling(dir, "partial");
    let old = sibling(dir, "old");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(partial.join(name), bytes)
            .with_context(|| format!("cannot write {}", partial.join(name).display()))
    };
    write(MODEL, model_bytes)?;
    write(OPTIMIZER, optimizer_bytes)?;
    write(STATE, serde_json::to_string_pretty(state)?.as_bytes())?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(dir, &old).with_context(|| format!("cannot move {} aside", dir.display()))?;
    }
    std::fs::rename(&partial, dir).with_context(|| format!("cannot write {}", dir.display()))?;
    if old.exists() {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name =
        dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkpoint".into());
    dir.with_file_name(format!("{name}.{suffix}"))
}

/// A checkpoint read back.
pub struct Loaded {
    pub dir: PathBuf,
    pub state: State,
    pub model: lofi::model_file::ModelFile,
    pub optimizer: Vec<u8>,
}

/// Reads `dir` (a checkpoint directory, or a run directory holding `checkpoint/`).
pub fn load(dir: &Path) -> Result<Loaded> {
    let dir = if dir.join(STATE).is_file() {
        dir.to_path_buf()
    } else if dir.join("checkpoint").join(STATE).is_file() {
        dir.join("checkpoint")
    } else {
        bail!("{}: not a checkpoint (no {STATE}, nor checkpoint/{STATE})", dir.display());
    };
    let text = std::fs::read_to_string(dir.join(STATE))
        .with_context(|| format!("cannot read {}", dir.join(STATE).display()))?;
    let state: State = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid checkpoint state", dir.join(STATE).display()))?;
    if state.version > VERSION {
        bail!(
            "{}: checkpoint version {} is newer than this lofi reads ({VERSION})",
            dir.display(),
            state.version
        );
    }
    let model = lofi::model_file::ModelFile::read(&dir.join(MODEL))?;
    if model.config != state.config.model {
        bail!("{}: the model file's configuration differs from the checkpoint's", dir.display());
    }
    let optimizer = std::fs::read(dir.join(OPTIMIZER))
        .with_context(|| format!("cannot read {}", dir.join(OPTIMIZER).display()))?;
    Ok(Loaded { dir, state, model, optimizer })
}
