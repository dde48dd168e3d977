"""The follow-up post's figures: b over layer x strength, its slices, the shift scatter, and the
quantization comparisons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import TwoSlopeNorm

from pyintro.plots.style import (B_LABEL, GREY, STRONG, _check_path, _figure, _legend_below, _records, _save,
                                 _strength_colours, _style)


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


def heatmaps(rows, path, introspection: str = "introspection", title: str = ""):
    """b over layer x strength, one panel per question kind (introspection first), with one
    shared diverging colour scale centred at 0 (red: Yes, blue: No). Kinds with several
    questions show their mean b."""
    _check_path(path)
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
    fig.colorbar(im, ax=list(axes), label=B_LABEL)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _slice(recs, path, x_name: str, fixed_name: str, fixed, xlabel: str, title: str, introspection: str):
    """b against ``x_name`` where ``fixed_name`` == ``fixed``: the introspection question(s) as
    lines, every other question as one grey band (min-max) with its mean."""
    sel = [r for r in recs if float(r[fixed_name]) == float(fixed)]
    if not sel:
        have = sorted({float(r[fixed_name]) for r in recs})
        raise ValueError(f"no rows with {fixed_name}={fixed:g}; the sweep has {fixed_name}s {have}")
    xs = sorted({float(r[x_name]) for r in sel})
    ctrl = {x: [float(r["b"]) for r in sel if float(r[x_name]) == x and r["question_kind"] != introspection]
            for x in xs}
    fig = _figure(7.0, 4.2)
    ax = fig.subplots()
    cx = [x for x in xs if ctrl[x]]
    if cx:
        n_ctrl = len({r["question"] for r in sel if r["question_kind"] != introspection})
        ax.fill_between(cx, [min(ctrl[x]) for x in cx], [max(ctrl[x]) for x in cx], color=GREY, alpha=0.25,
                        linewidth=0, label=f"controls ({n_ctrl} questions): min to max")
        ax.plot(cx, [float(np.mean(ctrl[x])) for x in cx], color=GREY, linewidth=1.5, label="controls: mean")
    for text in dict.fromkeys(r["question"] for r in sel if r["question_kind"] == introspection):
        pts = sorted((float(r[x_name]), float(r["b"])) for r in sel
                     if r["question_kind"] == introspection and r["question"] == text)
        ax.plot(*zip(*pts), color=STRONG, linewidth=2.2, marker="o", markersize=3.5,
                label=f"introspection: {text if len(text) <= 48 else text[:47] + '…'}")
    _style(ax, xlabel)
    ax.set_title(title, fontsize="medium")
    _legend_below(ax)
    return _save(fig, path)


def b_vs_strength(rows, path, layer: int, why: str = "", introspection: str = "introspection", title: str = ""):
    """b against strength at ``layer``; ``why`` (the reason for that layer) goes under the title."""
    return _sliced(rows, path, "strength", "layer", layer, why, introspection, title)


def b_vs_layer(rows, path, strength: float, why: str = "", introspection: str = "introspection", title: str = ""):
    """b against layer at ``strength``; ``why`` (the reason for that strength) goes under the title."""
    return _sliced(rows, path, "layer", "strength", strength, why, introspection, title)


def _sliced(rows, path, x_name: str, fixed_name: str, fixed, why: str, introspection: str, model: str = ""):
    _check_path(path)
    title = (f"{model}: " if model else "") + f"b against {x_name} at {fixed_name} {fixed:g}" + \
        (f"\n{why.strip()}" if why else "")
    return _slice(_records(rows), path, x_name, fixed_name, fixed, x_name, title, introspection)


def drift(result: dict, path):
    """A quantization comparison (``experiments.compare.compare``): each model's b against the
    reference file's b at the same point, one colour per model, on the diagonal."""
    _check_path(path)
    rows = result["rows"]

    def key(r):
        return (r["question_kind"], r["question"], int(r["layer"]), float(r["strength"]))

    ref_name = Path(result["reference"]).name
    ref_b = {key(r): r["b"] for r in rows if r["model"] == ref_name}
    fig = _figure(6.0, 6.0)
    ax = fig.subplots()
    for entry in result["models"]:
        if entry["reference"]:
            continue
        name = Path(entry["path"]).name
        pairs = [(ref_b[key(r)], r["b"]) for r in rows if r["model"] == name and key(r) in ref_b]
        if pairs:
            x, y = np.array(pairs).T
            ax.scatter(x, y, s=8, alpha=0.6, label=f"{entry['quant_type']} (mean |Δb| {entry['mean_abs_db']:.2f})")
    lo = min(r["b"] for r in rows) - 0.5
    hi = max(r["b"] for r in rows) + 0.5
    ax.plot([lo, hi], [lo, hi], color=GREY, lw=1)
    _style(ax, f"b, reference {ref_name}", "b, other quantization")
    ax.set_title("Belief drift across quantizations")
    ax.legend(fontsize="small", frameon=False)
    return _save(fig, path)


def shift_scatter(cells, path, vector: str, title: str = ""):
    """Each cell's introspection shift (Δb from the uninjected answer) against the control
    questions' mean shift, on the identity line: points on it move every yes/no answer alike.
    ``vector``'s cells are coloured by strength; the random vectors' (the null) are grey."""
    _check_path(path)
    recs = _records(cells)
    fig = _figure(6.0, 6.4)
    ax = fig.subplots()
    null = [c for c in recs if c["vector"] != vector]
    if null:
        ax.scatter([c["control_shift"] for c in null], [c["intro_shift"] for c in null], s=9, color=GREY, alpha=0.5,
                   label="random vectors (the null)")
    main = [c for c in recs if c["vector"] == vector]
    strengths = sorted({float(c["strength"]) for c in main})
    for s, colour in zip(strengths, _strength_colours(len(strengths))):
        pts = [c for c in main if float(c["strength"]) == s]
        ax.scatter([c["control_shift"] for c in pts], [c["intro_shift"] for c in pts], s=14, color=colour,
                   label=f"{vector}, strength {s:g}" if len(strengths) <= 6 or s in (strengths[0], strengths[-1])
                   else None)
    values = [c[k] for c in recs for k in ("control_shift", "intro_shift")]
    lo, hi = min(values), max(values)
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="identity: the same shift")
    _style(ax, "control questions: mean Δb from no injection", "introspection question: Δb from no injection")
    ax.set_title((f"{title}\n" if title else "") + "the introspection answer's shift against the controls'",
                 fontsize="medium")
    _legend_below(ax)
    return _save(fig, path)


def drift_metric(result: dict, path, metric: str):
    """An experiment's quantization comparison (``experiments.compare.compare_experiment``):
    each model's ``metric`` against the reference file's at the same cell, one colour per model."""
    _check_path(path)
    fig = _figure(6.0, 6.0)
    ax = fig.subplots()
    values = []
    for entry in result["models"]:
        if entry["reference"]:
            continue
        x, y = np.asarray(entry["reference_values"], float), np.asarray(entry["values"], float)
        if len(x):
            values += [x, y]
            ax.scatter(x, y, s=10, alpha=0.6, label=f"{entry['quant_type']} (mean |Δ| {entry['mean_abs_diff']:.3g})")
    if values:
        lo, hi = float(np.nanmin(np.concatenate(values))), float(np.nanmax(np.concatenate(values)))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color=GREY, lw=1)
    _style(ax, f"{metric}, reference {Path(result['reference']).name}", f"{metric}, other quantization")
    ax.set_title(f"{result.get('experiment', '')}: {metric} across quantizations".strip(": "))
    ax.legend(fontsize="small", frameon=False)
    return _save(fig, path)
