"""The engine's invariants, on the default model."""

import dataclasses
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pyintro
from pyintro import Injection, Positions
from pyintro.head import MATCH_TOL, mismatch
from pyintro.model import Settings

from _reference import Reference


@pytest.fixture(scope="module")
def fresh(model):
    """The session model's file with nothing shared between points: every point decodes its
    whole prompt from the start."""
    with pyintro.Model.load(model.path, n_threads=2, n_ctx=model.n_ctx, n_gpu_layers=model.n_gpu_layers,
                            settings=Settings(reuse_prefix=False)) as m:
        yield m


def test_describe(model):
    assert model.arch == "llama"
    assert (model.n_layer, model.n_embd, model.n_vocab) == (30, 576, 49152)
    assert model.quant_type == "Q4_1"
    assert "im_start" in model.chat_template
    assert any(d["type"] == "cpu" for d in model.devices())
    ids = model.tokenize("Hello world", special=False)
    assert model.detokenize(ids) == "Hello world"
    assert model.chat("Hi").count(model.tokenize("<|im_start|>")[0]) == 2  # user + assistant turns


def test_strength_zero_and_empty_mask_are_bit_identical(model, prompt, vec):
    base = model.logits(prompt)
    zero = model.logits(prompt, inject=[Injection(vec, 12, 0.0, positions="all")])
    empty = model.logits(prompt, inject=[Injection(vec, 12, 5.0, positions=Positions.weights(np.zeros(len(prompt))))])
    assert np.array_equal(base, zero)
    assert np.array_equal(base, empty)
    assert not np.array_equal(base, model.logits(prompt, inject=[Injection(vec, 12, 5.0)]))


def test_v_minus_v_is_baseline(model, prompt, vec):
    # Invariant: the zero vector v - v adds exactly nothing (x + s * 0 == x in float32).
    base = model.logits(prompt)
    zero = model.logits(prompt, inject=[Injection(vec - vec, 7, 3.0, "all")])
    assert np.array_equal(zero, base)


@pytest.mark.parametrize("layer", [1, 14, 29])
def test_all_token_injection_equals_llama_cpp_control_vector(model, prompt, vec, layer):
    # Invariant: adding s * v to every row of l_out-L in the eval callback is llama.cpp's own
    # control vector at layer L (ggml_add on the layer output). Exact: the reference decodes
    # with the engine's settings (tests/_reference.py).
    ours = model.logits(prompt, inject=[Injection(vec, layer, 1.0, positions="all")])[0]
    with Reference(model.path) as ref:
        data = np.zeros((model.n_layer - 1, model.n_embd), np.float32)  # the buffer starts at layer 1
        data[layer - 1] = vec
        ref.set_cvec(data, layer, layer)
        theirs = ref.logits(prompt)
        ref.set_cvec(None)
        plain = ref.logits(prompt)
    assert np.array_equal(ours, theirs)
    assert np.array_equal(model.logits(prompt)[0], plain)
    assert not np.array_equal(ours, plain)


def test_last_token_injection_only_touches_the_last_row(model, prompt, vec):
    layer = 10
    last = model.logits(prompt, inject=[Injection(vec, layer, 4.0, "last")])
    every = model.logits(prompt, inject=[Injection(vec, layer, 4.0, "all")])
    assert np.abs(last - every).max() > 1e-2
    plain = model.capture(prompt)
    injected = model.capture(prompt, inject=[Injection(vec, layer, 4.0, "last")])
    assert np.array_equal(plain[:, :-1], injected[:, :-1])  # earlier rows, every layer
    assert not np.array_equal(plain[layer:, -1], injected[layer:, -1])


def test_capture_sees_the_injection(model, prompt, vec):
    layer, row, s = 9, 20, 2.5
    mask = np.zeros(len(prompt))
    mask[row] = 1.0
    mask = Positions.weights(mask)
    plain = model.capture(prompt)
    injected = model.capture(prompt, inject=[Injection(vec, layer, s, mask)])
    assert np.array_equal(plain[:layer], injected[:layer])  # layers below L unchanged
    expected = plain[layer].copy()
    expected[row] += np.float32(s) * vec  # the hook's float32 arithmetic: exact
    assert np.array_equal(injected[layer], expected)
    assert np.array_equal(injected[layer, :row], plain[layer, :row])


def test_every_layer_is_capturable_and_matches_a_subset(model, prompt):
    full = model.capture(prompt)
    assert full.shape == (model.n_layer, len(prompt), model.n_embd)
    assert np.all(np.isfinite(full))
    some = model.capture(prompt, layers=[0, 15, -1])
    assert np.array_equal(some, full[[0, 15, 29]])


def test_capture_many_equals_one_at_a_time(model):
    # Invariant: batch invariance of captures (bit-identical to each prompt alone).
    prompts = [model.chat(f"Tell me about {w}") for w in ("dust", "oceans", "silver", "bread")]
    batched = model.capture_many(prompts)
    for p, got in zip(prompts, batched):
        assert np.array_equal(got, model.capture(p)[:, -1])


def test_shared_prefix_points_equal_separate_full_decodes(model, fresh, prompt, vec):
    # Invariant: a point over the shared prefix equals the whole prompt decoded afresh.
    yes_no = [model.tokenize("Yes")[0], model.tokenize("No")[0]]
    grid = [(layer, s) for layer in (0, 5, 13, 22, 29) for s in (-6.0, 0.0, 3.0, 8.0)]
    # Full rows on both sides: a few gathered ids would take the fast head, which equals the full
    # unembedding only to float rounding on some CPUs (tests/test_fast_head.py).
    batched = model.points(prompt, [[Injection(vec, layer, s)] for layer, s in grid])[:, yes_no]
    assert batched.shape == (len(grid), 2)
    for (layer, s), got in zip(grid, batched):
        full = fresh.logits(prompt, inject=[Injection(vec, layer, s)])[0]
        assert np.array_equal(got, full[yes_no])


def test_injection_from_token_k_onward_over_shared_prefix(model, fresh, prompt, vec):
    k = len(prompt) - 6
    pts = [[Injection(vec, 8, s, positions=Positions.start(k))] for s in (1.0, 4.0)]
    batched = model.points(prompt, pts)
    for p, got in zip(pts, batched):
        assert np.array_equal(got, fresh.logits(prompt, inject=p)[0])


def test_a_point_alone_equals_it_in_any_batch_and_slot(model, prompt):
    # Invariant: batch invariance, the issue's own numbers: random vectors at strengths 1-8,
    # each point alone, in batches of 2, 7 and n_seq_max, and at every slot of a shuffled batch.
    rng = np.random.default_rng(7)
    n = model.n_seq_max
    points = []
    for _ in range(n):
        v = rng.standard_normal(model.n_embd).astype(np.float32)
        v *= 4.0 / np.linalg.norm(v)
        points.append([Injection(v, int(rng.integers(0, model.n_layer)), float(rng.uniform(1, 8)))])
    ids = [model.tokenize(t)[0] for t in ("Yes", "No", " Yes", " No")]
    alone = np.stack([model.points(prompt, [p], vocab_ids=ids)[0] for p in points[:8]])
    for size in (2, 7, n):
        batch = model.points(prompt, points[:size], vocab_ids=ids)
        assert np.array_equal(batch[:min(size, 8)], alone[:min(size, 8)])
    order = rng.permutation(n)
    shuffled = model.points(prompt, [points[i] for i in order], vocab_ids=ids)
    everything = model.points(prompt, points, vocab_ids=ids)
    assert np.array_equal(shuffled, everything[order])
    assert len({tuple(r) for r in everything}) > n // 2  # the points differ from each other


def test_points_chunk_past_n_seq_max(model, prompt, vec):
    pts = [[Injection(vec, layer, 2.0)] for layer in range(11)]
    ids = [model.tokenize("Yes")[0], model.tokenize("No")[0]]
    whole = model.points(prompt, pts, vocab_ids=ids)  # one call of 11
    with pyintro.Model.load(n_threads=2, n_seq_max=4) as small:
        chunked = small.points(prompt, pts, vocab_ids=ids)  # calls of 4, 4 and 3
    assert np.array_equal(chunked, whole)


def test_gather_equals_full_logits(model, prompt, vec):
    # Gathered in C++ from the full unembedding: exactly the full rows' entries. Through the
    # fast head (the default for a few ids): the same to float rounding (tests/test_fast_head.py).
    ids = [5, 100, 49151, 7]
    pts = [[Injection(vec, 3, 2.0)], []]
    full = model.points(prompt, pts)
    with pyintro.Model.load(model.path, n_threads=2, n_ctx=model.n_ctx, fast_head=False) as plain_head:
        np.testing.assert_array_equal(plain_head.points(prompt, pts, vocab_ids=ids), full[:, ids])
    assert mismatch(model.points(prompt, pts, vocab_ids=ids), full[:, ids]) <= MATCH_TOL


def test_generation_greedy_batched_and_seeded(model, vec):
    ids = model.chat("Name a colour.")
    one = model.generate(ids, 8)
    two = model.generate(ids, 8, n=2)
    assert two == [one[0], one[0]]
    assert model.detokenize(one[0]).strip()
    a = model.generate(ids, 8, n=3, temperature=1.0, seed=7)
    b = model.generate(ids, 8, n=3, temperature=1.0, seed=7)
    assert a == b


def test_generation_keeps_injecting(model, vec):
    ids = model.chat("Name a colour.")
    plain = model.generate(ids, 6)[0]
    steered = model.generate(ids, 6, inject=[Injection(vec * 3, 6, 4.0, positions="last")])[0]
    assert steered != plain
    # The first token depends only on the prompt: injecting on generated tokens changes the rest.
    prompt_only = model.generate(ids, 6, inject=[Injection(vec * 3, 6, 4.0, positions=Positions.tokens([len(ids) - 1]))])[0]
    assert prompt_only[0] == steered[0]
    assert prompt_only != steered


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, which only Linux has")
def test_one_libllama_per_process(tmp_path):
    code = """
import sys
order = sys.argv[1]
if order == "llama_cpp_first":
    import llama_cpp
import pyintro
m = pyintro.Model.load(n_threads=1, n_ctx=256)
import llama_cpp
llama_cpp.llama_backend_init()
paths = {line.split()[-1] for line in open('/proc/self/maps') if '/libllama' in line}
print(len(paths))
"""
    for order in ("pyintro_first", "llama_cpp_first"):
        out = subprocess.run([sys.executable, "-c", code, order], capture_output=True, text=True, check=True, cwd=tmp_path)
        assert out.stdout.strip() == "1", out


def test_quiet_by_default(tmp_path):
    code = "import pyintro; m = pyintro.Model.load(n_threads=1, n_ctx=256); m.logits(m.chat('hi')); m.close()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout == "" and out.stderr == ""


def test_llama_log_reaches_logging(caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="pyintro.llama"):
        pyintro.Model.load(n_threads=1, n_ctx=256).close()
    assert any("llama" in r.name and r.getMessage() for r in caplog.records)


def test_gil_is_released_during_decode(model, prompt, vec):
    pts = [[Injection(vec, layer % 30, 1.0)] for layer in range(200)]
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    start = time.perf_counter()
    model.points(prompt, pts, vocab_ids=[1])
    elapsed = time.perf_counter() - start
    done.set()
    t.join()
    # With the GIL held for the whole decode the counter could not advance at all.
    assert len(ticks) > 0.2 * elapsed / 0.002


def test_close_twice_and_use_after_close():
    m = pyintro.Model.load(n_threads=1, n_ctx=256)
    m.close()
    m.close()
    with pytest.raises(RuntimeError, match="closed"):
        m.logits([1, 2, 3])


def test_a_failed_decode_leaves_the_engine_usable(model, prompt, vec):
    # Invariant: a decode that throws half-way (an overflowing injection in the eval callback)
    # leaves no state behind: the next results equal the ones before, and no KV cells leak.
    yes_no = [model.tokenize("Yes")[0], model.tokenize("No")[0]]
    pts = [[Injection(vec, i % model.n_layer, 1.0 + i // model.n_layer)] for i in range(model.n_seq_max)]
    before = model.points(prompt, pts, vocab_ids=yes_no)
    for _ in range(100):
        with pytest.raises(RuntimeError, match="overflowed"):
            model.points(prompt, [[Injection(vec, 5, 1e30, "all")]] * 3, vocab_ids=yes_no)
    assert np.array_equal(model.points(prompt, pts, vocab_ids=yes_no), before)
    assert model.capture(prompt, layers=[3]).shape == (1, len(prompt), model.n_embd)


def test_capture_copies_no_logits(model, prompt):
    # A capture asks llama.cpp for no outputs unless the last layer is captured (where llama.cpp
    # keeps output rows only), and never copies logits out.
    model.capture(prompt, layers=[0, 5])
    # 52 rows and no output fit one call (56 rows); one output would need 8 padded outputs: 2 calls
    assert len(prompt) == 52 and model._engine.last_calls == 1
    cap = model.capture(prompt, layers=[model.n_layer - 1])
    assert cap.shape == (1, len(prompt), model.n_embd) and np.all(np.isfinite(cap))


def test_prompt_tree_scores_equal_each_continuation_decoded_alone(model, fresh, prompt, vec):
    # Invariant: a continuation scored in the prompt tree (its branch's KV shared through
    # seq_cp, only its own tokens decoded) has the log-probabilities of prompt + continuation
    # decoded from scratch: the same logits exactly; the log-sum-exp differs only in the order
    # of a double-precision sum (numpy here, C++ there).
    conts = [model.tokenize(t, special=False) for t in ("Yes, I detect an injected thought", "No", " Maybe so")]
    other = model.chat("Is the sky green? Answer only by 'Yes' or 'No'.")
    k = len(prompt) - 8
    branches = [(prompt, [Injection(vec, 6, 3.0, positions=Positions.start(k))]), (prompt, []), (other, [Injection(vec, 20, 2.0, "last")])]
    lp = model.score([b[0] for b in branches], [b[1] for b in branches], conts)
    assert lp.shape == (3, 3, max(len(c) for c in conts))
    for j, (ids, inject) in enumerate(branches):
        # "last" means the prompt's last token, and continues onto the continuation: in the
        # prompt + continuation decoded whole, that is "from token len(ids) - 1 on"
        inject = [dataclasses.replace(i, positions=Positions.start(len(ids) - 1)) if i.positions == Positions.last()
                  else i for i in inject]
        for c, cont in enumerate(conts):
            full = ids + cont
            logits = fresh.logits(full, inject=inject, rows=list(range(len(ids) - 1, len(full) - 1)))
            lse = logits.max(1) + np.log(np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True)).sum(1))
            ref = logits[np.arange(len(cont)), cont] - lse
            np.testing.assert_allclose(lp[j, c, :len(cont)], ref, rtol=0, atol=1e-12)
            assert np.all(np.isnan(lp[j, c, len(cont):]))
    # one prompt for every point: the same numbers as the per-point form
    same = model.score(prompt, [b[1] for b in branches[:2]], conts)
    assert np.array_equal(same, lp[:2], equal_nan=True)


def test_capture_rows_equals_capture(model, prompt):
    # Invariant: batch invariance of captures at several rows of prompts of different lengths.
    prompts = [prompt, model.chat("Tell me about oceans"), model.chat("Name a colour.")]
    rows = [[3, 10, -1], [-2, -1], [0, 5]]
    got = model.capture_rows(prompts, rows, layers=[0, 12, model.n_layer - 1])
    for p, r, cap in zip(prompts, rows, got):
        full = model.capture(p, layers=[0, 12, model.n_layer - 1])
        assert np.array_equal(cap, full[:, sorted(k % len(p) for k in r)])
    with pytest.raises(ValueError, match="outside a prompt"):
        model.capture_rows([prompt], [[len(prompt)]])
