#!/usr/bin/env bash
# The README's plug-and-play figures (CPU, a few minutes per 512^2 inpainting run):
#   scripts/experiments/run_pnp_experiments.sh OUT_DIR
# Needs `make build`, and numpy + scikit-image for the inputs and the biharmonic baseline.
set -euo pipefail
out="${1:-pnp-experiments}"
L="${LOFI:-target/release/lofi}"
PY="${PYTHON:-python3}"
here="$(dirname "$0")"
mkdir -p "$out/inpaint" "$out/radio"
M=models/denoise-gray.lofi

# Inpainting: 30 % of pixels observed, alpha 0.05, 90 iterations, the 128^2-trained denoiser at 256^2 and 512^2.
"$PY" "$here/prepare_inpainting.py" "$out/inpaint"
for name in camera-256 astronaut-256 camera-512 astronaut-512; do
  "$L" pnp --model $M --operator inpaint --mask "$out/inpaint/$name-mask.png" --ground-truth "$out/inpaint/$name.npy" \
    --alpha 0.05 --iterations 90 --output "$out/inpaint/$name-lofi.npy" --log "$out/inpaint/$name-lofi.csv"
done
"$PY" "$here/prepare_inpainting.py" "$out/inpaint" --biharmonic > "$out/inpaint/biharmonic.json"

# Radio interferometry: a Sersic-galaxy image through a VLA-like Earth-rotation coverage, 30 dB.
"$L" simulate galaxies --count 1 --size 256 --seed 3 --out "$out/radio/sky"
"$L" simulate uv-coverage --size 256 --out "$out/radio/uv"
gal="$out/radio/sky/galaxies_00000.npy"
mask="$out/radio/uv/mask_00000.npy"
for alpha in 0.05 0.5; do
  "$L" pnp --model $M --operator fourier-mask --mask "$mask" --ground-truth "$gal" --snr 30 --seed 1 \
    --alpha $alpha --iterations 60 --output "$out/radio/lofi-a$alpha.npy" --log "$out/radio/lofi-a$alpha.csv" \
    --back-projection "$out/radio/dirty.npy"
  "$L" pnp --model $M --operator fourier-mask --mask "$mask" --ground-truth "$gal" --snr 30 --seed 1 \
    --alpha $alpha --iterations 60 --prior tv --tv-weight 0.02 --output "$out/radio/tv-a$alpha.npy" --log "$out/radio/tv-a$alpha.csv"
done
"$PY" "$here/score.py" "$gal" "$out/radio/dirty.npy" "$out/radio"/lofi-a*.npy "$out/radio"/tv-a*.npy > "$out/radio/scores.json"
cat "$out/inpaint/biharmonic.json" "$out/radio/scores.json"
