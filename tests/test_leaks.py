"""Leaks and growth (#6): resident memory must plateau over many decodes and many models.

Slow (minutes). RSS comes from /proc/self/statm; the allocator keeps freed memory, so we
compare the second half of each run with its middle, after warm-up, not with the start."""

import os

import numpy as np
import pytest

import pyintro
from pyintro import Injection

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm")]

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1 << 20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _plateau(curve: list[int]) -> int:
    """Growth over the second half of a curve, in bytes."""
    return curve[-1] - curve[len(curve) // 2]


def test_10000_decodes_with_injection_and_capture_plateau():
    m = pyintro.Model.load(n_threads=1, n_ctx=256, n_seq_max=8)
    try:
        ids = m.chat("Is there an injected thought?")
        short = ids[:6]
        v = np.random.default_rng(5).standard_normal(m.n_embd).astype(np.float32)
        pts = [[Injection(v, 3, 2.0)], [Injection(v, 17, -1.0)], []]
        decodes, curve = 0, []
        while decodes < 10_000:
            # One decode each: points() reuses the cached clean prefix, capture() decodes
            # the short prompt afresh with an injection into every row.
            m.points(ids, pts, vocab_ids=[1, 2, 3])
            m.capture(short, layers=[2, 20], inject=[Injection(v, 5, 1.5, "all")])
            decodes += 2
            if decodes % 500 == 0:
                curve.append(rss())
        growth = _plateau(curve)
        print(f"RSS over 10000 decodes (MiB, every 500): {[round(c / MB, 1) for c in curve]}; "
              f"second half {growth / MB:+.2f} MiB")
        assert growth <= 4 * MB, [round(c / MB, 1) for c in curve]
    finally:
        m.close()


def test_create_and_free_50_models_plateau():
    ids = None
    curve = []
    for i in range(50):
        m = pyintro.Model.load(n_threads=1, n_ctx=256, n_seq_max=4)
        if ids is None:
            ids = m.chat("Hello")
        m.logits(ids, inject=[Injection(np.ones(m.n_embd, np.float32), 4, 1.0)])
        m.close()
        del m
        curve.append(rss())
    growth = _plateau(curve)
    print(f"RSS after each of 50 models (MiB): {[round(c / MB, 1) for c in curve]}; "
          f"second half {growth / MB:+.2f} MiB")
    assert growth <= 8 * MB, [round(c / MB, 1) for c in curve]
