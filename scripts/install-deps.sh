#!/usr/bin/env bash
# Installs everything crema needs to build, test and run its demo, from Debian's archive.
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail
PACKAGES=(
  gcc make cmake pkg-config
  dpkg-dev file                           # cpack -G DEB: dpkg-shlibdeps finds the runtime dependencies
  libprotobuf-c-dev protobuf-c-compiler   # messages + protoc-c
  libstb-dev                              # image decode / resize / encode
  libopenblas-dev                         # GEMM
  liblmdb-dev                             # data sets on disk
  libhdf5-dev                             # HDF5Data/HDF5Output and .h5 snapshots (optional)
  libdnnl-dev                             # oneDNN: the faster compute engine (optional)
  libleveldb-dev                          # LevelDB data sets (optional)
  check                                   # unit tests
  dpkg-dev file                           # cpack -G DEB: dpkg-shlibdeps finds the runtime dependencies
  libopenmpi-dev openmpi-bin              # data-parallel training (mpirun -np N crema train)
  python3-opencv python3-numpy            # independent test oracle (cv2.dnn reads Caffe models)
  python3-onnx                            # export tests: onnx.checker on the ONNX files crema writes
  dataset-fashion-mnist                   # demo and training tests
  clang-format cppcheck                   # style and static checks in CI
  chromium                                # test_report opens the HTML report headless
)
# scripts/fuzz.sh: libFuzzer targets need clang, its sanitizer runtimes and its OpenMP.
if [ "${1:-}" = "--fuzz" ]; then
  PACKAGES+=(clang libclang-rt-14-dev libomp-14-dev libfuzzer-14-dev)
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
