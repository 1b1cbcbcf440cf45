#!/usr/bin/env bash
# Compile check of the `cuda` feature on a machine without a GPU, or the CUDA
# tests on one with a GPU.
#
# Without nvidia-smi: fetches a CUDA 13.4 toolkit from PyPI wheels once (into
# $VOXLINE_CUDA_TOOLKIT, default ~/.cache/voxline/cuda13.4), then runs
# `cargo check --features cuda --lib --bins --tests` (build scripts compile candle's
# kernels to PTX with nvcc; linking needs the driver's libcuda, which only a
# GPU machine has). With nvidia-smi: `cargo test --release --features cuda`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=13.4.92
dir="${VOXLINE_CUDA_TOOLKIT:-$HOME/.cache/voxline/cuda$version}"
if [ ! -x "$dir/nvidia/cu13/bin/nvcc" ]; then
    echo "cuda-check: fetching the CUDA $version toolkit wheels from PyPI into $dir" >&2
    mkdir -p "$dir/wheels"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$dir/wheels" \
        "nvidia-cuda-nvcc==$version" "nvidia-nvvm==$version" "nvidia-cuda-crt==$version" \
        "nvidia-cuda-runtime==$version" "nvidia-cuda-cccl>=13,<14"
    for w in "$dir"/wheels/*.whl; do
        python3 -m zipfile -e "$w" "$dir"
    done
    chmod +x "$dir"/nvidia/cu13/bin/* "$dir"/nvidia/cu13/nvvm/bin/* 2>/dev/null || true
fi
export CUDA_HOME="$dir/nvidia/cu13" PATH="$dir/nvidia/cu13/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" CUDARC_CUDA_VERSION=13040 CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
nvcc --version | tail -n 2 >&2

if command -v nvidia-smi >/dev/null 2>&1; then
    echo "cuda-check: GPU found; running the tests with the cuda feature" >&2
    exec cargo test --release --features cuda
fi
echo "cuda-check: no GPU here; compile check only (cargo check --features cuda)" >&2
exec nice -n 19 cargo check --features cuda --lib --bins --tests
