#!/usr/bin/env bash
# From a fresh Debian 12 machine to a ready nnopt: packages, build, data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh "$@"
scripts/build.sh build
scripts/fetch_data.sh data
echo "setup: done; try: build/cli/nnopt plugins"
