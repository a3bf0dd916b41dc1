#!/usr/bin/env python3
"""Re-derive every output stored in tests/fixtures/parity with numpy alone (float64).

This is an independent implementation of the formulas in docs/reference-semantics.md (it does
not use torch or the reference's code), run on the fixture files exactly as a consumer reads
them (hyper.json, state.safetensors, io.safetensors).  It checks that the fixtures say what the
formulas say, and documents the interpolation details the formulas leave implicit:

* grid_sample bicubic (align_corners=True, padding_mode='reflection'): the sample position is
  NOT reflected; each of the 4x4 integer taps is reflected on its own (-1 -> 1, H -> H-2) and
  the cubic-convolution weights use A = -0.75.
* filter resize (F.interpolate bicubic, align_corners=False): source = (dst + 0.5) * in/out - 0.5,
  taps clamped to [0, in-1], A = -0.75, no antialiasing.

Usage: check_parity_fixtures.py [DIR]   (needs numpy and safetensors)
"""

import json
import os
import sys

import numpy as np

try:
    from safetensors.numpy import load_file
except ImportError:  # pragma: no cover
    sys.exit("error: the 'safetensors' package is required: pip install safetensors")

A = -0.75


def cubic_weights(t):
    """Cubic-convolution weights of the taps at offsets -1, 0, 1, 2 for fraction t in [0, 1)."""
    def near(x):  # |x| <= 1
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def reflect_index(k, size):
    """Reflection about the centres of the first and last pixels (align_corners=True)."""
    if size == 1:
        return np.zeros_like(k)
    period = 2 * (size - 1)
    k = np.abs(k) % period
    return np.where(k >= size, period - k, k)


def sample_bicubic_reflect(img, rows, cols):
    """img (C, H, W); rows, cols: continuous pixel positions (any shape). Returns (C, *shape)."""
    c, h, w = img.shape
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    wr = cubic_weights(rows - r0)  # (..., 4)
    wc = cubic_weights(cols - c0)
    out = np.zeros((c,) + rows.shape)
    for a in range(4):
        ri = reflect_index(r0 - 1 + a, h)
        for b in range(4):
            ci = reflect_index(c0 - 1 + b, w)
            out += img[:, ri, ci] * (wr[..., a] * wc[..., b])
    return out


def resize_bicubic(img, out_h, out_w):
    """F.interpolate(mode='bicubic', align_corners=False) of img (C, H, W)."""
    c, h, w = img.shape

    def axis(n_in, n_out):
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        i0 = np.floor(src).astype(np.int64)
        wt = cubic_weights(src - i0)
        m = np.zeros((n_out, n_in))
        for a in range(4):
            np.add.at(m, (np.arange(n_out), np.clip(i0 - 1 + a, 0, n_in - 1)), wt[:, a])
        return m

    mr, mc = axis(h, out_h), axis(w, out_w)
    return np.einsum("ri,cij,sj->crs", mr, img, mc)


def noise_suppression(x, filt):
    """x (C, H, W) real; filt (c_f, S+10, S+10) complex. Returns (C', H, W)."""
    c, h, w = x.shape
    p = 5
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    if c == 2:
        xp = (xp[0] + 1j * xp[1])[None]
    spec = np.fft.fft2(xp, norm="forward")
    hp, wp = h + 2 * p, w + 2 * p
    if filt.shape[1:] != (hp, wp):
        filt = resize_bicubic(filt.real, hp, wp) + 1j * resize_bicubic(filt.imag, hp, wp)
    spec = np.repeat(spec, filt.shape[0] // spec.shape[0], axis=0) * filt
    y = np.fft.ifft2(spec, norm="forward")[:, p:p + h, p:p + w]
    return np.concatenate([y.real, y.imag, x], axis=0)


def mlp(state, prefix, x, num_layers):
    for k in range(num_layers + 1):
        x = x @ state[f"{prefix}.fcs.{k}.weight"].T + state[f"{prefix}.fcs.{k}.bias"]
        if k < num_layers:
            x = np.maximum(x, 0)
    return x


def lofi_forward(hyper, state, x, coords):
    """x (C, H, W); coords (P, 2). Returns (P, c_out)."""
    S, N, M = hyper["image_size"], hyper["N"], hyper["M"]
    c, h, w = x.shape
    if hyper["fourier_filtering"]:
        f = state["filter"]
        x = noise_suppression(x, (f[..., 0] + 1j * f[..., 1])[0])
    patch = state["patch"].reshape(N, M, 2)  # (1, N, M, 2) for 'square' in the reference
    scale = state["patch_scale"][0]
    g_row = 2 * coords[:, 0, None, None] + scale * patch[None, :, :, 0] * (S / h)
    g_col = 2 * coords[:, 1, None, None] + scale * patch[None, :, :, 1] * (S / w)
    rows = (g_row + 1) / 2 * (h - 1)
    cols = (g_col + 1) / 2 * (w - 1)
    crop = sample_bicubic_reflect(x, rows, cols).transpose(1, 0, 2, 3)  # (P, C', N, M)
    L = hyper["num_layers"]
    feats = [mlp(state, f"MLP.{m}", crop[:, :, :, m].reshape(len(coords), -1), L) for m in range(M)]
    out = mlp(state, "mixer_MLP", np.concatenate(feats, axis=1), L)
    if hyper["residual_learning"]:
        ci, cj = (0, 0) if hyper["patch_shape"] == "round" else (N // 2, M // 2)
        out = crop[:, :hyper["c_out"], ci, cj] - out
    return out


def check_case(case_dir):
    with open(os.path.join(case_dir, "hyper.json")) as f:
        hyper = json.load(f)
    assert hyper["network"] == "MultiMLP"
    state = {k: v.astype(np.float64) for k, v in load_file(os.path.join(case_dir, "state.safetensors")).items()}
    io = {k: v.astype(np.float64) for k, v in load_file(os.path.join(case_dir, "io.safetensors")).items()}
    x = io["input"][0]
    h, w = x.shape[1:]
    worst = 0.0
    for key in ("grid", "fine", "random"):
        got = lofi_forward(hyper, state, x, io[f"{key}_coords"])
        ref = io[f"{key}_out"]
        assert got.shape == ref.shape, (got.shape, ref.shape)
        worst = max(worst, float(np.max(np.abs(got - ref))))
    # Coordinates are what the README says.
    i, j = np.meshgrid(np.arange(h) / (h - 1) - 0.5, np.arange(w) / (w - 1) - 0.5, indexing="ij")
    assert np.allclose(io["grid_coords"], np.stack([i.ravel(), j.ravel()], 1), atol=1e-7)
    scale = float(np.max(np.abs(io["grid_out"])))
    return worst, scale


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parity"
    cases = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    failed = False
    for name in cases:
        worst, scale = check_case(os.path.join(root, name))
        ok = worst < 1e-4
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: max |numpy - stored| = {worst:.2e} (max |out| = {scale:.3f})")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
