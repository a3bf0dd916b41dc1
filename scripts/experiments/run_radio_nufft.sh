#!/usr/bin/env bash
# The README's radio table with the NUFFT (issue 12): Sersic-galaxy skies observed by MeerKAT
# (63 dishes, declination -30 deg, 8 hours, 4 channels over 100 MHz at 1.43 GHz: 249,984
# visibilities), complex thermal noise at 30 dB input SNR, uniform weighting, 2.5" pixels, at
# 128^2 and 256^2. Methods: the dirty image, Högbom CLEAN (lofi clean), TV-ADMM (best of the
# weights below) and annealed LoFi-ADMM with the noise-level-aware galaxy denoiser, all on the
# same visibility file. Scores: PSNR, SSIM, residual RMS, dynamic range (score.py), images in Jy
# per pixel (CLEAN and the dirty image divided by the clean beam's area). LoFi-ADMM runs with the
# default dihedral transforms; the README's "plain" column added `--transforms none --average-last 1`.
#   scripts/experiments/run_radio_nufft.sh OUT_DIR          (about 25 CPU-minutes)
set -euo pipefail
out="${1:-radio-nufft}"
L="${LOFI:-target/release/lofi}"
PY="${PYTHON:-python3}"
G="${GALAXY_MODEL:-models/denoise-galaxies.lofi}"
here="$(dirname "$0")"
pixel=2.5
mkdir -p "$out"
"$L" simulate uv-coverage --array meerkat --declination -30 --hour-angle=-4:4 --times 32 \
  --frequency-channels 4 --bandwidth-mhz 100 --size 128 --out "$out/uv"
uv="$out/uv/uv_00000.npy"
run_sky() {  # size seed iterations tv-weights...
  local n=$1 seed=$2 iters=$3; shift 3
  local sky="$out/$n-seed$seed"
  "$L" simulate galaxies --count 1 --size "$n" --seed "$seed" --out "$sky"
  local gal="$sky/galaxies_00000.npy"
  local common=(--operator nufft --image-size "$n" --pixel-arcsec $pixel --weighting uniform --ground-truth "$gal"
    --alpha 0.05 --iterations "$iters" --cg-iterations 30 --cg-tolerance 1e-4)
  # Simulate once (LoFi run), then every method reads the same visibilities.
  "$L" pnp --model "$G" "${common[@]}" --uv "$uv" --snr 30 --seed 1 --save-visibilities "$sky/vis.npy" \
    --anneal "0.1,${ANNEAL_END:-0.001},$((iters * 3 / 4))" --output "$sky/lofi.npy" --log "$sky/lofi.csv"
  "$L" clean --visibilities "$sky/vis.npy" --pixel-arcsec $pixel --image-size "$n" --weighting uniform \
    --output "$sky/clean.npy" --dirty "$sky/dirty.npy" --model "$sky/clean-model.npy" --flux-per-pixel | tee "$sky/clean.txt"
  for w in "$@"; do
    "$L" pnp --model "$G" "${common[@]}" --visibilities "$sky/vis.npy" --prior tv --tv-weight "$w" --output "$sky/tv-$w.npy"
  done
  "$PY" "$here/score.py" "$gal" "$sky/dirty.npy" "$sky/clean.npy" "$sky"/tv-*.npy "$sky/lofi.npy" > "$sky/scores.json"
}
for seed in 3 4 5; do run_sky 128 $seed 30 0.005 0.02; done
run_sky 256 4 30 0.005 0.02
"$PY" "$here/radio_table.py" "$out"
