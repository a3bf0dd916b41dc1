//! Input streaming: each batch reads only the window of the input its samples reach, and the
//! result equals the whole-image path bit for bit (one thread), with and without the Fourier
//! filter; models of unbounded reach fall back to the whole image.

use std::path::Path;

use lofi::config::{LofiConfig, Network};
use lofi::engine::{self, ImageView, InputSource, OutputView, Region, RunOptions, Window};
use lofi::model::LoadOptions;
use lofi::Model;

fn load(path: &str) -> Model {
    Model::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path), LoadOptions::default()).unwrap()
}

/// A model built from a configuration (random weights, seeded).
fn built(cfg: LofiConfig) -> Model {
    tch::manual_seed(7);
    let (net, params) = lofi::kernels::LofiNet::init(&cfg, tch::Device::Cpu).unwrap();
    Model::from_parts(net, params, None)
}

fn tiny(fourier_filtering: bool) -> LofiConfig {
    LofiConfig {
        image_size: 16,
        c_in: 1,
        c_out: 1,
        network: Network::MultiMLP,
        hidden_dim: 8,
        num_layers: 2,
        fourier_filtering,
        ..LofiConfig::default()
    }
}

/// A deterministic image with detail at every scale (H, W, C).
fn image(h: usize, w: usize, c: usize) -> Vec<f32> {
    (0..h * w * c)
        .map(|i| {
            let (p, ch) = (i / c, i % c);
            let (y, x) = ((p / w) as f32, (p % w) as f32);
            0.5 + 0.3 * (0.37 * y + ch as f32).sin() * (0.23 * x).cos()
                + 0.1 * ((y * 7.0 + x * 13.0) % 5.0 - 2.0) / 2.0
        })
        .collect()
}

/// A square gray input of the given side whose values are computed, never stored (inputs far
/// larger than a test wants to allocate).
struct Ramp(usize);

impl InputSource for Ramp {
    fn height(&self) -> usize {
        self.0
    }
    fn width(&self) -> usize {
        self.0
    }
    fn channels(&self) -> usize {
        1
    }
    fn read_block(
        &self,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        out: &mut Vec<f32>,
    ) -> lofi::Result<()> {
        for r in rows {
            out.extend(cols.clone().map(|c| ((r * 7 + c * 3) % 11) as f32 / 11.0));
        }
        Ok(())
    }
}

fn options(budget: usize, sigma: Option<f64>) -> RunOptions<'static> {
    RunOptions { memory_budget: budget, threads: 1, noise_level: sigma, ..Default::default() }
}

/// Region reconstructions, streamed and whole-image, over several regions (on the grid, zoomed in,
/// zoomed out, half outside the image so that reflections are read): identical bits. Returns the
/// streamed reports.
fn assert_streamed_equals_whole(
    model: &Model,
    h: usize,
    w: usize,
    budget: usize,
    sigma: Option<f64>,
) -> Vec<engine::RunReport> {
    let c_in = model.config().c_in as usize;
    let c_out = model.config().c_out as usize;
    let img = image(h, w, c_in);
    let view = ImageView { data: &img, height: h, width: w, channels: c_in, row_stride: w * c_in };
    let (wf, hf) = (w as f64, h as f64);
    let cases = [
        (Region::whole(h, w), w, h),
        (Region { x0: 3.25, y0: 5.5, x1: wf * 0.6, y1: hf * 0.7 }, 53, 47),
        (Region::whole(h, w), w / 3, h / 2),
        (Region { x0: -9.0, y0: hf - 12.0, x1: wf + 4.5, y1: hf + 6.0 }, 40, 30),
    ];
    let mut reports = vec![];
    for (region, gw, gh) in cases {
        let mut streamed = vec![f32::NAN; gw * gh * c_out];
        let mut whole = vec![f32::NAN; gw * gh * c_out];
        fn out(d: &mut [f32], row_stride: usize) -> OutputView<'_> {
            OutputView { data: d, row_stride }
        }
        let r = engine::reconstruct_region(
            model,
            view,
            region,
            gw,
            gh,
            None,
            out(&mut streamed, gw * c_out),
            options(budget, sigma),
        )
        .unwrap();
        engine::reconstruct_region_whole_image(
            model,
            view,
            region,
            gw,
            gh,
            None,
            out(&mut whole, gw * c_out),
            options(budget, sigma),
        )
        .unwrap();
        assert!(whole.iter().all(|v| v.is_finite()));
        let differ = streamed.iter().zip(&whole).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{region:?} {gw} x {gh}: {differ} of {} values differ", whole.len());
        reports.push(r);
    }
    // Points, inside and outside the image.
    let points: Vec<[f64; 2]> = (0..500)
        .map(|i| [((i * 37) % 130) as f64 * wf / 100.0 - 10.0, ((i * 53) % 120) as f64 * hf / 100.0 - 8.0])
        .collect();
    let mut streamed = vec![f32::NAN; points.len() * c_out];
    let mut whole = vec![f32::NAN; points.len() * c_out];
    engine::reconstruct_points(model, view, &points, &mut streamed, options(budget, sigma)).unwrap();
    engine::reconstruct_points_whole_image(model, view, &points, &mut whole, options(budget, sigma)).unwrap();
    assert!(streamed.iter().zip(&whole).all(|(a, b)| a.to_bits() == b.to_bits()), "points differ");
    reports
}

#[test]
fn streamed_input_equals_the_whole_image_with_the_filter() {
    for name in ["tiny-gray.lofi", "tiny-rgb.lofi", "tiny-complex.lofi"] {
        let model = load(&format!("tests/fixtures/models/{name}"));
        assert!(model.config().fourier_filtering);
        let reports = assert_streamed_equals_whole(&model, 150, 130, 12 << 20, None);
        assert!(reports.iter().all(|r| r.batches > 4), "{name}: the budget must force many windows");
    }
    let sigma = load("tests/fixtures/models/tiny-gray-sigma.lofi");
    assert_streamed_equals_whole(&sigma, 90, 110, 6 << 20, Some(0.1));
}

#[test]
fn streamed_input_equals_the_whole_image_without_the_filter() {
    let model = built(tiny(false));
    let reports = assert_streamed_equals_whole(&model, 140, 170, 2 << 20, None);
    assert!(reports[0].batches > 4);
    // The shipped noise-level-aware denoiser (residual learning, 128 x 128 training size).
    let denoiser = load("models/denoise-gray.lofi");
    assert!(!denoiser.config().fourier_filtering);
    assert_streamed_equals_whole(&denoiser, 96, 80, 24 << 20, Some(25.0 / 255.0));
}

#[test]
fn the_ldct_filter_model_streams_bit_for_bit() {
    let model = load("models/ldct-ellipses.lofi");
    assert!(model.config().fourier_filtering);
    assert_streamed_equals_whole(&model, 72, 64, 48 << 20, None);
}

/// The window a batch reads does not grow with the input: the plan under one budget is the same
/// for a 256^2 and a 4096^2 input (without the filter), and the window is a small part of it.
#[test]
fn the_plan_does_not_depend_on_the_input_size() {
    let model = built(tiny(false));
    let budget = 8 << 20;
    let plan = |n: usize| {
        let source = Ramp(n);
        let job = engine::GridJob { region: Region::whole(n, n), grid_width: n, grid_height: n };
        engine::Streamer::new(&model, &source, Some((&job, 0..n)), budget, None).unwrap().plan()
    };
    let (small, large) = (plan(256), plan(4096));
    assert_eq!(small, large);
    assert!(large.estimated_bytes() <= budget);
    assert!(large.image_bytes > 0 && large.image_bytes < budget / 4, "{large:?}");
    // The whole-image path needs the whole image inside the budget: 4096^2 does not fit in 8 MiB.
    assert!(engine::plan_for(&model, 4096, 4096, budget).is_err());
    // ...but the streamed one runs there, reading windows only.
    let n = 4096;
    let source = Ramp(n);
    let job = engine::GridJob { region: Region::whole(n, n), grid_width: n, grid_height: n };
    let streamer = engine::Streamer::new(&model, &source, Some((&job, 0..n)), budget, None).unwrap();
    assert!(streamer.is_streaming());
    let mut out = vec![0f32; 64 * n];
    let window = Window { col0: 0, row0: 2000, cols: n, rows: 64 };
    streamer.run_grid(&job, window, OutputView { data: &mut out, row_stride: n }, &mut None).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
}

/// CCPG and INR-LoFi reach anywhere: they use the whole image, with the same results as the
/// whole-image path.
#[test]
fn unbounded_models_fall_back_to_the_whole_image() {
    for cfg in [
        LofiConfig { ccpg: true, n_deform: 1, ccpg_hidden_dim: 8, ..tiny(false) },
        LofiConfig { coord_deform: true, inr_hidden_dim: 8, ..tiny(true) },
    ] {
        let model = built(cfg);
        assert!(engine::stream::reach(&model, 50, 40).is_none());
        let img = image(50, 40, 1);
        let view = ImageView { data: &img, height: 50, width: 40, channels: 1, row_stride: 40 };
        let job = engine::GridJob { region: Region::whole(50, 40), grid_width: 40, grid_height: 50 };
        let streamer = engine::Streamer::new(&model, &view, Some((&job, 0..50)), 8 << 20, None).unwrap();
        assert!(!streamer.is_streaming());
        assert_streamed_equals_whole(&model, 50, 40, 8 << 20, None);
    }
    assert!(engine::stream::reach(&built(tiny(false)), 50, 40).is_some());
}

/// A filter that runs in bands reports every piece of its passes before the first batch (no pixel
/// done yet, the call's total), then the batches follow; cancelling during the passes ends the
/// call before any batch. The plan several devices share is the one each of their streamers
/// makes, found without filtering.
#[test]
fn a_spilled_filter_reports_its_passes_and_can_be_cancelled() {
    use lofi::engine::Progress;
    let model = load("tests/fixtures/models/tiny-gray.lofi");
    let (h, w) = (300, 280);
    let img = image(h, w, 1);
    let view = ImageView { data: &img, height: h, width: w, channels: 1, row_stride: w };
    let budget = lofi::engine::budget::bytes_for_image(model.config(), h, w, 4) * 3 / 4;
    let run = |progress: &mut dyn FnMut(Progress) -> bool, out: &mut [f32]| {
        engine::reconstruct_region(
            &model,
            view,
            Region::whole(h, w),
            w,
            h,
            None,
            OutputView { data: out, row_stride: w },
            RunOptions { progress: Some(progress), ..options(budget, None) },
        )
    };
    let mut events = Vec::new();
    let mut out = vec![f32::NAN; h * w];
    run(
        &mut |p| {
            events.push(p);
            true
        },
        &mut out,
    )
    .unwrap();
    let n = events[0].filter.expect("the filter's passes come first")[1];
    assert!(n >= 3, "{n} pieces");
    let (passes, batches) = events.split_at(n);
    assert!(passes.iter().zip(1..).all(|(p, k)| p.filter == Some([k, n]) && p.done == 0 && p.total == h * w));
    assert!(batches.len() > 1 && batches.iter().all(|p| p.filter.is_none() && p.total == h * w));
    assert!(batches.windows(2).all(|b| b[0].done < b[1].done) && batches[batches.len() - 1].done == h * w);
    assert!(out.iter().all(|v| v.is_finite()));

    let mut calls = 0;
    let mut cancelled = vec![f32::NAN; h * w];
    let err = run(
        &mut |p| {
            calls += 1;
            p.done > 0 || p.filter != Some([2, n])
        },
        &mut cancelled,
    )
    .unwrap_err();
    assert!(matches!(err, lofi::Error::Cancelled), "{err}");
    assert_eq!(calls, 2, "no call after the cancel");
    assert!(cancelled.iter().all(|v| v.is_nan()), "no batch ran");

    let job = engine::GridJob { region: Region::whole(h, w), grid_width: w, grid_height: h };
    let streamer = engine::Streamer::new(&model, &view, Some((&job, 0..h)), budget, None).unwrap();
    assert!(streamer.filter_spilled());
    let planned = engine::stream::plan_of(&model, &view, (&job, 0..h), budget).unwrap();
    assert_eq!(planned, (streamer.plan(), streamer.tile()));

    // Two devices: the filter is computed once, on the calling thread (its passes reported
    // once), shared, and the result is one device's bit for bit.
    let other = load("tests/fixtures/models/tiny-gray.lofi");
    let mut shared = vec![f32::NAN; h * w];
    let mut events = Vec::new();
    let mut record = |p: Progress| {
        events.push(p);
        true
    };
    engine::stream::reconstruct_rows_on_devices(
        &[&model, &other],
        &view,
        job,
        0..h,
        8 * w * 4,
        RunOptions { progress: Some(&mut record), ..options(budget, None) },
        &mut |row0, values| {
            shared[row0 * w..row0 * w + values.len()].copy_from_slice(values);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(events.iter().filter(|p| p.filter.is_some()).count(), n);
    assert!(events[..n].iter().all(|p| p.filter.is_some()));
    assert!(shared.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()));
    // The same through the in-memory image's path (the C API's device list).
    let mut shared = vec![f32::NAN; h * w];
    let mut events = Vec::new();
    let mut record = |p: Progress| {
        events.push(p);
        true
    };
    let report = engine::reconstruct_region_on_devices(
        &[&model, &other],
        view,
        Region::whole(h, w),
        w,
        h,
        None,
        OutputView { data: &mut shared, row_stride: w },
        RunOptions { progress: Some(&mut record), ..options(budget, None) },
    )
    .unwrap();
    assert_eq!(events.iter().filter(|p| p.filter.is_some()).count(), n);
    assert_eq!((report.pixels, events.last().unwrap().done), (h * w, h * w));
    assert!(shared.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// Several devices (two CPU replicas standing in for GPUs): bands dealt out, the result equals one
/// device's bit for bit, with and without the filter.
#[test]
fn bands_dealt_to_several_devices_equal_one_device() {
    for (path, sigma) in
        [("tests/fixtures/models/tiny-gray.lofi", None), ("models/denoise-gray.lofi", Some(0.1))]
    {
        let replicas = [load(path), load(path), load(path)];
        let (h, w) = (70, 60);
        let img = image(h, w, 1);
        let view = ImageView { data: &img, height: h, width: w, channels: 1, row_stride: w };
        let job = engine::GridJob { region: Region::whole(h, w), grid_width: w, grid_height: h };
        let mut got = vec![f32::NAN; h * w];
        let mut bands = 0;
        let models: Vec<&Model> = replicas.iter().collect();
        let report = engine::stream::reconstruct_rows_on_devices(
            &models,
            &view,
            job,
            0..h,
            // A few rows per band: many bands for three devices.
            4 * w * 4,
            options(24 << 20, sigma),
            &mut |row0, values| {
                got[row0 * w..row0 * w + values.len()].copy_from_slice(values);
                bands += 1;
                Ok(())
            },
        )
        .unwrap();
        assert!(bands >= 3 && report.pixels == h * w, "{bands} bands");
        let mut want = vec![f32::NAN; h * w];
        engine::reconstruct_region_whole_image(
            &replicas[0],
            view,
            Region::whole(h, w),
            w,
            h,
            None,
            OutputView { data: &mut want, row_stride: w },
            options(24 << 20, sigma),
        )
        .unwrap();
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{path}");
    }
}

/// In bfloat16 the windows stay float32, as the whole image does: streamed and whole-image
/// outputs are identical. (A window cast to the network's precision was cast back to float32 in
/// the kernel through the whole-image view, which copied the whole image's extent per batch: a
/// peak that grew with the input, 64 MiB at 4096^2 in bf16, and reads outside the window.)
#[test]
fn bf16_streams_float32_windows_bit_for_bit() {
    use lofi::device::{CpuFeatures, DeviceSpec, Precision};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/denoise-gray.lofi");
    let loaded = Model::load(&path, LoadOptions::new(DeviceSpec::Cpu, Precision::BF16));
    if !CpuFeatures::detect().has_native_bf16() {
        let err = loaded.err().expect("bf16 refused without bfloat16 instructions");
        assert!(err.to_string().contains("avx512_bf16"), "{err}");
        return;
    }
    let model = loaded.unwrap();
    let reports = assert_streamed_equals_whole(&model, 96, 80, 24 << 20, Some(25.0 / 255.0));
    assert!(reports[0].batches > 1, "the budget must force several windows");
}

/// The filter computed in bands through scratch files equals the in-memory filter up to float32
/// rounding: gray, RGB and complex models, odd sizes, the stored filter resized (and not), one
/// band and many.
#[test]
fn the_spilled_filter_equals_the_in_memory_filter() {
    use lofi::engine::spilled_filter::{filter_to_scratch, minimum_budget};
    for name in ["tiny-gray.lofi", "tiny-rgb.lofi", "tiny-complex.lofi"] {
        let model = load(&format!("tests/fixtures/models/{name}"));
        let cfg = model.config();
        let filter = model.net().filter.as_ref().expect("a filter model");
        let c = cfg.c_in as usize;
        // Odd sizes (resized response), and the training size itself (the response as stored).
        let side = cfg.image_size as usize;
        for (h, w) in [(97, 131), (side, side)] {
            let img = image(h, w, c);
            let view = ImageView { data: &img, height: h, width: w, channels: c, row_stride: w * c };
            let x = tch::Tensor::from_slice(&img)
                .view([h as i64, w as i64, c as i64])
                .permute([2, 0, 1])
                .unsqueeze(0);
            let expected = lofi::kernels::filter::apply_filter(cfg, filter, &x);
            let least = minimum_budget(cfg, h, w);
            for budget in [least, 3 * least, 1 << 30] {
                let spilled = filter_to_scratch(cfg, filter, &view, budget, &mut |_| true).unwrap();
                assert_eq!([spilled.height(), spilled.width()], [h, w]);
                assert_eq!(spilled.channels() as i64, cfg.sampled_channels());
                let got = spilled.read_window(&(0..h), &(0..w)).unwrap();
                assert_eq!(got.size(), expected.size());
                let err = f64::try_from((&got - &expected).abs().max()).unwrap();
                let scale = f64::try_from(expected.abs().max()).unwrap();
                assert!(err <= 2e-6 * scale.max(1.0), "{name} {h} x {w}, budget {budget}: max error {err}");
                // The raw channels are copied, not recomputed.
                let raw = got.narrow(1, cfg.sampled_channels() - cfg.c_in, cfg.c_in);
                assert!(raw.equal(&x), "{name}: raw input channels");
                // A window is the same rectangle of the whole.
                let (rows, cols) = (h / 4..h / 2, w / 3..w - 1);
                let window = spilled.read_window(&rows, &cols).unwrap();
                let cut = got.narrow(2, rows.start as i64, rows.len() as i64);
                assert!(window.equal(&cut.narrow(3, cols.start as i64, cols.len() as i64)));
                assert!(spilled.read_window(&(0..h + 1), &cols).is_err());
            }
            assert!(filter_to_scratch(cfg, filter, &view, least - 1, &mut |_| true).is_err());
        }
    }
}

/// A filter model whose filtered image does not fit the budget filters into a scratch file: the
/// call runs under a budget the in-memory filter alone would exceed, and agrees with the
/// whole-image path up to float32 rounding; the plan is then the same for a 1024^2 and a 2048^2
/// input (the input's size no longer enters the working memory).
#[test]
fn filter_models_spill_when_the_filtered_image_does_not_fit() {
    let model = load("tests/fixtures/models/tiny-gray.lofi");
    let cfg = model.config();
    let (h, w) = (300, 280);
    let img = image(h, w, 1);
    let view = ImageView { data: &img, height: h, width: w, channels: 1, row_stride: w };
    let in_memory = lofi::engine::budget::bytes_for_image(cfg, h, w, 4);
    let budget = in_memory * 3 / 4;
    assert!(engine::stream::minimum_budget(&model, h, w) <= budget);
    let job = engine::GridJob { region: Region::whole(h, w), grid_width: w, grid_height: h };
    let streamer = engine::Streamer::new(&model, &view, Some((&job, 0..h)), budget, None).unwrap();
    assert!(streamer.filter_spilled());
    let (gw, gh) = (w / 2, h / 3);
    let region = Region { x0: -4.0, y0: 10.5, x1: w as f64 + 3.0, y1: h as f64 - 20.0 };
    let mut spilled = vec![f32::NAN; gw * gh];
    let mut whole = vec![f32::NAN; gw * gh];
    let report = engine::reconstruct_region(
        &model,
        view,
        region,
        gw,
        gh,
        None,
        OutputView { data: &mut spilled, row_stride: gw },
        options(budget, None),
    )
    .unwrap();
    assert!(report.batches > 1);
    engine::reconstruct_region_whole_image(
        &model,
        view,
        region,
        gw,
        gh,
        None,
        OutputView { data: &mut whole, row_stride: gw },
        options(1 << 30, None),
    )
    .unwrap();
    let err = spilled.iter().zip(&whole).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(err <= 1e-5, "spilled vs whole image: max difference {err}");
    // With room, the filter stays in memory and the result is the whole-image path's, bit for bit.
    let roomy = engine::Streamer::new(&model, &view, Some((&job, 0..h)), 1 << 30, None).unwrap();
    assert!(!roomy.filter_spilled());

    let budget = 8 << 20;
    let plan = |n: usize| {
        let source = Ramp(n);
        let job = engine::GridJob { region: Region::whole(n, n), grid_width: n, grid_height: n };
        let streamer = engine::Streamer::new(&model, &source, Some((&job, 0..n)), budget, None).unwrap();
        assert!(streamer.filter_spilled(), "{n}^2 under 8 MiB");
        (streamer.plan(), streamer.tile())
    };
    let (small, large) = (plan(1024), plan(2048));
    assert_eq!(small, large);
    assert!(large.0.estimated_bytes() <= budget);
}
