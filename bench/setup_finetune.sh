#!/usr/bin/env bash
# Set-up cost of a finetune: CaffeNet's train_val (data layers swapped for DummyData, batch
# 50) with its test net, started from a full CaffeNet caffemodel (--weights), max_iter 0, so
# only building the nets and copying the weights is timed. Prints wall time and peak memory
# of `crema train` for each crema binary given (default: this tree's build).
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
echo "| crema binary | set-up wall time | peak memory |"
echo "| --- | ---: | ---: |"
for b in "${bins[@]}"; do
  /usr/bin/time -f "%e %M" -o "$dir/time" "$b" train --solver "$dir/solver.prototxt" \
    --weights "$dir/w.caffemodel" >/dev/null 2>&1
  read -r secs kb <"$dir/time"
  echo "| $b | ${secs} s | $((kb / 1024)) MB |"
done
