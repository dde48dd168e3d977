"""Experiment 2 (thoughts vs text): invariants of its judge-free scores, resume, shards, CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from pyintro import Injection, Positions
from pyintro.cli import main
from pyintro.experiments import merge, pairs, thoughts, thoughts_analysis
from pyintro.stimuli import CONCEPT_WORDS, SENTENCES

GRID = dict(layers=[9, 19], strengths=[0.0, 4.0])


@pytest.fixture(scope="module")
def rows(m, lib, pair_list, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp2") / "results.csv"
    return thoughts.thoughts(m, lib, pair_list[:2], out=out, progress=False, **GRID), out


def by_key(rows):
    return {thoughts.SCHEMA.key(r): r for r in rows}


SCORES = ("think_top1", "think_rank", "think_norm_top1", "think_norm_rank", "think_lp", "repeat_lp", "repeat_exact",
          "repeat_match", "joint", "reply")


def test_pairs_are_seeded_and_never_hold_their_word():
    ps = pairs.pairs()
    assert len(ps) == 50 and ps == pairs.pairs() and ps != pairs.pairs(seed=1)
    assert sorted(w for _, _, w in ps) == sorted(CONCEPT_WORDS)  # 50 sentences, each word once
    assert not any(pairs.contains_word(s, w) for _, s, w in ps)
    assert pairs.contains_word("Snowflakes drifted lazily from the gray sky.", "Snow")
    assert pairs.contains_word("Bees buzzed around the flowering cherry tree.", "Trees")
    assert pairs.contains_word(SENTENCES[[i for i, s in enumerate(SENTENCES) if "memories" in s][0]], "Memories")


def test_strength_zero_equals_no_injection(m, lib, pair_list, rows):
    rows, _ = rows
    k = by_key(rows)
    for i, _, w in pair_list[:2]:
        none = k[("none", i, -1, 0.0)]
        for L in GRID["layers"]:
            zero = k[("injected", i, L, 0.0)]
            assert tuple(zero[c] for c in SCORES) == tuple(none[c] for c in SCORES)
        assert any(k[("injected", i, L, 4.0)]["think_lp"] != none["think_lp"] for L in GRID["layers"])
    # and in the engine: a strength-0 injection on the sentence equals none, bit for bit
    i, s, w = pair_list[0]
    P = thoughts.PairPrompts(m, i, s, w, CONCEPT_WORDS, 0)
    zero = m.score(P.think_ids, [[Injection(lib[w], 9, 0.0, positions=Positions.tokens(P.think_span))]], P.candidates)
    assert np.array_equal(zero, m.score(P.think_ids, [[]], P.candidates), equal_nan=True)


def test_forced_choice_batched_equals_each_candidate_alone(m, lib, pair_list, rows):
    rows, _ = rows
    i, s, w = pair_list[1]
    P = thoughts.PairPrompts(m, i, s, w, CONCEPT_WORDS, 0)
    assert m.detokenize([P.think_ids[k] for k in P.think_span]).strip() == s  # the sentence's tokens only
    assert len(P.choices) == 10 and P.choices[0] == w and len(set(P.choices)) == 10
    inj = [[Injection(lib[w], 19, 4.0, positions=Positions.tokens(P.think_span))]]
    batched = m.score(P.think_ids, inj, P.candidates)[0]  # [10, max_len]
    for c, cand in enumerate(P.candidates):
        alone = m.score(P.think_ids, inj, [cand])[0, 0]
        assert np.array_equal(alone, batched[c, :len(cand)])
    row = by_key(rows)[("injected", i, 19, 4.0)]
    summed = np.nansum(batched, axis=1)
    assert row["think_lp"] == summed[0] and row["think_rank"] == 1 + int(np.sum(summed > summed[0]))
    # the text side: the greedy reply and the sentence's log-probability, each decoded alone
    rinj = [Injection(lib[w], 19, 4.0, positions=Positions.tokens(P.repeat_span))]
    reply = m.generate(P.repeat_ids, P.max_tokens, inject=rinj)[0]
    assert row["reply"] == thoughts._own_turn(m, m.detokenize([t for t in reply if not m.is_eog(t)], special=False))
    assert row["repeat_lp"] == np.nansum(m.score(P.repeat_ids, [rinj], [P.answer])[0, 0])
    assert row["repeat_match"] == int(thoughts.normalise(s) in thoughts.normalise(row["reply"]))


def test_resume_gives_the_same_csv(m, lib, pair_list, rows, tmp_path):
    _, full = rows
    text = full.read_text()
    lines = text.splitlines(keepends=True)
    out = tmp_path / "results.csv"
    assert len(lines) == 1 + 2 * 9  # the header, then each pair's uninjected row and its 2 x 4 points
    out.write_text("".join(lines[:12]) + lines[12][:10])  # killed while writing the second pair's rows
    (tmp_path / "results.csv.json").write_text(full.with_name("results.csv.json").read_text())
    thoughts.thoughts(m, lib, pair_list[:2], out=out, resume=True, progress=False, **GRID)
    assert out.read_text() == text


def test_shards_merge_to_the_unsharded_run(m, lib, pair_list, rows, tmp_path):
    rows, _ = rows
    dirs = []
    for k in (1, 2):
        d = tmp_path / f"s{k}"
        d.mkdir()
        thoughts.thoughts(m, lib, pair_list[:2], out=d / "results.csv", shard=(k, 2), progress=False, **GRID)
        dirs.append(d)
    merged = tmp_path / "merged"
    merged.mkdir()
    _, summary = merge(dirs, merged)
    got = by_key(thoughts.SCHEMA.read(merged / "results.csv"))
    want = by_key(rows)
    assert set(got) == set(want)
    for k, r in got.items():
        assert all(r[c] == want[k][c] or (isinstance(r[c], float) and np.isnan(r[c]) and np.isnan(want[k][c]))
                   for c in thoughts.SCHEMA.columns), k
    assert summary["n_pairs"] == 2 and (merged / "thoughts.png").stat().st_size > 0


def test_merge_names_missing_shards_and_refuses_other_runs(m, lib, pair_list, tmp_path):
    dirs = [tmp_path / "s1", tmp_path / "s2"]
    for d, (k, seed) in zip(dirs, ((1, 0), (2, 1))):
        d.mkdir()
        thoughts.thoughts(m, lib, pair_list[:2], layers=[9], strengths=[4.0], seed=seed, out=d / "results.csv",
                          shard=(k, 2), progress=False)
    with pytest.raises(ValueError, match="shards 2 of 2 are missing"):
        merge(dirs[:1], tmp_path / "m")
    with pytest.raises(ValueError, match="different seed"):
        merge(dirs, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_cells_and_summary(rows):
    rows, _ = rows
    cs = thoughts_analysis.cells(rows)
    none = next(c for c in cs if c["condition"] == "none")
    assert none["n"] == 2 and none["layer"] == -1 and none["repeat_lp_shift"] == 0.0
    cell = next(c for c in cs if (c["condition"], c["layer"], c["strength"]) == ("injected", 19, 4.0))
    rs = [r for r in rows if (r["condition"], r["layer"], r["strength"]) == ("injected", 19, 4.0)]
    assert cell["think"] == np.mean([r["think_top1"] for r in rs]) and cell["joint"] <= cell["think"]
    head = thoughts_analysis.summary(rows)
    assert head["best_cell"]["condition"] == "injected" and head["chance"] == 0.1


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result):
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip() and not ln.startswith("Warning:")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_cli_thoughts_quick(lib_dir, tmp_path):
    r = invoke("thoughts", "--quick", "--pairs", 1, "--layers", "10,20", "--strengths", "8", "--library", lib_dir,
               "--out", tmp_path / "t", "--threads", 2)
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["n_pairs"] == 1 and summary["uninjected"]["condition"] == "none"
    assert (tmp_path / "t" / "thoughts.png").stat().st_size > 0 and "best cell" in r.output


def test_bad_input_is_one_line_and_keeps_finished_rows(m, lib, lib_dir, pair_list, tmp_path):
    sents = tmp_path / "sentences.txt"
    sents.write_text("The old clock ticked.\n\nA second sentence.\n")
    base = ["--library", lib_dir, "--threads", 2]
    assert "line 2 of" in one_line_error(invoke("thoughts", "--sentences", sents, "--out", tmp_path / "a", *base))
    assert "out of range" in one_line_error(invoke("thoughts", "--layers", "99", "--out", tmp_path / "b", *base))
    assert "out of range" in one_line_error(invoke("thoughts", "--strengths", "-1", "--out", tmp_path / "c", *base))
    assert "at least 10" in one_line_error(invoke("thoughts", "--words", "Dust,Peace", "--out", tmp_path / "d",
                                                  *base))
    # a refused resume leaves the rows already written as they were
    out = tmp_path / "r.csv"
    thoughts.thoughts(m, lib, pair_list[:1], layers=[9], strengths=[4.0], out=out, progress=False)
    before = out.read_text()
    with pytest.raises(ValueError, match="out of range"):
        thoughts.thoughts(m, lib, pair_list[:1], layers=[9, 99], strengths=[4.0], out=out, resume=True,
                          progress=False)
    assert out.read_text() == before
