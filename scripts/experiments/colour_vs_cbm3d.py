"""RGB denoising: the gray denoisers through lofi's opponent colour path (`lofi reconstruct` on an
RGB input) against CBM3D on the same noisy images (README, "Colour images").

Every PNG or TIFF in `--images` (sorted by name; `--count` keeps the first N) is read as RGB in
[0, 1] (float64) and given Gaussian noise of sigma/255 drawn with numpy's default_rng seeded by
1000 * sigma + the image's index, not clipped. LoFi runs as a process per image on a float32 .npy
of the noisy image: the CPU-size model in one pass, and the quality model with `--refine`. CBM3D is
`bm3d.bm3d_rgb(noisy, sigma/255)` (its own opponent transform and luminance grouping). PSNR with
data range 1, float64, no clipping, against the clean image. Wall-clock seconds per image are
recorded (whole process for LoFi). One JSON line per image and level is appended to `--out`.

    venv=$(scripts/experiments/setup-bench-venv.sh)
    "$venv/bin/python" scripts/experiments/colour_vs_cbm3d.py --images /path/to/kodak24 \\
        --sigmas 25,50 --out kodak.jsonl
    "$venv/bin/python" scripts/experiments/colour_vs_cbm3d.py --summary kodak.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage import io

REPO = Path(__file__).resolve().parents[2]
METHODS = [
    ("gray", "models/denoise-gray.lofi", []),
    ("large-refine", "models/denoise-gray-large.lofi", ["--refine"]),
]


def psnr(x: np.ndarray, clean: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((x.astype(np.float64) - clean) ** 2)))


def run(args: argparse.Namespace) -> None:
    import bm3d

    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff"))
    if args.count:
        files = files[: args.count]
    lofi = str(REPO / "target/release/lofi")
    with tempfile.TemporaryDirectory() as tmp:
        noisy_path, out_path = Path(tmp) / "noisy.npy", Path(tmp) / "out.npy"
        for sigma in [int(s) for s in args.sigmas.split(",")]:
            for k, path in enumerate(files):
                clean = io.imread(path)[..., :3].astype(np.float64) / 255
                rng = np.random.default_rng(1000 * sigma + k)
                noisy = clean + sigma / 255 * rng.standard_normal(clean.shape)
                np.save(noisy_path, noisy.astype(np.float32))
                row = {"image": path.stem, "sigma": sigma, "noisy": psnr(noisy, clean)}
                for label, model, flags in METHODS:
                    started = time.time()
                    subprocess.run(
                        [lofi, "reconstruct", "--model", str(REPO / model), "--input", str(noisy_path),
                         "--output", str(out_path), "--sigma", f"{sigma}/255", "--threads", "2", *flags],
                        check=True, capture_output=True)
                    row[label + "_s"] = time.time() - started
                    row[label] = psnr(np.load(out_path), clean)
                started = time.time()
                denoised = bm3d.bm3d_rgb(noisy, sigma / 255)
                row["cbm3d_s"] = time.time() - started
                row["cbm3d"] = psnr(denoised, clean)
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def summary(paths: list[str]) -> None:
    for path in paths:
        rows = [json.loads(line) for line in open(path)]
        for sigma in sorted({r["sigma"] for r in rows}):
            at = [r for r in rows if r["sigma"] == sigma]
            line = [f"{path} sigma {sigma}: {len(at)} images"]
            for key in ["gray", "large-refine", "cbm3d"]:
                seconds = [r[key + "_s"] for r in at]
                line.append(f"{key} {np.mean([r[key] for r in at]):.2f} dB "
                            f"({np.mean(seconds):.1f} s, {min(seconds):.1f}-{max(seconds):.1f})")
            ahead = sum(r["large-refine"] > r["cbm3d"] for r in at)
            line.append(f"large-refine ahead of CBM3D on {ahead}")
            print("; ".join(line))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="folder of RGB test images (not part of the repository)")
    parser.add_argument("--sigmas", default="25,50")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--out", default="colour.jsonl")
    parser.add_argument("--summary", nargs="+", help="print the means of these result files instead")
    parsed = parser.parse_args()
    if parsed.summary:
        summary(parsed.summary)
    else:
        run(parsed)
