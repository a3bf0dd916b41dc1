"""PSNR / SSIM (scikit-image, data range of the ground truth) of reconstructions: score.py TRUTH.npy X.npy [...]"""
import json
import sys

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

truth = np.load(sys.argv[1]).astype(np.float64).squeeze()
rng = truth.max() - truth.min()
out = {}
for path in sys.argv[2:]:
    x = np.load(path).astype(np.float64).squeeze()
    out[path] = {"psnr": peak_signal_noise_ratio(truth, x, data_range=rng), "ssim": structural_similarity(truth, x, data_range=rng)}
print(json.dumps(out, indent=2))
