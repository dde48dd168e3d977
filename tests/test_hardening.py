"""Hardening (#6): no silent no-ops, clear errors for bad numerics and bad engine input,
and thread safety. Tiny GGUF models are written here with the `gguf` package."""

import threading

import gguf
import numpy as np
import pytest

import pyintro
from pyintro import Injection
from pyintro._native import _engine


# -- tiny models ------------------------------------------------------------------------------


def _vocab(w: gguf.GGUFWriter, n_vocab: int) -> None:
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(n_vocab - 3)])
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types([2, 3, 3] + [1] * (n_vocab - 3))


def _write(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_plamo2(path, n_embd=32, n_ff=64, n_head=4, n_vocab=64, nan_output=False):
    """A 2-layer PLaMo-2 (hybrid: layer 0 Mamba, layer 1 attention). llama.cpp's PLaMo-2
    graph never names a tensor l_out-<il>, so pyintro cannot hook its layers."""
    arch, n_layer = "plamo2", 2
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(n_layer)
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv([0, n_head])  # 0 heads: a Mamba layer
    w.add_layer_norm_rms_eps(1e-5)
    inner, d_conv, d_state, heads, dt_dim = 64, 4, 8, 4, 64
    for key, value in (("conv_kernel", d_conv), ("inner_size", inner), ("state_size", d_state),
                       ("time_step_rank", heads), ("group_count", 0)):
        w.add_uint32(f"{arch}.ssm.{key}", value)
    _vocab(w, n_vocab)
    rng = np.random.default_rng(0)

    def rand(*shape):  # gguf takes numpy shapes (reversed ggml ne)
        return (rng.standard_normal(shape[::-1]) * 0.1).astype(np.float32)

    def ones(*shape):
        return np.ones(shape[::-1], np.float32)

    w.add_tensor("token_embd.weight", rand(n_embd, n_vocab))
    norm = ones(n_embd)
    if nan_output:
        norm[3] = np.nan
    w.add_tensor("output_norm.weight", norm)
    hd = n_embd // n_head
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones(n_embd))
        if i == 0:
            w.add_tensor(f"blk.{i}.ssm_in.weight", rand(n_embd, 2 * inner))
            w.add_tensor(f"blk.{i}.ssm_conv1d.weight", rand(d_conv, inner))
            w.add_tensor(f"blk.{i}.ssm_x.weight", rand(inner, dt_dim + 2 * d_state))
            w.add_tensor(f"blk.{i}.ssm_dt.weight", rand(dt_dim, heads))
            w.add_tensor(f"blk.{i}.ssm_dt.bias", np.zeros(heads, np.float32))
            w.add_tensor(f"blk.{i}.ssm_a", -ones(heads))
            w.add_tensor(f"blk.{i}.ssm_d", ones(heads))
            w.add_tensor(f"blk.{i}.ssm_out.weight", rand(inner, n_embd))
            w.add_tensor(f"blk.{i}.ssm_dt_norm", ones(dt_dim))
            w.add_tensor(f"blk.{i}.ssm_b_norm", ones(d_state))
            w.add_tensor(f"blk.{i}.ssm_c_norm", ones(d_state))
        else:
            w.add_tensor(f"blk.{i}.attn_qkv.weight", rand(n_embd, 3 * n_embd))
            w.add_tensor(f"blk.{i}.attn_q_norm.weight", ones(hd, n_head))
            w.add_tensor(f"blk.{i}.attn_k_norm.weight", ones(hd, n_head))
            w.add_tensor(f"blk.{i}.attn_output.weight", rand(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.post_attention_norm", ones(n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones(n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", rand(n_embd, 2 * n_ff))
        w.add_tensor(f"blk.{i}.ffn_down.weight", rand(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.post_ffw_norm", ones(n_embd))
    _write(w)
    return path


def make_eurobert(path, n_embd=32, n_ff=64, n_head=4, n_vocab=64):
    """A 2-layer EuroBERT: an encoder, which llama.cpp runs without a KV cache."""
    w = gguf.GGUFWriter(str(path), "eurobert")
    w.add_block_count(2)
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    _vocab(w, n_vocab)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((n_vocab, n_embd)).astype(np.float32))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    for i in range(2):
        for name, shape in (("attn_norm", (n_embd,)), ("attn_q", (n_embd, n_embd)), ("attn_k", (n_embd, n_embd)),
                            ("attn_v", (n_embd, n_embd)), ("attn_output", (n_embd, n_embd)), ("ffn_norm", (n_embd,)),
                            ("ffn_gate", (n_ff, n_embd)), ("ffn_up", (n_ff, n_embd)), ("ffn_down", (n_embd, n_ff))):
            w.add_tensor(f"blk.{i}.{name}.weight", rng.standard_normal(shape).astype(np.float32) * 0.1)
    _write(w)
    return path


def _engine_for(path, n_ctx=64, n_seq_max=2, layer_prefix=None):
    p = _engine.EngineParams()
    p.path = str(path)
    p.n_ctx = n_ctx
    p.n_seq_max = n_seq_max
    p.n_batch = n_ctx
    p.n_threads = 1
    if layer_prefix is not None:
        p.debug.layer_prefix = layer_prefix
    return _engine.Engine(p)


def _rows(n, start=0):
    return (np.arange(3, 3 + n, dtype=np.int32), np.arange(start, start + n, dtype=np.int32),
            np.zeros(n, np.int32), np.ones(n, np.uint8))


@pytest.fixture(scope="module")
def small():
    # One thread: ggml's spinning thread barrier is very slow on a busy 2-core machine.
    m = pyintro.Model.load(n_threads=1, n_ctx=512, n_seq_max=16)
    yield m
    m.close()


@pytest.fixture(scope="module")
def ids(small):
    return small.chat("Do you detect an injected thought? Answer only by 'Yes' or 'No'.")


@pytest.fixture(scope="module")
def direction(small):
    v = np.random.default_rng(1234).standard_normal(small.n_embd).astype(np.float32)
    return v / np.linalg.norm(v) * 4.0


def _reset(model):
    """After raw engine calls: empty the KV memory so the Model's prefix cache stays true."""
    model.reset()


# -- 3. no silent no-ops ----------------------------------------------------------------------


def test_layer_prefix_defaults_to_l_out():
    assert _engine.EngineParams().debug.layer_prefix == "l_out-"


def test_a_layer_name_that_never_fires_is_an_error():
    e = _engine_for(pyintro.default_model_path(), n_ctx=64, layer_prefix="no_such_tensor-")
    try:
        n = 3
        v = np.ones(e.n_embd, np.float32)
        with pytest.raises(RuntimeError, match=r"layer 4: no tensor named no_such_tensor-4"):
            e.decode(*_rows(n), [(4, v, np.ones(n, np.float32))])
        e.seq_rm(-1, 0, -1)
        with pytest.raises(RuntimeError, match=r"layer 7: no tensor named no_such_tensor-7"):
            e.decode(*_rows(n), [], np.array([7], np.int32), np.array([0, 2], np.int32))
        e.seq_rm(-1, 0, -1)
        # Nothing wanted, nothing checked: a plain decode (and a strength-0 injection) still works.
        logits, _ = e.decode(*_rows(n), [(4, v, np.zeros(n, np.float32))])
        assert logits.shape == (n, e.n_vocab) and np.all(np.isfinite(logits))
    finally:
        e.close()


def test_architecture_without_l_out_names_fails_loudly(tmp_path):
    path = make_plamo2(tmp_path / "plamo2.gguf")
    e = _engine_for(path)
    try:
        assert (e.arch, e.n_layer, e.n_embd) == ("plamo2", 2, 32)
        n = 4
        logits, _ = e.decode(*_rows(n))  # plain decoding works
        assert logits.shape == (n, 64) and np.all(np.isfinite(logits))
        e.memory_clear()
        v = np.ones(32, np.float32)
        for il in (0, 1):
            with pytest.raises(RuntimeError, match=f"no tensor named l_out-{il}.*'plamo2'"):
                e.decode(*_rows(n), [(il, v, np.ones(n, np.float32))])
            e.memory_clear()
            with pytest.raises(RuntimeError, match=f"no tensor named l_out-{il}"):
                e.decode(*_rows(n), [], np.array([il], np.int32), np.array([0], np.int32))
            e.memory_clear()
    finally:
        e.close()
    # Model.load probes layer 0 before any real decode and refuses the file with the same reason
    # (llama.cpp aborts the process in this toy's Mamba graph under batch-invariant padding, so
    # refusing before the first decode is what keeps it a clear error).
    with pytest.raises(ValueError, match=r"plamo2.gguf: layer 0: no tensor named l_out-0.*'plamo2'.*another architecture"):
        pyintro.Model.load(path, n_threads=1, n_ctx=64, n_seq_max=2, chat_template="raw")
    with pytest.raises(ValueError, match="no tensor named l_out-0"):
        pyintro.Model.load(path, n_threads=1, n_ctx=64, n_seq_max=2)  # raised before any chat-template warning


def test_model_without_kv_cache_is_refused(tmp_path):
    # An encoder decodes without error in llama.cpp but returns all-zero logits and ignores
    # seq_rm/seq_cp: pyintro refuses it rather than return numbers that mean nothing.
    path = make_eurobert(tmp_path / "eurobert.gguf")
    with pytest.raises(ValueError, match="'eurobert' keeps no KV cache"):
        _engine_for(path, n_seq_max=1)
    with pytest.raises(ValueError, match="no KV cache"):
        pyintro.Model.load(path, n_threads=1, n_ctx=64)


# -- 8. numerics ------------------------------------------------------------------------------


def test_non_finite_logits_raise(tmp_path):
    e = _engine_for(make_plamo2(tmp_path / "nan.gguf", nan_output=True))
    try:
        for gather in (None, np.array([5, 9], np.int32)):
            with pytest.raises(RuntimeError, match="non-finite logits"):
                e.decode(*_rows(3), [], np.zeros(0, np.int32), np.zeros(0, np.int32), gather)
            e.memory_clear()
        # Rows that return no logits are not checked (nothing is returned for them).
        tokens, pos, seq, _ = _rows(3)
        logits, _ = e.decode(tokens, pos, seq, np.zeros(3, np.uint8))
        assert logits.shape == (0, 64)
    finally:
        e.close()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_engine_rejects_non_finite_vectors_before_decoding(small, bad):
    e = small._engine
    _reset(small)
    n = 4
    v = np.ones(small.n_embd, np.float32)
    v[17] = bad
    with pytest.raises(ValueError, match="vector contains NaN or Inf"):
        e.decode(*_rows(n), [(3, v, np.ones(n, np.float32))])
    scale = np.ones(n, np.float32)
    scale[2] = bad
    with pytest.raises(ValueError, match="strength is NaN or Inf"):
        e.decode(*_rows(n), [(3, np.ones(small.n_embd, np.float32), scale)])
    assert e.seq_pos_max(0) == -1  # nothing reached the KV cache
    # float64 values past float32's range become Inf in the cast and are refused too.
    with pytest.raises(ValueError, match="NaN or Inf"):
        e.decode(*_rows(n), [(3, np.full(small.n_embd, 1e300), np.ones(n))])
    assert e.seq_pos_max(0) == -1


def test_huge_strengths_give_finite_logits_or_a_clear_error(small, ids, direction):
    base = small.logits(ids)
    for s in (1e3, 1e6, -1e6):
        out = small.logits(ids, inject=[Injection(direction, 10, s, "all")])
        assert np.all(np.isfinite(out))
    # Past ~1e19 per element, the next RMS norm squares to Inf: logits would be all zeros.
    for layer, s in ((0, 1e20), (15, 1e30), (29, -3e38)):
        with pytest.raises(RuntimeError, match="overflowed the residual stream.*lower the strength"):
            small.logits(ids, inject=[Injection(direction, layer, s)])
    with pytest.raises(RuntimeError, match="lower the strength"):
        small.points(ids, [[], [Injection(direction, 29, 3e38)]])
    with pytest.raises(RuntimeError, match="lower the strength"):
        small.capture(ids, layers=[5], inject=[Injection(direction, 3, 1e30, "all")])
    # The model is unharmed.
    assert np.array_equal(small.logits(ids), base)


# -- engine input the bindings must refuse ----------------------------------------------------


def test_sequence_ids_out_of_range(small):
    e = small._engine
    for seq in (-2, -100, small.n_seq_max):
        with pytest.raises(ValueError, match="sequence id"):
            e.seq_rm(seq, 0, -1)  # llama.cpp asserts on seq < -1
    for src, dst in ((-1, 0), (0, -1), (0, small.n_seq_max)):
        with pytest.raises(ValueError, match="sequence id"):
            e.seq_cp(src, dst, -1, -1)
    for seq in (-1, small.n_seq_max):
        with pytest.raises(ValueError, match="sequence id"):
            e.seq_pos_max(seq)
    assert e.seq_rm(-1, 0, -1)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(tokens=np.array([2**32 + 5, 1, 2], np.int64)), "tokens has a value that does not fit"),
        (dict(tokens=np.array([5.7, 1, 2])), "tokens must hold integers"),
        (dict(pos=np.array([0.0, 1.0, 2.5])), "pos must hold integers"),
        (dict(seq=np.array([0, 0, 2**31], np.int64)), "seq has a value"),
        (dict(output=np.array([1, 1, 256])), "output has a value that does not fit 8 bits"),
        (dict(tokens=np.array(["a", "b", "c"])), "tokens must be a numeric array"),
        (dict(tokens=np.ones((3, 1), np.int32)), "one-dimensional"),
        (dict(inject=[(2**40, np.ones(576), np.ones(3))]), "layer 1099511627776 is out of range"),
        (dict(inject=[(2**80, np.ones(576), np.ones(3))]), "out of range"),
        (dict(inject=[(3.0, np.ones(576), np.ones(3))]), "injection layer must be an int"),
        (dict(inject=[(3, np.ones(576))]), r"\(layer, vector, scale\)"),
        (dict(inject=[3]), r"\(layer, vector, scale\)"),
        (dict(inject=[(3, np.ones(576), np.ones(3) + 1j)]), "scale must be a numeric array"),
        (dict(gather_ids=np.array([2**64 - 1], np.uint64)), "gather_ids has a value"),
    ],
)
def test_bindings_refuse_values_numpy_would_silently_cast(small, change, match):
    args = dict(tokens=np.array([5, 6, 7], np.int32), pos=np.arange(3, dtype=np.int32), seq=np.zeros(3, np.int32),
                output=np.ones(3, np.uint8), inject=[], capture_layers=np.zeros(0, np.int32),
                capture_rows=np.zeros(0, np.int32), gather_ids=None)
    args.update(change)
    _reset(small)
    with pytest.raises(ValueError, match=match):
        small._engine.decode(**args)
    assert small._engine.seq_pos_max(0) == -1


def test_bindings_accept_plain_lists_bools_and_empty_float_arrays(small):
    _reset(small)
    try:
        logits, cap = small._engine.decode([5, 6, 7], [0, 1, 2], [0, 0, 0], np.array([False, False, True]),
                                           [[np.int64(3), [0.5] * 576, [1, 1, 1]]], np.array([]), [], [1, 2])
        assert logits.shape == (1, 2) and cap.shape == (0, 0, 576)
    finally:
        _reset(small)


# -- 7. threads -------------------------------------------------------------------------------


def _workload(m, ids, direction):
    """A mix of calls whose results we compare: points (shared prefix), logits, capture."""
    pts = [[Injection(direction, layer, s)] for layer, s in ((2, 3.0), (9, -2.0), (20, 5.0))] + [[]]
    return [
        m.points(ids, pts, vocab_ids=[1, 2, 3, 500]),
        m.logits(ids, inject=[Injection(direction, 12, 2.0, "all")]),
        m.capture(ids[:12], layers=[0, 14], inject=[Injection(direction, 6, 1.5, "all")]),
    ]


def _run_threads(fns):
    results, errors = [None] * len(fns), []

    def wrap(i, fn):
        try:
            results[i] = fn()
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _assert_same(a, b):
    for x, y in zip(a, b):  # batch invariance: the same decodes give the same bits
        assert np.array_equal(x, y)


def test_two_models_in_two_threads_match_serial_runs(ids, direction):
    with pyintro.Model.load(n_threads=1, n_ctx=256, n_seq_max=8) as a, \
            pyintro.Model.load(n_threads=1, n_ctx=256, n_seq_max=8) as b:
        serial = _workload(a, ids, direction)
        _reset(a)
        together = _run_threads([lambda: [_workload(a, ids, direction) for _ in range(2)],
                                 lambda: [_workload(b, ids, -direction) for _ in range(2)]])
        serial_b = _workload(b, ids, -direction)
    for got in together[0]:
        _assert_same(got, serial)
    for got in together[1]:
        _assert_same(got, serial_b)


def test_one_model_shared_by_threads_matches_serial_runs(small, ids, direction):
    dirs = [direction * k for k in (1.0, -0.5, 2.0)]
    serial = [_workload(small, ids, d) for d in dirs]
    together = _run_threads([lambda d=d: _workload(small, ids, d) for d in dirs])
    for got, want in zip(together, serial):
        _assert_same(got, want)


def test_close_while_another_thread_decodes(ids, direction):
    m = pyintro.Model.load(n_threads=1, n_ctx=256, n_seq_max=8)
    outcomes = []

    def work():
        for _ in range(20):
            try:
                m.points(ids, [[Injection(direction, 5, 1.0)], []], vocab_ids=[1])
                outcomes.append("ok")
            except RuntimeError as e:
                assert "closed" in str(e)
                outcomes.append("closed")

    t = threading.Thread(target=work)
    t.start()
    m.close()
    t.join()
    assert outcomes and set(outcomes) <= {"ok", "closed"}
    # A raw engine closed under a thread's feet: the C++ mutex orders close after decode.
    m = pyintro.Model.load(n_threads=1, n_ctx=256, n_seq_max=8)
    e = m._engine
    n = 64
    results = []

    def raw():
        for _ in range(5):
            try:
                results.append(e.decode(*_rows(n))[0].shape)
                e.seq_rm(-1, 0, -1)
            except RuntimeError as err:
                results.append(str(err))

    t = threading.Thread(target=raw)
    t.start()
    e.close()
    t.join()
    assert all(r == (n, m.n_vocab) or "closed" in r for r in results)
