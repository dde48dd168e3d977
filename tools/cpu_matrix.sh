#!/usr/bin/env bash
# The test suite on the CPU kinds CI machines have: AVX only, AVX2, and AVX-512 where this
# CPU has it. llama.cpp compiles its kernels for the CPU it is built on, and the last bits of
# every logit follow the kernels, so each kind gets its own llama-cpp-python 0.3.36 build
# (GGML_NATIVE=OFF, features pinned) in its own venv, pyintro built against it, and pytest.
#
#   tools/cpu_matrix.sh [VARIANT ...]        # default: avx avx2, and avx512 if this CPU has it
#   CPU_MATRIX_DIR=build/cpu-matrix          # where wheels, venvs and logs go
#   CPU_MATRIX_PYTEST="-m 'not slow'"        # pytest arguments (default: the README's command)
#
# Prints one line per variant and writes $CPU_MATRIX_DIR/results.md (the tables in
# docs/numerics.md): the test results, then how far a full `pyintro run` grid moves between
# the builds (bench/cross_cpu.py). A build takes ~6-8 min on 2 cores; wheels are kept.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${CPU_MATRIX_DIR:-$root/build/cpu-matrix}
mkdir -p "$dir"
python=${PYTHON:-python3}

flags() {
    local base="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON"
    case "$1" in
        avx)    echo "$base -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF -DGGML_AVX512=OFF" ;;
        avx2)   echo "$base -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF" ;;
        avx512) echo "$base -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON" ;;
        *) echo "unknown variant $1 (avx, avx2, avx512)" >&2; return 1 ;;
    esac
}

variants=("$@")
cross=()
if [ ${#variants[@]} -eq 0 ]; then
    variants=(avx avx2)
    grep -q -w avx512f /proc/cpuinfo && variants+=(avx512)
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
    echo "| build | CMAKE_ARGS | pytest |"
    echo "|---|---|---|"
} > "$dir/results.md.tmp"

for v in "${variants[@]}"; do
    args=$(flags "$v") || exit 2
    wheels="$dir/wheels/$v"
    if ! ls "$wheels"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
        echo "[$v] building llama-cpp-python 0.3.36 ($args)" >&2
        # --no-cache-dir: pip's wheel cache does not key on CMAKE_ARGS
        CMAKE_ARGS="$args" "$python" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
            llama-cpp-python==0.3.36 -w "$wheels" > "$dir/$v.build.log" 2>&1 \
            || { echo "[$v] build failed: $dir/$v.build.log" >&2; continue; }
    fi
    venv="$dir/venv-$v"
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
        "$venv/bin/pip" install -q "$wheels"/llama_cpp_python-0.3.36-*.whl scikit-build-core pybind11 \
            > "$dir/$v.install.log" 2>&1 || { echo "[$v] venv setup failed: $dir/$v.install.log" >&2; continue; }
    fi
    # pyintro against this build (no isolation: the build must see this venv's llama-cpp-python)
    "$venv/bin/pip" install -q --no-build-isolation "$root[test]" >> "$dir/$v.install.log" 2>&1 \
        || { echo "[$v] pyintro install failed: $dir/$v.install.log" >&2; continue; }
    echo "[$v] pytest" >&2
    (cd "$root" && eval "\"$venv/bin/python\" -m pytest -q -p no:cacheprovider ${CPU_MATRIX_PYTEST:-}") \
        > "$dir/$v.pytest.log" 2>&1
    summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$dir/$v.pytest.log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
    echo "[$v] ${summary:-no summary, see $dir/$v.pytest.log}"
    echo "| $v | \`$args\` | ${summary:-see log} |" >> "$dir/results.md.tmp"
    echo "[$v] the pyintro run grid (bench/cross_cpu.py)" >&2
    (cd "$root" && "$venv/bin/python" bench/cross_cpu.py run --out "$dir/$v.cross.json") > "$dir/$v.cross.log" 2>&1 \
        && cross+=("$dir/$v.cross.json")
done
{
    echo "Machine: $cpu, $(nproc) cores; $(date -u +%Y-%m-%d); $(cd "$root" && git rev-parse --short HEAD 2>/dev/null)"
    echo
    cat "$dir/results.md.tmp"
    if [ ${#cross[@]} -gt 1 ]; then
        echo
        "$python" "$root/bench/cross_cpu.py" compare --markdown "${cross[@]}"
    fi
} > "$dir/results.md"
rm -f "$dir/results.md.tmp"
cat "$dir/results.md"
