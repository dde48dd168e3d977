"""generate's sampler without per-token allocation: the same tokens as numpy's Generator.choice
over a fresh softmax (how it sampled before), on one shared work row; and sampled generation
still batch-invariant with per-sequence injections."""

import numpy as np
import pytest

from pyintro import Injection
from pyintro.generate import Sampler, _picker, sampler


def _choice_sampler(temperature, top_k, top_p, rng):
    """The sampler as it was: a fresh float64 softmax per row, then rng.choice."""

    def sample(logits):
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


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 40, 1.0),
                                                     (1.0, 0, 0.9), (1.3, 50, 0.8), (0.0, 0, 1.0)])
def test_sampler_draws_what_choice_drew(temperature, top_k, top_p):
    rows = (np.random.default_rng(1).standard_normal((300, 3000)) * 4).astype(np.float32)
    old = _choice_sampler(temperature, top_k, top_p, np.random.default_rng(5))
    new = sampler(temperature, top_k, top_p, np.random.default_rng(5))
    work = np.empty(3000, np.float64)
    got = [new(r, work if i % 2 else None) for i, r in enumerate(rows)]
    assert got == [old(r) for r in rows]


def test_sampler_refuses_nan_rows():
    row = np.zeros(10, np.float32)
    row[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sampler(1.0, 0, 1.0, np.random.default_rng(0))(row)


def test_picker_greedy_rows_and_plain_callables():
    logits = np.random.default_rng(2).standard_normal((4, 50)).astype(np.float32)
    greedy = [Sampler(0.0, 0, 1.0, np.random.default_rng(j)) for j in range(6)]
    assert _picker(greedy)([1, 2, 4, 5], logits) == [int(t) for t in logits.argmax(axis=1)]
    calls = []
    custom = [lambda row, j=j: calls.append(j) or j for j in range(6)]
    assert _picker(custom)([0, 3], logits[:2]) == [0, 3]
    assert calls == [0, 3]


def test_sampled_per_sequence_generation_is_batch_invariant(model, vec):
    ids = model.chat("Name a colour.")
    pts = [[Injection(vec * 3, 4, 2.0)], [], [Injection(vec, 9, 6.0)]]
    seeds = [[7, 0], [7, 1], [7, 2]]
    together = model.generate_many(ids, pts, 6, temperature=1.0, seeds=seeds)
    alone = [model.generate_many(ids, [p], 6, temperature=1.0, seeds=[s])[0] for p, s in zip(pts, seeds)]
    assert together == alone
