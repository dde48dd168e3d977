"""The few logits a sweep reads, without llama.cpp's full unembedding.

A Yes/No readout needs two rows of the output matrix, but llama.cpp multiplies every output
row by all n_vocab of them, a large share of a small model's work per token (docs/performance.md
has the figures). With the fast head the engine's hook stops the graph at the final norm
(``result_norm``), keeps its rows, and computes the wanted ids' logits from their rows of the output matrix, read from the
file as stored (any ggml type) and multiplied with ggml's own CPU dot product for that type.

What the head reproduces: tied embeddings (``token_embd.weight`` when there is no
``output.weight``), an output bias, final-logit softcapping and the logit scales of the
architectures listed in ``_LOGIT_SCALE``. Anything else an architecture does after its final
norm would give a different number, so a head is used only after it has matched the full path
on a real decode (``FastHead`` checks it once per id list): where it does not, pyintro keeps
the full path. The numbers then never depend on which path ran beyond float rounding
(``MATCH_TOL``).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import numpy as np

log = logging.getLogger("pyintro.llama")

# How the full path scales logits after the unembedding, by architecture (llama.cpp
# src/models/*.cpp): granite divides by ``{arch}.logit_scale``, cohere and grok multiply.
_LOGIT_SCALE = {"granite": "divide", "granitemoe": "divide", "granitehybrid": "divide",
                "command-r": "multiply", "cohere2": "multiply", "cohere2moe": "multiply", "grok": "multiply"}

# The architectures whose graphs end in final-logit softcapping, with llama.cpp's value when the
# file has no ``{arch}.final_logit_softcapping`` (0: none).
_SOFTCAP = {"gemma2": 30.0, "gemma3": 0.0, "gemma4": 30.0, "grok": 0.0}

# Largest |fast - full| accepted, relative to the call's largest |logit| (at least 1). The two
# products differ only in summation order (docs/numerics.md has the measured differences).
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


class FastHead:
    """The fast head of one engine: for each list of gathered ids, whether it matched the full
    path on its first call, and which list the engine holds now (``Engine.set_head``).

    The first time an id list is seen, its call is decoded both ways and the head is kept only if
    it matches (``MATCH_TOL``); after that every call for those ids takes the same path, so a
    point's numbers do not depend on which call it ran in."""

    def __init__(self, engine, post_ops: Optional[dict]):
        self.engine = engine
        self.post_ops = post_ops  # Engine.set_head's scale and softcap; None: never used
        self.matched: dict[bytes, bool] = {}  # gather ids -> whether the head matched the full path
        self._held: Optional[bytes] = None  # the ids the engine's head holds now

    def wanted(self, gather: Optional[np.ndarray], stats: bool) -> bool:
        """Whether a call that gathers ``gather`` (and wants stats or not) may take the head."""
        return gather is not None and not stats and self.post_ops is not None

    def logits(self, gather: np.ndarray, decode: Callable[[bool], np.ndarray],
               undo: Callable[[], None]) -> Optional[np.ndarray]:
        """A call's gathered logits through the head, or None where the head is not used for these
        ids (the caller then decodes the full path). ``decode(fast)`` runs the call, with the head or
        through the full unembedding; ``undo()`` removes what a run added to the memory, so that
        the call can run again."""
        key = gather.tobytes()
        if key not in self.matched:
            return self._first(gather, key, decode, undo)
        if not self.matched[key]:
            return None
        if self._held != key:
            self._load(gather, key)
        return decode(True)

    def _first(self, gather, key, decode, undo) -> Optional[np.ndarray]:
        try:
            self._load(gather, key)
        except ValueError:  # no single-file output matrix, or a type without a CPU dot product
            self.matched[key] = False
            return None
        full = decode(False)  # an error here (a bad strength) decides nothing
        undo()  # the same rows again
        try:
            fast = decode(True)
        except RuntimeError:  # no result_norm in this architecture's graph
            undo()
            decode(False)  # leave the memory as a plain call would
            self.matched[key] = False
            return full
        err = mismatch(fast, full)
        log.debug("fast head for %d ids: relative difference %.3g", len(gather), err)
        self.matched[key] = err <= MATCH_TOL
        return fast if self.matched[key] else full

    def _load(self, gather: np.ndarray, key: bytes) -> None:
        self._held = None
        self.engine.set_head(gather, **self.post_ops)
        self._held = key
