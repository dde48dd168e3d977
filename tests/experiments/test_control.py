"""Experiment 4 (intentional control): the cosine readout against a direct capture, contrasts,
resume, shards, CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from pyintro.cli import main
from pyintro.experiments import control, control_analysis, merge
from pyintro.experiments.stats import bootstrap
from pyintro.readout import cosines
from pyintro.stimuli import CONTROL_WORDS

CTRL = list(CONTROL_WORDS[:3])
VARIANTS = ["think", "dont_think", "rewarded", "punished", "c2_affirm", "c2_negate"]
ARGS = dict(layers=[5, 20, 29], variant_names=VARIANTS, control_words=CTRL)


@pytest.fixture(scope="module")
def rows(m, lib, pair_list, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp4") / "results.csv"
    return control.control(m, lib, pair_list, out=out, progress=False, **ARGS), out


def test_variants_are_the_papers_prompts():
    v = control.variants()
    assert len(v) == 8 + 8 and list(v)[:2] == ["think", "dont_think"]
    assert v["c1_affirm"].startswith("There is such thing as {word}") and v["c1_negate"].startswith("There is no such")
    assert "you will be rewarded" in v["c4_rewarded"] and "[" not in "".join(v.values())


def test_cosine_equals_a_direct_capture(m, lib, pair_list, rows):
    rows, _ = rows
    i, s, w = pair_list[2]
    ids, span = control.pair_prompt(m, control.variants()["dont_think"], s, w)
    assert m.detokenize([ids[k] for k in span]).strip() == s and span[-1] == len(ids) - 1
    acts = m.capture(ids, ARGS["layers"])[:, span]  # [n_layers, n_tok, n_embd], one prompt alone
    target = lib[w].directions[ARGS["layers"]]
    ctrl = np.stack([lib[c].directions[ARGS["layers"]] for c in CTRL])
    cos, cc = cosines(acts, target, ctrl)
    # and the definition itself, written out for one token
    a, t = acts[1, 0].astype(np.float64), target[1].astype(np.float64)
    assert cos[1, 0] == pytest.approx(a @ t / (np.linalg.norm(a) * np.linalg.norm(t)), abs=1e-12)
    by = {control.SCHEMA.key(r): r for r in rows}
    for j, L in enumerate(ARGS["layers"]):
        r = by[("dont_think", i, L)]
        assert r["cos"] == cos[j].mean() and r["n_tokens"] == len(span)
        assert r["ctrl_mean"] == cc[:, j].mean(axis=1).mean() and r["delta"] == r["cos"] - r["ctrl_mean"]
        assert r["token_cos"] == " ".join(f"{x:.4f}" for x in cos[j])


def test_contrasts_and_bootstrap(rows):
    rows, _ = rows
    cons = {(c["contrast"], c["layer"]): c for c in control_analysis.contrasts(rows)}
    assert {"think_vs_baseline", "think_vs_dont_think", "rewarded_vs_punished", "c2_affirm_vs_negate"} <= \
        {c for c, _ in cons}
    assert ("happy_vs_sad", 5) not in cons  # its variants were not run
    by = {control.SCHEMA.key(r): r for r in rows}
    c = cons[("think_vs_dont_think", 20)]
    d = [by[("think", p, 20)]["cos"] - by[("dont_think", p, 20)]["cos"] for p in range(3)]
    assert c["n"] == 3 and c["mean"] == pytest.approx(np.mean(d), abs=1e-15) and c["lo"] <= c["mean"] <= c["hi"]
    assert bootstrap([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    assert bootstrap([0.0, 1.0], seed=3) == bootstrap([0.0, 1.0], seed=3)


def test_resume_gives_the_same_csv(m, lib, pair_list, rows, tmp_path):
    _, full = rows
    text = full.read_text()
    lines = text.splitlines(keepends=True)
    per_pair = len(VARIANTS) * 3
    assert len(lines) == 1 + 3 * per_pair
    out = tmp_path / "results.csv"
    out.write_text("".join(lines[:1 + 2 * per_pair]) + lines[1 + 2 * per_pair][:30])
    (tmp_path / "results.csv.json").write_text(full.with_name("results.csv.json").read_text())
    control.control(m, lib, pair_list, out=out, resume=True, progress=False, **ARGS)
    assert out.read_text() == text


def test_shards_merge_to_the_unsharded_run(m, lib, pair_list, rows, tmp_path):
    rows, _ = rows
    dirs = []
    for k in (1, 2):
        d = tmp_path / f"s{k}"
        d.mkdir()
        control.control(m, lib, pair_list, out=d / "results.csv", shard=(k, 2), progress=False, **ARGS)
        dirs.append(d)
    merged = tmp_path / "merged"
    merged.mkdir()
    _, summary = merge(dirs, merged)
    got = {control.SCHEMA.key(r): r for r in control.SCHEMA.read(merged / "results.csv")}
    want = {control.SCHEMA.key(r): r for r in rows}
    assert got == want
    assert summary["n_pairs"] == 3 and (merged / "control.png").stat().st_size > 0


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_control_quick(lib_dir, tmp_path):
    r = invoke("control", "--quick", "--pairs", 1, "--control-words", 3, "--layers", "10,25", "--library", lib_dir,
               "--out", tmp_path / "c", "--threads", 2)
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["n_pairs"] == 1 and summary["n_layers"] == 2 and "think − don't think" in r.output
    assert (tmp_path / "c" / "control.png").stat().st_size > 0
    assert len((tmp_path / "c" / "results.csv").read_text().splitlines()) == 1 + 16 * 2


def test_bad_input(m, lib, pair_list, lib_dir, tmp_path):
    with pytest.raises(ValueError, match="variant must be one of"):
        control.control(m, lib, pair_list[:1], layers=[5], variant_names=["ponder"], control_words=CTRL)
    with pytest.raises(ValueError, match="no vector for 'Unicorns'"):
        control.control(m, lib, [(0, "A sentence.", "Unicorns")], layers=[5], control_words=CTRL)
    r = invoke("control", "--control-words", 1, "--library", lib_dir, "--out", tmp_path / "x", "--threads", 2)
    assert r.exit_code == 1 and "between 2 and 100" in r.output and "Traceback" not in r.output
    r = invoke("control", "--words", "Islands", "--pairs", 1, "--library", lib_dir, "--out", tmp_path / "y",
               "--threads", 2)
    assert r.exit_code == 1 and "is also a control word" in r.output


def test_compare_experiment_over_files(m, lib_dir, tmp_path):
    # The plumbing of `pyintro compare --experiment`: the same file twice gives zero drift. (A real
    # quantization ladder is what it is for; test_commands.py builds one for the post's sweep.)
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(lib_dir, cache / "concepts" / m.sha256[:16])
    out = tmp_path / "cmp.csv"
    r = CliRunner().invoke(main, ["compare", str(m.path), str(m.path), "--experiment", "control", "--pairs", "1",
                                  "--quick", "--layers", "10,25", "--out", str(out), "--threads", "2", "--json"],
                           env={"PYINTRO_CACHE": str(cache)})
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert report["metric"] == "mean" and len(report["models"]) == 2
    assert all(e["max_abs_diff"] == 0.0 and e["n_cells"] > 0 for e in report["models"])
    assert (tmp_path / "cmp.png").stat().st_size > 0 and (tmp_path / "cmp-runs" / "01-" f"{m.path.stem}").is_dir()
    r = CliRunner().invoke(main, ["compare", str(m.path), str(m.path), "--experiment", "control", "--strengths", "2",
                                  "--out", str(out)])
    assert r.exit_code == 2 and "injects nothing" in r.output


def test_the_verdict_holds_only_where_the_interval_clears_zero_and_the_wording_controls():
    def head(lo, wording):
        peak = {"mean": lo + 0.01, "lo": lo, "hi": lo + 0.02, "layer": 7}
        return {"n_layers": 30, "think_vs_dont_think": {"peak": peak, "layers_above_zero": 3},
                "c2_affirm_vs_negate": {"peak": {"mean": wording}}}

    assert control_analysis.verdict(head(0.02, 0.01)).startswith("told to think of the word, the model holds it "
                                                                   "closer than when told not to, beyond the wording")
    assert "but not beyond the wording controls' best" in control_analysis.verdict(head(0.02, 0.05))
    assert control_analysis.verdict(head(-0.001, -0.01)).startswith("no layer holds the word closer")
    assert control_analysis.verdict({"n_layers": 30}).startswith("no pairs told both")
