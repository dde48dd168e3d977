"""Experiment 1's judge-free rows summarised, with the paper's decision logic:

- a **detection threshold** set on the uninjected answers (the detection question in each
  prompt variant and each bias question, all of whose true answer is no) at a stated
  false-positive rate (5%), and the **true-positive rate** of injected trials at it;
- **combined success**: detected (b above the threshold) and identified (10-way top-1);
- **coherence**: how far the injection lowers the log-likelihood of a fixed fluent answer, so
  that "brain damage" at high strength is not read as detection;
- **nulls**: every measure for random and negated vectors and no injection on the same
  candidates, and each best cell (a maximum over the grid) beside the best cell of the random
  vectors, with a bootstrap interval over the concepts.
"""

from __future__ import annotations

import math

import numpy as np

from pyintro import plots
from pyintro.experiments.protocol import Analysis
from pyintro.experiments.stats import against_null, auroc, bootstrap

__all__ = ["CELL_COLUMNS", "analyse", "best_layer", "cells", "summary", "threshold"]

CELL_COLUMNS = ["condition", "layer", "depth", "strength", "n", "b_shift", "phrase_shift", "intro", "tpr", "combined",
                "coherence_drop", "incoherent", "auroc_b", "auroc_phrase", "auroc_intro", "id10", "id10_norm", "id50",
                "id50_norm", "id50_rank"]
INCOHERENT = -1.0  # a mean per-token log-likelihood drop (nats) past which a cell is marked incoherent
NULLS = ("random", "negated", "none")


def best_layer(rows, strengths) -> int:
    """The layer where the concept condition's mean ``intro`` is highest, at the strength
    nearest 2 (the paper's strength for its category analysis)."""
    s = min(strengths, key=lambda x: abs(x - 2.0))
    by_layer: dict[int, list] = {}
    for r in rows:
        if r["condition"] == "concept" and float(r["strength"]) == s:
            by_layer.setdefault(int(r["layer"]), []).append(float(r["intro"]))
    if not by_layer:
        raise ValueError("no concept rows to choose the categories' layer from")
    return max(sorted(by_layer), key=lambda L: np.mean(by_layer[L]))


def threshold(rows, fpr: float = 0.05) -> tuple[float, list]:
    """(threshold, negatives): the lowest b that no more than ``fpr`` of the uninjected answers
    (the detection question and every other uninjected prompt, each once) exceed."""
    base = next(r for r in rows if r["condition"] == "none")
    neg = sorted([float(base["b"])] + [float(r["b"]) for r in rows if r["condition"] == "uninjected"])
    return neg[max(0, math.ceil((1 - fpr) * len(neg)) - 1)], neg


def _base(rows) -> dict:
    return next(r for r in rows if r["condition"] == "none")


def cells(rows, fpr: float = 0.05) -> list[dict]:
    """Per (condition, layer, strength), the uninjected rows as one cell (layer -1): the mean
    shifts from the uninjected answers, the mean ``intro``, the true-positive and combined
    success rates at the threshold, the coherence drop, AUROC of concept- against
    random-injected trials (concept rows only), and identification rates (top-1 among 10 and 50;
    the mean 50-way rank)."""
    base, (thr, _) = _base(rows), threshold(rows, fpr)
    groups: dict[tuple, list] = {}
    for r in rows:
        if r["condition"] not in ("category", "uninjected"):
            groups.setdefault((r["condition"], int(r["layer"]), float(r["strength"])), []).append(r)
    order = {"concept": 0, "random": 1, "negated": 2, "none": 3}
    out = []
    for (cond, L, s), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0])):
        col = {c: np.array([float(r[c]) for r in rs]) for c in ("b", "phrase", "intro", "coherence")}
        top10 = np.array([r["id10_top1"] == 1 for r in rs])
        cell = {"condition": cond, "layer": L, "depth": float(rs[0]["depth"]), "strength": s, "n": len(rs),
                "b_shift": float(col["b"].mean() - float(base["b"])),
                "phrase_shift": float(col["phrase"].mean() - float(base["phrase"])),
                "intro": float(col["intro"].mean()),
                "tpr": float(np.mean(col["b"] > thr)), "combined": float(np.mean((col["b"] > thr) & top10)),
                "coherence_drop": float(col["coherence"].mean() - float(base["coherence"]))}
        cell["incoherent"] = int(cell["coherence_drop"] < INCOHERENT)
        rand = groups.get(("random", L, s), [])
        for c in ("b", "phrase", "intro"):
            cell[f"auroc_{c}"] = auroc(col[c], [float(r[c]) for r in rand]) if cond == "concept" else float("nan")
        for c in ("id10", "id10_norm", "id50", "id50_norm"):
            vals = [float(r[c + "_top1"]) for r in rs if r[c + "_top1"] != ""]
            cell[c] = float(np.mean(vals)) if vals else float("nan")
        ranks = [float(r["id50_rank"]) for r in rs if r["id50_rank"] != ""]
        cell["id50_rank"] = float(np.mean(ranks)) if ranks else float("nan")
        out.append(cell)
    return out


def _best(cs, condition: str, column: str):
    pool = [c for c in cs if c["condition"] == condition and math.isfinite(c[column])]
    return max(pool, key=lambda c: (c[column], -c["layer"], -c["strength"])) if pool else None


def _interval(rows, cell, column: str, seed: int = 0) -> list:
    """A 95% bootstrap interval over the concepts of ``column`` at ``cell``."""
    vals = [float(r[column]) for r in rows if r["condition"] == cell["condition"] and int(r["layer"]) == cell["layer"]
            and float(r["strength"]) == cell["strength"] and r[column] != ""]
    _, lo, hi = bootstrap(vals, seed=seed)
    return [lo, hi]


def summary(rows, fpr: float = 0.05) -> dict:
    """The headline figures: the uninjected answers, the threshold, the best concept cell by
    ``intro`` and by identification (each with an interval over concepts) beside the best cell of
    the random vectors and the uninjected identification rate, and each category's means."""
    cs = cells(rows, fpr)
    base = _base(rows)
    thr, neg = threshold(rows, fpr)
    best, null = _best(cs, "concept", "intro"), _best(cs, "random", "intro")
    ident, ident_null = _best(cs, "concept", "id10"), max((c for c in cs if c["condition"] in NULLS and
                                                          math.isfinite(c["id10"])), key=lambda c: c["id10"],
                                                         default=None)
    none = next((c for c in cs if c["condition"] == "none"), None)
    cats: dict[str, list] = {}
    for r in rows:
        if r["condition"] == "category":
            cats.setdefault(r["category"], []).append(r)
    head = {"uninjected": {"b": float(base["b"]), "b_pooled": float(base["b_pooled"]), "phrase": float(base["phrase"]),
                           "bias_b": float(base["bias_b"]), "coherence": float(base["coherence"])},
            "threshold": {"fpr": fpr, "b": thr, "negatives": neg},
            "best_cell": dict(best, interval=_interval(rows, best, "intro")) if best else None,
            "null_best_cell": null,
            "random_at_best_cell": next((c for c in cs if c["condition"] == "random" and best and
                                         (c["layer"], c["strength"]) == (best["layer"], best["strength"])), None),
            "best_identification_cell": dict(ident, interval=_interval(rows, ident, "id10_top1")) if ident else None,
            "null_best_identification_cell": ident_null, "uninjected_identification": none["id10"] if none else None,
            "best_tpr_cell": _best(cs, "concept", "tpr"), "null_best_tpr_cell": _best(cs, "random", "tpr"),
            "incoherent_cells": sum(c["incoherent"] for c in cs if c["condition"] == "concept"),
            "categories": {c: {"layer": int(rs[0]["layer"]), "n": len(rs),
                               "intro": float(np.mean([float(r["intro"]) for r in rs])),
                               "id10": float(np.mean([float(r["id10_top1"]) for r in rs]))} for c, rs in cats.items()}}
    head["warnings"] = [f"the model already leans yes without injection (b = {base['b']:+.2f})"] \
        if float(base["b"]) > 0 else []
    head["verdict"] = verdict(head)
    return head


def verdict(head: dict) -> str:
    """Two sentences from the numbers: detection against the random-vector null, and
    identification against the uninjected and null rates."""
    b, null, t = head["best_cell"], head["null_best_cell"], head["threshold"]
    if b is None:
        return "no injected cells to judge"
    beats, words = against_null(b, null, "intro")
    tpr, tpr_null = (c["tpr"] if c else float("nan") for c in (head["best_tpr_cell"], head["null_best_tpr_cell"]))
    out = (f"{'the best' if beats else 'no'} concept cell's introspection-specific shift exceeds the random-vector "
           f"null's maximum ({words}); at the {t['fpr']:.0%}-false-positive threshold (b > {t['b']:+.2f}) the best "
           f"true-positive rate is {tpr:.0%}, against {tpr_null:.0%} for random vectors")
    i, n = head["best_identification_cell"], head["null_best_identification_cell"]
    if i is not None:
        _, words = against_null(i, n, "id10", ".0%")
        out += (f". Identification, 10-way top-1: {words} (the nulls: random and negated vectors, no injection; "
                f"{head['uninjected_identification']:.0%} with no injection, chance 10%)")
    return out


def report(head: dict) -> list[str]:
    u = head["uninjected"]
    return ([f"uninjected: b = {u['b']:+.3f} (pooled spellings {u['b_pooled']:+.3f}), bias questions' b = "
             f"{u['bias_b']:+.3f}"] + [f"warning: {w}" for w in head["warnings"]] + [head["verdict"]])


def analyse(rows: list, context: dict) -> Analysis:
    fpr = float(context.get("fpr", 0.05))
    cs = cells(rows, fpr)
    head = summary(rows, fpr)
    model = context.get("model", "")
    figures = {
        "scores.png": lambda p: plots.by_depth(cs, p, [("intro", "introspection-specific b shift", None),
                                                       ("tpr", f"detected at {fpr:.0%} false positives",
                                                        (fpr, f"false-positive rate ({fpr:.0%})")),
                                                       ("id10", "identification, 10-way top-1", 0.1),
                                                       ("coherence_drop", "coherence: fluent answer, Δ log p/token",
                                                        (INCOHERENT, "incoherent below"))],
                                               title=f"{model}: experiment 1, judge-free", condition="concept"),
        "concepts.png": lambda p: plots.per_concept(rows, p, "intro", "introspection-specific b shift (best cell)",
                                                    f"{model}: each concept at its own best (layer, strength), beside "
                                                    "its random vector's best", null="random")}
    return Analysis({"cells.csv": (cs, CELL_COLUMNS)}, head, report(head), figures)
