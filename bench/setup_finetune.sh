#!/usr/bin/env bash
# Set-up cost of a finetune: CaffeNet's train_val (data layers swapped for DummyData, batch
# 50) with its test net, started from a full CaffeNet caffemodel (--weights), max_iter 0, so
# only building the nets and copying the weights is timed. Prints, for each crema binary
# given (default: this tree's build), the set-up time (the wall time less the one test pass
# that Caffe's Solve, and crema's, run at iteration 0 after a max_iter 0 run: its length comes
# from the log's time stamps), the whole wall time and the peak memory of `crema train`.
#
#   bash bench/setup_finetune.sh [CREMA_BINARY ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$root/build/bin/crema")
dir="$(mktemp -d /tmp/crema_setup_XXXXXX)"
trap 'rm -rf "$dir"' EXIT
/usr/bin/python3 - "$root" "$dir" <<'PY'
import sys
root, d = sys.argv[1], sys.argv[2]
src = open(root + "/tests/data/zoo/bvlc_reference_caffenet/train_val.prototxt").read()
i = src.index('layer {\n  name: "conv1"')
head = ('name: "CaffeNet"\nlayer { name: "data" type: "DummyData" top: "data" top: "label"\n'
        '  dummy_data_param { shape { dim: 50 dim: 3 dim: 227 dim: 227 } shape { dim: 50 }\n'
        '    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }\n')
open(d + "/net.prototxt", "w").write(head + src[i:])
open(d + "/solver.prototxt", "w").write(
    'net: "%s/net.prototxt"\ntest_iter: 1\ntest_interval: 1000\ntest_initialization: false\n'
    'base_lr: 0.001\nlr_policy: "fixed"\nmax_iter: 0\nsnapshot_after_train: false\n'
    'snapshot_prefix: "%s/snap"\n' % (d, d))
PY
"$root/build/bin/bench_perf_net" --model "$root/tests/data/zoo/bvlc_reference_caffenet/deploy.prototxt" \
  --batch 1 --save-weights "$dir/w.caffemodel"
echo "| crema binary | set-up | wall time (set-up + test pass) | peak memory |"
echo "| --- | ---: | ---: | ---: |"
for b in "${bins[@]}"; do
  /usr/bin/time -f "%e %M" -o "$dir/time" "$b" train --solver "$dir/solver.prototxt" \
    --weights "$dir/w.caffemodel" >"$dir/log" 2>&1
  read -r secs kb <"$dir/time"
  # Seconds from "Solver scaffolding done." to "Optimization Done.": the test pass.
  test_pass="$(awk '/Solver scaffolding done/ {split($2, a, ":"); t0 = a[1] * 3600 + a[2] * 60 + a[3]}
    /Optimization Done/ {split($2, a, ":"); t1 = a[1] * 3600 + a[2] * 60 + a[3]}
    END {d = t1 - t0; if (d < 0) d += 86400; printf "%.2f", d}' "$dir/log")"
  setup="$(awk -v w="$secs" -v t="$test_pass" 'BEGIN {printf "%.2f", w - t}')"
  echo "| $b | ${setup} s | ${secs} s | $((kb / 1024)) MB |"
done
