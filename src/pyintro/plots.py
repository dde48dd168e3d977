"""Plots of sweep rows and generation rates (matplotlib, Agg; PNG or SVG by file suffix).

Figures are built without pyplot, so importing this module does not change matplotlib's
global backend. Every function takes sweep rows (list of dicts) or a pandas DataFrame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

_SUFFIXES = (".png", ".svg")


def _records(rows) -> list[dict]:
    recs = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    if not recs:
        raise ValueError("no rows to plot; run a sweep first")
    return recs


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"plot path must end in .png or .svg, got {path.name!r}")
    fig.savefig(path, dpi=120)
    return path


def _kinds(recs, first: str) -> list[str]:
    kinds = list(dict.fromkeys(r["question_kind"] for r in recs))
    return sorted(kinds, key=lambda k: k != first)  # `first` leads, the rest keep their order


def _grid(recs, kind: str, value: str, layers, strengths) -> np.ndarray:
    """Mean of ``value`` over the kind's questions: [n_layers, n_strengths], NaN where missing."""
    total = np.zeros((len(layers), len(strengths)))
    count = np.zeros_like(total)
    li = {L: i for i, L in enumerate(layers)}
    si = {s: j for j, s in enumerate(strengths)}
    for r in recs:
        if r["question_kind"] == kind:
            i, j = li[int(r["layer"])], si[float(r["strength"])]
            total[i, j] += float(r[value])
            count[i, j] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def heatmaps(rows, path, introspection: str = "introspection"):
    """b over layer x strength, one panel per question kind (introspection first), with one
    shared diverging colour scale centred at 0 (red: Yes, blue: No). Kinds with several
    questions show their mean b."""
    recs = _records(rows)
    layers = sorted({int(r["layer"]) for r in recs})
    strengths = sorted({float(r["strength"]) for r in recs})
    kinds = _kinds(recs, introspection)
    grids = [_grid(recs, k, "b", layers, strengths) for k in kinds]  # each [n_layers, n_strengths]
    vmax = max(float(np.nanmax(np.abs(g))) for g in grids) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    fig = _figure(2.0 + 3.2 * len(kinds), 1.5 + 0.16 * len(layers))
    axes = fig.subplots(1, len(kinds), squeeze=False, sharey=True)[0]
    for ax, kind, g in zip(axes, kinds, grids):
        n_q = len({r["question"] for r in recs if r["question_kind"] == kind})
        im = ax.imshow(g, origin="lower", aspect="auto", cmap="RdBu_r", norm=norm, interpolation="nearest")
        ax.set_title(kind if n_q == 1 else f"{kind} (mean of {n_q})")
        ax.set_xticks(range(len(strengths)), [f"{s:g}" for s in strengths], rotation=90 if len(strengths) > 8 else 0)
        step = max(1, len(layers) // 10)
        ax.set_yticks(range(0, len(layers), step), [str(L) for L in layers[::step]])
        ax.set_xlabel("strength")
    axes[0].set_ylabel("layer")
    fig.colorbar(im, ax=list(axes), label="b = logit(Yes) - logit(No)")
    return _save(fig, path)


def _lines(recs, path, x_name: str, fixed_name: str, fixed, xlabel: str, title: str):
    sel = [r for r in recs if float(r[fixed_name]) == float(fixed)]
    if not sel:
        have = sorted({float(r[fixed_name]) for r in recs})
        raise ValueError(f"no rows with {fixed_name}={fixed}; the sweep has {fixed_name}s {have}")
    fig = _figure(7.0, 4.0 + 0.2 * len({(r["question_kind"], r["question"]) for r in sel}))
    ax = fig.subplots()
    questions = list(dict.fromkeys((r["question_kind"], r["question"]) for r in sel))
    for kind, text in questions:
        pts = sorted((float(r[x_name]), float(r["b"])) for r in sel if (r["question_kind"], r["question"]) == (kind, text))
        xs, ys = zip(*pts)
        style = "-" if kind == "introspection" else "--"
        ax.plot(xs, ys, style, marker="o", markersize=3, label=f"{kind}: {_short(text)}")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("b = logit(Yes) - logit(No)")
    ax.set_title(title)
    fig.legend(loc="outside lower center", fontsize="small")
    return _save(fig, path)


def b_vs_strength(rows, path, layer: int):
    """b against strength at one layer, one line per question."""
    return _lines(_records(rows), path, "strength", "layer", layer, "strength", f"layer {layer}")


def b_vs_layer(rows, path, strength: float):
    """b against layer at one strength, one line per question."""
    return _lines(_records(rows), path, "layer", "strength", strength, "layer", f"strength {strength:g}")


def generation_rates(result, path):
    """Detection and identification rates over layer x strength (from ``run_detection``), with
    the false-positive rate of the control trials in the title."""
    rates = result["rates"] if isinstance(result, dict) else _records(result)
    if not rates:
        raise ValueError("no rates to plot; run generation.run_detection first")
    layers = sorted({int(r["layer"]) for r in rates})
    strengths = sorted({float(r["strength"]) for r in rates})
    recs = [dict(r, question_kind="all") for r in rates]
    fig = _figure(2.0 + 3.2 * 2, 1.6 + 0.3 * len(layers))
    axes = fig.subplots(1, 2, squeeze=False, sharey=True)[0]
    for ax, name in zip(axes, ("detection_rate", "identification_rate")):
        g = _grid(recs, "all", name, layers, strengths)  # [n_layers, n_strengths]
        im = ax.imshow(g, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        for i in range(len(layers)):
            for j in range(len(strengths)):
                if np.isfinite(g[i, j]):
                    ax.text(j, i, f"{g[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if g[i, j] > 0.6 else "white")
        ax.set_title(name.replace("_", " "))
        ax.set_xticks(range(len(strengths)), [f"{s:g}" for s in strengths])
        ax.set_yticks(range(len(layers)), [str(L) for L in layers])
        ax.set_xlabel("strength")
    axes[0].set_ylabel("layer")
    fp = rates[0].get("false_positive_rate", float("nan"))
    fig.suptitle(f"false-positive rate (no injection): {fp:.2f}")
    fig.colorbar(im, ax=list(axes), label="rate")
    return _save(fig, path)
