"""Generation: many continuations of one prompt at once, each step one batched decode, with
injections that keep acting on the generated tokens."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from pyintro.decode import Decoder, Spec, first_injected


def generate(decoder: Decoder, ids: list[int], point_specs: list[list[Spec]], max_tokens: int,
             samplers: list[Callable[[np.ndarray], int]], is_eog: Callable[[int], bool]) -> list[list[int]]:
    """One continuation of ``ids`` (checked by the caller) per point, point j in sequence
    ``decoder.first_seq + j`` with its own injections and its own sampler; the prompt before
    the first injected token is the shared prefix. Stops a sequence at an end-of-generation
    token (kept) or after ``max_tokens``. A sequence's tokens depend only on its own point and
    sampler: the same alone or in any batch (batch invariance). With a recurrent memory every
    sequence decodes every step (a finished one its last token again, its logits unread), so
    that each step's sequences keep consecutive ids (``pyintro.decode``)."""
    p, n = len(ids), len(point_specs)
    first = min(first_injected(specs, p - 1) for specs in point_specs)
    out: list[list[int]] = [[] for _ in range(n)]
    eog: dict[int, bool] = {}  # is_eog per token seen (one engine call per distinct token)
    pick = _picker(samplers)
    with decoder.lock:
        decoder.ensure_prefix(ids[:first])
        try:
            suffix = np.asarray(ids[first:], np.int32)
            logits, _ = decoder.suffix_points(suffix, first, point_specs, np.asarray([len(suffix) - 1]), None)
            active = list(range(n))
            for step in range(max_tokens):
                toks = pick(active, logits)  # logits: [len(active), n_vocab]
                still_seq, still_tok = [], []
                for seq, tok in zip(active, toks):
                    out[seq].append(tok)
                    stop = eog.get(tok)
                    if stop is None:
                        stop = eog[tok] = bool(is_eog(tok))
                    if not stop:
                        still_seq.append(seq)
                        still_tok.append(tok)
                if not still_seq or step == max_tokens - 1:
                    break
                active = still_seq
                if decoder.recurrent:
                    every = list(range(n))
                    logits = decoder.step([out[s][-1] for s in every], p + step, [decoder.first_seq + s for s in every],
                                          point_specs)[active]
                else:
                    logits = decoder.step(still_tok, p + step, active, [point_specs[s] for s in active])
        finally:
            decoder.clear_from(first)
    return out


def _picker(samplers: list) -> Callable[[list[int], np.ndarray], list[int]]:
    """A function (active sequences, logits [len(active), n_vocab]) -> their tokens. pyintro's own
    samplers share one float64 work row (no allocation per token), and an all-greedy batch takes
    one argmax over the rows; any other callable is called on its row."""
    if samplers and all(isinstance(s, Sampler) for s in samplers):
        if all(s.temperature <= 0 for s in samplers):
            return lambda active, logits: [int(t) for t in np.argmax(logits, axis=1)]
        work: list[Optional[np.ndarray]] = [None]

        def pick(active, logits):
            if work[0] is None or work[0].size != logits.shape[1]:
                work[0] = np.empty(logits.shape[1], np.float64)
            return [samplers[seq](logits[i], work[0]) for i, seq in enumerate(active)]

        return pick
    return lambda active, logits: [int(samplers[seq](logits[i])) for i, seq in enumerate(active)]


class Sampler:
    """A token from a logits row: greedy at temperature 0, else softmax sampling with optional
    top-k and nucleus (top-p) truncation, one uniform draw from ``rng`` per token (inverse CDF:
    the token ``rng.choice(n_vocab, p=softmax)`` would give, from the same draw).

    ``sampler(row)`` or ``sampler(row, work)``, where ``work`` is a float64 scratch row of
    n_vocab entries that the call overwrites (``generate`` passes one for all sequences, so that
    no token allocates its own probability arrays)."""

    __slots__ = ("temperature", "top_k", "top_p", "rng")

    def __init__(self, temperature: float, top_k: int, top_p: float, rng: np.random.Generator):
        self.temperature, self.top_k, self.top_p, self.rng = float(temperature), int(top_k), float(top_p), rng

    def __call__(self, logits: np.ndarray, work: Optional[np.ndarray] = None) -> int:
        if self.temperature <= 0:
            return int(np.argmax(logits))
        n = logits.shape[-1]
        z = work if work is not None and work.shape == (n,) and work.dtype == np.float64 else np.empty(n, np.float64)
        np.copyto(z, logits)  # float32 -> float64 first: the division is done in float64
        np.divide(z, self.temperature, out=z)
        if self.top_k > 0:
            cut = np.partition(z, -self.top_k)[-self.top_k]
            z[z < cut] = -np.inf
        np.subtract(z, z.max(), out=z)
        np.exp(z, out=z)
        np.divide(z, z.sum(), out=z)  # z: the probabilities
        if self.top_p < 1.0:
            order = np.argsort(-z)
            keep = np.cumsum(z[order]) - z[order] < self.top_p
            mask = np.zeros(n, dtype=bool)
            mask[order[keep]] = True
            z[~mask] = 0.0
            np.divide(z, z.sum(), out=z)
        np.cumsum(z, out=z)  # the CDF, normalised as numpy's Generator.choice does
        if not np.isfinite(z[-1]) or z[-1] <= 0:
            raise ValueError("the logits row holds NaN or infinite values: cannot sample from it")
        np.divide(z, z[-1], out=z)
        return int(z.searchsorted(self.rng.random(), side="right"))


def sampler(temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> Sampler:
    """A token from a logits row: greedy at temperature 0, else softmax sampling with optional
    top-k and nucleus (top-p) truncation (a ``Sampler``)."""
    return Sampler(temperature, top_k, top_p, rng)
