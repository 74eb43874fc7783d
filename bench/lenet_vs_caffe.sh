#!/usr/bin/env bash
# LeNet training against a log real Caffe wrote: tests/data/report/caffe_train.log is BVLC
# Caffe 1.0 (CPU build, Debian 12) training Caffe's LeNet train_val on the first 100
# Fashion-MNIST images for 50 SGD iterations (batch 64; a test pass of 100 images at
# iterations 0, 25 and 50, the one at 25 inside the timed span). This runs crema on the same
# net, data (the same LMDB) and solver settings, RUNS times (default 3), and prints the time
# from the "Iteration 0 (" line to the "Iteration 50, loss" line of each log, for Caffe once
# and for crema's fastest run.
#
# Caffe's log was written on another machine of the same kind (2 cores), on 2026-12-01, so
# the ratio is an estimate: run this idle, and read it beside the CPU line it prints.
#
#   bash bench/lenet_vs_caffe.sh [CREMA_BINARY]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/build/bin/crema}"
runs="${RUNS:-3}"
dir="$(mktemp -d /tmp/crema_lenet_XXXXXX)"
trap 'rm -rf "$dir"' EXIT
cp -r "$root/tests/data/report/fmnist100_lmdb" "$root/tests/data/report/lenet_train_val.prototxt" "$dir/"
# The solver Caffe's log prints at its start, snapshots off.
cat >"$dir/solver.prototxt" <<'EOF'
net: "lenet_train_val.prototxt"
test_iter: 1
test_interval: 25
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 10
max_iter: 50
snapshot_after_train: false
snapshot_prefix: "lenet"
random_seed: 1701
EOF

# Seconds between the "Iteration 0 (" line and the "Iteration 50, loss" line of a log.
span() {
  awk '/Iteration 0 \(/ && !t0 {split($2, a, ":"); t0 = a[1] * 3600 + a[2] * 60 + a[3]}
    /Iteration 50, loss/ {split($2, a, ":"); t1 = a[1] * 3600 + a[2] * 60 + a[3]}
    END {d = t1 - t0; if (d < 0) d += 86400; printf "%.3f", d}' "$1"
}

caffe="$(span "$root/tests/data/report/caffe_train.log")"
best=""
for _ in $(seq "$runs"); do
  (cd "$dir" && "$bin" train --solver solver.prototxt >log 2>&1)
  s="$(span "$dir/log")"
  if [ -z "$best" ] || awk -v a="$s" -v b="$best" 'BEGIN {exit !(a < b)}'; then best="$s"; fi
done
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
blas="$(sed -n 's/.*BLAS: OpenBLAS kernel \([^,]*\), \([0-9]*\) threads.*/\1, \2 threads/p' "$dir/log" | head -1)"
echo "CPU: ${cpu:-unknown} ($(nproc) cores); crema's BLAS: ${blas:-?}; fastest of $runs crema runs"
echo "| LeNet, 50 iterations, batch 64, 1 test pass | Caffe (its log) | crema | crema / Caffe |"
echo "| --- | ---: | ---: | ---: |"
awk -v c="$caffe" -v k="$best" 'BEGIN {printf "| seconds from iteration 0 to 50 | %.3f | %.3f | %.2f |\n", c, k, k / c;
  printf "| ms per iteration | %.1f | %.1f | |\n", c * 20, k * 20}'
