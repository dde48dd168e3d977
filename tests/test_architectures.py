"""pyintro on tiny random-weight models of many llama.cpp architectures (tests/tiny_models.py).

What each architecture is expected to do is one line of STATUS below:

    "supported"                  pyintro loads it, captures and injects, exactly (see the checks)
    "refused at load: PHRASE"    Model.load raises a one-line ValueError containing PHRASE
    "refused at hook: PHRASE"    it loads, but capture and injection raise a one-line
                                 RuntimeError containing PHRASE (none now; observe() still
                                 reports it, for architectures added to arch_specs.json)
    "not loadable: REASON"       llama.cpp 0.3.36 cannot load or decode the tiny model
                                 (tests/arch_specs.json says why); nothing is run

The checks of a supported architecture, each exact by design (batch-invariant decoding on the
CPU: docs/numerics.md), so compared with np.array_equal, never a tolerance:

    capture       the residual stream has shape [n_layer, n_tokens, n_embd] and is finite
    delta         injecting s * v into token k at layer L changes layer L's capture by exactly
                  +s * v on row k (float32 arithmetic) and leaves every earlier layer unchanged
    cvec          the plain logits equal plain llama.cpp's, and an all-token injection of v
                  at layer L equals llama.cpp's own control vector at layer L (row L - 1 of
                  llama_set_adapter_cvec's buffer), at layer 1 and at the last layer
    zero          an injection of strength 0 gives the logits of no injection

The recurrent and hybrid architectures (RECURRENT: Mamba, RWKV, short convolutions, gated
delta nets) decode one token per sequence and call (csrc/engine.h), and take more checks, run
also on llama as a control:

    batch         a point alone equals the same point in a batch and at any slot of it, with
                  points that share different prefixes (the recurrent state decoded in other splits)
    tree          prompt-tree scores equal each prompt + continuation decoded whole
    generate      generation with per-sequence injections: each continuation the same alone as
                  among others, greedy and sampled, sequences stopping at different steps
    recovers      a call that fails half-way (an overflowing injection) leaves the model as it was
    state         pyintro.recurrent.state_bytes (read from the file) is the state llama.cpp keeps
                  per sequence

nemotron_h's control vector (llama.cpp's) acts on the feed-forward output before the residual
sum, on feed-forward layers only (src/models/nemotron-h.cpp); pyintro adds to the block output,
the residual stream, on every layer. The cvec check compares it where llama.cpp's acts, to the
rounding of the two adds in another order (CVEC_REORDERED). gemma3n keeps four residual streams
per token (AltUp): an injection goes to all four, as llama.cpp's control vector does, and a
capture reads the active one (stream 0).

tools/arch_table.py runs the same checks to write the table of architectures (docs/models.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import specs, tiny

# Recurrent memories (llama_model_is_recurrent) and hybrids of it with attention.
RECURRENT = ["mamba", "mamba2", "rwkv7", "jamba", "lfm2", "lfm2moe", "qwen3next", "qwen35", "qwen35moe",
             "granitehybrid", "falcon-h1", "nemotron_h"]

# The one table to edit when an architecture's status changes.
STATUS = {
    # causal transformer decoders
    "llama": "supported", "mistral3": "supported", "qwen2": "supported", "qwen3": "supported",
    "smollm3": "supported", "granite": "supported", "gemma": "supported", "gemma2": "supported",
    "gemma3": "supported", "phi2": "supported", "phi3": "supported", "olmo": "supported",
    "olmo2": "supported", "olmoe": "supported", "qwen2moe": "supported", "qwen3moe": "supported",
    "starcoder": "supported", "starcoder2": "supported", "stablelm": "supported", "gpt2": "supported",
    "falcon": "supported", "gptneox": "supported", "bloom": "supported", "mpt": "supported",
    "command-r": "supported", "internlm2": "supported", "exaone": "supported",
    "llama4": "supported", "gemma4": "supported", "gpt-oss": "supported", "deepseek2": "supported",
    "glm4": "supported", "glm4moe": "supported", "cohere2": "supported", "ernie4_5": "supported",
    "ernie4_5-moe": "supported", "seed_oss": "supported", "exaone4": "supported", "granitemoe": "supported",
    "hunyuan-dense": "supported", "apertus": "supported", "phimoe": "supported", "minicpm3": "supported",
    # four residual streams per token (AltUp): injections go to all four, as llama.cpp's control
    # vector does; captures read the active one (csrc/engine.cpp, several_streams)
    "gemma3n": "supported",
    # not decoder-only transformers
    "t5": "refused at load: encoder-decoder",
    "bert": "refused at load: no KV cache",
    # recurrent state (Mamba, RWKV, short convolutions, gated delta nets) or hybrids of it:
    # decoded one token per sequence and call, padded with whole sequences (csrc/engine.h)
    "mamba": "supported", "mamba2": "supported", "rwkv7": "supported", "jamba": "supported", "lfm2": "supported",
    "lfm2moe": "supported", "qwen3next": "supported", "qwen35": "supported", "qwen35moe": "supported",
    "granitehybrid": "supported", "falcon-h1": "supported", "nemotron_h": "supported",
}

IDS = [1, 7, 12, 30, 5, 44, 19, 3, 61, 27, 9]  # 11 tokens of the 64-token vocabulary
TOKEN = 4  # the token the delta check injects into
STRENGTH = 2.5
N_CTX = 256


# -- the checks (shared with tools/arch_table.py) -----------------------------------------------


def load(path):
    import pyintro

    return pyintro.Model.load(path, n_threads=1, n_ctx=N_CTX, chat_template="raw")  # tiny files have no template


def direction(n_embd: int, seed: int = 0) -> np.ndarray:
    """A random float32 direction of the residual stream's scale (the tiny models' activations
    are O(1))."""
    return np.random.default_rng(seed).standard_normal(n_embd).astype(np.float32)


def check_capture(model) -> np.ndarray:
    """capture: shape [n_layer, n_tokens, n_embd], float32, finite."""
    cap = model.capture(IDS)
    assert cap.shape == (model.n_layer, len(IDS), model.n_embd), cap.shape
    assert cap.dtype == np.float32
    assert np.all(np.isfinite(cap)), "the residual stream has NaN or Inf"
    return cap


def check_delta(model) -> None:
    """delta: the injection is added where and only where asked. Capturing layer L under an
    injection of s * v into token TOKEN at layer L shows exactly plain[L] + s * v on that row
    (the same float32 add as the hook's), the other rows of layer L unchanged (block L has
    already run for them), and every layer before L unchanged (the injection comes after them)."""
    import pyintro

    plain = model.capture(IDS)
    v = direction(model.n_embd)
    for layer in range(model.n_layer):
        inj = pyintro.Injection(v, layer, STRENGTH, pyintro.Positions.tokens([TOKEN]))
        cap = model.capture(IDS, inject=[inj])
        expected = plain[layer].copy()
        expected[TOKEN] += np.float32(STRENGTH) * v
        assert np.array_equal(cap[layer], expected), f"layer {layer}: the capture is not plain + s * v on token {TOKEN}"
        assert np.array_equal(cap[:layer], plain[:layer]), f"an injection at layer {layer} changed an earlier layer"


# Where llama.cpp's control vector is added before a residual sum rather than to the block
# output: the layers it acts on, and the largest |difference| of the logits, relative to the
# largest |logit|. The adds in another order round differently: measured up to 1.2e-7 (five
# random directions, nemotron_h's feed-forward layer); one float32 rounding of a sum of order 1
# is 6e-8, and the final norm and output matrix do not grow it past a few of those.
CVEC_REORDERED = {"nemotron_h": (lambda meta: [il for il, ff in enumerate(meta["feed_forward_length"]) if ff], 1e-6)}


def cvec_layers(n_layer: int, arch: str = "") -> list[int]:
    """The layers the cvec check compares: 1 (llama.cpp's control vector has no layer 0) and the
    last, or where llama.cpp's acts (CVEC_REORDERED)."""
    if arch in CVEC_REORDERED:
        return CVEC_REORDERED[arch][0](specs()[arch]["meta"])
    return sorted({1, n_layer - 1})


def check_cvec(model, path) -> None:
    """cvec: pyintro decodes as plain llama.cpp does, and pyintro layer L is llama.cpp's
    control-vector layer L. The plain logits equal Reference's; an all-token injection of v at
    layer L (strength 1) equals Reference with v in row L - 1 of the cvec buffer, applied to
    layer L only."""
    import pyintro
    from _reference import Reference

    v = direction(model.n_embd, seed=1)
    plain = model.logits(IDS)[0]
    tol = CVEC_REORDERED[model.arch][1] if model.arch in CVEC_REORDERED else 0.0
    with Reference(path, n_ctx=N_CTX, threads=1) as ref:
        assert np.array_equal(plain, ref.logits(IDS)), "plain logits differ from llama.cpp's"
        for layer in cvec_layers(model.n_layer, model.arch):
            data = np.zeros((model.n_layer - 1, model.n_embd), np.float32)
            data[layer - 1] = v
            ref.set_cvec(data, layer, layer)
            want = ref.logits(IDS)
            got = model.logits(IDS, inject=[pyintro.Injection(v, layer, 1.0, "all")])[0]
            assert not np.array_equal(want, plain), f"layer {layer}: the control vector changed nothing"
            if tol:
                err = np.abs(got - want).max() / np.abs(want).max()
                assert err <= tol, f"layer {layer}: all-token injection differs from the control vector by {err:.2g}"
            else:
                assert np.array_equal(got, want), f"layer {layer}: all-token injection != llama.cpp's control vector"


def check_zero(model) -> None:
    """zero: strength 0 adds exactly nothing (logits and captures as without the injection)."""
    import pyintro

    v = direction(model.n_embd, seed=2)
    plain_logits, plain_cap = model.logits(IDS), model.capture(IDS)
    for layer in range(model.n_layer):
        inj = [pyintro.Injection(v, layer, 0.0, "all")]
        assert np.array_equal(model.logits(IDS, inject=inj), plain_logits), f"layer {layer}: the logits changed"
        assert np.array_equal(model.capture(IDS, inject=inj), plain_cap), f"layer {layer}: the capture changed"


SUPPORTED_CHECKS = {
    "capture": lambda model, path: check_capture(model),
    "delta": lambda model, path: check_delta(model),
    "cvec": check_cvec,
    "zero": lambda model, path: check_zero(model),
}


def _points(model, n: int, seed: int = 3) -> list:
    """n random points: random layers and strengths, half at the last token, half from token 6."""
    import pyintro

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = rng.standard_normal(model.n_embd).astype(np.float32)
        out.append([pyintro.Injection(v, int(rng.integers(0, model.n_layer)), float(rng.uniform(0.5, 3.0)),
                                      "last" if i % 2 else pyintro.Positions.start(6))])
    return out


def check_batch(model) -> None:
    """batch: a point alone equals it in a batch and at any slot, bit for bit. Alone, a last-token
    point shares the prompt but its last token; in the batch every point decodes from token 6
    (the batch's first injected token), so the state is built in other splits too."""
    points = _points(model, 8)
    alone = np.stack([model.points(IDS, [p])[0] for p in points])
    assert len({row.tobytes() for row in alone}) == len(points), "the points do not differ"
    assert np.array_equal(model.points(IDS, points), alone), "a point in a batch differs from it alone"
    order = np.random.default_rng(0).permutation(len(points))
    assert np.array_equal(model.points(IDS, [points[i] for i in order]), alone[order]), "a slot changed a point"


def check_tree(model) -> None:
    """tree: Model.score's log-probabilities equal each prompt + continuation decoded whole (the
    logits exactly; the log-sum-exp is summed in double in another order: 1e-12)."""
    import dataclasses

    import pyintro

    v = direction(model.n_embd, seed=4)
    conts = [[3, 17, 40], [5], [22, 9]]
    branches = [(IDS, [pyintro.Injection(v, 0, 2.0, pyintro.Positions.start(6))]), (IDS, []),
                (IDS[:8], [pyintro.Injection(v, model.n_layer - 1, 1.5, "last")])]
    lp = model.score([b[0] for b in branches], [b[1] for b in branches], conts)
    for j, (ids, inject) in enumerate(branches):
        # "last" continues onto the continuation: in the whole sequence, "from token len(ids) - 1 on"
        inject = [dataclasses.replace(i, positions=pyintro.Positions.start(len(ids) - 1)) if i.positions.kind == "last"
                  else i for i in inject]
        for c, cont in enumerate(conts):
            full = ids + cont
            logits = model.logits(full, inject=inject, rows=list(range(len(ids) - 1, len(full) - 1)))
            lse = logits.max(1) + np.log(np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True)).sum(1))
            ref = logits[np.arange(len(cont)), cont] - lse
            np.testing.assert_allclose(lp[j, c, :len(cont)], ref, rtol=0, atol=1e-12)
            assert np.all(np.isnan(lp[j, c, len(cont):]))


def check_generate(model) -> None:
    """generate: one continuation per point with its own injection and seed, each the same
    alone as among the others (greedy and sampled); some stop early at an end-of-generation token."""
    import pyintro

    v = direction(model.n_embd, seed=6)
    pts = [[pyintro.Injection(v, 0, 3.0)], [], [pyintro.Injection(-v, model.n_layer - 1, 2.0, "all")],
           [pyintro.Injection(2 * v, 1 % model.n_layer, 1.0, pyintro.Positions.start(6))]]
    for temperature, seeds in ((0.0, [None] * 4), (1.0, [11, 12, 13, 14])):
        together = model.generate_many(IDS, pts, 12, temperature=temperature, seeds=seeds)
        alone = [model.generate_many(IDS, [p], 12, temperature=temperature, seeds=[s])[0] for p, s in zip(pts, seeds)]
        assert together == alone, f"temperature {temperature}: a continuation depends on the others"
        assert all(len(t) >= 1 for t in together)


def check_recovers(model) -> None:
    """recovers: a call that fails in the middle (an injection that overflows the residual
    stream) raises, and leaves the model as it was: the same points give the same numbers. With
    a strength near float32's largest, a recurrent state turns to Inf and NaN; llama.cpp starts
    a new sequence from a free cell scaled by 0, so without pyintro clearing the memory after
    such a call a later capture (from an empty state) came out different (mamba, rwkv7, falcon-h1)."""
    import pyintro

    points = _points(model, 3, seed=8)
    before, captured = model.points(IDS, points), model.capture(IDS)  # capture: from an empty state
    for strength, where in ((1e30, "all"), (3e38, "all"), (3e38, pyintro.Positions.start(6))):
        with pytest.raises(RuntimeError, match="overflowed"):
            model.points(IDS, [[pyintro.Injection(direction(model.n_embd), 0, strength, where)]] * 3)
        assert np.array_equal(model.capture(IDS), captured), "a failed call changed a later decode"
        assert np.array_equal(model.points(IDS, points), before), "a failed call changed a later decode"


def check_state(model, path) -> None:
    """state: pyintro.recurrent.state_bytes is the recurrent state llama.cpp keeps per sequence:
    llama_state_seq_get_size of a one-token sequence, less one token's KV cells (the growth per
    token) and a header of under 512 bytes."""
    from pyintro import recurrent

    estimate = recurrent.state_bytes(path)
    model.reset()
    model._decoder.ensure_prefix([5])
    one = model._engine.seq_state_bytes(0)
    model._decoder.ensure_prefix([5, 6])
    per_token = model._engine.seq_state_bytes(0) - one
    model.reset()
    assert (estimate > 0) == (model.arch in RECURRENT)
    assert 0 <= one - per_token - estimate < 512, (one, per_token, estimate)


STATE_CHECKS = {
    "batch": lambda model, path: check_batch(model),
    "tree": lambda model, path: check_tree(model),
    "generate": lambda model, path: check_generate(model),
    "recovers": lambda model, path: check_recovers(model),
    "state": check_state,
}


def checks_of(arch: str) -> dict:
    """The checks a supported architecture takes."""
    return {**SUPPORTED_CHECKS, **STATE_CHECKS} if arch in RECURRENT + ["llama"] else SUPPORTED_CHECKS


def one_line_error(exc: BaseException, kind: type, phrase: str) -> str:
    """A refusal must be the given exception type, one line, and name the reason."""
    msg = str(exc)
    assert isinstance(exc, kind), f"expected {kind.__name__}, got {type(exc).__name__}: {msg}"
    assert "\n" not in msg, f"the message is not one line: {msg!r}"
    assert phrase in msg, f"{phrase!r} is not in the message: {msg}"
    return msg


def check_refused_at_load(path, phrase: str) -> str:
    """Model.load refuses the file with a one-line ValueError that says why."""
    try:
        load(path).close()
    except Exception as exc:  # noqa: BLE001  (the type is what is checked)
        return one_line_error(exc, ValueError, phrase)
    raise AssertionError("Model.load accepted it")


def observe(arch: str, folder) -> tuple[str, str]:
    """What pyintro does with the architecture now, as (status, notes), status in STATUS's words.
    Loads in this process: only for architectures llama.cpp loads (arch_specs.json says)."""
    spec = specs()[arch]
    if not spec["loads"] or spec.get("decode", "ok") != "ok":
        return "not loadable", spec.get("error") or spec.get("decode", "")
    path = tiny(arch, folder)
    try:
        model = load(path)
    except Exception as exc:  # noqa: BLE001
        return "refused at load", f"{type(exc).__name__}: {exc}"
    with model:
        n_layer = model.n_layer
        try:
            model.capture(IDS)
        except RuntimeError as exc:
            return "refused at hook", f"RuntimeError: {exc}"
        failed = []
        for name, check in checks_of(arch).items():
            try:
                check(model, path)
            except Exception as exc:  # noqa: BLE001
                failed.append(f"{name}: {exc}")
    if failed:
        return "fails", "; ".join(failed)
    layers = cvec_layers(n_layer, arch)
    where = f"layer {layers[0]}" if len(layers) == 1 else "layers " + " and ".join(map(str, layers))
    if arch in CVEC_REORDERED:
        return "supported", (f"all checks exact but the control vector's, which llama.cpp adds before the residual sum "
                             f"on feed-forward layers only: equal to float rounding at {where} of {n_layer}")
    extra = "; one token per sequence and call (recurrent state)" if arch in RECURRENT else ""
    return "supported", f"all checks exact; control vector compared at {where} of {n_layer}{extra}"


# -- the tests ------------------------------------------------------------------------------------


def with_status(kind: str) -> list[str]:
    return sorted(a for a, s in STATUS.items() if s.split(":")[0] == kind)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_models")


def test_status_covers_every_described_architecture():
    # Every architecture of arch_specs.json has a status here, and only those.
    assert set(STATUS) == set(specs()), sorted(set(STATUS) ^ set(specs()))
    assert all(s.split(":")[0] in ("supported", "refused at load", "refused at hook", "not loadable")
               for s in STATUS.values())


@pytest.mark.parametrize("arch", with_status("supported"))
@pytest.mark.parametrize("check", list(SUPPORTED_CHECKS))
def test_supported(arch, check, folder):
    path = tiny(arch, folder)
    with load(path) as model:
        assert model.arch == arch
        SUPPORTED_CHECKS[check](model, path)


@pytest.mark.parametrize("arch", sorted(RECURRENT) + ["llama"])
@pytest.mark.parametrize("check", list(STATE_CHECKS))
def test_recurrent(arch, check, folder):
    path = tiny(arch, folder)
    with load(path) as model:
        assert model._engine.recurrent == (arch in RECURRENT)
        STATE_CHECKS[check](model, path)


def test_recurrent_list_is_what_llama_cpp_says(folder):
    # RECURRENT names exactly the architectures whose memory llama.cpp makes recurrent or hybrid.
    said = []
    for arch in with_status("supported"):
        with load(tiny(arch, folder)) as model:
            if model._engine.recurrent:
                said.append(arch)
    assert sorted(said) == sorted(RECURRENT)


@pytest.mark.parametrize("arch", with_status("refused at load"))
def test_refused_at_load(arch, folder):
    check_refused_at_load(tiny(arch, folder), STATUS[arch].split(": ", 1)[1])


def test_not_loadable_are_documented():
    # Documented, not run (llama.cpp may abort the process on them): arch_specs.json must still
    # say that llama.cpp fails on each, so an architecture that starts to work gets a status.
    for arch in with_status("not loadable"):
        spec = specs()[arch]
        assert not spec["loads"] or spec.get("decode", "ok") != "ok", f"{arch} loads and decodes now: give it a status"
