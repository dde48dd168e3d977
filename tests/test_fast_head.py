"""The fast head (pyintro.head): a few gathered logits computed from the final norm's rows,
without llama.cpp's full unembedding, equal the full path's to float rounding, on the default
model, on Gemma-3-270M (tied 262k-row embedding) and on every supported tiny architecture (the
recurrent and hybrid ones included, whose calls hold one token per sequence); and
where an architecture does something the head does not reproduce, the full path runs instead.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_architectures import IDS, RECURRENT, STATUS, direction
from tiny_models import specs, tiny, write

import pyintro
from pyintro.head import MATCH_TOL, mismatch
from pyintro.quantize import quantize

# The target for b = logit(Yes) - logit(No) on the real models.
B_TOL = 1e-4


def _grid(model, v, n_tokens):
    """Points at every fourth layer and three strengths, on the prompt's last 6 tokens."""
    rows = list(range(n_tokens - 6, n_tokens))
    return [[pyintro.Injection(v, layer, s, pyintro.Positions.tokens(rows))] for layer in range(0, model.n_layer, 4) for s in (0.0, 4.0, 12.0)]


def _head_used(model, ids) -> bool:
    return model._decoder.head.matched.get(np.asarray(ids, np.int32).tobytes(), False)


def _compare(path, ids, prompt, n_vocab_ids=None, **load):
    """(fast logits, full logits, head used) for a grid of points over ``prompt``."""
    with pyintro.Model.load(path, n_threads=2, **load) as fast, \
            pyintro.Model.load(path, n_threads=2, fast_head=False, **load) as full:
        v = direction(fast.n_embd, seed=5)
        v = v / np.linalg.norm(v) * 4.0
        points = _grid(fast, v, len(prompt))
        a = fast.points(prompt, points, vocab_ids=ids)
        b = full.points(prompt, points, vocab_ids=ids)
        return a, b, _head_used(fast, ids)


def _yes_no(model):
    return [model.tokenize(" Yes")[0], model.tokenize(" No")[0], model.tokenize("Yes")[0], model.tokenize("No")[0]]


def test_default_model_fast_head_equals_full_path(model, prompt):
    ids = _yes_no(model)
    fast, full, used = _compare(model.path, ids, prompt)
    assert used, "the fast head was not used on the default model"
    assert mismatch(fast, full) <= MATCH_TOL
    db = np.abs((fast[:, 0] - fast[:, 1]) - (full[:, 0] - full[:, 1]))
    assert db.max() <= B_TOL, f"max |Δb| {db.max():.3g}"


def test_gemma_fast_head_equals_full_path():
    path = pyintro.files.resolve_model("gemma3-270m")
    with pyintro.Model.load(path, n_threads=2, n_ctx=1024, chat_template="raw") as g:
        prompt = g.chat("Do you detect an injected thought? Answer only by 'Yes' or 'No'.")
        ids = _yes_no(g)
    fast, full, used = _compare(path, ids, prompt, n_ctx=1024, chat_template="raw")
    assert used, "the fast head was not used on Gemma-3-270M"
    db = np.abs((fast[:, 0] - fast[:, 1]) - (full[:, 0] - full[:, 1]))
    assert db.max() <= B_TOL, f"max |Δb| {db.max():.3g}"


def test_fast_head_point_alone_equals_in_batch(model, prompt, vec):
    """Batch invariance holds on the fast path too: bit-identical alone and in any batch."""
    ids = _yes_no(model)
    points = [[pyintro.Injection(vec, layer, 8.0, "all")] for layer in range(model.n_layer)]
    together = model.points(prompt, points, vocab_ids=ids)
    assert _head_used(model, ids)
    for j in (0, 7, model.n_layer - 1):
        alone = model.points(prompt, [points[j]], vocab_ids=ids)
        assert np.array_equal(alone[0], together[j])


def test_full_vocabulary_requests_keep_the_full_path(model, prompt):
    """stats (normalised p, top token) need every logit: those calls never use the head."""
    ids = _yes_no(model)
    with pyintro.Model.load(model.path, n_threads=2, fast_head=False) as full:
        want = full.points(prompt, [[]], vocab_ids=ids, stats=True)
    got = model.points(prompt, [[]], vocab_ids=ids, stats=True)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


SUPPORTED = sorted(a for a, s in STATUS.items() if s == "supported" and specs()[a]["loads"]
                   and specs()[a].get("decode", "ok") == "ok")
# Architectures whose head has a post-op the fast head reproduces: it must be used there.
POST_OPS = {"gemma2": "softcap", "phi2": "output bias", "granite": "logit scale", "cohere2": "logit scale"}


@pytest.mark.parametrize("arch", SUPPORTED)
def test_architecture_fast_head(arch, tmp_path):
    path = tiny(arch, tmp_path)
    ids = [3, 17, 40, 63]
    fast, full, used = _compare(path, ids, IDS, n_ctx=256, chat_template="raw")
    if used:
        assert mismatch(fast, full) <= MATCH_TOL
    else:  # the full path ran: the very same numbers
        assert np.array_equal(fast, full)
    if arch in POST_OPS or arch in ("llama", "qwen2", "gemma3") or arch in RECURRENT:
        assert used, f"{arch}: the fast head fell back to the full path"


@pytest.mark.parametrize("arch,scale", [("granite", 4.0), ("cohere2", 0.25)])
def test_logit_scale(arch, scale, tmp_path):
    """granite divides the logits by its logit_scale, cohere2 multiplies: the head does the same."""
    spec = specs()[arch]
    path = write(tmp_path / f"{arch}.gguf", arch, dict(spec["meta"], logit_scale=scale), spec["tensors"])
    ids = [3, 17, 40, 63]
    fast, full, used = _compare(path, ids, IDS, n_ctx=256, chat_template="raw")
    assert used and mismatch(fast, full) <= MATCH_TOL


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_1"])
def test_quantized_output_matrix(qtype, tmp_path):
    """The head's dot product runs in the output matrix's own type (here quantized by llama.cpp)."""
    src = tiny("phi2", tmp_path)  # an untied output.weight and an output bias
    path = quantize(src, tmp_path / f"phi2-{qtype}.gguf", qtype)
    ids = [3, 17, 40, 63]
    fast, full, used = _compare(path, ids, IDS, n_ctx=256, chat_template="raw")
    assert used and mismatch(fast, full) <= MATCH_TOL


def test_unreproduced_post_op_falls_back(tmp_path):
    """minicpm3 scales its hidden state before the unembedding (scale_lmhead), which the head
    does not reproduce: the first call sees the difference and the full path runs from then on."""
    path = tiny("minicpm3", tmp_path)
    fast, full, used = _compare(path, [3, 17], IDS, n_ctx=256, chat_template="raw")
    assert not used and np.array_equal(fast, full)
