#!/usr/bin/env python3
"""Generate golden parity fixtures from the official LoFi reference implementation.

The reference (public repository AmirEhsan95/LoFi, commit 3652e46) is NOT part of this
repository.  Export its ``model.py`` to a scratch directory outside the repository and point
``--reference-dir`` at it, e.g.::

    mkdir -p /tmp/lofi-ref
    git -C <clone-of-AmirEhsan95/LoFi> show 3652e46:model.py > /tmp/lofi-ref/model.py
    PYTHONPATH=/tmp/pyextra python scripts/reference/make_parity_fixtures.py \
        --reference-dir /tmp/lofi-ref --out tests/fixtures/parity

Needs torch (the version pinned in scripts/setup-torch.sh), numpy and safetensors.
Only the generated DATA is committed; this script contains none of the reference's code.

For every case it writes ``<out>/<case>/``:

* ``hyper.json``        the 17 LoFi constructor keyword arguments;
* ``state.safetensors`` the model's state_dict, float32, complex tensors as view_as_real (..., 2);
* ``io.safetensors``    ``input`` (1, C, H, W) and three coordinate sets with the model's outputs:
  ``grid_coords``/``grid_out``, ``fine_coords``/``fine_out``, ``random_coords``/``random_out``.

plus ``<out>/README.md``.  Run ``scripts/reference/check_parity_fixtures.py`` afterwards to
re-derive every output from the formulas with numpy alone.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys

try:
    import torch
except ImportError:  # pragma: no cover
    sys.exit("error: torch is required (see scripts/setup-torch.sh)")
try:
    from safetensors.torch import load_file
except ImportError:  # pragma: no cover
    sys.exit("error: the 'safetensors' package is required: pip install safetensors "
             "(e.g. pip install --target /tmp/pyextra safetensors; PYTHONPATH=/tmp/pyextra)")

REFERENCE_REPO = "AmirEhsan95/LoFi"
REFERENCE_COMMIT = "3652e46"

HYPER_KEYS = [
    "image_size", "c_in", "c_out", "network", "hidden_dim", "num_layers", "patch_shape",
    "fourier_filtering", "recep_scale", "residual_learning", "learned_geo", "N", "M", "CCPG",
    "num_filters", "n_deform", "coord_deform",
]

BASE = dict(
    image_size=16, c_in=1, c_out=1, network="MultiMLP", hidden_dim=16, num_layers=2,
    patch_shape="round", fourier_filtering=False, recep_scale=1.0, residual_learning=False,
    learned_geo=True, N=9, M=9, CCPG=False, num_filters=1, n_deform=1, coord_deform=False,
)

# (name, seed, hyper overrides, input height/width, purpose)
CASES = [
    ("round_nofilter_c1", 101, dict(), 16,
     "Baseline: round geometry, no filter, one channel, input at the training size (S/H = 1)."),
    ("round_nofilter_c1_in24", 102, dict(hidden_dim=20), 24,
     "Same model type on a 24x24 input: the patch offsets are scaled by S/H = 16/24."),
    ("round_filter_c1", 103, dict(fourier_filtering=True), 16,
     "Noise-suppression filter at its native size (padded 26x26, no resize); C' = 3."),
    ("round_filter_c1_in20", 104, dict(fourier_filtering=True, hidden_dim=20), 20,
     "Filter on a 20x20 input: the 26x26 filter is resized bicubically (align_corners=False) "
     "to 30x30; offsets scaled by 16/20."),
    ("square_filter_c1_residual", 105,
     dict(patch_shape="square", fourier_filtering=True, residual_learning=True), 16,
     "Square geometry (N = M = 9, so the reference's hard-coded centre (4, 4) is the true "
     "centre), filter, residual output = Re(filtered) centre sample minus the network."),
    ("round_filter_complex", 106, dict(c_in=2, c_out=1, fourier_filtering=True, hidden_dim=24), 16,
     "c_in = 2 (complex field q0 + i q1): one complex filter channel, C' = 4 "
     "(Re, Im of the filtered field, then the two raw channels)."),
    ("round_filter_c3_residual", 107,
     dict(c_in=3, c_out=3, fourier_filtering=True, residual_learning=True), 16,
     "Three channels with filter (c_f = 3, C' = 9) and residual learning on Re(filtered)[:3]."),
    ("square_nofilter_c3_in12", 108, dict(c_in=3, c_out=3, patch_shape="square", hidden_dim=20), 12,
     "Square geometry, three channels, no filter, 12x12 input (offsets scaled by 16/12 = 4/3, "
     "so reflection padding is exercised heavily)."),
    ("round_filter_c1_N5M7", 109, dict(fourier_filtering=True, N=5, M=7, recep_scale=1.5), 16,
     "Non-default N = 5 rings, M = 7 angles (7 chunk MLPs of input 3*5, mixer input 700), "
     "recep_scale = 1.5."),
    ("random_geo_c1", 110, dict(patch_shape="random", learned_geo=False), 16,
     "Random geometry, learned_geo = False (the patch is still stored in the state_dict), "
     "no filter."),
]

N_RANDOM = 257


def load_reference(reference_dir):
    path = os.path.join(reference_dir, "model.py")
    if not os.path.isfile(path):
        sys.exit(f"error: {path} not found (export the reference's model.py there)")
    spec = importlib.util.spec_from_file_location("lofi_reference_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return mod, sha


def grid_coords(h, w):
    """All pixel coordinates, row-major, c = (i/(H-1) - 0.5, j/(W-1) - 0.5)."""
    i = torch.arange(h, dtype=torch.float64) / (h - 1) - 0.5
    j = torch.arange(w, dtype=torch.float64) / (w - 1) - 0.5
    ii, jj = torch.meshgrid(i, j, indexing="ij")
    return torch.stack([ii.reshape(-1), jj.reshape(-1)], dim=1).to(torch.float32)


def random_coords(gen, n):
    fixed = torch.tensor([
        [-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5],  # corners
        [0.0, 0.0],
    ], dtype=torch.float64)
    t = torch.rand(4, generator=gen, dtype=torch.float64) - 0.5
    edges = torch.stack([
        torch.stack([torch.tensor(-0.5, dtype=torch.float64), t[0]]),
        torch.stack([torch.tensor(0.5, dtype=torch.float64), t[1]]),
        torch.stack([t[2], torch.tensor(-0.5, dtype=torch.float64)]),
        torch.stack([t[3], torch.tensor(0.5, dtype=torch.float64)]),
    ])
    rest = torch.rand(n - len(fixed) - len(edges), 2, generator=gen, dtype=torch.float64) - 0.5
    return torch.cat([fixed, edges, rest]).to(torch.float32)


def smooth_field(gen, h, w):
    """A smooth random field in roughly [0.1, 0.9]: bicubic upsampling of a coarse random grid
    plus a random low-frequency sinusoid."""
    coarse = torch.rand(1, 1, 5, 5, generator=gen, dtype=torch.float64)
    up = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0, 0]
    yy = torch.arange(h, dtype=torch.float64)[:, None] / h
    xx = torch.arange(w, dtype=torch.float64)[None, :] / w
    f = torch.rand(3, generator=gen, dtype=torch.float64)
    wave = torch.sin(2 * torch.pi * ((1 + 2 * f[0]) * yy + (1 + 2 * f[1]) * xx) + 6.28 * f[2])
    img = up + 0.3 * wave
    img = (img - img.min()) / (img.max() - img.min())
    return 0.1 + 0.8 * img


def make_input(gen, c, h, w):
    chans = [smooth_field(gen, h, w) for _ in range(c)]
    x = torch.stack(chans)[None]
    x = x + 0.05 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    return x.to(torch.float32).contiguous()


@torch.no_grad()
def perturb(model, gen, hyper):
    s = hyper["image_size"]
    if hyper["fourier_filtering"]:
        shape = model.filter.shape
        re = 1.0 + 0.3 * torch.randn(shape, generator=gen)
        im = 0.3 * torch.randn(shape, generator=gen)
        model.filter.copy_(torch.complex(re, im))
    model.patch.add_(0.25 / s * torch.randn(model.patch.shape, generator=gen))
    model.patch_scale.fill_(1.25 * float(hyper["recep_scale"]))


def save_safetensors(tensors, path, metadata):
    """Write a safetensors file byte-for-byte reproducibly.

    safetensors' own writer stores ``__metadata__`` from a hash map, so its key order (and the
    file's bytes) change from run to run.  This writes the same format with sorted keys; the
    result is read back with the safetensors library to make sure it is valid.
    """
    header = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        assert t.dtype == torch.float32 and t.is_contiguous()
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for b in blobs:
            f.write(b)
    back = load_file(path)
    assert back.keys() == tensors.keys()
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)


def state_to_safetensors_dict(state):
    out = {}
    for k, v in state.items():
        v = v.detach().cpu()
        if v.is_complex():
            v = torch.view_as_real(v.to(torch.complex64))
        out[k] = v.to(torch.float32).contiguous().clone()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference-dir", required=True, help="directory containing the reference's model.py")
    ap.add_argument("--out", default="tests/fixtures/parity", help="output directory")
    ap.add_argument("--only", nargs="*", help="generate only these cases (README is still rewritten)")
    args = ap.parse_args()

    ref, model_sha = load_reference(args.reference_dir)
    torch.set_num_threads(1)  # deterministic CPU reductions
    os.makedirs(args.out, exist_ok=True)

    summary = []
    for name, seed, over, size, purpose in CASES:
        hyper = dict(BASE)
        hyper.update(over)
        assert list(hyper) == HYPER_KEYS
        if args.only and name not in args.only:
            summary.append((name, seed, hyper, size, purpose, None))
            continue

        torch.manual_seed(seed)  # default Linear init (and the 'random' geometry) use the global RNG
        model = ref.LoFi(**hyper).eval()
        gen = torch.Generator().manual_seed(seed)
        perturb(model, gen, hyper)

        x = make_input(gen, hyper["c_in"], size, size)
        coords = {
            "grid": grid_coords(size, size),
            "fine": grid_coords(2 * size - 1, 2 * size - 1),
            "random": random_coords(gen, N_RANDOM),
        }
        io = {"input": x}
        with torch.no_grad():
            for key, c in coords.items():
                y = model(c[None], x)[0]
                assert y.shape == (c.shape[0], hyper["c_out"]), y.shape
                assert y.dtype == torch.float32 and torch.isfinite(y).all()
                io[f"{key}_coords"] = c.contiguous()
                io[f"{key}_out"] = y.contiguous().clone()

        # Consistency: grid points are a subset of the fine grid (even indices); evaluating a
        # different set of coordinates must not change a pixel's value beyond float noise.
        fine = io["fine_out"].reshape(2 * size - 1, 2 * size - 1, -1)[::2, ::2].reshape(-1, hyper["c_out"])
        assert torch.allclose(fine, io["grid_out"], atol=1e-5, rtol=1e-5)

        case_dir = os.path.join(args.out, name)
        if os.path.isdir(case_dir):
            shutil.rmtree(case_dir)
        os.makedirs(case_dir)
        with open(os.path.join(case_dir, "hyper.json"), "w") as f:
            json.dump(hyper, f, indent=2)
            f.write("\n")
        meta = {"reference": f"{REFERENCE_REPO}@{REFERENCE_COMMIT}", "torch": torch.__version__,
                "seed": str(seed)}
        st = state_to_safetensors_dict(model.state_dict())
        smeta = dict(meta)
        if hyper["fourier_filtering"]:
            smeta["complex_as_real"] = "filter"
        save_safetensors(st, os.path.join(case_dir, "state.safetensors"), smeta)
        save_safetensors(io, os.path.join(case_dir, "io.safetensors"), meta)
        nparam = sum(v.numel() for v in st.values())
        print(f"{name}: {nparam} state values, input {tuple(x.shape)}, "
              f"outputs grid {tuple(io['grid_out'].shape)} fine {tuple(io['fine_out'].shape)} "
              f"random {tuple(io['random_out'].shape)}")
        summary.append((name, seed, hyper, size, purpose, nparam))

    write_readme(args.out, summary, model_sha)


def write_readme(out, summary, model_sha):
    lines = [
        "# Golden parity fixtures (reference LoFi)",
        "",
        "Generated by running the official PyTorch implementation of LoFi",
        f"(`{REFERENCE_REPO}`, commit `{REFERENCE_COMMIT}`, `model.py` sha256 `{model_sha}`)",
        f"with torch {torch.__version__} in float32 on the CPU, `torch.no_grad()`, one thread.",
        "Only the generated data is stored here; the reference's code is not part of this repository.",
        "",
        "## Regenerate",
        "",
        "```sh",
        "mkdir -p /tmp/lofi-ref",
        f"git -C <clone of {REFERENCE_REPO}> show {REFERENCE_COMMIT}:model.py > /tmp/lofi-ref/model.py",
        "venv=$(scripts/setup-torch.sh)    # torch pinned for this repo",
        "$venv/bin/python -m pip install --target /tmp/pyextra safetensors",
        "PYTHONPATH=/tmp/pyextra $venv/bin/python scripts/reference/make_parity_fixtures.py \\",
        "    --reference-dir /tmp/lofi-ref --out tests/fixtures/parity",
        "# independent numpy re-derivation of every stored output from the formulas:",
        "PYTHONPATH=/tmp/pyextra $venv/bin/python scripts/reference/check_parity_fixtures.py tests/fixtures/parity",
        "```",
        "",
        "## Layout of each `<case>/`",
        "",
        "- `hyper.json`: the 17 keyword arguments of the reference's `LoFi(...)` constructor.",
        "- `state.safetensors`: `model.state_dict()`, all float32 and contiguous. The complex",
        "  `filter` (1, c_f, S+10, S+10) is stored as `view_as_real`: (1, c_f, S+10, S+10, 2),",
        "  last axis (real, imaginary). Note the reference's `patch` has shape (N, M, 2) for",
        "  `round`/`random` but (1, N, M, 2) for `square`.",
        "- `io.safetensors` (float32):",
        "  - `input` (1, C, H, W): smooth random field in about [0.1, 0.9] plus N(0, 0.05^2) noise",
        "    (for c_in = 2 the two channels are the real and imaginary parts of a complex field);",
        "  - `grid_coords` (H*W, 2): every pixel, row-major, c = (i/(H-1) - 0.5, j/(W-1) - 0.5),",
        "    component 0 = row; `grid_out` (H*W, c_out) = `model(grid_coords[None], input)[0]`;",
        "  - `fine_coords` ((2H-1)*(2W-1), 2): the same span with halfway points; `fine_out`;",
        "  - `random_coords` (257, 2): the four corners, the centre, one point on each edge, then",
        "    uniform in [-0.5, 0.5]; `random_out`.",
        "  Each coordinate set is evaluated in ONE forward call (not the reference's",
        "  `batch_sampling`, which drops the remainder); the model is evaluated on exactly the",
        "  stored float32 coordinates.",
        "",
        "Before saving, every parameter is perturbed so that it matters: `filter` = 1 + 0.3 N(0,1)",
        "+ 0.3i N(0,1); `patch` += (0.25/S) N(0,1) (this also separates the M copies of ring 0);",
        "`patch_scale` = 1.25 * recep_scale. Linear layers keep torch's default init",
        "(`torch.manual_seed(seed)` before construction).",
        "",
        "Outputs are O(0.03-1). `check_parity_fixtures.py` (numpy, float64, no torch) re-derives",
        "every stored output from the formulas to within 1.3e-6; a float32 re-implementation",
        "should agree to about 1e-5 absolute. Typical implementation mistakes (clamp instead of",
        "reflection padding, rows/columns swapped, cubic A = -0.5 instead of -0.75, conjugated or",
        "transposed filter, align_corners=True in the filter resize) each change at least one",
        "case's outputs by 2e-4 or more (most by 1e-2 or more).",
        "",
        "## Cases",
        "",
        "| case | seed | input | c_in/c_out | geometry | filter | residual | N, M | hidden | purpose |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, seed, h, size, purpose, _ in summary:
        lines.append(
            f"| `{name}` | {seed} | {size}x{size} | {h['c_in']}/{h['c_out']} | {h['patch_shape']}"
            f"{'' if h['learned_geo'] else ' (fixed)'} | {'yes' if h['fourier_filtering'] else 'no'} | "
            f"{'yes' if h['residual_learning'] else 'no'} | {h['N']}, {h['M']} | "
            f"{h['hidden_dim']} x {h['num_layers']} | {purpose} |")
    lines += [
        "",
        "All cases: image_size S = 16, network = MultiMLP, CCPG = False, coord_deform = False,",
        "num_filters = 1 (the only settings the reference can run).",
        "",
    ]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
