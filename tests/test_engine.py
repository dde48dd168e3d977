"""The engine's invariants, on the default model."""

import ctypes
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pyintro
from pyintro import Injection


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
    empty = model.logits(prompt, inject=[Injection(vec, 12, 5.0, positions=np.zeros(len(prompt)))])
    assert np.array_equal(base, zero)
    assert np.array_equal(base, empty)
    assert not np.array_equal(base, model.logits(prompt, inject=[Injection(vec, 12, 5.0)]))


def test_v_minus_v_is_baseline(model, prompt, vec):
    base = model.logits(prompt)
    both = model.logits(prompt, inject=[Injection(vec, 7, 3.0, "all"), Injection(vec, 7, -3.0, "all")])
    np.testing.assert_allclose(both, base, atol=1e-4)


@pytest.mark.parametrize("layer", [1, 14, 29])
def test_all_token_injection_equals_llama_cpp_control_vector(model, prompt, vec, layer):
    import llama_cpp

    ours = model.logits(prompt, inject=[Injection(vec, layer, 1.0, positions="all")])[0]

    mparams = llama_cpp.llama_model_default_params()
    lm = llama_cpp.llama_model_load_from_file(str(model.path).encode(), mparams)
    assert lm
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = 512
    cparams.n_threads = cparams.n_threads_batch = 2
    cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as pyintro's default
    ctx = llama_cpp.llama_init_from_model(lm, cparams)
    try:
        data = np.zeros((model.n_layer - 1, model.n_embd), np.float32)  # the buffer starts at layer 1
        data[layer - 1] = vec
        ptr = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        assert llama_cpp.llama_set_adapter_cvec(ctx, ptr, data.size, model.n_embd, layer, layer) == 0
        tokens = (llama_cpp.llama_token * len(prompt))(*prompt)
        assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(tokens, len(prompt))) == 0
        theirs = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(model.n_vocab,)).copy()
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(lm)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


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
    plain = model.capture(prompt)
    injected = model.capture(prompt, inject=[Injection(vec, layer, s, mask)])
    assert np.array_equal(plain[:layer], injected[:layer])  # layers below L unchanged
    expected = plain[layer].copy()
    expected[row] += s * vec
    np.testing.assert_allclose(injected[layer], expected, rtol=0, atol=1e-5)
    assert np.array_equal(injected[layer, :row], plain[layer, :row])


def test_every_layer_is_capturable_and_matches_a_subset(model, prompt):
    full = model.capture(prompt)
    assert full.shape == (model.n_layer, len(prompt), model.n_embd)
    assert np.all(np.isfinite(full))
    some = model.capture(prompt, layers=[0, 15, -1])
    np.testing.assert_allclose(some, full[[0, 15, 29]], atol=1e-5)


def test_capture_many_equals_one_at_a_time(model):
    prompts = [model.chat(f"Tell me about {w}") for w in ("dust", "oceans", "silver", "bread")]
    batched = model.capture_many(prompts)
    # The first sequence of a batch sits in the same KV cells as when decoded alone: bit-identical.
    assert np.array_equal(batched[0], model.capture(prompts[0])[:, -1])
    for p, got in zip(prompts, batched):
        alone = model.capture(p)[:, -1]
        rel = np.linalg.norm(got - alone, axis=1) / np.linalg.norm(alone, axis=1)  # [n_layer]
        # A leak across sequences would show at once in layer 0; later sequences only differ by
        # the order llama.cpp sums over KV cells, which Q8 activation rounding amplifies with depth.
        assert rel[0] < 1e-5
        assert rel.max() < 0.05


def test_shared_prefix_points_equal_separate_full_decodes(model, prompt, vec):
    yes_no = [model.tokenize("Yes")[0], model.tokenize("No")[0]]
    grid = [(layer, s) for layer in (0, 5, 13, 22, 29) for s in (-6.0, 0.0, 3.0, 8.0)]
    batched = model.points(prompt, [[Injection(vec, layer, s)] for layer, s in grid], vocab_ids=yes_no)
    assert batched.shape == (len(grid), 2)
    for (layer, s), got in zip(grid, batched):
        full = model.logits(prompt, inject=[Injection(vec, layer, s)], reuse_prefix=False)[0]
        # Most points are bit-identical; a point's token sits in another KV cell in the batch,
        # so llama.cpp may sum attention in another order (up to ~1.5e-3 relative; README, Numerics).
        np.testing.assert_allclose(got, full[yes_no], rtol=2e-3, atol=1e-3)


def test_injection_from_token_k_onward_over_shared_prefix(model, prompt, vec):
    k = len(prompt) - 6
    pts = [[Injection(vec, 8, s, positions=k)] for s in (1.0, 4.0)]
    batched = model.points(prompt, pts)
    for p, got in zip(pts, batched):
        np.testing.assert_allclose(got, model.logits(prompt, inject=p, reuse_prefix=False)[0], atol=1e-3)


def test_points_chunk_past_n_seq_max(model, prompt, vec):
    pts = [[Injection(vec, layer, 2.0)] for layer in range(11)]
    ids = [model.tokenize("Yes")[0], model.tokenize("No")[0]]
    whole = model.points(prompt, pts, vocab_ids=ids)  # one batch of 11
    with pyintro.Model.load(n_threads=2, n_seq_max=4) as small:
        chunked = small.points(prompt, pts, vocab_ids=ids)  # batches of 4, 4 and 3
    # Compared with multi-row decodes only: a one-row decode takes another llama.cpp kernel.
    np.testing.assert_allclose(chunked, whole, rtol=2e-3, atol=1e-3)  # KV placement, as above


def test_gather_equals_full_logits(model, prompt, vec):
    ids = [5, 100, 49151, 7]
    pts = [[Injection(vec, 3, 2.0)], []]
    full = model.points(prompt, pts)
    np.testing.assert_array_equal(model.points(prompt, pts, vocab_ids=ids), full[:, ids])


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
    prompt_only = model.generate(ids, 6, inject=[Injection(vec * 3, 6, 4.0, positions=[len(ids) - 1])])[0]
    assert prompt_only[0] == steered[0]
    assert prompt_only != steered


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
