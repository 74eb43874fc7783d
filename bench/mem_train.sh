#!/usr/bin/env bash
# Peak memory of training (issue 12): `crema train` on
#  - GoogLeNet's train_val (batch 32; test net batch 50), data layers swapped for DummyData;
#  - CaffeNet's finetune (train_val, batch 50; test net batch 50) from a full CaffeNet
#    caffemodel (--weights), data layers swapped for DummyData;
# each for a few iterations with one test pass at the end, on random data. Prints the peak
# resident set (`/usr/bin/time`, max RSS) of each crema binary given (default: this tree's
# build), so a before/after table comes from one run on one machine.
#
# Each binary runs once per engine in ENGINES (default "default caffe": crema's default
# engines, then the reference im2col+OpenBLAS path everywhere; any other word is passed on
# as CREMA_ENGINE).
#
#   bash bench/mem_train.sh [CREMA_BINARY ...]
#   ITER=2 ENGINES=caffe bash bench/mem_train.sh old/crema new/crema
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$root/build/bin/crema")
iters="${ITER:-2}"
read -r -a engines <<<"${ENGINES:-default caffe}"
dir="$(mktemp -d /tmp/crema_mem_XXXXXX)"
trap 'rm -rf "$dir"' EXIT
/usr/bin/python3 - "$root" "$dir" "$iters" <<'PY'
import re, sys
root, d, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])

def dummy(batch, phase, side):
    return ('layer { name: "data" type: "DummyData" top: "data" top: "label"\n'
            '  include { phase: %s }\n'
            '  dummy_data_param { shape { dim: %d dim: 3 dim: %d dim: %d } shape { dim: %d }\n'
            '    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }\n'
            % (phase, batch, side, side, batch))

def swap(src, first_layer, name, side, train_batch, test_batch):
    body = src[src.index('layer {\n  name: "%s"' % first_layer):]
    return ('name: "%s"\n' % name + dummy(train_batch, "TRAIN", side) + dummy(test_batch, "TEST", side) + body)

def solver(tag):
    # test_interval = max_iter: one test pass after the last iteration, as a real run does.
    return ('net: "%s/%s.prototxt"\ntest_iter: 1\ntest_interval: %d\ntest_initialization: false\n'
            'base_lr: 0.001\nlr_policy: "fixed"\nmomentum: 0.9\nweight_decay: 0.0005\nmax_iter: %d\n'
            'snapshot_after_train: false\nsnapshot_prefix: "%s/snap"\ndisplay: 1\n'
            % (d, tag, iters, iters, d))

g = open(root + "/tests/data/zoo/bvlc_googlenet/train_val.prototxt").read()
open(d + "/googlenet.prototxt", "w").write(swap(g, "conv1/7x7_s2", "GoogleNet", 224, 32, 50))
open(d + "/googlenet_solver.prototxt", "w").write(solver("googlenet"))
c = open(root + "/tests/data/zoo/bvlc_reference_caffenet/train_val.prototxt").read()
open(d + "/caffenet.prototxt", "w").write(swap(c, "conv1", "CaffeNet", 227, 50, 50))
open(d + "/caffenet_solver.prototxt", "w").write(solver("caffenet"))
PY
"$root/build/bin/bench_perf_net" --model "$root/tests/data/zoo/bvlc_reference_caffenet/deploy.prototxt" \
  --batch 1 --save-weights "$dir/w.caffemodel" >/dev/null
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "CPU: ${cpu:-unknown} ($(nproc) cores); $iters training iterations + 1 test pass per run"
runs=("googlenet|GoogLeNet train_val, batch 32|" "caffenet|CaffeNet finetune, batch 50|--weights $dir/w.caffemodel")
echo "| run | crema binary | BLAS kernel, threads | engine | peak memory |"
echo "| --- | --- | --- | --- | ---: |"
for r in "${runs[@]}"; do
  IFS='|' read -r tag label extra <<<"$r"
  read -r -a extra_args <<<"$extra"
  for e in "${engines[@]}"; do
    for b in "${bins[@]}"; do
      env=(env -u CREMA_ENGINE)
      [ "$e" = default ] || env=(env "CREMA_ENGINE=$e")
      if ! "${env[@]}" /usr/bin/time -f "%M" -o "$dir/time" "$b" train \
        --solver "$dir/${tag}_solver.prototxt" "${extra_args[@]}" >"$dir/log" 2>&1; then
        echo "error: $b train failed on $label; its log:" >&2
        tail -5 "$dir/log" >&2
        exit 1
      fi
      kb="$(tail -1 "$dir/time")"
      blas="$(sed -n 's/.*BLAS: OpenBLAS kernel \([^,]*\), \([0-9]*\) threads.*/\1, \2/p' "$dir/log" | head -1)"
      echo "| $label | $b | ${blas:-?} | $e | $((kb / 1024)) MB |"
    done
  done
done
