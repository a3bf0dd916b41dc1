#!/usr/bin/env bash
# The README's plug-and-play figures (CPU, a few minutes per 512^2 inpainting run):
#   scripts/experiments/run_pnp_experiments.sh OUT_DIR     (PARTS="radio" for the radio part alone)
# Needs `make build`, and numpy + scikit-image for the inputs and the biharmonic baseline.
set -euo pipefail
out="${1:-pnp-experiments}"
L="${LOFI:-target/release/lofi}"
PY="${PYTHON:-python3}"
here="$(dirname "$0")"
mkdir -p "$out/inpaint" "$out/radio"
M=models/denoise-gray.lofi
parts="${PARTS:-inpaint radio}"

if [[ " $parts " == *" inpaint "* ]]; then
# Inpainting: 30 % of pixels observed, the README table's settings (fixed sigma 30/255, alpha 0.01, 40
# iterations, the default transforms), the 128^2-trained denoiser at 256^2 and 512^2.
"$PY" "$here/prepare_inpainting.py" "$out/inpaint"
for name in camera-256 astronaut-256 camera-512 astronaut-512; do
  "$L" pnp --model $M --operator inpaint --mask "$out/inpaint/$name-mask.png" --ground-truth "$out/inpaint/$name.npy" \
    --denoiser-sigma 30/255 --alpha 0.01 --iterations 40 --output "$out/inpaint/$name-lofi.npy" --log "$out/inpaint/$name-lofi.csv"
done
"$PY" "$here/prepare_inpainting.py" "$out/inpaint" --biharmonic > "$out/inpaint/biharmonic.json"

fi

if [[ " $parts " == *" radio "* ]]; then
# Radio interferometry: Sersic-galaxy skies through a VLA-like Earth-rotation coverage, 30 dB input
# SNR. LoFi-ADMM with the noise-level-aware galaxy denoiser (models/denoise-galaxies.lofi), fixed
# sigma and annealed, against the dirty image A^T y and the same ADMM with a total-variation prior
# (best of three weights). Scores: PSNR, SSIM, residual RMS and dynamic range (score.py).
G="${GALAXY_MODEL:-models/denoise-galaxies.lofi}"
"$L" simulate uv-coverage --size 256 --out "$out/radio/uv"
mask="$out/radio/uv/mask_00000.npy"
for seed in 3 4 5; do
  sky="$out/radio/sky-$seed"
  "$L" simulate galaxies --count 1 --size 256 --seed $seed --out "$sky"
  gal="$sky/galaxies_00000.npy"
  common=(--operator fourier-mask --mask "$mask" --ground-truth "$gal" --snr 30 --seed 1 --alpha 0.05 --iterations 60)
  "$L" pnp --model "$G" "${common[@]}" --denoiser-sigma 0.05 --output "$sky/lofi.npy" --log "$sky/lofi.csv" \
    --back-projection "$sky/dirty.npy"
  "$L" pnp --model "$G" "${common[@]}" --anneal 0.1,0.001,40 --output "$sky/lofi-anneal.npy" --log "$sky/lofi-anneal.csv"
  for w in 0.005 0.02 0.05; do
    "$L" pnp --model "$G" "${common[@]}" --prior tv --tv-weight $w --output "$sky/tv-$w.npy"
  done
  "$PY" "$here/score.py" "$gal" "$sky/dirty.npy" "$sky/lofi.npy" "$sky/lofi-anneal.npy" "$sky"/tv-*.npy > "$sky/scores.json"
done
fi
cat "$out/inpaint/biharmonic.json" "$out/radio"/sky-*/scores.json 2>/dev/null || true
