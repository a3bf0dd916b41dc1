"""The shipped denoiser against BM3D on photographs that are not in the repository.

    python denoise_vs_bm3d.py OUT_DIR LOFI_BINARY

Gray versions of scikit-image's astronaut, coffee and rocket (512 x 512 crops or resizes), Gaussian
noise sigma = 0.15 (numpy default_rng(0)), LoFi via `lofi reconstruct`, BM3D via the `bm3d`
package (pip install bm3d) at the true sigma. PSNR/SSIM with scikit-image, data range of the truth.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from skimage import data, transform, util
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

out, lofi = Path(sys.argv[1]), sys.argv[2]
out.mkdir(parents=True, exist_ok=True)
repo = Path(__file__).resolve().parents[2]


def gray(rgb):
    return util.img_as_float32(rgb[..., :3]) @ np.array([0.2125, 0.7154, 0.0721], np.float32)


def square512(img):
    h, w = img.shape
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return transform.resize(img, (512, 512), anti_aliasing=True).astype(np.float32)


images = {"astronaut": square512(gray(data.astronaut())), "coffee": square512(gray(data.coffee())),
          "rocket": square512(gray(data.rocket()))}
rng = np.random.default_rng(0)
results = {}
for name, clean in images.items():
    noisy = (clean + 0.15 * rng.standard_normal(clean.shape)).astype(np.float32)
    np.save(out / f"{name}-noisy.npy", noisy)
    t = time.time()
    subprocess.run([lofi, "reconstruct", "--model", str(repo / "models/denoise-gray.lofi"), "--input",
                    str(out / f"{name}-noisy.npy"), "--output", str(out / f"{name}-lofi.npy")], check=True)
    t_lofi = time.time() - t
    import bm3d
    t = time.time()
    est = bm3d.bm3d(noisy, sigma_psd=0.15)
    t_bm3d = time.time() - t
    lofi_out = np.load(out / f"{name}-lofi.npy")
    r = clean.max() - clean.min()
    score = lambda x: {"psnr": peak_signal_noise_ratio(clean, x, data_range=r),
                       "ssim": structural_similarity(clean, x, data_range=r)}
    results[name] = {"noisy": score(noisy), "lofi": score(lofi_out), "bm3d": score(est.astype(np.float32)),
                     "seconds": {"lofi": t_lofi, "bm3d": t_bm3d}}
print(json.dumps(results, indent=2))
