# Shared steps of tools/vulkan_check.sh and tools/gpu_check.sh (sourced, not run):
# build llama-cpp-python 0.3.36 for a GPU backend into a wheel kept in $dir/wheels, install it
# and pyintro (built against it, no build isolation), run the device-marked tests
# (tests/test_device.py) at each placement, the device sweep benchmark, and write summary.md.
#
# The caller sets: root (the repository), dir (work folder), tag (log prefix), cmake_args,
# python (interpreter), and optionally:
#   DEVICE_CHECK_LAYERS="-1 15"     placements for the tests (PYINTRO_TEST_GPU_LAYERS values)
#   DEVICE_CHECK_VENV=venv          "venv": a fresh venv in $dir/venv (network for its packages);
#                                   "current": install into $python's environment, offline
#                                   (--no-index --no-deps: every dependency must be there already)
#   DEVICE_CHECK_LLAMA_SRC=         an sdist or source folder of llama-cpp-python 0.3.36 (default:
#                                   from the index, llama-cpp-python==0.3.36)
#   DEVICE_CHECK_BUILD_DIR=         llama.cpp's build folder (default $dir/llama-build, kept)
#   DEVICE_CHECK_BENCH_POINTS=240   points of bench/device_sweep.py (0: skip the benchmark)
#   DEVICE_CHECK_BENCH_LAYERS=-1,15,0
#   DEVICE_CHECK_TIMEOUT=1800       seconds for each pytest run and for the benchmark
#   DEVICE_CHECK_PYTEST_ARGS=       more pytest arguments
#   PYINTRO_TEST_MODEL=             the model file of the tests and the benchmark (default model otherwise)
#   DEVICE_CHECK_BENCH_MODEL=       another model file for the benchmark

say() { echo "[$(date -u +%H:%M:%S)] $tag: $*" >&2; }
die() { say "$*"; exit 1; }
last_line() {  # pytest's summary line of a log
    grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|deselected|error)|^(=+ )?no tests ran' "$1" 2>/dev/null \
        | tail -1 | sed 's/=//g; s/^ *//; s/ *$//'
}

# Sets $whl: the backend's wheel, built once per CMAKE_ARGS. --no-cache-dir: pip's wheel cache
# does not key on CMAKE_ARGS, so a CPU wheel cached earlier would be reused (and this build
# would poison the cache for CPU installs); $dir/wheels is this build's own cache.
build_wheel() {
    local wheels=$dir/wheels src=${DEVICE_CHECK_LLAMA_SRC:-llama-cpp-python==0.3.36}
    mkdir -p "$wheels"
    whl=$(ls "$wheels"/llama_cpp_python-0.3.36-*.whl 2>/dev/null | head -1)
    if [ -n "$whl" ] && [ "$(cat "$wheels/CMAKE_ARGS" 2>/dev/null)" = "$cmake_args" ]; then
        say "wheel (kept): $whl"
        return 0
    fi
    rm -f "$wheels"/*.whl
    local extra=(--no-binary llama-cpp-python)
    [ "${DEVICE_CHECK_VENV:-venv}" = current ] && extra=(--no-build-isolation --no-index)
    say "building llama-cpp-python 0.3.36 (CMAKE_ARGS=$cmake_args, ${CMAKE_BUILD_PARALLEL_LEVEL:-?} jobs); log: $dir/build.log"
    local t0=$SECONDS
    # A fixed build folder: an interrupted build resumes where it stopped.
    extra+=(--config-settings=build-dir="${DEVICE_CHECK_BUILD_DIR:-$dir/llama-build}")
    CMAKE_ARGS="$cmake_args" "$python" -m pip wheel --no-deps --no-cache-dir "${extra[@]}" "$src" -w "$wheels" \
        > "$dir/build.log" 2>&1 || die "the llama-cpp-python build failed: $dir/build.log: $(grep -m3 -iE 'error|fail' "$dir/build.log")"
    echo "$cmake_args" > "$wheels/CMAKE_ARGS"
    whl=$(ls "$wheels"/llama_cpp_python-0.3.36-*.whl | head -1)
    build_seconds=$((SECONDS - t0))
    say "built in ${build_seconds} s: $whl"
}

# Sets $vpy: the interpreter with this build and pyintro installed.
setup_env() {
    local mode=${DEVICE_CHECK_VENV:-venv}
    if [ "$mode" = current ]; then
        vpy=$python
        {
            "$vpy" -m pip install --no-index --no-deps --force-reinstall "$whl"
            (cd "$root" && "$vpy" -m pip install --no-index --no-deps --no-build-isolation \
                --config-settings=build-dir="$dir/pyintro-build" .)
        } > "$dir/install.log" 2>&1 || die "install failed: $dir/install.log"
    else
        local venv=$dir/venv
        vpy=$venv/bin/python
        [ -x "$vpy" ] || "$python" -m venv "$venv" || die "could not create $venv"
        {
            "$vpy" -m pip install -q --upgrade pip
            "$vpy" -m pip install -q "$whl"                              # with its dependencies
            "$vpy" -m pip install -q --force-reinstall --no-deps "$whl"  # this build, even over another 0.3.36
            "$vpy" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.21" ninja \
                "pytest>=7.4" "hypothesis>=6.80" "pandas>=1.5"
            # No build isolation: pyintro compiles against this venv's llama-cpp-python; its own
            # build dir, so the CMake cache of another install is not reused.
            (cd "$root" && "$vpy" -m pip install -q --no-build-isolation \
                --config-settings=build-dir="$dir/pyintro-build" .)
        } > "$dir/install.log" 2>&1 || die "install failed: $dir/install.log"
    fi
    "$vpy" -c 'import pyintro, json; print(json.dumps(pyintro.Model.devices()))' > "$dir/devices.json" 2> "$dir/devices.log" \
        || die "pyintro does not import: $dir/devices.log"
    say "devices: $(cat "$dir/devices.json")"
    [ "${DEVICE_CHECK_ALLOW_NO_GPU:-0}" = 1 ] && return 0
    "$vpy" - "$dir/devices.json" <<'EOF' || die "this build offers no GPU device (see devices.json)"
import json, sys
sys.exit(0 if any(d["type"] in ("gpu", "igpu") for d in json.load(open(sys.argv[1]))) else 1)
EOF
}

# Runs tests/test_device.py at each placement; sets $tests_rc (0: all passed).
run_device_tests() {
    tests_rc=0
    local g log
    for g in ${DEVICE_CHECK_LAYERS:--1 15}; do
        log=$dir/test_device_$g.log
        rm -f "$dir/report_$g.jsonl"
        say "device tests, PYINTRO_TEST_GPU_LAYERS=$g"
        (cd "$root" && PYINTRO_TEST_GPU_LAYERS=$g PYINTRO_DEVICE_REPORT=$dir/report_$g.jsonl \
            timeout "${DEVICE_CHECK_TIMEOUT:-1800}" "$vpy" -m pytest -m device -p no:cacheprovider -rA \
            ${DEVICE_CHECK_PYTEST_ARGS:-} tests/test_device.py > "$log" 2>&1) || tests_rc=1
        say "  $(last_line "$log")"
        grep -E '^FAILED|^ERROR' "$log" | head -20 >&2
    done
}

run_bench() {
    local n=${DEVICE_CHECK_BENCH_POINTS:-240}
    bench_line="skipped"
    [ "$n" -gt 0 ] || return 0
    say "bench/device_sweep.py ($n points, n_gpu_layers ${DEVICE_CHECK_BENCH_LAYERS:--1,15,0})"
    local model=() m=${DEVICE_CHECK_BENCH_MODEL:-${PYINTRO_TEST_MODEL:-}}
    [ -n "$m" ] && model=(--model "$m")
    if (cd "$root" && timeout "${DEVICE_CHECK_TIMEOUT:-1800}" "$vpy" bench/device_sweep.py "${model[@]}" \
            --points "$n" --gpu-layers="${DEVICE_CHECK_BENCH_LAYERS:--1,15,0}" --out "$dir/device_sweep.json" \
            > "$dir/device_sweep.md" 2> "$dir/device_sweep.log"); then
        bench_line="ok"
    else
        bench_line="failed (device_sweep.log)"
    fi
    say "  bench: $bench_line"
}

write_summary() {  # $1: a title line
    {
        echo "# $1"
        echo
        echo "- machine: $machine_line; $(date -u +%Y-%m-%d)"
        echo "- pyintro at ${PYINTRO_COMMIT:-$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo "(no git)")}"
        echo "- llama-cpp-python 0.3.36, CMAKE_ARGS=\`$cmake_args\`${build_seconds:+, built in ${build_seconds} s}"
        echo "- devices: $(cat "$dir/devices.json" 2>/dev/null)"
        echo "- model: ${PYINTRO_TEST_MODEL:-the default model}"
        for g in ${DEVICE_CHECK_LAYERS:--1 15}; do
            echo "- \`PYINTRO_TEST_GPU_LAYERS=$g pytest -m device tests/test_device.py\`: $(last_line "$dir/test_device_$g.log")"
        done
        echo
        (cd "$root" && "$vpy" tools/device_report.py "$dir"/report_*.jsonl 2>&1)
        echo
        echo "bench/device_sweep.py (${DEVICE_CHECK_BENCH_MODEL:-${PYINTRO_TEST_MODEL:-the default model}}): $bench_line"
        echo
        cat "$dir/device_sweep.md" 2>/dev/null
    } > "$dir/summary.md"
    cat "$dir/summary.md"
}
