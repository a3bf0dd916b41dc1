//! `lofi train` and `lofi eval` end to end, on tiny models (hidden width 8, 16 x 16 images) and
//! data made in a temporary directory: the loss falls, runs are reproducible, a resumed run equals
//! an uninterrupted one, flags override the file, mistakes are reported clearly, paired data load,
//! and `lofi eval` writes JSON.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lofi::image_io::{self, Image};

fn lofi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lofi"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn fails_with(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded but should fail with '{needle}'");
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    stderr
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A smooth random-looking gray image in [0, 1] (sums of a few sinusoids), `seed` picks it.
fn pattern(h: usize, w: usize, c: usize, seed: usize) -> Image {
    let f = seed as f32 * 0.7 + 1.0;
    let data = (0..h * w * c)
        .map(|i| {
            let (r, col, ch) = ((i / c) / w, (i / c) % w, i % c);
            let (y, x) = (r as f32 / h as f32, col as f32 / w as f32);
            let v = 0.5
                + 0.25 * (6.0 * f * x + ch as f32).sin() * (4.0 * y + f).cos()
                + 0.2 * (3.0 * (x + y) * f).sin();
            v.clamp(0.0, 1.0)
        })
        .collect();
    Image::new(h, w, c, data).unwrap()
}

/// `count` PNG images of `size` x `size` in `dir`.
fn image_folder(dir: &Path, count: usize, size: usize, channels: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        image_io::write(&dir.join(format!("img{i:02}.png")), &pattern(size, size, channels, i), 8).unwrap();
    }
    dir.to_path_buf()
}

/// A tiny denoising configuration over `train` (the last image held out for testing).
fn tiny_config(dir: &Path, train: &Path, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[model]
image_size = 16
c_in = 1
c_out = 1
network = "MultiMLP"
hidden_dim = 8
num_layers = 1
N = 3
M = 4
fourier_filtering = true

[task]
kind = "denoise"
sigma = 0.1

[data]
train = ["{train}"]
exclude = ["img05.png"]
test = ["{test}"]
resize = "area"

[train]
object_batch = 3
pixel_batch = 64
steps_per_batch = 2
lr = 0.003
max_steps = 30
seed = 7
device = "cpu"
threads = 1
log_every = 5

[eval]
every = 15
samples = 1

[output]
dir = "{out}"
checkpoint_every = 10
{extra}
"#,
        train = s(train),
        test = s(&train.join("img05.png")),
        out = s(&dir.join("run")),
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn log_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn denoise_training_lowers_the_loss_and_writes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(&dir.path().join("images"), 6, 24, 1);
    let cfg = tiny_config(dir.path(), &data, "");
    let model = dir.path().join("models/final.lofi");
    let text = ok(&lofi(&["train", "--config", &s(&cfg), "--max-steps", "60", "--output-model", &s(&model)]));
    assert!(text.contains("steps/s"), "{text}");
    let run = dir.path().join("run");
    let losses = log_losses(&run);
    assert_eq!(losses.len(), 12);
    let first = losses[..2].iter().sum::<f64>() / 2.0;
    let last = losses[losses.len() - 2..].iter().sum::<f64>() / 2.0;
    assert!(last < 0.7 * first, "the loss did not fall: {losses:?}");
    for f in [
        "checkpoint/model.lofi",
        "checkpoint/optimizer.safetensors",
        "checkpoint/state.json",
        "curves.png",
        "samples/step-00000060.png",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    // The final model is a normal .lofi file with notes, usable by `lofi reconstruct`.
    let file = lofi::model_file::ModelFile::read(&model).unwrap();
    assert_eq!(file.config.hidden_dim, 8);
    assert_eq!(file.notes.as_ref().unwrap()["task"]["kind"], "denoise");
    assert_eq!(file.notes.as_ref().unwrap()["steps"], 60);
    // The training folders by name, not by this machine's path.
    assert_eq!(file.notes.as_ref().unwrap()["data"], serde_json::json!(["images"]));
    let out = dir.path().join("rec.png");
    ok(&lofi(&[
        "reconstruct",
        "--model",
        &s(&model),
        "--input",
        &s(&data.join("img05.png")),
        "--output",
        &s(&out),
    ]));
    // Evaluations were logged with PSNR and SSIM.
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    assert_eq!(log.matches("\"kind\":\"eval\"").count(), 4, "{log}");
}

#[test]
fn same_seed_same_bytes_and_resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(&dir.path().join("images"), 6, 20, 1);
    let cfg = tiny_config(dir.path(), &data, "");
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args =
            vec!["train", "--config", cfg.to_str().unwrap(), "--output-dir", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        ok(&lofi(&args));
        out
    };
    let a = run("a", &["--max-steps", "24"]);
    let b = run("b", &["--max-steps", "24"]);
    let bytes = |p: &Path| std::fs::read(p.join("model.lofi")).unwrap();
    assert_eq!(bytes(&a), bytes(&b), "two runs with the same seed differ");
    let c = run("c", &["--max-steps", "24", "--seed", "8"]);
    assert_ne!(bytes(&a), bytes(&c), "the seed changes nothing");

    // 12 steps, then resume to 24 (odd split points inside an object batch and an epoch).
    let r = run("r", &["--max-steps", "11"]);
    ok(&lofi(&["train", "--resume", &s(&r), "--max-steps", "24"]));
    assert_eq!(bytes(&a), bytes(&r), "resumed run differs from the uninterrupted one");
    assert_eq!(
        std::fs::read(a.join("checkpoint/optimizer.safetensors")).unwrap(),
        std::fs::read(r.join("checkpoint/optimizer.safetensors")).unwrap()
    );
    // The log has no duplicate steps.
    assert_eq!(
        log_losses(&r).len(),
        log_losses(&a).len() + 1,
        "11 is no multiple of log_every: one extra line"
    );
}

#[test]
fn flags_override_the_file_and_bad_keys_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(&dir.path().join("images"), 6, 16, 1);
    let cfg = tiny_config(dir.path(), &data, "");
    let text = ok(&lofi(&[
        "train",
        "--config",
        &s(&cfg),
        "--print-config",
        "--hidden-dim",
        "12",
        "--N",
        "5",
        "--CCPG",
        "true",
        "--lr",
        "0.5",
        "--lr-schedule",
        "cosine",
        "--task",
        "transpose",
        "--eval-every",
        "3",
        "--output-model",
        "x.lofi",
    ]));
    let v: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(v["model"]["hidden_dim"].as_integer(), Some(12));
    assert_eq!(v["model"]["N"].as_integer(), Some(5));
    assert_eq!(v["model"]["M"].as_integer(), Some(4), "keys without a flag keep the file's value");
    assert_eq!(v["model"]["CCPG"].as_bool(), Some(true));
    assert_eq!(v["train"]["lr"].as_float(), Some(0.5));
    assert_eq!(v["train"]["lr_schedule"].as_str(), Some("cosine"));
    assert_eq!(v["task"]["kind"].as_str(), Some("transpose"));
    assert_eq!(v["eval"]["every"].as_integer(), Some(3));
    assert_eq!(v["output"]["model"].as_str(), Some("x.lofi"));

    // A misspelt key: named, with the line, and the allowed keys.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[model]\nimage_size = 16\nhiden_dim = 8\n").unwrap();
    let err = fails_with(&lofi(&["train", "--config", &s(&bad)]), "hiden_dim");
    assert!(err.contains("line 3") && err.contains("hidden_dim"), "{err}");
    std::fs::write(&bad, "[trainer]\nlr = 1\n").unwrap();
    fails_with(&lofi(&["train", "--config", &s(&bad)]), "trainer");
    // A bad value given as a flag.
    fails_with(&lofi(&["train", "--config", &s(&cfg), "--network", "Transformer"]), "Transformer");
    // No stopping rule, no data.
    std::fs::write(&bad, format!("[data]\ntrain = [\"{}\"]\n", s(&data))).unwrap();
    fails_with(&lofi(&["train", "--config", &s(&bad)]), "no stopping rule");
    // Channels that do not fit the task.
    fails_with(&lofi(&["train", "--config", &s(&cfg), "--task", "ldct", "--c-in", "2"]), "c_in = 1");
}

#[test]
fn paired_data_and_the_transpose_task_train() {
    let dir = tempfile::tempdir().unwrap();
    // Paired: observation = a shifted, darker copy; target = the pattern.
    let pairs = dir.path().join("pairs");
    for sub in ["observations", "targets"] {
        std::fs::create_dir_all(pairs.join(sub)).unwrap();
    }
    for i in 0..4 {
        let t = pattern(16, 16, 1, i);
        let o = Image::new(16, 16, 1, t.data.iter().map(|v| 0.5 * v + 0.1).collect()).unwrap();
        image_io::write(&pairs.join("targets").join(format!("p{i}.png")), &t, 8).unwrap();
        // Observations may be .npy while targets are PNG: matched by stem.
        image_io::write(&pairs.join("observations").join(format!("p{i}.npy")), &o, 8).unwrap();
    }
    let data = image_folder(&dir.path().join("images"), 6, 16, 1);
    let cfg = tiny_config(dir.path(), &data, "");
    let text = ok(&lofi(&[
        "train",
        "--config",
        &s(&cfg),
        "--task",
        "paired",
        "--train",
        &s(&pairs),
        "--test",
        &s(&pairs),
        "--max-steps",
        "6",
        "--eval-every",
        "0",
    ]));
    assert!(text.contains("4 training object(s)") && text.contains("4 test"), "{text}");
    // A missing counterpart is named.
    std::fs::remove_file(pairs.join("observations/p2.npy")).unwrap();
    fails_with(
        &lofi(&[
            "train",
            "--config",
            &s(&cfg),
            "--task",
            "paired",
            "--train",
            &s(&pairs),
            "--max-steps",
            "2",
        ]),
        "p2",
    );

    // Transpose with INR-LoFi and CCPG (RGB), a few steps.
    let rgb = image_folder(&dir.path().join("rgb"), 6, 16, 3);
    ok(&lofi(&[
        "train",
        "--config",
        &s(&cfg),
        "--task",
        "transpose",
        "--train",
        &s(&rgb),
        "--test",
        &s(&rgb.join("img05.png")),
        "--c-in",
        "3",
        "--c-out",
        "3",
        "--coord-deform",
        "true",
        "--CCPG",
        "true",
        "--ccpg-hidden-dim",
        "8",
        "--inr-hidden-dim",
        "8",
        "--aux-layers",
        "1",
        "--max-steps",
        "4",
        "--eval-every",
        "0",
    ]));
}

#[test]
fn eval_reports_json_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(&dir.path().join("images"), 6, 16, 1);
    let ood = image_folder(&dir.path().join("ood"), 2, 20, 3);
    let cfg = tiny_config(dir.path(), &data, "");
    ok(&lofi(&["train", "--config", &s(&cfg), "--max-steps", "10", "--eval-every", "0"]));
    let model = dir.path().join("run/model.lofi");
    let eval = |json: &Path| {
        ok(&lofi(&[
            "eval",
            "--model",
            &s(&model),
            "--data",
            &s(&data.join("img05.png")),
            &s(&data.join("img04.png")),
            "--ood",
            &s(&ood),
            "--json",
            &s(json),
            "--samples",
            &s(&dir.path().join("samples.png")),
        ]))
    };
    let table = eval(&dir.path().join("a.json"));
    assert!(table.contains("PSNR") && table.contains("img05") && table.contains("out-of-dist."), "{table}");
    eval(&dir.path().join("b.json"));
    let a = std::fs::read_to_string(dir.path().join("a.json")).unwrap();
    assert_eq!(a, std::fs::read_to_string(dir.path().join("b.json")).unwrap(), "eval is not reproducible");
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["task"]["kind"], "denoise", "the task comes from the model's notes");
    assert_eq!(v["task"]["sigma"], 0.1);
    assert_eq!(v["splits"]["test"]["count"], 2);
    assert_eq!(v["splits"]["ood"]["count"], 2);
    let first = &v["splits"]["test"]["images"][0];
    assert_eq!(first["name"], "img05");
    assert!(first["psnr"].as_f64().unwrap().is_finite() && first["ssim"].as_f64().unwrap() <= 1.0);
    assert!(dir.path().join("samples.png").is_file());
    // Another noise seed gives other numbers.
    ok(&lofi(&[
        "eval",
        "--model",
        &s(&model),
        "--data",
        &s(&data.join("img05.png")),
        "--seed",
        "5",
        "--json",
        &s(&dir.path().join("c.json")),
    ]));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("c.json")).unwrap()).unwrap();
    assert_ne!(c["splits"]["test"]["images"][0]["psnr"], first["psnr"]);
}

#[test]
fn memory_benchmark_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(&dir.path().join("images"), 6, 16, 1);
    let cfg = tiny_config(dir.path(), &data, "");
    let text = ok(&lofi(&[
        "train",
        "--config",
        &s(&cfg),
        "--bench-memory",
        "--bench-sizes",
        "16,32",
        "--bench-steps",
        "1",
    ]));
    assert!(text.contains("peak memory") && text.contains("    32"), "{text}");
}

#[test]
fn ct_and_lensing_train_on_simulated_data_and_the_time_budget_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(&dir.path().join("images"), 6, 16, 1);
    let cfg = tiny_config(dir.path(), &data, "");
    // Simulated objects only: no test files.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let test_line = text.lines().find(|l| l.starts_with("test = ")).unwrap().to_string();
    std::fs::write(&cfg, text.replace(&test_line, "")).unwrap();
    let common = ["--train-count", "8", "--test-count", "2", "--max-steps", "4", "--eval-every", "0"];
    let ct = dir.path().join("ct");
    let mut args =
        vec!["train", "--config", cfg.to_str().unwrap(), "--task", "ldct", "--synthetic", "ellipses"];
    args.extend_from_slice(&["--angles", "12", "--noise", "fixed", "--output-dir", ct.to_str().unwrap()]);
    args.extend_from_slice(&common);
    let text = ok(&lofi(&args));
    assert!(text.contains("8 training object(s)") && text.contains("2 test"), "{text}");
    // The CT model evaluates on image files (its notes give the task, angles and SNR).
    let json = dir.path().join("ct.json");
    ok(&lofi(&[
        "eval",
        "--model",
        &s(&ct.join("model.lofi")),
        "--data",
        &s(&data.join("img05.png")),
        "--json",
        &s(&json),
    ]));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["task"]["kind"], "ldct");
    assert_eq!(v["task"]["angles"], 12);

    let lens = dir.path().join("lens");
    let mut args = vec!["train", "--config", cfg.to_str().unwrap(), "--task", "lensing", "--c-in", "2"];
    args.extend_from_slice(&["--synthetic", "convergence", "--output-dir", lens.to_str().unwrap()]);
    args.extend_from_slice(&common);
    ok(&lofi(&args));
    assert!(lens.join("model.lofi").is_file());

    // A wall-clock budget ends an otherwise long run with a checkpoint and the final model.
    let timed = dir.path().join("timed");
    let text = ok(&lofi(&[
        "train",
        "--config",
        &s(&cfg),
        "--max-steps",
        "1000000",
        "--max-minutes",
        "0.01",
        "--eval-every",
        "0",
        "--output-dir",
        &s(&timed),
    ]));
    assert!(text.contains("time budget"), "{text}");
    assert!(timed.join("model.lofi").is_file() && timed.join("checkpoint/state.json").is_file());
}
