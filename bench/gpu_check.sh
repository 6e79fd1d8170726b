#!/usr/bin/env bash
# The cuda backend's checks on a GPU machine, in one command (<= 8 minutes):
#   1. configure and build with NNOPT_CUDA=ON (for sm_90 only by default: fast);
#   2. the device: nvidia-smi, and the backend's own description;
#   3. ctest -R cuda (load test, numerics vs the reference with the default
#      settings and with the own kernels, compiled-mode NVRTC programs vs the
#      reference), then test_ref_ops and test_gradcheck on the cuda backend;
#   4. the benchmark: bench/run.sh --backend cuda (no PyTorch), or nnopt_bench
#      directly when run.sh cannot take a backend; then LeNet-5 with compiled
#      (NVRTC) against precompiled kernels (nnopt_bench --kernels both);
#   5. one LeNet-5 epoch through `nnopt run` on cuda, when MNIST is present.
# Every step has a timeout taken from what is left of the budget; a failed
# step is recorded and the next one still runs.
#
#   bench/gpu_check.sh
#
# Environment: OUT (logs and JSON go there; default build-gpu/gpu_check),
# BUILD_DIR (default build-gpu), CUDA_ARCHS (default 90), BUDGET_S (default 470),
# JOBS (default nproc). Exit status: 0 when every step passed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-gpu}
OUT_DIR=${OUT:-$BUILD_DIR/gpu_check}
CUDA_ARCHS=${CUDA_ARCHS:-90}
BUDGET_S=${BUDGET_S:-470}
JOBS=${JOBS:-$(nproc)}
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
run_step configure 120 cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
  -DNNOPT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHS" || exit 1
# A failure elsewhere in the tree should not hide the cuda results: go on when
# what the checks need was built.
run_step build 240 cmake --build "$BUILD_DIR" -j "$JOBS" ||
  run_step build_cuda_targets 120 cmake --build "$BUILD_DIR" -j "$JOBS" --target \
    nnopt_backend_cuda nnopt_backend_cpu test_cuda_backend test_cuda_nvrtc || exit 1

# ---- 2-3. tests ----
run_step ctest_cuda 150 ctest --test-dir "$BUILD_DIR" -R cuda --output-on-failure -V
run_step ref_ops_cuda 45 "$BUILD_DIR/tests/test_ref_ops" cuda
run_step gradcheck_cuda 60 "$BUILD_DIR/tests/test_gradcheck" cuda

# ---- 4. benchmark ----
if [[ -x $ROOT/bench/run.sh ]] && grep -q -- '--backend' "$ROOT/bench/run.sh"; then
  run_step bench 120 env OUT="$OUT_DIR" BUILD_DIR="$BUILD_DIR" "$ROOT/bench/run.sh" --backend cuda \
    --no-build --no-torch --seconds 2 --repeats 2 --configs "f32:relu f64:relu" --models lenet5
elif [[ -x $BUILD_DIR/bench/nnopt_bench ]]; then
  run_step bench 90 sh -c "'$BUILD_DIR/bench/nnopt_bench' --backend cuda --model lenet5 \
    --seconds 2 --repeats 2 > '$OUT_DIR/bench.json'"
else
  log "bench: no bench/run.sh or nnopt_bench: skipped"
fi

# Compiled mode (NVRTC kernels, docs/backend-cuda.md) against precompiled.
if [[ -x $BUILD_DIR/bench/nnopt_bench ]]; then
  run_step bench_kernels 60 sh -c "'$BUILD_DIR/bench/nnopt_bench' --backend cuda --model lenet5 \
    --seconds 1 --repeats 2 --kernels both --kernel-cache '$OUT_DIR/kernels' \
    > '$OUT_DIR/bench_kernels.json'"
fi

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
