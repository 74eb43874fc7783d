#!/usr/bin/env bash
# The README's main demo: finetune Caffe's MNIST LeNet on Fashion-MNIST, and compare with
# training the same net from scratch for the same iterations.
#
#   installs the Debian packages (scripts/install-deps.sh), builds crema (Release, build/),
#   Fashion-MNIST subset (2000 train / 1000 test) -> PNG files + list files (idx_to_images)
#   -> LMDB (convert_imageset) -> mean file (compute_image_mean)
#   -> crema train --weights=models/lenet/lenet_mnist_iter_10000.caffemodel (finetune)
#   -> crema train (scratch) -> crema test -> a table of accuracies and times.
# Everything it writes goes to demo-output/ (removed and rebuilt on each run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s.%N)
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

echo "== installing dependencies (Debian packages)"
bash scripts/install-deps.sh

echo "== building crema (Release, build/)"
t=$(now)
cmake -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target crema_cli convert_imageset compute_image_mean idx_to_images >/dev/null
BUILD_S=$(elapsed "$t")
B=$ROOT/build/bin

FM=${CREMA_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
OUT=demo-output
rm -rf "$OUT"
mkdir -p "$OUT/finetune" "$OUT/scratch"

echo "== data: Fashion-MNIST subset -> PNG -> LMDB -> mean"
t=$(now)
"$B/idx_to_images" --images="$FM/train-images-idx3-ubyte.gz" --labels="$FM/train-labels-idx1-ubyte.gz" \
  --out="$OUT/fashion_train_png" --count=2000 --prefix=train
"$B/idx_to_images" --images="$FM/t10k-images-idx3-ubyte.gz" --labels="$FM/t10k-labels-idx1-ubyte.gz" \
  --out="$OUT/fashion_test_png" --count=1000 --prefix=test
"$B/convert_imageset" --gray --shuffle "$OUT/fashion_train_png/" "$OUT/fashion_train_png/list.txt" \
  "$OUT/fashion_train_lmdb" 2>"$OUT/convert_train.log"
"$B/convert_imageset" --gray "$OUT/fashion_test_png/" "$OUT/fashion_test_png/list.txt" \
  "$OUT/fashion_test_lmdb" 2>"$OUT/convert_test.log"
"$B/compute_image_mean" "$OUT/fashion_train_lmdb" "$OUT/fashion_mean.binaryproto" 2>"$OUT/mean.log"
MEAN=$(grep -o 'mean_value channel \[0\]: [0-9.]*' "$OUT/mean.log" | awk '{print $NF}')
DATA_S=$(elapsed "$t")

echo "== finetuning Caffe's MNIST LeNet (ip2 renamed ip2_fashion, lr_mult 10/20); log: $OUT/finetune/train.log"
t=$(now)
"$B/crema" train --solver=models/fashion/solver_finetune.prototxt \
  --weights=models/lenet/lenet_mnist_iter_10000.caffemodel 2>"$OUT/finetune/train.log"
FT_S=$(elapsed "$t")

echo "== training the same net from scratch; log: $OUT/scratch/train.log"
t=$(now)
"$B/crema" train --solver=models/fashion/solver_scratch.prototxt 2>"$OUT/scratch/train.log"
SC_S=$(elapsed "$t")

ITERS=$(awk '/^max_iter:/ {print $2}' models/fashion/solver_finetune.prototxt)
"$B/crema" test --model=models/fashion/lenet_fashion_train_test.prototxt \
  --weights="$OUT/finetune/lenet_fashion_iter_$ITERS.caffemodel" --iterations=10 \
  >"$OUT/finetune/test.txt" 2>"$OUT/finetune/test.log"

# Accuracy at a given iteration (or the last row) from a metrics CSV.
acc_at() {
  awk -F, -v want="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "accuracy") c = i; next }
    $c != "" { last = $c; if ($1 == want) hit = $c }
    END { v = (want == "last") ? last : hit; printf "%.3f", v }' "$1"
}
FT_CSV=$OUT/finetune/lenet_fashion_metrics.csv
SC_CSV=$OUT/scratch/lenet_fashion_metrics.csv

echo
echo "Fashion-MNIST, LeNet, 2000 training / 1000 test images, $ITERS SGD iterations (batch 64), $(nproc) cores"
echo "(training-set mean pixel $MEAN, in $OUT/fashion_mean.binaryproto; the nets scale pixels by 1/256 as Caffe's LeNet)"
echo
printf "%-34s %14s %14s %11s\n" "run" "acc @ iter 50" "acc @ iter $ITERS" "train time"
printf "%-34s %14s %14s %10ss\n" "finetuned from Caffe's MNIST LeNet" "$(acc_at "$FT_CSV" 50)" "$(acc_at "$FT_CSV" last)" "$FT_S"
printf "%-34s %14s %14s %10ss\n" "from scratch (same net, same data)" "$(acc_at "$SC_CSV" 50)" "$(acc_at "$SC_CSV" last)" "$SC_S"
echo
echo "snapshots:    $OUT/finetune/lenet_fashion_iter_$ITERS.{caffemodel,solverstate}"
echo "              $OUT/scratch/lenet_fashion_iter_$ITERS.{caffemodel,solverstate}"
echo "metrics CSV:  $FT_CSV"
echo "              $SC_CSV"
echo "confusion matrix of the finetuned net: $OUT/finetune/test.txt"
echo "resume:       build/bin/crema train --solver=models/fashion/solver_finetune.prototxt --snapshot=$OUT/finetune/lenet_fashion_iter_$ITERS.solverstate --iterations=600"
echo
echo "times: build ${BUILD_S}s, data ${DATA_S}s, whole demo $(elapsed "$T0")s"
