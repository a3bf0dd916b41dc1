#!/usr/bin/env bash
# Runs lofi on the inputs that set12_baselines.py saved, writing X_<method>.npy next to each
# baseline, then scores them against BM3D / biharmonic:
#
#   scripts/experiments/run_set12_lofi.sh OUT_DIR [denoise|inpaint|all] [extra lofi pnp flags...]
#
# Denoising: `lofi reconstruct --sigma s/255` with the noise-level-aware model (MODEL, default
# models/denoise-gray.lofi). Inpainting: `lofi pnp --operator inpaint` with PNP_FLAGS (default: the
# flags the README reports). METHOD (default "lofi") names the outputs; THREADS (default 2);
# RECONSTRUCT_FLAGS: more `lofi reconstruct` flags for denoising (e.g. "--self-ensemble 8").
set -euo pipefail
out="${1:?usage: run_set12_lofi.sh OUT_DIR [denoise|inpaint|all] [pnp flags...]}"
what="${2:-all}"
shift $(( $# >= 2 ? 2 : 1 ))
L="${LOFI:-target/release/lofi}"
M="${MODEL:-models/denoise-gray.lofi}"
method="${METHOD:-lofi}"
threads="${THREADS:-2}"
read -r -a reconstruct_flags <<< "${RECONSTRUCT_FLAGS:-}"
pnp_flags=("$@")
if [ ${#pnp_flags[@]} -eq 0 ]; then
  pnp_flags=(--iterations 40 --alpha 0.01 --denoiser-sigma 30/255)
fi
here="$(dirname "$0")"
venv="$("$here/setup-bench-venv.sh")"
"$venv/bin/python" "$here/set12_baselines.py" --out "$out" --list-inputs --method "$method" |
  while IFS=$'\t' read -r task group name input mask output sigma; do
    case "$task" in
      denoise)
        [ "$what" = inpaint ] && continue
        start=$(date +%s.%N)
        "$L" reconstruct --model "$M" --input "$input" --output "$output" --sigma "$sigma/255" --threads "$threads" \
          ${reconstruct_flags[@]+"${reconstruct_flags[@]}"} 2>/dev/null
        echo "denoise $group $name sigma $sigma: $(echo "$(date +%s.%N) - $start" | bc) s"
        ;;
      inpaint)
        [ "$what" = denoise ] && continue
        start=$(date +%s.%N)
        "$L" pnp --model "$M" --operator inpaint --mask "$mask" --input "$input" --output "$output" \
          --threads "$threads" "${pnp_flags[@]}" 2>/dev/null >/dev/null
        echo "inpaint $group $name: $(echo "$(date +%s.%N) - $start" | bc) s"
        ;;
    esac
  done
"$venv/bin/python" "$here/set12_baselines.py" --out "$out" --score "$out" --method "$method"
