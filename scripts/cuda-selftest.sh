#!/usr/bin/env bash
# The CUDA kernels against the CPU implementation, with nothing but CMake, a C++ compiler and nvcc
# (no Node, no npm install, no model): builds native/cuda/selftest into build/cuda-selftest and runs
# selfrag_cuda_selftest, which prints one line. On a machine without a CUDA device it says so and
# runs the host replay of the device code instead (exit 0); a mismatch exits 1, a build or CUDA
# error 2.
#   scripts/cuda-selftest.sh                      the architectures the addon ships (sm_75..sm_90 + PTX)
#   SELFRAG_CUDA_ARCHITECTURES=native scripts/cuda-selftest.sh   only this machine's GPU (faster build)
#   SELFRAG_SELFTEST_BUILD=/tmp/st scripts/cuda-selftest.sh      another build directory
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${SELFRAG_SELFTEST_BUILD:-$root/build/cuda-selftest}"
log="$build.log"
mkdir -p "$(dirname "$build")"

if ! command -v cmake >/dev/null; then
  echo "cuda-selftest: cmake not found (install CMake 3.18 or newer)"
  exit 2
fi
nvcc="${CUDACXX:-$(command -v nvcc || true)}"
if [ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ]; then nvcc=/usr/local/cuda/bin/nvcc; fi
if [ -z "$nvcc" ]; then
  echo "cuda-selftest: nvcc not found (put the CUDA toolkit's bin/ on PATH or set CUDACXX)"
  exit 2
fi

started=$(date +%s)
configure=(-S "$root/native/cuda/selftest" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc")
if [ -n "${SELFRAG_CUDA_ARCHITECTURES:-}" ]; then configure+=(-DSELFRAG_CUDA_ARCHITECTURES="$SELFRAG_CUDA_ARCHITECTURES"); fi
jobs=$(nproc 2>/dev/null || echo 2)
if ! { cmake "${configure[@]}" && cmake --build "$build" --target selfrag_cuda_selftest -j "$jobs"; } >"$log" 2>&1; then
  echo "cuda-selftest: the build failed ($(grep -m1 -E 'error|Error' "$log" || tail -n1 "$log")); full log: $log"
  exit 2
fi
exec "$build/selfrag_cuda_selftest" --build-seconds "$(( $(date +%s) - started ))" "$@"
