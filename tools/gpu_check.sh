#!/usr/bin/env bash
# The GPU check of docs/gpu.md, on a CUDA machine: llama-cpp-python 0.3.36 built with CUDA in
# its own venv, pyintro built against it, the parity tests with every layer on the GPU, a GPU
# timing and transfer count, and the quick benchmarks.
#
#   tools/gpu_check.sh
#   GPU_CHECK_DIR=build/gpu-check     # wheel, venv, logs and summary.md go here
#   GPU_CHECK_CUDA_ARCH=native        # CMAKE_CUDA_ARCHITECTURES: "native" (CMake >= 3.24, GPU visible
#                                     # at build time) or e.g. 90 (H100/H200), 89 (L4/4090), 80 (A100)
#   GPU_CHECK_CMAKE_ARGS=             # more CMake arguments for llama.cpp
#   GPU_CHECK_BENCH=1                 # 0: skip the benchmarks (they need the bench extras: torch, transformers)
#   GPU_CHECK_FULL=0                  # 1: also the whole suite with PYINTRO_TEST_GPU_LAYERS=-1 (reported only)
#   PYTHON=python3                    # the interpreter the venv is made from (3.9+)
#
# Exit status: 0 when the build, the install and the gate tests pass. The batch-invariance
# tests, the timing and the benchmarks are measurements: summary.md reports them, and their
# failures do not change the exit status. The CUDA wheel is kept for the next run (delete
# $GPU_CHECK_DIR/wheels to rebuild).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${GPU_CHECK_DIR:-$root/build/gpu-check}
python=${PYTHON:-python3}
arch=${GPU_CHECK_CUDA_ARCH:-native}
bench=${GPU_CHECK_BENCH:-1}
full=${GPU_CHECK_FULL:-0}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
summary=$dir/summary.md

# Tests that keep the decode's shape (exact on any backend) and tests that need the GPU's
# kernels to be batch-invariant (docs/gpu.md, "What is exact on a GPU"). Keep in step with
# .github/workflows/ci.yml.
GATE="strength_zero or v_minus_v or capture_sees or only_touches or capturable or capture_copies or force_on_and_off or count_is"
MEASURED="control_vector or alone or capture_many"
TESTS=(tests/test_engine.py tests/test_transfer.py)

say() { echo "gpu_check: $*" >&2; }
die() { say "$*"; exit 1; }
last_line() {  # pytest's summary line of a log
    grep -E '^(=+ )?[0-9]+ (passed|failed|deselected|error)|^(=+ )?no tests ran' "$1" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//'
}

# -- the machine -----------------------------------------------------------------------------
command -v nvidia-smi >/dev/null 2>&1 || die "no nvidia-smi: this script is for a machine with an NVIDIA GPU"
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1) \
    || die "nvidia-smi failed: $gpu"
if ! command -v nvcc >/dev/null 2>&1; then
    [ -x /usr/local/cuda/bin/nvcc ] || die "no nvcc: install the CUDA toolkit or put its bin/ on PATH"
    export PATH=/usr/local/cuda/bin:$PATH
fi
cuda=$(nvcc --version | grep -o 'release [0-9.]*' | head -1)
say "GPU: $gpu; CUDA toolkit $cuda"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

# -- 1. llama-cpp-python 0.3.36 with CUDA ----------------------------------------------------
cmake_args="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$arch ${GPU_CHECK_CMAKE_ARGS:-}"
wheels=$dir/wheels
whl=$(ls "$wheels"/llama_cpp_python-0.3.36-*.whl 2>/dev/null | head -1)
if [ -z "$whl" ]; then
    say "building llama-cpp-python 0.3.36 ($cmake_args): tens of minutes; log: $dir/build.log"
    # --no-cache-dir: pip's wheel cache does not key on CMAKE_ARGS, so a CPU wheel built earlier
    # would be reused; --no-binary: never a prebuilt (CPU) wheel from an index or find-links.
    CMAKE_ARGS="$cmake_args" "$python" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
        llama-cpp-python==0.3.36 -w "$wheels" > "$dir/build.log" 2>&1 \
        || die "the llama-cpp-python build failed: $dir/build.log"
    whl=$(ls "$wheels"/llama_cpp_python-0.3.36-*.whl | head -1)
fi
say "wheel: $whl"

# -- 2. a venv with that build, and pyintro built against it -------------------------------------
venv=$dir/venv
vpy=$venv/bin/python
if [ ! -x "$vpy" ]; then
    "$python" -m venv "$venv" || die "could not create $venv"
fi
{
    "$vpy" -m pip install -q --upgrade pip
    "$vpy" -m pip install -q "$whl"                                 # with its dependencies
    "$vpy" -m pip install -q --force-reinstall --no-deps "$whl"     # this build, even over another 0.3.36
    "$vpy" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.21" ninja
} > "$dir/install.log" 2>&1 || die "venv setup failed: $dir/install.log"
extras=test
[ "$bench" = 1 ] && extras=test,bench
# No build isolation: pyintro must compile against this venv's llama-cpp-python. Its own build
# dir, so the CMake cache of another install (build/ in the repo) is not reused.
(cd "$root" && "$vpy" -m pip install -q --no-build-isolation \
    --config-settings=build-dir="$dir/pyintro-build" ".[$extras]") >> "$dir/install.log" 2>&1 \
    || die "the pyintro install failed: $dir/install.log"
"$vpy" - > "$dir/devices.txt" 2>&1 <<'EOF' || die "this build offers no GPU device: $(cat "$dir/devices.txt")"
import sys
import pyintro
devices = pyintro.Model.devices()
print(devices)
sys.exit(0 if any(d["type"] in ("gpu", "igpu") for d in devices) else 1)
EOF
say "devices: $(cat "$dir/devices.txt")"

# -- 3. parity tests with every layer on the GPU ----------------------------------------------
cd "$root" || exit 1
say "gate tests (PYINTRO_TEST_GPU_LAYERS=-1)"
PYINTRO_TEST_GPU_LAYERS=-1 "$vpy" -m pytest -p no:cacheprovider -rA "${TESTS[@]}" -k "$GATE" > "$dir/gate.log" 2>&1
gate_rc=$?
say "gate: $(last_line "$dir/gate.log")"
say "batch-invariance tests (measured)"
PYINTRO_TEST_GPU_LAYERS=-1 "$vpy" -m pytest -p no:cacheprovider -rA "${TESTS[@]}" -k "$MEASURED" > "$dir/measured.log" 2>&1
say "measured: $(last_line "$dir/measured.log")"
if [ "$full" = 1 ]; then
    say "the whole suite (PYINTRO_TEST_GPU_LAYERS=-1)"
    PYINTRO_TEST_GPU_LAYERS=-1 "$vpy" -m pytest -p no:cacheprovider -q > "$dir/full.log" 2>&1
    say "full: $(last_line "$dir/full.log")"
fi

# -- 4. GPU timing and transfer counts --------------------------------------------------------
# One process per placement; the CPU one keeps llama.cpp's op_offload off the GPU.
timing() {  # $1: n_gpu_layers
    "$vpy" - "$1" <<'EOF'
import json, os, sys, time
import numpy as np
sys.path.insert(0, "tests")
from conftest import PROMPT_SYSTEM, PROMPT_USER
import pyintro
from pyintro import Injection
from pyintro.model import points_per_call

gl = int(sys.argv[1])
m = pyintro.Model.load(n_threads=os.cpu_count() or 1, n_gpu_layers=gl)
ids = m.chat(PROMPT_USER, system=PROMPT_SYSTEM)
rng = np.random.default_rng(0)
v = rng.standard_normal(m.n_embd).astype(np.float32)
v *= 4.0 / np.linalg.norm(v)
n = points_per_call(m, len(ids) - 1, 1)
work = {
    f"{n} points, last-token injection at layer 12": lambda: m.points(ids, [[Injection(v, 12, s)] for s in np.linspace(0.5, 8, n)], vocab_ids=[1]),
    "capture, every layer": lambda: m.capture(ids),
    "all-token injection at two layers": lambda: m.logits(ids, inject=[Injection(v, 5, 2.0, "all"), Injection(v, 20, 3.0, "all")]),
}
out = {"n_gpu_layers": gl, "devices": pyintro.Model.devices()}
for name, fn in work.items():
    fn()  # warm-up
    times = []
    for _ in range(5):
        m._engine.debug.transfers = 0
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    out[name] = {"median_ms": round(1000 * float(np.median(times)), 2), "transfers": m._engine.debug.transfers,
                 "llama_decode_calls": m._engine.last_calls}
m.close()
print(json.dumps(out, indent=2))
EOF
}
say "timing, every layer on the GPU"
timing -1 > "$dir/timing_gpu.json" 2> "$dir/timing_gpu.log" || say "GPU timing failed: $dir/timing_gpu.log"
say "timing, the CPU"
timing 0 > "$dir/timing_cpu.json" 2> "$dir/timing_cpu.log" \
    || say "CPU timing failed: $dir/timing_cpu.log"

# -- 5. the quick benchmarks --------------------------------------------------------------------
# They load their models with the CPU placement (no n_gpu_layers option): CPU numbers on this
# machine, next to transformers. --quick writes bench/results/*_quick.json (git-ignored).
bench_status="skipped (GPU_CHECK_BENCH=0)"
if [ "$bench" = 1 ]; then
    bench_status=""
    for script in sweep_speed generate_speed; do
        [ -f "bench/$script.py" ] || { bench_status+="$script: no such script; "; continue; }
        say "bench/$script.py --quick"
        if "$vpy" "bench/$script.py" --quick > "$dir/$script.log" 2>&1; then
            bench_status+="$script: ok; "
            cp bench/results/"$script"_quick*.json "$dir/" 2>/dev/null || true
        else
            bench_status+="$script: failed (see $script.log); "
        fi
    done
fi

# -- summary -----------------------------------------------------------------------------------
{
    echo "# GPU check"
    echo
    echo "- machine: $gpu; CUDA toolkit $cuda; $(nproc) CPU cores; $(date -u +%Y-%m-%d)"
    echo "- pyintro at $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "- llama-cpp-python 0.3.36, CMAKE_ARGS=\`$cmake_args\`"
    echo "- devices: $(cat "$dir/devices.txt")"
    echo "- gate tests (\`PYINTRO_TEST_GPU_LAYERS=-1 pytest ${TESTS[*]} -k \"$GATE\"\`): $(last_line "$dir/gate.log")"
    echo "- batch-invariance tests (\`-k \"$MEASURED\"\`, measured): $(last_line "$dir/measured.log")"
    [ "$full" = 1 ] && echo "- whole suite with every layer on the GPU: $(last_line "$dir/full.log")"
    echo "- benchmarks: $bench_status"
    echo
    echo "Timing (median of 5) and transfers, every layer on the GPU:"
    echo
    echo '```json'
    cat "$dir/timing_gpu.json" 2>/dev/null
    echo '```'
    echo
    echo "The same on the CPU:"
    echo
    echo '```json'
    cat "$dir/timing_cpu.json" 2>/dev/null
    echo '```'
} > "$summary"
cat "$summary"
exit $gate_rc
