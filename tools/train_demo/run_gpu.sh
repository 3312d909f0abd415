#!/usr/bin/env bash
# The training run on one GPU machine (about 9 minutes on an H100): trains, writes models/demo
# and tests/data/demo in this checkout, and packs them with the log and results into $OUT
# (tar split in 15 MB parts: unpack with `cat demo.tar.part* | tar -x` in the repository root).
# Needs tools/train_demo/scratch/ from `train_demo.py prepare` (the dialogues travel with it).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-tools/train_demo/scratch/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
rm -rf models/demo tests/data/demo tools/train_demo/scratch/out
# The python run stops itself at 570 s so that what it made still gets packed.
timeout "${DEMO_TIMEOUT:-570}" python3 tools/train_demo/train_demo.py run --device cuda \
  --budget-s "${DEMO_BUDGET:-360}" --n-passkey 100 --n-long 20 "$@" 2>&1 | tee "$OUT/train_demo.out"
rc=${PIPESTATUS[0]}
tar -cf "$OUT/demo.tar" models/demo tests/data/demo tools/train_demo/scratch/out
split -b 15M -d "$OUT/demo.tar" "$OUT/demo.tar.part" && rm "$OUT/demo.tar"
ls -l "$OUT"
exit "$rc"
