#!/usr/bin/env bash
# The install test (ctest entry test_install): installs a built tree into a temporary prefix,
# checks what was installed (files, soname, exported symbols), builds examples/ against it with
# `pkg-config --cflags --libs crema` and with find_package(crema), runs them, checks that the
# classify example's probabilities equal `crema forward`'s on the same preprocessed input,
# then builds the .deb with cpack and checks its file list and dependencies.
#   scripts/test_install.sh BUILD_DIR [release|sanitize]
set -euo pipefail
build=$(cd "$1" && pwd)
mode=${2:-release}
if [ "$mode" = sanitize ]; then
  echo "test_install: skipped in the sanitizer build: it tests packaging (install, pkg-config," \
    "find_package, .deb), not memory; the API itself runs under the sanitizers in test_api"
  exit 77
fi
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/crema_install_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "test_install: FAILED: $*" >&2
  exit 1
}
step() { echo "== $*"; }
cc=${CC:-cc}
cflags=(-std=c11 -pedantic -Wall -Wextra -Werror -O2)

step "cmake --install into $tmp/prefix"
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
libdir=$(dirname "$(find "$prefix" -name libcrema.so.0 | head -1)")
[ -n "$libdir" ] || fail "libcrema.so.0 not installed"
for f in bin/crema bin/convert_imageset bin/compute_image_mean include/crema/crema.h \
  share/doc/crema/README.md share/doc/crema/LICENSE share/doc/crema/copyright; do
  [ -e "$prefix/$f" ] || fail "$f not installed"
done
for f in libcrema.so libcrema.a pkgconfig/crema.pc cmake/crema/crema-config.cmake \
  cmake/crema/crema-config-version.cmake cmake/crema/cremaTargets.cmake; do
  [ -e "$libdir/$f" ] || fail "$libdir/$f not installed"
done
readelf -d "$libdir/libcrema.so.0" >"$tmp/readelf"
grep -q 'SONAME.*\[libcrema.so.0\]' "$tmp/readelf" || fail "soname is not libcrema.so.0"

step "exported symbols: only the public API"
nm -D --defined-only "$libdir/libcrema.so.0" | awk '{print $3}' | sort >"$tmp/symbols"
n_sym=$(wc -l <"$tmp/symbols")
grep -o 'crema_[a-z_0-9]*(' "$prefix/include/crema/crema.h" | tr -d '(' | sort -u >"$tmp/declared"
extra=$(comm -23 "$tmp/symbols" "$tmp/declared")
[ -z "$extra" ] || fail "exported but not in crema.h: $extra"
missing=$(comm -13 "$tmp/symbols" "$tmp/declared")
[ -z "$missing" ] || fail "declared in crema.h but not exported: $missing"
echo "   $n_sym symbols exported, each declared in crema.h"

step "build the examples with pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
pcflags=$(pkg-config --cflags --libs crema)
for ex in classify finetune; do
  $cc "${cflags[@]}" -o "$tmp/${ex}_pc" "$src/examples/$ex.c" $pcflags -Wl,-rpath,"$libdir"
done
$cc "${cflags[@]}" -o "$tmp/dump_input" "$src/tests/install/dump_input.c" $pcflags -Wl,-rpath,"$libdir"
ldd "$tmp/classify_pc" >"$tmp/ldd_pc"
grep -q "libcrema.so.0 => $libdir/" "$tmp/ldd_pc" || fail "classify_pc does not load the installed libcrema.so.0"
# The static library with its private dependencies (pkg-config --static).
$cc "${cflags[@]}" -o "$tmp/classify_static" "$src/examples/classify.c" $(pkg-config --cflags crema) \
  "$libdir/libcrema.a" $(pkg-config --static --libs crema | sed -E 's/(^| )-lcrema( |$)/ /')
ldd "$tmp/classify_static" >"$tmp/ldd_static"
grep -q libcrema "$tmp/ldd_static" && fail "classify_static loads libcrema.so"

if command -v c++ >/dev/null 2>&1; then
  # The header is also valid C++ (extern "C"), when a C++ compiler is at hand.
  printf '#include <crema/crema.h>\nint main() { return crema_strerror(CREMA_OK)[0] == 0; }\n' >"$tmp/hdr.cpp"
  c++ -std=c++11 -pedantic -Wall -Wextra -Werror -o "$tmp/hdr_cpp" "$tmp/hdr.cpp" $pcflags -Wl,-rpath,"$libdir" ||
    fail "crema.h does not compile as C++"
fi

step "build the examples with find_package(crema)"
cmake -S "$src/examples" -B "$tmp/ex" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >"$tmp/ex.log" || { cat "$tmp/ex.log"; fail "configure examples"; }
cmake --build "$tmp/ex" >>"$tmp/ex.log" 2>&1 || { cat "$tmp/ex.log"; fail "build examples"; }
cmake -S "$src/examples" -B "$tmp/ex_static" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCREMA_EXAMPLES_STATIC=ON >"$tmp/ex_static.log" || { cat "$tmp/ex_static.log"; fail "configure examples (static)"; }
cmake --build "$tmp/ex_static" >>"$tmp/ex_static.log" 2>&1 || { cat "$tmp/ex_static.log"; fail "build examples (static)"; }
ldd "$tmp/ex_static/classify" >"$tmp/ldd_ex_static"
grep -q libcrema "$tmp/ldd_ex_static" && fail "crema::crema_static build loads libcrema.so"

step "a run folder: the real Caffe LeNet, its preprocessing, labels"
run=$tmp/run
mkdir -p "$run"
cp "$src/tests/data/lenet/lenet_mnist_deploy.prototxt" "$run/deploy.prototxt"
cp "$src/tests/data/lenet/lenet_mnist_iter_10000.caffemodel" "$run/weights.caffemodel"
echo "scale: 0.00390625" >"$run/preprocess.prototxt"
printf 'zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n' >"$run/labels.txt"
image="$src/tests/data/images/cat gray.jpg"

step "classify (pkg-config, find_package, each shared and static) against crema forward"
"$tmp/classify_pc" "$run" "$image" 10 >"$tmp/classify_pc.txt"
"$tmp/ex/classify" "$run" "$image" 10 >"$tmp/classify_cmake.txt"
"$tmp/classify_static" "$run" "$image" 10 >"$tmp/classify_static.txt"
cat "$tmp/classify_pc.txt"
cmp -s "$tmp/classify_pc.txt" "$tmp/classify_cmake.txt" || fail "pkg-config and find_package builds disagree"
cmp -s "$tmp/classify_pc.txt" "$tmp/classify_static.txt" || fail "shared and static builds disagree"
"$tmp/ex_static/classify" "$run" "$image" 10 >"$tmp/classify_cmake_static.txt"
cmp -s "$tmp/classify_pc.txt" "$tmp/classify_cmake_static.txt" || fail "crema::crema_static build disagrees"
"$tmp/dump_input" "$run" "$image" "$tmp/input.npy"
"$prefix/bin/crema" forward --model "$run/deploy.prototxt" --weights "$run/weights.caffemodel" \
  --input data="$tmp/input.npy" --output prob="$tmp/prob.npy" 2>"$tmp/forward.log" ||
  { cat "$tmp/forward.log"; fail "crema forward"; }
python3 - "$tmp/classify_pc.txt" "$tmp/prob.npy" <<'EOF'
import ast, struct, sys
rows = [line.split() for line in open(sys.argv[1])]
raw = open(sys.argv[2], "rb").read()  # .npy 1.0: magic, header length, header dict, floats
assert raw[:6] == b"\x93NUMPY", "not an .npy file"
hlen = struct.unpack("<H", raw[8:10])[0]
header = ast.literal_eval(raw[10:10 + hlen].decode("latin1"))
assert header["descr"] == "<f4" and not header["fortran_order"], header
prob = struct.unpack("<10f", raw[10 + hlen:])
assert len(rows) == 10, rows
names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
got = [None] * 10
for rank, (r, idx, p, label) in enumerate(rows):
    assert int(r) == rank + 1
    got[int(idx)] = float(p)
    assert label == names[int(idx)], (label, idx)
order = [int(r[1]) for r in rows]
assert order == sorted(range(10), key=lambda i: (-prob[i], i)), (order, prob)
diff = max(abs(g - q) for g, q in zip(got, prob))
same = sum(struct.pack("<f", g) == struct.pack("<f", q) for g, q in zip(got, prob))
print("   classify vs crema forward: %d of 10 probabilities bit-identical as float32, max |difference| %.3g"
      % (same, diff))
assert diff <= 1e-6, diff
EOF

step "finetune example: LeNet weights into a renamed 3-class head, 20 iterations, a test every 10"
cat >"$tmp/ft_net.prototxt" <<'EOF'
name: "lenet_ft"
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 8 dim: 1 dim: 28 dim: 28 } shape { dim: 8 }
    data_filler { type: "uniform" min: 0 max: 1 } data_filler { type: "uniform" min: 0 max: 2.99 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 20 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 50 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" inner_product_param { num_output: 500 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2_ft" type: "InnerProduct" bottom: "ip1" top: "ip2_ft" param { lr_mult: 10 } param { lr_mult: 20 }
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2_ft" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2_ft" bottom: "label" top: "accuracy" include { phase: TEST } }
EOF
cat >"$tmp/ft_solver.prototxt" <<EOF
net: "$tmp/ft_net.prototxt"
base_lr: 0.001 momentum: 0.9 lr_policy: "fixed" max_iter: 20 display: 0
test_iter: 2 test_interval: 10 random_seed: 3 snapshot_prefix: "$tmp/ft" metrics_csv: false
EOF
"$tmp/finetune_pc" "$tmp/ft_solver.prototxt" "$run/weights.caffemodel" >"$tmp/finetune.txt" 2>"$tmp/finetune.log" ||
  { cat "$tmp/finetune.txt" "$tmp/finetune.log"; fail "finetune example"; }
cat "$tmp/finetune.txt"
grep -q '^iteration 10  loss ' "$tmp/finetune.txt" || fail "finetune printed no progress line for iteration 10"
[ "$(grep -c '^test at iteration' "$tmp/finetune.txt")" -ge 2 ] || fail "finetune printed fewer than 2 test rounds"
grep -q '^done after 20 iterations' "$tmp/finetune.txt" || fail "finetune did not finish"
[ -s "$tmp/ft_iter_20.caffemodel" ] || fail "no snapshot ft_iter_20.caffemodel"
grep -q 'Copying source layer conv1' "$tmp/finetune.log" && fail "log level 1 should hide information lines"
"$tmp/ex/finetune" "$tmp/ft_solver.prototxt" "$run/weights.caffemodel" 5 >"$tmp/finetune_cmake.txt" 2>&1 ||
  fail "finetune (find_package build)"
grep -q '^done after 5 iterations' "$tmp/finetune_cmake.txt" || fail "finetune (find_package build) did not stop at 5"

step "cpack -G DEB"
(cd "$build" && cpack -G DEB -B "$tmp/pkg" >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; fail "cpack"; }
deb=$(ls "$tmp"/pkg/crema_*_*.deb)
dpkg-deb -c "$deb" | awk '{print $6}' >"$tmp/deb_files"
for f in ./usr/bin/crema ./usr/bin/convert_imageset ./usr/bin/compute_image_mean ./usr/include/crema/crema.h \
  ./usr/lib/libcrema.so.0 ./usr/lib/libcrema.a ./usr/lib/pkgconfig/crema.pc \
  ./usr/lib/cmake/crema/crema-config.cmake ./usr/share/doc/crema/copyright ./usr/share/doc/crema/README.md; do
  grep -qx -- "$f" "$tmp/deb_files" || grep -qx -- "${f/\/lib\//\/lib\/x86_64-linux-gnu\/}" "$tmp/deb_files" ||
    fail "$f missing from the .deb"
done
depends=$(dpkg-deb -f "$deb" Depends)
echo "   $(basename "$deb"): $(wc -l <"$tmp/deb_files") entries; Depends: $depends"
for pkg in libc6 libgomp1 liblmdb0 libopenblas0 libprotobuf-c1 libstb0; do
  echo "$depends" | grep -Eq "(^|, )$pkg( |,|$)" || fail "Depends lacks $pkg"
done
[ "$(dpkg-deb -f "$deb" Package)" = crema ] || fail "package name"
# apt resolves the dependencies (a simulation: nothing is installed).
apt-get -s install "$deb" >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log"; fail "apt-get -s install $deb"; }
grep -q '^Inst crema ' "$tmp/apt.log" || { cat "$tmp/apt.log"; fail "apt would not install crema"; }
# The packaged files work where they land: tools run and the examples build from the package's .pc.
dpkg-deb -x "$deb" "$tmp/root"
"$tmp/root/usr/bin/crema" info "$run/weights.caffemodel" >/dev/null 2>&1 || fail "packaged crema info"
PKG_CONFIG_PATH=$tmp/root/usr/lib/pkgconfig
export PKG_CONFIG_PATH
$cc "${cflags[@]}" -o "$tmp/classify_deb" "$src/examples/classify.c" $(pkg-config --cflags --libs crema) \
  -Wl,-rpath,"$tmp/root/usr/lib"
"$tmp/classify_deb" "$run" "$image" 10 >"$tmp/classify_deb.txt"
cmp -s "$tmp/classify_deb.txt" "$tmp/classify_pc.txt" || fail "classify built from the .deb disagrees"
# A real `apt install ./crema_*.deb`, only when asked (CI's machines are thrown away; a
# developer's is not): the tools are then on the PATH and pkg-config finds crema by itself.
if [ "${CREMA_TEST_DEB_INSTALL:-0}" = 1 ]; then
  step "apt-get install $deb (CREMA_TEST_DEB_INSTALL=1)"
  [ "$(id -u)" = 0 ] || fail "CREMA_TEST_DEB_INSTALL=1 needs root"
  installed() { dpkg-query -W -f='${Status}' crema 2>/dev/null | grep -q "ok installed"; }
  ! installed || fail "a crema package is already installed; remove it first"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >"$tmp/apt_install.log" 2>&1 ||
    { cat "$tmp/apt_install.log"; fail "apt-get install"; }
  remove_deb() { DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq crema >/dev/null 2>&1 || true; }
  trap 'remove_deb; rm -rf "$tmp"' EXIT
  [ "$(env -i PATH=/usr/local/bin:/usr/bin:/bin sh -c 'command -v crema')" = /usr/bin/crema ] ||
    fail "crema is not on the PATH after apt install"
  env -i PATH=/usr/local/bin:/usr/bin:/bin crema info "$run/weights.caffemodel" >/dev/null 2>&1 ||
    fail "the installed crema does not run"
  $cc "${cflags[@]}" -o "$tmp/classify_sys" "$src/examples/classify.c" \
    $(env -u PKG_CONFIG_PATH pkg-config --cflags --libs crema) || fail "build against the installed package"
  "$tmp/classify_sys" "$run" "$image" 10 >"$tmp/classify_sys.txt"
  cmp -s "$tmp/classify_sys.txt" "$tmp/classify_pc.txt" || fail "classify against the installed package disagrees"
  remove_deb
  ! installed || fail "apt-get purge crema left it installed"
  echo "   installed with apt, crema on the PATH, classify built with the system pkg-config, purged"
fi
echo "test_install: all checks passed"
