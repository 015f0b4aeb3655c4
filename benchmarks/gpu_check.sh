#!/usr/bin/env bash
# GPU check, one call on a lent GPU (issue 18 item 7):
#   1. a bf16 AMP fine-tuning step of ViT-B pose at 256x192: fit() against a raw loop, and the raw
#      loop with channels_last (kept where it helps);
#   2. the same raw loop under a 1-GPU `torchrun` with the nccl backend (DDP overhead);
# then writes the figures, with date and device, to one JSON file (default
# benchmarks/results/gpu_check.json) and prints the README line that quotes them.
#
#   benchmarks/gpu_check.sh                      # on the GPU machine
#   benchmarks/gpu_check.sh --cpu-dry-run        # same logic on the CPU: ViT-Ti 64x48, gloo, a few steps
#   benchmarks/gpu_check.sh --out FILE           # somewhere else
# Environment: PYTHON (default: python), BATCH / STEPS / WARMUP override the GPU sizes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
py="${PYTHON:-python}"
out="$repo/benchmarks/results/gpu_check.json"
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) dry=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$dry" = 1 ]; then
  args=(--device cpu --model vit_tiny --hw 64 48 --batch 2 --steps 2 --warmup 1)
  backend=gloo
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # the CI box is small and shared
else
  "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_check.sh: no CUDA device; run with --cpu-dry-run to check the logic" >&2; exit 2; }
  args=(--device cuda --model vit_base --hw 256 192 --batch "${BATCH:-64}" --steps "${STEPS:-40}" --warmup "${WARMUP:-10}")
  backend=nccl
fi

mkdir -p "$(dirname "$out")"
part="$out.part"
rm -f "$part"
"$py" "$here/gpu_step.py" "${args[@]}" --out "$part"
"$py" -m torch.distributed.run --standalone --nproc_per_node 1 \
  "$here/gpu_step.py" "${args[@]}" --ddp --backend "$backend" --out "$part"
mv "$part" "$out"

"$py" - "$out" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["ddp"]
cl = "channels_last helps" if r["channels_last_helps"] else "channels_last does not help"
print(f"{r['date']}, {r['device']}{' (dry run: timings mean nothing)' if r['dry_run'] else ''}: "
      f"{r['model']} pose {r['input'][0]}x{r['input'][1]}, batch {r['batch']}, {r['amp']}: "
      f"raw loop {r['raw_samples_per_s']:.0f} samples/s ({cl}: {r['raw_channels_last_samples_per_s']:.0f}), "
      f"fit() {r['fit_samples_per_s']:.0f} = {r['fit_over_raw']:.2f}x raw; "
      f"torchrun {d['backend']} x{d['world_size']} {d['samples_per_s']:.0f} = "
      f"{d['samples_per_s'] / r['raw_samples_per_s']:.2f}x raw")
print(f"figures written to {sys.argv[1]}")
EOF
