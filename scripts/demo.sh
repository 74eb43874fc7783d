#!/usr/bin/env bash
# The README's main demo: does transfer pay off with few images per class?
#
#   installs the Debian packages (scripts/install-deps.sh), builds crema (Release, build/);
#   Fashion-MNIST (Debian's dataset-fashion-mnist) -> image folders (idx_to_images --folders):
#     source: classes 0-4 (t-shirt, trouser, pullover, dress, coat), 500 images each;
#     target: classes 5-9 (sandal, shirt, sneaker, bag, ankle boot), 10 training images per
#             class (a different 10 for each seed) and 100 validation images per class
#             (from the test set);
#   crema finetune on the target folder, for each of 3 seeds:
#     (1) from scratch (LeNet's fillers; learning rate 0.005: Caffe LeNet's 0.01 diverges on 10 images per class for some seeds),
#     (2) from the real Caffe MNIST LeNet in models/lenet (crema finetune's defaults),
#     (3) from a LeNet crema first trains on the source classes (crema finetune's defaults);
#   a table of the validation accuracy (mean and spread over the seeds) and times, and
#   crema classify on test images the runs never saw, with the best run.
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
cmake --build build -j"$(nproc)" --target crema_cli idx_to_images >/dev/null
BUILD_S=$(elapsed "$t")
B=$ROOT/build/bin
T_AFTER_BUILD=$(now)

FM=${CREMA_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
OUT=demo-output
SEEDS=${CREMA_DEMO_SEEDS:-"1 2 3"}
N_SEEDS=$(echo $SEEDS | wc -w)
NAMES=tshirt,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,ankle_boot
LENET=models/lenet/lenet_mnist_deploy.prototxt
LENET_W=models/lenet/lenet_mnist_iter_10000.caffemodel
COMMON=(--scale 0.00390625 --mean none --batch 10 --epochs 30) # LeNet's own pixel scale
rm -rf "$OUT"
mkdir -p "$OUT/data"

echo "== data: Fashion-MNIST -> image folders in $OUT/data"
t=$(now)
idx() { "$B/idx_to_images" --folders --class-names=$NAMES "$@" >/dev/null; }
TRAIN=(--images="$FM/train-images-idx3-ubyte.gz" --labels="$FM/train-labels-idx1-ubyte.gz")
TEST=(--images="$FM/t10k-images-idx3-ubyte.gz" --labels="$FM/t10k-labels-idx1-ubyte.gz")
idx "${TRAIN[@]}" --out="$OUT/data/source" --list="$OUT/data/source.txt" --classes=0,1,2,3,4 --per-class=500
for s in $SEEDS; do
  mkdir -p "$OUT/data/target-$s"
  idx "${TRAIN[@]}" --out="$OUT/data/target-$s/train" --list="$OUT/data/target-$s-train.txt" \
    --classes=5,6,7,8,9 --per-class=10 --offset=$((20000 + 10000 * s))
  idx "${TEST[@]}" --out="$OUT/data/target-$s/val" --list="$OUT/data/target-$s-val.txt" \
    --classes=5,6,7,8,9 --per-class=100
done
idx "${TEST[@]}" --out="$OUT/data/unseen" --list="$OUT/data/unseen.txt" --classes=5,6,7,8,9 --per-class=1 \
  --offset=5000
DATA_S=$(elapsed "$t")

echo "== pretraining LeNet on the source classes 0-4 (2500 images); log: $OUT/pretrain/train.log"
t=$(now)
"$B/crema" finetune --model $LENET --data "$OUT/data/source" --out "$OUT/pretrain" --val-split 0.1 \
  --scale 0.00390625 --mean none --batch 64 --epochs 4 --lr 0.01 --seed 1 2>"$OUT/pretrain.txt"
PRE_S=$(elapsed "$t")
PRE_ACC=$(awk '/^Best val accuracy/ {print $4}' "$OUT/pretrain.txt")

# The nine runs, two at a time with one thread each: LeNet is too small for two threads to
# help one run, so the two cores each take a run.
run_one() { # kind seed
  local kind=$1 s=$2 t args
  case $kind in
  scratch) args=(--model $LENET --lr 0.005) ;;
  mnist) args=(--model $LENET --weights $LENET_W) ;;
  source) args=(--model "$OUT/pretrain/deploy.prototxt" --weights "$OUT/pretrain/best.caffemodel") ;;
  esac
  t=$(now)
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$B/crema" finetune "${args[@]}" --data "$OUT/data/target-$s" \
    --out "$OUT/$kind-$s" "${COMMON[@]}" --seed "$s" 2>"$OUT/$kind-$s.txt"
  elapsed "$t" >"$OUT/$kind-$s.time"
  echo "   $kind, seed $s: $(cat "$OUT/$kind-$s.time")s"
}
echo "== 3 x $N_SEEDS runs on the target classes 5-9, two at a time; logs: $OUT/<run>/train.log"
t=$(now)
for s in $SEEDS; do
  for kind in scratch mnist source; do
    run_one $kind "$s" &
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
  done
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n; done
RUNS_S=$(elapsed "$t")

# Validation accuracy after the first epoch, the last one, and the best, from a metrics CSV.
acc() {
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "accuracy") c = i; next }
    $c != "" { if (first == "") first = $c; last = $c; if ($c > best) best = $c }
    END { printf "%s %s %s\n", first, last, best }' "$1/metrics.csv"
}
# mean and sample standard deviation of the arguments
stats() { echo "$@" | awk '{ for (i = 1; i <= NF; i++) { s += $i; q += $i * $i } m = s / NF;
  v = NF > 1 ? (q - NF * m * m) / (NF - 1) : 0; printf "%.3f +- %.3f", m, sqrt(v > 0 ? v : 0) }'; }

echo
echo "Fashion-MNIST classes 5-9, 10 training images per class, 500 validation images; LeNet,"
echo "30 epochs (150 SGD iterations, batch 10); seeds: $SEEDS; $(nproc) cores"
echo
printf "%-44s %15s %15s %15s %6s\n" "run (val accuracy: mean +- sd)" "after 1 epoch" "after 30" \
  "best epoch" "time"
BEST_RUN="" BEST_ACC=0
for kind in scratch mnist source; do
  case $kind in
  scratch) label="from scratch (lr 0.005)" ;;
  mnist) label="finetuned from Caffe's MNIST LeNet" ;;
  source) label="finetuned from LeNet trained on classes 0-4" ;;
  esac
  firsts="" finals="" bests="" times=""
  for s in $SEEDS; do
    read -r e1 f b < <(acc "$OUT/$kind-$s")
    firsts="$firsts $e1" finals="$finals $f" bests="$bests $b" times="$times $(cat "$OUT/$kind-$s.time")"
    if awk -v a="$f" -v b="$BEST_ACC" 'BEGIN { exit !(a > b) }'; then BEST_ACC=$f BEST_RUN=$OUT/$kind-$s; fi
  done
  printf "%-44s %15s %15s %15s %5ss\n" "$label" "$(stats $firsts)" "$(stats $finals)" "$(stats $bests)" \
    "$(echo $times | awk '{ for (i = 1; i <= NF; i++) s += $i; printf "%.1f", s / NF }')"
done
echo
echo "(time = one whole crema finetune on one core: image folder -> LMDB, training, a test every"
echo " epoch, snapshots; the nine runs took ${RUNS_S}s, two at a time)"
echo "source-class pretraining: ${PRE_S}s, val accuracy $PRE_ACC on classes 0-4"
echo
echo "== crema classify --run $BEST_RUN (final val accuracy $(printf %.3f "$BEST_ACC")) on 5 unseen test images"
"$B/crema" classify --run "$BEST_RUN" --top 2 $(find "$OUT/data/unseen" -name '*.png' | sort)
echo
echo "run folders:  $OUT/{scratch,mnist,source}-{${SEEDS// /,}}/ (train_val, solver, deploy, preprocess,"
echo "              labels.txt, best.caffemodel, metrics.csv, train.log, snapshots/)"
echo "pretrained:   $OUT/pretrain/ (deploy.prototxt + best.caffemodel, the base of the 'classes 0-4' runs)"
echo "image folders: $OUT/data/"
echo
echo "times: build ${BUILD_S}s, data ${DATA_S}s, after the build $(elapsed "$T_AFTER_BUILD")s, whole demo $(elapsed "$T0")s"
