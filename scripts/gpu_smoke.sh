#!/usr/bin/env bash
# GPU smoke test: a MORE fine-tune for throughput (pairs/s, peak GPU memory, MFU from 6·params·tokens), then
# notebooks 01–04 and 07 (the capacity curve, full fine-tuning its top rung) on the gpu-smoke profile (SmolLM2-135M,
# finetune tier, bf16; 01–04 sized for ≤ 10 min on one GPU).
#
#   scripts/gpu_smoke.sh [--cpu-tiny] [--peak-tflops X]
#
#   --cpu-tiny        the same steps on CPU at tiny size (profile tiny-finetune, notebook 01 only): CI's check
#   --peak-tflops X   the accelerator's dense bf16 peak for MFU (default: looked up from the GPU's name)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
PROFILE=gpu-smoke
ONLY=01,02,03,04,07
PEAK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-tiny) PROFILE=tiny-finetune; ONLY=01; shift ;;
    --peak-tflops) PEAK="${2:?--peak-tflops needs a number}"; shift 2 ;;
    *) echo "gpu_smoke.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
OUT="$(mktemp -d "${TMPDIR:-/tmp}/gpu-smoke.XXXXXX")"
hub_mode "$PROFILE" "{}"
echo "[gpu_smoke] throughput: one MORE fine-tune on $PROFILE into $OUT"
START=$(date +%s)
python -m morelib.train.finetune --profile "$PROFILE" --scheme more --output-dir "$OUT/more" \
  -o "output_root=$OUT" >"$OUT/finetune.log" 2>&1 || { tail -40 "$OUT/finetune.log" >&2; exit 1; }
python scripts/throughput.py "$OUT/more/throughput.json" ${PEAK:+--peak-tflops "$PEAK"}
if [ "$PROFILE" = gpu-smoke ]; then  # the GPU-hours of `python -m morelib.finetune --plan` read it from here
  mkdir -p outputs && cp "$OUT/more/throughput.json" outputs/gpu_smoke_throughput.json
fi
echo "[gpu_smoke] notebooks $ONLY on $PROFILE"
./run_all.sh --profile "$PROFILE" --only "$ONLY" -p output_root "$OUT"
echo "[gpu_smoke] done in $(( $(date +%s) - START )) s; outputs in $OUT"
