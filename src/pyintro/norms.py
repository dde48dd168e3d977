"""The residual stream's size, and strengths read against it: what "strength 4" means at a layer."""

from __future__ import annotations

import numpy as np

__all__ = ["SCALES", "residual_norms", "strength_factors"]


def residual_norms(model, prompts) -> np.ndarray:
    """Mean L2 norm of the residual stream after each block over the prompts' tokens: [n_layer].

    The first token of each prompt is left out: it is an attention sink whose norm is an
    outlier (about 25000 from layer 11 on in SmolLM2-135M, against a few hundred elsewhere).
    """
    per_token = []
    for ids in prompts:
        cap = model.capture(ids)  # [n_layer, n_tokens, n_embd]
        norms = np.linalg.norm(cap, axis=2)  # [n_layer, n_tokens]
        per_token.append(norms[:, 1:] if norms.shape[1] > 1 else norms)
    return np.concatenate(per_token, axis=1).mean(axis=1)


SCALES = ("raw", "relative")


def strength_factors(model, dirs: np.ndarray, layers, scale: str, prompts):
    """Multipliers turning a strength into an Injection strength, per layer: ([n_layer], ref).

    "raw": 1 everywhere, ref None. "relative": R[layer] / |v[layer]| with R = ``residual_norms``
    over ``prompts`` (returned as ref), so strength s adds a vector of norm s * R[layer].
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be 'raw' or 'relative', got {scale!r}")
    if scale == "raw":
        return np.ones(model.n_layer), None
    v_norm = np.linalg.norm(dirs, axis=1).astype(np.float64)  # [n_layer]
    zero = [L for L in layers if v_norm[L] == 0]
    if zero:
        raise ValueError(f"the vector is zero at layer {zero[0]}; relative scale needs a direction there")
    ref = residual_norms(model, prompts)  # [n_layer]
    return np.where(v_norm > 0, ref / np.where(v_norm > 0, v_norm, 1.0), 0.0), ref
