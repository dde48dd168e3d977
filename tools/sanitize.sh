#!/usr/bin/env bash
# Build pyintro's extension with AddressSanitizer + UBSan (CMake option PYINTRO_SANITIZE)
# out of tree, then run the test suite against it.
#
#   tools/sanitize.sh                 # pytest -m "not slow" (the default suite)
#   tools/sanitize.sh -m slow -k fuzz # any pytest arguments
#
# The installed pyintro is never touched: the sanitized _engine*.so and a copy of the
# src/pyintro/*.py sources go to a temporary folder that PYTHONPATH puts first, so other
# users of this machine keep the normal build, and nothing needs reinstalling afterwards.
#
# Only _engine (csrc/) is instrumented; llama.cpp comes prebuilt from llama-cpp-python.
# ASan still intercepts malloc/free process-wide. detect_leaks=0: CPython does not free
# everything at exit (interned strings, static types, arenas), so LeakSanitizer would
# report Python itself; leaks of our own are checked by tests/test_leaks.py instead.
# PYTHONMALLOC=malloc sends Python's small objects through ASan's allocator too.
# allocator_may_return_null=1: some tests provoke failed allocations on purpose (e.g. a
# damaged control-vector file under an RLIMIT_DATA guard); a normal build returns NULL and
# numpy raises MemoryError, while ASan by default would abort the whole run.
#
# Exit status: pytest's, or 3 if a sanitizer wrote a report even though pytest passed
# (e.g. from a subprocess). The log, with the reports appended, is kept:
# $PYINTRO_SANITIZE_LOG or $TMPDIR/pyintro-sanitize-<pid>.log. The build folder is
# removed at exit unless PYINTRO_SANITIZE_KEEP is set.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d -t pyintro-sanitize.XXXXXX)"
log="${PYINTRO_SANITIZE_LOG:-${TMPDIR:-/tmp}/pyintro-sanitize-$$.log}"
[ -n "${PYINTRO_SANITIZE_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python}"
# The pytest script, not `python -m pytest`: -m puts the working directory first on
# sys.path; our copy must stay first.
pytest="${PYTEST:-pytest}"

echo "== building the sanitized extension in $work/build"
cmake -S "$repo" -B "$work/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPYINTRO_SANITIZE=ON \
    -DPython_EXECUTABLE="$(command -v "$python")" \
    -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; exit 2; }
cmake --build "$work/build" >>"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; exit 2; }

mkdir -p "$work/site/pyintro"
cp "$repo"/src/pyintro/*.py "$work/site/pyintro/"
cp "$work"/build/_engine*.so "$work/site/pyintro/"

asan="$(gcc -print-file-name=libasan.so)"
if [ ! -e "$asan" ]; then
    echo "libasan.so not found (gcc -print-file-name=libasan.so gave '$asan')" >&2
    exit 2
fi
# python does not link libstdc++; unless it is loaded with the ASan runtime, ASan's
# __cxa_throw interceptor finds no real __cxa_throw and the first C++ exception dies
# with "CHECK failed: asan_interceptors.cpp: real___cxa_throw != 0".
preload="$asan:$(gcc -print-file-name=libstdc++.so)"

# Check that the sanitized copy is the one imported.
where="$(cd "$work" && PYTHONPATH="$work/site" LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0 \
    "$python" -c 'import pyintro._native as n; print(n._engine.__file__)')"
case "$where" in
    "$work/site/"*) echo "== importing $where" ;;
    *) echo "the sanitized build is not the one imported: $where" >&2; exit 2 ;;
esac

echo "== running pytest under ASan+UBSan (log: $log)"
set +e
(
    cd "$repo"
    PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}" \
    LD_PRELOAD="$preload" \
    ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$work/report" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$work/report" \
    PYTHONMALLOC=malloc \
    "$pytest" -p no:cacheprovider -q -m "not slow" "$@"
) 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# Reports go to files (log_path), one per process: pytest captures fd 2 during a test,
# so a report printed there would vanish with a process that the sanitizer stops.
shopt -s nullglob
report_files=("$work"/report.*)
reports=${#report_files[@]}
for f in "${report_files[@]}"; do
    echo "== sanitizer report $f" | tee -a "$log"
    tee -a "$log" <"$f"
done
echo "== pytest exit status $status; sanitizer reports: $reports" | tee -a "$log"
if [ "$status" -eq 0 ] && [ "$reports" -ne 0 ]; then
    status=3
fi
exit "$status"
