#!/usr/bin/env bash
# The device checks on CUDA (docs/gpu.md): llama-cpp-python 0.3.36 built with CUDA, pyintro
# built against it, tests/test_device.py with every layer on the GPU and with partial offload,
# and bench/device_sweep.py (the sweep's points on the GPU, part-offloaded and on the CPU, with
# and without the fast head).
#
#   tools/gpu_check.sh
#   GPU_CHECK_DIR=build/gpu-check     # wheel, venv, logs and summary.md go here
#   GPU_CHECK_CUDA_ARCH=native        # CMAKE_CUDA_ARCHITECTURES: "native" (CMake >= 3.24, GPU visible
#                                     # at build time) or e.g. 90 (H100/H200), 89 (L4/4090), 80 (A100)
#   GPU_CHECK_CMAKE_ARGS=             # more CMake arguments for llama.cpp (e.g. -DLLAVA_BUILD=OFF)
#   DEVICE_CHECK_VENV=venv            # "current": install into $PYTHON's environment, offline
#   DEVICE_CHECK_LLAMA_SRC=           # a llama-cpp-python 0.3.36 sdist or source folder (offline builds)
#   DEVICE_CHECK_LAYERS="-1 15"       # placements of the device tests
#   PYINTRO_TEST_MODEL=               # the model; without it and without the default model installed,
#                                     # random-weight files with SmolLM2-135M's shape (Q4_1) and
#                                     # Llama-3.2-1B's (Q8_0, for the benchmark) are written to
#                                     # $GPU_CHECK_DIR/models (tools/device_models.py);
#   GPU_CHECK_RANDOM_MODELS=0         # 1: those files even where the default model is installed
#   GPU_CHECK_ONLY_BUILD=0            # 1: stop once the wheel is built
#   GPU_CHECK_DRY_RUN=0               # 1: rehearse every step without a GPU (GPU_CHECK_DRY_RUN_CMAKE_ARGS)
#   PYTHON=python3
#
# Exit status: 0 when the build, the install and every device test pass. The benchmark is a
# measurement: summary.md reports it. The CUDA wheel is kept for the next run.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${GPU_CHECK_DIR:-$root/build/gpu-check}
python=${PYTHON:-python3}
tag=gpu_check
arch=${GPU_CHECK_CUDA_ARCH:-native}
cmake_args="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$arch ${GPU_CHECK_CMAKE_ARGS:-}"
cmake_args=${cmake_args% }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# shellcheck source=tools/device_common.sh
. "$root/tools/device_common.sh"

if [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then
    # The script's own rehearsal on a machine without a GPU: every step runs on whatever
    # wheel is built or kept; the device tests then skip and say why.
    gpu="(dry run: no GPU)"; cuda="(none)"; cmake_args=${GPU_CHECK_DRY_RUN_CMAKE_ARGS:-$cmake_args}
    export DEVICE_CHECK_ALLOW_NO_GPU=1
else
    command -v nvidia-smi >/dev/null 2>&1 || die "no nvidia-smi: this script is for a machine with an NVIDIA GPU"
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1) || die "nvidia-smi failed: $gpu"
    if ! command -v nvcc >/dev/null 2>&1; then
        [ -x /usr/local/cuda/bin/nvcc ] || die "no nvcc: install the CUDA toolkit or put its bin/ on PATH"
        export PATH=/usr/local/cuda/bin:$PATH
    fi
    cuda=$(nvcc --version | grep -o 'release [0-9.]*' | head -1)
fi
say "GPU: $gpu; CUDA toolkit $cuda"
machine_line="$gpu; CUDA toolkit $cuda; $(nproc) CPU cores"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

build_wheel
[ "${GPU_CHECK_ONLY_BUILD:-0}" = 1 ] && exit 0
setup_env

if [ -z "${PYINTRO_TEST_MODEL:-}" ] && { [ "${GPU_CHECK_RANDOM_MODELS:-0}" = 1 ] \
        || ! "$vpy" -c 'import pyintro; pyintro.files.resolve_model(None)' 2>/dev/null; }; then
    say "the default model is not installed: writing random-weight files with real shapes"
    models=$(cd "$root" && "$vpy" tools/device_models.py "$dir/models" --shapes smollm2-135m --types q4_1 2> "$dir/models.log") \
        || die "tools/device_models.py failed: $dir/models.log"
    export PYINTRO_TEST_MODEL=$models
    if [ -z "${DEVICE_CHECK_BENCH_MODEL:-}" ]; then
        bench_model=$(cd "$root" && "$vpy" tools/device_models.py "$dir/models" --shapes llama-3.2-1b --types q8_0 2>> "$dir/models.log") \
            && export DEVICE_CHECK_BENCH_MODEL=$bench_model
    fi
    say "models: $PYINTRO_TEST_MODEL ${DEVICE_CHECK_BENCH_MODEL:-}"
fi

run_device_tests
run_bench
write_summary "GPU check (CUDA)"
exit $tests_rc
