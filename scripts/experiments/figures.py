"""The README's plug-and-play pictures from an experiment folder (run_pnp_experiments.sh):

    python figures.py EXPERIMENT_DIR docs/figures
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

exp, out = Path(sys.argv[1]), Path(sys.argv[2])


def tile(img, label, stretch=None):
    v = np.clip(img.squeeze(), 0, 1) if stretch is None else stretch(img.squeeze())
    im = Image.fromarray((v * 255).round().astype(np.uint8)).convert("RGB")
    canvas = Image.new("RGB", (im.width, im.height + 22), "white")
    canvas.paste(im, (0, 22))
    ImageDraw.Draw(canvas).text((4, 5), label, fill="black")
    return canvas


def row(tiles, path):
    w = sum(t.width for t in tiles) + 6 * (len(tiles) - 1)
    canvas = Image.new("RGB", (w, max(t.height for t in tiles)), "white")
    x = 0
    for t in tiles:
        canvas.paste(t, (x, 0))
        x += t.width + 6
    canvas.save(path)


inp = exp / "inpaint"
name = "camera-256"
if not (inp / f"{name}.npy").exists():  # no inpainting part (PARTS=radio, or run_radio_nufft.sh)
    inp = None

if inp is not None:
    truth = np.load(inp / f"{name}.npy")
    mask = np.array(Image.open(inp / f"{name}-mask.png")) > 127
    row([tile(np.where(mask, truth, 0), "observed (30 %)"), tile(np.load(inp / f"{name}-biharmonic.npy"), "biharmonic"),
         tile(np.load(inp / f"{name}-lofi.npy"), "LoFi-ADMM"), tile(truth, "truth")], out / "pnp-inpainting.png")

sky = exp / "radio" / "sky-4"
truth = np.load(sky / "galaxies_00000.npy") if sky.exists() else None
# The astronomer's view: an asinh stretch (linear near zero, logarithmic for the bright core) shows
# the faint outskirts of the galaxies and any artefact in the dark sky; the same stretch for all.
peak = truth.max() if truth is not None else 1.0
stretch = lambda x: np.arcsinh(np.clip(x, 0, None) / (0.01 * peak)) / np.arcsinh(1 / 0.01)
if truth is not None:
    row([tile(np.load(sky / "dirty.npy"), "dirty image A^T y", stretch),
     tile(np.load(sky / "tv-0.005.npy"), "TV-ADMM", stretch),
     tile(np.load(sky / "lofi.npy"), "LoFi-ADMM, fixed sigma", stretch),
     tile(np.load(sky / "lofi-anneal.npy"), "LoFi-ADMM, annealed", stretch),
     tile(truth, "truth", stretch)], out / "pnp-radio.png")
    # The outskirts up close: 96 x 96 pixels around the brightest one, each shown as 3 x 3, where
    # a cross-hatch or stripes in the faint light would show.
    r, c = np.unravel_index(np.argmax(truth), truth.shape)
    r0, c0 = min(max(r - 48, 0), truth.shape[0] - 96), min(max(c - 48, 0), truth.shape[1] - 96)
    zoom = lambda x: np.kron(stretch(x.squeeze())[r0:r0 + 96, c0:c0 + 96], np.ones((3, 3)))
    row([tile(np.load(sky / "tv-0.005.npy"), "TV-ADMM", zoom),
         tile(np.load(sky / "lofi.npy"), "LoFi-ADMM, fixed sigma", zoom),
         tile(np.load(sky / "lofi-anneal.npy"), "LoFi-ADMM, annealed", zoom),
         tile(truth, "truth", zoom)], out / "pnp-radio-zoom.png")

# The NUFFT experiment (run_radio_nufft.sh): MeerKAT coverage, uniform weighting, a 256^2 sky.
for sky in sorted(exp.glob("256-seed*"))[:1]:
    truth = np.load(sky / "galaxies_00000.npy")
    peak = truth.max()
    stretch = lambda x: np.arcsinh(np.clip(x, 0, None) / (0.01 * peak)) / np.arcsinh(1 / 0.01)
    tv = sorted(sky.glob("tv-*.npy"))
    scores = __import__("json").loads((sky / "scores.json").read_text())
    best_tv = max(tv, key=lambda p: scores[str(p)]["psnr"] if str(p) in scores else -1)
    row([tile(np.load(sky / "dirty.npy"), "dirty image (uniform)", stretch),
         tile(np.load(sky / "clean.npy"), "Hogbom CLEAN, restored", stretch),
         tile(np.load(best_tv), "TV-ADMM", stretch),
         tile(np.load(sky / "lofi.npy"), "LoFi-ADMM, annealed", stretch),
         tile(truth, "truth", stretch)], out / "pnp-radio-nufft.png")
