#!/usr/bin/env bash
# Build, on a machine with PyPI and nvcc but no GPU (like the CI machine), the
# llama.cpp peer for the lent H100: a CUDA llama-bench for sm_90 (SASS only,
# no PTX, fatbin compressed for size) and the
# converter that turns the embedded default checkpoint into a GGUF there (the
# 1.5 GB GGUF is too big to carry; the GPU machine has no network). Writes
# .cache/llama (git-ignored): llama-bench.xz, convert_hf_to_gguf.py,
# conversion/, gguf-py/. Carry it with the device call; scripts/gpu_suite.sh then adds
# llama.cpp to its benchmarks.
#
# The source is the llama.cpp that llama-cpp-python $VERSION vendors (an sdist
# on PyPI; the llama.cpp repository is too big to fetch here), which knows the
# qwen35 architecture. The toolkit here has nvcc but neither cuBLAS nor the
# driver library: cuBLAS comes from NVIDIA's wheel (its headers and libraries
# for the link; at run time the GPU machine's own, from torch's nvidia
# packages), and libcuda is a link-time stand-in with the driver's soname, so
# the real driver library is the one loaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:-0.3.36}
ROOT=$PWD
WORK=${WORK:-/tmp/megadelta-llama-build}
DEST=$ROOT/.cache/llama
mkdir -p "$WORK" "$DEST"
cd "$WORK"

[ -d "llama_cpp_python-$VERSION" ] || {
    python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION"
    tar xzf "llama_cpp_python-$VERSION.tar.gz"
}
SRC=$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp

# A CUDA toolkit tree: the local one, with cuBLAS added and a stand-in libcuda.
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
[ -d cublas ] || {
    python3 -m pip download -q --no-deps "nvidia-cublas>=13,<14" -d cublas-wheel
    mkdir cublas && (cd cublas && python3 -m zipfile -e ../cublas-wheel/nvidia_cublas-*.whl .)
}
rm -rf toolkit && mkdir -p toolkit/include toolkit/lib64/stubs toolkit/targets/x86_64-linux
for entry in "$CUDA_HOME"/*; do
    case $(basename "$entry") in include|lib64|targets) ;; *) ln -s "$entry" toolkit/;; esac
done
ln -s "$CUDA_HOME"/include/* "$WORK"/cublas/nvidia/cu13/include/* toolkit/include/
ln -s "$CUDA_HOME"/lib64/* "$WORK"/cublas/nvidia/cu13/lib/* toolkit/lib64/
ln -s libcublas.so.13 toolkit/lib64/libcublas.so
ln -s libcublasLt.so.13 toolkit/lib64/libcublasLt.so
ln -s "$WORK/toolkit/include" toolkit/targets/x86_64-linux/include
ln -s "$WORK/toolkit/lib64" toolkit/targets/x86_64-linux/lib
# libcuda's stand-in: first empty (CMake only looks for the file), then with
# the driver functions ggml-cuda calls (the link needs their names).
stand_in() {
    for name in "$@"; do echo "void $name(void) {}"; done > stand_in.c
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o toolkit/lib64/stubs/libcuda.so stand_in.c
}
stand_in

rm -rf "$SRC/build"
cmake -S "$SRC" -B "$SRC/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90-real -DCMAKE_CUDA_FLAGS=--compress-mode=size -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DCUDAToolkit_ROOT="$WORK/toolkit" -DCMAKE_CUDA_COMPILER="$WORK/toolkit/bin/nvcc" >/dev/null
ninja -C "$SRC/build" ggml-cuda
stand_in $(nm -u "$SRC/build/ggml/src/ggml-cuda/libggml-cuda.a" | awk '{print $NF}' | grep -E '^cu[A-Z]' | sort -u)
ninja -C "$SRC/build" llama-bench

rm -rf "$DEST"/* && mkdir -p "$DEST"
# xz: a carry holds 64 MB, and the bench wheels take about half of it.
strip -o "$WORK/llama-bench" "$SRC/build/bin/llama-bench"
xz -T0 -6 -c "$WORK/llama-bench" > "$DEST/llama-bench.xz"
cp -r "$SRC/convert_hf_to_gguf.py" "$SRC/conversion" "$SRC/gguf-py" "$DEST/"
find "$DEST" -name __pycache__ -prune -exec rm -rf {} +
echo "llama.cpp as vendored by llama-cpp-python $VERSION"
du -sh "$DEST"
