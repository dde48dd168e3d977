"""Experiment 3's rows summarised: cells, the headline figures and the figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pyintro import plots
from pyintro.experiments.protocol import Analysis
from pyintro.experiments.stats import against_null, bootstrap
from pyintro.results import read_rows

__all__ = ["CELL_COLUMNS", "analyse", "cells", "read_exp1", "summary"]

CONDITIONS = ("matching", "random", "after")
PAPER_EXP1_DEPTH = 2 / 3
COLOURS = {"matching": "#c0392b", "random": "#2c7fb8", "after": "#31a354"}

CELL_COLUMNS = ["condition", "layer", "depth", "strength", "n", "apology", "p_apology", "apology_rate", "b_meant",
                "reduction", "b_gain"]


def cells(rows) -> list[dict]:
    """Per (condition, layer, strength), and once for ``none``: mean apology log-odds, mean
    P(apology), the share of pairs with P(apology) > 1/2, mean ``b_meant``; for ``matching``
    also ``reduction`` (the lower of the none and random cells' mean P(apology), minus this
    one's) and ``b_gain`` (this mean b_meant minus the higher of theirs)."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["condition"], int(r["layer"]), float(r["strength"])), []).append(r)
    out = {}
    for (cond, L, s), rs in groups.items():
        p = np.array([float(r["p_apology"]) for r in rs])
        out[(cond, L, s)] = {"condition": cond, "layer": L, "depth": float(rs[0]["depth"]), "strength": s,
                             "n": len(rs), "apology": float(np.mean([float(r["apology"]) for r in rs])),
                             "p_apology": float(p.mean()), "apology_rate": float(np.mean(p > 0.5)),
                             "b_meant": float(np.mean([float(r["b_meant"]) for r in rs])),
                             "reduction": float("nan"), "b_gain": float("nan")}
    none = out.get(("none", -1, 0.0))
    for (cond, L, s), c in out.items():
        if cond == "matching":
            refs = [x for x in (none, out.get(("random", L, s))) if x is not None]
        elif cond == "random":  # the null: the same measure for a vector that should not help
            refs = [none] if none is not None else []
        else:
            continue
        if refs:
            c["reduction"] = min(x["p_apology"] for x in refs) - c["p_apology"]
            c["b_gain"] = c["b_meant"] - max(x["b_meant"] for x in refs)
    order = {"none": 0, "matching": 1, "random": 2, "after": 3}
    return sorted(out.values(), key=lambda c: (order.get(c["condition"], 9), c["layer"], c["strength"]))


def _live(rows, cs, condition: str) -> list:
    """The cells of ``condition`` where the injection changed something: at a dead layer (the
    last, whose output is read only at the answer) every pair equals no injection exactly."""
    none = {int(r["pair"]): float(r["p_apology"]) for r in rows if r["condition"] == "none"}
    moved = {(int(r["layer"]), float(r["strength"])) for r in rows if r["condition"] == condition
             and float(r["p_apology"]) != none.get(int(r["pair"]))}
    return [c for c in cs if c["condition"] == condition and np.isfinite(c["reduction"])
            and (c["layer"], c["strength"]) in moved]


def _interval(rows, cell, seed: int) -> list:
    """A 95% bootstrap interval over the pairs of the reduction at ``cell`` (each pair's own
    P(apology) drop from the lower of its none and random values)."""
    by = {}
    for r in rows:
        if r["condition"] == "none" or (int(r["layer"]), float(r["strength"])) == (cell["layer"], cell["strength"]):
            by.setdefault(int(r["pair"]), {})[r["condition"]] = float(r["p_apology"])
    drops = [min(v.get("none", np.inf), v.get("random", np.inf) if cell["condition"] == "matching" else np.inf)
             - v[cell["condition"]] for v in by.values() if cell["condition"] in v]
    return list(bootstrap(drops, seed=seed)[1:])


def summary(rows, seed: int = 0) -> dict:
    """The uninjected scores; the matching cell with the largest reduction (the paper's
    cross-model metric) among cells where the injection changed anything, with a bootstrap
    interval over the pairs, the random and after cells at the same point, and the random
    vectors' own best reduction on the same grid (the null's maximum)."""
    cs = cells(rows)
    none = next((c for c in cs if c["condition"] == "none"), None)
    match, null = _live(rows, cs, "matching"), _live(rows, cs, "random")
    best = max(match, key=lambda c: (c["reduction"], -c["layer"])) if match else None
    at = {c["condition"]: c for c in cs if best and (c["layer"], c["strength"]) == (best["layer"], best["strength"])}
    best_b = max(match, key=lambda c: (c["b_gain"], -c["layer"])) if match else None
    head = {"uninjected": none, "best_cell": dict(best, interval=_interval(rows, best, seed)) if best else None,
            "random_at_best_cell": at.get("random"), "after_at_best_cell": at.get("after"), "best_b_cell": best_b,
            "null_best_cell": max(null, key=lambda c: c["reduction"]) if null else None,
            "n_pairs": len({int(r["pair"]) for r in rows})}
    head["verdict"] = verdict(head)
    return head


def verdict(head: dict) -> str:
    b, n = head["best_cell"], head["null_best_cell"]
    if b is None:
        return "no injected cell changed the model's answers"
    beats, words = against_null(b, n, "reduction")
    return (f"{'the prefilled' if beats else 'no'} word's own vector reduces apologies beyond a random word's vector "
            f"(the reduction in P(apology): {words}, the null being random words' vectors)")


def report(head: dict) -> list[str]:
    u, b = head["uninjected"], head["best_cell"]
    lines = [head["verdict"]]
    if u:
        lines.append(f"uninjected: P(apology) {u['p_apology']:.2f}, b(meant) {u['b_meant']:+.2f} ({u['n']} pairs)")
    if b:
        r, a = head["random_at_best_cell"] or {}, head["after_at_best_cell"] or {}
        lines.append(f"best cell: layer {b['layer']} (depth {b['depth']:.2f}), strength {b['strength']:g}: P(apology) "
                     f"{b['p_apology']:.2f} (random {r.get('p_apology', float('nan')):.2f}, after the prefill "
                     f"{a.get('p_apology', float('nan')):.2f}), reduction {b['reduction']:+.2f}")
    bb = head.get("best_b_cell")
    if bb:
        lines.append(f"Yes/No form: largest gain in b(meant) {bb['b_gain']:+.2f} at layer {bb['layer']} "
                     f"(depth {bb['depth']:.2f}), strength {bb['strength']:g}")
    return lines


def read_exp1(folder) -> dict:
    """An experiment-1 folder's cells (the concept condition's ``intro`` by depth) and best cell."""
    folder = Path(folder)
    files = folder / "cells.csv", folder / "summary.json"
    if not all(f.is_file() for f in files):
        raise FileNotFoundError(f"{folder} is not an experiment-1 output folder (no cells.csv and summary.json); "
                                "give the --out folder of `pyintro detect`")
    cells1 = read_rows(files[0], ("layer",), ("depth", "strength", "intro"), need="intro")
    best = json.loads(files[1].read_text()).get("best_cell")
    return {"cells": [c for c in cells1 if c["condition"] == "concept"], "best_cell": best}


def analyse(rows: list, context: dict) -> Analysis:
    cs = cells(rows)
    head = summary(rows, int(context.get("seed", 0)))
    exp1 = read_exp1(context["exp1"]) if context.get("exp1") else None
    out = report(head)
    if exp1 and exp1["best_cell"] and head["best_cell"]:
        out.append(f"best depth: experiment 3 {head['best_cell']['depth']:.2f}, experiment 1 "
                   f"{float(exp1['best_cell']['depth']):.2f}")
    head["exp1_best_cell"] = exp1["best_cell"] if exp1 else None
    title = f"{context.get('model', '')}: experiment 3, prefilled words (judge-free)"
    return Analysis({"cells.csv": (cs, CELL_COLUMNS)}, head, out,
                    {"prefill.png": lambda p: figure(cs, head, p, title, exp1)})


def figure(cs, head, path, title: str, exp1_head=None):
    """P(apology) per condition at the best strength; the reduction per strength, with the best
    depths of this experiment and of experiment 1 (the given run's, else the paper's 2/3); the
    Yes/No form's gain per strength; with ``exp1_head``, both experiments' curves on one axis."""
    best = head["best_cell"]
    none = head["uninjected"]
    strengths = sorted({c["strength"] for c in cs if c["condition"] == "matching"})
    s_best = best["strength"] if best else (strengths[-1] if strengths else 0.0)
    p1 = {"ylabel": "P(apology) vs P(intent)", "title": f"strength {s_best:g}", "lines": [],
          "hlines": [(none["p_apology"], "no injection")] if none else []}
    for cond in CONDITIONS:
        pts = [c for c in cs if c["condition"] == cond and c["strength"] == s_best]
        if pts:
            label = {"matching": "prefilled word's vector, before", "random": "random word's vector, before",
                     "after": "prefilled word's vector, after"}[cond]
            p1["lines"].append({"label": label, "x": [c["depth"] for c in pts], "y": [c["p_apology"] for c in pts],
                                "colour": COLOURS[cond]})
    p2 = {"ylabel": "drop in P(apology): matching vs min(none, random)", "lines": [], "hlines": [(0.0, "")],
          "vlines": []}
    for s in strengths:
        pts = [c for c in cs if c["condition"] == "matching" and c["strength"] == s]
        p2["lines"].append({"label": f"strength {s:g}", "x": [c["depth"] for c in pts],
                            "y": [c["reduction"] for c in pts]})
    if best:
        p2["vlines"].append((best["depth"], f"exp 3 best ({best['depth']:.2f})"))
    p3 = {"ylabel": "Yes/No form: gain in b(meant) vs max(none, random)", "lines": [], "hlines": [(0.0, "")]}
    for s in strengths:
        pts = [c for c in cs if c["condition"] == "matching" and c["strength"] == s]
        p3["lines"].append({"label": f"strength {s:g}", "x": [c["depth"] for c in pts],
                            "y": [c["b_gain"] for c in pts]})
    panels = [p1, p2, p3]
    if exp1_head and exp1_head["cells"]:
        c1 = exp1_head["cells"]
        s1 = min({c["strength"] for c in c1}, key=lambda s: abs(s - 2.0))
        pts1 = sorted((c["depth"], c["intro"]) for c in c1 if c["strength"] == s1)
        pts3 = sorted((c["depth"], c["reduction"]) for c in cs
                      if c["condition"] == "matching" and c["strength"] == s_best)
        lines = []
        for pts, label, colour in ((pts3, f"exp 3 reduction (strength {s_best:g})", COLOURS["matching"]),
                                   (pts1, f"exp 1 introspection shift (strength {s1:g})", "#34495e")):
            if pts:
                x, y = zip(*pts)
                scale = max(abs(v) for v in y) or 1.0
                lines.append({"label": label, "x": x, "y": [v / scale for v in y], "colour": colour})
        b1 = exp1_head["best_cell"]
        panels.append({"ylabel": "each measure / its largest |value|", "title": "where each experiment peaks",
                       "lines": lines, "vlines": [(float(b1["depth"]), f"exp 1 best ({float(b1['depth']):.2f})")]
                       if b1 else []})
        if b1:
            p2["vlines"].append((float(b1["depth"]), f"exp 1 best ({float(b1['depth']):.2f})"))
    else:
        p2["vlines"].append((PAPER_EXP1_DEPTH, "paper's exp 1 layer (2/3 depth)"))
    return plots.curves(path, panels, title=title)
