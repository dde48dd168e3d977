"""Writes that never leave a half-written file: write to a temporary file beside the target,
fsync it, then rename it over the target."""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "strict", "write_json", "write_text"]


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (by any means: Python, gguf, llama.cpp).
    When the block ends, the file there is fsynced and renamed over ``path``; if the block
    fails, it is removed. Either way ``path`` is never half-written. The temporary name holds the
    process id, so processes writing one file at once (shards sharing a concept library) never
    write into one temporary file: each renames a whole file, and the last rename wins."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return Path(path)


def strict(data):
    """``data`` with every NaN or infinite float replaced by None, so that it is strict JSON;
    numpy scalars and arrays as Python numbers and lists, tuples as lists."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict(v) for v in data]
    if hasattr(data, "tolist") and type(data).__module__ == "numpy":
        return strict(data.tolist())
    return data


def write_json(path, data) -> Path:
    """``data`` as strict JSON (NaN and infinities written as null)."""
    return write_text(path, json.dumps(strict(data), indent=1, allow_nan=False) + "\n")
