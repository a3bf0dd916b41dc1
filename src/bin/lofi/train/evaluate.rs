//! Evaluation: whole test images reconstructed through the library's engine (exactly what
//! `lofi reconstruct` and C callers run), scored by PSNR and SSIM.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use lofi::config::LofiConfig;
use lofi::engine::{self, ImageView, OutputView, Region, RunOptions};
use lofi::image_io::Image;
use lofi::kernels::{LofiNet, ParamBuilder, ParamSource, ParamStore};
use lofi::Model;
use serde::Serialize;
use tch::{Device, Tensor};

use super::config::{ResizeMode, TaskKind};
use super::data;
use super::rng::{Rng, STREAM_EVAL};
use super::tasks::Task;

/// One test object: the network's input and the ground truth.
pub struct TestItem {
    pub name: String,
    pub observation: Image,
    pub target: Image,
    /// The observation's noise level, for noise-level-aware models.
    pub noise_level: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Score {
    pub name: String,
    pub psnr: f64,
    pub ssim: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub count: usize,
    pub mean_psnr: f64,
    pub mean_ssim: f64,
    pub images: Vec<Score>,
}

/// The seed of test object `index`'s observation noise.
pub fn test_seed(seed: u64, index: usize) -> i64 {
    Rng::derive(seed, STREAM_EVAL, index as u64).torch_seed()
}

/// Test items of the task from files (folders or files, as `data.test`): observations drawn on
/// the CPU from `seed`, so that every run and device sees the same test set. At most `max`
/// items (0: all).
pub fn load_test_set(
    task: &Task,
    paths: &[PathBuf],
    size: i64,
    mode: ResizeMode,
    seed: u64,
    max: usize,
) -> Result<Vec<TestItem>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let take = if max == 0 { usize::MAX } else { max };
    if task.kind() == TaskKind::Paired {
        return data::load_pairs(paths, task.c_in, task.c_out, size, mode)?
            .into_iter()
            .take(take)
            .map(|(name, obs, tgt)| {
                Ok(TestItem {
                    name,
                    observation: Image::from_tensor(&obs)?,
                    target: Image::from_tensor(&tgt)?,
                    noise_level: None,
                })
            })
            .collect();
    }
    let files = data::list_images(paths, &[])?;
    let files: Vec<PathBuf> = files.into_iter().take(take).collect();
    let sources = data::load_images(&files, task.source_channels(), size, mode)?;
    test_items(task, sources, seed)
}

/// Test items made from (name, source (1, C, H, W)) pairs.
pub fn test_items(task: &Task, sources: Vec<(String, Tensor)>, seed: u64) -> Result<Vec<TestItem>> {
    sources
        .into_iter()
        .enumerate()
        .map(|(i, (name, src))| {
            let obs = task.observe_test(&src, test_seed(seed, i))?;
            let tgt = task.target(&src);
            Ok(TestItem {
                name,
                observation: Image::from_tensor(&obs)?,
                target: Image::from_tensor(&tgt)?,
                noise_level: task.test_noise_level(),
            })
        })
        .collect()
}

/// A model sharing the (detached) values of the parameters being trained.
pub fn snapshot(cfg: &LofiConfig, params: &ParamStore, device: Device) -> Result<Model> {
    let tensors: BTreeMap<String, Tensor> = params.iter().map(|(n, t)| (n.to_string(), t.detach())).collect();
    let mut builder = ParamBuilder::new(ParamSource::Tensors(tensors), device);
    let net = tch::no_grad(|| LofiNet::build(cfg, &mut builder))?;
    let store = builder.finish()?;
    Ok(Model::from_parts(net, store, None))
}

/// The model's reconstruction of `item` on the target's grid.
pub fn reconstruct(
    model: &Model,
    observation: &Image,
    height: usize,
    width: usize,
    budget: usize,
    noise_level: Option<f64>,
) -> Result<Image> {
    let c_out = model.config().c_out as usize;
    let mut out = Image::zeros(height, width, c_out);
    engine::reconstruct_region(
        model,
        ImageView::from_image(observation),
        Region::whole(observation.height, observation.width),
        width,
        height,
        None,
        OutputView { data: &mut out.data, row_stride: width * c_out },
        RunOptions { memory_budget: budget, threads: 0, progress: None, noise_level, ..Default::default() },
    )
    .with_context(|| "reconstructing a test image")?;
    Ok(out)
}

/// Scores every item; returns the summary and the reconstructions of the first `keep` items.
pub fn evaluate(
    model: &Model,
    items: &[TestItem],
    budget: usize,
    keep: usize,
) -> Result<(Summary, Vec<Image>)> {
    if items.is_empty() {
        bail!("no test images");
    }
    let mut scores = Vec::new();
    let mut kept = Vec::new();
    for (i, item) in items.iter().enumerate() {
        // A fixed-level model ignores the item's noise level (it was trained at one).
        let noise_level = model.config().noise_level.and(item.noise_level);
        let rec = reconstruct(
            model,
            &item.observation,
            item.target.height,
            item.target.width,
            budget,
            noise_level,
        )?;
        scores.push(Score {
            name: item.name.clone(),
            psnr: lofi::metrics::psnr(&item.target, &rec)?,
            ssim: lofi::metrics::ssim(&item.target, &rec)
                .with_context(|| format!("SSIM of {}", item.name))?,
        });
        if i < keep {
            kept.push(rec);
        }
    }
    let n = scores.len() as f64;
    let summary = Summary {
        count: scores.len(),
        mean_psnr: scores.iter().map(|s| s.psnr).sum::<f64>() / n,
        mean_ssim: scores.iter().map(|s| s.ssim).sum::<f64>() / n,
        images: scores,
    };
    Ok((summary, kept))
}
