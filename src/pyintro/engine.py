"""Opening pyintro's native engine on a model file: the decode settings and the knobs that only
benchmarks and tests turn (`Settings`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from pyintro import padding, recurrent
from pyintro._native import _engine
from pyintro.decode import drain_log

__all__ = ["Settings", "open_engine"]


@dataclass(frozen=True)
class Settings:
    """Decode settings that benchmarks and tests change, and experiments never need:
    ``Model.load(..., settings=Settings(reuse_prefix=False))``. The defaults are Model.load's.

    eval_callback:   False builds the context without pyintro's hook: llama.cpp's plain decode,
                     the no-hook limit (injections and captures then fail).
    reuse_prefix:    False shares nothing between points: every point decodes its whole prompt
                     (the naive way, for comparisons). The numbers are the same either way.
    n_batch:         rows per llama.cpp call, padding included (None: 56, or 512 with
                     ``batch_invariant=False``).
    row_unit:        pad every call's rows and outputs to a multiple of this (None: the file's
                     unit, ``pyintro.padding``; 1 with ``batch_invariant=False``).
    flash_attn:      llama.cpp's flash attention (the row-local CPU kernel below 64 rows).
    points_per_call: at most this many points per engine call (None: as many as fit).
    """

    eval_callback: bool = True
    reuse_prefix: bool = True
    n_batch: Optional[int] = None
    row_unit: Optional[int] = None
    flash_attn: bool = True
    points_per_call: Optional[int] = None


def default_threads() -> int:
    """PYINTRO_THREADS, else the cores this process may run on."""
    env = os.environ.get("PYINTRO_THREADS")
    if env:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def open_engine(path: Path, n_gpu_layers: int, n_threads: Optional[int], n_ctx: int, n_seq_max: Optional[int],
                batch_invariant: bool, settings: Settings) -> "_engine.Engine":
    """The engine for a checked GGUF file, with Model.load's arguments (see there)."""
    n_threads = default_threads() if n_threads is None else n_threads
    for name, value, low in (("n_threads", n_threads, 1), ("n_ctx", n_ctx, 64)):
        if int(value) < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    if n_seq_max is not None and not 1 <= int(n_seq_max) <= _engine.MAX_SEQ:
        raise ValueError(f"n_seq_max must be between 1 and {_engine.MAX_SEQ}, got {n_seq_max}")
    params = _engine.EngineParams()
    params.path = str(path)
    params.n_gpu_layers = int(n_gpu_layers)
    params.n_threads = int(n_threads)
    params.n_ctx = int(n_ctx)
    params.eval_callback = bool(settings.eval_callback)
    params.flash_attn = bool(settings.flash_attn)
    if batch_invariant:
        params.row_unit = padding.row_unit(path, params.n_gpu_layers)
    else:
        params.n_batch, params.row_unit = 512, 1
    if settings.n_batch is not None:
        params.n_batch = int(settings.n_batch)
    if settings.row_unit is not None:
        params.row_unit = int(settings.row_unit)
    if n_seq_max is None:
        n_seq_max = recurrent.default_n_seq_max(path, params.row_unit)
    params.n_seq_max = int(n_seq_max)
    _engine.log_install()  # importing llama_cpp installs its own log callback; take it back
    try:
        engine = _engine.Engine(params)
    finally:
        drain_log()
    if params.eval_callback:
        _check_layer_outputs(engine, path)
    return engine


def _check_layer_outputs(engine: "_engine.Engine", path: Path) -> None:
    """Refuse a graph whose layer outputs the hook cannot find (llama.cpp's PLaMo-2 names none),
    before any real decode: one token, layer 0 captured, then the memory cleared."""
    one = np.zeros(1, np.int32)
    try:
        engine.decode(one, one, one, np.ones(1, np.uint8), [], one, one, logits=False)
        engine.memory_clear()
    except BaseException as e:
        engine.close()
        if isinstance(e, RuntimeError) and "no tensor named" in str(e):  # the hook's message (csrc/hook.cpp)
            raise ValueError(f"{path.name}: {e}. Load a model of another architecture "
                             "(docs/models.md lists those tested)") from None
        raise
