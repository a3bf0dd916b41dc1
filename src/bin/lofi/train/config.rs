//! The training configuration: a TOML file whose every key is also a command-line flag (flags
//! override the file).
//!
//! Sections: `[model]` (the reference constructor's keyword arguments, exactly the keys of a
//! `.lofi` file's configuration), `[task]`, `[data]`, `[train]`, `[eval]`, `[output]`. Unknown keys
//! are an error that names the key and the keys allowed. Relative paths are relative to the
//! working directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lofi::config::LofiConfig;
use serde::{Deserialize, Serialize};

/// What the network learns to invert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// y = x + sigma n (Gaussian noise, images in [0, 1]).
    Denoise,
    /// y = x^T (the INR-LoFi toy task: learn the imaging geometry).
    Transpose,
    /// Matching (observation, target) files: `observations/` and `targets/` of each data folder.
    Paired,
    /// Low-dose CT: FBP of a noisy parallel-beam sinogram -> image.
    Ldct,
    /// Weak lensing: Kaiser-Squires map (Re, Im) of a noisy shear -> convergence.
    Lensing,
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskKind::Denoise => "denoise",
            TaskKind::Transpose => "transpose",
            TaskKind::Paired => "paired",
            TaskKind::Ldct => "ldct",
            TaskKind::Lensing => "lensing",
        })
    }
}

/// How the learning rate evolves over the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `lr` throughout (the reference).
    Constant,
    /// Cosine decay from `lr` at the start to `lr_min` at the end of the run: at the last step
    /// of `max_steps` or `epochs`, or when `max_minutes` is spent, whichever comes first (the
    /// schedule follows the further advanced of the two). A budget in minutes lets one run use a
    /// machine's time whatever its speed: no pilot run to size `max_steps`.
    Cosine,
}

/// When the measurement noise (denoise, ldct, lensing) is drawn during training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseMode {
    /// Fresh noise at every optimisation step.
    Step,
    /// Fresh noise for every object batch, shared by its `steps_per_batch` steps.
    Batch,
    /// One noise realisation per training object, drawn once when the data are loaded (the
    /// reference's denoising loader and its precomputed CT data do this; cheapest for CT).
    Fixed,
}

/// How images are brought to the training (or test) size S x S.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Resize the whole image to S x S (aspect ratio not kept, as the reference's
    /// `Resize((S, S))`): area averaging when shrinking, bilinear when enlarging.
    Area,
    /// Crop the largest centred square, then resize it as `area` does (keeps the aspect ratio).
    SquareArea,
    /// Crop a centred S x S window at the native resolution (the image must be at least S x S).
    Crop,
    /// Every non-overlapping S x S tile (a centred grid) at the native resolution; an image
    /// smaller than S is resized as `square-area` does (training only).
    Tiles,
    /// The fewest S x S windows per axis, evenly spaced and overlapping, that cover the whole
    /// image at the native resolution (a 180 x 180 photograph gives four 128 x 128 windows);
    /// an image smaller than S is resized as `square-area` does (training only).
    Cover,
    /// Keep the native size (evaluation only; training needs S x S).
    None,
}

/// Built-in synthetic data (the simulator), instead of or besides image folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Synthetic {
    /// Random ellipse phantoms (CT).
    Ellipses,
    /// Random convergence fields (weak lensing).
    Convergence,
    /// Sersic-profile galaxy fields (radio astronomy).
    Galaxies,
    /// The dead-leaves model: occluding textured discs of power-law radii (gray or RGB),
    /// license-free natural-image-like training data.
    DeadLeaves,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    pub kind: TaskKind,
    /// denoise: noise standard deviation for images in [0, 1].
    pub sigma: f64,
    /// denoise, ldct, lensing: when training noise is drawn: "step", "batch" or "fixed".
    pub noise: NoiseMode,
    /// ldct: projection angles, evenly spaced over [0, 180) degrees.
    pub angles: usize,
    /// ldct: noise level of the sinogram in dB (relative to its RMS).
    pub snr_db: f64,
    /// lensing: galaxies per square arcminute.
    pub n_gal: f64,
    /// lensing: field of view in degrees.
    pub theta_deg: f64,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            kind: TaskKind::Denoise,
            sigma: 0.15,
            noise: NoiseMode::Step,
            angles: 180,
            snr_db: 30.0,
            n_gal: 30.0,
            theta_deg: 5.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Training images: folders (every PNG, JPEG, TIFF or .npy file in them, sorted by name) or
    /// files. For `paired`, folders holding `observations/` and `targets/`.
    pub train: Vec<PathBuf>,
    /// Test images (evaluated during training), as `train`.
    pub test: Vec<PathBuf>,
    /// Out-of-distribution test images (optional), as `train`.
    pub ood: Vec<PathBuf>,
    /// File names (or stems) left out of `train` (e.g. the held-out test image).
    pub exclude: Vec<String>,
    /// How training images become S x S.
    pub resize: ResizeMode,
    /// Side of the test images (default: the training size `model.image_size`).
    pub test_size: Option<i64>,
    /// How test images are resized (default: `resize`, or `square-area` when that is `tiles`);
    /// "none" keeps their native size.
    pub test_resize: Option<ResizeMode>,
    /// Random flips and 90-degree rotations of every object batch (for tasks whose forward model
    /// commutes with them: denoising, transpose, CT with angles over [0, 180)).
    pub augment: bool,
    /// Synthetic data from the simulator: "ellipses" (CT), "convergence" (lensing), "galaxies"
    /// (radio) or "dead-leaves" (photographs). They replace the `train` files, unless
    /// `synthetic_mix` is set.
    pub synthetic: Option<Synthetic>,
    /// Mix `train_count` synthetic objects into the objects of the `train` files.
    pub synthetic_mix: bool,
    /// Synthetic objects for training and testing (training objects come from `train.seed`,
    /// test objects from `eval.seed`, from disjoint index ranges).
    pub train_count: usize,
    pub test_count: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            train: Vec::new(),
            test: Vec::new(),
            ood: Vec::new(),
            exclude: Vec::new(),
            resize: ResizeMode::SquareArea,
            test_size: None,
            test_resize: None,
            augment: false,
            synthetic: None,
            synthetic_mix: false,
            train_count: 1000,
            test_count: 16,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Objects (images) per batch.
    pub object_batch: usize,
    /// Random pixel positions per step (with replacement, the same for every object of the batch).
    pub pixel_batch: usize,
    /// Optimisation steps per object batch.
    pub steps_per_batch: usize,
    /// Adam's learning rate, betas and epsilon.
    pub lr: f64,
    /// "constant" or "cosine" (decay to `lr_min` at the last step).
    pub lr_schedule: LrSchedule,
    pub lr_min: f64,
    /// Steps over which the learning rate rises linearly from lr / warmup_steps to the
    /// schedule's value (0: none). Fine-tuning a trained model with a fresh Adam state needs it:
    /// Adam's first steps move every parameter by about lr whatever its gradient, which knocked a
    /// trained denoiser 0.6 dB back in 4 steps at lr 2e-4.
    pub warmup_steps: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Passes over the training set (a limit; the first limit reached ends the run).
    pub epochs: Option<u64>,
    /// Optimisation steps in all (a limit, counted from the start of the run, resumes included).
    pub max_steps: Option<u64>,
    /// Wall-clock budget of this invocation in minutes (a limit).
    pub max_minutes: Option<f64>,
    /// Ends this invocation at this step (counted from the start of the run) without changing
    /// the learning-rate schedule, which `max_steps`/`epochs` define: for runs done in phases.
    pub stop_at_step: Option<u64>,
    /// Seeds the initialisation, the data order, the pixel positions and the noise.
    pub seed: u64,
    /// cpu, cuda, cuda:N or auto (CUDA when available).
    pub device: String,
    /// CPU threads (0: libtorch's default).
    pub threads: usize,
    /// Steps between two lines of the training log.
    pub log_every: u64,
    /// Start from the parameters of this `.lofi` model instead of a random initialisation
    /// (fine-tuning). Parameters of the same name and shape are copied; a first layer that is
    /// wider here because the new model has more input channels (a noise-level channel) gets
    /// the old columns and zeros for the new ones, so the new model starts as the old one.
    pub init_from: Option<PathBuf>,
    /// "f32" (default, deterministic on the CPU) or "bf16": mixed precision, the MLPs' products
    /// in bfloat16 on a bfloat16 copy of the float32 parameters made every step (sampling, filter,
    /// loss and Adam stay float32). On the CPU it needs avx512_bf16 or amx_bf16.
    pub precision: String,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            object_batch: 64,
            pixel_batch: 512,
            steps_per_batch: 2,
            lr: 1e-4,
            lr_schedule: LrSchedule::Constant,
            lr_min: 0.0,
            warmup_steps: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            epochs: None,
            max_steps: None,
            max_minutes: None,
            stop_at_step: None,
            seed: 0,
            device: "auto".into(),
            threads: 0,
            log_every: 50,
            init_from: None,
            precision: "f32".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Steps between evaluations on the test (and OOD) set; 0: only at the end.
    pub every: u64,
    /// Test images shown in the sample PNG of each evaluation.
    pub samples: usize,
    /// At most this many test (and OOD) images per evaluation during training (0: all).
    pub max_images: usize,
    /// Working-memory budget of the reconstructions, e.g. "512MiB".
    pub memory_budget: String,
    /// Seed of the test observations' noise (fixed, so that evaluations are comparable).
    pub seed: u64,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection { every: 1000, samples: 4, max_images: 0, memory_budget: "512MiB".into(), seed: 0 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// Run directory: checkpoint/, samples/, log.jsonl, curves.png.
    pub dir: PathBuf,
    /// Where the final model is written (default: `<dir>/model.lofi`).
    pub model: Option<PathBuf>,
    /// Steps between checkpoints (0: only at the end).
    pub checkpoint_every: u64,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection { dir: PathBuf::from("runs/lofi"), model: None, checkpoint_every: 1000 }
    }
}

/// The whole training configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub model: LofiConfig,
    pub task: TaskConfig,
    pub data: DataConfig,
    pub train: TrainSection,
    pub eval: EvalSection,
    pub output: OutputSection,
}

impl TrainConfig {
    /// Parses a TOML configuration (errors name the line and the offending key).
    pub fn from_toml(text: &str, origin: &str) -> Result<TrainConfig> {
        toml::from_str::<TrainConfig>(text)
            .map_err(|e| anyhow::anyhow!("{origin}: {}", e.to_string().trim_end()))
    }

    pub fn read(path: &Path) -> Result<TrainConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        TrainConfig::from_toml(&text, &path.display().to_string())
    }

    /// The configuration with the flags that were given applied on top.
    pub fn with_flags(&self, flags: &ConfigFlags) -> Result<TrainConfig> {
        let mut table = toml::Table::try_from(self).context("serialising the configuration")?;
        flags.apply(&mut table)?;
        let merged: TrainConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("bad flag value: {}", e.to_string().trim_end()))?;
        Ok(merged)
    }

    /// The test (evaluation) side and resize mode.
    pub fn test_size(&self) -> i64 {
        self.data.test_size.unwrap_or(self.model.image_size)
    }
    pub fn test_resize(&self) -> ResizeMode {
        match self.data.test_resize {
            Some(mode) => mode,
            None if matches!(self.data.resize, ResizeMode::Tiles | ResizeMode::Cover) => {
                ResizeMode::SquareArea
            }
            None => self.data.resize,
        }
    }
    pub fn model_path(&self) -> PathBuf {
        self.output.model.clone().unwrap_or_else(|| self.output.dir.join("model.lofi"))
    }

    /// Checks values that the types cannot.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let t = &self.train;
        if t.object_batch == 0 || t.pixel_batch == 0 || t.steps_per_batch == 0 {
            bail!("train.object_batch, train.pixel_batch and train.steps_per_batch must be at least 1");
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            bail!("train.lr = {} must be positive", t.lr);
        }
        if t.lr_min.is_nan() || t.lr_min < 0.0 || t.lr_min > t.lr {
            bail!("train.lr_min = {} must lie in [0, lr]", t.lr_min);
        }
        if !(0.0..1.0).contains(&t.beta1) || !(0.0..1.0).contains(&t.beta2) {
            bail!("train.beta1 and train.beta2 must lie in [0, 1)");
        }
        if t.eps.is_nan() || t.eps <= 0.0 {
            bail!("train.eps must be positive");
        }
        if t.max_minutes.is_some_and(|m| m.is_nan() || m <= 0.0) {
            bail!("train.max_minutes must be positive");
        }
        if t.epochs.is_none() && t.max_steps.is_none() && t.max_minutes.is_none() {
            bail!("no stopping rule: set train.epochs, train.max_steps or train.max_minutes");
        }
        if self.data.resize == ResizeMode::None {
            bail!("data.resize = \"none\" is for test images only: training images must be S x S");
        }
        if matches!(self.test_resize(), ResizeMode::Tiles | ResizeMode::Cover) {
            bail!("data.test_resize = \"tiles\" is for training only: test images are evaluated whole");
        }
        if self.test_size() < 2 {
            bail!("data.test_size must be at least 2");
        }
        if !(self.task.sigma >= 0.0 && self.task.sigma.is_finite()) {
            bail!("task.sigma = {} must be a non-negative number", self.task.sigma);
        }
        if self.task.kind == TaskKind::Ldct && self.task.angles == 0 {
            bail!("task.angles must be at least 1");
        }
        if self.data.synthetic.is_none() && self.data.train.is_empty() {
            bail!("no training data: set data.train (folders or files) or data.synthetic");
        }
        lofi::engine::parse_bytes(&self.eval.memory_budget)
            .with_context(|| format!("eval.memory_budget = {:?}", self.eval.memory_budget))?;
        Ok(())
    }
}

/// Inserts `value` as `[section] key` when the flag was given.
fn set<T: Serialize>(table: &mut toml::Table, section: &str, key: &str, value: &Option<T>) -> Result<()> {
    if let Some(v) = value {
        let v = toml::Value::try_from(v).with_context(|| format!("flag for {section}.{key}"))?;
        let entry =
            table.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let sec = entry.as_table_mut().context("section is not a table")?;
        sec.insert(key.to_string(), v);
    }
    Ok(())
}

fn set_list(table: &mut toml::Table, section: &str, key: &str, value: &[PathBuf]) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    set(table, section, key, &Some(value.to_vec()))
}

/// Every configuration key as a flag. The flag of `[section] some_key` is `--some-key`, except
/// `[task] kind` (`--task`), `[eval]` keys (`--eval-every`, `--eval-samples`, ...) and
/// `[output]` keys (`--output-dir`, `--output-model`, `--checkpoint-every`).
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Configuration overrides (each sets one key of the TOML file)")]
pub struct ConfigFlags {
    // [model]
    /// [model] training resolution S.
    #[arg(long)]
    pub image_size: Option<i64>,
    /// [model] input channels (2: one complex channel).
    #[arg(long)]
    pub c_in: Option<i64>,
    /// [model] output channels.
    #[arg(long)]
    pub c_out: Option<i64>,
    /// [model] MultiMLP or MLP.
    #[arg(long)]
    pub network: Option<String>,
    /// [model] width of every hidden layer.
    #[arg(long)]
    pub hidden_dim: Option<i64>,
    /// [model] hidden layers of every MLP.
    #[arg(long)]
    pub num_layers: Option<i64>,
    /// [model] round, square or random.
    #[arg(long)]
    pub patch_shape: Option<String>,
    /// [model] learned Fourier filter (true/false).
    #[arg(long)]
    pub fourier_filtering: Option<bool>,
    /// [model] initial receptive-field scale.
    #[arg(long)]
    pub recep_scale: Option<f64>,
    /// [model] output = centre sample minus the network output (true/false).
    #[arg(long)]
    pub residual_learning: Option<bool>,
    /// [model] train the base geometry (true/false).
    #[arg(long)]
    pub learned_geo: Option<bool>,
    /// [model] rings N.
    #[arg(long = "N")]
    pub n: Option<i64>,
    /// [model] angles M.
    #[arg(long = "M")]
    pub m: Option<i64>,
    /// [model] coordinate-conditioned patch geometry (true/false).
    #[arg(long = "CCPG")]
    pub ccpg: Option<bool>,
    /// [model] filters per input channel.
    #[arg(long)]
    pub num_filters: Option<i64>,
    /// [model] CCPG blocks T.
    #[arg(long)]
    pub n_deform: Option<i64>,
    /// [model] INR-LoFi coordinate transform (true/false).
    #[arg(long)]
    pub coord_deform: Option<bool>,
    /// [model] features each per-angle MLP hands to the mixer.
    #[arg(long)]
    pub angle_features: Option<i64>,
    /// [model] hidden width of the CCPG blocks.
    #[arg(long)]
    pub ccpg_hidden_dim: Option<i64>,
    /// [model] hidden width of the INR.
    #[arg(long)]
    pub inr_hidden_dim: Option<i64>,
    /// [model] hidden layers of the CCPG and INR networks.
    #[arg(long)]
    pub aux_layers: Option<i64>,
    /// [model] noise_level = { sigma_min, sigma_max }: a noise-level-aware denoiser trained on
    /// sigma drawn per object from this range, "MIN,MAX" (e.g. 0,0.196).
    #[arg(long, value_parser = parse_range)]
    pub noise_level: Option<(f64, f64)>,

    // [task]
    /// [task] kind: denoise, transpose, paired, ldct or lensing.
    #[arg(long)]
    pub task: Option<String>,
    /// [task] denoising noise level (images in [0, 1]).
    #[arg(long)]
    pub sigma: Option<f64>,
    /// [task] denoising noise: step, batch or fixed.
    #[arg(long)]
    pub noise: Option<String>,
    /// [task] CT projection angles over [0, 180).
    #[arg(long)]
    pub angles: Option<usize>,
    /// [task] CT sinogram SNR in dB.
    #[arg(long)]
    pub snr_db: Option<f64>,
    /// [task] lensing: galaxies per square arcminute.
    #[arg(long)]
    pub n_gal: Option<f64>,
    /// [task] lensing: field of view in degrees.
    #[arg(long)]
    pub theta_deg: Option<f64>,

    // [data]
    /// [data] training folders or files (replaces the file's list).
    #[arg(long, num_args = 1..)]
    pub train: Vec<PathBuf>,
    /// [data] test folders or files.
    #[arg(long, num_args = 1..)]
    pub test: Vec<PathBuf>,
    /// [data] out-of-distribution folders or files.
    #[arg(long, num_args = 1..)]
    pub ood: Vec<PathBuf>,
    /// [data] file names left out of the training set.
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<String>,
    /// [data] area, square-area, crop or tiles.
    #[arg(long)]
    pub resize: Option<String>,
    /// [data] side of the test images.
    #[arg(long)]
    pub test_size: Option<i64>,
    /// [data] how test images are resized: area, square-area, crop or none.
    #[arg(long)]
    pub test_resize: Option<String>,
    /// [data] random flips and 90-degree rotations (true/false).
    #[arg(long)]
    pub augment: Option<bool>,
    /// [data] synthetic data: ellipses, convergence, galaxies or dead-leaves.
    #[arg(long)]
    pub synthetic: Option<String>,
    /// [data] mix the synthetic objects into data.train's (true/false).
    #[arg(long)]
    pub synthetic_mix: Option<bool>,
    /// [data] synthetic training objects.
    #[arg(long)]
    pub train_count: Option<usize>,
    /// [data] synthetic test objects.
    #[arg(long)]
    pub test_count: Option<usize>,

    // [train]
    /// [train] objects per batch.
    #[arg(long)]
    pub object_batch: Option<usize>,
    /// [train] pixel positions per step.
    #[arg(long)]
    pub pixel_batch: Option<usize>,
    /// [train] steps per object batch.
    #[arg(long)]
    pub steps_per_batch: Option<usize>,
    /// [train] Adam learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// [train] learning-rate schedule: constant or cosine.
    #[arg(long)]
    pub lr_schedule: Option<String>,
    /// [train] final learning rate of the cosine schedule.
    #[arg(long)]
    pub lr_min: Option<f64>,
    /// [train] steps of linear learning-rate warm-up.
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// [train] Adam beta1.
    #[arg(long)]
    pub beta1: Option<f64>,
    /// [train] Adam beta2.
    #[arg(long)]
    pub beta2: Option<f64>,
    /// [train] Adam epsilon.
    #[arg(long)]
    pub eps: Option<f64>,
    /// [train] passes over the training set.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// [train] optimisation steps in all.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// [train] wall-clock budget of this invocation, minutes (a cosine schedule ends with it when
    /// the time runs out before the steps).
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// [train] end this invocation at this step, keeping the schedule (phased runs).
    #[arg(long)]
    pub stop_at_step: Option<u64>,
    /// [train] random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// [train] cpu, cuda, cuda:N or auto.
    #[arg(long)]
    pub device: Option<String>,
    /// [train] CPU threads (0: libtorch's default).
    #[arg(long)]
    pub threads: Option<usize>,
    /// [train] steps between log lines.
    #[arg(long)]
    pub log_every: Option<u64>,
    /// [train] initialise from this .lofi model (fine-tuning; see the configuration docs).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// [train] f32, or bf16: mixed precision (the MLPs' products in bfloat16).
    #[arg(long)]
    pub precision: Option<String>,

    // [eval]
    /// [eval] every: steps between evaluations (0: only at the end).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// [eval] samples: test images in each sample PNG.
    #[arg(long)]
    pub eval_samples: Option<usize>,
    /// [eval] max_images: test images per evaluation during training (0: all).
    #[arg(long)]
    pub eval_max_images: Option<usize>,
    /// [eval] memory_budget of the reconstructions.
    #[arg(long)]
    pub memory_budget: Option<String>,
    /// [eval] seed of the test observations' noise.
    #[arg(long)]
    pub eval_seed: Option<u64>,

    // [output]
    /// [output] dir: the run directory.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// [output] model: where the final model is written.
    #[arg(long)]
    pub output_model: Option<PathBuf>,
    /// [output] steps between checkpoints (0: only at the end).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
}

impl ConfigFlags {
    fn apply(&self, t: &mut toml::Table) -> Result<()> {
        let m = "model";
        set(t, m, "image_size", &self.image_size)?;
        set(t, m, "c_in", &self.c_in)?;
        set(t, m, "c_out", &self.c_out)?;
        set(t, m, "network", &self.network)?;
        set(t, m, "hidden_dim", &self.hidden_dim)?;
        set(t, m, "num_layers", &self.num_layers)?;
        set(t, m, "patch_shape", &self.patch_shape)?;
        set(t, m, "fourier_filtering", &self.fourier_filtering)?;
        set(t, m, "recep_scale", &self.recep_scale)?;
        set(t, m, "residual_learning", &self.residual_learning)?;
        set(t, m, "learned_geo", &self.learned_geo)?;
        set(t, m, "N", &self.n)?;
        set(t, m, "M", &self.m)?;
        set(t, m, "CCPG", &self.ccpg)?;
        set(t, m, "num_filters", &self.num_filters)?;
        set(t, m, "n_deform", &self.n_deform)?;
        set(t, m, "coord_deform", &self.coord_deform)?;
        set(t, m, "angle_features", &self.angle_features)?;
        set(t, m, "ccpg_hidden_dim", &self.ccpg_hidden_dim)?;
        set(t, m, "inr_hidden_dim", &self.inr_hidden_dim)?;
        set(t, m, "aux_layers", &self.aux_layers)?;
        if let Some((lo, hi)) = self.noise_level {
            let mut range = toml::Table::new();
            range.insert("sigma_min".into(), lo.into());
            range.insert("sigma_max".into(), hi.into());
            set(t, m, "noise_level", &Some(toml::Value::Table(range)))?;
        }

        let k = "task";
        set(t, k, "kind", &self.task)?;
        set(t, k, "sigma", &self.sigma)?;
        set(t, k, "noise", &self.noise)?;
        set(t, k, "angles", &self.angles)?;
        set(t, k, "snr_db", &self.snr_db)?;
        set(t, k, "n_gal", &self.n_gal)?;
        set(t, k, "theta_deg", &self.theta_deg)?;

        let d = "data";
        set_list(t, d, "train", &self.train)?;
        set_list(t, d, "test", &self.test)?;
        set_list(t, d, "ood", &self.ood)?;
        if !self.exclude.is_empty() {
            set(t, d, "exclude", &Some(self.exclude.clone()))?;
        }
        set(t, d, "resize", &self.resize)?;
        set(t, d, "test_size", &self.test_size)?;
        set(t, d, "test_resize", &self.test_resize)?;
        set(t, d, "augment", &self.augment)?;
        set(t, d, "synthetic", &self.synthetic)?;
        set(t, d, "synthetic_mix", &self.synthetic_mix)?;
        set(t, d, "train_count", &self.train_count)?;
        set(t, d, "test_count", &self.test_count)?;

        let r = "train";
        set(t, r, "object_batch", &self.object_batch)?;
        set(t, r, "pixel_batch", &self.pixel_batch)?;
        set(t, r, "steps_per_batch", &self.steps_per_batch)?;
        set(t, r, "lr", &self.lr)?;
        set(t, r, "lr_schedule", &self.lr_schedule)?;
        set(t, r, "lr_min", &self.lr_min)?;
        set(t, r, "warmup_steps", &self.warmup_steps)?;
        set(t, r, "beta1", &self.beta1)?;
        set(t, r, "beta2", &self.beta2)?;
        set(t, r, "eps", &self.eps)?;
        set(t, r, "epochs", &self.epochs)?;
        set(t, r, "max_steps", &self.max_steps)?;
        set(t, r, "max_minutes", &self.max_minutes)?;
        set(t, r, "stop_at_step", &self.stop_at_step)?;
        set(t, r, "seed", &self.seed)?;
        set(t, r, "device", &self.device)?;
        set(t, r, "threads", &self.threads)?;
        set(t, r, "log_every", &self.log_every)?;
        set(t, r, "init_from", &self.init_from)?;
        set(t, r, "precision", &self.precision)?;

        let e = "eval";
        set(t, e, "every", &self.eval_every)?;
        set(t, e, "samples", &self.eval_samples)?;
        set(t, e, "max_images", &self.eval_max_images)?;
        set(t, e, "memory_budget", &self.memory_budget)?;
        set(t, e, "seed", &self.eval_seed)?;

        let o = "output";
        set(t, o, "dir", &self.output_dir)?;
        set(t, o, "model", &self.output_model)?;
        set(t, o, "checkpoint_every", &self.checkpoint_every)?;
        Ok(())
    }
}

fn parse_range(text: &str) -> Result<(f64, f64), String> {
    let parse = |s: &str| s.trim().parse::<f64>().map_err(|_| format!("'{s}' is not a number"));
    match text.split_once(',') {
        Some((a, b)) => Ok((parse(a)?, parse(b)?)),
        None => Err("expected MIN,MAX".into()),
    }
}

/// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
pub fn resolve_device(text: &str) -> Result<tch::Device> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(if tch::Cuda::is_available() { tch::Device::Cuda(0) } else { tch::Device::Cpu });
    }
    let spec: lofi::device::DeviceSpec = text.parse()?;
    Ok(spec.resolve()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_keys_are_named() {
        let cfg = TrainConfig::from_toml(
            "[model]\nhidden_dim = 8\nN = 3\n[train]\nmax_steps = 4\nlr = 1\n[data]\ntrain = [\"x\"]\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(cfg.model.hidden_dim, 8);
        assert_eq!(cfg.train.lr, 1.0);
        let flags = ConfigFlags {
            hidden_dim: Some(16),
            m: Some(5),
            network: Some("MLP".into()),
            ..Default::default()
        };
        let merged = cfg.with_flags(&flags).unwrap();
        assert_eq!(merged.model.hidden_dim, 16);
        assert_eq!(merged.model.n, 3);
        assert_eq!(merged.model.m, 5);
        assert_eq!(merged.model.network, lofi::Network::MLP);
        assert_eq!(merged.train.max_steps, Some(4));
        merged.validate().unwrap();

        let err = TrainConfig::from_toml("[model]\nhiden_dim = 8\n", "t.toml").unwrap_err().to_string();
        assert!(err.contains("hiden_dim") && err.contains("hidden_dim"), "{err}");
        let err = TrainConfig::from_toml("[trian]\nlr = 1\n", "t.toml").unwrap_err().to_string();
        assert!(err.contains("trian"), "{err}");
        let bad = ConfigFlags { network: Some("Transformer".into()), ..Default::default() };
        assert!(cfg.with_flags(&bad).is_err());
    }
}
