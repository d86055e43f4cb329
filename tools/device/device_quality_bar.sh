#!/usr/bin/env bash
# GPU runs (device tool) of the quality bar (bench/quality_bar.py) on the TEST images.
#   bash tools/device/device_quality_bar.sh mnist    # MNIST attack, 100 x 10 trials (full protocol)
#   bash tools/device/device_quality_bar.sh cifar10  # CIFAR-10, 100 x 10; ZO-LSTM's alpha picked on
#                                             # the 2 training images the baselines were tuned on
# Data: .devdata2 (tools/device/pack_device_data.py; name it in carry).  JSON lands in $OUT.
set -u
cd "$(dirname "$0")/../.."
export PYTHONPATH=src PYTHONUNBUFFERED=1 ZOL2L_DATA_DIR="${ZOL2L_DATA_DIR:-.devdata2}"
stage() { local limit=$1; shift; local t0=$SECONDS; echo "== $*"; timeout "$limit" "$@"; \
  echo "== exit $? after $((SECONDS - t0)) s"; }
{
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for what in "$@"; do
  case $what in
    mnist) stage 220 python3 bench/quality_bar.py --task mnist-attack --trials 10 \
      --device cuda --max-batch 32768 --instance-chunk 100 --out "$OUT/bar_mnist_cuda.json" ;;
    cifar10) stage 460 python3 bench/quality_bar.py --task cifar10-attack --trials 10 \
      --device cuda --max-batch 16384 --instance-chunk 100 --tune-alpha 0.35,0.5,0.7,1,1.4,2 \
      --out "$OUT/bar_cifar10_cuda.json" ;;
  esac
done
} 2>&1 | tee "$OUT/device_quality_bar_$(IFS=_; echo "$*").log"
