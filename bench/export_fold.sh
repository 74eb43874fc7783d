#!/usr/bin/env bash
# export_fold.sh -- speed of a net with BatchNorm folded by `crema export` against the same
# net unfolded (`--keep-bn`), measured with `crema time` in one run, rounds alternating.
#   bench/export_fold.sh [BUILD_DIR (build)] [ROUNDS (5)]
# The net: 6 x (3x3 convolution, 64 channels, no bias + BatchNorm + Scale + ReLU) on
# 8 x 3 x 56 x 56, global average pooling, InnerProduct 10, Softmax; seeded random weights.
# Prints the best forward time of each over the rounds, and their ratio.
set -euo pipefail
build=${1:-build}
rounds=${2:-5}
crema="$(cd "$build" && pwd)/bin/crema"
work=$(mktemp -d /tmp/crema_export_fold_XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
{
  echo 'name: "vgg_bn"'
  echo 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 8 dim: 3 dim: 56 dim: 56 } } }'
  prev=data
  for i in 1 2 3 4 5 6; do
    echo "layer { name: \"conv$i\" type: \"Convolution\" bottom: \"$prev\" top: \"conv$i\" convolution_param { num_output: 64 kernel_size: 3 pad: 1 bias_term: false } }"
    echo "layer { name: \"bn$i\" type: \"BatchNorm\" bottom: \"conv$i\" top: \"conv$i\" }"
    echo "layer { name: \"scale$i\" type: \"Scale\" bottom: \"conv$i\" top: \"conv$i\" scale_param { bias_term: true } }"
    echo "layer { name: \"relu$i\" type: \"ReLU\" bottom: \"conv$i\" top: \"conv$i\" }"
    prev=conv$i
  done
  echo "layer { name: \"pool\" type: \"Pooling\" bottom: \"$prev\" top: \"pool\" pooling_param { pool: AVE global_pooling: true } }"
  echo 'layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 10 } }'
  echo 'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }'
} >vgg_bn.prototxt
"$crema" forward --model vgg_bn.prototxt --random-weights --save-weights rand.caffemodel >/dev/null 2>&1
"$crema" export --model vgg_bn.prototxt --weights rand.caffemodel --out folded 2>/dev/null | grep -v '^wrote'
"$crema" export --model vgg_bn.prototxt --weights rand.caffemodel --out kept --keep-bn >/dev/null 2>&1
best_kept=""
best_folded=""
forward_ms() { "$crema" time --model "$1/deploy.prototxt" --iterations 10 2>&1 | sed -n 's/.*Average Forward pass: \([0-9.]*\) ms.*/\1/p'; }
smaller() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }
for _ in $(seq "$rounds"); do
  best_kept=$(smaller "$best_kept" "$(forward_ms kept)")
  best_folded=$(smaller "$best_folded" "$(forward_ms folded)")
done
"$crema" time --model kept/deploy.prototxt --iterations 1 2>&1 | grep -o 'BLAS: .*' || true
printf '%-28s %10s\n' "net" "forward ms"
printf '%-28s %10.1f\n' "BatchNorm kept (--keep-bn)" "$best_kept" "BatchNorm folded" "$best_folded"
awk -v k="$best_kept" -v f="$best_folded" 'BEGIN { printf "folded / kept = %.2f\n", f / k }'
