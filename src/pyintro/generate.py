"""Generation: many continuations of one prompt at once, each step one batched decode, with
injections that keep acting on the generated tokens."""

from __future__ import annotations

from typing import Callable

import numpy as np

from pyintro.decode import Decoder, Spec, first_injected


def generate(decoder: Decoder, ids: list[int], point_specs: list[list[Spec]], max_tokens: int,
             samplers: list[Callable[[np.ndarray], int]], is_eog: Callable[[int], bool]) -> list[list[int]]:
    """One continuation of ``ids`` (checked by the caller) per point, point j in sequence j
    with its own injections and its own sampler; the prompt before the first injected token
    is the shared prefix. Stops a sequence at an end-of-generation token (kept) or after
    ``max_tokens``. A sequence's tokens depend only on its own point and sampler: the same
    alone or in any batch (batch invariance)."""
    p, n = len(ids), len(point_specs)
    first = min(first_injected(specs, p - 1) for specs in point_specs)
    out: list[list[int]] = [[] for _ in range(n)]
    with decoder.lock:
        decoder.ensure_prefix(ids[:first])
        try:
            suffix = np.asarray(ids[first:], np.int32)
            logits, _ = decoder.suffix_points(suffix, first, point_specs, np.asarray([len(suffix) - 1]), None)
            active = list(range(n))
            for step in range(max_tokens):
                still = []
                for i, seq in enumerate(active):
                    tok = samplers[seq](logits[i])
                    out[seq].append(tok)
                    if not is_eog(tok):
                        still.append((seq, tok))
                if not still or step == max_tokens - 1:
                    break
                active = [s for s, _ in still]
                logits = decoder.step([t for _, t in still], p + step, active, [point_specs[s] for s in active])
        finally:
            decoder.clear_from(first)
    return out


def sampler(temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> Callable[[np.ndarray], int]:
    """A token from a logits row: greedy at temperature 0, else softmax sampling with optional
    top-k and nucleus (top-p) truncation."""

    def sample(logits: np.ndarray) -> int:
        if temperature <= 0:
            return int(np.argmax(logits))
        z = logits.astype(np.float64) / temperature
        if top_k > 0:
            cut = np.partition(z, -top_k)[-top_k]
            z = np.where(z >= cut, z, -np.inf)
        p = np.exp(z - z.max())
        p /= p.sum()
        if top_p < 1.0:
            order = np.argsort(-p)
            keep = np.cumsum(p[order]) - p[order] < top_p
            mask = np.zeros_like(p, dtype=bool)
            mask[order[keep]] = True
            p = np.where(mask, p, 0.0)
            p /= p.sum()
        return int(rng.choice(len(p), p=p))

    return sample
