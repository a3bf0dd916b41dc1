"""Scores of reconstructions against a ground truth: score.py TRUTH.npy X.npy [...]

For every X: PSNR and SSIM (scikit-image, data range of the ground truth), the residual RMS
(root mean square of X - TRUTH) and, as radio astronomers read images, the dynamic range:
the peak of X over the residual RMS (a reconstruction whose artefacts are as faint as the sky's
noise floor reaches a high dynamic range even when the dark sky dominates the PSNR).
"""
import json
import sys

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

truth = np.load(sys.argv[1]).astype(np.float64).squeeze()
rng = truth.max() - truth.min()
out = {}
for path in sys.argv[2:]:
    x = np.load(path).astype(np.float64).squeeze()
    residual_rms = float(np.sqrt(np.mean((x - truth) ** 2)))
    out[path] = {
        "psnr": peak_signal_noise_ratio(truth, x, data_range=rng),
        "ssim": structural_similarity(truth, x, data_range=rng),
        "residual_rms": residual_rms,
        "dynamic_range": float(x.max() / residual_rms),
    }
print(json.dumps(out, indent=2))
