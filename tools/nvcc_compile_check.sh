#!/usr/bin/env bash
# Compile-only check of the CUDA sources against the headers of a CUDA build of torch, for
# machines without a GPU or a CUDA torch. Usage: tools/nvcc_compile_check.sh [HEADER_DIR]
# HEADER_DIR holds torch/include from a CUDA torch wheel (default: .torch-cuda-headers, git-
# ignored). The plain Linux wheel on the default index is the CUDA build (2.13.0+cu130); a
# local wheel mirror may shadow it with a +cpu one, hence the emptied pip config:
#   PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= pip download --no-deps -d /tmp/tw torch==2.13.0 \
#       --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11
#   unzip -q /tmp/tw/torch-*.whl 'torch/include/*' 'torch/share/cmake/*' -d .torch-cuda-headers
# Torch headers go in with -isystem so that only our own code is held to -Werror.
# Flags follow torch.utils.cpp_extension (torch >= 2.13 headers need C++20). Warnings are
# errors: the sources are meant to compile clean. Extra arguments go to nvcc; SOURCES picks
# some of the .cu files (default: all of csrc/cuda), e.g. SOURCES=csrc/cuda/braking.cu.
set -euo pipefail
cd "$(dirname "$0")/.."
HDR="${1:-.torch-cuda-headers}"
NVCC="${NVCC:-nvcc}"
PY="${PYTHON:-python3}"
[ -d "$HDR/torch/include/ATen" ] || { echo "no torch headers under $HDR/torch/include" >&2; exit 2; }
PYINC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
status=0
for src in ${SOURCES:-csrc/cuda/*.cu}; do
  echo "== $src"
  "$NVCC" -std=c++20 -O3 -c "$src" -o "$OUT/$(basename "$src").o" \
    -DMTA_WITH_CUDA -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H \
    -D_GLIBCXX_USE_CXX11_ABI=1 \
    -I csrc -isystem "$HDR/torch/include" -isystem "$HDR/torch/include/torch/csrc/api/include" \
    -isystem "$PYINC" \
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
    -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
    -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ \
    --expt-relaxed-constexpr -Xcompiler -fPIC \
    -Xcompiler -Wall -Xcompiler -Wextra -Werror all-warnings \
    -Xptxas -v \
    -diag-suppress 20012 \
    "${@:2}" || status=1
done
exit $status
