#!/usr/bin/env bash
# Installs what nnopt needs to build and test on Debian 12 (as root, or via sudo).
# --bench also installs PyTorch (python3-torch), the benchmark's peer.
set -euo pipefail

packages=(build-essential cmake pkg-config git xz-utils valgrind
          libinih-dev libcmocka-dev zlib1g-dev libblis-openmp-dev
          libjpeg62-turbo-dev libpng-dev libcjson-dev)
[[ "${1:-}" == "--bench" ]] && packages+=(python3-torch)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    echo "install_deps: all packages present"
    exit 0
fi
as_root=()
[[ $(id -u) -ne 0 ]] && as_root=(sudo)
echo "install_deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}"
