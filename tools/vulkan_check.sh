#!/usr/bin/env bash
# The device checks on Vulkan, here, with no GPU: llama.cpp's Vulkan backend on Mesa's lavapipe
# (a software Vulkan driver that runs on the CPU). One command, from a clean clone:
#
#   bash tools/vulkan_check.sh
#
# 1. Debian/Ubuntu packages: libvulkan-dev, glslc, spirv-headers (the build), mesa-vulkan-drivers
#    (lavapipe), vulkan-tools (vulkaninfo); installed with apt-get when missing and run as root,
#    else the script says which command to run;
# 2. llama-cpp-python 0.3.36 built with CMAKE_ARGS=-DGGML_VULKAN=on into a wheel kept in
#    $VULKAN_CHECK_DIR/wheels (never in pip's own cache, which would hand it to CPU installs);
# 3. a fresh venv (no system site-packages) with that wheel and pyintro built against it;
# 4. tests/test_device.py on a small random-weight llama (tools/device_models.py "mini") with
#    every layer offloaded and with the last 4 of its 8 (partial offload);
# 5. bench/device_sweep.py on a few points (VULKAN_CHECK_BENCH_POINTS, 0 to skip);
# 6. summary.md in $VULKAN_CHECK_DIR (docs/gpu.md's figures).
#
# lavapipe reports a CPU-type device, which llama.cpp skips unless it is named:
# GGML_VK_VISIBLE_DEVICES=0 (set here unless already set). Exit status 0 when the build, the
# install and every device test pass. .ci/run stays the CPU build and is not touched.
#
#   VULKAN_CHECK_DIR=build/vulkan-check   DEVICE_CHECK_LAYERS="-1 15"   PYTHON=python3
#   VULKAN_CHECK_BENCH_POINTS=60          (tools/device_common.sh lists the other knobs)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${VULKAN_CHECK_DIR:-$root/build/vulkan-check}
python=${PYTHON:-python3}
tag=vulkan_check
cmake_args="-DGGML_VULKAN=on ${VULKAN_CHECK_CMAKE_ARGS:-}"
cmake_args=${cmake_args% }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# shellcheck source=tools/device_common.sh
. "$root/tools/device_common.sh"
export DEVICE_CHECK_BENCH_POINTS=${VULKAN_CHECK_BENCH_POINTS:-60}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

# -- 1. packages -----------------------------------------------------------------------------
packages=(libvulkan-dev glslc spirv-headers mesa-vulkan-drivers vulkan-tools)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${missing[*]}, and no apt-get: install Vulkan headers, glslc and a Vulkan driver by hand"
    cmd="apt-get install -y --no-install-recommends ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then
        say "installing ${missing[*]}"
        { apt-get update && DEBIAN_FRONTEND=noninteractive $cmd; } > "$dir/apt.log" 2>&1 || die "apt-get failed: $dir/apt.log"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        { sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive $cmd; } > "$dir/apt.log" 2>&1 || die "apt-get failed: $dir/apt.log"
    else
        die "missing packages; run: sudo apt-get update && sudo $cmd"
    fi
fi
# ggml-vulkan (llama.cpp 0c1e570) needs Vulkan headers that define VK_EXT_layer_settings (Vulkan
# 1.3.2xx; Ubuntu 24.04 and Debian 13 have them). Debian 12's libvulkan-dev (1.3.239) does not:
#   ggml-vulkan.cpp:5214: error: 'LayerSettingEXT' is not a member of 'vk'
# There the headers of Debian 13's libvulkan-dev are unpacked into $dir/vulkan-headers (apt-get
# download with a private package list: nothing on the system changes) and given to CMake.
headers=${VULKAN_CHECK_HEADERS:-/usr/include}
if ! grep -q VK_EXT_layer_settings "$headers/vulkan/vulkan_core.h" 2>/dev/null; then
    headers=$dir/vulkan-headers/usr/include
    if ! grep -q VK_EXT_layer_settings "$headers/vulkan/vulkan_core.h" 2>/dev/null; then
        say "the system's Vulkan headers lack VK_EXT_layer_settings: unpacking Debian 13's libvulkan-dev into $dir/vulkan-headers"
        apt_dir=$dir/apt
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
            > "$apt_dir/sources.list"
        o=(-oDir::Etc::SourceList="$apt_dir/sources.list" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$apt_dir/lists"
           -oDir::Cache="$apt_dir/cache" -oDir::Etc::Preferences=/dev/null -oDir::Etc::PreferencesParts=/dev/null)
        { apt-get "${o[@]}" update && (cd "$apt_dir/debs" && apt-get "${o[@]}" download libvulkan-dev) \
            && dpkg -x "$apt_dir"/debs/libvulkan-dev_*.deb "$dir/vulkan-headers"; } > "$dir/headers.log" 2>&1 \
            || die "could not fetch newer Vulkan headers ($dir/headers.log); set VULKAN_CHECK_HEADERS to a folder holding vulkan/vulkan_core.h with VK_EXT_layer_settings (the Vulkan SDK's include/)"
    fi
fi
[ "$headers" = /usr/include ] || cmake_args="$cmake_args -DVulkan_INCLUDE_DIR=$headers"
export GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
vk_summary() {
    vulkaninfo --summary > "$dir/vulkaninfo.txt" 2>&1 || die "vulkaninfo failed: $dir/vulkaninfo.txt"
    vk_device=$(grep -m1 'deviceName' "$dir/vulkaninfo.txt" | cut -d= -f2- | sed 's/^ *//')
    vk_driver=$(grep -m1 'driverInfo' "$dir/vulkaninfo.txt" | cut -d= -f2- | sed 's/^ *//')
    vk_api=$(grep -m1 'apiVersion' "$dir/vulkaninfo.txt" | cut -d= -f2- | sed 's/^ *//')
    [ -n "$vk_device" ] || die "no Vulkan device (vulkaninfo --summary: $dir/vulkaninfo.txt); install mesa-vulkan-drivers"
}
vk_summary
# lavapipe before Mesa 25 is not enough: with Debian 12's Mesa 22.3.6, llama.cpp's own control
# vector segfaults the Vulkan backend in its first llama_decode (tests/_cvec_child.py), and
# Mesa 25.0.7 runs it. On Debian 12 the Mesa of bookworm-backports is unpacked into $dir/mesa
# (apt-get download with a private package list: nothing on the system changes) and named
# with VK_DRIVER_FILES; elsewhere the script says what to install. VULKAN_CHECK_MESA=system
# keeps an older Mesa (the control-vector test then fails).
mesa_major=$(echo "$vk_driver" | sed -n 's/^Mesa \([0-9]*\)\..*/\1/p')
if [ -n "$mesa_major" ] && [ "$mesa_major" -lt 25 ] && [ "${VULKAN_CHECK_MESA:-}" != system ]; then
    mesa=$dir/mesa/root/usr/lib/x86_64-linux-gnu
    if [ ! -f "$mesa/libvulkan_lvp.so" ]; then
        grep -q 'VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null \
            || die "lavapipe is $vk_driver; Mesa 25 or newer is needed (install a newer mesa-vulkan-drivers, or set VULKAN_CHECK_MESA=system to run on this one)"
        say "lavapipe is $vk_driver: unpacking bookworm-backports' Mesa into $dir/mesa"
        apt_dir=$dir/apt-mesa
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$dir/mesa/root"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main" \
            > "$apt_dir/sources.list"
        o=(-oDir::Etc::SourceList="$apt_dir/sources.list" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$apt_dir/lists"
           -oDir::Cache="$apt_dir/cache" -oDir::Etc::Preferences=/dev/null -oDir::Etc::PreferencesParts=/dev/null)
        { apt-get "${o[@]}" update \
            && (cd "$apt_dir/debs" && apt-get "${o[@]}" download mesa-vulkan-drivers mesa-libgallium libdrm2 \
                libdrm-common libdrm-amdgpu1 libdrm-intel1) \
            && (for d in "$apt_dir"/debs/*.deb; do dpkg -x "$d" "$dir/mesa/root" || exit 1; done); } > "$dir/mesa.log" 2>&1 \
            || die "could not fetch bookworm-backports' Mesa ($dir/mesa.log)"
    fi
    printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.4.305"}}\n' \
        "$mesa/libvulkan_lvp.so" > "$dir/mesa/lvp_icd.json"
    export VK_DRIVER_FILES=$dir/mesa/lvp_icd.json VK_ICD_FILENAMES=$dir/mesa/lvp_icd.json
    export LD_LIBRARY_PATH=$mesa${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    vk_summary
fi
say "Vulkan device 0: $vk_device, $vk_driver, API $vk_api (GGML_VK_VISIBLE_DEVICES=$GGML_VK_VISIBLE_DEVICES)"
machine_line="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; Vulkan: $vk_device, $vk_driver, API $vk_api"

# -- 2-5 ---------------------------------------------------------------------------------------
build_wheel
setup_env
# The model: lavapipe decodes the default model at about 50 s a call on a busy 2-core machine,
# so the tests run on a random-weight llama with its layout at a fraction of its size
# (tools/device_models.py "mini": n_embd 128, 8 layers, Q4_1), offloaded whole and its last 4
# layers. VULKAN_CHECK_MODEL=default: the default model (and the last 15 of its 30 layers).
if [ -z "${PYINTRO_TEST_MODEL:-}" ] && [ "${VULKAN_CHECK_MODEL:-mini}" = mini ]; then
    PYINTRO_TEST_MODEL=$(cd "$root" && "$vpy" tools/device_models.py "$dir/models" --shapes mini --types q4_1 \
        2> "$dir/models.log") || die "tools/device_models.py failed: $dir/models.log"
    export PYINTRO_TEST_MODEL
    export DEVICE_CHECK_LAYERS=${DEVICE_CHECK_LAYERS:--1 4}
    export DEVICE_CHECK_BENCH_LAYERS=${DEVICE_CHECK_BENCH_LAYERS:--1,4,0}
    say "model: $PYINTRO_TEST_MODEL"
fi
run_device_tests
run_bench
write_summary "Vulkan check (lavapipe)"
exit $tests_rc
