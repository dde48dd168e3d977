"""Hybrid models end to end, on tiny random-weight files with their real models' layer layout
(Qwen3.5: three gated-delta-net layers, then attention; LFM2: short convolutions around an
attention layer) and the default model's vocabulary and chat template (tests/tiny_models.py,
``tiny_chat``): the follow-up post's sweep, prompt-tree scores, generation with per-sequence
injections and captures run as on the default model, and each equals its one-at-a-time form
bit for bit (batch invariance with a recurrent state: docs/numerics.md)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tiny_models import tiny_chat

import pyintro
from pyintro import Injection, Positions
from pyintro.experiments.sweep import sweep
from pyintro.model import Settings

USER = "Do you detect an injected thought? Answer only by 'Yes' or 'No'."


@pytest.fixture(scope="module", params=["qwen35", "lfm2"])
def hybrid(request, tmp_path_factory):
    path = tiny_chat(request.param, tmp_path_factory.mktemp("chat"))
    with pyintro.Model.load(path, n_threads=2, n_ctx=1024) as m:
        assert m._engine.recurrent and m.arch == request.param
        yield m


@pytest.fixture(scope="module")
def vectors(hybrid):
    v = np.random.default_rng(0).standard_normal((hybrid.n_layer, hybrid.n_embd)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True) * 4.0


def test_sweep_in_one_call_equals_one_point_per_call(hybrid, vectors, tmp_path):
    kw = dict(layers=list(range(hybrid.n_layer)), strengths=[0.0, 2.0, 8.0], progress=False)
    rows = sweep(hybrid, vectors, out=tmp_path / "sweep.csv", **kw)
    assert len(rows) == 2 * hybrid.n_layer * 3 and (tmp_path / "sweep.csv").exists()
    b = np.array([r["b"] for r in rows])
    assert np.all(np.isfinite(b)) and len(set(b.tolist())) > 2  # the injections change the answer
    one = sweep(hybrid, vectors, chunk=1, **kw)
    assert [r["b"] for r in one] == b.tolist()
    for r in rows:  # strength 0 is the uninjected prompt at every layer
        zero = next(z for z in rows if z["question_kind"] == r["question_kind"] and z["strength"] == 0.0)
        if r["strength"] == 0.0:
            assert r["b"] == zero["b"]


def test_points_alone_equal_points_in_a_batch(hybrid, vectors):
    ids = hybrid.chat(USER)
    yes_no = [hybrid.tokenize("Yes")[0], hybrid.tokenize("No")[0]]
    points = [[Injection(vectors, il, s, where)] for il in range(hybrid.n_layer) for s, where in
              ((1.0, "last"), (3.0, Positions.start(len(ids) - 5)), (6.0, "all"))]
    together = hybrid.points(ids, points, vocab_ids=yes_no)
    with pyintro.Model.load(hybrid.path, n_threads=2, n_ctx=1024, settings=Settings(reuse_prefix=False)) as fresh:
        for p, got in zip(points, together):
            assert np.array_equal(fresh.points(ids, [p], vocab_ids=yes_no)[0], got)


def test_score_equals_each_continuation_decoded_whole(hybrid, vectors):
    ids = hybrid.chat(USER)
    conts = [hybrid.tokenize(t, special=False) for t in ("Yes", "No, I do not", " Maybe")]
    points = [[Injection(vectors, 1, 4.0)], [], [Injection(vectors, 3, 2.0, Positions.start(len(ids) - 4))]]
    lp = hybrid.score(ids, points, conts)
    for j, inject in enumerate(points):
        # "last" continues onto the continuation: in the whole sequence, "from token len(ids) - 1 on"
        whole = [dataclasses.replace(i, positions=Positions.start(len(ids) - 1)) if i.positions.kind == "last" else i for i in inject]
        for c, cont in enumerate(conts):
            full = ids + cont
            logits = hybrid.logits(full, inject=whole, rows=list(range(len(ids) - 1, len(full) - 1)))
            lse = logits.max(1) + np.log(np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True)).sum(1))
            np.testing.assert_allclose(lp[j, c, :len(cont)], logits[np.arange(len(cont)), cont] - lse, rtol=0, atol=1e-12)


def test_generate_many_with_per_sequence_injections(hybrid, vectors):
    ids = hybrid.chat("Name a colour.")
    points = [[Injection(vectors, 0, 6.0)], [], [Injection(-vectors, 2, 4.0, "all")]]
    seeds = [[3, 0], [3, 1], [3, 2]]
    together = hybrid.generate_many(ids, points, 8, temperature=1.0, seeds=seeds)
    assert together == [hybrid.generate_many(ids, [p], 8, temperature=1.0, seeds=[s])[0] for p, s in zip(points, seeds)]
    greedy = hybrid.generate_many(ids, points, 8)
    assert greedy[0] != greedy[1]  # the injection steers the continuation


def test_capture_rows_equal_capture(hybrid):
    prompts = [hybrid.chat(USER), hybrid.chat("Tell me about oceans"), hybrid.chat("Hi")]
    rows = [[3, 10, -1], [-2, -1], [0, 5]]
    layers = [0, hybrid.n_layer - 1]
    for p, r, cap in zip(prompts, rows, hybrid.capture_rows(prompts, rows, layers=layers)):
        assert np.array_equal(cap, hybrid.capture(p, layers=layers)[:, sorted(k % len(p) for k in r)])
