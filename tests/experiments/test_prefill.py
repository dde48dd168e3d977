"""Experiment 3 (prefilled words): invariants of its judge-free scores, resume, shards, CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from pyintro import Injection, Positions
from pyintro.cli import main
from pyintro.experiments import merge, prefill, prefill_analysis
from pyintro.experiments.dialogue import prefill_tokens
from pyintro.readout import logsumexp as lse
from pyintro.stimuli import CONCEPT_WORDS

GRID = dict(layers=[9, 19], strengths=[0.0, 4.0])
SCORES = ("apology", "p_apology", "b_meant")


@pytest.fixture(scope="module")
def rows(m, lib, pair_list, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp3") / "results.csv"
    return prefill.prefill(m, lib, pair_list[:2], out=out, progress=False, **GRID), out


def by_key(rows):
    return {prefill.SCHEMA.key(r): r for r in rows}


def test_dialogue_and_spans(m, pair_list):
    i, s, w = pair_list[0]
    P = prefill.PairPrompts(m, i, s, w, prefill.random_word(w, CONCEPT_WORDS, 0, i))
    assert P.other != w and P.other in CONCEPT_WORDS
    for name, follow in (("phrase", prefill.FOLLOW_UP), ("yes_no", prefill.YES_NO_FOLLOW_UP)):
        ids, sent, after = P.forms[name]
        assert m.detokenize([ids[k] for k in sent]).strip() == s
        assert m.detokenize([ids[k] for k in after]).strip() == follow
        text = m.detokenize(ids)
        assert text.index(s) < text.index(w, text.index(s)) < text.index(follow)  # sentence, prefill, follow-up
        assert max(sent) < min(after)


def test_strength_zero_equals_no_injection(m, lib, pair_list, rows):
    rows, _ = rows
    k = by_key(rows)
    for i, _, _ in pair_list[:2]:
        none = k[("none", i, -1, 0.0)]
        for cond in prefill.CONDITIONS:
            for L in GRID["layers"]:
                assert tuple(k[(cond, i, L, 0.0)][c] for c in SCORES) == tuple(none[c] for c in SCORES)
        assert any(k[("matching", i, L, 4.0)]["apology"] != none["apology"] for L in GRID["layers"])
    i, s, w = pair_list[0]
    P = prefill.PairPrompts(m, i, s, w, "Dust")
    R = prefill.Readout(m)
    ids, sent, _ = P.forms["phrase"]
    zero = m.score(ids, [[Injection(lib[w], 9, 0.0, positions=Positions.tokens(sent))]], R.phrases)
    assert np.array_equal(zero, m.score(ids, [[]], R.phrases), equal_nan=True)


def test_phrases_batched_equal_each_alone(m, lib, pair_list, rows):
    rows, _ = rows
    i, s, w = pair_list[1]
    P = prefill.PairPrompts(m, i, s, w, prefill.random_word(w, CONCEPT_WORDS, 0, i))
    R = prefill.Readout(m)
    ids, sent, after = P.forms["phrase"]
    for cond, span, vec in (("matching", sent, lib[w]), ("random", sent, lib[P.other]), ("after", after, lib[w])):
        inj = [[Injection(vec, 19, 4.0, positions=Positions.tokens(span))]]
        alone = [np.nansum(m.score(ids, inj, [c])[0, 0]) for c in R.phrases]
        batched = np.nansum(m.score(ids, inj, R.phrases)[0], axis=1)
        assert np.array_equal(alone, batched)
        row = by_key(rows)[(cond, i, 19, 4.0)]
        assert row["apology"] == lse(batched[R.n_intent:]) - lse(batched[:R.n_intent])
        assert row["vector_word"] == (P.other if cond == "random" else w)
        yids, ysent, yafter = P.forms["yes_no"]
        yinj = [[Injection(vec, 19, 4.0, positions=Positions.tokens(yafter if cond == "after" else ysent))]]
        first = m.score(yids, yinj, R.yes_no)[0, :, 0]
        assert row["b_meant"] == lse(first[:R.n_yes]) - lse(first[R.n_yes:])


def test_resume_gives_the_same_csv(m, lib, pair_list, rows, tmp_path):
    _, full = rows
    text = full.read_text()
    lines = text.splitlines(keepends=True)
    per_pair = 1 + 3 * 4  # none, then 3 conditions x 4 points
    assert len(lines) == 1 + 2 * per_pair
    out = tmp_path / "results.csv"
    out.write_text("".join(lines[:1 + per_pair + 5]) + lines[1 + per_pair + 5][:7])  # killed mid-write
    (tmp_path / "results.csv.json").write_text(full.with_name("results.csv.json").read_text())
    prefill.prefill(m, lib, pair_list[:2], out=out, resume=True, progress=False, **GRID)
    assert out.read_text() == text


def test_shards_merge_to_the_unsharded_run(m, lib, pair_list, rows, tmp_path):
    rows, _ = rows
    dirs = []
    for k in (1, 2):
        d = tmp_path / f"s{k}"
        d.mkdir()
        prefill.prefill(m, lib, pair_list[:2], out=d / "results.csv", shard=(k, 2), progress=False, **GRID)
        dirs.append(d)
    merged = tmp_path / "merged"
    merged.mkdir()
    _, summary = merge(dirs, merged)
    got, want = by_key(prefill.SCHEMA.read(merged / "results.csv")), by_key(rows)
    assert set(got) == set(want)
    for k, r in got.items():
        for c in prefill.SCHEMA.columns:
            assert r[c] == want[k][c] or (c == "depth" and np.isnan(r[c]) and np.isnan(want[k][c])), (k, c)
    assert summary["n_pairs"] == 2 and (merged / "prefill.png").stat().st_size > 0


def test_cells(rows):
    rows, _ = rows
    cs = {(c["condition"], c["layer"], c["strength"]): c for c in prefill_analysis.cells(rows)}
    none, match, rand = cs[("none", -1, 0.0)], cs[("matching", 19, 4.0)], cs[("random", 19, 4.0)]
    assert match["reduction"] == min(none["p_apology"], rand["p_apology"]) - match["p_apology"]
    assert match["b_gain"] == match["b_meant"] - max(none["b_meant"], rand["b_meant"])
    assert rand["reduction"] == none["p_apology"] - rand["p_apology"]  # the null: the same measure for a random word
    assert cs[("matching", 9, 0.0)]["reduction"] == 0.0  # strength 0: none


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_prefill_quick(lib_dir, tmp_path):
    r = invoke("prefill", "--quick", "--pairs", 1, "--layers", "15", "--strengths", "8", "--library", lib_dir,
               "--out", tmp_path / "p", "--threads", 2)
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["n_pairs"] == 1 and summary["best_cell"]["condition"] == "matching"
    assert (tmp_path / "p" / "prefill.png").stat().st_size > 0 and "P(apology)" in r.output


def test_bad_input(m, lib, lib_dir, pair_list, tmp_path):
    with pytest.raises(ValueError, match="tokenises to nothing"):
        prefill_tokens(m, " ")
    with pytest.raises(ValueError, match="tokenises to nothing"):
        prefill.PairPrompts(m, 0, pair_list[0][1], "", "Dust")
    with pytest.raises(ValueError, match="condition must be one of"):
        prefill.prefill(m, lib, pair_list[:1], layers=[9], strengths=[1.0], conditions=["sideways"], progress=False)
    r = invoke("prefill", "--layers", "-31", "--library", lib_dir, "--out", tmp_path / "x", "--threads", 2)
    assert r.exit_code == 2 and "out of range" in r.output and "Traceback" not in r.output  # checked before loading
    r = invoke("prefill", "--exp1", tmp_path, "--library", lib_dir, "--out", tmp_path / "y", "--threads", 2)
    assert r.exit_code == 1 and "not an experiment-1 output folder" in r.output
