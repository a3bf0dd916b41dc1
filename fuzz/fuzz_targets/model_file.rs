//! Arbitrary bytes as a `.lofi` file: parsing (safetensors, metadata, digest, configuration),
//! building the model, and running it on a small image. A clean error or a working model; any
//! panic is a finding (libfuzzer-sys aborts on panics, caught or not).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lofi::engine::{self, ImageView, OutputView, Region, RunOptions};
use lofi::model::LoadOptions;

fuzz_target!(|data: &[u8]| {
    let _ = lofi::model_file::ModelFile::from_bytes(data);
    let Ok(model) = lofi::Model::load_from_memory(data, LoadOptions::default()) else { return };
    let cfg = model.config();
    let (h, w, c) = (5, 6, cfg.c_in as usize);
    if c > 8 || cfg.c_out > 8 {
        return;
    }
    let pixels: Vec<f32> = (0..h * w * c).map(|i| (i % 7) as f32 / 7.0).collect();
    let mut out = vec![0f32; h * w * cfg.c_out as usize];
    let noise_level = cfg.noise_level.map(|r| 0.5 * (r.sigma_min + r.sigma_max));
    let _ = engine::reconstruct_region(
        &model,
        ImageView { data: &pixels, height: h, width: w, channels: c, row_stride: w * c },
        Region::whole(h, w),
        w,
        h,
        None,
        OutputView { data: &mut out, row_stride: w * cfg.c_out as usize },
        RunOptions { memory_budget: 64 << 20, threads: 1, progress: None, noise_level },
    );
});
