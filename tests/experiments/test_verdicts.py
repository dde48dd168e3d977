"""The statistics behind the verdicts: shifts from the uninjected answers, nulls on the same
candidates, bootstrap intervals, detection thresholds, and the sampled modes of experiments 2
and 3 (resumed and sharded like every experiment)."""

import json

import numpy as np
import pytest

from pyintro.experiments import detection, detection_analysis, merge, prefill_trials, sweep_analysis, thoughts_trials
from pyintro.experiments.detection import Prompts, pool_for
from pyintro.experiments.plan import plan
from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION
from pyintro.experiments.stats import bootstrap, distractors
from pyintro.experiments.sweep import sweep
from pyintro.judge import Judge
from pyintro.readout import rank


@pytest.fixture(scope="module")
def vec(m):
    rng = np.random.default_rng(5)
    v = rng.standard_normal((m.n_layer, m.n_embd)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True) * 6.0


@pytest.fixture(scope="module")
def sweep_rows(m, vec):
    questions = {"introspection": INTROSPECTION, "control": CONTROL_NO[:3]}
    return sweep(m, vec, layers=[4, 16], strengths=[0.0, 3.0, 6.0], questions=questions, n_random=1, progress=False)


def test_shifts_start_from_one_uninjected_point(sweep_rows):
    base = sweep_analysis.uninjected(sweep_rows)
    for r in sweep_rows:
        if r["strength"] == 0.0:  # every strength-0 point is the uninjected answer: its shift is 0
            assert r["b"] - base[(r["question_kind"], r["question"])] == 0.0
    cells = sweep_analysis.shift_cells(sweep_rows, "vector")
    assert {(c["layer"], c["strength"]) for c in cells} == {(L, s) for L in (4, 16) for s in (3.0, 6.0)}
    sh = sweep_analysis.shifts(sweep_rows, "vector", ["random 1"])
    # r on levels counts the uninjected point once, not once per layer
    intro0 = base[("introspection", INTROSPECTION)]
    ctrl0 = np.mean([b for (k, _), b in base.items() if k == "control"])
    x = [intro0] + [intro0 + c["intro_shift"] for c in cells]
    y = [ctrl0] + [ctrl0 + c["control_shift"] for c in cells]
    assert sh["r_levels"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert sh["r_shifts"] == pytest.approx(np.corrcoef([c["intro_shift"] for c in cells],
                                                       [c["control_shift"] for c in cells])[0, 1], abs=1e-12)
    best = sh["best"]
    assert best["specific"] == max(c["specific"] for c in cells)
    assert best["interval"][0] <= best["specific"] <= best["interval"][1]
    assert sh["null_best"]["vector"] == "random 1"
    again = sweep_analysis.shifts(sweep_rows, "vector", ["random 1"])["best"]  # seeded: reproducible
    assert json.dumps(again, sort_keys=True) == json.dumps(best, sort_keys=True)  # NaN (no yes-controls) included


def test_random_vectors_are_norm_matched_and_b_pooled_is_beside_b(m, vec, sweep_rows):
    for r in sweep_rows:
        twin = next(x for x in sweep_rows if x["vector"] != r["vector"] and
                    (x["question"], x["layer"], x["strength"]) == (r["question"], r["layer"], r["strength"]))
        assert r["added_norm"] == pytest.approx(twin["added_norm"], rel=1e-5)
        assert np.isfinite(r["b_pooled"])


def test_a_bootstrap_interval_of_a_constant_is_the_constant():
    assert bootstrap([0.25] * 7, seed=3) == (0.25, 0.25, 0.25)
    assert bootstrap([0.0, 1.0, 0.5], seed=9) == bootstrap([0.0, 1.0, 0.5], seed=9)


def test_null_identification_uses_the_same_candidates(m, lib, pair_list):
    words = [w for _, _, w in pair_list[:2]]
    rows = detection.detect(m, lib, concepts=words, layers=[20], strengths=[4.0], n_bias=1, categories=False,
                            progress=False)
    prompts = Prompts(m, n_bias=1)
    for w in words:
        pool = pool_for(w)
        ten = [w] + distractors(w, pool, 9, 0)
        lp = m.score(prompts.ident_ids, [[]], prompts.candidates(pool))[0]
        summed = np.nansum(lp, axis=1)
        none = next(r for r in rows if (r["condition"], r["concept"]) == ("none", w))
        assert none["id50_rank"] == rank(summed, 0) and none["id10_rank"] == rank(summed, 0, [pool.index(x)
                                                                                             for x in ten])
        for cond in ("concept", "random", "negated"):  # every condition is ranked among the same words
            r = next(r for r in rows if (r["condition"], r["concept"]) == (cond, w))
            assert 1 <= r["id10_rank"] <= 10 and 1 <= r["id50_rank"] <= 50
    thr, neg = detection_analysis.threshold(rows)
    assert len(neg) == 1 + 1 + 2  # the detection question, one bias question, the two other prompt variants
    assert np.mean(np.asarray(neg) > thr) <= 0.05 + 1 / len(neg)
    head = detection_analysis.summary(rows)
    assert "random-vector null's maximum" in head["verdict"] and head["best_cell"]["interval"][0] <= \
        head["best_cell"]["intro"] <= head["best_cell"]["interval"][1]


@pytest.mark.parametrize("module", [thoughts_trials, prefill_trials])
def test_sampled_trials_resume_and_shard_to_the_same_csv(m, lib, pair_list, tmp_path, module):
    def trials(out, resume=False, shard=None):
        work = module.design(m, lib, pair_list[:2], layers=[12], strengths=[8.0], n_trials=2, shard=shard)
        return module.TRIALS.execute(m, work, out, resume, progress=False, shard=shard)

    full = tmp_path / "full.csv"
    trials(full)
    text = full.read_text()
    lines = text.splitlines(keepends=True)
    cut = tmp_path / "cut.csv"
    cut.write_text("".join(lines[:4]) + lines[4][:9])  # killed mid-row
    (tmp_path / "cut.csv.json").write_text(full.with_name("full.csv.json").read_text())
    trials(cut, resume=True)
    assert cut.read_text() == text
    dirs = []
    for k in (1, 2):
        d = tmp_path / f"s{k}"
        d.mkdir()
        trials(d / "results.csv", shard=(k, 2))
        dirs.append(d)
    merge(dirs, tmp_path / "merged")
    # Rows equal cell for cell, NaN (a column that does not apply) equal to NaN.
    got = {str(module.SCHEMA.key(r)): r for r in module.SCHEMA.read(tmp_path / "merged" / "results.csv")}
    want = {str(module.SCHEMA.key(r)): r for r in module.SCHEMA.read(full)}
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


@pytest.mark.parametrize("module", [thoughts_trials, prefill_trials])
def test_a_plan_with_a_judge_counts_its_generations_without_running_them(m, tmp_path, monkeypatch, module):
    def refuse(*_, **__):
        raise AssertionError("the plan generated with the real model")

    options = dict(library_dir=tmp_path, layers=[12], strengths=[8.0], n_pairs=1, n_trials=2)
    without = plan(module.TRIALS, m, calibration=(1e-3, 1e-3, 1e-3), **options)
    monkeypatch.setattr(m, "generate", refuse)
    monkeypatch.setattr(m, "generate_many", refuse)
    judged = plan(module.TRIALS, m, calibration=(1e-3, 1e-3, 1e-3), judge=Judge(m), **options)
    assert judged.rows == without.rows  # the same trials
    assert judged.token_rows > without.token_rows and judged.seconds > without.seconds  # plus the judge's work
