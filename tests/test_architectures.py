"""pyintro on tiny random-weight models of many llama.cpp architectures (tests/tiny_models.py).

What each architecture is expected to do is one line of STATUS below:

    "supported"                  pyintro loads it, captures and injects, exactly (see the checks)
    "refused at load: PHRASE"    Model.load raises a one-line ValueError containing PHRASE
    "refused at hook: PHRASE"    it loads, but capture and injection raise a one-line
                                 RuntimeError containing PHRASE
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

tools/arch_table.py runs the same checks to print the README's table of architectures.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import specs, tiny

RECURRENT = "refused at load: recurrent"

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
    # several residual streams per token (AltUp): one row per token cannot describe them
    "gemma3n": "refused at hook: several residual streams",
    # not decoder-only transformers
    "t5": "refused at load: encoder-decoder",
    "bert": "refused at load: no KV cache",
    # recurrent state (Mamba, RWKV, short convolutions, gated delta nets) or hybrids of it
    "mamba": RECURRENT, "mamba2": RECURRENT, "rwkv7": RECURRENT, "jamba": RECURRENT, "lfm2": RECURRENT,
    "lfm2moe": RECURRENT, "qwen3next": RECURRENT, "qwen35": RECURRENT, "qwen35moe": RECURRENT,
    "granitehybrid": RECURRENT, "falcon-h1": RECURRENT, "nemotron_h": RECURRENT,
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


def cvec_layers(n_layer: int) -> list[int]:
    """The layers the cvec check compares: 1 (llama.cpp's control vector has no layer 0) and the last."""
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
    with Reference(path, n_ctx=N_CTX, threads=1) as ref:
        assert np.array_equal(plain, ref.logits(IDS)), "plain logits differ from llama.cpp's"
        for layer in cvec_layers(model.n_layer):
            data = np.zeros((model.n_layer - 1, model.n_embd), np.float32)
            data[layer - 1] = v
            ref.set_cvec(data, layer, layer)
            want = ref.logits(IDS)
            got = model.logits(IDS, inject=[pyintro.Injection(v, layer, 1.0, "all")])[0]
            assert not np.array_equal(want, plain), f"layer {layer}: the control vector changed nothing"
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


def check_refused_at_hook(path, phrase: str) -> str:
    """It loads, and so do its plain logits; capture and injection raise a one-line RuntimeError
    that says why (and leave the model usable)."""
    import pyintro

    with load(path) as model:
        plain = model.logits(IDS)
        inj = pyintro.Injection(direction(model.n_embd), model.n_layer - 1, 1.0, "all")
        messages = []
        for call in (lambda: model.capture(IDS), lambda: model.logits(IDS, inject=[inj])):
            try:
                call()
            except Exception as exc:  # noqa: BLE001
                messages.append(one_line_error(exc, RuntimeError, phrase))
            else:
                raise AssertionError("capture or injection did not raise")
        assert np.array_equal(model.logits(IDS), plain), "a refused call left the model in another state"
    return messages[0]


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
        for name, check in SUPPORTED_CHECKS.items():
            try:
                check(model, path)
            except Exception as exc:  # noqa: BLE001
                failed.append(f"{name}: {exc}")
    if failed:
        return "fails", "; ".join(failed)
    layers = cvec_layers(n_layer)
    where = f"layer {layers[0]}" if len(layers) == 1 else "layers " + " and ".join(map(str, layers))
    return "supported", f"all checks exact; control vector compared at {where} of {n_layer}"


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


@pytest.mark.parametrize("arch", with_status("refused at load"))
def test_refused_at_load(arch, folder):
    check_refused_at_load(tiny(arch, folder), STATUS[arch].split(": ", 1)[1])


@pytest.mark.parametrize("arch", with_status("refused at hook"))
def test_refused_at_hook(arch, folder):
    check_refused_at_hook(tiny(arch, folder), STATUS[arch].split(": ", 1)[1])


def test_not_loadable_are_documented():
    # Documented, not run (llama.cpp may abort the process on them): arch_specs.json must still
    # say that llama.cpp fails on each, so an architecture that starts to work gets a status.
    for arch in with_status("not loadable"):
        spec = specs()[arch]
        assert not spec["loads"] or spec.get("decode", "ok") != "ok", f"{arch} loads and decodes now: give it a status"
