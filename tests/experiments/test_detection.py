"""The free-text detection experiment: prompt, grading, rates, reproducibility."""

import numpy as np
import pytest

from pyintro.experiments.detection import PREAMBLE, TRIAL, grade, run_detection, trial_prompt


class Named:
    """A stand-in for a ConceptVector: directions and a name."""

    def __init__(self, directions, name):
        self.directions, self.name = directions, name


@pytest.fixture(scope="module")
def vec(m):
    rng = np.random.default_rng(11)
    v = rng.standard_normal((m.n_layer, m.n_embd)).astype(np.float32)
    return Named(v / np.linalg.norm(v, axis=1, keepdims=True) * 100.0, "ocean")  # residual-sized


RUN = dict(layers=[8], strengths=[0.0, 1.0], n=2, max_tokens=8, temperature=1.0)


@pytest.fixture(scope="module")
def result(m, vec):
    return run_detection(m, vec, seed=3, **RUN)


def test_injection_starts_at_the_trial_question(m):
    ids, k = trial_prompt(m)
    assert TRIAL in m.detokenize(ids[k:])
    assert "Trial 1" not in m.detokenize(ids[:k])
    assert ids == m.chat(PREAMBLE + "\n\n" + TRIAL)


def test_grade_keywords():
    assert grade("Yes, I detect an injected thought. It is about the ocean.", ["ocean"]) == (True, True)
    assert grade("Yes. The thought is about oceans and waves.", ["ocean"]).identified
    assert grade("I notice something unusual, about mountains.", ["ocean"]) == (True, False)
    assert grade("No, I do not detect an injected thought.", ["ocean"]) == (False, False)
    assert grade("I don't detect anything about the ocean.", ["ocean"]) == (False, False)
    assert grade("The weather is nice today.", ["ocean"]) == (False, False)


def test_rates_are_means_of_graded_trials(result, vec):
    rates, trials = result["rates"], result["trials"]
    assert [(r["layer"], r["strength"]) for r in rates] == [(L, s) for L in RUN["layers"] for s in RUN["strengths"]]
    control = [t for t in trials if not t["injected"]]
    assert len(control) == RUN["n"] and len(trials) == RUN["n"] * (1 + len(rates))
    for t in trials:
        g = grade(t["text"], [vec.name])
        assert (t["detected"], t["identified"]) == (g.detected, g.identified)
    for r in rates:
        cell = [t for t in trials if t["injected"] and (t["layer"], t["strength"]) == (r["layer"], r["strength"])]
        assert len(cell) == RUN["n"]
        assert r["detection_rate"] == np.mean([t["detected"] for t in cell])
        assert r["identification_rate"] == np.mean([t["identified"] for t in cell])
        assert r["false_positive_rate"] == result["false_positive_rate"]
        for name in ("detection_rate", "identification_rate", "false_positive_rate"):
            assert 0.0 <= r[name] <= 1.0
    assert result["false_positive_rate"] == np.mean([t["detected"] for t in control])
    assert all(t["text"] for t in trials)


def test_same_seed_same_result(m, vec, result):
    again = run_detection(m, vec, seed=3, **RUN)
    assert again["trials"] == result["trials"] and again["rates"] == result["rates"]
    other = run_detection(m, vec, seed=4, **dict(RUN, strengths=[0.0]))
    assert [t["text"] for t in other["trials"]] != [t["text"] for t in result["trials"][:4]]


def test_bad_input(m, vec):
    with pytest.raises(ValueError, match="concept"):
        run_detection(m, vec.directions, layers=[1], strengths=[1.0])
    with pytest.raises(ValueError, match="n must be"):
        run_detection(m, vec, layers=[1], strengths=[1.0], n=0)
