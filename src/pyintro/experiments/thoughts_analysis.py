"""Experiment 2's rows summarised: cells, the best cells with intervals beside the random
vectors' best cells, and the figure."""

from __future__ import annotations

import numpy as np

from pyintro import plots
from pyintro.experiments.protocol import Analysis
from pyintro.experiments.stats import against_null, bootstrap

__all__ = ["CELL_COLUMNS", "analyse", "cells", "summary"]

N_CHOICES = 10


CELL_COLUMNS = ["condition", "layer", "depth", "strength", "n", "think", "think_norm", "think_rank", "repeat",
                "repeat_exact", "repeat_lp", "repeat_lp_shift", "joint"]


def cells(rows) -> list[dict]:
    """Per (layer, strength), and once for the uninjected rows: the thought's 10-way top-1 rate
    (summed and per-token), its mean rank, the repeat rates, the mean teacher-forced
    log-probability of the sentence and its mean shift from the same pair's uninjected value,
    and the joint rate."""
    base = {int(r["pair"]): float(r["repeat_lp"]) for r in rows if r["condition"] == "none"}
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["condition"], int(r["layer"]), float(r["strength"])), []).append(r)
    out = []
    for (cond, L, s), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "none", kv[0][1:])):
        mean = lambda c: float(np.mean([float(r[c]) for r in rs]))  # noqa: E731
        shifts = [float(r["repeat_lp"]) - base[int(r["pair"])] for r in rs if int(r["pair"]) in base]
        out.append({"condition": cond, "layer": L, "depth": float(rs[0]["depth"]), "strength": s, "n": len(rs),
                    "think": mean("think_top1"), "think_norm": mean("think_norm_top1"),
                    "think_rank": mean("think_rank"), "repeat": mean("repeat_match"),
                    "repeat_exact": mean("repeat_exact"), "repeat_lp": mean("repeat_lp"),
                    "repeat_lp_shift": float(np.mean(shifts)) if shifts else float("nan"), "joint": mean("joint")})
    return out


def _best(cs, condition: str, first: str, second: str):
    pool = [c for c in cs if c["condition"] == condition]
    return max(pool, key=lambda c: (c[first], c[second], -c["layer"])) if pool else None


def _interval(rows, cell, column: str, seed: int) -> list:
    """A 95% bootstrap interval over the pairs of ``column``'s rate at ``cell``."""
    vals = [float(r[column]) for r in rows if (r["condition"], int(r["layer"]), float(r["strength"])) ==
            (cell["condition"], cell["layer"], cell["strength"])]
    return list(bootstrap(vals, seed=seed)[1:])


def summary(rows, seed: int = 0) -> dict:
    """The uninjected rates; the injected cell with the highest joint rate and the one with the
    highest thought rate (ties: the other rate, then the lower layer), each with a bootstrap
    interval over the pairs, beside the random vectors' best cells on the same grid."""
    cs = cells(rows)
    none = next((c for c in cs if c["condition"] == "none"), None)
    best, best_think = _best(cs, "injected", "joint", "think"), _best(cs, "injected", "think", "joint")
    null, null_think = _best(cs, "random", "joint", "think"), _best(cs, "random", "think", "joint")
    head = {"uninjected": none, "chance": 1 / N_CHOICES, "n_pairs": len({int(r["pair"]) for r in rows}),
            "best_cell": dict(best, interval=_interval(rows, best, "joint", seed)) if best else None,
            "best_thought_cell": dict(best_think, interval=_interval(rows, best_think, "think_top1", seed))
            if best_think else None, "null_best_cell": null, "null_best_thought_cell": null_think}
    head["verdict"] = verdict(head)
    return head


def verdict(head: dict) -> str:
    t, n, u = head["best_thought_cell"], head["null_best_thought_cell"], head["uninjected"]
    if t is None:
        return "no injected cells to judge"
    beats, words = against_null(t, n, "think", ".0%")
    _, joint = against_null(head["best_cell"], head["null_best_cell"], "joint", ".0%")
    return (f"{'the best' if beats else 'no'} cell names the injected word more often than the random-vector "
            f"null's best cell (named: {words}; uninjected {u['think'] if u else float('nan'):.0%}, chance 10%; "
            f"named and repeated at once: {joint})")


def report(head: dict) -> list[str]:
    u, b = head["uninjected"], head["best_cell"]
    lines = [head["verdict"]]
    if u:
        lines.append(f"uninjected: thought 10-way top-1 {u['think']:.0%} (chance 10%), sentence repeated "
                     f"{u['repeat']:.0%}, both {u['joint']:.0%} ({u['n']} pairs)")
    if b:
        lines.append(f"best cell: layer {b['layer']} (depth {b['depth']:.2f}), strength {b['strength']:g}: thought "
                     f"{b['think']:.0%}, repeated {b['repeat']:.0%}, both {b['joint']:.0%}, sentence log-prob "
                     f"shift {b['repeat_lp_shift']:+.2f}")
    t = head.get("best_thought_cell")
    if t and t is not b:
        lines.append(f"best thought cell: layer {t['layer']}, strength {t['strength']:g}: thought {t['think']:.0%}, "
                     f"repeated {t['repeat']:.0%}")
    return lines


def analyse(rows: list, context: dict) -> Analysis:
    cs = cells(rows)
    head = summary(rows, int(context.get("seed", 0)))
    base = head["uninjected"] or {}
    figure = {"thoughts.png": lambda p: plots.by_depth(
        [c for c in cs if c["condition"] != "none"], p,
        [("think", "thought: 10-way top-1 (injected word)", 0.1),
         ("think_rank", "thought: the injected word's mean rank of 10", 5.5),
         ("repeat", "text: sentence repeated (greedy)", None), ("joint", "both at once", None)],
        title=f"{context.get('model', '')}: experiment 2, thoughts vs text (judge-free)", condition="injected",
        baselines={k: base.get(k, float("nan")) for k in ("think", "think_rank", "repeat", "joint")})}
    return Analysis({"cells.csv": (cs, CELL_COLUMNS)}, head, report(head), figure)
