#!/usr/bin/env bash
# The benchmark, in one command: LeNet-5 {f32,f64} x {relu,gelu}, and
# ResNet-56 and MobileNetV1 (CIFAR variant) in f32 relu on 3x32x32, with nnopt
# and with PyTorch (same threads, shapes and batches), a table of images/s and
# nnopt/PyTorch ratios, the MobileNetV1/ResNet-56 speed ratios, the per-op
# breakdown and per-layer GFLOP/s (next to bare BLIS sgemm) of LeNet-5 f32
# relu, all also written as JSON.
#
#   bench/run.sh [--backend blis] [--threads N] [--seconds S] [--repeats R]
#                [--configs "f32:relu f32:gelu f64:relu f64:gelu"] [--teacher]
#                [--no-build] [--no-torch] [--torch-env "VAR=VALUE ..."]
#                [--blis-arch NAME] [--models lenet5,resnet56,mobilenet]
#                [--cifar-seconds 3] [--cifar-repeats 3] [--cifar-infer-batch 128,500]
#                [--cifar-profile-steps 0] [--kernels "lenet5:f32:gelu resnet56:f32:relu"]
#                [--no-bf16] [--torch-device cpu|cuda] [--torch-tf32 on|off|default]
#                [--backend-param KEY=VALUE ...] [--torch-variants default,tuned]
#                [--int8-calibration 8]
#
# Environment: BUILD_DIR (default: build), PYTHON (an interpreter that imports
# torch; default: /usr/bin/python3, Debian's python3-torch), OUT (when set, the
# JSON goes to $OUT/bench.json instead of bench/results/latest.json, and each
# workload's raw JSON stays in $OUT/raw).
#
# PyTorch runs twice per config: with glibc's default allocator and with
# GLIBC_TUNABLES raising the mmap/trim thresholds (which PyTorch needs at large
# batches); ratios compare nnopt with the faster of the two. PyTorch's dense
# layers and f64 convolutions run on whatever libblas.so.3 the system resolves
# (netlib's reference BLAS, or BLIS once libblis is installed); the table names
# it. --torch-env pins it for both runs, e.g.
#   --torch-env LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blas   (netlib BLAS)
#   --torch-env BLIS_ARCH_TYPE=6                                 (BLIS, zen3 kernels)
# --blis-arch: kernels for the bare sgemm column (default: the ones the blis
# backend reports using, else a cpuid guess).
# --teacher also times the study's teacher run (bench/lenet5_teacher.ini: f64
# gelu, 10 epochs of MNIST with evaluation) through `nnopt run`.
# --models: which models (default all three); --seconds, --repeats and
# --configs apply to lenet5. resnet56 (nnopt's `resnet` plugin, defaults) and
# mobilenet (`mobilenet_v1` with cifar=true) run f32 relu at batch 128, each
# measurement after one warm-up step over --cifar-repeats windows of
# --cifar-seconds / --cifar-repeats (at least one step each), inference at
# --cifar-infer-batch (default 128,500); --cifar-profile-steps N > 0 adds nnopt's
# per-op profile of N steps (a training step and a forward) to the JSON.
# --torch-device cuda: PyTorch runs on the GPU (for a GPU backend such as
# cuda), 'default' then being cuDNN's heuristics and 'tuned'
# torch.backends.cudnn.benchmark = True instead of the allocator settings.
# --torch-tf32 on|off: whether PyTorch's f32 convolutions and matrix products
# may use TF32 tensor cores ('default': PyTorch's defaults, convolutions on);
# pair it with the backend's setting (cuda: --backend-param tf32=...) so that
# both sides do the same arithmetic. --backend-param (repeatable): a setting
# of the backend's [backend] section for every nnopt_bench run.
# --torch-variants: which of PyTorch's two settings run (default both; each
# PyTorch process costs its start-up, long on a GPU machine).
# --kernels: the models (model:dtype:activation, "" for none) also measured with
# kernels compiled for the graph against the backend's precompiled ones, in the
# same nnopt_bench invocation (alternating windows): training and inference
# images/s in both modes and their ratio, plus the compile time (lenet5 with the
# LeNet-5 windows and batches, resnet56 with the CIFAR ones).
# bf16: LeNet-5 (f32 relu) and ResNet-56, when selected, are also run in f32
# and in bf16 on the same backend in alternating windows (nnopt_bench
# --compare-bf16), inference at batch 128: a table of both rates and the
# speed-up measured in that run, also under "bf16_vs_f32" in the JSON;
# --no-bf16 skips it.
# int8: LeNet-5 (f32 relu, max pool) and ResNet-56, when selected, also run
# quantised to int8 (nnopt_bench --int8, calibrated on --int8-calibration
# synthetic batches; 0 skips this) against f32 at batch 128, the two timed in
# alternating windows of the same process; the speed-ups are printed as a
# table and written next to the JSON as *_int8.json.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BUILD_DIR=$(mkdir -p "$BUILD_DIR" && cd "$BUILD_DIR" && pwd)
TUNABLES="glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"

backend=blis
threads=$(nproc)
seconds=2
repeats=3
configs="f32:relu f32:gelu f64:relu f64:gelu"
detail_config="f32:relu"
run_teacher=0
do_build=1
run_torch=1
train_batch=128
infer_batches="128,1000"
torch_env=""
blis_arch=""
models="lenet5,resnet56,mobilenet"
cifar_seconds=3
cifar_repeats=3
cifar_infer_batches="128,500"
cifar_profile_steps=0
kernel_configs="lenet5:f32:gelu resnet56:f32:relu"
run_bf16=1
torch_device=cpu
torch_tf32=default
torch_variants=default,tuned
backend_params=()
int8_calibration=8
command_line="bench/run.sh${*:+ $*}"

usage() { sed -n '9,18p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --backend) backend=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --teacher) run_teacher=1; shift ;;
    --no-build) do_build=0; shift ;;
    --no-torch) run_torch=0; shift ;;
    --torch-env) torch_env=$2; shift 2 ;;
    --blis-arch) blis_arch=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --int8-calibration) int8_calibration=$2; shift 2 ;;
    --cifar-seconds) cifar_seconds=$2; shift 2 ;;
    --cifar-repeats) cifar_repeats=$2; shift 2 ;;
    --cifar-infer-batch) cifar_infer_batches=$2; shift 2 ;;
    --cifar-profile-steps) cifar_profile_steps=$2; shift 2 ;;
    --kernels) kernel_configs=$2; shift 2 ;;
    --no-bf16) run_bf16=0; shift ;;
    --torch-device) torch_device=$2; shift 2 ;;
    --torch-tf32) torch_tf32=$2; shift 2 ;;
    --torch-variants) torch_variants=$2; shift 2 ;;
    --backend-param) backend_params+=(--backend-param "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

log() { echo "run.sh: $*" >&2; }

banner() {
  echo "************************************************************************" >&2
  echo "run.sh: $*" >&2
  echo "************************************************************************" >&2
}

# ---- models: name -> nnopt plugin and parameters, PyTorch builder ----
run_lenet5=0
cifar_models=()
IFS=, read -r -a model_words <<<"$models"
for model in "${model_words[@]}"; do
  case "$model" in
    lenet5) run_lenet5=1 ;;
    resnet56|resnet) [[ " ${cifar_models[*]} " == *" resnet56 "* ]] || cifar_models+=(resnet56) ;;
    mobilenet|mobilenet_v1)
      [[ " ${cifar_models[*]} " == *" mobilenet_v1 "* ]] || cifar_models+=(mobilenet_v1) ;;
    *) echo "run.sh: unknown model '$model' (lenet5, resnet56, mobilenet)" >&2; exit 2 ;;
  esac
done
[[ $run_lenet5 -eq 1 ]] || configs=""
# nnopt_bench --model/--param and torch_lenet5.py --model of each CIFAR model.
declare -A nnopt_model=([resnet56]=resnet [mobilenet_v1]=mobilenet_v1)
declare -A nnopt_model_params=([resnet56]="" [mobilenet_v1]="--param cifar=true")
declare -A torch_model=([resnet56]=resnet56 [mobilenet_v1]=mobilenet_v1_cifar)
cifar_config="f32:relu"

# ---- build ----
if [[ $do_build -eq 1 ]]; then
  if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
    log "configuring $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >&2
  fi
  log "building $BUILD_DIR"
  if ! cmake --build "$BUILD_DIR" -j"$(nproc)" >&2; then
    banner "WARNING: the build failed; benchmarking whatever binaries $BUILD_DIR already has"
  fi
fi
bench_bin=$BUILD_DIR/bench/nnopt_bench
gemm_bin=$BUILD_DIR/bench/blis_gemm_shapes
nnopt_cli=$BUILD_DIR/cli/nnopt
plugin_dir=$BUILD_DIR/plugins
if [[ ! -x $bench_bin ]]; then
  log "no $bench_bin: build the tree first (cmake --build $BUILD_DIR)"
  exit 1
fi
export NNOPT_PLUGIN_PATH=$plugin_dir

# ---- backend ----
backend_note=""
if [[ ! -f $plugin_dir/nnopt_backend_$backend.so ]]; then
  if [[ $backend == blis && -f $plugin_dir/nnopt_backend_cpu.so ]]; then
    backend_note="the blis backend plugin is not built ($plugin_dir/nnopt_backend_blis.so missing); these are the single-threaded reference 'cpu' backend's numbers"
    banner "WARNING: $backend_note"
    backend=cpu
  else
    log "no backend plugin $plugin_dir/nnopt_backend_$backend.so"
    exit 1
  fi
fi

# ---- python with torch ----
python=""
if [[ $run_torch -eq 1 ]]; then
  for candidate in ${PYTHON:+"$PYTHON"} /usr/bin/python3 python3; do
    if "$candidate" -c 'import torch' >/dev/null 2>&1; then
      python=$candidate
      break
    fi
    [[ -n ${PYTHON:-} && $candidate == "$PYTHON" ]] && log "PYTHON=$PYTHON cannot import torch"
  done
  if [[ -z $python ]]; then
    banner "WARNING: no python that imports torch (apt-get install python3-torch, or set PYTHON); PyTorch columns stay empty"
  fi
fi
report_python=${python:-python3}

# ---- output ----
if [[ -n ${OUT:-} ]]; then
  json_out=$OUT/bench.json
else
  json_out=$ROOT/bench/results/latest.json
fi
# Each workload's own JSON: kept under $OUT/raw when OUT is set, so that a run
# cut short (a time limit on a lent machine) keeps what it measured.
if [[ -n ${OUT:-} ]]; then
  raw=$OUT/raw
  rm -rf "$raw"
  mkdir -p "$raw"
else
  raw=$(mktemp -d "${TMPDIR:-/tmp}/nnopt_bench.XXXXXX")
  trap 'rm -rf "$raw"' EXIT
fi

"$report_python" - "$raw/meta.json" "$backend" "$backend_note" "$threads" "$seconds" "$repeats" \
  "$train_batch" "$infer_batches" "$configs" "$TUNABLES" "$python" "$BUILD_DIR" \
  "$command_line" "$torch_env" "$run_lenet5" "${cifar_models[*]}" "$cifar_config" \
  "$cifar_seconds" "$cifar_repeats" "$cifar_infer_batches" "$cifar_profile_steps" \
  "$torch_device" "$torch_tf32" "${backend_params[*]}" <<'EOF'
import json, sys
keys = ["backend", "backend_note", "threads", "seconds", "repeats", "batch", "infer_batches",
        "configs", "tunables", "python", "build_dir", "command", "torch_env", "lenet5",
        "cifar_models", "cifar_config", "cifar_seconds", "cifar_repeats", "cifar_infer_batches",
        "cifar_profile_steps", "torch_device", "torch_tf32", "backend_params"]
meta = dict(zip(keys, sys.argv[2:]))
for key in ("threads", "repeats", "batch", "cifar_repeats", "cifar_profile_steps"):
    meta[key] = int(meta[key])
for key in ("seconds", "cifar_seconds"):
    meta[key] = float(meta[key])
meta["models"] = (["lenet5"] if meta.pop("lenet5") == "1" else []) + meta["cifar_models"].split()
meta["cifar_models"] = meta["cifar_models"].split()
meta["backend_params"] = [w for w in meta["backend_params"].split() if w != "--backend-param"]
meta["cifar_warmup_steps"] = 1
meta["cifar_min_steps"] = 1
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF

# shellcheck disable=SC2206  # "VAR=VALUE VAR=VALUE", split on purpose
torch_env_words=(env $torch_env)
common_args=(--threads "$threads" --batch "$train_batch" --infer-batch "$infer_batches"
             --seconds "$seconds" --repeats "$repeats")

# run_torch default|tuned ARGS...: torch_lenet5.py with PyTorch's default
# settings, or its tuned ones (glibc's allocator thresholds on the CPU,
# cudnn.benchmark on the GPU); JSON on stdout.
run_torch() {
  local variant=$1
  shift
  [[ ",$torch_variants," == *",$variant,"* ]] || { log "PyTorch '$variant': not selected"; return 0; }
  if [[ $torch_device == cpu ]]; then
    if [[ $variant == tuned ]]; then
      "${torch_env_words[@]}" GLIBC_TUNABLES=$TUNABLES "$python" "$ROOT/bench/torch_lenet5.py" "$@"
    else
      "${torch_env_words[@]}" "$python" "$ROOT/bench/torch_lenet5.py" "$@"
    fi
  elif [[ $variant == tuned ]]; then
    "${torch_env_words[@]}" "$python" "$ROOT/bench/torch_lenet5.py" --device "$torch_device" \
      --tf32 "$torch_tf32" --cudnn-benchmark "$@"
  else
    "${torch_env_words[@]}" "$python" "$ROOT/bench/torch_lenet5.py" --device "$torch_device" \
      --tf32 "$torch_tf32" "$@"
  fi
}
torch_tuned_note="GLIBC_TUNABLES=$TUNABLES"
[[ $torch_device == cpu ]] || torch_tuned_note="torch.backends.cudnn.benchmark = True"

# ---- the workloads: nnopt, then PyTorch both ways, config by config ----
for config in $configs; do
  dtype=${config%%:*}
  activation=${config##*:}
  key=${dtype}_${activation}
  log "nnopt $backend lenet5 $dtype $activation"
  if ! "$bench_bin" --backend "$backend" "${backend_params[@]}" --model lenet5 --param activation="$activation" \
    --param dtype="$dtype" --profile-steps 10 "${common_args[@]}" >"$raw/nnopt_$key.json"; then
    banner "WARNING: nnopt_bench failed on lenet5 $dtype $activation; its nnopt cells stay empty"
    rm -f "$raw/nnopt_$key.json"
  fi
  if [[ -n $python ]]; then
    log "PyTorch ($torch_device) lenet5 $dtype $activation, default settings"
    run_torch default --model lenet5 --activation "$activation" --dtype "$dtype" \
      "${common_args[@]}" >"$raw/torch_default_$key.json"
    log "PyTorch ($torch_device) lenet5 $dtype $activation, $torch_tuned_note"
    run_torch tuned --model lenet5 --activation "$activation" --dtype "$dtype" \
      "${common_args[@]}" >"$raw/torch_tuned_$key.json"
  fi
done

# ---- ResNet-56 and MobileNetV1 (CIFAR-10 shapes): f32 relu, short windows ----
cifar_dtype=${cifar_config%%:*}
cifar_activation=${cifar_config##*:}
cifar_args=(--threads "$threads" --batch "$train_batch" --infer-batch "$cifar_infer_batches"
            --seconds "$cifar_seconds" --repeats "$cifar_repeats" --warmup-seconds 0
            --warmup-steps 1 --min-steps 1 --channels 3 --height 32 --width 32 --classes 10)
for model in "${cifar_models[@]}"; do
  key=${model}_${cifar_dtype}_${cifar_activation}
  # A failure here (say, a model plugin not built) leaves that cell empty
  # rather than losing the LeNet-5 results already measured.
  log "nnopt $backend $model $cifar_dtype $cifar_activation (3x32x32)"
  # shellcheck disable=SC2086  # the parameters are words on purpose
  if ! "$bench_bin" --backend "$backend" "${backend_params[@]}" --model "${nnopt_model[$model]}" \
    ${nnopt_model_params[$model]} --param activation="$cifar_activation" \
    --param dtype="$cifar_dtype" --profile-steps "$cifar_profile_steps" "${cifar_args[@]}" \
    >"$raw/nnopt_$key.json"; then
    banner "WARNING: nnopt_bench failed on $model; its nnopt cells stay empty"
    rm -f "$raw/nnopt_$key.json"
  fi
  if [[ -n $python ]]; then
    log "PyTorch ($torch_device) $model $cifar_dtype $cifar_activation, default settings"
    run_torch default --model "${torch_model[$model]}" --activation "$cifar_activation" \
      --dtype "$cifar_dtype" "${cifar_args[@]}" >"$raw/torch_default_$key.json" ||
      banner "WARNING: torch_lenet5.py failed on $model"
    log "PyTorch ($torch_device) $model $cifar_dtype $cifar_activation, $torch_tuned_note"
    run_torch tuned --model "${torch_model[$model]}" --activation "$cifar_activation" \
      --dtype "$cifar_dtype" "${cifar_args[@]}" >"$raw/torch_tuned_$key.json" ||
      banner "WARNING: torch_lenet5.py failed on $model"
  fi
done

# ---- compiled vs precompiled kernels (the kernel_compile technique's modes) ----
for entry in $kernel_configs; do
  IFS=: read -r model dtype activation <<<"$entry"
  key=${model}_${dtype}_${activation}
  case "$model" in
    lenet5) kernel_args=(--model lenet5 "${common_args[@]}") ;;
    resnet56) kernel_args=(--model resnet "${cifar_args[@]}") ;;
    *) banner "WARNING: --kernels: unknown model '$model' (lenet5, resnet56)"; continue ;;
  esac
  log "nnopt $backend $model $dtype $activation: precompiled vs compiled kernels"
  if ! "$bench_bin" --backend "$backend" "${backend_params[@]}" "${kernel_args[@]}" --param activation="$activation" \
    --param dtype="$dtype" --profile-steps 0 --kernels both >"$raw/kernels_$key.json"; then
    banner "WARNING: nnopt_bench --kernels both failed on $model"
    rm -f "$raw/kernels_$key.json"
  fi
done
# ---- int8 against f32 inference, batch 128, same process ----
int8_files=()
if [[ $int8_calibration -gt 0 ]]; then
  int8_models=()
  [[ $run_lenet5 -eq 1 ]] && int8_models+=(lenet5)
  [[ " ${cifar_models[*]} " == *" resnet56 "* ]] && int8_models+=(resnet56)
  for model in "${int8_models[@]}"; do
    if [[ $model == lenet5 ]]; then
      int8_args=(--model lenet5 --param activation=relu --param pool=max --param dtype=f32
                 --seconds "$seconds" --repeats "$repeats")
    else
      int8_args=(--model resnet --channels 3 --height 32 --width 32 --seconds "$cifar_seconds"
                 --repeats "$cifar_repeats" --warmup-seconds 0 --warmup-steps 1 --min-steps 1)
    fi
    log "nnopt $backend $model int8 vs f32 inference, batch 128"
    if "$bench_bin" --backend "$backend" "${backend_params[@]}" --threads "$threads" --batch "$train_batch" \
      --infer-batch 128 --profile-steps 0 --int8 "$int8_calibration" "${int8_args[@]}" \
      >"$raw/int8_$model.json"; then
      int8_files+=("$raw/int8_$model.json")
    else
      banner "WARNING: nnopt_bench --int8 failed on $model"
    fi
  done
fi

# ---- bare BLIS sgemm on the layer GEMM shapes of the detailed config ----
detail_key=${detail_config/:/_}
if [[ $backend == blis && -x $gemm_bin && -f $raw/nnopt_$detail_key.json ]]; then
  mapfile -t shapes < <("$report_python" - "$raw/nnopt_$detail_key.json" <<'EOF'
import json, sys
seen = []
for profile in json.load(open(sys.argv[1]))["profile"].values():
    for node in profile["nodes"]:
        for mnk in node.get("gemm_mnk", {}).values():
            if mnk not in seen:
                seen.append(mnk)
for m, n, k in seen:
    print(m, n, k)
EOF
  )
  if [[ -z $blis_arch ]]; then
    # The kernels the blis backend chose ("BLIS zen3 kernels (...)"), else a guess
    # from cpuid as the backend makes it (BLIS 0.9 itself picks 'generic' on Zen 5).
    blis_arch=$(sed -n 's/.*"backend_description": "BLIS \([a-z0-9]*\) kernels.*/\1/p' \
      "$raw/nnopt_$detail_key.json")
    if [[ -z $blis_arch ]]; then
      cpu_family=$(awk -F: '/^cpu family/ {print $2 + 0; exit}' /proc/cpuinfo)
      if grep -q AuthenticAMD /proc/cpuinfo && [[ ${cpu_family:-0} -ge 25 ]]; then
        blis_arch=zen3
      elif grep -qw avx512bw /proc/cpuinfo; then
        blis_arch=skx
      elif grep -qw avx2 /proc/cpuinfo; then
        blis_arch=haswell
      fi
    fi
  fi
  if [[ ${#shapes[@]} -gt 0 ]]; then
    log "bare BLIS sgemm (${blis_arch:-default} kernels) on ${#shapes[@]} layer GEMM shapes"
    # shellcheck disable=SC2068  # each line is "M N K", split on purpose
    "$gemm_bin" ${blis_arch:+--arch "$blis_arch"} --threads "$threads" --reps 10 ${shapes[@]} \
      >"$raw/gemm.txt"
  fi
elif [[ ! -x $gemm_bin ]]; then
  log "no $gemm_bin (BLIS not found at configure time): no bare sgemm column"
fi

# ---- the teacher run ----
if [[ $run_teacher -eq 1 ]]; then
  teacher_out=$(mktemp -d "${TMPDIR:-/tmp}/nnopt_teacher.XXXXXX")
  log "teacher run: $nnopt_cli run bench/lenet5_teacher.ini (backend $backend), output under $teacher_out"
  start=$(date +%s.%N)
  set +e
  (cd "$ROOT" && "$nnopt_cli" run bench/lenet5_teacher.ini --set backend.plugin="$backend" \
    --set experiment.output="$teacher_out") >"$raw/teacher.log" 2>&1
  teacher_rc=$?
  set -e
  end=$(date +%s.%N)
  tail -n 20 "$raw/teacher.log" >&2
  "$report_python" - "$raw/teacher.json" "$start" "$end" "$teacher_rc" "$backend" \
    "$teacher_out/lenet5_teacher/results.json" <<'EOF'
import json, sys
out, start, end, rc, backend, results = sys.argv[1:7]
entry = {"conf": "bench/lenet5_teacher.ini", "backend": backend,
         "wall_seconds": float(end) - float(start), "exit_code": int(rc),
         "output": results.rsplit("/", 1)[0]}
try:
    entry["results"] = json.load(open(results))
except (OSError, ValueError):
    pass
json.dump(entry, open(out, "w"), indent=2)
EOF
fi

# ---- bf16 against f32 inference, batch 128, in the same process ----
bf16_models=()
if [[ $run_bf16 -eq 1 ]]; then
  [[ $run_lenet5 -eq 1 ]] && bf16_models+=(lenet5)
  [[ " ${cifar_models[*]} " == *" resnet56 "* ]] && bf16_models+=(resnet56)
fi
for model in "${bf16_models[@]}"; do
  if [[ $model == lenet5 ]]; then
    bf16_args=(--model lenet5 --param activation=relu --seconds "$seconds" --repeats "$repeats")
  else
    bf16_args=(--model resnet --channels 3 --height 32 --width 32 --classes 10
               --seconds "$cifar_seconds" --repeats "$cifar_repeats" --warmup-seconds 0
               --warmup-steps 1 --min-steps 1)
  fi
  log "nnopt $backend $model: f32 vs bf16 inference, batch 128"
  if ! "$bench_bin" --backend "$backend" "${backend_params[@]}" --param dtype=f32 --threads "$threads" \
    --infer-batch 128 --compare-bf16 1 --profile-steps 0 "${bf16_args[@]}" \
    >"$raw/bf16_$model.json"; then
    banner "WARNING: the bf16 comparison failed on $model"
    rm -f "$raw/bf16_$model.json"
  fi
done

"$report_python" "$ROOT/bench/report.py" --raw "$raw" --out "$json_out" --configs "$configs" \
  --detail "$detail_config" --cifar-models "${cifar_models[*]}" --cifar-config "$cifar_config"

if [[ ${#bf16_models[@]} -gt 0 ]]; then
  "$report_python" "$ROOT/bench/bf16_table.py" "$raw" "$json_out" "${bf16_models[@]}"
fi
if [[ ${#int8_files[@]} -gt 0 ]]; then
  "$report_python" "$ROOT/bench/int8_report.py" --out "${json_out%.json}_int8.json" "${int8_files[@]}"
fi
