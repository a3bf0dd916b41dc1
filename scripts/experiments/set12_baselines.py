"""Classical baselines on Set12 (BM3D denoising, biharmonic inpainting), with every input saved so
that LoFi (or any other method) can be run on exactly the same noisy images and masks and scored.

What it does
------------
Gray Set12 images (`--set12`, 12 PNGs, seven 256x256 and five 512x512; they are NOT part of the
repository and nothing here copies them into it) are read as float in [0, 1] (8-bit / 255).

* Denoising, for each sigma s in `--sigmas` (default 15,25,50, on the 0..255 scale):
  noisy = clean + (s/255) * N(0, 1), NOT clipped, drawn with numpy's default_rng seeded from
  (seed, 0, image index, s) and stored as float32; BM3D = `bm3d.bm3d(noisy, sigma_psd=s/255)`
  (default profile, run on the stored float32 array).
* Inpainting: a random mask with exactly round(fraction*H*W) observed pixels (default 30%), drawn
  with default_rng seeded from (seed, 1, image index, H, W); observed = clean * mask;
  biharmonic = `skimage.restoration.inpaint_biharmonic(observed, mask == 0)`.
  (a) at the native sizes (results grouped by size: 256x256 and 512x512), and
  (b) every image resized to 256x256 (`skimage.transform.resize`, anti_aliasing=True, default
      bilinear order; the 256x256
      images are unchanged and so get the same mask as in (a)).
  Plus the repository's CC0 `data/images/gray/camera.png` (512x512; index 0) at 512 native and
  resized to 256, same mask scheme.

The image index is the 1-based position of the PNG in the sorted list of `--set12` (01.png -> 1),
so `--images` (a subset) draws the same noise and masks as a full run.
PSNR: `skimage.metrics.peak_signal_noise_ratio(clean, x, data_range=1)`; SSIM:
`structural_similarity(clean, x, data_range=1)` (default 7x7 window), both in float64, against the
float32 clean image; estimates are not clipped before scoring. Times are wall-clock seconds per
image (`time.perf_counter`) and CPU seconds of this process (`time.process_time`; CPU/wall ~ 1
means one thread was busy); `os.cpu_count()` and the thread environment are recorded.

How to run
----------
    venv=$(scripts/experiments/setup-bench-venv.sh)          # numpy, scikit-image, bm3d, imageio
    nice -n 10 "$venv/bin/python" scripts/experiments/set12_baselines.py \
        --set12 ../shared/data/set12 --out /tmp/set12-bench  # ~10 min on 2 cores

    # then run our method on the saved inputs, writing X_lofi.npy next to each input, e.g.
    #   lofi reconstruct --input OUT/denoise/s25/01_noisy.npy --output OUT/denoise/s25/01_lofi.npy ...
    #   lofi pnp --operator inpaint --mask OUT/inpaint/01_mask.npy \
    #            --input OUT/inpaint/01_observed.npy --output OUT/inpaint/01_lofi.npy ...
    # and score them (missing outputs are listed and the rest is scored):
    "$venv/bin/python" scripts/experiments/set12_baselines.py --out /tmp/set12-bench \
        --score /tmp/set12-bench --method lofi
    # --score also takes a glob of output files, e.g. '/tmp/other/**/*_lofi.npy' (quote it): a file
    # counts for the case whose path (relative to OUT) its path ends with, e.g. denoise/s25/01_lofi.npy.

Other options: --skip-bm3d, --skip-inpaint, --no-camera, --camera PATH, --images 01,08 (subset),
--seed, --fraction, --sigmas. `--list-inputs` prints one line per case (kind, input, mask, output
path for `--method`) for driving another tool from a shell loop.

Output layout (OUT = --out, default /tmp/set12-bench; every array float32, shape (H, W), C order)
------------------------------------------------------------------------------------------
    OUT/baselines.json                     settings, versions, machine, per-image figures, means,
                                           and "cases": the manifest --score reads
    OUT/clean/{name}.npy                   clean image, native size (truth for denoise/ and inpaint/)
    OUT/denoise/s{s}/{name}_noisy.npy      noisy input (s = 15, 25, 50)
    OUT/denoise/s{s}/{name}_bm3d.npy       BM3D estimate
    OUT/inpaint/{name}_mask.npy            1 = observed, 0 = missing (native size)
    OUT/inpaint/{name}_observed.npy        clean * mask
    OUT/inpaint/{name}_biharmonic.npy      biharmonic estimate
    OUT/inpaint256/{name}_clean.npy        image resized to 256x256 (truth for this folder)
    OUT/inpaint256/{name}_mask.npy, _observed.npy, _biharmonic.npy
    OUT/inpaint_camera/camera_clean.npy    camera.png at 512x512 (native), and camera256_clean.npy
    OUT/inpaint_camera/camera{,256}_mask.npy, _observed.npy, _biharmonic.npy
    OUT/scores_{METHOD}.json               written by --score
A method's output for a case is the baseline's path with `_bm3d` / `_biharmonic` replaced by
`_{METHOD}`, e.g. OUT/denoise/s25/01_lofi.npy, OUT/inpaint256/09_lofi.npy.
"""
import argparse
import glob
import json
import os
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

PUBLISHED = {  # Set12, gray AWGN, PSNR dB (BM3D: Dabov et al. 2007 as tabulated in Zhang et al. TIP 2017)
    "BM3D": {15: 32.37, 25: 29.97, 50: 26.72},
    "DnCNN": {15: 32.86, 25: 30.44, 50: 27.18},
}
REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------- helpers
def pkg_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def load_gray(path):
    import imageio.v3 as iio

    a = iio.imread(path)
    if a.ndim == 3:  # not expected for Set12; luminance of RGB(A) just in case
        a = a[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if a.dtype == np.uint8 or a.max() > 1.0:
        a = a.astype(np.float64) / 255.0
    return np.ascontiguousarray(a, dtype=np.float32)


def save(path, a):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(a, dtype=np.float32))


def metrics(clean, x):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    c, x = np.asarray(clean, np.float64), np.asarray(x, np.float64)
    return {"psnr": float(peak_signal_noise_ratio(c, x, data_range=1.0)),
            "ssim": float(structural_similarity(c, x, data_range=1.0))}


def timed(fn, *args, **kw):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, time.perf_counter() - w, time.process_time() - c


def noise_rng(seed, index, sigma):
    return np.random.default_rng([seed, 0, index, int(sigma)])


def make_mask(shape, fraction, seed, index):
    h, w = shape
    rng = np.random.default_rng([seed, 1, index, h, w])
    k = int(round(fraction * h * w))
    m = np.zeros(h * w, np.float32)
    m[rng.choice(h * w, size=k, replace=False)] = 1.0
    return m.reshape(h, w)


def mean(xs):
    return float(np.mean(xs)) if len(xs) else None


def rel(p, root):
    return str(Path(p).relative_to(root))


# ------------------------------------------------------------------------------------ baseline run
def run_baselines(args):
    out = Path(args.out).resolve()
    if REPO in out.parents or out == REPO:
        sys.exit(f"--out {out} is inside the repository; the benchmark images must stay out of it")
    set12 = Path(args.set12)
    pngs = sorted(set12.glob("*.png"))
    if not pngs:
        sys.exit(f"no PNGs in {set12}")
    index = {p.stem: i + 1 for i, p in enumerate(pngs)}
    if args.images:
        keep = [s.strip() for s in args.images.split(",") if s.strip()]
        unknown = [s for s in keep if s not in index]
        if unknown:
            sys.exit(f"--images: not in {set12}: {unknown}")
        pngs = [p for p in pngs if p.stem in keep]
    sigmas = [int(s) for s in args.sigmas.split(",") if s.strip()]
    out.mkdir(parents=True, exist_ok=True)

    import skimage
    from skimage.restoration import inpaint_biharmonic
    from skimage.transform import resize
    if not args.skip_bm3d:
        import bm3d

    t_start = time.perf_counter()
    cases = []  # manifest: one entry per (task, image)
    per_image = {"denoise": {}, "inpaint": {}}

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    clean_imgs = {}
    for p in pngs:
        clean_imgs[p.stem] = load_gray(p)
        save(out / "clean" / f"{p.stem}.npy", clean_imgs[p.stem])

    # ---- denoising
    for s in sigmas:
        rows = per_image["denoise"].setdefault(f"s{s}", {})
        for p in pngs:
            name, clean = p.stem, clean_imgs[p.stem]
            noisy = (clean.astype(np.float64) + (s / 255.0) * noise_rng(args.seed, index[name], s)
                     .standard_normal(clean.shape)).astype(np.float32)
            d = out / "denoise" / f"s{s}"
            save(d / f"{name}_noisy.npy", noisy)
            row = {"size": f"{clean.shape[0]}x{clean.shape[1]}", "noisy": metrics(clean, noisy)}
            case = {"task": "denoise", "group": f"s{s}", "name": name, "sigma": s, "size": row["size"],
                    "clean": rel(out / "clean" / f"{name}.npy", out), "input": rel(d / f"{name}_noisy.npy", out),
                    "baseline": "bm3d", "output_stem": rel(d / name, out)}
            if not args.skip_bm3d:
                est, wall, cpu = timed(bm3d.bm3d, noisy, sigma_psd=s / 255.0)
                est = np.asarray(est, np.float32).reshape(clean.shape)
                save(d / f"{name}_bm3d.npy", est)
                row["bm3d"] = {**metrics(clean, est), "seconds": wall, "cpu_seconds": cpu}
                log(f"denoise s={s:2d} {name} {row['size']}: noisy {row['noisy']['psnr']:.2f} dB, "
                    f"BM3D {row['bm3d']['psnr']:.2f} dB / {row['bm3d']['ssim']:.4f}, {wall:.1f} s (cpu {cpu:.1f} s)")
            rows[name] = row
            cases.append(case)

    # ---- inpainting
    def inpaint_case(folder, name, clean, idx, group, clean_path):
        mask = make_mask(clean.shape, args.fraction, args.seed, idx)
        observed = (clean * mask).astype(np.float32)
        d = out / folder
        save(d / f"{name}_mask.npy", mask)
        save(d / f"{name}_observed.npy", observed)
        row = {"size": f"{clean.shape[0]}x{clean.shape[1]}", "observed": int(mask.sum()),
               "zero_filled": metrics(clean, observed)}
        est, wall, cpu = timed(inpaint_biharmonic, observed, mask == 0)
        est = np.asarray(est, np.float32)
        save(d / f"{name}_biharmonic.npy", est)
        row["biharmonic"] = {**metrics(clean, est), "seconds": wall, "cpu_seconds": cpu}
        log(f"inpaint {folder}/{name} {row['size']}: biharmonic {row['biharmonic']['psnr']:.2f} dB / "
            f"{row['biharmonic']['ssim']:.4f}, {wall:.1f} s")
        per_image["inpaint"].setdefault(group, {})[name] = row
        cases.append({"task": "inpaint", "group": group, "name": name, "size": row["size"],
                      "clean": rel(clean_path, out), "input": rel(d / f"{name}_observed.npy", out),
                      "mask": rel(d / f"{name}_mask.npy", out), "baseline": "biharmonic",
                      "output_stem": rel(d / name, out)})

    def to256(img):
        if img.shape == (256, 256):
            return img.copy()
        return resize(img.astype(np.float64), (256, 256), anti_aliasing=True).astype(np.float32)

    if not args.skip_inpaint:
        for p in pngs:
            name, clean = p.stem, clean_imgs[p.stem]
            inpaint_case("inpaint", name, clean, index[name], f"native {clean.shape[0]}x{clean.shape[1]}",
                         out / "clean" / f"{name}.npy")
        for p in pngs:
            name = p.stem
            small = to256(clean_imgs[name])
            save(out / "inpaint256" / f"{name}_clean.npy", small)
            inpaint_case("inpaint256", name, small, index[name], "all at 256x256",
                         out / "inpaint256" / f"{name}_clean.npy")
        if not args.no_camera:
            cam = load_gray(args.camera)
            d = out / "inpaint_camera"
            save(d / "camera_clean.npy", cam)
            inpaint_case("inpaint_camera", "camera", cam, 0, f"camera {cam.shape[0]}x{cam.shape[1]}",
                         d / "camera_clean.npy")
            cam256 = to256(cam)
            save(d / "camera256_clean.npy", cam256)
            inpaint_case("inpaint_camera", "camera256", cam256, 0, "camera 256x256", d / "camera256_clean.npy")

    # ---- summary
    summary = {"denoise": {}, "inpaint": {}}
    for g, rows in per_image["denoise"].items():
        r = list(rows.values())
        summary["denoise"][g] = {"n": len(r), "noisy_psnr": mean([x["noisy"]["psnr"] for x in r])}
        if not args.skip_bm3d:
            summary["denoise"][g].update(
                bm3d_psnr=mean([x["bm3d"]["psnr"] for x in r]), bm3d_ssim=mean([x["bm3d"]["ssim"] for x in r]),
                bm3d_seconds=mean([x["bm3d"]["seconds"] for x in r]),
                bm3d_seconds_by_size={sz: mean([x["bm3d"]["seconds"] for x in r if x["size"] == sz])
                                      for sz in sorted({x["size"] for x in r})},
                bm3d_cpu_over_wall=sum(x["bm3d"]["cpu_seconds"] for x in r) / sum(x["bm3d"]["seconds"] for x in r))
    for g, rows in per_image["inpaint"].items():
        r = list(rows.values())
        summary["inpaint"][g] = {"n": len(r), "zero_filled_psnr": mean([x["zero_filled"]["psnr"] for x in r]),
                                 "biharmonic_psnr": mean([x["biharmonic"]["psnr"] for x in r]),
                                 "biharmonic_ssim": mean([x["biharmonic"]["ssim"] for x in r]),
                                 "biharmonic_seconds": mean([x["biharmonic"]["seconds"] for x in r])}
    total = time.perf_counter() - t_start
    result = {
        "what": "Set12 classical baselines: BM3D (denoising), biharmonic (inpainting); see set12_baselines.py",
        "settings": {"set12": str(set12.resolve()), "images": [p.stem for p in pngs], "sigmas": sigmas,
                     "fraction": args.fraction, "seed": args.seed, "camera": None if args.no_camera else str(args.camera),
                     "noise": "clean + s/255 * default_rng([seed, 0, index, s]).standard_normal, not clipped, float32",
                     "mask": "exactly round(fraction*H*W) observed, default_rng([seed, 1, index, H, W]).choice",
                     "resize256": "skimage.transform.resize(anti_aliasing=True) (default order 1); 256x256 images unchanged",
                     "metrics": "skimage peak_signal_noise_ratio / structural_similarity, data_range=1, float64"},
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "scikit-image": skimage.__version__,
                     "bm3d": pkg_version("bm3d"), "bm4d": pkg_version("bm4d"), "scipy": pkg_version("scipy"),
                     "imageio": pkg_version("imageio")},
        "machine": {"cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                    "platform": platform.platform(), "processor": platform.processor(),
                    "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
                    "niceness": os.nice(0)},
        "total_seconds": total,
        "summary": summary,
        "per_image": per_image,
        "cases": cases,
    }
    (out / "baselines.json").write_text(json.dumps(result, indent=1))
    print()
    print(baseline_table(result))
    print(f"\ntotal {total:.0f} s; wrote {out / 'baselines.json'}")


def fmt(x, d=2):
    return "—" if x is None else f"{x:.{d}f}"


def baseline_table(res):
    s, v, m = res["summary"], res["versions"], res["machine"]
    lines = [f"Set12 baselines (bm3d {v['bm3d']}, scikit-image {v['scikit-image']}, numpy {v['numpy']}; "
             f"{m['cpu_count']} CPUs, seed {res['settings']['seed']})", "",
             "| Denoising (Set12, n) | noisy PSNR | BM3D PSNR | BM3D SSIM | BM3D s/image (256² / 512²) | published BM3D |",
             "|---|---|---|---|---|---|"]
    for g, r in s["denoise"].items():
        sig = int(g[1:])
        by = r.get("bm3d_seconds_by_size") or {}
        lines.append(f"| σ={sig} (n={r['n']}) | {fmt(r['noisy_psnr'])} | {fmt(r.get('bm3d_psnr'))} | "
                     f"{fmt(r.get('bm3d_ssim'), 4)} | {fmt(r.get('bm3d_seconds'), 1)} "
                     f"({fmt(by.get('256x256'), 1)} / {fmt(by.get('512x512'), 1)}) | {fmt(PUBLISHED['BM3D'].get(sig))} |")
    if s["inpaint"]:
        frac = res["settings"]["fraction"]
        lines += ["", f"| Inpainting ({frac:.0%} observed) | n | zero-filled PSNR | biharmonic PSNR | biharmonic SSIM | s/image |",
                  "|---|---|---|---|---|---|"]
        for g, r in s["inpaint"].items():
            lines.append(f"| {g} | {r['n']} | {fmt(r['zero_filled_psnr'])} | {fmt(r['biharmonic_psnr'])} | "
                         f"{fmt(r['biharmonic_ssim'], 4)} | {fmt(r['biharmonic_seconds'], 1)} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ scoring
def find_outputs(res, out, spec, method):
    """Map case index -> path of the method's output (or None)."""
    want = {i: f"{c['output_stem']}_{method}.npy" for i, c in enumerate(res["cases"])}
    if os.path.isdir(spec):
        root = Path(spec)
        return {i: (root / w if (root / w).is_file() else None) for i, w in want.items()}
    files = [Path(f) for f in glob.glob(spec, recursive=True)]
    found = {}
    for i, w in want.items():
        hits = [f for f in files if f.as_posix().endswith("/" + w) or f.as_posix() == w]
        found[i] = hits[0] if hits else None
    return found


def run_score(args):
    out = Path(args.out)
    bj = out / "baselines.json"
    if not bj.is_file():
        sys.exit(f"{bj} not found: run the baselines first (same --out)")
    res = json.loads(bj.read_text())
    method = args.method
    found = find_outputs(res, out, args.score, method)
    per, missing, bad = {}, [], []
    for i, c in enumerate(res["cases"]):
        key = (c["task"], c["group"])
        p = found[i]
        if p is None:
            missing.append(f"{c['output_stem']}_{method}.npy")
            continue
        clean = np.load(out / c["clean"])
        x = np.load(p)
        x = np.squeeze(x)
        if x.shape != clean.shape:
            bad.append(f"{p}: shape {x.shape}, expected {clean.shape}")
            continue
        if not np.all(np.isfinite(x)):
            bad.append(f"{p}: non-finite values")
            continue
        m = metrics(clean, x)
        base = res["per_image"][c["task"]][c["group"]][c["name"]].get(c["baseline"])
        per.setdefault(key, {})[c["name"]] = {"path": str(p), "size": c["size"], method: m,
                                             c["baseline"]: None if base is None else {"psnr": base["psnr"], "ssim": base["ssim"]}}
    # summaries on the images scored, the baseline on the same images and on all of them
    summary = {}
    for (task, group), rows in per.items():
        r = list(rows.values())
        bname = "bm3d" if task == "denoise" else "biharmonic"
        all_base = [x.get(bname) for x in res["per_image"][task][group].values()]
        same = [x[bname] for x in r if x[bname] is not None]
        summary.setdefault(task, {})[group] = {
            "n": len(r), "n_total": len(res["per_image"][task][group]),
            "missing": sorted(set(res["per_image"][task][group]) - set(rows)),
            f"{method}_psnr": mean([x[method]["psnr"] for x in r]), f"{method}_ssim": mean([x[method]["ssim"] for x in r]),
            f"{bname}_psnr_same": mean([x["psnr"] for x in same]) if len(same) == len(r) else None,
            f"{bname}_ssim_same": mean([x["ssim"] for x in same]) if len(same) == len(r) else None,
            f"{bname}_psnr_all": mean([x["psnr"] for x in all_base if x]) if all(all_base) else None,
        }
    scores = {"method": method, "source": args.score, "summary": summary,
              "per_image": {f"{t}/{g}": rows for (t, g), rows in per.items()},
              "missing": missing, "rejected": bad, "versions": res["versions"], "settings": res["settings"]}
    dest = out / f"scores_{method}.json"
    dest.write_text(json.dumps(scores, indent=1))
    print(score_table(res, scores, method))
    if missing:
        print(f"\nmissing ({len(missing)}): " + ", ".join(missing[:40]) + (" ..." if len(missing) > 40 else ""))
    if bad:
        print(f"\nrejected ({len(bad)}):\n  " + "\n  ".join(bad))
    print(f"\nwrote {dest}")


def score_table(res, scores, method):
    s = scores["summary"]
    lines = [f"Set12: {method} against the measured baselines (same noisy images / masks) and published figures", ""]
    groups = [g for g in res["summary"]["denoise"]]
    if groups:
        lines += [f"| Denoising σ | n | {method} PSNR / SSIM | BM3D (measured, same images) | BM3D published | DnCNN published |",
                  "|---|---|---|---|---|---|"]
        for g in groups:
            sig = int(g[1:])
            r = s.get("denoise", {}).get(g)
            pub = f"{fmt(PUBLISHED['BM3D'].get(sig))} | {fmt(PUBLISHED['DnCNN'].get(sig))}"
            if r is None:
                lines.append(f"| {sig} | 0/{res['summary']['denoise'][g]['n']} | (no outputs) | "
                             f"{fmt(res['summary']['denoise'][g].get('bm3d_psnr'))} (all) | {pub} |")
                continue
            n = f"{r['n']}/{r['n_total']}" + ("*" if r["missing"] else "")
            lines.append(f"| {sig} | {n} | {fmt(r[method + '_psnr'])} / {fmt(r[method + '_ssim'], 4)} | "
                         f"{fmt(r['bm3d_psnr_same'])} / {fmt(r['bm3d_ssim_same'], 4)} | {pub} |")
    igroups = list(res["summary"]["inpaint"])
    if igroups:
        lines += ["", f"| Inpainting ({res['settings']['fraction']:.0%} observed) | n | {method} PSNR / SSIM | biharmonic PSNR / SSIM (same images) |",
                  "|---|---|---|---|"]
        for g in igroups:
            r = s.get("inpaint", {}).get(g)
            if r is None:
                b = res["summary"]["inpaint"][g]
                lines.append(f"| {g} | 0/{b['n']} | (no outputs) | {fmt(b['biharmonic_psnr'])} / {fmt(b['biharmonic_ssim'], 4)} (all) |")
                continue
            n = f"{r['n']}/{r['n_total']}" + ("*" if r["missing"] else "")
            lines.append(f"| {g} | {n} | {fmt(r[method + '_psnr'])} / {fmt(r[method + '_ssim'], 4)} | "
                         f"{fmt(r['biharmonic_psnr_same'])} / {fmt(r['biharmonic_ssim_same'], 4)} |")
    partial = [f"{t} {g}: missing {', '.join(r['missing'])}" for t, gs in s.items() for g, r in gs.items() if r["missing"]]
    if partial:
        lines += ["", "\\* computed on the images that have outputs (baselines on the same images); " + "; ".join(partial)]
    lines += ["", "Published: Set12 gray AWGN PSNR as tabulated by Zhang et al. (DnCNN, TIP 2017); different noise draws."]
    return "\n".join(lines)


def list_inputs(args):
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # allow `| head`
    out = Path(args.out)
    res = json.loads((out / "baselines.json").read_text())
    for c in res["cases"]:
        print("\t".join([c["task"], c["group"].replace(" ", "_"), c["name"], str(out / c["input"]),
                         str(out / c["mask"]) if "mask" in c else "-", str(out / f"{c['output_stem']}_{args.method}.npy"),
                         str(c.get("sigma", "-"))]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set12", default=str(REPO.parent / "shared" / "data" / "set12"), help="folder of Set12 PNGs")
    ap.add_argument("--out", default="/tmp/set12-bench", help="output folder (outside the repository)")
    ap.add_argument("--sigmas", default="15,25,50", help="noise levels on the 0..255 scale")
    ap.add_argument("--fraction", type=float, default=0.3, help="fraction of observed pixels for inpainting")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", default="", help="comma-separated subset of names (e.g. 01,08); same draws as a full run")
    ap.add_argument("--skip-bm3d", action="store_true", help="save noisy inputs but do not run BM3D")
    ap.add_argument("--skip-inpaint", action="store_true")
    ap.add_argument("--no-camera", action="store_true", help="leave out the camera.png inpainting case")
    ap.add_argument("--camera", default=str(REPO / "data" / "images" / "gray" / "camera.png"))
    ap.add_argument("--score", metavar="DIR_OR_PATTERN",
                    help="score a method's outputs: a folder with OUT's layout, or a glob of *_{method}.npy files")
    ap.add_argument("--method", default="lofi", help="suffix of the method's outputs, {name}_{method}.npy")
    ap.add_argument("--list-inputs", action="store_true",
                    help="print task, group, name, input, mask, output path (for --method), sigma; tab-separated")
    args = ap.parse_args()
    if args.list_inputs:
        list_inputs(args)
    elif args.score:
        run_score(args)
    else:
        run_baselines(args)


if __name__ == "__main__":
    main()
