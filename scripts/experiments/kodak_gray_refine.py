"""Held-out check of refined denoising (`lofi reconstruct --refine`) on Kodak24 in gray: one pass,
refined, and BM3D on the same noisy images.

Kodak24 (`--kodak`, kodim01.png ... kodim24.png; NOT part of the repository) is read, turned gray
with `skimage.color.rgb2gray` (float in [0, 1]), and given Gaussian noise of sigma/255 drawn with
numpy's default_rng seeded from (1, image number, sigma), not clipped. LoFi runs as a process per
image (`--model`, default the quality model, `--threads 2`), once as it is and once with `--refine`;
BM3D is `bm3d.bm3d(noisy, sigma/255)`. PSNR with data range 1, float64. Wall-clock seconds per
image are recorded (whole process for LoFi). Inputs and outputs go to `--out` (outside the repo).

    venv=$(scripts/experiments/setup-bench-venv.sh)
    "$venv/bin/python" scripts/experiments/kodak_gray_refine.py --kodak /path/to/kodak24 --sigma 50 --count 12
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import bm3d
import numpy as np
from skimage import color, io

REPO = Path(__file__).resolve().parents[2]


def psnr(x: np.ndarray, clean: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((x.astype(np.float64) - clean) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default=str(REPO.parent / "shared" / "data" / "kodak24"))
    ap.add_argument("--out", default="/tmp/kodak-gray")
    ap.add_argument("--sigma", type=int, default=50, help="noise level on the 0..255 scale")
    ap.add_argument("--count", type=int, default=24, help="the first N images")
    ap.add_argument("--model", default=str(REPO / "models" / "denoise-gray-large.lofi"))
    ap.add_argument("--lofi", default=str(REPO / "target" / "release" / "lofi"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    s = args.sigma
    scores: dict[str, list[float]] = {"one pass": [], "refined": [], "bm3d": []}
    seconds: dict[str, list[float]] = {k: [] for k in scores}
    for k in range(1, args.count + 1):
        clean = color.rgb2gray(io.imread(Path(args.kodak) / f"kodim{k:02d}.png")).astype(np.float32)
        rng = np.random.default_rng([1, k, s])
        noisy = (clean + s / 255 * rng.standard_normal(clean.shape)).astype(np.float32)
        source = out / f"{k:02d}_s{s}_noisy.npy"
        np.save(source, noisy)
        for name, extra in [("one pass", []), ("refined", ["--refine"])]:
            target = out / f"{k:02d}_s{s}_{name.replace(' ', '-')}.npy"
            start = time.perf_counter()
            subprocess.run([args.lofi, "reconstruct", "--model", args.model, "--input", str(source), "--output",
                            str(target), "--sigma", f"{s}/255", "--threads", "2", *extra],
                           check=True, stderr=subprocess.DEVNULL)
            seconds[name].append(time.perf_counter() - start)
            scores[name].append(psnr(np.load(target), clean))
        start = time.perf_counter()
        estimate = bm3d.bm3d(noisy, s / 255)
        seconds["bm3d"].append(time.perf_counter() - start)
        scores["bm3d"].append(psnr(estimate, clean))
        print(f"kodim{k:02d}: " + ", ".join(f"{n} {v[-1]:.2f}" for n, v in scores.items()), flush=True)
    summary = {n: round(float(np.mean(v)), 3) for n, v in scores.items()}
    print(f"sigma {s}/255, {args.count} images: mean PSNR {summary}; mean seconds per image "
          + str({n: round(float(np.mean(v)), 1) for n, v in seconds.items()}))
    (out / f"summary_s{s}.json").write_text(json.dumps(
        {"sigma": s, "model": args.model, "mean_psnr": summary, "psnr": scores, "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
