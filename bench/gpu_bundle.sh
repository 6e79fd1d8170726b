#!/usr/bin/env bash
# Prepares a GPU machine's run from this one, for a GPU machine that has the
# CUDA toolkit and driver but not nnopt's build dependencies: builds the tree
# with the cuda backend (sm_90 by default) into BUILD_DIR, copies the shared
# libraries the binaries need that a bare CUDA image lacks into LIBS_DIR, and
# MNIST into DATA_DIR/mnist when it is found. Then, on the GPU machine, with
# the same paths (or a link from this checkout's path to the copy there):
#
#   NNOPT_GPU_LIBS=$LIBS_DIR NNOPT_DATA=$DATA_DIR bench/gpu_check.sh --prebuilt
#
#   bench/gpu_bundle.sh        (BUILD_DIR=build-gpu LIBS_DIR=.gpulibs DATA_DIR=.gpudata)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-gpu}
LIBS_DIR=${LIBS_DIR:-$ROOT/.gpulibs}
DATA_DIR=${DATA_DIR:-$ROOT/.gpudata}
CUDA_ARCHS=${CUDA_ARCHS:-90}

cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DNNOPT_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHS" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"

# What the binaries resolve outside the C runtime, CUDA and the build tree.
mkdir -p "$LIBS_DIR"
find "$BUILD_DIR" -type f \( -name '*.so' -o -perm -u+x \) -print0 |
  xargs -0 ldd 2>/dev/null |
  awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  grep -v -E "/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so|cuda|cudnn|cublas|nvrtc|$BUILD_DIR" |
  while read -r lib; do cp -L "$lib" "$LIBS_DIR/"; done
echo "libraries in $LIBS_DIR: $(ls "$LIBS_DIR" | tr '\n' ' ')"

for dir in "${NNOPT_DATA:-/nonexistent}/mnist" "$ROOT/../shared/data/mnist" "$ROOT/data/mnist"; do
  if [[ -d $dir ]]; then
    mkdir -p "$DATA_DIR"
    cp -r "$dir" "$DATA_DIR/"
    echo "MNIST copied to $DATA_DIR/mnist"
    break
  fi
done
