"""The few logits a sweep reads, without llama.cpp's full unembedding.

A Yes/No readout needs two rows of the output matrix, but llama.cpp multiplies every output
row by all n_vocab of them: 21% of SmolLM2-135M's work per token, 63% of Gemma-3-270M's. With
the fast head the engine's hook stops the graph at the final norm (``result_norm``), keeps its
rows, and computes the wanted ids' logits from their rows of the output matrix, read from the
file as stored (any ggml type) and multiplied with ggml's own CPU dot product for that type.

What the head reproduces: tied embeddings (``token_embd.weight`` when there is no
``output.weight``), an output bias, final-logit softcapping and the logit scales of the
architectures listed in ``_LOGIT_SCALE``. Anything else an architecture does after its final
norm would give a different number, so a head is used only after it has matched the full path
on a real decode (``Decoder`` checks it once per id list): where it does not, pyintro keeps
the full path. The numbers then never depend on which path ran beyond float rounding
(``MATCH_TOL``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

log = logging.getLogger("pyintro")

# How the full path scales logits after the unembedding, by architecture (llama.cpp
# src/models/*.cpp): granite divides by ``{arch}.logit_scale``, cohere multiplies.
_LOGIT_SCALE = {"granite": "divide", "granitemoe": "divide", "granitehybrid": "divide",
                "command-r": "multiply", "cohere2": "multiply", "cohere2moe": "multiply", "grok": "multiply"}

# The architectures whose graphs end in final-logit softcapping, with llama.cpp's value when the
# file has no ``{arch}.final_logit_softcapping`` (0: none).
_SOFTCAP = {"gemma2": 30.0, "gemma3": 0.0, "gemma4": 30.0, "grok": 0.0}

# Largest |fast - full| accepted, relative to the row's largest |logit| (at least 1): the two
# products differ only in summation order (measured: docs/performance.md).
MATCH_TOL = 1e-5


class HeadRows:
    """The output matrix of one GGUF file, read lazily (memory-mapped), and its post-ops."""

    def __init__(self, path: Path, arch: str, meta: dict[str, str]):
        self.path = Path(path)
        self.arch = arch
        self.meta = meta
        self._reader = None
        self._matrix = None
        self._bias = None
        self.reason: Optional[str] = None  # why no head can be built, once known

    def _open(self) -> bool:
        if self._reader is not None or self.reason is not None:
            return self.reason is None
        try:
            import gguf

            reader = gguf.GGUFReader(str(self.path), "r")
        except Exception as e:  # a file llama.cpp loads but gguf-py cannot read
            self.reason = f"gguf could not read the file ({e})"
            return False
        tensors = {t.name: t for t in reader.tensors}
        matrix = tensors.get("output.weight", tensors.get("token_embd.weight"))
        if matrix is None or len(matrix.shape) != 2:
            self.reason = "no output matrix"
            return False
        self._reader, self._matrix, self._bias = reader, matrix, tensors.get("output.bias")
        return True

    def _scale(self) -> tuple[float, float]:
        """(multiplier, softcap) applied after the product: (1, 0) for most models."""
        mult = 1.0
        mode = _LOGIT_SCALE.get(self.arch)
        raw = self.meta.get(f"{self.arch}.logit_scale")
        if raw is not None:
            scale = np.float32(raw)
            if mode is None:
                raise LookupError(f"{self.arch}.logit_scale is set and its meaning for this architecture is unknown")
            mult = float(np.float32(1.0) / scale) if mode == "divide" else float(scale)
        cap = 0.0
        if self.arch in _SOFTCAP:
            cap = float(self.meta.get(f"{self.arch}.final_logit_softcapping", _SOFTCAP[self.arch]))
        return mult, cap

    def args(self, ids: np.ndarray) -> Optional[dict]:
        """``Engine.set_head`` arguments for ``ids``, or None where this file cannot have a head."""
        if not self._open():
            return None
        try:
            mult, cap = self._scale()
        except LookupError as e:
            self.reason = str(e)
            return None
        rows = np.ascontiguousarray(self._matrix.data[ids]).view(np.uint8)
        bias = None
        if self._bias is not None:
            bias = np.asarray(self._bias.data, np.float32).reshape(-1)[ids]
        return {"ids": ids, "type": int(self._matrix.tensor_type), "rows": rows.tobytes(),
                "bias": bias, "scale": mult, "softcap": cap}


def mismatch(fast: np.ndarray, full: np.ndarray) -> float:
    """The largest |fast - full| relative to the largest |logit| (at least 1)."""
    return float(np.max(np.abs(fast - full)) / max(1.0, float(np.max(np.abs(full)))))
