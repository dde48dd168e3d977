"""Load the native engine so that exactly one libllama lives in the process.

llama-cpp-python's wheel installs two copies of its libraries
(site-packages/lib and site-packages/llama_cpp/lib). The ``llama_cpp``
module opens ``llama_cpp/lib/libllama.so`` by path. We open those very files
first, with RTLD_GLOBAL, so that our extension's NEEDED entries
(``libllama.so.0``, ``libggml*.so.0``) resolve by soname to the copies that are
already loaded, in whichever order the two packages are imported.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from pathlib import Path


def _library_names() -> list[str]:
    if sys.platform == "darwin":
        return ["libggml-base.dylib", "libggml-cpu.dylib", "libggml.dylib", "libllama.dylib"]
    if sys.platform == "win32":
        return ["ggml-base.dll", "ggml-cpu.dll", "ggml.dll", "llama.dll"]
    return ["libggml-base.so", "libggml-cpu.so", "libggml.so", "libllama.so"]


def llama_cpp_lib_dir() -> Path | None:
    """The folder holding the libraries that ``llama_cpp`` loads, without importing it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "lib"


def _preload() -> None:
    lib_dir = llama_cpp_lib_dir()
    if lib_dir is None:
        return
    mode = getattr(os, "RTLD_GLOBAL", 0) | getattr(os, "RTLD_NOW", 0)
    for name in _library_names():
        path = lib_dir / name
        if path.exists():
            ctypes.CDLL(str(path), mode=mode)


_preload()

from pyintro import _engine  # noqa: E402

__all__ = ["_engine", "llama_cpp_lib_dir"]
