#!/usr/bin/env bash
# Coverage-guided fuzzing of crema's parsers with libFuzzer (tests/fuzz/fuzz_*.c).
#   scripts/fuzz.sh [SECONDS | --runs=N] [TARGET...]
# Builds the targets with clang in build-fuzz/ (AddressSanitizer + UBSan, stb compiled in), then
# runs each for SECONDS (default 60) on its corpus in build-fuzz/corpus/<target>, seeded from
# tests/fuzz/seeds and tests/data. --runs=N instead runs exactly N inputs per target from a
# fixed random seed: on a fresh corpus the same inputs every time, so CI's smoke cannot fail
# on a find that depends on luck or machine speed (a timed run explores further: use it by hand). Prints executions per target; a crash stops with status 1
# and leaves the input in build-fuzz/crashes/ (make it a regression test in tests/).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
budget=(-max_total_time="$secs")
case $secs in
  --runs=*)
    runs=${secs#--runs=}
    budget=(-runs="$runs" -seed=1)
    rm -rf build-fuzz/corpus # a corpus left by a timed run would change the inputs
    secs=-
    ;;
esac
all=(fuzz_prototxt fuzz_caffemodel fuzz_solverstate fuzz_datum fuzz_image fuzz_list fuzz_npy)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi
bash scripts/install-deps.sh --fuzz
CC=clang cmake -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCREMA_FUZZ=ON -DCREMA_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}" >/dev/null
mkdir -p build-fuzz/crashes
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:allocator_may_return_null=1
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
printf '%-18s %12s %10s %8s %8s\n' target executions exec/s corpus seconds
status=0
for t in "${targets[@]}"; do
  kind=${t#fuzz_}
  corpus=build-fuzz/corpus/$t
  mkdir -p "$corpus"
  seeds=(tests/fuzz/seeds/"$kind")
  case $kind in
    prototxt) seeds+=(tests/data/zoo/mnist tests/data/zoo/cifar10 tests/data/lenet/lenet_mnist_deploy.prototxt) ;;
  esac
  log=build-fuzz/$t.log
  # Seeds go in first (read-only dirs after the corpus); -max_len keeps inputs small enough
  # for thousands of executions per second.
  seed_dir=build-fuzz/seeds/$t
  rm -rf "$seed_dir" && mkdir -p "$seed_dir"
  for s in "${seeds[@]}"; do
    if [ -d "$s" ]; then find "$s" -type f ! -name '*.md' -exec cp {} "$seed_dir"/ \; ; else cp "$s" "$seed_dir"/; fi
  done
  if ! build-fuzz/bin/"$t" "$corpus" "$seed_dir" "${budget[@]}" -max_len=65536 -timeout=20 \
      -rss_limit_mb=2560 -malloc_limit_mb=1024 -print_final_stats=1 \
      -artifact_prefix=build-fuzz/crashes/"$t"- >"$log" 2>&1; then
    status=1
    echo "$t: FAILED -- see $log and build-fuzz/crashes/$t-*" >&2
    grep -m1 -E "ERROR: |runtime error" "$log" >&2 || true
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  printf '%-18s %12s %10s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$(ls "$corpus" | wc -l)" "$secs"
done
exit $status
