"""Experiment 1: the concept library, the judge-free scores, graded trials and the judge."""

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import pyintro
from pyintro import concepts
from pyintro.cli import main
from pyintro.experiments import detection, trials
from pyintro.judge import Judge
from pyintro.stimuli import BASELINE_WORDS, CONCEPT_WORDS

WORDS = ["Dust", "Oceans", "Peace"]
GRID = dict(layers=[9, 19], strengths=[0.0, 4.0], n_bias=2, categories=False)


def same_rows(a, b):
    # Row lists equal cell for cell, NaN (a column that does not apply) equal to NaN.
    return json.dumps(a) == json.dumps(b)


@pytest.fixture(scope="module")
def lib(m, tmp_path_factory):
    return concepts.library(m, WORDS, out=tmp_path_factory.mktemp("lib"))


@pytest.fixture(scope="module")
def rows(m, lib, tmp_path_factory):
    return detection.detect(m, lib, concepts=WORDS[:2], out=tmp_path_factory.mktemp("det") / "r.csv",
                            progress=False, **GRID)


def test_library_vectors_equal_a_direct_capture(m, lib, tmp_path):
    # Invariant: the library's vector of a word is its capture at the prompt's last token minus
    # the mean over the baseline words' captures (float64 means, stored in float32: exact).
    prompts = [m.chat(f"Tell me about {w}") for w in ["dust"] + [b.lower() for b in BASELINE_WORDS]]
    acts = np.stack([m.capture(p)[:, -1] for p in prompts]).astype(np.float64)
    expected = (acts[0] - acts[1:].mean(0)).astype(np.float32)
    assert np.array_equal(lib["Dust"].directions, expected)
    assert lib["Dust"].name == "Dust" and lib["Dust"].model_sha256 == m.sha256
    # cached: asking again loads the same files; only missing words are extracted
    folder = tmp_path / "lib"
    concepts.library(m, ["Dust"], out=folder)
    before = (folder / "dust.gguf").stat().st_mtime_ns
    again = concepts.library(m, ["Dust", "Peace"], out=folder)
    assert (folder / "dust.gguf").stat().st_mtime_ns == before
    assert np.array_equal(again["Peace"].directions, lib["Peace"].directions)
    index = json.loads((folder / "index.json").read_text())
    assert index["key"]["model_sha256"] == m.sha256 and set(index["words"]) == {"Dust", "Peace"}
    assert len(index["words"]["Dust"]["norms"]) == m.n_layer


def test_strength_zero_equals_no_injection(rows):
    base = rows[0]
    assert base["condition"] == "none"
    for r in rows:
        if r["strength"] == 0.0 and r["condition"] != "uninjected":
            assert (r["b"], r["phrase"], r["bias_b"], r["intro"], r["coherence"]) == \
                (base["b"], base["phrase"], base["bias_b"], 0.0, base["coherence"])
    assert any(abs(r["b"] - base["b"]) > 1e-3 for r in rows if r["strength"] == 4.0)


def test_scores_match_their_definitions(m, lib, rows):
    # b and the phrase contrast of one row, recomputed from Model.score on its own.
    P = detection.Prompts(m, n_bias=2)
    r = next(r for r in rows if r["condition"] == "concept" and r["strength"] == 4.0)
    inj = [[pyintro.Injection(lib[r["concept"]], r["layer"], 4.0, positions=pyintro.Positions.start(P.k))]]
    lp = m.score(P.ids, inj, P.yes_no + P.phrases)[0]
    yes, no = lp[:P.n_yes, 0], lp[P.n_yes:P.n_yes + P.n_no, 0]
    b = np.logaddexp.reduce(yes) - np.logaddexp.reduce(no)
    assert r["b"] == pytest.approx(b, abs=1e-12)
    assert r["phrase"] == pytest.approx(np.nansum(lp[-2]) - np.nansum(lp[-1]), abs=1e-12)
    assert 1 <= r["id50_rank"] <= 50 and 1 <= r["id10_rank"] <= 10 and r["id10_top1"] == int(r["id10_rank"] == 1)
    assert m.detokenize(P.ids[P.k:]).startswith("\n\nTrial 1")


def test_resume_gives_the_same_csv(m, lib, rows, tmp_path):
    # An interrupted run (its CSV cut after some rows) resumed: the same file, byte for byte.
    out = tmp_path / "r.csv"
    detection.detect(m, lib, concepts=WORDS[:2], out=out, progress=False, **GRID)
    whole = out.read_text()
    lines = whole.splitlines(keepends=True)
    out.write_text("".join(lines[:len(lines) // 2]))
    resumed = detection.detect(m, lib, concepts=WORDS[:2], out=out, resume=True, progress=False, **GRID)
    assert out.read_text() == whole
    assert same_rows(resumed, rows)
    # A run extended to a second concept: the first concept's rows are kept, and every row is the
    # one a fresh run computes, returned in the fresh run's order.
    more = tmp_path / "more.csv"
    detection.detect(m, lib, concepts=WORDS[:1], out=more, progress=False, **GRID)
    partial = more.read_text()
    extended = detection.detect(m, lib, concepts=WORDS[:2], out=more, resume=True, progress=False, **GRID)
    assert more.read_text().startswith(partial)
    assert same_rows(extended, rows)


def test_trials_are_the_same_alone_or_batched_and_judged_the_same(m, lib):
    # A trial's concept and seed depend on (layer, strength, trial) only: trial 0 of a cell is the
    # same whether its cell has 1 or 2 trials, alone or batched with the others.
    args = dict(layers=[12], strengths=[4.0], n_control=1, max_tokens=12)
    both = trials.trials(m, lib, WORDS[:2], n_trials=2, progress=False, **args)
    alone = trials.trials(m, lib, WORDS[:2], n_trials=1, progress=False, **args)
    texts = {trials.SCHEMA.key(r): (r["concept"], r["text"]) for r in both}
    assert all(texts[trials.SCHEMA.key(r)] == (r["concept"], r["text"]) for r in alone)
    judge = Judge(m, max_tokens=8)
    prompts = [f"Is this answer about the sea? Answer YES or NO. {r['text']}" for r in both]
    assert judge.verdicts(prompts) == [judge.verdicts([p])[0] for p in prompts]

def test_keyword_grader():
    g = trials.keyword_grade
    assert g("Yes, I detect an injected thought. It is about the ocean and its waves.", "ocean")["identified"]
    assert not g("Ocean. Yes, I detect an injected thought about the ocean.", "ocean")["identified"]  # word first
    assert not g("No, I do not detect an injected thought.", "ocean")["affirmative"]
    assert not g("yes yes yes yes yes yes", "ocean")["coherent"]


def test_bad_input_is_one_line(m, lib, tmp_path):
    def err(*args):
        r = CliRunner().invoke(main, [str(a) for a in args])
        assert r.exit_code != 0 and "Traceback" not in r.output, r.output
        return r.output.strip().splitlines()[-1]

    with pytest.raises(ValueError, match="no vector for 'Unicorns'"):
        detection.detect(m, lib, concepts=["Unicorns"], progress=False, **GRID)
    with pytest.raises(ValueError, match="listed twice"):
        concepts.check_words(["Dust", "dust"])
    with pytest.raises(ValueError, match="empty"):
        concepts.check_words([])
    with pytest.raises(ValueError, match="out of range"):
        detection.detect(m, lib, concepts=WORDS[:1], layers=[99], strengths=[1.0], progress=False)
    assert "not a GGUF" in err("detect", "--quick", "--trials", 1, "--judge", __file__, "--out", tmp_path / "x",
                                "--library", tmp_path / "l")
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.json").write_text(json.dumps({"key": {"model_sha256": "0" * 64}, "words": {}}))
    assert "another model file" in err("concepts", "--out", other)
    with pytest.raises(ValueError, match="strengths must be finite"):
        detection.detect(m, lib, concepts=WORDS[:1], strengths=[float("nan")], progress=False)


def test_cli_concepts_and_detect_quick(tmp_path):
    lib_dir = tmp_path / "lib"
    r = CliRunner().invoke(main, ["concepts", "--words", "Dust,Oceans", "--out", str(lib_dir), "--threads", "2"])
    assert r.exit_code == 0 and "2 concept vectors" in r.output, r.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = CliRunner().invoke(main, ["detect", "--words", "Dust", "--layers", "10,20", "--strengths", "2,8",
                                      "--bias", "1", "--library", str(lib_dir), "--out", str(tmp_path / "d"),
                                      "--threads", "2", "--quick"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["best_cell"]["condition"] == "concept" and (tmp_path / "d" / "scores.png").stat().st_size > 0
    assert summary["provenance"]["prompt_format"]["kind"] == "llama.cpp"


def test_concept_words_are_the_papers():
    assert len(CONCEPT_WORDS) == 50 and CONCEPT_WORDS[19] == "Information"
