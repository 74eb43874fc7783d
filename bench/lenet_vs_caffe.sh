#!/usr/bin/env bash
# LeNet training against a log real Caffe wrote: tests/data/report/caffe_train.log is BVLC
# Caffe 1.0 (CPU build, Debian 12) training Caffe's LeNet train_val on the first 100
# Fashion-MNIST images for 50 SGD iterations (batch 64; a test pass of 100 images at
# iterations 0, 25 and 50, the one at 25 inside the timed span). This runs crema on the same
# net, data (the same LMDB) and solver settings, RUNS times (default 5), and prints the time
# from the "Iteration 0 (" line to the "Iteration 50, loss" line of each log: Caffe's once,
# crema's fastest, median and slowest. Given several binaries (an old build and a new one),
# the runs alternate, one of each per round, so that all of them see the same machine.
#
# Caffe's log was written on another machine of the same kind (2 cores), on 2026-12-01, so
# the ratio is an estimate: run this idle, and read it beside the CPU line it prints. On a
# shared machine one binary's runs spread by 1.5x or more; the median is the figure to quote.
#
#   RUNS=5 bash bench/lenet_vs_caffe.sh [CREMA_BINARY ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$root/build/bin/crema")
for i in "${!bins[@]}"; do bins[$i]="$(readlink -f "${bins[$i]}")"; done # the runs cd elsewhere
runs="${RUNS:-5}"
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
declare -a spans
for _ in $(seq "$runs"); do
  for i in "${!bins[@]}"; do
    (cd "$dir" && "${bins[$i]}" train --solver solver.prototxt >log 2>&1)
    spans[$i]="${spans[$i]:-} $(span "$dir/log")"
  done
done
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
blas="$(sed -n 's/.*BLAS: OpenBLAS kernel \([^,]*\), \([0-9]*\) threads.*/\1, \2 threads/p' "$dir/log" | head -1)"
echo "CPU: ${cpu:-unknown} ($(nproc) cores); crema's BLAS: ${blas:-?}; $runs runs of each crema binary"
echo "| LeNet, 50 iterations, batch 64, 1 test pass | fastest s | median s | slowest s | median / Caffe | fastest / Caffe |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
printf '| Caffe (its log) | %.3f | | | | |\n' "$caffe"
for i in "${!bins[@]}"; do
  echo "${spans[$i]}" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk -v c="$caffe" -v name="${bins[$i]}" '
    {v[NR] = $1}
    END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
      printf "| crema (%s) | %.3f | %.3f | %.3f | %.2f | %.2f |\n", name, v[1], m, v[NR], m / c, v[1] / c}'
done
