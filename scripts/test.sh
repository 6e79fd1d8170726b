#!/usr/bin/env bash
# Builds and runs the test suite three ways: a normal build; a build under
# AddressSanitizer + UndefinedBehaviorSanitizer; and the fast suites under
# valgrind's memcheck (which also checks for leaks: LeakSanitizer cannot trace
# the BLIS/OpenMP threads in a sandbox, so it is off in the ASan run).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

scripts/build.sh build
(cd build && ctest --output-on-failure -j"$jobs")

# The CUDA plugin is covered by the first build; skipping it here saves an nvcc pass.
scripts/build.sh build-asan -DNNOPT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DNNOPT_CUDA=OFF
(cd build-asan && ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j"$jobs")

# Plugins stay loaded for the life of the process by design: only definite
# leaks count.
memcheck=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
          --suppressions="$PWD/tests/valgrind.supp")
for suite in test_config test_plugin_loader test_dataset test_models "test_ref_ops cpu" "test_gradcheck cpu" \
             "test_bf16 cpu"; do
    echo "valgrind: $suite"
    # shellcheck disable=SC2086
    (cd build/tests && "${memcheck[@]}" ./$suite > /dev/null)
done
echo "valgrind: all clean"
