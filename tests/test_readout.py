"""Yes/No readout against direct computations from full logits."""

import numpy as np
import pytest

import pyintro
from pyintro import Injection
from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION, Question, prompt_ids
from pyintro.model import Settings
from pyintro.readout import POOLED_NO as DEFAULT_NO, POOLED_YES as DEFAULT_YES, Belief, belief, yes_no, yes_no_ids
from pyintro.readout import single_token_ids as answer_ids


@pytest.fixture(scope="module")
def ids(m):
    return prompt_ids(m, Question("introspection", INTROSPECTION))


def lse(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x.max() + np.log(np.exp(x - x.max()).sum()))


def test_answer_ids_keep_single_token_variants(m):
    for words in (DEFAULT_YES, DEFAULT_NO):
        got = answer_ids(m, words)
        single = [m.tokenize(w, special=False) for w in words]
        expected = list(dict.fromkeys(t[0] for t in single if len(t) == 1))
        assert got == expected
        assert all(m.tokenize(m.token_str(i), special=False) == [i] for i in got)
    # a word that is several tokens is dropped; nothing left is an error
    long = "Yesterday-ish-affirmative"
    assert len(m.tokenize(long, special=False)) > 1
    assert answer_ids(m, ["Yes", long]) == answer_ids(m, ["Yes"])
    with pytest.raises(ValueError, match="single token"):
        answer_ids(m, [long])
    with pytest.raises(ValueError, match="share a token"):
        yes_no_ids(m, ["Yes"], ["Yes", "No"])


def test_default_readout_is_the_plain_logit_difference(m, ids):
    # The default answer tokens are "Yes" and "No", one token each (the follow-up post's b).
    bel = m.belief(ids)
    logits = m.logits(ids)[0]
    (y,), (n,) = bel.yes_ids, bel.no_ids
    assert (m.token_str(y), m.token_str(n)) == ("Yes", "No")
    assert bel.b == float(logits[y]) - float(logits[n])  # bit for bit


def test_belief_equals_logsumexp_of_full_logits(m, ids):
    bel = m.belief(ids, yes=DEFAULT_YES, no=DEFAULT_NO)  # the pooled spellings
    assert isinstance(bel, Belief)
    logits = m.logits(ids)[0].astype(np.float64)  # [n_vocab]
    yes, no = answer_ids(m, DEFAULT_YES), answer_ids(m, DEFAULT_NO)
    assert bel.yes_ids == tuple(yes) and bel.no_ids == tuple(no)
    ly, ln, lz = lse(logits[yes]), lse(logits[no]), lse(logits)
    assert bel.b == ly - ln  # the same float64 arithmetic on the same logits
    # p_* divide by a partition function summed in float32 (pairwise: relative error about
    # log2(n_vocab) * 2**-24 = 1e-6), against float64 here; 1e-4 leaves room.
    assert bel.p_yes == pytest.approx(np.exp(ly - lz), rel=1e-4)
    assert bel.p_no == pytest.approx(np.exp(ln - lz), rel=1e-4)
    assert bel.mass == pytest.approx(bel.p_yes + bel.p_no)
    # the sets' probabilities are the sums of their tokens' softmax probabilities
    p = np.exp(logits - lz)
    assert bel.p_yes == pytest.approx(p[yes].sum(), rel=1e-4)
    order = np.argsort(-logits)[:5]
    assert [t for t, _ in bel.top] == [m.token_str(int(i)) for i in order]
    assert [q for _, q in bel.top] == pytest.approx(p[order], rel=1e-4)


def test_single_variants_give_plain_logit_difference(m, ids):
    bel = belief(m, ids, yes=["Yes"], no=["No"])
    logits = m.logits(ids)[0]
    (y,), (n,) = bel.yes_ids, bel.no_ids
    assert m.tokenize("Yes", special=False) == [y]
    assert bel.b == float(logits[y]) - float(logits[n])


def test_belief_under_injection(m, ids):
    rng = np.random.default_rng(7)
    v = rng.standard_normal(m.n_embd).astype(np.float32) * 8.0
    inj = [Injection(v, 12, 1.0)]
    clean, pushed = m.belief(ids), m.belief(ids, inject=inj)
    with pyintro.Model.load(m.path, n_threads=2, n_gpu_layers=m.n_gpu_layers,
                            settings=Settings(reuse_prefix=False)) as alone:
        logits = alone.logits(ids, inject=inj)[0]  # the prompt decoded alone: the same logits
    assert pushed.b == lse(logits[list(pushed.yes_ids)]) - lse(logits[list(pushed.no_ids)])
    assert abs(pushed.b - clean.b) > 1e-3  # the injection changes the answer


def test_scores_gathered_mode_normalises_over_the_answer_tokens(m, ids):
    yes, no = yes_no_ids(m)
    inj = [[], [Injection(np.ones(m.n_embd, np.float32), 5, 3.0)]]
    full, stats = m.points(ids, inj, stats=True)  # [2, n_vocab], [2, 3]
    part, part_stats = m.points(ids, inj, vocab_ids=yes + no, stats=True)  # [2, n_yes + n_no], [2, 3]
    cols = range(len(yes)), range(len(yes), len(yes) + len(no))
    s_full, s_part, s_norm = yes_no(full, yes, no, stats), yes_no(part, *cols, part_stats), yes_no(part, *cols)
    # The engine's row statistics are the full rows' (the same decodes: exact), so gathering
    # changes nothing; the log-sum-exp is summed in double, as here in numpy (float64 rounding).
    assert np.array_equal(stats, part_stats)
    assert list(stats[:, 2]) == list(np.argmax(full, axis=1)) and np.array_equal(stats[:, 0], full.max(axis=1))
    assert stats[:, 1] == pytest.approx([lse(r) for r in full], rel=1e-12)
    for s in (s_part, s_norm):
        assert np.array_equal(s["b"], s_full["b"])  # the same logits, gathered or not
    assert np.array_equal(s_part["p_yes"], s_full["p_yes"]) and list(s_part["top"]) == list(s_full["top"])
    assert s_norm["p_yes"] + s_norm["p_no"] == pytest.approx(np.ones(2))  # normalised over the answer tokens
    assert s_norm["top"] is None
    with pytest.raises(ValueError, match="2-D"):
        yes_no(full[0], yes, no)


def test_questions_use_the_chat_template(m):
    q = Question("control", CONTROL_NO[0])
    assert prompt_ids(m, q) == m.chat(q.text, system=q.system)
    assert len(CONTROL_NO) >= 10
    with pytest.raises(ValueError):
        Question("", "text")
