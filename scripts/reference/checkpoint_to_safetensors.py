#!/usr/bin/env python3
"""Convert a reference LoFi checkpoint (PyTorch pickle) into safetensors + hyper-parameter JSON.

The reference's train.py (AmirEhsan95/LoFi) saves ``LoFi.pt`` as
``{'model_state_dict': ..., 'optimizer_state_dict': ...}``; a bare state_dict is accepted too.

    python scripts/reference/checkpoint_to_safetensors.py LoFi.pt S.safetensors \
        [--hyper-from-config path/to/config.py | --hyper KEY=VALUE ...] [--hyper-out H.json]

* Every tensor is written as float32 and contiguous; complex tensors (the noise-suppression
  ``filter``) are written as ``torch.view_as_real`` (trailing axis of 2: real, imaginary) and
  listed in the file's metadata under ``complex_as_real``.
* A ``module.`` prefix (DataParallel) is stripped.
* ``--hyper-from-config`` imports the reference's ``config.py`` and takes the 17 LoFi constructor
  arguments from it (its ``torch.device('cuda:0')`` is harmless on CPU-only torch).
  ``--hyper KEY=VALUE`` sets or overrides single keys (values parsed as JSON, else as strings;
  Python's True/False/None are accepted).  Keys not given fall back to the reference
  constructor's defaults.  The JSON goes to ``--hyper-out`` (default: ``H.json`` next to the
  output file).  Without either option no JSON is written.

Needs only torch and safetensors.
"""

import argparse
import importlib.util
import json
import os
import sys

try:
    import torch
except ImportError:
    sys.exit("error: torch is required to read the checkpoint (pip install torch)")
try:
    from safetensors.torch import save_file
except ImportError:
    sys.exit("error: the 'safetensors' package is required: pip install safetensors")

HYPER_KEYS = [
    "image_size", "c_in", "c_out", "network", "hidden_dim", "num_layers", "patch_shape",
    "fourier_filtering", "recep_scale", "residual_learning", "learned_geo", "N", "M", "CCPG",
    "num_filters", "n_deform", "coord_deform",
]

# Defaults of the reference's LoFi.__init__ (commit 3652e46).
REFERENCE_DEFAULTS = dict(
    image_size=128, c_in=3, c_out=3, network="MLP", hidden_dim=256, num_layers=3,
    patch_shape="round", fourier_filtering=True, recep_scale=1, residual_learning=False,
    learned_geo=True, N=9, M=9, CCPG=False, num_filters=1, n_deform=1, coord_deform=False,
)


def load_state_dict(path):
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # older pickles with non-tensor objects
        print(f"note: weights_only load failed ({e.__class__.__name__}); retrying with "
              "weights_only=False (only do this for checkpoints you trust)", file=sys.stderr)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(ckpt, dict) and "model_state_dict" in ckpt:
        state = ckpt["model_state_dict"]
    elif isinstance(ckpt, dict) and "state_dict" in ckpt and isinstance(ckpt["state_dict"], dict):
        state = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and all(torch.is_tensor(v) for v in ckpt.values()):
        state = ckpt
    elif isinstance(ckpt, torch.nn.Module):
        state = ckpt.state_dict()
    else:
        sys.exit(f"error: {path}: neither a dict with 'model_state_dict' nor a state_dict "
                 f"(top-level keys: {list(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt)})")
    out = {}
    for k, v in state.items():
        if not torch.is_tensor(v):
            sys.exit(f"error: state_dict entry {k!r} is not a tensor ({type(v).__name__})")
        if k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out


def convert(state):
    tensors, complex_keys = {}, []
    for k, v in state.items():
        v = v.detach().cpu()
        if v.is_complex():
            v = torch.view_as_real(v.to(torch.complex64))
            complex_keys.append(k)
        elif not v.is_floating_point():
            sys.exit(f"error: state_dict entry {k!r} has dtype {v.dtype}; LoFi has only float/complex tensors")
        tensors[k] = v.to(torch.float32).contiguous().clone()
    return tensors, complex_keys


def hyper_from_config(path):
    path = os.path.abspath(path)
    cfg_dir = os.path.dirname(path)
    sys.path.insert(0, cfg_dir)  # config.py may import siblings
    try:
        spec = importlib.util.spec_from_file_location("lofi_reference_config", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(cfg_dir)
    hyper, missing = {}, []
    for k in HYPER_KEYS:
        if hasattr(mod, k):
            hyper[k] = getattr(mod, k)
        else:
            missing.append(k)
    if missing:
        print(f"warning: {path} does not define {missing}; using the reference defaults",
              file=sys.stderr)
    return hyper


def parse_value(text):
    py = {"True": True, "False": False, "None": None}
    if text in py:
        return py[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def to_json_value(v):
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if hasattr(v, "item"):  # numpy / torch scalars
        return v.item()
    sys.exit(f"error: hyper-parameter value {v!r} is not a JSON scalar")


def check_consistency(hyper, tensors):
    """Cheap shape checks that catch a config that does not belong to the checkpoint."""
    problems = []
    N, M = hyper["N"], hyper["M"]
    if "patch" in tensors and tuple(tensors["patch"].shape[-3:]) != (N, M, 2):
        problems.append(f"patch has shape {tuple(tensors['patch'].shape)}, expected (..., {N}, {M}, 2)")
    if bool(hyper["fourier_filtering"]) != ("filter" in tensors):
        problems.append(f"fourier_filtering={hyper['fourier_filtering']} but the checkpoint "
                        f"{'has' if 'filter' in tensors else 'has no'} 'filter'")
    if "filter" in tensors:
        side = hyper["image_size"] + 10
        if tuple(tensors["filter"].shape[2:4]) != (side, side):
            problems.append(f"filter has shape {tuple(tensors['filter'].shape[:4])}, expected "
                            f"(1, c_f, {side}, {side}) for image_size={hyper['image_size']}")
    key = f"mixer_MLP.fcs.{hyper['num_layers']}.weight"
    if hyper["network"] == "MultiMLP":
        if key not in tensors:
            problems.append(f"{key} missing: num_layers={hyper['num_layers']} does not match")
        elif tuple(tensors[key].shape) != (hyper["c_out"], hyper["hidden_dim"]):
            problems.append(f"{key} has shape {tuple(tensors[key].shape)}, expected "
                            f"({hyper['c_out']}, {hyper['hidden_dim']})")
        if f"MLP.{M - 1}.fcs.0.weight" not in tensors or f"MLP.{M}.fcs.0.weight" in tensors:
            problems.append(f"the number of chunk MLPs does not match M={M}")
    for p in problems:
        print(f"warning: hyper-parameters vs checkpoint: {p}", file=sys.stderr)
    return not problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="reference checkpoint (LoFi.pt)")
    ap.add_argument("output", help="output .safetensors file (S.safetensors)")
    ap.add_argument("--hyper-from-config", metavar="CONFIG_PY", help="the reference's config.py")
    ap.add_argument("--hyper", nargs="+", metavar="KEY=VALUE", default=[],
                    help="hyper-parameters (override --hyper-from-config)")
    ap.add_argument("--hyper-out", metavar="H_JSON", help="where to write the hyper-parameter JSON "
                    "(default: H.json in the output's directory)")
    ap.add_argument("--strict", action="store_true",
                    help="fail (instead of warn) when the hyper-parameters do not fit the checkpoint")
    args = ap.parse_args()

    state = load_state_dict(args.checkpoint)
    tensors, complex_keys = convert(state)
    metadata = {"format": "pt", "source": os.path.basename(args.checkpoint)}
    if complex_keys:
        metadata["complex_as_real"] = ",".join(complex_keys)

    hyper = None
    if args.hyper_from_config or args.hyper:
        hyper = dict(REFERENCE_DEFAULTS)
        if args.hyper_from_config:
            hyper.update(hyper_from_config(args.hyper_from_config))
        for item in args.hyper:
            if "=" not in item:
                sys.exit(f"error: --hyper expects KEY=VALUE, got {item!r}")
            k, v = item.split("=", 1)
            if k not in HYPER_KEYS:
                sys.exit(f"error: unknown hyper-parameter {k!r}; known: {', '.join(HYPER_KEYS)}")
            hyper[k] = parse_value(v)
        hyper = {k: to_json_value(hyper[k]) for k in HYPER_KEYS}
        hyper["recep_scale"] = float(hyper["recep_scale"])  # always a JSON number with a point
        if not check_consistency(hyper, tensors) and args.strict:
            sys.exit("error: hyper-parameters do not fit the checkpoint (--strict)")

    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, args.output, metadata=metadata)
    n = sum(t.numel() for t in tensors.values())
    print(f"wrote {args.output}: {len(tensors)} tensors, {n} values"
          + (f", complex as (re, im): {', '.join(complex_keys)}" if complex_keys else ""))
    if hyper is not None:
        hyper_path = args.hyper_out or os.path.join(out_dir, "H.json")
        with open(hyper_path, "w") as f:
            json.dump(hyper, f, indent=2)
            f.write("\n")
        print(f"wrote {hyper_path}")


if __name__ == "__main__":
    main()
