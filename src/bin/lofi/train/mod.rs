//! Training (the tool only: the library holds no training code).
//!
//! The paper's scheme: mini-batches of objects and of pixels. Each step takes the current object
//! batch (`train.object_batch` images, in a seeded random order per epoch), draws
//! `train.pixel_batch` pixel positions with replacement (the same for every object of the
//! batch), filters the observations once (`LofiNet::prepare`), evaluates the network at those
//! pixels only (`forward_prepared`) and minimises the mean absolute error against the targets
//! at the same positions (on-grid, indexed directly), with Adam. Each object batch serves
//! `train.steps_per_batch` steps. Memory is bounded by the batch sizes, not by the resolution
//! (apart from the images and their filtered copies).
//!
//! Reproducibility: the initialisation is drawn on the CPU from `train.seed`; every random draw of
//! step t (object order, pixel positions, noise, augmentation) comes from streams derived from
//! (seed, t), so a run resumed from a checkpoint continues exactly as the uninterrupted run
//! would have (bit for bit on the CPU, with the same thread count).

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod evaluate;
pub mod metrics_log;
pub mod optim;
pub mod plot;
pub mod rng;
pub mod tasks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use lofi::kernels::{LofiNet, ParamBuilder, ParamSource, ParamStore};
use tch::{Device, Kind, Tensor};

use self::config::{LrSchedule, NoiseMode, Synthetic, TaskKind, TrainConfig};
use self::evaluate::TestItem;
use self::metrics_log::{MetricsLog, Record};
use self::optim::{Adam, AdamSettings};
use self::rng::Rng;
use self::tasks::Task;

/// The training set in memory, on the training device.
pub struct TrainSet {
    /// (N, C, S, S): the objects the targets are made from.
    pub sources: Tensor,
    /// (N, c_in, S, S): observations fixed at load time (paired data, CT, fixed noise).
    pub observations: Option<Tensor>,
}

impl TrainSet {
    pub fn len(&self) -> usize {
        self.sources.size()[0] as usize
    }
}

/// Loads the training set described by `cfg` onto `device`.
pub fn load_train_set(cfg: &TrainConfig, task: &Task, device: Device) -> Result<TrainSet> {
    let s = cfg.model.image_size;
    let mixed = cfg.data.synthetic_mix && cfg.data.synthetic.is_some() && task.kind() != TaskKind::Paired;
    if mixed && cfg.data.train.is_empty() {
        bail!("data.synthetic_mix needs data.train files to mix the synthetic objects into");
    }
    let (sources, observations) = if let (Some(kind), false) = (cfg.data.synthetic, mixed) {
        if cfg.data.train_count == 0 {
            bail!("data.train_count must be at least 1");
        }
        (synthetic_objects(kind, task, cfg.data.train_count, s, cfg.train.seed, 0)?, None)
    } else if task.kind() == TaskKind::Paired {
        let pairs = data::load_pairs(&cfg.data.train, task.c_in, task.c_out, s, cfg.data.resize)?;
        let pairs: Vec<_> =
            pairs.into_iter().filter(|(name, _, _)| !cfg.data.exclude.iter().any(|x| x == name)).collect();
        if pairs.is_empty() {
            bail!("no training pairs found");
        }
        let obs = Tensor::cat(&pairs.iter().map(|p| &p.1).collect::<Vec<_>>(), 0);
        let tgt = Tensor::cat(&pairs.iter().map(|p| &p.2).collect::<Vec<_>>(), 0);
        (tgt, Some(obs.to_device(device)))
    } else {
        let files = data::list_images(&cfg.data.train, &cfg.data.exclude)?;
        if files.is_empty() {
            bail!("no training images left after data.exclude");
        }
        let images = data::load_images(&files, task.source_channels(), s, cfg.data.resize)?;
        let mut src = Tensor::cat(&images.iter().map(|p| &p.1).collect::<Vec<_>>(), 0);
        if let (Some(kind), true) = (cfg.data.synthetic, mixed) {
            let extra = synthetic_objects(kind, task, cfg.data.train_count, s, cfg.train.seed, 0)?;
            eprintln!(
                "lofi train: {} file objects mixed with {} synthetic ({kind:?}) objects",
                src.size()[0],
                extra.size()[0]
            );
            src = Tensor::cat(&[src, extra], 0);
        }
        (src, None)
    };
    let sources = sources.to_device(device);
    let observations = match observations {
        Some(o) => Some(o),
        None if task.fixed_observations() => {
            let seed = Rng::derive(cfg.train.seed, rng::STREAM_DATA, 0).torch_seed();
            Some(task.observe_all(&sources, seed, device)?)
        }
        None => None,
    };
    Ok(TrainSet { sources, observations })
}

/// First index of synthetic test objects: far from the training objects' 0..train_count.
const SYNTHETIC_TEST_INDEX: u64 = 1 << 40;

/// `count` objects of the simulator, (N, 1, size, size) on the CPU.
pub fn synthetic_objects(
    kind: Synthetic,
    task: &Task,
    count: usize,
    size: i64,
    seed: u64,
    first: u64,
) -> Result<Tensor> {
    use crate::simulate::{dead_leaves_objects, objects, ConvergenceParams, SimTask};
    if kind == Synthetic::DeadLeaves {
        let channels = task.source_channels();
        if channels != 1 && channels != 3 {
            bail!("dead leaves have one or three channels: the task needs targets with {channels}");
        }
        return dead_leaves_objects(count, size as usize, channels as usize, seed, first);
    }
    if task.source_channels() != 1 {
        bail!("synthetic data have one channel: the task needs targets with {}", task.source_channels());
    }
    let sim = match kind {
        Synthetic::Ellipses => SimTask::Ellipses,
        Synthetic::Convergence => SimTask::Convergence,
        Synthetic::Galaxies => SimTask::Galaxies,
        Synthetic::DeadLeaves => unreachable!("handled above"),
    };
    objects(sim, count, size as usize, size as usize, seed, first, &ConvergenceParams::default())
}

/// The test set (`split` = "test" or "ood") described by `cfg`: files, or, for a synthetic run
/// without test files, `data.test_count` simulated objects at the test size.
pub fn load_test_split(cfg: &TrainConfig, task: &Task, split: &str) -> Result<Vec<TestItem>> {
    let paths = if split == "ood" { &cfg.data.ood } else { &cfg.data.test };
    let seed = if split == "ood" { cfg.eval.seed.wrapping_add(1) } else { cfg.eval.seed };
    if let (Some(kind), "test", true) = (cfg.data.synthetic, split, paths.is_empty()) {
        let mut count = cfg.data.test_count;
        if cfg.eval.max_images > 0 {
            count = count.min(cfg.eval.max_images);
        }
        let size = cfg.test_size();
        let objects = synthetic_objects(kind, task, count, size, cfg.eval.seed, SYNTHETIC_TEST_INDEX)?;
        let name = format!("{kind:?}").to_lowercase();
        let sources =
            (0..count as i64).map(|i| (format!("{name}_{i:05}"), objects.narrow(0, i, 1))).collect();
        return evaluate::test_items(task, sources, seed);
    }
    evaluate::load_test_set(task, paths, cfg.test_size(), cfg.test_resize(), seed, cfg.eval.max_images)
}

/// Normalised coordinates of every pixel of an S x S grid, (S*S, 2), row-major (component 0 = row).
pub fn pixel_grid(size: i64, device: Device) -> Tensor {
    let axis = Tensor::arange(size, (Kind::Float, Device::Cpu)) / (size - 1) as f64 - 0.5;
    let grids = Tensor::meshgrid_indexing(&[&axis, &axis], "ij");
    Tensor::stack(&[grids[0].reshape([-1]), grids[1].reshape([-1])], 1).to_device(device)
}

/// Everything one training step needs.
pub struct Trainer {
    pub cfg: TrainConfig,
    pub device: Device,
    pub task: Task,
    pub net: LofiNet,
    pub params: ParamStore,
    pub adam: Adam,
    pub step: u64,
    grid: Tensor,
    /// Object-batch cache: (object batch index, sources, stored observations).
    batch: Option<(u64, Tensor, Option<Tensor>)>,
    /// The current epoch's object order, on the device.
    order: Option<(u64, Tensor)>,
    /// Pixel positions of the steps `first..first + PIXEL_CHUNK`, (PIXEL_CHUNK, P) on the device:
    /// uploaded in chunks, because a host-to-device copy from pageable memory waits for the GPU
    /// to finish its queue, which would stall the pipeline at every step.
    pixels: Option<(u64, Tensor)>,
    /// Check that every trainable parameter gets a gradient at the next step (the first step of
    /// every invocation).
    step_check: bool,
    /// What that check found.
    pub without_gradient: Vec<String>,
    /// Kind of the MLPs' products: float32, or bfloat16 for mixed precision (`train.precision`).
    mlp_kind: Kind,
    /// The share of `train.max_minutes` spent by this invocation, when it has such a budget: the
    /// cosine schedule ends with the budget when time runs out before the steps do.
    pub time_progress: Option<f64>,
}

/// The MLP kind of `train.precision` on `device`: float32, or bfloat16 where it runs natively.
fn mixed_precision_kind(precision: &str, device: Device) -> Result<Kind> {
    use lofi::device::{CpuFeatures, Precision};
    let precision: Precision = precision.parse()?;
    match precision {
        Precision::F32 => Ok(Kind::Float),
        Precision::BF16 => {
            if device == Device::Cpu {
                precision.check_cpu(CpuFeatures::detect())?;
            }
            Ok(Kind::BFloat16)
        }
        Precision::F16 => {
            bail!("train.precision = \"f16\" would need loss scaling: use \"bf16\" (or \"f32\")")
        }
    }
}

/// A fresh or restored network on `device`, and Adam over its trainable parameters. Fresh
/// parameters are drawn on the CPU (the same initial model on every device) and then moved; the
/// trainable ones become views of the optimiser's flat buffer.
pub fn build_network(
    cfg: &TrainConfig,
    device: Device,
    from: Option<BTreeMap<String, Tensor>>,
) -> Result<(LofiNet, ParamStore, Adam)> {
    let mut tensors = match from {
        Some(t) => t,
        None => {
            tch::manual_seed(cfg.train.seed as i64);
            let (_, params) = LofiNet::init(&cfg.model, Device::Cpu)?;
            let mut fresh: BTreeMap<String, Tensor> =
                params.iter().map(|(n, t)| (n.to_string(), t.detach())).collect();
            if let Some(path) = &cfg.train.init_from {
                init_from_model(&mut fresh, &cfg.model, path)?;
            }
            fresh
        }
    };
    // The base geometry is fixed when it is not learned (the reference's requires_grad=False).
    let frozen = |name: &str| name == "patch" && !cfg.model.learned_geo;
    let trainable: Vec<(String, Tensor)> =
        tensors.iter().filter(|(n, _)| !frozen(n)).map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    let (flat, views) = optim::flatten(&trainable, device);
    for (name, view) in &views {
        tensors.insert(name.clone(), view.shallow_clone());
    }
    let mut builder = ParamBuilder::new(ParamSource::Tensors(tensors), device);
    let net = tch::no_grad(|| LofiNet::build(&cfg.model, &mut builder))?;
    let params = builder.finish()?;
    let t = &cfg.train;
    let settings = AdamSettings { lr: t.lr, beta1: t.beta1, beta2: t.beta2, eps: t.eps };
    let adam = Adam::new(&flat, &views, settings);
    Ok((net, params, adam))
}

/// What one input channel of the sample MLPs holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChannelRole {
    /// The real part of filtered channel i.
    Filtered(i64),
    /// Its imaginary part.
    FilteredImaginary(i64),
    /// Raw input channel c.
    Raw(i64),
    /// The noise level of a noise-aware model.
    NoiseLevel,
}

/// The channels the sample MLPs see, in order: Re and Im of the filtered channels (with the
/// Fourier filter), the raw input, then the noise level.
fn channel_roles(cfg: &lofi::LofiConfig) -> Vec<ChannelRole> {
    let mut roles = Vec::new();
    if cfg.fourier_filtering {
        roles.extend((0..cfg.filter_channels()).map(ChannelRole::Filtered));
        roles.extend((0..cfg.filter_channels()).map(ChannelRole::FilteredImaginary));
    }
    roles.extend((0..cfg.c_in).map(ChannelRole::Raw));
    if cfg.noise_level.is_some() {
        roles.push(ChannelRole::NoiseLevel);
    }
    roles
}

/// Where each of the old model's input channels goes in the new one, such that the new model
/// computes what the old one did: the same role, or, when the new model adds the Fourier filter,
/// raw channel c becomes filtered channel c (the filter starts as the identity, so Re(filtered)
/// equals the raw input, and it is the channel residual learning adds back).
fn channel_map(old: &lofi::LofiConfig, new: &lofi::LofiConfig) -> Option<Vec<usize>> {
    let new_roles = channel_roles(new);
    channel_roles(old)
        .into_iter()
        .map(|role| {
            let target = match role {
                ChannelRole::Raw(c) if !old.fourier_filtering && new.fourier_filtering => {
                    ChannelRole::Filtered(c)
                }
                other => other,
            };
            new_roles.iter().position(|r| *r == target)
        })
        .collect()
}

/// `fresh` (this model's initial value of parameter `name`) with the old model's `source` copied
/// into it, when this model's parameter is a wider version of the old one: a Linear layer with more
/// outputs (hidden units) and/or more inputs, or its bias. The old entries keep their values; new
/// output units keep their fresh initialisation; new inputs of old units get zero weights, so
/// that new hidden units (and new input channels) have no effect until training moves them: the
/// new model computes exactly what the old one did (Net2Net's function-preserving widening, with
/// zeros instead of split copies). The first layer of a sample MLP takes its inputs in (channel,
/// sample) order; `map` places each old channel (`channels`: old and new counts), and with
/// `more_samples_ok` (a MultiMLP with more rings) its old samples come first in the new block.
/// The patch geometry keeps the old rings' and angles' offsets. `None` when the shapes do not
/// allow it.
fn widened_copy(
    name: &str,
    fresh: &Tensor,
    source: &Tensor,
    map: Option<&[usize]>,
    channels: [i64; 2],
    more_samples_ok: bool,
) -> Option<Tensor> {
    let (want, have) = (fresh.size(), source.size());
    if want.len() != have.len() || want.iter().zip(&have).any(|(w, h)| w < h) {
        return None;
    }
    let wide = fresh.to_kind(Kind::Float).copy();
    match want.len() {
        1 if name.ends_with(".bias") => {
            wide.narrow(0, 0, have[0]).copy_(source);
        }
        2 if name.ends_with(".weight") => {
            let mut old_rows = wide.narrow(0, 0, have[0]);
            let _ = old_rows.fill_(0.0);
            let [old_channels, new_channels] = channels;
            let first_layer = name.ends_with(".fcs.0.weight") && !name.starts_with("mixer");
            if first_layer && want[1] != have[1] {
                // Inputs are (channel, sample) columns: place each old channel where the map says,
                // its samples first in the new channel's block (a MultiMLP with more rings sees
                // the old rings first).
                let map = map?;
                if have[1] % old_channels != 0 || want[1] % new_channels != 0 {
                    return None;
                }
                let (old_width, new_width) = (have[1] / old_channels, want[1] / new_channels);
                if new_width < old_width || (new_width != old_width && !more_samples_ok) {
                    return None;
                }
                for (from, &to) in map.iter().enumerate() {
                    old_rows.narrow(1, to as i64 * new_width, old_width).copy_(&source.narrow(
                        1,
                        from as i64 * old_width,
                        old_width,
                    ));
                }
            } else {
                old_rows.narrow(1, 0, have[1]).copy_(source);
            }
        }
        3 if name == "patch" => {
            // (N, M, 2) offsets: the old rings and angles keep their learned positions; new ones
            // start where the initial geometry puts them.
            wide.narrow(0, 0, have[0]).narrow(1, 0, have[1]).copy_(source);
        }
        _ => return None,
    }
    Some(wide)
}

/// Copies the parameters of the model at `path` into `fresh` (fine-tuning). Same name and shape:
/// copied. A wider layer (more input channels: a noise level, the Fourier filter's channels; more
/// hidden units) gets the old values and zeros where they keep the new model computing what the
/// old one did ([`widened_copy`]); parameters the old model lacks (the filter) keep their
/// initialisation, which for the filter is the identity.
fn init_from_model(
    fresh: &mut BTreeMap<String, Tensor>,
    model: &lofi::LofiConfig,
    path: &Path,
) -> Result<()> {
    let old = lofi::model_file::ModelFile::read(path)
        .with_context(|| format!("train.init_from = {}", path.display()))?;
    let old_channels = old.config.network_channels();
    let new_channels = model.network_channels();
    let map = channel_map(&old.config, model);
    // More rings per angle widen each per-angle MLP's input; for the single MLP, whose input mixes
    // rings and angles, only the same geometry maps column for column.
    let more_samples_ok = model.network == lofi::config::Network::MultiMLP
        && old.config.network == model.network
        && model.m >= old.config.m
        && model.patch_shape == old.config.patch_shape;
    let mut copied = 0;
    let mut widened = Vec::new();
    for (name, tensor) in fresh.iter_mut() {
        let Some(source) = old.tensors.get(name) else { continue };
        if name == "filter" && !old.config.fourier_filtering {
            // A model without the filter may still store one (the reference declares it and never
            // uses it): the new filter starts as the identity instead.
            continue;
        }
        let (want, have) = (tensor.size(), source.size());
        if want == have {
            *tensor = source.to_kind(Kind::Float).copy();
            copied += 1;
        } else if let Some(wide) = widened_copy(
            name,
            tensor,
            &source.to_kind(Kind::Float),
            map.as_deref(),
            [old_channels, new_channels],
            more_samples_ok,
        ) {
            *tensor = wide;
            widened.push(name.clone());
        } else {
            bail!(
                "train.init_from: parameter {name} is {have:?} in {}, {want:?} in this model; only layers \
                 widened for more input channels (a noise level, the Fourier filter) or wider hidden layers \
                 can differ",
                path.display()
            );
        }
    }
    eprintln!(
        "lofi train: initialised from {}: {copied} parameters copied, {} widened (old values kept, zeros where they keep the old function)",
        path.display(),
        widened.len()
    );
    Ok(())
}

impl Trainer {
    pub fn new(cfg: TrainConfig, device: Device, from: Option<BTreeMap<String, Tensor>>) -> Result<Trainer> {
        let task = Task::new(&cfg.task, &cfg.model)?;
        let mlp_kind = mixed_precision_kind(&cfg.train.precision, device)?;
        if device.is_cuda() {
            // Float32 products on TF32 tensor cores unless LOFI_CUDA_TF32=0 (as for inference).
            lofi::kernels::linear::apply_cuda_tf32_default();
        }
        let (net, params, adam) = build_network(&cfg, device, from)?;
        let grid = pixel_grid(cfg.model.image_size, device);
        Ok(Trainer {
            cfg,
            device,
            task,
            net,
            params,
            adam,
            step: 0,
            grid,
            batch: None,
            order: None,
            pixels: None,
            step_check: true,
            without_gradient: Vec::new(),
            mlp_kind,
            time_progress: None,
        })
    }

    fn batches_per_epoch(&self, n: usize) -> u64 {
        n.div_ceil(self.cfg.train.object_batch) as u64
    }

    /// The object batch that step `step` trains on (objects of the data set, augmented).
    fn object_batch(&mut self, data: &TrainSet, step: u64) -> Result<(Tensor, Option<Tensor>)> {
        let t = &self.cfg.train;
        let ob = step / t.steps_per_batch as u64;
        if let Some((cached, src, obs)) = &self.batch {
            if *cached == ob {
                return Ok((src.shallow_clone(), obs.as_ref().map(Tensor::shallow_clone)));
            }
        }
        let n = data.len();
        let bpe = self.batches_per_epoch(n);
        let (epoch, k) = (ob / bpe, (ob % bpe) as usize);
        if self.order.as_ref().map(|o| o.0) != Some(epoch) {
            let perm: Vec<i64> = Rng::derive(t.seed, rng::STREAM_ORDER, epoch)
                .permutation(n)
                .into_iter()
                .map(|i| i as i64)
                .collect();
            self.order = Some((epoch, Tensor::from_slice(&perm).to_device(self.device)));
        }
        let order = &self.order.as_ref().expect("order").1;
        let first = k * t.object_batch;
        let index = order.narrow(0, first as i64, (t.object_batch.min(n - first)) as i64);
        let mut src = data.sources.index_select(0, &index);
        let mut obs = data.observations.as_ref().map(|o| o.index_select(0, &index));
        if self.cfg.data.augment {
            let which = Rng::derive(t.seed, rng::STREAM_AUGMENT, ob).below(8);
            src = data::dihedral(&src, which).contiguous();
            obs = obs.map(|o| data::dihedral(&o, which).contiguous());
        }
        self.batch = Some((ob, src.shallow_clone(), obs.as_ref().map(Tensor::shallow_clone)));
        Ok((src, obs))
    }

    /// The pixel positions (flat indices below `count`) of step `step`, on the device: P draws
    /// with replacement from the step's own stream.
    fn pixel_positions(&mut self, step: u64, count: u64) -> Tensor {
        const PIXEL_CHUNK: u64 = 256;
        let hit = matches!(&self.pixels, Some((first, _)) if (*first..*first + PIXEL_CHUNK).contains(&step));
        if !hit {
            let (seed, p) = (self.cfg.train.seed, self.cfg.train.pixel_batch);
            let mut all = Vec::with_capacity(PIXEL_CHUNK as usize * p);
            for s in step..step + PIXEL_CHUNK {
                let mut rng = Rng::derive(seed, rng::STREAM_PIXELS, s);
                all.extend((0..p).map(|_| rng.below(count) as i64));
            }
            let table = Tensor::from_slice(&all).view([PIXEL_CHUNK as i64, p as i64]).to_device(self.device);
            self.pixels = Some((step, table));
        }
        let (first, table) = self.pixels.as_ref().expect("pixel table");
        table.get((step - first) as i64)
    }

    /// One optimisation step; returns the loss (a device scalar, not synchronised) and the pixels
    /// evaluated.
    pub fn train_step(&mut self, data: &TrainSet) -> Result<(Tensor, usize)> {
        let step = self.step;
        let t = self.cfg.train.clone();
        let (src, stored) = self.object_batch(data, step)?;
        let noise_counter = match self.cfg.task.noise {
            NoiseMode::Batch => step / t.steps_per_batch as u64,
            _ => step,
        };
        let noise_seed = Rng::derive(t.seed, rng::STREAM_NOISE, noise_counter).torch_seed();
        let (obs, target, noise_level) = self.task.training_pair(&src, stored.as_ref(), noise_seed)?;
        let (b, c, h, w) = target.size4()?;

        let pixels = self.pixel_positions(step, (h * w) as u64);
        let p = t.pixel_batch as i64;
        let coords = self.grid.index_select(0, &pixels).unsqueeze(0).expand([b, p, 2], true);
        let wanted = target.contiguous().view([b, c, h * w]).index_select(2, &pixels).permute([0, 2, 1]);

        let prepared = self.net.prepare(&obs)?;
        let out = if self.mlp_kind == Kind::Float {
            self.net.forward_conditioned(&prepared, &coords, noise_level.as_ref())
        } else {
            // Mixed precision: a differentiable bfloat16 cast of the MLPs, so that the gradients
            // flow back to the float32 parameters Adam updates.
            self.net.cast_networks(self.mlp_kind).forward_conditioned(
                &prepared,
                &coords,
                noise_level.as_ref(),
            )
        };
        let loss = (out - wanted).abs().mean(Kind::Float);
        let grads = self.adam.gradients(&loss);
        if self.step_check {
            self.step_check = false;
            self.without_gradient = self.adam.without_gradient(&grads);
            // The reference declares CCPG's deform_weights and uniform_weights but never uses them.
            let missing: Vec<&String> = self
                .without_gradient
                .iter()
                .filter(|n| *n != "deform_weights" && *n != "uniform_weights")
                .collect();
            if !missing.is_empty() {
                log::warn!("no gradient reaches: {missing:?}");
            }
        }
        let lr = self.learning_rate(step, data.len());
        self.adam.apply(grads, lr);
        self.step += 1;
        Ok((loss.detach(), (b * p) as usize))
    }

    /// The learning rate of step `step` (0-based) under the schedule.
    pub fn learning_rate(&self, step: u64, n: usize) -> f64 {
        let t = &self.cfg.train;
        let warmup = if step < t.warmup_steps { (step + 1) as f64 / t.warmup_steps as f64 } else { 1.0 };
        warmup * self.scheduled_rate(step, n)
    }

    /// The schedule's learning rate at step `step`, before any warm-up.
    fn scheduled_rate(&self, step: u64, n: usize) -> f64 {
        let t = &self.cfg.train;
        if t.lr_schedule != LrSchedule::Cosine {
            return t.lr;
        }
        let by_steps = match self.step_limit(n) {
            Some(last) if last > 1 => Some(step as f64 / (last - 1) as f64),
            _ => None,
        };
        // The further advanced of steps and minutes; neither known: the schedule has no end.
        let Some(progress) = by_steps.into_iter().chain(self.time_progress).reduce(f64::max) else {
            return t.lr;
        };
        let progress = progress.clamp(0.0, 1.0);
        t.lr_min + 0.5 * (t.lr - t.lr_min) * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// The last step of the run: the first of `max_steps` and `epochs` that is set.
    pub fn step_limit(&self, n: usize) -> Option<u64> {
        let t = &self.cfg.train;
        let per_epoch = self.batches_per_epoch(n) * t.steps_per_batch as u64;
        match (t.max_steps, t.epochs.map(|e| e * per_epoch)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn epoch(&self, n: usize) -> f64 {
        (self.step / self.cfg.train.steps_per_batch as u64) as f64 / self.batches_per_epoch(n) as f64
    }

    /// Notes stored in the model file: how it was made (no timestamps: the same run gives the
    /// same bytes).
    pub fn notes(&self, n: usize) -> serde_json::Value {
        let cfg = &self.cfg;
        let mut task = serde_json::json!({ "kind": cfg.task.kind.to_string() });
        match cfg.task.kind {
            TaskKind::Denoise => task["sigma"] = cfg.task.sigma.into(),
            TaskKind::Ldct => {
                task["angles"] = cfg.task.angles.into();
                task["snr_db"] = cfg.task.snr_db.into();
            }
            TaskKind::Lensing => {
                task["n_gal"] = cfg.task.n_gal.into();
                task["theta_deg"] = cfg.task.theta_deg.into();
            }
            _ => {}
        }
        serde_json::json!({
            "made_by": "lofi train",
            "trained": true,
            "task": task,
            "train_size": cfg.model.image_size,
            "train_objects": n,
            // The training folders by name: their paths are this machine's, not the model's.
            "data": cfg.data.train.iter().map(|p| {
                p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
            }).collect::<Vec<_>>(),
            "steps": self.step,
            "epochs": self.epoch(n),
            "seed": cfg.train.seed,
            "object_batch": cfg.train.object_batch,
            "pixel_batch": cfg.train.pixel_batch,
        })
    }

    pub fn model_bytes(&self, n: usize) -> Result<Vec<u8>> {
        Ok(lofi::model_file::to_bytes(&self.cfg.model, &self.params, Some(&self.notes(n)))?)
    }
}

/// How `lofi train` was asked to run.
pub struct RunOptions {
    pub resume: Option<PathBuf>,
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

/// Evaluates on every split, logs, writes the samples figure; returns the test PSNR.
fn run_evaluation(
    trainer: &Trainer,
    splits: &[(&str, Vec<TestItem>)],
    log: &mut MetricsLog,
    out_dir: &Path,
    say: &dyn Fn(String),
) -> Result<Option<(f64, f64)>> {
    let budget = lofi::engine::parse_bytes(&trainer.cfg.eval.memory_budget)?;
    let model = evaluate::snapshot(&trainer.cfg.model, &trainer.params, trainer.device)?;
    let mut test_scores = None;
    let mut line = format!("eval at step {}:", trainer.step);
    for (split, items) in splits {
        if items.is_empty() {
            continue;
        }
        let keep = if *split == "test" { trainer.cfg.eval.samples } else { 0 };
        let (summary, recs) = evaluate::evaluate(&model, items, budget, keep)?;
        log.push(Record::Eval {
            step: trainer.step,
            split: split.to_string(),
            psnr: summary.mean_psnr,
            ssim: summary.mean_ssim,
            images: summary.count,
        })?;
        line += &format!(
            "  {split} PSNR {:.2} dB, SSIM {:.4} ({} images)",
            summary.mean_psnr, summary.mean_ssim, summary.count
        );
        if *split == "test" {
            test_scores = Some((summary.mean_psnr, summary.mean_ssim));
            if !recs.is_empty() {
                let rows: Vec<_> =
                    items.iter().zip(&recs).map(|(it, r)| (&it.observation, r, &it.target)).collect();
                let dir = out_dir.join("samples");
                std::fs::create_dir_all(&dir)?;
                plot::samples(
                    &dir.join(format!("step-{:08}.png", trainer.step)),
                    &rows,
                    &format!("LoFi (step {})", trainer.step),
                )?;
            }
        }
    }
    say(line);
    Ok(test_scores)
}

fn write_curves(log: &MetricsLog, out_dir: &Path) -> Result<()> {
    let (test, ood) = (log.psnr("test"), log.psnr("ood"));
    let mut series = Vec::new();
    if !test.is_empty() {
        series.push(plot::Series { label: "test", points: &test });
    }
    if !ood.is_empty() {
        series.push(plot::Series { label: "ood", points: &ood });
    }
    plot::curves(&out_dir.join("curves.png"), &log.losses(), &series)
}

/// Training totals: this run's steps, pixels and seconds, and the seconds of the whole training
/// (earlier runs included, when resumed).
#[derive(Default)]
struct RunTotals {
    train_seconds: f64,
    steps: u64,
    pixels: usize,
    time: f64,
}

/// The steps since the last log line: their summed loss (kept on the device until read), count,
/// pixels and seconds.
struct LogWindow {
    loss: Tensor,
    steps: u64,
    pixels: usize,
    time: f64,
    device: Device,
}

impl LogWindow {
    fn new(device: Device) -> Self {
        LogWindow { loss: Tensor::zeros([], (Kind::Float, device)), steps: 0, pixels: 0, time: 0.0, device }
    }

    /// Adds the window to `run`, logs its mean loss and throughput, starts a new window, and
    /// returns (mean loss, steps/s, pixels/s).
    fn close(
        &mut self,
        run: &mut RunTotals,
        trainer: &Trainer,
        n: usize,
        log: &mut MetricsLog,
    ) -> Result<(f64, f64, f64)> {
        let mean = self.loss.double_value(&[]) / self.steps as f64;
        let (sps, pps) = (self.steps as f64 / self.time, self.pixels as f64 / self.time);
        run.train_seconds += self.time;
        run.steps += self.steps;
        run.pixels += self.pixels;
        run.time += self.time;
        log.push(Record::Train {
            step: trainer.step,
            epoch: trainer.epoch(n),
            loss: mean,
            lr: trainer.learning_rate(trainer.step.saturating_sub(1), n),
            steps_per_s: sps,
            pixels_per_s: pps,
            seconds: run.train_seconds,
        })?;
        *self = LogWindow::new(self.device);
        Ok((mean, sps, pps))
    }
}

/// `lofi train`.
pub fn run(cfg: TrainConfig, options: RunOptions) -> Result<()> {
    let started = Instant::now();
    let mut loaded = match &options.resume {
        Some(dir) => Some(checkpoint::load(dir)?),
        None => None,
    };
    cfg.validate()?;
    if let Some(l) = &loaded {
        if l.state.config.model != cfg.model {
            bail!("the [model] configuration differs from the checkpoint's ({})", l.dir.display());
        }
    }
    let device = config::resolve_device(&cfg.train.device)?;
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    let out_dir = cfg.output.dir.clone();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;

    let task = Task::new(&cfg.task, &cfg.model)?;
    let data = load_train_set(&cfg, &task, device)?;
    let n = data.len();
    let splits =
        vec![("test", load_test_split(&cfg, &task, "test")?), ("ood", load_test_split(&cfg, &task, "ood")?)];

    let from = loaded.as_mut().map(|l| std::mem::take(&mut l.model.tensors));
    let mut trainer = Trainer::new(cfg.clone(), device, from)?;
    let mut train_seconds = 0.0;
    if let Some(l) = &loaded {
        trainer.adam.load_state(&l.optimizer, &l.state.adam_steps)?;
        trainer.step = l.state.step;
        train_seconds = l.state.train_seconds;
    }
    let mut log = MetricsLog::open(&out_dir.join("log.jsonl"), loaded.as_ref().map(|l| l.state.step))?;
    let limit = trainer.step_limit(n);
    let max_seconds = cfg.train.max_minutes.map(|m| m * 60.0);
    let s = cfg.model.image_size;
    eprintln!(
        "lofi train: task {}, {} training object(s) at {s} x {s}, {} test, {} OOD; model {} parameters on {:?}; \
         batches of {} objects x {} pixels, {} steps per object batch{}",
        cfg.task.kind,
        n,
        splits[0].1.len(),
        splits[1].1.len(),
        trainer.params.numel(),
        device,
        cfg.train.object_batch.min(n),
        cfg.train.pixel_batch,
        cfg.train.steps_per_batch,
        if loaded.is_some() { format!("; resuming at step {}", trainer.step) } else { String::new() },
    );

    let bar = match limit {
        Some(l) => ProgressBar::new(l),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.step);
    let hidden = bar.is_hidden();
    let say = |line: String| {
        if hidden {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };

    let ckpt_dir = out_dir.join("checkpoint");
    let save_checkpoint = |trainer: &Trainer, train_seconds: f64| -> Result<()> {
        let state = checkpoint::State::new(
            trainer.step,
            trainer.epoch(n),
            checkpoint::RngState {
                scheme: "splitmix64 streams derived from (seed, purpose, step)".into(),
                seed: trainer.cfg.train.seed,
                next_step: trainer.step,
                next_pixel_stream: Rng::derive(trainer.cfg.train.seed, rng::STREAM_PIXELS, trainer.step)
                    .state,
            },
            trainer.adam.steps(),
            train_seconds,
            trainer.cfg.clone(),
        );
        checkpoint::save(&ckpt_dir, &trainer.model_bytes(n)?, &trainer.adam.state_bytes()?, &state)
    };

    let log_every = cfg.train.log_every.max(1);
    let mut window = LogWindow::new(device);
    let mut run = RunTotals { train_seconds, ..Default::default() };
    let mut last_eval_step = None;
    let mut last_ckpt_step = loaded.as_ref().map(|l| l.state.step);
    let mut stopped_by_time = false;
    loop {
        if limit.is_some_and(|l| trainer.step >= l) {
            break;
        }
        if max_seconds.is_some_and(|m| started.elapsed().as_secs_f64() >= m) {
            stopped_by_time = true;
            break;
        }
        if cfg.train.stop_at_step.is_some_and(|s| trainer.step >= s) {
            break;
        }
        trainer.time_progress = max_seconds.map(|m| started.elapsed().as_secs_f64() / m);
        let t0 = Instant::now();
        let (loss, pixels) = trainer.train_step(&data)?;
        window.loss += loss;
        window.steps += 1;
        window.pixels += pixels;
        let at_log = trainer.step % log_every == 0 || limit == Some(trainer.step);
        let eval_now = cfg.eval.every > 0 && trainer.step % cfg.eval.every == 0;
        let ckpt_now = cfg.output.checkpoint_every > 0 && trainer.step % cfg.output.checkpoint_every == 0;
        if at_log || eval_now || ckpt_now {
            // On CUDA the queue drains only when a value is read: do it before the clock stops,
            // so that the window's time covers its steps' work and nothing else.
            let _ = window.loss.double_value(&[]);
        }
        window.time += t0.elapsed().as_secs_f64();
        bar.set_position(trainer.step);
        if at_log {
            let (mean, sps, pps) = window.close(&mut run, &trainer, n, &mut log)?;
            bar.set_message(format!("loss {mean:.5} | {sps:.2} steps/s | {} px/s", fmt_rate(pps)));
            if hidden {
                eprintln!(
                    "step {} (epoch {:.2}): loss {mean:.5}, {sps:.2} steps/s, {} px/s",
                    trainer.step,
                    trainer.epoch(n),
                    fmt_rate(pps)
                );
            }
        }
        if eval_now {
            run_evaluation(&trainer, &splits, &mut log, &out_dir, &say)?;
            write_curves(&log, &out_dir)?;
            last_eval_step = Some(trainer.step);
        }
        if ckpt_now {
            save_checkpoint(&trainer, run.train_seconds + window.time)?;
            last_ckpt_step = Some(trainer.step);
        }
    }
    if window.steps > 0 {
        window.close(&mut run, &trainer, n, &mut log)?;
    }
    let RunTotals { train_seconds, steps: run_steps, pixels: run_pixels, time: run_time } = run;
    bar.finish_and_clear();
    if stopped_by_time {
        eprintln!(
            "lofi train: the time budget of {} minutes is spent; stopping at step {}",
            cfg.train.max_minutes.unwrap_or(0.0),
            trainer.step
        );
    }

    let mut final_scores = None;
    if last_eval_step != Some(trainer.step) && !splits[0].1.is_empty() {
        final_scores = run_evaluation(&trainer, &splits, &mut log, &out_dir, &|l| eprintln!("{l}"))?;
    } else if let Some(Record::Eval { psnr, ssim, .. }) =
        log.records.iter().rev().find(|r| matches!(r, Record::Eval { split, .. } if split == "test"))
    {
        final_scores = Some((*psnr, *ssim));
    }
    write_curves(&log, &out_dir)?;
    if last_ckpt_step != Some(trainer.step) {
        save_checkpoint(&trainer, train_seconds)?;
    }
    let model_path = cfg.model_path();
    if let Some(parent) = model_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    lofi::model_file::write_atomically(&model_path, &trainer.model_bytes(n)?)?;

    let throughput = if run_time > 0.0 {
        format!(
            "{run_steps} steps in {run_time:.1} s of training: {:.3} steps/s, {} pixels/s",
            run_steps as f64 / run_time,
            fmt_rate(run_pixels as f64 / run_time)
        )
    } else {
        "no steps run".to_string()
    };
    let scores = final_scores.map(|(p, s)| format!("; test PSNR {p:.2} dB, SSIM {s:.4}")).unwrap_or_default();
    println!(
        "lofi train: step {} (epoch {:.2}); {throughput}{scores}; wrote {} (checkpoint {}, log {})",
        trainer.step,
        trainer.epoch(n),
        model_path.display(),
        ckpt_dir.display(),
        out_dir.join("log.jsonl").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lofi::config::{LofiConfig, Network, PatchShape};

    /// libtorch's random generator is one per process, and training seeds it (initialisation,
    /// per-step draws): tests that train hold this lock so that the test harness's parallel
    /// threads do not reseed or draw from it between a test's seeding and its draws.
    static GLOBAL_TORCH_RNG: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

    fn tiny(model: LofiConfig) -> TrainConfig {
        let mut cfg = TrainConfig { model, ..Default::default() };
        cfg.train.object_batch = 2;
        cfg.train.pixel_batch = 32;
        cfg.train.device = "cpu".into();
        cfg
    }

    /// A tiny model under a cosine schedule from 1e-3 to 1e-5, and no stopping rule yet.
    fn tiny_cosine() -> TrainConfig {
        let mut cfg = tiny(LofiConfig { image_size: 16, hidden_dim: 8, n: 3, m: 4, ..Default::default() });
        cfg.train.lr = 1e-3;
        cfg.train.lr_schedule = LrSchedule::Cosine;
        cfg.train.lr_min = 1e-5;
        cfg
    }

    /// The warm-up scales the schedule linearly over its first steps (lr / W at step 0, the full
    /// schedule from step W on), under the cosine schedule too.
    #[test]
    fn warmup_ramps_the_learning_rate_up_to_the_schedule() {
        let _rng = GLOBAL_TORCH_RNG.lock();
        let mut cfg = tiny_cosine();
        cfg.train.max_steps = Some(100);
        let plain = Trainer::new(cfg.clone(), Device::Cpu, None).unwrap();
        cfg.train.warmup_steps = 10;
        let warm = Trainer::new(cfg, Device::Cpu, None).unwrap();
        for step in 0..100 {
            let (a, b) = (plain.learning_rate(step, 4), warm.learning_rate(step, 4));
            let want = if step < 10 { a * (step + 1) as f64 / 10.0 } else { a };
            assert!((b - want).abs() <= 1e-15, "step {step}: {b} against {want}");
        }
        assert!(warm.learning_rate(0, 4) < 1.01e-4);
        assert!((plain.learning_rate(99, 4) - 1e-5).abs() < 1e-12);
    }

    /// With a time budget the cosine schedule follows whichever of steps and minutes is further
    /// along: a run limited only by time decays over its minutes, and one whose steps outlast its
    /// minutes reaches `lr_min` when the time is spent.
    #[test]
    fn cosine_schedule_follows_the_time_budget() {
        let _rng = GLOBAL_TORCH_RNG.lock();
        let mut cfg = tiny_cosine();
        cfg.train.max_minutes = Some(1.0);
        let mut by_time = Trainer::new(cfg.clone(), Device::Cpu, None).unwrap();
        // No time measured yet: the schedule's start.
        assert_eq!(by_time.learning_rate(500, 4), 1e-3);
        by_time.time_progress = Some(0.5);
        let mid = 1e-5 + 0.5 * (1e-3 - 1e-5);
        assert!((by_time.learning_rate(500, 4) - mid).abs() < 1e-15);
        by_time.time_progress = Some(1.3);
        assert!((by_time.learning_rate(500, 4) - 1e-5).abs() < 1e-15);

        cfg.train.max_steps = Some(101);
        let mut both = Trainer::new(cfg, Device::Cpu, None).unwrap();
        both.time_progress = Some(0.25);
        // Step 50 of 101 is half-way, further than a quarter of the minutes.
        assert!((both.learning_rate(50, 4) - mid).abs() < 1e-15);
        both.time_progress = Some(0.5);
        assert!((both.learning_rate(10, 4) - mid).abs() < 1e-15);
    }

    /// After one step, every trainable parameter has a non-zero gradient, for CCPG + INR-LoFi with
    /// the filter (MultiMLP and MLP) and for the square geometry with residual learning. Only the
    /// reference's unused `deform_weights` and `uniform_weights` get none.
    #[test]
    fn gradients_reach_every_parameter() {
        let _rng = GLOBAL_TORCH_RNG.lock();
        let base = LofiConfig {
            image_size: 16,
            c_in: 1,
            c_out: 1,
            hidden_dim: 8,
            num_layers: 1,
            n: 3,
            m: 4,
            angle_features: 6,
            ccpg_hidden_dim: 8,
            inr_hidden_dim: 8,
            aux_layers: 1,
            ..Default::default()
        };
        let models = [
            LofiConfig {
                network: Network::MultiMLP,
                ccpg: true,
                n_deform: 2,
                coord_deform: true,
                ..base.clone()
            },
            LofiConfig {
                network: Network::MLP,
                ccpg: true,
                coord_deform: true,
                num_filters: 2,
                ..base.clone()
            },
            LofiConfig {
                network: Network::MultiMLP,
                patch_shape: PatchShape::Square,
                residual_learning: true,
                c_in: 3,
                c_out: 3,
                ..base.clone()
            },
        ];
        for model in models {
            let mut trainer = Trainer::new(tiny(model.clone()), Device::Cpu, None).unwrap();
            tch::manual_seed(1);
            let c = model.c_in;
            let data = TrainSet {
                sources: Tensor::rand([2, c, 16, 16], (Kind::Float, Device::Cpu)),
                observations: None,
            };
            let names: Vec<String> = trainer.params.iter().map(|(n, _)| n.to_string()).collect();
            let before: Vec<Tensor> = trainer.params.iter().map(|(_, t)| t.detach().copy()).collect();
            let _ = trainer.train_step(&data).unwrap();
            let mut missing = trainer.without_gradient.clone();
            missing.sort();
            let expected: Vec<String> =
                if model.ccpg { vec!["deform_weights".into(), "uniform_weights".into()] } else { vec![] };
            assert_eq!(missing, expected, "{model:?}");
            // And every trained parameter moved.
            for ((name, b), (_, a)) in names.iter().zip(&before).zip(trainer.params.iter()) {
                if !expected.contains(name) {
                    assert!(!b.equal(a), "{name} did not change");
                }
            }
        }
    }

    /// Fine-tuning into a wider model (more hidden units, the Fourier filter's channels, more rings) starts
    /// from the old model's function: the widened network's output equals the old one's (to the
    /// float rounding of the identity filter's FFT round trip). A narrower model is refused.
    #[test]
    fn widened_init_keeps_the_old_function() {
        let _rng = GLOBAL_TORCH_RNG.lock();
        let old_cfg = LofiConfig {
            image_size: 16,
            c_in: 1,
            c_out: 1,
            hidden_dim: 8,
            num_layers: 2,
            n: 3,
            m: 4,
            angle_features: 6,
            network: Network::MultiMLP,
            residual_learning: true,
            fourier_filtering: false,
            noise_level: Some(lofi::config::NoiseLevelInput { sigma_min: 0.0, sigma_max: 0.2 }),
            ..Default::default()
        };
        tch::manual_seed(5);
        let (old_net, old_params) = LofiNet::init(&old_cfg, Device::Cpu).unwrap();
        let dir = std::env::temp_dir().join(format!("lofi-widen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.lofi");
        let old_model = lofi::Model::from_parts(old_net, old_params, None);
        std::fs::write(&path, old_model.to_bytes().unwrap()).unwrap();

        let new_cfg =
            LofiConfig { hidden_dim: 12, fourier_filtering: true, num_filters: 2, n: 5, ..old_cfg.clone() };
        let mut cfg = tiny(new_cfg.clone());
        cfg.train.init_from = Some(path.clone());
        let trainer = Trainer::new(cfg, Device::Cpu, None).unwrap();

        tch::manual_seed(6);
        let image = Tensor::rand([1, 1, 16, 16], (Kind::Float, Device::Cpu));
        let coords = Tensor::rand([1, 40, 2], (Kind::Float, Device::Cpu)) - 0.5;
        let level = Tensor::from_slice(&[0.1f32]);
        let old_net = old_model.pixel_net();
        let want = old_net.forward_conditioned(&old_net.prepare(&image).unwrap(), &coords, Some(&level));
        let got = tch::no_grad(|| {
            trainer.net.forward_conditioned(&trainer.net.prepare(&image).unwrap(), &coords, Some(&level))
        });
        let diff = (&got - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "the widened model differs by {diff}");
        // The new units are really there: the first per-angle layer is 12 x (6 channels x 5 rings):
        // Re and Im of two filters, the raw input, the noise level.
        let first =
            trainer.params.iter().find(|(n, _)| n.ends_with("MLP.0.fcs.0.weight")).map(|(_, t)| t.size());
        assert_eq!(
            first,
            Some(vec![12, 30]),
            "{:?}",
            trainer.params.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );

        let narrower = LofiConfig { hidden_dim: 4, ..old_cfg };
        let mut cfg = tiny(narrower);
        cfg.train.init_from = Some(path);
        let err =
            Trainer::new(cfg, Device::Cpu, None).err().expect("a narrower model is refused").to_string();
        assert!(err.contains("only layers widened"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Without a learned geometry the base patch stays fixed.
    #[test]
    fn a_fixed_geometry_is_not_trained() {
        let _rng = GLOBAL_TORCH_RNG.lock();
        let model = LofiConfig {
            image_size: 16,
            c_in: 1,
            c_out: 1,
            hidden_dim: 8,
            learned_geo: false,
            n: 3,
            m: 4,
            ..Default::default()
        };
        let mut trainer = Trainer::new(tiny(model), Device::Cpu, None).unwrap();
        let data = TrainSet {
            sources: Tensor::rand([2, 1, 16, 16], (Kind::Float, Device::Cpu)),
            observations: None,
        };
        let patch = trainer.params.get("patch").unwrap().detach().copy();
        let _ = trainer.train_step(&data).unwrap();
        assert!(patch.equal(trainer.params.get("patch").unwrap()));
        assert!(trainer.without_gradient.is_empty());
    }

    /// bf16 mixed precision: where the CPU has bfloat16 instructions, the gradients reach every
    /// parameter through the cast and the losses follow the float32 run's within bfloat16's
    /// rounding; elsewhere the trainer refuses it naming the instructions. f16 is refused.
    #[test]
    fn bf16_mixed_precision_trains_like_f32() {
        let _rng = GLOBAL_TORCH_RNG.lock();
        let model = LofiConfig {
            image_size: 16,
            c_in: 1,
            c_out: 1,
            hidden_dim: 16,
            n: 3,
            m: 4,
            fourier_filtering: true,
            ..Default::default()
        };
        let with = |precision: &str| {
            let mut cfg = tiny(model.clone());
            cfg.train.precision = precision.into();
            Trainer::new(cfg, Device::Cpu, None)
        };
        assert!(with("f16").err().unwrap().to_string().contains("bf16"));
        if !lofi::device::CpuFeatures::detect().has_native_bf16() {
            let err = with("bf16").err().unwrap().to_string();
            assert!(err.contains("avx512_bf16"), "{err}");
            return;
        }
        tch::manual_seed(3);
        let data = TrainSet {
            sources: Tensor::rand([2, 1, 16, 16], (Kind::Float, Device::Cpu)),
            observations: None,
        };
        let losses = |trainer: &mut Trainer| -> Vec<f64> {
            (0..20).map(|_| trainer.train_step(&data).unwrap().0.double_value(&[])).collect()
        };
        let mut f32_trainer = with("f32").unwrap();
        let mut bf16_trainer = with("bf16").unwrap();
        let (a, b) = (losses(&mut f32_trainer), losses(&mut bf16_trainer));
        assert!(bf16_trainer.without_gradient.is_empty(), "{:?}", bf16_trainer.without_gradient);
        for (step, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= 2e-2 * x.abs(), "step {step}: f32 loss {x}, bf16 loss {y}");
        }
        // Training moved the parameters, and the two runs' parameters stay close.
        for ((name, p), (_, q)) in f32_trainer.params.iter().zip(bf16_trainer.params.iter()) {
            let scale = p.abs().max().double_value(&[]).max(1e-3);
            let diff = (p - q).abs().max().double_value(&[]);
            assert!(diff <= 5e-2 * scale, "{name}: differs by {diff} (scale {scale})");
        }
    }
}
