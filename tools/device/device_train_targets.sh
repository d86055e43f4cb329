#!/usr/bin/env bash
# Train the shipped target classifiers (MNIST, then CIFAR-10) on the rented GPU machine.
#
# Once, here:   python tools/device/pack_device_data.py          # fills .devdata/ (git-ignored)
# On the GPU:   bash tools/device/device_train_targets.sh         # repo root; $OUT set; carry .devdata
# Writes $OUT/{mnist,cifar10}.{safetensors,json} and $OUT/device_train.log; copy the four
# weight/metadata files into src/zol2l/weights/. Extra arguments go to device_train_targets.py.
# Needs python3 with torch (CUDA), numpy and Pillow; no network, no pip install.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
PYTHONPATH=src python3 -u tools/device/device_train_targets.py --out "$OUT" "$@" 2>&1 \
  | tee "$OUT/device_train.log"
