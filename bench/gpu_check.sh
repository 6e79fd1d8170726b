#!/usr/bin/env bash
# The cuda backend's checks on a GPU machine, in one command (<= 8 minutes):
#   1. configure and build with NNOPT_CUDA=ON (for sm_90 only by default: fast),
#      or, with --prebuilt, use the binaries already in BUILD_DIR (built on
#      another machine of the same architecture, for a GPU machine without
#      the build dependencies; NNOPT_GPU_LIBS names folders of the shared
#      libraries they need that the machine lacks);
#   2. the device: nvidia-smi, the libraries the cuda plugin resolves (cuDNN,
#      cuBLAS and NVRTC are looked for in the CUDA toolkit and in Python's
#      nvidia-* wheels when the loader does not find them) and the backend's
#      own description;
#   3. ctest -R cuda (load test, numerics vs the reference with the default
#      settings and with the own kernels, compiled-mode NVRTC programs vs the
#      reference), then the bf16 suites (ctest -R cuda_bf16: every bf16 op vs
#      the reference, the precision technique end to end) as a step of their
#      own, then test_ref_ops and test_gradcheck on the cuda backend, and
#      test_models (training steps on cuda with graphs on and off);
#   4. the benchmark: bench/run.sh --backend cuda --torch-device cuda: LeNet-5
#      (f32 relu), ResNet-56 and MobileNetV1 training and inference
#      images/s against PyTorch on the same GPU (when python3 imports torch
#      with CUDA), both in exact f32 arithmetic, and compiled (NVRTC) against
#      precompiled kernels for LeNet-5 (gelu) and ResNet-56; then ResNet-56 and
#      MobileNetV1 again with both sides' fast settings (TF32 tensor cores,
#      any cuDNN algorithm; PyTorch with cudnn.benchmark only; under
#      OUT/fast); ResNet-56 with graphs = off;
#   5. one LeNet-5 epoch through `nnopt run` on cuda, when MNIST is present.
# Every step has a timeout taken from what is left of the budget; a failed
# step is recorded and the next one still runs.
#
#   bench/gpu_check.sh [--prebuilt]
#
# Environment: OUT (logs and JSON go there; default build-gpu/gpu_check),
# BUILD_DIR (default build-gpu), CUDA_ARCHS (default 90), BUDGET_S (default 470),
# JOBS (default nproc), NNOPT_GPU_LIBS (colon-separated library folders put
# first on LD_LIBRARY_PATH), PYTHON (the interpreter with torch; default
# python3), NNOPT_DATA (where mnist/ is). Exit status: 0 when every step passed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-gpu}
OUT_DIR=${OUT:-$BUILD_DIR/gpu_check}
CUDA_ARCHS=${CUDA_ARCHS:-90}
BUDGET_S=${BUDGET_S:-470}
JOBS=${JOBS:-$(nproc)}
PREBUILT=0
[[ ${1:-} == --prebuilt ]] && PREBUILT=1
mkdir -p "$OUT_DIR"
START=$(date +%s)
SUMMARY="$OUT_DIR/gpu_check.json"
steps_json=""
failures=0

log() { printf '[gpu_check %3ds] %s\n' "$(($(date +%s) - START))" "$*" | tee -a "$OUT_DIR/gpu_check.log" >&2; }

# run_step NAME MAX_SECONDS COMMAND...: runs with a timeout of
# min(MAX_SECONDS, what is left), output to $OUT_DIR/NAME.log.
run_step() {
  local name=$1 max=$2
  shift 2
  local left=$((BUDGET_S - ($(date +%s) - START)))
  local limit=$((max < left ? max : left))
  local rc
  if ((limit < 5)); then
    log "$name: skipped, out of time"
    rc=124
  else
    log "$name: $* (timeout ${limit}s)"
    local t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    rc=$?
    log "$name: exit $rc after $(($(date +%s) - t0))s (log: $OUT_DIR/$name.log)"
    tail -n 5 "$OUT_DIR/$name.log" | sed 's/^/    /' >&2
  fi
  ((rc == 0)) || failures=$((failures + 1))
  steps_json+="${steps_json:+,}{\"step\": \"$name\", \"exit\": $rc}"
  return $rc
}

write_summary() {
  local device
  device=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
    head -n 1 | sed 's/"/\\"/g')
  printf '{"device": "%s", "seconds": %d, "failures": %d, "steps": [%s]}\n' \
    "${device:-none}" "$(($(date +%s) - START))" "$failures" "$steps_json" >"$SUMMARY"
  log "summary: $SUMMARY ($failures failed step(s))"
}
trap write_summary EXIT

# ---- 1. build ----
nvidia-smi >"$OUT_DIR/nvidia-smi.log" 2>&1 || log "nvidia-smi failed (no driver?)"
head -n 12 "$OUT_DIR/nvidia-smi.log" >&2
if ((PREBUILT)); then
  log "prebuilt: using the binaries in $BUILD_DIR"
  [[ -x $BUILD_DIR/cli/nnopt && -f $BUILD_DIR/plugins/nnopt_backend_cuda.so ]] || {
    log "prebuilt: $BUILD_DIR has no cli/nnopt or plugins/nnopt_backend_cuda.so"
    exit 1
  }
else
  run_step configure 120 cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
    -DNNOPT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHS" || exit 1
  # A failure elsewhere in the tree should not hide the cuda results: go on when
  # what the checks need was built.
  run_step build 240 cmake --build "$BUILD_DIR" -j "$JOBS" ||
    run_step build_cuda_targets 120 cmake --build "$BUILD_DIR" -j "$JOBS" --target \
      nnopt_backend_cuda nnopt_backend_cpu test_cuda_backend test_cuda_nvrtc || exit 1
fi

# ---- 2. libraries and the device ----
PYTHON=${PYTHON:-python3}
[[ -n ${NNOPT_GPU_LIBS:-} ]] && export LD_LIBRARY_PATH=$NNOPT_GPU_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cuda_plugin=$BUILD_DIR/plugins/nnopt_backend_cuda.so
# Folders that may hold cuDNN, cuBLAS and NVRTC: the toolkit, and the nvidia-*
# wheels PyTorch brings (nvidia/<name>/lib, or nvidia/cu13/lib).
library_candidates() {
  local cuda_home=${CUDA_HOME:-/usr/local/cuda}
  echo "$cuda_home/lib64" "$cuda_home/lib" "$cuda_home/targets/x86_64-linux/lib"
  "$PYTHON" - 2>/dev/null <<'PYEOF'
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()]
for root in roots:
    for lib in sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib"))):
        print(lib)
PYEOF
}
for round in 1 2; do
  missing=$(ldd "$cuda_plugin" 2>/dev/null | awk '/not found/ {print $1}')
  [[ -z $missing ]] && break
  for soname in $missing; do
    for dir in $(library_candidates); do
      if [[ -e $dir/$soname ]]; then
        log "libraries: $soname from $dir"
        export LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        break
      fi
    done
  done
done
ldd "$cuda_plugin" >"$OUT_DIR/ldd.log" 2>&1
ldd "$BUILD_DIR/cli/nnopt" >>"$OUT_DIR/ldd.log" 2>&1
if grep -q "not found" "$OUT_DIR/ldd.log"; then
  log "libraries still missing:"
  grep "not found" "$OUT_DIR/ldd.log" | sort -u >&2
fi
log "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
export NNOPT_PLUGIN_PATH=$BUILD_DIR/plugins
run_step describe 30 "$BUILD_DIR/cli/nnopt" plugins cuda

# ---- 2-3. tests ----
run_step ctest_cuda 150 ctest --test-dir "$BUILD_DIR" -R cuda -E bf16 --output-on-failure -V
# The stand-in checks the bf16 test against blis: for machines without a GPU.
run_step ctest_cuda_bf16 90 ctest --test-dir "$BUILD_DIR" -R cuda_bf16 -E stand_in \
  --output-on-failure -V
run_step ref_ops_cuda 45 "$BUILD_DIR/tests/test_ref_ops" cuda
run_step gradcheck_cuda 60 "$BUILD_DIR/tests/test_gradcheck" cuda
# Training steps through cuda with graphs on and off, and relu ResNets against
# finite differences (test_model_training_on_cuda; the rest runs on the CPU).
run_step models_cuda 90 "$BUILD_DIR/tests/test_models"

# ---- 4. benchmark ----
torch_args=(--no-torch)
if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  torch_args=(--torch-device cuda)
else
  log "bench: $PYTHON has no torch with CUDA: no PyTorch columns"
fi
# Both sides in exact f32 arithmetic (the backend's defaults; PyTorch without
# TF32, which it allows its convolutions by default).
[[ ${torch_args[0]} == --no-torch ]] || torch_args+=(--torch-tf32 off)
run_step bench 300 env OUT="$OUT_DIR" BUILD_DIR="$BUILD_DIR" PYTHON="$PYTHON" \
  "$ROOT/bench/run.sh" --backend cuda --no-build "${torch_args[@]}" --seconds 2 --repeats 2 \
  --configs "f32:relu" --models lenet5,resnet56,mobilenet --cifar-seconds 3 \
  --cifar-repeats 3 --no-bf16 --int8-calibration 0 --kernels "lenet5:f32:gelu resnet56:f32:relu"
# The table run.sh printed, where the summary shows it.
sed -n '/^nnopt benchmark/,$p' "$OUT_DIR/bench.log" >&2
# Both sides fast: TF32 tensor cores for f32 convolutions and GEMMs (PyTorch's
# default for its convolutions), any cuDNN algorithm, the backend's benchmarked
# choice; the CIFAR models only.
[[ ${torch_args[0]} == --no-torch ]] || torch_args=(--torch-device cuda --torch-tf32 on)
run_step bench_fast 120 env OUT="$OUT_DIR/fast" BUILD_DIR="$BUILD_DIR" PYTHON="$PYTHON" \
  "$ROOT/bench/run.sh" --backend cuda --no-build "${torch_args[@]}" --backend-param tf32=true \
  --backend-param deterministic=false --backend-param conv_algo=find --models resnet56,mobilenet \
  --torch-variants tuned --cifar-seconds 3 --cifar-repeats 3 --no-bf16 --int8-calibration 0 \
  --kernels ""
sed -n '/^nnopt benchmark/,$p' "$OUT_DIR/bench_fast.log" >&2
# ResNet-56 with every op launched on its own (graphs = off): what graph
# replay gains, and figures even if graphs fail.
run_step bench_graphs_off 40 sh -c '"$@" > "'"$OUT_DIR"'/graphs_off_resnet56.json"' sh \
  "$BUILD_DIR/bench/nnopt_bench" --backend cuda --backend-param graphs=off --model resnet \
  --profile-steps 0 --batch 128 --infer-batch 128 --seconds 3 --repeats 3 --warmup-seconds 0 \
  --warmup-steps 1 --min-steps 1 --channels 3 --height 32 --width 32 --classes 10
# ---- 5. one epoch end to end ----
mnist_found=0
for dir in "${NNOPT_DATA:-/nonexistent}/mnist" "$ROOT/../shared/data/mnist" "$ROOT/data/mnist"; do
  [[ -d $dir ]] && mnist_found=1
done
if ((mnist_found)); then
  cd "$ROOT" || exit 1
  run_step lenet5_epoch 60 "$BUILD_DIR/cli/nnopt" run conf/lenet5_mnist.ini \
    --set backend.plugin=cuda --set training.epochs=1 --set experiment.output="$OUT_DIR/runs"
else
  log "lenet5_epoch: no MNIST data found: skipped"
fi

exit $((failures > 0))
