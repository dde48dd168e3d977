"""Sweeps against point-by-point beliefs; scaling; files, resume after SIGKILL and Ctrl-C; analysis."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pyintro import Injection, Positions
from pyintro.experiments.sweep import COLUMNS, sweep
from pyintro.experiments.sweep_analysis import analyze
from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION, Question, prompt_ids
from pyintro.norms import strength_factors
from pyintro.vectors import random_like

LAYERS = [2, 12, 24]
STRENGTHS = [0.0, 1.0, 4.0]
QUESTIONS = {"introspection": INTROSPECTION, "control": CONTROL_NO[0]}


@pytest.fixture(scope="module")
def vec(m):
    rng = np.random.default_rng(3)
    v = rng.standard_normal((m.n_layer, m.n_embd)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True) * 6.0  # [n_layer, n_embd]


@pytest.fixture(scope="module")
def rows(m, vec):
    return sweep(m, vec, layers=LAYERS, strengths=STRENGTHS, questions=QUESTIONS, progress=False)


def key(r):
    return (r["question_kind"], r["question"], int(r["layer"]), float(r["strength"]))


def test_sweep_equals_point_by_point_belief(m, vec, rows):
    # Invariant: batch invariance. A point's b is the same, bit for bit, in a sweep's chunk and
    # decoded alone (Model's padding rule and flash attention; docs/numerics.md).
    assert len(rows) == len(LAYERS) * len(STRENGTHS) * len(QUESTIONS)
    assert list(rows[0]) == COLUMNS
    for r in rows:
        ids = prompt_ids(m, Question(r["question_kind"], r["question"]))
        bel = m.belief(ids, inject=[Injection(vec, r["layer"], r["strength"])])
        assert (r["b"], r["p_yes"], r["p_no"], r["top_token"]) == (bel.b, bel.p_yes, bel.p_no, bel.top[0][0])
        assert r["added_norm"] == pytest.approx(r["strength"] * np.linalg.norm(vec[r["layer"]]), rel=1e-5)
        assert (r["model"], r["quant_type"]) == (m.path.name, m.quant_type)


def test_strength_zero_rows_equal_the_uninjected_belief(m, rows):
    # Invariant: strength 0 equals no injection (decoded once per question, the same at every layer).
    zero = [r for r in rows if r["strength"] == 0.0]
    assert len(zero) == len(LAYERS) * len(QUESTIONS)
    for r in zero:
        ids = prompt_ids(m, Question(r["question_kind"], r["question"]))
        clean = m.belief(ids)
        assert (r["b"], r["p_yes"], r["p_no"], r["top_token"]) == (clean.b, clean.p_yes, clean.p_no, clean.top[0][0])
    # and some injected point moves away from it
    assert any(abs(r["b"] - z["b"]) > 1e-2 for r in rows for z in zero if key(r)[:2] == key(z)[:2])


def test_chunk_size_does_not_change_values(m, vec, rows):
    # Invariant: a point alone in its chunk (chunk=1) equals the same point in a full chunk.
    alone = sweep(m, vec, layers=LAYERS, strengths=STRENGTHS, questions=QUESTIONS, chunk=1, progress=False)
    assert alone == rows


def test_gathered_mode_matches_full_vocab_b(m, vec, rows):
    # full_vocab=False reads Yes/No through the fast head: b equal to 1e-4 (the bound the fast
    # head's tests hold it to; bit-identical on the AVX-512 build where it was measured).
    part = sweep(m, vec, layers=LAYERS, strengths=STRENGTHS, questions=QUESTIONS, progress=False, full_vocab=False)
    for a, b in zip(rows, part):
        assert key(a) == key(b)
        assert b["b"] == pytest.approx(a["b"], abs=1e-4)
        assert b["p_yes"] + b["p_no"] == pytest.approx(1.0)
        assert b["top_token"] == ""


def test_relative_scale_uses_the_mean_residual_norm(m, vec):
    qs = {"introspection": INTROSPECTION, "control": CONTROL_NO[1]}
    prompts = [prompt_ids(m, Question(k, t)) for k, t in qs.items()]
    # by hand: norm of the residual per token (first token left out), averaged over both prompts
    per_token = [np.linalg.norm(m.capture(p), axis=2)[:, 1:] for p in prompts]  # [n_layer, n_tok - 1]
    ref = np.concatenate(per_token, axis=1).mean(axis=1)  # [n_layer]
    factor, got_ref = strength_factors(m, vec, [6, 20], "relative", prompts)
    assert got_ref == pytest.approx(ref, rel=1e-5)
    assert factor == pytest.approx(ref / np.linalg.norm(vec, axis=1), rel=1e-5)
    s = 0.5
    rel = sweep(m, vec, layers=[6, 20], strengths=[s], questions=qs, scale="relative", progress=False)
    for r in rel:
        L = r["layer"]
        assert r["added_norm"] == pytest.approx(s * ref[L], rel=1e-4)
        # the same strength, bit for bit (b jumps under last-bit changes of the strength; see
        # docs/numerics.md)
        raw = m.belief(prompt_ids(m, Question(r["question_kind"], r["question"])),
                       inject=[Injection(vec, L, s * factor[L])])
        assert r["b"] == raw.b


def test_positions_from_k_and_all(m, vec):
    # Invariant: batch invariance holds for multi-token injections too (prompt-long points).
    ids = prompt_ids(m, Question("introspection", INTROSPECTION))
    k = len(ids) - 6
    for pos in (Positions.start(k), "all"):
        got = sweep(m, vec, layers=[10, 20], strengths=[0.0, 2.0, 3.0], questions={"introspection": INTROSPECTION},
                    positions=pos, progress=False)
        for r in got:
            bel = m.belief(ids, inject=[Injection(vec, r["layer"], r["strength"], positions=pos)])
            assert r["b"] == bel.b


def test_random_like_keeps_norms_and_is_seeded(vec):
    a, b, c = (random_like(vec, seed=s).directions for s in (1, 1, 2))  # ConceptVectors
    assert a.shape == vec.shape and a.dtype == np.float32
    assert np.linalg.norm(a, axis=1) == pytest.approx(np.linalg.norm(vec, axis=1), rel=1e-5)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    cos = np.sum(a * vec, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(vec, axis=1))
    assert np.abs(cos).max() < 0.3  # random directions in 576-d are nearly orthogonal to v


def test_bad_input(m, vec):
    with pytest.raises(ValueError, match="scale"):
        sweep(m, vec, layers=[1], strengths=[1.0], scale="percent")
    with pytest.raises(ValueError, match="out of range"):
        sweep(m, vec, layers=[m.n_layer], strengths=[1.0])
    with pytest.raises(ValueError, match="positions"):
        sweep(m, vec, layers=[1], strengths=[1.0], positions="first")
    with pytest.raises(ValueError, match="n_layer"):
        sweep(m, vec[0], layers=[1], strengths=[1.0])
    with pytest.raises(ValueError, match="twice"):
        sweep(m, vec, layers=[1], strengths=[1.0, 1.0])


# -- files and resume ---------------------------------------------------------------------------

def read_csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_same_rows(got, want):
    """Same points, same values (resumed chunks are decoded exactly as in an uninterrupted run)."""
    assert sorted(map(key, got)) == sorted(map(key, want))
    by_key = {key(r): r for r in want}
    for r in got:
        w = by_key[key(r)]
        for c in ("b", "p_yes", "p_no", "added_norm"):
            assert float(r[c]) == w[c]
        assert r["top_token"] == w["top_token"]


def test_csv_and_sidecar(m, vec, rows, tmp_path):
    out = tmp_path / "s.csv"
    got = sweep(m, vec, layers=LAYERS, strengths=STRENGTHS, questions=QUESTIONS, out=out, progress=False, seed=5)
    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS and len(df) == len(rows)
    assert df["b"].to_numpy() == pytest.approx([r["b"] for r in got])
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["model_sha256"] == m.sha256 and side["seed"] == 5
    assert side["grid"] == {"layers": LAYERS, "strengths": STRENGTHS}
    assert [p["text"] for p in side["prompts"]] == list(QUESTIONS.values())
    assert side["llama_cpp_python"] == "0.3.36"
    # resuming with a different setup into the same file is refused
    with pytest.raises(ValueError, match="different scale"):
        sweep(m, vec, layers=LAYERS, strengths=STRENGTHS, questions=QUESTIONS, out=out, resume=True,
              scale="relative", progress=False)


def test_resume_refuses_a_sidecar_that_differs_in_what_changes_values(m, vec, tmp_path):
    out = tmp_path / "s.csv"
    args = dict(layers=[5], strengths=[1.0], questions=QUESTIONS, out=out, progress=False)
    sweep(m, vec, **args)
    side = Path(str(out) + ".json")
    meta = json.loads(side.read_text())
    assert meta["numerics"] == m.numerics() and meta["numerics"]["batch_invariant"] is True
    assert "AVX" in meta["numerics"]["system_info"] or "NEON" in meta["numerics"]["system_info"]
    for key, value, field in (("pyintro", "0.0.1", "pyintro"),
                              ("numerics", dict(meta["numerics"], n_batch=512), "numerics.n_batch"),
                              ("prompts", meta["prompts"][:1], "prompts")):
        side.write_text(json.dumps(dict(meta, **{key: value})))
        with pytest.raises(ValueError, match=f"different {field}"):
            sweep(m, vec, resume=True, **args)
    side.write_text(json.dumps(meta))
    assert sweep(m, vec, resume=True, **args) == sweep(m, vec, **dict(args, out=None))


def test_resume_after_truncation(m, vec, rows, tmp_path):
    out = tmp_path / "s.csv"
    sweep(m, vec, layers=LAYERS, strengths=STRENGTHS, questions=QUESTIONS, out=out, progress=False)
    lines = out.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + len(rows)
    with open(out, "w") as f:  # header, 7 rows, and half of the 8th: an interrupted write
        f.write("".join(lines[:8]) + lines[8][: len(lines[8]) // 2])
    calls = []
    got = sweep(m, vec, layers=LAYERS, strengths=STRENGTHS, questions=QUESTIONS, out=out, resume=True,
                progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (len(rows) - 7, len(rows) - 7)  # only the missing points were computed
    on_disk = read_csv_rows(out)
    assert len(on_disk) == len(rows) and len({key(r) for r in on_disk}) == len(rows)
    assert_same_rows(on_disk, rows)
    assert_same_rows(got, rows)
    # resuming a complete file computes nothing and changes nothing
    before = out.read_text()
    calls.clear()
    sweep(m, vec, layers=LAYERS, strengths=STRENGTHS, questions=QUESTIONS, out=out, resume=True,
          progress=lambda done, total: calls.append((done, total)))
    assert calls == [] and out.read_text() == before


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


SCRIPT = textwrap.dedent("""
    import sys, numpy as np, pyintro
    from pyintro.experiments.sweep import sweep
    m = pyintro.Model.load(n_threads=2)
    v = np.load(sys.argv[2])
    sweep(m, v, layers=list(range(0, 30, 6)), strengths=[0.0, 1.0, 2.0, 4.0, 6.0, 8.0],
          questions={"introspection": sys.argv[3], "control": sys.argv[4]}, out=sys.argv[1],
          chunk=6, progress=False, resume=len(sys.argv) > 5)
""")


def test_resume_after_sigkill(m, vec, tmp_path):
    out, vfile = tmp_path / "big.csv", tmp_path / "v.npy"
    np.save(vfile, vec)
    args = [sys.executable, "-c", SCRIPT, str(out), str(vfile), INTROSPECTION, CONTROL_NO[0]]
    proc = subprocess.Popen(args, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 2:  # header and the first chunk landed
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    total = 5 * 6 * 2
    partial = read_csv_rows(out)
    assert 6 <= len(partial) < total  # killed mid-way
    subprocess.run(args + ["resume"], cwd=tmp_path, check=True, timeout=600)
    on_disk = read_csv_rows(out)
    assert len(on_disk) == total and len({key(r) for r in on_disk}) == total
    want = sweep(m, vec, layers=list(range(0, 30, 6)), strengths=[0.0, 1.0, 2.0, 4.0, 6.0, 8.0],
                 questions=QUESTIONS, progress=False, chunk=6)
    assert_same_rows(on_disk, want)


def test_ctrl_c_stops_at_a_chunk_boundary_then_resume_completes(m, vec, tmp_path):
    out, vfile = tmp_path / "big.csv", tmp_path / "v.npy"
    np.save(vfile, vec)
    args = [sys.executable, "-c", SCRIPT, str(out), str(vfile), INTROSPECTION, CONTROL_NO[0]]
    # SIGINT at its default in the child, even when this run's shell started us in the background
    proc = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 2:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=600)
    total = 5 * 6 * 2
    partial = read_csv_rows(out)
    assert proc.returncode != 0 and "Interrupted" in err and "resume" in err, err
    assert 6 <= len(partial) < total and len(partial) % 6 == 0  # whole chunks only (chunk=6)
    assert out.read_text().endswith("\n")
    subprocess.run(args + ["resume"], cwd=tmp_path, check=True, timeout=600)
    on_disk = read_csv_rows(out)
    want = sweep(m, vec, layers=list(range(0, 30, 6)), strengths=[0.0, 1.0, 2.0, 4.0, 6.0, 8.0],
                 questions=QUESTIONS, progress=False, chunk=6)
    assert len(on_disk) == total
    assert_same_rows(on_disk, want)


# -- analysis -----------------------------------------------------------------------------------

def test_analyze_against_numpy(m, vec):
    qs = {"introspection": INTROSPECTION, "control": CONTROL_NO[:3]}
    got_rows = sweep(m, vec, layers=LAYERS, strengths=STRENGTHS + [8.0], questions=qs, progress=False)
    res = analyze(pd.DataFrame(got_rows))
    grid = [(L, s) for L in LAYERS for s in STRENGTHS + [8.0]]
    intro = np.array([[r["b"] for r in got_rows if r["question_kind"] == "introspection"
                       and (r["layer"], r["strength"]) == p][0] for p in grid])  # [n_points]
    ctrl = np.array([[r["b"] for r in got_rows if r["question_kind"] == "control"
                      and (r["layer"], r["strength"]) == p] for p in grid])  # [n_points, 3]
    assert res["n_points"] == len(grid)
    assert [(p["layer"], p["strength"]) for p in res["points"]] == grid
    assert [p["diff"] for p in res["points"]] == pytest.approx(intro - ctrl.mean(axis=1))
    assert [p["exceeds_all"] for p in res["points"]] == list(intro > ctrl.max(axis=1))
    x, y = intro - intro.mean(), ctrl.mean(axis=1) - ctrl.mean()
    r = (x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum())
    assert res["correlation"] == pytest.approx(r, abs=1e-9)
    assert res["fraction_exceeds"] == pytest.approx(np.mean(intro > ctrl.max(axis=1)))
    with pytest.raises(ValueError, match="control"):
        analyze([r for r in got_rows if r["question_kind"] == "introspection"])
