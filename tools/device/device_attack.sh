#!/usr/bin/env bash
# One GPU run (device tool): attack benchmarks, then the baselines' tuning (training images) and
# evaluation (test images) on the MNIST and CIFAR-10 attacks.  Results land in
# $OUT/device_attack.tar.gz.  Each stage has its own time limit so that the archive always
# comes back.  ZOL2L_SRC names the source tree to use (default: src).
set -u
cd "$(dirname "$0")/../.."
export PYTHONPATH="${ZOL2L_SRC:-src}" PYTHONUNBUFFERED=1
export ZOL2L_DATA_DIR="${ZOL2L_DATA_DIR:-.devdata2}"
R="$OUT/r"
mkdir -p "$R"
Z="python3 -m zol2l.cli"
ALL=zo-sgd,zo-signsgd,zo-adam,zo-szvrg,zo-guided-es
stage() { local limit=$1; shift; local t0=$SECONDS; echo "== $*"; timeout "$limit" "$@"; \
  echo "== exit $? after $((SECONDS - t0)) s"; }
{
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
stage 60 $Z attack --dataset mnist --optimizer zo-adam,zo-guided-es --images 2 --steps 3 \
  --device cuda --out "$R/smoke" --quiet
stage 60 python3 bench/bench_attack.py --dataset mnist --images 100 --steps 200 --device cuda \
  --out "$R/attack_mnist_cuda.json"
stage 45 python3 bench/bench_attack.py --dataset cifar10 --images 10 --steps 200 --device cuda \
  --out "$R/attack_cifar10_cuda.json"
stage 130 $Z tune --task mnist-attack --optimizers $ALL --instances 50 --device cuda \
  --out "$R/tune-mnist" --quiet
stage 45 $Z evaluate --task mnist-attack --optimizers $ALL --instances 100 --trials 10 \
  --hparams "$R/tune-mnist/hparams.json" --device cuda --out "$R/eval-mnist" --quiet
stage 80 $Z tune --task cifar10-attack --optimizers zo-sgd,zo-signsgd,zo-adam --instances 20 \
  --device cuda --out "$R/tune-cifar10" --quiet
stage 45 $Z evaluate --task cifar10-attack --optimizers zo-sgd,zo-signsgd,zo-adam \
  --instances 100 --trials 2 --hparams "$R/tune-cifar10/hparams.json" --device cuda \
  --out "$R/eval-cifar10" --quiet
} 2>&1 | tee "$R/device_attack.log"
tar czf "$OUT/device_attack.tar.gz" -C "$OUT" r
