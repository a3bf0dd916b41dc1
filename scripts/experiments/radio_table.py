"""The README's NUFFT radio table from run_radio_nufft.sh's folder: radio_table.py OUT_DIR

One row per sky: PSNR (dB) / dynamic range / residual RMS / outskirts texture (score.py) for the
dirty image, CLEAN, TV-ADMM (the best of its weights by PSNR, weight named) and LoFi-ADMM; the
best PSNR and dynamic range in bold.
"""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
print("| sky | dirty image | Högbom CLEAN | TV-ADMM (best weight) | LoFi-ADMM, annealed |")
print("|---|---|---|---|---|")
for sky in sorted(out.glob("*-seed*"), key=lambda p: (int(p.name.split("-")[0]), p.name)):
    scores = json.loads((sky / "scores.json").read_text())
    by_name = {Path(k).stem: v for k, v in scores.items()}
    tv = max((k for k in by_name if k.startswith("tv-")), key=lambda k: by_name[k]["psnr"])
    cols = [("dirty", "dirty"), ("clean", "clean"), (tv, f"w {tv[3:]}"), ("lofi", "lofi")]
    best_psnr = max(by_name[k]["psnr"] for k, _ in cols)
    best_dr = max(by_name[k]["dynamic_range"] for k, _ in cols)
    cells = []
    for k, _ in cols:
        s = by_name[k]
        p = f"{s['psnr']:.2f}"
        d = f"{s['dynamic_range']:.0f}"
        p = f"**{p}**" if s["psnr"] == best_psnr else p
        d = f"**{d}**" if s["dynamic_range"] == best_dr else d
        extra = f" (w {k[3:]})" if k.startswith("tv-") else ""
        cells.append(f"{p} / {d} / {s['residual_rms']:.1e} / {s['outskirts_texture']:.4f}{extra}")
    n, seed = sky.name.split("-seed")
    print(f"| {n}^2, seed {seed} | " + " | ".join(cells) + " |")
