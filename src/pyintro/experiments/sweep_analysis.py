"""The follow-up post's rows summarised.

- **Levels** (``analyze``): the introspection question's b beside the controls' b at each point.
- **Shifts** (``shift_cells``): per (vector, layer, strength) with strength > 0, each question's
  Δb = b - b(uninjected), the uninjected point counted once per question; the introspection
  Δb against the spread of the control questions' Δb (their mean, range and its rank among
  them). ``specific`` = introspection Δb - the controls' mean Δb: what the injection does to
  the detection answer beyond what it does to every yes/no answer.
- **The null**: the same for norm-matched random vectors, so the best cell of the concept
  vector is compared with the best cell of the random ones (a maximum with a maximum), and a
  bootstrap interval over the control questions at the best cell.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from pyintro import plots
from pyintro.experiments.protocol import Analysis
from pyintro.experiments.stats import against_null, seed_for

__all__ = ["analyze", "analyse", "favourable_point", "figures", "shift_cells", "shifts"]

CELL_COLUMNS = ["vector", "layer", "strength", "intro_shift", "control_shift", "control_min", "control_max",
                "control_yes_shift", "specific", "rank", "n_controls", "exceeds_all"]


def analyze(rows, introspection: str = "introspection", control: Optional[Sequence[str]] = None) -> dict:
    """Compare the introspection answer with the control answers at each (layer, strength).

    control: the kinds that count as controls (default: "control", the questions whose true
             answer is No, when there are any; else every kind but ``introspection``).
    Per point: ``introspection_b`` (mean over introspection questions), ``control_b`` (mean over
    control questions), ``diff`` = introspection_b - control_b, and ``exceeds_all``: whether
    introspection_b is above every control question's b.
    ``correlation``: Pearson r between introspection_b and control_b over the grid points
    (near 1: the injection moves both the same way, as the follow-up post found).
    """
    recs = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    kinds = {r["question_kind"] for r in recs}
    if introspection not in kinds:
        raise ValueError(f"no rows of kind {introspection!r}; pass introspection=<kind>")
    if control is None:
        ctrl = {"control"} if "control" in kinds else set(kinds - {introspection})
    else:
        ctrl = set(control)
    if not ctrl & kinds:
        raise ValueError("no control rows; run the sweep with a control question or pass control=[kinds]")
    intro_b: dict[tuple, list] = {}
    ctrl_b: dict[tuple, list] = {}
    for r in recs:
        point = (int(r["layer"]), float(r["strength"]))
        if r["question_kind"] == introspection:
            intro_b.setdefault(point, []).append(float(r["b"]))
        elif r["question_kind"] in ctrl:
            ctrl_b.setdefault(point, []).append(float(r["b"]))
    points = []
    for point in sorted(set(intro_b) & set(ctrl_b)):
        ib, cb = float(np.mean(intro_b[point])), np.asarray(ctrl_b[point])
        points.append({"layer": point[0], "strength": point[1], "introspection_b": ib,
                       "control_b": float(cb.mean()), "control_min": float(cb.min()), "control_max": float(cb.max()),
                       "diff": ib - float(cb.mean()), "exceeds_all": bool(ib > cb.max())})
    x = np.asarray([p["introspection_b"] for p in points])
    y = np.asarray([p["control_b"] for p in points])
    r = float("nan")
    if len(points) >= 2 and x.std() > 0 and y.std() > 0:
        r = float(np.corrcoef(x, y)[0, 1])
    return {"points": points, "correlation": r, "n_points": len(points),
            "fraction_exceeds": float(np.mean([p["exceeds_all"] for p in points])) if points else float("nan")}


def favourable_point(rows, introspection: str = "introspection") -> tuple[int, float]:
    """The (layer, strength) that figures slice the grid at: the point most favourable to the
    introspection reading, where introspection b exceeds the controls' mean b the most (ties:
    the lower layer, then the lower strength). With no control rows, where introspection b is
    highest."""
    recs = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    if len({r["question_kind"] for r in recs}) > 1:
        pts = analyze(recs, introspection)["points"]
        best = max(pts, key=lambda p: (p["diff"], -p["layer"], -p["strength"]))
    else:
        best = max(recs, key=lambda r: (float(r["b"]), -int(r["layer"]), -float(r["strength"])))
    return int(best["layer"]), float(best["strength"])



def _main_rows(rows, vector: Optional[str]) -> list[dict]:
    recs = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    return [r for r in recs if vector is None or r.get("vector", vector) == vector]


def uninjected(rows, value: str = "b") -> dict:
    """{(kind, question): ``value`` at strength 0} (the same at every layer; counted once)."""
    return {(r["question_kind"], r["question"]): float(r[value]) for r in rows if float(r["strength"]) == 0.0}


def shift_cells(rows, vector: str, value: str = "b") -> list[dict]:
    """Per (layer, strength > 0) of ``vector``: the introspection question's Δb against the
    controls' (kind "control", true answer No; "control_yes" reported beside them). Needs the
    sweep's strength-0 points (the uninjected answers)."""
    base = uninjected(rows, value)
    if not base:
        raise ValueError("the sweep has no strength-0 points, so no uninjected answers to measure shifts from; "
                         "include strength 0")
    groups: dict[tuple, dict] = {}
    for r in rows:
        if r.get("vector", vector) != vector or float(r["strength"]) == 0.0:
            continue
        g = groups.setdefault((int(r["layer"]), float(r["strength"])), {})
        g.setdefault(r["question_kind"], []).append(float(r[value]) - base[(r["question_kind"], r["question"])])
    out = []
    for (L, s), g in sorted(groups.items()):
        if "introspection" not in g or "control" not in g:
            continue
        intro, ctrl = float(np.mean(g["introspection"])), np.asarray(g["control"])
        yes = g.get("control_yes")
        out.append({"vector": vector, "layer": L, "strength": s, "intro_shift": intro,
                    "control_shift": float(ctrl.mean()), "control_min": float(ctrl.min()),
                    "control_max": float(ctrl.max()), "control_yes_shift": float(np.mean(yes)) if yes else float("nan"),
                    "specific": intro - float(ctrl.mean()), "rank": 1 + int(np.sum(ctrl > intro)),
                    "n_controls": len(ctrl), "exceeds_all": int(intro > ctrl.max())})
    return out


def _pearson(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(np.corrcoef(x, y)[0, 1]) if len(x) >= 2 and x.std() > 0 and y.std() > 0 else float("nan")


def shifts(rows, vector: str, randoms: Sequence[str] = (), value: str = "b", seed: int = 0, n_boot: int = 1000) -> dict:
    """The shift analysis of ``vector`` against the control questions and the ``randoms``' null:
    r on levels (each uninjected point once) and on shifts, the share of cells where the
    introspection shift exceeds every control's, the best cell (highest ``specific``) with a
    percentile-bootstrap interval over the control questions, and the random vectors' best."""
    cells = shift_cells(rows, vector, value)
    base = uninjected(rows, value)
    intro0 = np.mean([b for (k, _), b in base.items() if k == "introspection"])
    ctrl0 = np.mean([b for (k, _), b in base.items() if k == "control"])
    levels = [(intro0, ctrl0)] + [(intro0 + c["intro_shift"], ctrl0 + c["control_shift"]) for c in cells]
    out = {"cells": cells, "r_levels": _pearson(*zip(*levels)) if cells else float("nan"),
           "r_shifts": _pearson([c["intro_shift"] for c in cells], [c["control_shift"] for c in cells]),
           "fraction_exceeds_all": float(np.mean([c["exceeds_all"] for c in cells])) if cells else float("nan"),
           "uninjected_b": float(intro0), "best": None, "null_best": None}
    if cells:
        best = max(cells, key=lambda c: (c["specific"], -c["layer"], -c["strength"]))
        out["best"] = dict(best, interval=_interval(rows, vector, best, base, value, seed, n_boot))
    nulls = [c for v in randoms for c in shift_cells(rows, v, value)]
    if nulls:
        out["null_best"] = max(nulls, key=lambda c: c["specific"])
    return out


def _interval(rows, vector, cell, base, value, seed, n_boot) -> dict:
    """A percentile-bootstrap 95% interval of ``specific`` at ``cell``, resampling the control questions."""
    pick = [r for r in rows if r.get("vector", vector) == vector and (int(r["layer"]), float(r["strength"])) ==
            (cell["layer"], cell["strength"])]
    ctrl = np.array([float(r[value]) - base[(r["question_kind"], r["question"])] for r in pick
                     if r["question_kind"] == "control"])
    idx = seed_for(seed, "sweep", len(ctrl)).integers(0, len(ctrl), size=(n_boot, len(ctrl)))
    spec = cell["intro_shift"] - ctrl[idx].mean(axis=1)
    return [float(np.quantile(spec, 0.025)), float(np.quantile(spec, 0.975))]


def verdict(sh: dict, label: str) -> str:
    """One sentence from the numbers: the best cell with its interval beside the null's best."""
    b, null = sh["best"], sh["null_best"]
    if b is None:
        return f"{label}: no injected cells to judge"
    beats, words = against_null(b, null, "specific")
    if null is None:
        claim = f"no random-vector null was run; {words}"
    else:
        claim = f"{'the best' if beats else 'no'} cell's introspection-specific shift exceeds the random-vector " \
                f"null's maximum ({words})"
    return (f"{label}: {claim}; the correlation of the introspection answer's shifts with the controls' is "
            f"{sh['r_shifts']:.2f} ({sh['r_levels']:.2f} on levels)")


def figures(rows, layer: Optional[int] = None, strength: Optional[float] = None, vector: Optional[str] = None,
            cells: Optional[list] = None, title: str = "") -> dict:
    """{file: draw(path)}: the heatmap, b against strength and against layer (sliced at
    ``favourable_point`` unless given) for ``vector``'s rows, and the shift scatter of ``cells``."""
    main = _main_rows(rows, vector)
    best_layer, best_strength = favourable_point(main)
    why = "(the grid point where introspection b exceeds the controls' mean b most)"
    out = {"heatmap.png": lambda p: plots.heatmaps(main, p, title=title),
           "strength.png": lambda p: plots.b_vs_strength(main, p, best_layer if layer is None else layer,
                                                         why if layer is None else "", title=title),
           "layer.png": lambda p: plots.b_vs_layer(main, p, best_strength if strength is None else strength,
                                                   why if strength is None else "", title=title)}
    if cells:
        out["shifts.png"] = lambda p: plots.shift_scatter(cells, p, vector, title=title)
    return out


def analyse(rows: list, context: dict) -> Analysis:
    vector = context.get("vector")
    randoms = [v for v in context.get("vectors", [vector]) if v != vector]
    an = analyze(_main_rows(rows, vector))
    both = {value: shifts(rows, vector, randoms, value) for value in ("b", "b_pooled")}
    sh = both["b"]
    head = {"model": context.get("model"), "vector": vector, "random_vectors": randoms, "n_rows": len(rows),
            "answers": context.get("answers"),
            "uninjected_introspection_b": sh["uninjected_b"],
            "introspection_control_correlation": {"levels": sh["r_levels"], "shifts": sh["r_shifts"]},
            "fraction_introspection_shift_exceeds_all_controls": sh["fraction_exceeds_all"],
            "best_cell": sh["best"], "null_best_cell": sh["null_best"],
            "pooled": {k: both["b_pooled"][k] for k in ("r_levels", "r_shifts", "best", "null_best")},
            "verdict": verdict(sh, context.get("answer_label", "b")),
            "verdict_pooled": verdict(both["b_pooled"], "b over the pooled spellings"),
            "levels": {"correlation": an["correlation"], "fraction_exceeds": an["fraction_exceeds"],
                       "n_points": an["n_points"]}}
    report = [f"uninjected introspection b: {sh['uninjected_b']:+.2f}"
              + (" (the model already leans yes)" if sh["uninjected_b"] > 0 else ""),
              head["verdict"], head["verdict_pooled"]]
    cells = [c for v in [vector] + randoms for c in shift_cells(rows, v)]
    title = context.get("model", "")
    return Analysis({"cells.csv": (cells, CELL_COLUMNS)}, head, report,
                    figures(rows, vector=vector, cells=cells, title=title))
