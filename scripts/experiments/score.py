"""Scores of reconstructions against a ground truth: score.py TRUTH.npy X.npy [...]

For every X: PSNR and SSIM (scikit-image, data range of the ground truth), the residual RMS
(root mean square of X - TRUTH) and, as radio astronomers read images, the dynamic range:
the peak of X over the residual RMS (a reconstruction whose artefacts are as faint as the sky's
noise floor reaches a high dynamic range even when the dark sky dominates the PSNR).

"outskirts_texture" measures striping where an astronomer sees it: in the asinh stretch of the
figures (linear below 1 % of the truth's peak, logarithmic above), the RMS of the stretched
error's fine scales (minus its Gaussian blur of 1.5 pixels) over the galaxies' outskirts (truth
between 0.1 % and 5 % of its peak). A smooth error, such as TV's missing outskirts, scores low; a
cross-hatch or stripes of the same energy score high. Lower is better; the truth scores 0.
"""
import json
import sys

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

truth = np.load(sys.argv[1]).astype(np.float64).squeeze()
rng = truth.max() - truth.min()
peak = truth.max()
outskirts = (truth > 1e-3 * peak) & (truth < 5e-2 * peak)


def stretch(x):
    return np.arcsinh(np.clip(x, 0, None) / (0.01 * peak)) / np.arcsinh(100.0)


def outskirts_texture(x):
    error = stretch(x) - stretch(truth)
    fine = error - gaussian_filter(error, 1.5)
    return float(np.sqrt(np.mean(fine[outskirts] ** 2))) if outskirts.any() else float("nan")


out = {}
for path in sys.argv[2:]:
    x = np.load(path).astype(np.float64).squeeze()
    residual_rms = float(np.sqrt(np.mean((x - truth) ** 2)))
    out[path] = {
        "psnr": peak_signal_noise_ratio(truth, x, data_range=rng),
        "ssim": structural_similarity(truth, x, data_range=rng),
        "residual_rms": residual_rms,
        "dynamic_range": float(x.max() / residual_rms),
        "outskirts_texture": outskirts_texture(x),
    }
print(json.dumps(out, indent=2))
