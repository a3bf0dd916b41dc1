"""Inputs of the README's inpainting experiment, and the biharmonic baseline.

    python prepare_inpainting.py OUT_DIR      # ground truths (.npy) and 30 %-observed masks (.png)
    python prepare_inpainting.py OUT_DIR --biharmonic   # scikit-image's inpaint_biharmonic + PSNR/SSIM

Needs numpy and scikit-image (pip install scikit-image). The masks keep each pixel with
probability 0.3 (numpy's default_rng(0)), the same masks for LoFi-ADMM and the baseline.
"""
import json
import sys
from pathlib import Path

import numpy as np
from skimage import data, io, transform, util
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.restoration import inpaint_biharmonic

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
repo = Path(__file__).resolve().parents[2]

camera = util.img_as_float32(io.imread(repo / "data/images/gray/camera.png"))
# Not in the repository (scikit-image's astronaut, gray): a photograph the model never saw.
astronaut = util.img_as_float32(np.dot(data.astronaut()[..., :3], [0.2125, 0.7154, 0.0721]) / 255.0)
cases = {
    "camera-512": camera,
    "camera-256": transform.resize(camera, (256, 256), anti_aliasing=True).astype(np.float32),
    "astronaut-512": astronaut.astype(np.float32),
    "astronaut-256": transform.resize(astronaut, (256, 256), anti_aliasing=True).astype(np.float32),
}

if "--biharmonic" not in sys.argv:
    for name, img in cases.items():
        rng = np.random.default_rng(0)
        observed = rng.random(img.shape) < 0.3
        np.save(out / f"{name}.npy", img.astype(np.float32))
        io.imsave(out / f"{name}-mask.png", (observed * 255).astype(np.uint8), check_contrast=False)
    sys.exit(0)

results = {}
for name, img in cases.items():
    observed = io.imread(out / f"{name}-mask.png") > 127
    restored = inpaint_biharmonic(np.where(observed, img, 0.0), ~observed)
    rng_ = img.max() - img.min()
    results[name] = {
        "psnr": peak_signal_noise_ratio(img, restored, data_range=rng_),
        "ssim": structural_similarity(img, restored, data_range=rng_),
        "observed_fraction": float(observed.mean()),
    }
    np.save(out / f"{name}-biharmonic.npy", restored.astype(np.float32))
print(json.dumps(results, indent=2))
