//! The streaming engine: regions at any resolution, tiles, budgets, progress and cancellation,
//! threads, and every bad argument.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::assert_first_report_cancels;
use lofi::device::{DeviceSpec, Precision};
use lofi::engine::{self, BatchPlan, ImageView, OutputView, Progress, Region, RunOptions, Window};
use lofi::model::LoadOptions;
use lofi::{Error, Model};

fn fixture_model(name: &str) -> Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name);
    Model::load(&path, LoadOptions::default()).unwrap()
}

/// A deterministic smooth test image (H, W, C).
fn image(h: usize, w: usize, c: usize) -> Vec<f32> {
    (0..h * w * c)
        .map(|i| {
            let (p, ch) = (i / c, i % c);
            let (y, x) = ((p / w) as f32, (p % w) as f32);
            0.5 + 0.4 * (0.3 * y + ch as f32).sin() * (0.2 * x).cos()
        })
        .collect()
}

fn view(data: &[f32], h: usize, w: usize, c: usize) -> ImageView<'_> {
    ImageView { data, height: h, width: w, channels: c, row_stride: w * c }
}

fn small_budget() -> RunOptions<'static> {
    // Small enough that a 41 x 37 output needs several batches; one thread, for which tiles are
    // guaranteed bit-identical (more threads may split BLAS rows differently).
    RunOptions { memory_budget: 6 << 20, threads: 1, ..Default::default() }
}

fn region_grid(
    model: &Model,
    img: &[f32],
    h: usize,
    w: usize,
    gw: usize,
    gh: usize,
    window: Option<Window>,
) -> Vec<f32> {
    let c_out = model.config().c_out as usize;
    let (cols, rows) = window.map_or((gw, gh), |w| (w.cols, w.rows));
    let mut out = vec![f32::NAN; cols * rows * c_out];
    engine::reconstruct_region(
        model,
        view(img, h, w, model.config().c_in as usize),
        Region::whole(h, w),
        gw,
        gh,
        window,
        OutputView { data: &mut out, row_stride: cols * c_out },
        small_budget(),
    )
    .unwrap();
    out
}

#[test]
fn tiles_equal_the_whole_image_bit_for_bit() {
    let model = fixture_model("tiny-rgb.lofi");
    let (h, w) = (20, 18);
    let img = image(h, w, 3);
    let (gw, gh) = (41, 37);
    let whole = region_grid(&model, &img, h, w, gw, gh, None);
    assert!(whole.iter().all(|v| v.is_finite()));
    let mut tiled = vec![f32::NAN; whole.len()];
    for (row0, rows) in [(0, 13), (13, 20), (33, 4)] {
        for (col0, cols) in [(0, 7), (7, 30), (37, 4)] {
            let tile = region_grid(&model, &img, h, w, gw, gh, Some(Window { col0, row0, cols, rows }));
            for r in 0..rows {
                let dst = ((row0 + r) * gw + col0) * 3;
                tiled[dst..dst + cols * 3].copy_from_slice(&tile[r * cols * 3..(r + 1) * cols * 3]);
            }
        }
    }
    let same = whole.iter().zip(&tiled).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same, "tiles differ from the whole image");
}

#[test]
fn halfway_grid_contains_the_on_grid_reconstruction() {
    let model = fixture_model("tiny-gray.lofi");
    let (h, w) = (16, 12);
    let img = image(h, w, 1);
    let on_grid = region_grid(&model, &img, h, w, w, h, None);
    let fine = region_grid(&model, &img, h, w, 2 * w - 1, 2 * h - 1, None);
    for r in 0..h {
        for c in 0..w {
            let (a, b) = (on_grid[r * w + c], fine[(2 * r) * (2 * w - 1) + 2 * c]);
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "({r},{c}): {a} vs {b}");
        }
    }
}

#[test]
fn regions_and_points_agree() {
    let model = fixture_model("tiny-gray.lofi");
    let (h, w) = (16, 16);
    let img = image(h, w, 1);
    // A 5 x 4 grid over the region (2.5, 3) - (10.5, 9): x steps 2, y steps 2.
    let mut grid = vec![0f32; 20];
    engine::reconstruct_region(
        &model,
        view(&img, h, w, 1),
        Region { x0: 2.5, y0: 3.0, x1: 10.5, y1: 9.0 },
        5,
        4,
        None,
        OutputView { data: &mut grid, row_stride: 5 },
        RunOptions::default(),
    )
    .unwrap();
    let points: Vec<[f64; 2]> =
        (0..4).flat_map(|r| (0..5).map(move |c| [2.5 + 2.0 * c as f64, 3.0 + 2.0 * r as f64])).collect();
    let mut at_points = vec![0f32; 20];
    engine::reconstruct_points(&model, view(&img, h, w, 1), &points, &mut at_points, RunOptions::default())
        .unwrap();
    for (a, b) in grid.iter().zip(&at_points) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
}

#[test]
fn output_row_stride_is_respected() {
    let model = fixture_model("tiny-gray.lofi");
    let img = image(10, 10, 1);
    let packed = region_grid(&model, &img, 10, 10, 10, 10, None);
    let mut strided = vec![-7f32; 10 * 13];
    engine::reconstruct_region(
        &model,
        view(&img, 10, 10, 1),
        Region::whole(10, 10),
        10,
        10,
        None,
        OutputView { data: &mut strided, row_stride: 13 },
        small_budget(),
    )
    .unwrap();
    for r in 0..10 {
        assert_eq!(&strided[r * 13..r * 13 + 10], &packed[r * 10..r * 10 + 10]);
        assert!(strided[r * 13 + 10..r * 13 + 13].iter().all(|v| *v == -7.0), "padding was written");
    }
}

#[test]
fn the_batch_plan_depends_on_the_budget_not_the_output_size() {
    let model = fixture_model("tiny-gray.lofi");
    let cfg = model.config();
    let small = BatchPlan::new(cfg, 64, 64, 4, 64 << 20).unwrap();
    let large = BatchPlan::new(cfg, 64, 64, 4, 256 << 20).unwrap();
    assert!(large.batch_pixels > 3 * small.batch_pixels);
    assert!(small.estimated_bytes() <= 64 << 20 && large.estimated_bytes() <= 256 << 20);
    assert_eq!(small.batch_pixels % engine::BATCH_QUANTUM, 0);
    // Two outputs of very different sizes get the same plan, hence the same working memory.
    let img = image(64, 64, 1);
    let mut reports = vec![];
    for size in [16, 300] {
        let mut out = vec![0f32; size * size];
        reports.push(
            engine::reconstruct_region(
                &model,
                view(&img, 64, 64, 1),
                Region::whole(64, 64),
                size,
                size,
                None,
                OutputView { data: &mut out, row_stride: size },
                RunOptions { memory_budget: 16 << 20, ..Default::default() },
            )
            .unwrap(),
        );
    }
    // The large output gets the budget's plan; the small one a plan no larger than its work
    // (the same budget, fewer pixels per batch): working memory never depends on the output
    // size beyond that. (The plan counts the window of the input a batch reads.)
    let view = view(&img, 64, 64, 1);
    let job = engine::GridJob { region: Region::whole(64, 64), grid_width: 300, grid_height: 300 };
    let budget_plan =
        engine::Streamer::new(&model, &view, Some((&job, 0..300)), 16 << 20, None).unwrap().plan();
    assert_eq!(reports[1].plan, budget_plan);
    assert_eq!(reports[0].plan.batch_pixels, 256);
    assert!(budget_plan.batch_pixels > 256);
    assert!(reports.iter().all(|r| r.plan.estimated_bytes() <= 16 << 20));
    assert!(reports[1].batches > reports[0].batches);
}

/// A budget far beyond what the work needs (`usize::MAX`: the C API's UINT64_MAX, the CLI's
/// `--memory-budget 1024T`) plans one batch of the work's size; nothing is sized by the budget.
#[test]
fn a_huge_budget_plans_only_the_work() {
    let model = fixture_model("tiny-gray.lofi");
    let img = image(20, 24, 1);
    let mut out = vec![0f32; 24 * 20];
    let options = || RunOptions { memory_budget: usize::MAX, threads: 1, ..Default::default() };
    let r = engine::reconstruct_region(
        &model,
        view(&img, 20, 24, 1),
        Region::whole(20, 24),
        24,
        20,
        None,
        OutputView { data: &mut out, row_stride: 24 },
        options(),
    )
    .unwrap();
    assert_eq!((r.batches, r.plan.batch_pixels), (1, 512)); // 480 pixels, rounded up to 64
    assert!(r.plan.estimated_bytes() < 64 << 20);
    let points = [[1.0, 2.0], [3.5, 4.5], [-7.0, 30.0]];
    let r = engine::reconstruct_points(&model, view(&img, 20, 24, 1), &points, &mut out, options()).unwrap();
    assert_eq!((r.batches, r.plan.batch_pixels), (1, engine::BATCH_QUANTUM));
    // The plan itself: capped by the host memory available, limited to the work, never below
    // one quantum.
    let plan = engine::plan_for(&model, 20, 24, usize::MAX).unwrap();
    let host = engine::budget::host_memory();
    let available = host.available.expect("known on Linux");
    // A budget within the machine is the caller's; beyond it, what is available.
    let limit = host.limit.unwrap();
    assert_eq!(engine::budget::host_budget(limit, host), limit);
    assert_eq!(engine::budget::host_budget(512 << 20, host), 512 << 20);
    assert_eq!(engine::budget::host_budget(limit + 1, host), available);
    assert!(plan.estimated_bytes() <= available, "{plan:?} for {available} bytes available");
    assert!(plan.batch_pixels >= 1 << 10);
    let unbounded = BatchPlan::new(model.config(), 20, 24, 4, usize::MAX).unwrap();
    assert!(unbounded.batch_pixels > 1 << 40);
    assert_eq!(plan.limited_to(0).batch_pixels, engine::BATCH_QUANTUM);
    assert_eq!(plan.limited_to(65).batch_pixels, 2 * engine::BATCH_QUANTUM);
    assert!(unbounded.estimated_bytes() > 0); // saturates, no overflow
}

/// On the CPU a large budget does not make batches larger than suits the cache:
/// `CPU_BATCH_PIXELS_PER_THREAD` per thread (two threads' worth at least), on the streamed and the
/// whole-image path alike; a budget below that still decides, and the results do not depend on it.
#[test]
fn cpu_batches_are_capped_for_the_cache() {
    let model = fixture_model("tiny-gray.lofi");
    let img = image(64, 64, 1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let size = 160; // 25,600 pixels: more than any cap below
    let run = |threads: usize, budget: usize, whole: bool| {
        let mut out = vec![0f32; size * size];
        let options = RunOptions { memory_budget: budget, threads, ..Default::default() };
        let args = (view(&img, 64, 64, 1), Region::whole(64, 64), size, size, None);
        let output = OutputView { data: &mut out, row_stride: size };
        let report = if whole {
            engine::reconstruct_region_whole_image(
                &model, args.0, args.1, args.2, args.3, args.4, output, options,
            )
        } else {
            engine::reconstruct_region(&model, args.0, args.1, args.2, args.3, args.4, output, options)
        }
        .unwrap();
        (report, out)
    };
    let cap = |threads: usize| engine::budget::cpu_batch_cap(threads);
    assert_eq!(cap(1), 2 * engine::budget::CPU_BATCH_PIXELS_PER_THREAD);
    assert_eq!(cap(1), cap(2));
    assert_eq!(cap(8), 8 * engine::budget::CPU_BATCH_PIXELS_PER_THREAD);
    for whole in [false, true] {
        let (one, reference) = run(1, 1 << 30, whole);
        assert_eq!(one.plan.batch_pixels, cap(1), "whole image: {whole}");
        // (Streamed batches are square tiles of at most the plan's pixels, so there may be more.)
        assert!(one.batches >= (size * size).div_ceil(cap(1)), "{} batches", one.batches);
        let (all, _) = run(cores, 1 << 30, whole);
        assert_eq!(all.plan.batch_pixels, cap(cores), "{cores} threads, whole image: {whole}");
        let (small, out) = run(1, 4 << 20, whole);
        assert!(small.plan.batch_pixels < cap(1), "{:?}", small.plan);
        assert_eq!(out, reference, "batches of {} and {}", small.plan.batch_pixels, cap(1));
    }
    // The plan a caller may query is capped the same way.
    assert!(engine::plan_for(&model, 64, 64, 1 << 30).unwrap().batch_pixels <= cap(cores));
}

/// More threads than the machine has are clamped (a million OpenMP threads would hang), and
/// coordinates are bounded: non-finite or beyond `MAX_COORDINATE` pixels is refused before any
/// work (1e300 used to give NaN).
#[test]
fn thread_counts_and_coordinates_are_bounded() {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(engine::clamp_threads(1_000_000), available);
    assert_eq!(engine::clamp_threads(1), 1);
    assert_eq!(engine::clamp_threads(0), 0);
    let model = fixture_model("tiny-gray.lofi");
    let img = image(20, 24, 1);
    let mut out = vec![0f32; 4];
    let run = |points: &[[f64; 2]], out: &mut [f32]| {
        engine::reconstruct_points(
            &model,
            view(&img, 20, 24, 1),
            points,
            out,
            RunOptions { threads: 1_000_000, ..Default::default() },
        )
    };
    run(&[[1.0, 2.0]], &mut out).unwrap();
    for bad in [1e300, f64::NAN, f64::INFINITY, -1.0000001e6, 2e6] {
        let err = run(&[[1.0, 2.0], [3.0, bad]], &mut out).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)) && err.to_string().contains("point 1"),
            "{bad}: {err}"
        );
    }
    run(&[[engine::MAX_COORDINATE, -engine::MAX_COORDINATE]], &mut out).unwrap();
    assert!(out[0].is_finite());
    for region in
        [Region { x0: 0.0, y0: 0.0, x1: 1e300, y1: 19.0 }, Region { x0: -2e6, y0: 0.0, x1: 23.0, y1: 19.0 }]
    {
        let mut grid = vec![0f32; 4];
        let err = engine::reconstruct_region(
            &model,
            view(&img, 20, 24, 1),
            region,
            2,
            2,
            None,
            OutputView { data: &mut grid, row_stride: 2 },
            RunOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("within +-1e6 pixels"), "{err}");
    }
}

#[test]
fn a_budget_too_small_states_the_minimum() {
    let model = fixture_model("tiny-gray.lofi");
    let img = image(32, 32, 1);
    let mut out = vec![0f32; 32 * 32];
    let err = engine::reconstruct_region(
        &model,
        view(&img, 32, 32, 1),
        Region::whole(32, 32),
        32,
        32,
        None,
        OutputView { data: &mut out, row_stride: 32 },
        RunOptions { memory_budget: 1000, ..Default::default() },
    )
    .unwrap_err();
    assert!(matches!(err, Error::BudgetTooSmall(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("at least") && msg.contains("KiB"), "{msg}");
}

#[test]
fn progress_is_reported_and_cancellation_stops_early() {
    let model = fixture_model("tiny-gray.lofi");
    let img = image(24, 24, 1);
    let mut out = vec![0f32; 60 * 60];
    let mut seen = vec![];
    let mut record = |p: Progress| {
        seen.push((p.done, p.total));
        true
    };
    engine::reconstruct_region(
        &model,
        view(&img, 24, 24, 1),
        Region::whole(24, 24),
        60,
        60,
        None,
        OutputView { data: &mut out, row_stride: 60 },
        RunOptions { progress: Some(&mut record), ..small_budget() },
    )
    .unwrap();
    assert!(seen.len() > 1);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(*seen.last().unwrap(), (3600, 3600));

    assert_first_report_cancels("the batches", |cancel| {
        engine::reconstruct_region(
            &model,
            view(&img, 24, 24, 1),
            Region::whole(24, 24),
            60,
            60,
            None,
            OutputView { data: &mut out, row_stride: 60 },
            RunOptions { progress: Some(cancel), ..small_budget() },
        )
    });
}

#[test]
fn threads_sharing_one_model_get_the_single_threaded_result() {
    let model = Arc::new(fixture_model("tiny-rgb.lofi"));
    let (h, w) = (20, 20);
    let img = Arc::new(image(h, w, 3));
    let want = region_grid(&model, &img, h, w, 31, 29, None);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (model, img) = (Arc::clone(&model), Arc::clone(&img));
            std::thread::spawn(move || {
                (0..3).map(|_| region_grid(&model, &img, h, w, 31, 29, None)).collect::<Vec<_>>()
            })
        })
        .collect();
    for handle in handles {
        for got in handle.join().unwrap() {
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}

/// `cpu_workers`: one single-threaded worker per thread for a small network once each gets four
/// batches (its threads would otherwise wait for one another at every operation), one worker on a
/// single thread, for fewer pixels, or for the paper-size network in f32 (its long products split
/// well over threads); and workers sharing one model give the one worker's values.
#[test]
fn cpu_workers_are_chosen_for_small_networks_with_enough_batches() {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = fixture_model("tiny-gray.lofi");
    let enough = 4 * engine::budget::cpu_batch_cap(1) * 2;
    assert_eq!(engine::cpu_workers(&model, 1, 1 << 30), 1);
    assert_eq!(engine::cpu_workers(&model, 2, enough - 1), 1);
    assert_eq!(engine::cpu_workers(&model, 2, enough), available.min(2));
    let mut cfg = lofi::config::LofiConfig::paper(128, 1, 1);
    cfg.fourier_filtering = true;
    let (net, params) = lofi::kernels::LofiNet::init(&cfg, tch::Device::Cpu).unwrap();
    let paper = Model::from_parts(net, params, None);
    assert!(paper.pixel_net().flops_per_pixel() > 4e6);
    assert_eq!(engine::cpu_workers(&paper, 2, 1 << 30), 1);

    let (h, w) = (24, 20);
    let img = image(h, w, 1);
    let whole = region_grid(&model, &img, h, w, 40, 36, None);
    let mut dealt = vec![0f32; 40 * 36];
    engine::reconstruct_region_on_devices(
        &[&model, &model, &model],
        view(&img, h, w, 1),
        Region::whole(h, w),
        40,
        36,
        None,
        OutputView { data: &mut dealt, row_stride: 40 },
        RunOptions { threads: 1, ..Default::default() },
    )
    .unwrap();
    assert!(dealt.iter().zip(&whole).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// A whole grid by several single-threaded workers (plug-and-play's denoising passes) equals one
/// worker on one thread bit for bit, and a cancelling progress callback stops it.
#[test]
fn grid_workers_equal_one_thread_and_stop_when_cancelled() {
    let model = fixture_model("tiny-rgb.lofi");
    let (h, w) = (40, 36);
    let img = image(h, w, 3);
    let prepared = engine::PreparedImage::new(&model, view(&img, h, w, 3)).unwrap();
    let plan = engine::plan_for(&model, h, w, 6 << 20).unwrap().at_most(128);
    tch::set_num_threads(1);
    let one = prepared.reconstruct_grid(&plan, &mut None).unwrap();
    for workers in [1, 2, 3] {
        let mut reports = Vec::new();
        let mut note = |p: Progress| {
            reports.push(p.done);
            true
        };
        let many = prepared.reconstruct_grid_on_workers(&plan, workers, &mut Some(&mut note)).unwrap();
        assert_eq!(many.size(), one.size());
        assert!(many.equal(&one), "{workers} workers");
        assert_eq!(reports.last(), Some(&(h * w)), "{workers} workers");
        assert!(reports.windows(2).all(|p| p[0] < p[1]));
    }
    let mut calls = 0;
    let mut cancel = |_: Progress| {
        calls += 1;
        calls < 3
    };
    let err = prepared.reconstruct_grid_on_workers(&plan, 2, &mut Some(&mut cancel)).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
}

#[test]
fn bad_arguments_are_refused_with_clear_errors() {
    let model = fixture_model("tiny-gray.lofi");
    let img = image(8, 8, 1);
    let mut out = vec![0f32; 64];
    let run = |image: ImageView<'_>,
               region: Region,
               gw: usize,
               gh: usize,
               window: Option<Window>,
               out: &mut [f32],
               stride: usize| {
        engine::reconstruct_region(
            &model,
            image,
            region,
            gw,
            gh,
            window,
            OutputView { data: out, row_stride: stride },
            RunOptions::default(),
        )
        .unwrap_err()
        .to_string()
    };
    let whole = Region::whole(8, 8);
    let good = view(&img, 8, 8, 1);

    let e = run(view(&img, 8, 8, 1), whole, 0, 8, None, &mut out, 8);
    assert!(e.contains("empty"), "{e}");
    let e = run(good, whole, 8, 8, Some(Window { col0: 4, row0: 0, cols: 5, rows: 2 }), &mut out, 8);
    assert!(e.contains("outside"), "{e}");
    let e = run(good, whole, 8, 8, None, &mut out[..50], 8);
    assert!(e.contains("buffer"), "{e}");
    let e = run(good, whole, 8, 8, None, &mut out, 7);
    assert!(e.contains("stride"), "{e}");
    let e = run(good, Region { x0: f64::NAN, ..whole }, 8, 8, None, &mut out, 8);
    assert!(e.contains("finite"), "{e}");

    let rgb = image(8, 8, 3);
    let e = run(view(&rgb, 8, 8, 3), whole, 8, 8, None, &mut out, 8);
    assert!(e.contains("3 channel") && e.contains("expects 1"), "{e}");
    let e = run(view(&img, 1, 64, 1), whole, 8, 8, None, &mut out, 8);
    assert!(e.contains("at least 2 x 2"), "{e}");
    let e = run(ImageView { row_stride: 4, ..good }, whole, 8, 8, None, &mut out, 8);
    assert!(e.contains("stride"), "{e}");
    let e = run(ImageView { data: &img[..40], ..good }, whole, 8, 8, None, &mut out, 8);
    assert!(e.contains("buffer"), "{e}");
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut nan = img.clone();
        nan[3 * 8 + 5] = bad;
        let e = run(view(&nan, 8, 8, 1), whole, 8, 8, None, &mut out, 8);
        assert!(e.contains("row 3, column 5") && e.contains("finite"), "{e}");
    }

    let mut pts = vec![0f32; 2];
    let e = engine::reconstruct_points(&model, good, &[[1.0, f64::NAN]], &mut pts, RunOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
    let e = engine::reconstruct_points(&model, good, &[], &mut pts, RunOptions::default()).unwrap_err();
    assert!(e.to_string().contains("no points"), "{e}");
    let e = engine::reconstruct_points(&model, good, &[[1.0, 1.0]; 3], &mut pts, RunOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("buffer"), "{e}");
}

#[test]
fn devices_and_precisions_are_checked() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-gray.lofi");
    let err = Model::load(&path, LoadOptions::new(DeviceSpec::Cpu, Precision::F16)).err().unwrap();
    assert!(err.to_string().contains("CUDA only"), "{err}");
    if !tch::Cuda::is_available() {
        let err = Model::load(&path, LoadOptions::new(DeviceSpec::Cuda(0), Precision::F32)).err().unwrap();
        assert!(matches!(err, Error::DeviceUnavailable(_)), "{err:?}");
    }
    assert!("cuda:x".parse::<DeviceSpec>().is_err());
    assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
    assert!("f64".parse::<Precision>().is_err());
}

/// On a GPU machine: CUDA results agree with the CPU, half precisions stay close, and the
/// engine measures its peak. Skipped (passes trivially) without CUDA.
#[test]
fn cuda_matches_cpu_when_available() {
    if !tch::Cuda::is_available() {
        eprintln!("no CUDA: skipped");
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-rgb.lofi");
    let cpu = Model::load(&path, LoadOptions::default()).unwrap();
    let img = image(20, 20, 3);
    let want = region_grid(&cpu, &img, 20, 20, 39, 39, None);
    for precision in [Precision::F32, Precision::BF16, Precision::F16] {
        let gpu = Model::load(&path, LoadOptions::new(DeviceSpec::Cuda(0), precision)).unwrap();
        let got = region_grid(&gpu, &img, 20, 20, 39, 39, None);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        let tolerance = if precision == Precision::F32 { 1e-4 } else { 5e-2 };
        assert!(err < tolerance, "{precision}: relative error {err}");
    }
}

/// On a GPU (run with `--ignored` there): the CUDA path's zero-padded widths (370 -> 376 hidden
/// units) and bias + ReLU fused into the product's epilogue give the values of the plain path on
/// the paper-size model, in IEEE f32 and in f16; TF32 stays within half-precision error.
#[test]
#[ignore = "needs a CUDA device"]
fn cuda_padding_and_fused_epilogue_keep_the_values() {
    use lofi::kernels::linear::{set_cuda_fused_epilogue, set_cuda_tf32};
    let mut cfg = lofi::config::LofiConfig::paper(64, 1, 1);
    cfg.fourier_filtering = true;
    tch::manual_seed(2);
    let (net, params) = lofi::kernels::LofiNet::init(&cfg, tch::Device::Cpu).unwrap();
    let bytes = Model::from_parts(net, params, None).to_bytes().unwrap();
    let img = image(64, 64, 1);
    let run = |precision, padded, fused, tf32| {
        set_cuda_tf32(tf32);
        set_cuda_fused_epilogue(fused);
        let options =
            LoadOptions { tensor_core_padding: padded, ..LoadOptions::new(DeviceSpec::Cuda(0), precision) };
        let model = Model::load_from_memory(&bytes, options).unwrap();
        let out = region_grid(&model, &img, 64, 64, 96, 96, None);
        set_cuda_fused_epilogue(true);
        out
    };
    let relative = |got: &[f32], want: &[f32]| {
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
    };
    let plain = run(Precision::F32, false, false, false);
    let fast = run(Precision::F32, true, true, false);
    assert!(relative(&fast, &plain) < 1e-5, "f32: {}", relative(&fast, &plain));
    let tf32 = run(Precision::F32, true, true, true);
    assert!(relative(&tf32, &plain) < 2e-2, "TF32: {}", relative(&tf32, &plain));
    let plain16 = run(Precision::F16, false, false, false);
    let fast16 = run(Precision::F16, true, true, false);
    assert!(relative(&fast16, &plain16) < 1e-2, "f16: {}", relative(&fast16, &plain16));
    assert!(relative(&fast16, &plain) < 2e-2, "f16 against f32: {}", relative(&fast16, &plain));
}

/// The C API's region call on one CPU model runs single-threaded workers where `cpu_workers`
/// chooses them (two threads, enough pixels, a small network), says so in the report, and writes
/// the bytes of the one-thread call; with one thread, or a budget whose share cannot hold a
/// cache-sized batch, it runs one.
#[test]
fn c_region_calls_run_cpu_workers_and_write_the_one_thread_bytes() {
    use lofi::ffi;
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (h, w) = (96, 192); // 18,432 pixels: four 2,048-pixel batches for each of two threads
    let img = image(h, w, 1);
    let path = std::ffi::CString::new("tests/fixtures/models/tiny-gray.lofi").unwrap();
    let mut model = std::ptr::null_mut();
    // SAFETY: a valid path, default load parameters, a valid out-pointer.
    assert_eq!(
        unsafe { ffi::lofi_load(path.as_ptr(), std::ptr::null(), &mut model) },
        ffi::lofi_status::LOFI_STATUS_OK
    );
    let input = ffi::lofi_image { data: img.as_ptr(), width: w, height: h, channels: 1, row_stride_bytes: 0 };
    let run = |threads: i32, budget: u64| -> (Vec<f32>, u64) {
        let mut out = vec![f32::NAN; h * w];
        let params =
            ffi::lofi_run_params { threads, memory_budget_bytes: budget, ..ffi::default_run_params() };
        let mut report = ffi::lofi_run_report::default();
        // SAFETY: every pointer valid for the call, the output h x w floats, the report's size.
        let status = unsafe {
            ffi::lofi_reconstruct_region_sized(
                model,
                &input,
                std::ptr::null(),
                w,
                h,
                std::ptr::null(),
                out.as_mut_ptr(),
                0,
                &params,
                &mut report,
                std::mem::size_of::<ffi::lofi_run_report>(),
            )
        };
        assert_eq!(status, ffi::lofi_status::LOFI_STATUS_OK);
        assert_eq!(report.pixels, (h * w) as u64);
        (out, report.workers)
    };
    let budget = engine::DEFAULT_MEMORY_BUDGET as u64;
    let (one, one_workers) = run(1, budget);
    assert_eq!(one_workers, 1);
    let (two, two_workers) = run(2, budget);
    assert_eq!(two_workers, available.min(2) as u64);
    assert!(two.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()), "workers changed the bytes");
    // A budget just above the minimum: halving it would leave no room for a cache-sized batch.
    let minimum = engine::stream::minimum_budget(&fixture_model("tiny-gray.lofi"), h, w) as u64;
    assert_eq!(run(2, minimum + (1 << 10)).1, 1);
    // SAFETY: the handle from lofi_load, freed once.
    unsafe { ffi::lofi_model_free(model) };
}
