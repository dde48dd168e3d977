"""Every experiment on a hybrid model (issue 25, item 3): the follow-up post's sweep (`run`) and
experiments 1-4 (`detect`, `thoughts`, `prefill`, `control`) run end to end through the CLI on
tiny random-weight files with Qwen3.5's and LFM2's layer layouts and the default model's
vocabulary and chat template (tests/tiny_models.py, ``tiny_chat``), on the smallest grids that
take each experiment's code path. The concept library holds seeded random directions
(``random_library``): extraction on these files is the same capture path test_hybrid.py checks.

Each run must write its rows, exactly as many as its plan counted from the design before it
ran, with finite numbers in its b columns, and its figures and summary."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import random_library, tiny_chat

import pyintro
from pyintro.cli import main
from pyintro.experiments import pairs, prefill
from pyintro.stimuli import CONCEPT_WORDS, CONTROL_WORDS

pytestmark = pytest.mark.slow  # about 2.5 min per model on 2 cores

# The experiment's options, the smallest that exercise its path (the tiny files have 4 layers).
EXPERIMENTS = {
    "run": ["--layers", "1,3", "--strengths", "0,6", "--controls", 1, "--yes-controls", 0, "--random", 1],
    # --shard 1/1: every cell, without the 250 category cells a whole run adds (10 min here)
    "detect": ["--words", "Dust,Peace", "--layers", "3", "--strengths", "4", "--bias", 1, "--shard", "1/1"],
    "thoughts": ["--pairs", 1, "--layers", "2", "--strengths", "8"],
    "prefill": ["--pairs", 1, "--layers", "2", "--strengths", "8"],
    "control": ["--pairs", 1, "--control-words", 2, "--layers", "1,3"],
}


@pytest.fixture(scope="module", params=["qwen35", "lfm2"])
def hybrid(request, tmp_path_factory):
    """(model file, concept library folder) of one hybrid architecture."""
    folder = tmp_path_factory.mktemp(request.param)
    path = tiny_chat(request.param, folder)
    with pyintro.Model.load(path, n_threads=2, n_ctx=1024) as m:
        assert m._engine.recurrent and m.arch == request.param
        words = prefill.needed_words(pairs.pairs(n=1), CONCEPT_WORDS, 0) + list(CONTROL_WORDS)
        (folder / "lib").mkdir()
        return path, random_library(m, words, folder / "lib")


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_runs_on_a_hybrid(name, hybrid, tmp_path):
    path, lib = hybrid
    out = tmp_path / name
    lib_args = [] if name == "run" else ["--library", lib]
    r = CliRunner().invoke(main, [str(a) for a in [name, *EXPERIMENTS[name], *lib_args, "--model", path,
                                                   "--threads", 2, "--out", out]])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    for f in summary["files"]:
        assert (out / f).stat().st_size > 0, f
    rows_file = next(f for f in summary["files"] if f.endswith(".csv"))
    with open(out / rows_file, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == summary["plan"]["rows"] > 0  # every row the design planned, and no other
    if name == "run":  # layers x strengths x (introspection + control) x (caps + 1 random vector)
        assert len(rows) == summary["n_rows"] == 2 * 2 * 2 * 2
    b_cols = [c for c in ("b", "b_pooled") if c in rows[0]]
    if b_cols:
        b = np.array([[float(r[c]) for c in b_cols] for r in rows if r[b_cols[0]] != ""])
        assert b.size and np.all(np.isfinite(b)), f"{name}: b is not finite"
        assert np.unique(b[:, 0]).size > 1, f"{name}: every row has the same b"
