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

from typing import Optional

import numpy as np

# How the full path scales logits after the unembedding, by architecture (llama.cpp
# src/models/*.cpp): granite divides by ``{arch}.logit_scale``, cohere and grok multiply.
_LOGIT_SCALE = {"granite": "divide", "granitemoe": "divide", "granitehybrid": "divide",
                "command-r": "multiply", "cohere2": "multiply", "cohere2moe": "multiply", "grok": "multiply"}

# The architectures whose graphs end in final-logit softcapping, with llama.cpp's value when the
# file has no ``{arch}.final_logit_softcapping`` (0: none).
_SOFTCAP = {"gemma2": 30.0, "gemma3": 0.0, "gemma4": 30.0, "grok": 0.0}

# Largest |fast - full| accepted, relative to the call's largest |logit| (at least 1). The two
# products differ only in summation order: measured up to 2.4e-7 on the tiny architectures and
# 2.9e-7 on the default model's AVX-only build (tests/test_fast_head.py).
MATCH_TOL = 1e-5


def post_ops(arch: str, meta: dict[str, str]) -> Optional[dict]:
    """``Engine.set_head``'s scale and softcap for this architecture, or None where its logit
    scale's meaning is unknown here (the full path is then used)."""
    scale = 1.0
    raw = meta.get(f"{arch}.logit_scale")
    if raw is not None:
        mode = _LOGIT_SCALE.get(arch)
        if mode is None:
            return None
        value = np.float32(raw)
        scale = float(np.float32(1.0) / value) if mode == "divide" else float(value)
    cap = float(meta.get(f"{arch}.final_logit_softcapping", _SOFTCAP[arch])) if arch in _SOFTCAP else 0.0
    return {"scale": scale, "softcap": cap}


def mismatch(fast: np.ndarray, full: np.ndarray) -> float:
    """The largest |fast - full| relative to the largest |logit| (at least 1)."""
    return float(np.max(np.abs(fast - full)) / max(1.0, float(np.max(np.abs(full)))))
