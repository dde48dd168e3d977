#!/usr/bin/env bash
# valgrind memcheck of tools/valgrind_smoke.py against the installed pyintro.
#
#   tools/valgrind.sh                   # builds (once) a valgrind-friendly libggml-cpu
#   LLAMA_CPP_SRC=/path/to/llama.cpp tools/valgrind.sh
#
# llama-cpp-python builds libggml-cpu with -march=native; on a CPU with AVX-512 it runs
# EVEX instructions that valgrind (3.19..3.22) cannot decode, and dies with SIGILL in
# ggml_cpu_init. So we build libggml-cpu from the same llama.cpp source with AVX2 and no
# AVX-512, and put it in front with LD_PRELOAD (same soname); LD_LIBRARY_PATH makes its
# libggml-base the very file pyintro loads, so there is still one ggml in the process.
# Source: $LLAMA_CPP_SRC, else the llama.cpp inside the llama-cpp-python sdist of the
# installed version (pip download). Built once into $PYINTRO_VG_CACHE
# (default ~/.cache/pyintro/valgrind-ggml-cpu-<version>).
#
# Exit status: valgrind's --error-exitcode (99) on unsuppressed errors, else the script's.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python}"
py_exe="$("$python" -c 'import sys; print(sys.executable)')"  # not a pyenv shim script
version="$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
lib_dir="$("$python" -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("llama_cpp").origin).parent / "lib")')"
cache="${PYINTRO_VG_CACHE:-$HOME/.cache/pyintro/valgrind-ggml-cpu-$version}"

if [ ! -e "$cache/build/bin/libggml-cpu.so.0" ]; then
    src="${LLAMA_CPP_SRC:-}"
    if [ -z "$src" ]; then
        mkdir -p "$cache/sdist"
        "$python" -m pip download --no-binary :all: --no-deps --no-build-isolation -d "$cache/sdist" \
            "llama-cpp-python==$version" >/dev/null
        tar -xzf "$cache"/sdist/llama_cpp_python-*.tar.gz -C "$cache/sdist"
        src="$(echo "$cache"/sdist/llama_cpp_python-*/vendor/llama.cpp)"
    fi
    mkdir -p "$cache"
    echo "== building libggml-cpu (AVX2, no AVX-512) from $src into $cache/build"
    cmake -S "$src" -B "$cache/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_CURL=OFF \
        -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
        -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_OPENMP=ON >"$cache/cmake.log" 2>&1
    cmake --build "$cache/build" --target ggml-cpu >>"$cache/cmake.log" 2>&1
fi

log="${PYINTRO_VG_LOG:-${TMPDIR:-/tmp}/pyintro-valgrind-$$.log}"
echo "== valgrind memcheck of tools/valgrind_smoke.py (log: $log)"
# From a folder outside the repository: `import pyintro` must find the installed package.
cd "${TMPDIR:-/tmp}"
set +e
LD_PRELOAD="$cache/build/bin/libggml-cpu.so.0" \
LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
PYTHONMALLOC=malloc \
valgrind --tool=memcheck --error-exitcode=99 --num-callers=40 \
    --suppressions="$repo/tools/valgrind.supp" \
    --leak-check=no --show-error-list=yes ${VALGRIND_ARGS:-} \
    "$py_exe" "$repo/tools/valgrind_smoke.py" >"$log" 2>&1
status=$?
set -e
grep -E "valgrind smoke:|ERROR SUMMARY" "$log" || true
# Errors whose stack passes through pyintro's own extension, suppressed or not.
ours=$(grep -cE "_engine\.cpython|csrc/(engine|bindings)\.cpp" "$log" || true)
echo "== valgrind exit status $status; stack lines in pyintro's _engine: $ours"
exit "$status"
