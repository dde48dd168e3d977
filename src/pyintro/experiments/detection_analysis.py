"""Experiment 1's judge-free rows summarised: cells, the headline figures and the figures."""

from __future__ import annotations

import numpy as np

from pyintro import plots
from pyintro.experiments.protocol import Analysis
from pyintro.experiments.stats import auroc

__all__ = ["CELL_COLUMNS", "analyse", "best_layer", "cells", "summary"]

CELL_COLUMNS = ["condition", "layer", "depth", "strength", "n", "b_shift", "phrase_shift", "intro",
                "auroc_b", "auroc_phrase", "auroc_intro", "id10", "id10_norm", "id50", "id50_norm", "id50_rank"]


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


def cells(rows) -> list[dict]:
    """Per (condition, layer, strength): the mean shifts from the uninjected answers, the mean
    ``intro``, AUROC of concept-injected against random-injected trials (concept rows only),
    and identification rates (top-1 among 10 and 50; the mean 50-way rank)."""
    base = next(r for r in rows if r["condition"] == "none")
    groups: dict[tuple, list] = {}
    for r in rows:
        if r["condition"] not in ("none", "category"):
            groups.setdefault((r["condition"], int(r["layer"]), float(r["strength"])), []).append(r)
    out = []
    for (cond, L, s), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "concept", kv[0])):
        col = {c: np.array([float(r[c]) for r in rs]) for c in ("b", "phrase", "intro")}
        cell = {"condition": cond, "layer": L, "depth": float(rs[0]["depth"]), "strength": s, "n": len(rs),
                "b_shift": float(col["b"].mean() - float(base["b"])),
                "phrase_shift": float(col["phrase"].mean() - float(base["phrase"])), "intro": float(col["intro"].mean())}
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


def summary(rows) -> dict:
    """The headline figures: the uninjected answers, the concept cell with the highest mean
    ``intro`` (with its AUROC, identification and the random control at the same cell), and
    each category's means at the categories' layer."""
    cs = cells(rows)
    base = next(r for r in rows if r["condition"] == "none")
    concept = [c for c in cs if c["condition"] == "concept"]
    best = max(concept, key=lambda c: (c["intro"], -c["layer"])) if concept else None
    rand = next((c for c in cs if c["condition"] == "random" and best and (c["layer"], c["strength"]) ==
                 (best["layer"], best["strength"])), None)
    cats: dict[str, list] = {}
    for r in rows:
        if r["condition"] == "category":
            cats.setdefault(r["category"], []).append(r)
    return {"uninjected": {"b": float(base["b"]), "phrase": float(base["phrase"]), "bias_b": float(base["bias_b"])},
            "best_cell": best, "random_at_best_cell": rand,
            "categories": {c: {"layer": int(rs[0]["layer"]), "n": len(rs),
                               "intro": float(np.mean([float(r["intro"]) for r in rs])),
                               "id10": float(np.mean([float(r["id10_top1"]) for r in rs]))} for c, rs in cats.items()}}


def report(head: dict) -> list[str]:
    b = head["best_cell"]
    lines = [f"uninjected: b = {head['uninjected']['b']:+.3f}, bias questions' b = {head['uninjected']['bias_b']:+.3f}"]
    if b:
        r = head["random_at_best_cell"] or {}
        lines += [f"best cell: layer {b['layer']} (depth {b['depth']:.2f}), strength {b['strength']:g}: "
                  f"introspection-specific shift {b['intro']:+.3f} (random vectors: {r.get('intro', float('nan')):+.3f}), "
                  f"AUROC vs random {b['auroc_b']:.2f}, 10-way identification {b['id10']:.0%}"]
    return lines


def analyse(rows: list, context: dict) -> Analysis:
    cs = cells(rows)
    head = summary(rows)
    model = context.get("model", "")
    figures = {
        "scores.png": lambda p: plots.by_depth(cs, p, [("intro", "introspection-specific b shift", None),
                                                       ("auroc_b", "AUROC, concept vs random (b)", 0.5),
                                                       ("id10", "identification, 10-way top-1", 0.1)],
                                               title=f"{model}: experiment 1, judge-free", condition="concept"),
        "concepts.png": lambda p: plots.per_concept(rows, p, "intro", "introspection-specific b shift (best cell)",
                                                    "each concept at its own best (layer, strength)")}
    return Analysis({"cells.csv": (cs, CELL_COLUMNS)}, head, report(head), figures)
