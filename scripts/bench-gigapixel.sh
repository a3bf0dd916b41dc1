#!/usr/bin/env bash
# Gigapixel demo (issue 11; `make bench-gigapixel`, not part of `make test`): denoises a SIZE^2
# float32 .npy (default 32768^2, 4 GiB) with the shipped noise-level-aware denoiser on the CPU
# under a 256 MiB budget, first as one process with 2 threads (run as 2 single-threaded workers,
# see `lofi reconstruct --cpu-workers`), then as 2 MPI ranks with 1 thread each, and prints the
# time and the peak resident set (above the baseline of libtorch and the model) of each; the two
# outputs are compared.
#
#   scripts/bench-gigapixel.sh [SIZE]          # the demo
#   scripts/bench-gigapixel.sh --scaling       # working memory vs input size, 1024^2 .. 16384^2
#
# --scaling reconstructs the same 512 x 512 output (the centre of the input, one sample per input
# pixel) from inputs of 1024^2 to 16384^2 under one budget: the peak resident set above the
# baseline must not grow with the input (the input is memory-mapped; each batch reads its window).
#
# Environment: LOFI_BENCH_DIR (scratch space, default a temp dir; needs 2 x 4 SIZE^2 bytes),
# BUDGET (256MiB), MODEL (models/denoise-gray.lofi), SIGMA (25/255; "none" for a model without
# noise conditioning, e.g. MODEL=models/ldct-ellipses.lofi), OUT (--scaling's output side, 512),
# THREADS (2), RANKS (2; 0 skips the MPI run), SINGLE (1; 0 skips the one-process run),
# PRECISION (f32; bf16 on CPUs with bfloat16 matrix instructions).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
venv="${VIRTUAL_ENV:-$(scripts/setup-torch.sh --print-venv)}"
python="$venv/bin/python"
lofi="${LOFI:-$here/target/release/lofi}"
budget="${BUDGET:-256MiB}"
model="${MODEL:-models/denoise-gray.lofi}"
sigma="${SIGMA:-25/255}"
sigma_args=(--sigma "$sigma")
[ "$sigma" = none ] && sigma_args=()
threads="${THREADS:-2}"
ranks="${RANKS:-2}"
precision="${PRECISION:-f32}"
dir="${LOFI_BENCH_DIR:-$(mktemp -d)}"
mkdir -p "$dir"

# A SIZE^2 float32 .npy written in row bands (never whole in memory): smooth structure plus
# Gaussian noise of the given sigma.
make_input() {
    local size="$1" path="$2"
    [ -f "$path" ] && return 0
    "$python" - "$size" "$path" "$sigma" <<'PY'
import sys
import numpy as np
size, path = int(sys.argv[1]), sys.argv[2]
num, _, den = sys.argv[3].partition("/")
sigma = 0.05 if num == "none" else float(num) / float(den or 1)
out = np.lib.format.open_memmap(path, mode="w+", dtype="<f4", shape=(size, size))
rng = np.random.default_rng(0)
x = np.arange(size, dtype=np.float32)
band = max(1, (64 << 20) // (4 * size))
for r0 in range(0, size, band):
    y = np.arange(r0, min(size, r0 + band), dtype=np.float32)[:, None]
    clean = 0.5 + 0.3 * np.sin(y / 37.0) * np.cos(x[None, :] / 23.0) + 0.1 * np.sign(np.sin(y / 101.0 + x[None, :] / 89.0))
    out[r0:r0 + len(y)] = clean + rng.normal(0, sigma, clean.shape).astype(np.float32)
out.flush()
PY
}

# Runs lofi reconstruct (extra arguments after the first two), prints its JSON report's figures.
report() {
    "$python" -c '
import json, sys
rs = [json.loads(l) for l in sys.stdin if l.startswith("{")]
secs = max(r["seconds"] for r in rs)
px = sum(r["pixels"] for r in rs)
peak = max(r["peak_rss_above_baseline_bytes"] for r in rs)
base = max(r["baseline_rss_bytes"] for r in rs)
budget, estimated = rs[0]["budget_bytes"], rs[0]["estimated_peak_bytes"]
workers = rs[0].get("cpu_workers", 1)
label = sys.argv[1] + (f" ({workers} workers)" if workers > 1 else "")
print(f"{label:<40} {px/1e6:9.1f} Mpx {secs:9.1f} s {px/secs/1e3:8.1f} kpx/s   "
      f"peak RSS above baseline {peak/2**20:7.1f} MiB (per process; baseline {base/2**20:.0f} MiB, "
      f"budget {budget/2**20:.0f} MiB, estimated {estimated/2**20:.0f} MiB)")
' "$1"
}

if [ "${1:-}" = "--scaling" ]; then
    out="${OUT:-512}"
    echo "working memory vs input size: $out x $out output, budget $budget, $model, $threads thread(s)"
    for size in ${SIZES:-1024 4096 16384}; do
        input="$dir/scaling-$size.npy"
        make_input "$size" "$input"
        c=$((size / 2))
        "$lofi" reconstruct --model "$model" "${sigma_args[@]}" --input "$input" --output "$dir/scaling-out.npy" \
            --region "$((c - out / 2)),$((c - out / 2)),$((c + out / 2 - 1)),$((c + out / 2 - 1))" --width "$out" --height "$out" \
            --memory-budget "$budget" --threads "$threads" --precision "$precision" --json 2>/dev/null |
            report "input ${size}^2"
    done
    exit 0
fi

size="${1:-32768}"
input="$dir/in-$size.npy"
echo "gigapixel demo: ${size}^2 float32 input, $model ($precision), budget $budget, CPU ($(nproc) cores), scratch $dir"
make_input "$size" "$input"
if [ "${SINGLE:-1}" != 0 ]; then
    "$lofi" reconstruct --model "$model" "${sigma_args[@]}" --input "$input" --output "$dir/out-1.npy" \
        --memory-budget "$budget" --threads "$threads" --precision "$precision" --json 2>/dev/null |
        report "1 process, $threads threads"
fi
[ "$ranks" -gt 0 ] || exit 0
mpiexec="${LOFI_MPIEXEC:-$("$here/scripts/install-mpich.sh")}"
"$mpiexec" -n "$ranks" "$lofi" reconstruct --model "$model" "${sigma_args[@]}" --input "$input" \
    --output "$dir/out-$ranks.npy" --memory-budget "$budget" --threads 1 --precision "$precision" --json 2>/dev/null |
    report "$ranks MPI ranks, 1 thread each"
if [ ! -f "$dir/out-1.npy" ]; then
    echo "outputs: no one-process output to compare with (SINGLE=0)"
elif cmp -s "$dir/out-1.npy" "$dir/out-$ranks.npy"; then
    echo "outputs: identical"
else
    "$python" -c '
import numpy as np, sys
a, b = np.load(sys.argv[1], mmap_mode="r"), np.load(sys.argv[2], mmap_mode="r")
print(f"outputs: differ by at most {float(np.abs(a - b).max()):.3g} (more threads split BLAS rows differently)")
' "$dir/out-1.npy" "$dir/out-$ranks.npy"
fi
