//! `lofi reconstruct` past memory and past one process: `.npy` files read through memory maps and
//! written in row bands, the `--json` run report, and MPI ranks (launcher environment, and a real
//! `mpiexec -n 2` from the mpich wheel that `make test` installs) writing their rows into one
//! output; every result bit-identical to the in-memory, single-process one (one thread).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lofi::engine::{self, ImageView, OutputView, Region, RunOptions};
use lofi::image_io::{self, Image};
use lofi::model::LoadOptions;
use lofi::Model;

const LAUNCHER_VARS: [&str; 4] = ["PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"];

fn root(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn lofi() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lofi"));
    for var in LAUNCHER_VARS {
        cmd.env_remove(var);
    }
    cmd
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn noisy_input(dir: &Path, h: usize, w: usize) -> PathBuf {
    let data = (0..h * w)
        .map(|i| {
            let (y, x) = ((i / w) as f32, (i % w) as f32);
            0.5 + 0.3 * (y / 7.0).sin() * (x / 5.0).cos() + 0.05 * (((i * 7919) % 101) as f32 / 50.0 - 1.0)
        })
        .collect();
    let path = dir.join("in.npy");
    image_io::write(&path, &Image::new(h, w, 1, data).unwrap(), 8).unwrap();
    path
}

/// The library's whole-image, in-memory reconstruction of `input` (one thread).
fn in_memory(model: &str, input: &Path, sigma: Option<f64>) -> Vec<f32> {
    let model = Model::load(&root(model), LoadOptions::default()).unwrap();
    let img = image_io::read(input).unwrap();
    let mut out = vec![f32::NAN; img.height * img.width];
    engine::reconstruct_region_whole_image(
        &model,
        ImageView::from_image(&img),
        Region::whole(img.height, img.width),
        img.width,
        img.height,
        None,
        OutputView { data: &mut out, row_stride: img.width },
        RunOptions { threads: 1, noise_level: sigma, ..Default::default() },
    )
    .unwrap();
    out
}

fn reconstruct_args(model: &str, input: &Path, output: &Path, sigma: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "reconstruct",
        "--model",
        root(model).to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--threads",
        "1",
        "--memory-budget",
        "24MiB",
        // Bands of a few rows, so that a small image is written in many bands.
        "--band-size",
        "2KiB",
        "--json",
    ]
    .map(String::from)
    .to_vec();
    if let Some(s) = sigma {
        args.extend(["--sigma".into(), s.into()]);
    }
    args
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn memory_mapped_npy_round_trip_equals_the_in_memory_path() {
    let dir = tempfile::tempdir().unwrap();
    let (h, w) = (90, 75);
    let input = noisy_input(dir.path(), h, w);
    for (model, sigma) in
        [("models/denoise-gray.lofi", Some("25/255")), ("tests/fixtures/models/tiny-gray.lofi", None)]
    {
        let output = dir.path().join("out.npy");
        let json = ok(lofi().args(reconstruct_args(model, &input, &output, sigma)).output().unwrap());
        let report: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(report["pixels"], h * w);
        assert!(report["batches"].as_u64().unwrap() > 1);
        assert_eq!(report["budget_bytes"], 24 << 20);
        assert!(report["estimated_peak_bytes"].as_u64().unwrap() <= 24 << 20);
        assert!(report["seconds"].as_f64().unwrap() > 0.0);
        assert!(report["peak_rss_bytes"].as_u64().unwrap() >= report["baseline_rss_bytes"].as_u64().unwrap());
        let got = image_io::read(&output).unwrap();
        assert_eq!((got.height, got.width, got.channels), (h, w, 1));
        let want = in_memory(model, &input, sigma.map(|_| 25.0 / 255.0));
        assert!(same_bits(&got.data, &want), "{model}: the banded output differs from the in-memory one");
    }
}

/// Ranks as an MPI launcher announces them (PMI_RANK/PMI_SIZE, OMPI_COMM_WORLD_*), run one after
/// the other here: each writes only its rows, and together they write the single-process file.
#[test]
fn launcher_ranks_write_their_rows_of_one_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = noisy_input(dir.path(), 61, 50);
    let model = "models/denoise-gray.lofi";
    let single = dir.path().join("single.npy");
    ok(lofi().args(reconstruct_args(model, &input, &single, Some("25/255"))).output().unwrap());
    for (rank_var, size_var) in [("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")] {
        let split = dir.path().join(format!("split-{rank_var}.npy"));
        let mut rows = vec![];
        for rank in [2, 0, 1] {
            let json = ok(lofi()
                .args(reconstruct_args(model, &input, &split, Some("25/255")))
                .env(rank_var, rank.to_string())
                .env(size_var, "3")
                .output()
                .unwrap());
            let report: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
            assert_eq!((report["rank"].as_u64(), report["ranks"].as_u64()), (Some(rank), Some(3)));
            let r = &report["rows"];
            rows.push((r[0].as_u64().unwrap(), r[1].as_u64().unwrap()));
            assert_eq!(
                report["pixels"].as_u64().unwrap(),
                (rows.last().unwrap().1 - rows.last().unwrap().0) * 50
            );
        }
        rows.sort();
        assert_eq!(rows, [(0, 20), (20, 40), (40, 61)]);
        assert_eq!(std::fs::read(&split).unwrap(), std::fs::read(&single).unwrap(), "{rank_var}");
    }
    // A PNG output cannot be shared by ranks: refused with a clear message.
    let out = lofi()
        .args(reconstruct_args(model, &input, &dir.path().join("x.png"), Some("25/255")))
        .env("PMI_RANK", "0")
        .env("PMI_SIZE", "2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be .npy"));
}

/// `mpiexec`: `LOFI_MPIEXEC`, else the one `scripts/install-mpich.sh` puts into the torch venv
/// (`make test` runs it), else the PATH's. Its absence fails the test, with what to do.
fn mpiexec() -> PathBuf {
    if let Some(path) = std::env::var_os("LOFI_MPIEXEC") {
        return path.into();
    }
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("VIRTUAL_ENV").map(|v| Path::new(&v).join("bin/mpiexec")).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("mpiexec")));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "mpiexec not found: the MPI test needs MPICH. Run scripts/install-mpich.sh (make test does: it \
             pip-installs the mpich wheel into the torch venv), or set LOFI_MPIEXEC"
        )
    })
}

#[test]
fn two_mpi_ranks_equal_one_process() {
    let mpiexec = mpiexec();
    let dir = tempfile::tempdir().unwrap();
    let input = noisy_input(dir.path(), 70, 64);
    let model = "models/denoise-gray.lofi";
    let single = dir.path().join("single.npy");
    ok(lofi().args(reconstruct_args(model, &input, &single, Some("25/255"))).output().unwrap());
    let parallel = dir.path().join("mpi.npy");
    let mut cmd = Command::new(&mpiexec);
    for var in LAUNCHER_VARS {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(["-n", "2", env!("CARGO_BIN_EXE_lofi")])
        .args(reconstruct_args(model, &input, &parallel, Some("25/255")))
        .output()
        .unwrap();
    let json = ok(out);
    let mut ranks: Vec<u64> = json
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(r["ranks"], 2, "{l}");
            r["rank"].as_u64().unwrap()
        })
        .collect();
    ranks.sort();
    assert_eq!(ranks, [0, 1], "both ranks ran: {json}");
    assert_eq!(std::fs::read(&parallel).unwrap(), std::fs::read(&single).unwrap());
}

/// `--device cpu,cpu`: two replicas (standing in for two GPUs), bands dealt out; the same file.
#[test]
fn a_device_list_deals_bands_and_writes_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = noisy_input(dir.path(), 64, 48);
    let model = "models/denoise-gray.lofi";
    let single = dir.path().join("single.npy");
    ok(lofi().args(reconstruct_args(model, &input, &single, Some("25/255"))).output().unwrap());
    let dealt = dir.path().join("dealt.npy");
    let json = ok(lofi()
        .args(reconstruct_args(model, &input, &dealt, Some("25/255")))
        .args(["--device", "cpu,cpu"])
        .output()
        .unwrap());
    let report: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(report["pixels"], 64 * 48);
    assert_eq!(std::fs::read(&dealt).unwrap(), std::fs::read(&single).unwrap());
    let bad = lofi()
        .args(reconstruct_args(model, &input, &dealt, Some("25/255")))
        .args(["--device", "cpu,tpu"])
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown device"));
    let bad = lofi()
        .args(reconstruct_args(model, &input, &dealt, Some("25/255")))
        .args(["--device", "cpu,cpu", "--cpu-workers", "2"])
        .output()
        .unwrap();
    assert!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("--cpu-workers applies to --device cpu")
    );
    let bad = lofi()
        .args(reconstruct_args(model, &input, &dealt, Some("25/255")))
        .args(["--cpu-workers", "1000000"])
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("more than 256"));
}

/// `--cpu-workers 3`: three single-threaded workers share one CPU model, each on its own bands;
/// the report says so and the file is the one worker's, byte for byte.
#[test]
fn cpu_workers_share_one_model_and_write_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = noisy_input(dir.path(), 64, 48);
    let model = "models/denoise-gray.lofi";
    let single = dir.path().join("single.npy");
    let json = ok(lofi()
        .args(reconstruct_args(model, &input, &single, Some("25/255")))
        .args(["--cpu-workers", "1"])
        .output()
        .unwrap());
    let report: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(report["cpu_workers"], 1);
    let workers = dir.path().join("workers.npy");
    let out = lofi()
        .args(reconstruct_args(model, &input, &workers, Some("25/255")))
        .args(["--cpu-workers", "3"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(ok(out.clone()).trim()).unwrap();
    assert_eq!(report["cpu_workers"], 3);
    assert_eq!(report["pixels"], 64 * 48);
    assert!(String::from_utf8_lossy(&out.stderr).contains("on cpu (3 workers)"));
    assert_eq!(std::fs::read(&workers).unwrap(), std::fs::read(&single).unwrap());
}

/// `lofi bench` states the budget as a bound: each row prints the process's baseline and the peak
/// resident set above it, and a `within` verdict; for the small fixture the peak is well inside the
/// budget, and the verdict is computed from the two figures, not asserted blindly.
#[test]
fn bench_rows_report_the_baseline_and_the_bound() {
    let out = ok(lofi()
        .args(["bench", "--model"])
        .arg(root("tests/fixtures/models/tiny-gray.lofi"))
        .args(["--input-size", "64", "--sizes", "64,128", "--budgets", "8MiB,32MiB", "--threads", "1"])
        .args(["--tiles", "1"])
        .output()
        .unwrap());
    let mib = |text: &str| -> f64 {
        let (value, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap());
        let scale = match unit {
            "B" => 1.0 / 1048576.0,
            "KiB" => 1.0 / 1024.0,
            "MiB" => 1.0,
            "GiB" => 1024.0,
            other => panic!("unit {other} in {text}"),
        };
        value.parse::<f64>().unwrap() * scale
    };
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains("(RSS)"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 4, "{out}");
    for row in rows {
        // output, budget (value unit), batch, batches, pixels/s, estimated (value unit), baseline
        // (value unit), measured (value unit "(RSS)"), within, seconds
        let budget = mib(&format!("{}{}", row[1], row[2]));
        let baseline = mib(&format!("{}{}", row[8], row[9]));
        let measured = mib(&format!("{}{}", row[10], row[11]));
        assert!(baseline > 50.0, "libtorch and the model are resident before the call: {row:?}");
        assert_eq!(row[13], if measured <= budget { "yes" } else { "NO" }, "{row:?}");
        assert!(measured <= budget, "peak above the baseline beyond the budget: {row:?}");
    }
}
