#!/usr/bin/env bash
# Builds and runs the test suite twice: a normal build, then one under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build
(cd build && ctest --output-on-failure -j"$(nproc)")
scripts/build.sh build-asan -DNNOPT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
# detect_leaks: plugins stay loaded for the life of the process by design.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j"$(nproc)")
