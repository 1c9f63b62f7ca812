#!/usr/bin/env bash
# Trains the three bundled models on a lent GPU in one device call, and writes the new model folders (one tar file),
# the quality report and the log to $OUT. docs/TRAINING.md ("Training on a lent GPU") gives the call; `make
# gpu-bundle` first packs the photos into runs/gpu-bundle, which the call carries. Without a GPU it runs the smoke
# version (a handful of steps of each task), as tests/test_train_all.py does; without $OUT it writes to
# runs/train-gpu/out.
#   BUNDLE            photo folder holding train/ and val/ (default runs/gpu-bundle)
#   MINUTES_PER_TASK  training budget of each task (default 2.2: about 8.5 minutes for the whole call)
#   WORK              work folder (default: a fresh one under /tmp)
#   PYTHON            the interpreter (default python3, the one that holds torch on the device machine)
#   TRAIN_ALL_ARGS    more arguments of python -m mprnet_hf.training.train_all (e.g. --smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-runs/gpu-bundle}
OUT=${OUT:-runs/train-gpu/out}
PYTHON=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d /tmp/mprnet-train-gpu.XXXXXX)}
mkdir -p "$OUT"
for split in train val; do
    if [ ! -d "$BUNDLE/$split" ]; then
        echo "No photos in $BUNDLE/$split: run 'make gpu-bundle' first, and carry $BUNDLE in the device call" >&2
        exit 2
    fi
done
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
# The checkout's package, not an installed one (the device machine has none).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
command -v nvidia-smi >/dev/null && { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; }
# shellcheck disable=SC2086  # TRAIN_ALL_ARGS is a list of arguments
"$PYTHON" -m mprnet_hf.training.train_all --train-dir "$BUNDLE/train" --val-dir "$BUNDLE/val" \
    --output-dir "$WORK" --report-dir "$OUT" --archive "$OUT/checkpoints.tar" \
    --minutes-per-task "${MINUTES_PER_TASK:-2.2}" ${TRAIN_ALL_ARGS:-} 2>&1 | tee "$OUT/train_on_gpu.log"
