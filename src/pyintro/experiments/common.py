"""Pieces the paper's experiments share: prompts built from the stimuli, answer texts as
continuations, seeded distractors, layer depth, shards and AUROC."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np


def answer_ids(model, text: str) -> list[int]:
    """Token ids of ``text`` as the start of the assistant's answer: after a chat template's
    generation prompt as written, after a raw transcript's "Assistant:" with a space first."""
    lead = " " if model.prompt_format.kind == "raw" else ""
    return model.tokenize(lead + text, special=False)


def span_start(model, text: str, marker: str, ids: Sequence[int]) -> int:
    """The index of the first token of ``ids`` (the tokens of ``text``) that holds any of
    ``marker``, the first occurrence of it in ``text``: the prompt before it tokenizes the same."""
    at = text.index(marker)
    head = model.prompt_ids(text[:at])
    k = 0
    while k < min(len(ids), len(head)) and ids[k] == head[k]:
        k += 1
    return min(k, len(ids) - 1)


def prompt(model, messages, prefill: str = "") -> tuple[str, list[int]]:
    """(text, ids) of a dialogue ending where the assistant speaks, then ``prefill`` (the start
    of the assistant's answer, written for it)."""
    text = model.render(messages, add_assistant=True)
    if prefill:
        text += (" " if model.prompt_format.kind == "raw" else "") + prefill
    return text, model.prompt_ids(text)


def seed_for(*parts) -> np.random.Generator:
    """A generator seeded by ``parts`` (ints and strings): the same parts, the same stream,
    whatever else runs."""
    ints = [int(p) % 2**64 if isinstance(p, (int, np.integer)) else  # SeedSequence takes non-negative ints
            int.from_bytes(hashlib.sha256(str(p).encode()).digest()[:8], "little") for p in parts]
    return np.random.default_rng(np.random.SeedSequence(ints))


def distractors(target: str, pool: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` words of ``pool`` other than ``target``, drawn with a seed of (seed, target)."""
    others = [w for w in pool if w != target]
    if n > len(others):
        raise ValueError(f"{n} distractors asked for, but the pool has {len(others)} other words")
    pick = seed_for(seed, target).choice(len(others), size=n, replace=False)
    return [others[i] for i in sorted(pick)]


def depth(layer: int, n_layer: int) -> float:
    """A layer as a fraction of the model's depth: 0 the first block's output, 1 the last's."""
    return layer / max(1, n_layer - 1)


def evenly_spaced(n_layer: int, n: int) -> list[int]:
    """``n`` layers spread from the first to the last (the paper sweeps layers this way)."""
    return sorted({int(round(x)) for x in np.linspace(0, n_layer - 1, min(n, n_layer))})


def shard_of(items: list, shard) -> list:
    """Shard k of n (``(k, n)``, 1-based) of a list, round robin; None: all of it."""
    if shard is None:
        return items
    k, n = shard
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: k must be between 1 and n")
    return items[k - 1::n]


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """The probability that a positive scores above a negative (ties count half): the area
    under the ROC curve; NaN when either side is empty."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def lse(x, axis: int = -1) -> np.ndarray:
    """log-sum-exp along ``axis``, ignoring NaN."""
    x = np.asarray(x, float)
    m = np.nanmax(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.nansum(np.exp(x - m), axis=axis))
