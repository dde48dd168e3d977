"""Experiment 1 end to end: the concept library, the judge-free scores (or graded trials),
their cells, figures drawn like the paper's and summary.json."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

from pyintro import concepts, plots
from pyintro.experiments import detection, trials
from pyintro.experiments.common import evenly_spaced
from pyintro.results import provenance, write_json, write_rows
from pyintro.stimuli import CATEGORY_WORDS, CITATION, CONCEPT_WORDS

QUICK = {"concepts": 5, "layers": 6, "bias": 4, "category": 4, "trials": 4, "control": 8, "max_tokens": 48}


def run(model, out_dir, words: Optional[Sequence[str]] = None, library=None, layers=None,
        strengths: Sequence[float] = detection.STRENGTHS, n_trials: Optional[int] = None, judge_model=None,
        prompt_name: str = "paper", n_bias: Optional[int] = None, quick: bool = False, seed: int = 0, shard=None,
        resume: bool = False, progress=None) -> dict:
    """Experiment 1 into ``out_dir`` (which must exist): judge-free scores by default, or
    ``n_trials`` sampled trials per cell graded by ``judge_model`` (or keywords). ``quick``
    picks a size that finishes in minutes: 5 concepts, 6 layers, 4 bias questions, 4 words of
    each category (trials: 4 per cell, 8 controls, 48 tokens). Returns the summary."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    words = concepts.check_words(words if words is not None else CONCEPT_WORDS[:QUICK["concepts"]] if quick else None)
    if layers is None and quick:
        layers = evenly_spaced(model.n_layer, QUICK["layers"])
    n_cat = QUICK["category"] if quick else None
    needed = list(words) + ([w for ws in CATEGORY_WORDS.values() for w in ws[:n_cat]] if n_trials is None else [])
    vectors = concepts.library(model, dict.fromkeys(needed), out=library, progress=progress)
    summary = {"experiment": "Lindsey (2025), experiment 1: detecting injected thoughts", "source": CITATION,
               "mode": "judge-free scores" if n_trials is None else f"{n_trials} sampled trials per cell",
               "provenance": provenance(model)}
    if n_trials is None:
        rows = detection.detect(model, vectors, words, layers, strengths, n_bias=QUICK["bias"] if quick and n_bias is None
                                else (20 if n_bias is None else n_bias), n_category=n_cat, seed=seed,
                                out=out_dir / "results.csv", resume=resume, shard=shard, progress=progress)
        cells = detection.cells(rows)
        write_rows(out_dir / "cells.csv", cells, detection.CELL_COLUMNS)
        head = detection.summary(rows)
        plots.by_depth(cells, out_dir / "scores.png", [("intro", "introspection-specific b shift", None),
                                                       ("auroc_b", "AUROC, concept vs random (b)", 0.5),
                                                       ("id10", "identification, 10-way top-1", 0.1)],
                       title=f"{Path(model.path).name}: experiment 1, judge-free", condition="concept")
        plots.per_concept(rows, out_dir / "concepts.png", "intro", "introspection-specific b shift (best cell)",
                          "each concept at its own best (layer, strength)")
        summary.update(head, files=["results.csv", "cells.csv", "scores.png", "concepts.png", "summary.json"])
        summary["report"] = _score_report(head)
    else:
        from pyintro.judge import Judge

        judge = Judge(judge_model) if judge_model is not None else None
        rows = trials.trials(model, vectors, words, layers, strengths, n_trials=n_trials,
                             n_control=QUICK["control"] if quick else 100,
                             max_tokens=QUICK["max_tokens"] if quick else 100, prompt_name=prompt_name, judge=judge,
                             seed=seed, out=out_dir / "trials.csv", resume=resume, shard=shard, progress=progress)
        cells = trials.rates(rows)
        write_rows(out_dir / "cells.csv", cells)
        plots.by_depth(cells, out_dir / "rates.png", [("net", "success rate − false-positive rate", 0.0),
                                                      ("affirmative", "affirmative answers", None)],
                       title=f"{Path(model.path).name}: experiment 1, {'judge ' + judge.name if judge else 'keywords'}")
        best = max(cells, key=lambda c: c["net"]) if cells else None
        summary.update(best_cell=best, by_category=trials.rates(rows, by="category"),
                       grader="judge" if judge else "keywords (cruder than a judge)",
                       judge=judge.describe() if judge else None,
                       files=["trials.csv", "cells.csv", "rates.png", "summary.json"])
        summary["report"] = [f"false-positive rate (control trials): {best['false_positive']:.2f}" if best else
                             "no trials", f"best cell: layer {best['layer']} strength {best['strength']:g}: success "
                             f"{best['success']:.2f}, net {best['net']:+.2f}" if best else ""]
    summary["elapsed_s"] = round(time.perf_counter() - start, 1)
    write_json(out_dir / "summary.json", summary)
    return summary


def _score_report(head: dict) -> list[str]:
    b = head["best_cell"]
    lines = [f"uninjected: b = {head['uninjected']['b']:+.3f}, bias questions' b = {head['uninjected']['bias_b']:+.3f}"]
    if b:
        r = head["random_at_best_cell"] or {}
        lines += [f"best cell: layer {b['layer']} (depth {b['depth']:.2f}), strength {b['strength']:g}: "
                  f"introspection-specific shift {b['intro']:+.3f} (random vectors: {r.get('intro', float('nan')):+.3f}), "
                  f"AUROC vs random {b['auroc_b']:.2f}, 10-way identification {b['id10']:.0%}"]
    return lines
