#!/usr/bin/env python3
"""Timing stand-in for the official LoFi implementation's inference and training loops.

The official implementation (public repository AmirEhsan95/LoFi) is not part of this repository
and cannot be fetched where the benchmarks run (no network), so `lofi bench --reference` times
this script instead: plain PyTorch written from the formulas in the project's notes on the
reference's semantics (nothing copied from its code), doing the same arithmetic the same way:

* the network as torch modules: M per-angle `nn.Sequential` Linear/ReLU stacks evaluated one
  after the other in a Python loop, their outputs concatenated, then the mixer;
* inference as the reference's `batch_sampling`: consecutive blocks of 2^14 coordinates, the
  Fourier filter recomputed for every block (the reference's `forward(coordinate, x)` does), but
  every coordinate covered (the reference drops the last n mod 2^14 ones, which would flatter it);
* a training step: B objects x P random pixels (the same pixels for every object), filter, sample,
  network, mean absolute error, `torch.optim.Adam`.

Weights are random (the cost does not depend on them). Prints one JSON object.

    python scripts/reference/bench_reference_loop.py --size 384 --threads 2
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(inp, out, layers, hidden):
    mods, prev = [], inp
    for _ in range(layers):
        mods += [nn.Linear(prev, hidden), nn.ReLU()]
        prev = hidden
    mods.append(nn.Linear(prev, out))
    return nn.Sequential(*mods)


class LoFiLike(nn.Module):
    """MultiMLP LoFi with the Fourier filter, gray in and out, round geometry."""

    def __init__(self, image_size=128, n=9, m=9, layers=3, hidden=370, features=100):
        super().__init__()
        self.s, self.n, self.m = image_size, n, m
        theta = torch.arange(m, dtype=torch.float32) * (2 * math.pi / m)
        ring = torch.arange(n, dtype=torch.float32).view(n, 1, 1)
        unit = torch.stack([theta.cos(), theta.sin()], 1) / (2 * image_size)
        self.patch = nn.Parameter(ring * unit)  # (N, M, 2)
        self.patch_scale = nn.Parameter(torch.ones(1))
        size = image_size + 10
        self.filter = nn.Parameter(torch.ones(1, 1, size, size, dtype=torch.complex64))
        c = 3  # Re, Im of the filtered image, then the raw image
        self.mlps = nn.ModuleList([mlp(c * n, features, layers, hidden) for _ in range(m)])
        self.mixer = mlp(features * m, 1, layers, hidden)

    def filtered(self, x):
        _, _, h, w = x.shape
        p = F.pad(x, (5, 5, 5, 5))
        spec = torch.fft.fft2(p, norm="forward")
        filt = self.filter
        if filt.shape[-1] != p.shape[-1] or filt.shape[-2] != p.shape[-2]:
            re = F.interpolate(filt.real, size=p.shape[-2:], mode="bicubic", align_corners=False)
            im = F.interpolate(filt.imag, size=p.shape[-2:], mode="bicubic", align_corners=False)
            filt = torch.complex(re, im)
        out = torch.fft.ifft2(spec * filt, norm="forward")[..., 5:5 + h, 5:5 + w]
        return torch.cat([out.real, out.imag, x], 1)

    def forward(self, coords, x):
        b, _, h, _ = x.shape
        q = self.filtered(x)
        p = coords.shape[1]
        offsets = self.patch_scale * self.patch * (self.s / h)
        grid = (2 * coords).view(b, p, 1, 1, 2) + offsets
        grid = grid.view(b, p * self.n, self.m, 2).flip(-1)
        crop = F.grid_sample(q, grid, mode="bicubic", padding_mode="reflection", align_corners=True)
        crop = crop.view(b, -1, p, self.n, self.m).permute(0, 2, 1, 3, 4)  # (B, P, C', N, M)
        feats = [net(crop[..., k].reshape(b, p, -1)) for k, net in enumerate(self.mlps)]
        return self.mixer(torch.cat(feats, -1))


def pixel_coords(h, w):
    ys = torch.arange(h, dtype=torch.float32) / (h - 1) - 0.5
    xs = torch.arange(w, dtype=torch.float32) / (w - 1) - 0.5
    g = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([g[0].reshape(-1), g[1].reshape(-1)], 1)


def inference(model, size, block=1 << 14):
    x = torch.rand(1, 1, size, size)
    coords = pixel_coords(size, size)
    out = torch.empty(coords.shape[0], 1)
    with torch.no_grad():
        model(coords[:64].unsqueeze(0), x)  # warm-up
        start = time.perf_counter()
        for first in range(0, coords.shape[0], block):
            c = coords[first:first + block].unsqueeze(0)
            out[first:first + c.shape[1]] = model(c, x)[0]
        return time.perf_counter() - start


def training(model, objects, pixels, steps, side=128):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    obs, target = torch.rand(objects, 1, side, side), torch.rand(objects, 1, side, side)
    grid = pixel_coords(side, side)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        idx = torch.randint(0, side * side, (pixels,))
        coords = grid[idx].unsqueeze(0).expand(objects, pixels, 2)
        wanted = target.view(objects, 1, -1)[:, :, idx].permute(0, 2, 1)
        loss = (model(coords, obs) - wanted).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step > 0:  # the first step is warm-up
            times.append(time.perf_counter() - start)
    return objects * pixels / (sum(times) / len(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=384, help="output side for inference")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--objects", type=int, default=8)
    ap.add_argument("--pixels", type=int, default=512)
    ap.add_argument("--train-steps", type=int, default=3, help="timed training steps (0: none)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = LoFiLike()
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "parameters": sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())}
    if args.size > 0:
        seconds = inference(model, args.size)
        result.update(inference_size=args.size, inference_seconds=seconds,
                      inference_pixels_per_s=args.size * args.size / seconds)
    if args.train_steps > 0:
        result.update(train_objects=args.objects, train_pixels=args.pixels,
                      train_samples_per_s=training(model, args.objects, args.pixels, args.train_steps))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
