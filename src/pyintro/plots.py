"""Every figure pyintro draws, in one style (PNG or SVG by file suffix).

Figures are built on matplotlib's object API (Figure + the Agg canvas), never pyplot, so
importing or using this module leaves the user's matplotlib backend alone. Functions take
rows (a list of dicts) or a pandas DataFrame.

Style: the introspection question is one strong colour; control questions, which the
follow-up post showed move the same way, are one grey band (their min to max) with their mean
as a grey line. A line plot slices the layer x strength grid at one layer or one strength,
which the caller chooses (``experiments.sweep.favourable_point`` picks the point most favourable
to the introspection reading). This module draws what it is given and imports no experiment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

__all__ = ["b_vs_layer", "b_vs_strength", "by_depth", "curves", "drift", "drift_metric", "heatmaps", "per_concept",
           "shift_scatter", "small_multiples"]

_SUFFIXES = (".png", ".svg")
STRONG = "#c0392b"  # the introspection question
GREY = "#7f8c8d"  # controls
B_LABEL = "b = logit(Yes) − logit(No)"


def _records(rows) -> list[dict]:
    recs = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    if not recs:
        raise ValueError("no rows to plot; run a sweep first")
    return recs


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"plot path must end in .png or .svg, got {path.name!r}")
    return path


def _save(fig: Figure, path) -> Path:
    path = _check_path(path)
    fig.savefig(path, dpi=120)
    return path


def _style(ax, xlabel: str, ylabel: str = B_LABEL) -> None:
    ax.axhline(0.0, color="black", linewidth=0.6, alpha=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.25)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


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


def by_depth(cells, path, panels: Sequence[tuple[str, str, float | None]], control: str = "random",
             title: str = "", baselines: dict | None = None, condition: str | None = None):
    """Experiment figures as the paper draws them: each panel a measure against layer as a
    fraction of depth, one line per strength (the injected condition), and the ``control``
    condition as one grey band (its min to max over strengths) with its mean.

    cells: rows with condition, depth, strength and the measures (e.g. ``detection.cells``).
    panels: (column, label, chance level or None) per panel.
    baselines: {column: value} drawn as a dashed grey line "no injection" in that panel.
    condition: the injected condition drawn as lines (default: every one but ``control`` and
    "none"; give it when the cells hold several, or their lines would join across them)."""
    _check_path(path)
    recs = _records(cells)
    main = [c for c in recs if (c["condition"] == condition if condition else c["condition"] not in (control, "none"))]
    strengths = sorted({float(c["strength"]) for c in main})
    fig = _figure(4.2 * len(panels) + 1.0, 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = _strength_colours(len(strengths))
    for ax, (col, label, chance) in zip(axes, panels):
        ctrl: dict[float, list] = {}
        for c in recs:
            if c["condition"] == control and np.isfinite(float(c[col])):
                ctrl.setdefault(float(c["depth"]), []).append(float(c[col]))
        if ctrl:
            xs = sorted(ctrl)
            ax.fill_between(xs, [min(ctrl[x]) for x in xs], [max(ctrl[x]) for x in xs], color=GREY, alpha=0.25,
                            linewidth=0, label=f"{control} vectors: min to max")
            ax.plot(xs, [float(np.mean(ctrl[x])) for x in xs], color=GREY, linewidth=1.2, label=f"{control}: mean")
        for i, (s, colour) in enumerate(zip(strengths, colours)):
            pts = sorted((float(c["depth"]), float(c[col])) for c in main if float(c["strength"]) == s)
            if pts:  # a line style and a marker each, so that lines on top of each other stay visible
                ax.plot(*zip(*pts), color=colour, linewidth=1.8, linestyle=("-", "--", "-.", ":")[i % 4],
                        marker="os^D"[i % 4], markersize=4, markerfacecolor="none", label=f"strength {s:g}")
        if chance is not None:
            ax.axhline(chance, color="black", linestyle=":", linewidth=1, label=f"chance ({chance:g})")
        if baselines and col in baselines and np.isfinite(float(baselines[col])):
            ax.axhline(float(baselines[col]), color=GREY, linestyle="--", linewidth=1.4, label="no injection")
        _style(ax, "layer (fraction of depth)", label)
    _legend_below(axes[0])
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def per_concept(rows, path, value: str, label: str, title: str = "", null: str | None = None):
    """One horizontal bar per concept: ``value`` at each concept's own best cell (its highest),
    and with ``null`` the same concept's best under that condition (e.g. its random vector) beside
    it, so that a best-of-many is never shown without the best-of-many of its null."""
    _check_path(path)
    recs = [r for r in _records(rows) if r.get(value, "") != ""]
    best: dict[tuple, float] = {}
    for r in recs:
        if r.get("condition") in ("concept", null):
            k = (r["condition"], r["concept"])
            best[k] = max(best.get(k, -np.inf), float(r[value]))
    names = sorted({w for c, w in best if c == "concept"}, key=lambda w: best[("concept", w)])
    fig = _figure(6.4, 1.4 + 0.22 * len(names))
    ax = fig.subplots()
    y = np.arange(len(names))
    h = 0.4 if null else 0.8
    ax.barh(y + (h / 2 if null else 0), [best[("concept", w)] for w in names], height=h, color=STRONG,
            label="concept vector")
    if null:
        ax.barh(y - h / 2, [best.get((null, w), np.nan) for w in names], height=h, color=GREY,
                label=f"{null} vector (the null)")
    ax.set_yticks(y, names, fontsize="small")
    _style(ax, label, "")
    ax.axvline(0.0, color="black", linewidth=0.6)
    if title:
        ax.set_title(title, fontsize="medium")
    _legend_below(ax)
    return _save(fig, path)


def _legend_below(ax, size: str = "small") -> None:
    """The legend under the axes, where it cannot cover the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=size, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncol=min(3, len(handles)))


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
                   label=f"{vector}, strength {s:g}" if len(strengths) <= 6 or s in (strengths[0], strengths[-1]) else None)
    values = [c[k] for c in recs for k in ("control_shift", "intro_shift")]
    lo, hi = min(values), max(values)
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="identity: the same shift")
    _style(ax, "control questions: mean Δb from no injection", "introspection question: Δb from no injection")
    ax.set_title((f"{title}\n" if title else "") + "the introspection answer's shift against the controls'",
                 fontsize="medium")
    _legend_below(ax)
    return _save(fig, path)


def _strength_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    return [cmap(0.15 + 0.7 * i / max(1, n - 1)) for i in range(n)]


def curves(path, panels: Sequence[dict], title: str = "", xlabel: str = "layer (fraction of depth)"):
    """A row of panels of named curves, for figures the other helpers do not draw.

    Each panel: {"ylabel": str, "lines": [{"label", "x", "y", and optionally "lo" / "hi" (a
    shaded interval), "colour", "style" ("-", "--", ":"), "band": True (a grey band, no line)}],
    "hlines": [(y, label)], "vlines": [(x, label)], "title": str}. Lines without a colour get
    one of the strength colours in turn."""
    _check_path(path)
    if not panels:
        raise ValueError("no panels to draw")
    fig = _figure(4.6 * len(panels) + 0.8, 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        lines = panel.get("lines", [])
        colours = iter(_strength_colours(max(1, sum(1 for ln in lines if not ln.get("colour") and not ln.get("band")))))
        for ln in lines:
            x = np.asarray(ln["x"], float)
            order = np.argsort(x)
            x = x[order]
            if ln.get("band"):
                ax.fill_between(x, np.asarray(ln["lo"], float)[order], np.asarray(ln["hi"], float)[order], color=GREY,
                                alpha=0.15, linewidth=0, label=ln["label"])
                if "y" in ln:
                    ax.plot(x, np.asarray(ln["y"], float)[order], color=GREY, linewidth=1.2)
                continue
            colour = ln.get("colour") or next(colours)
            y = np.asarray(ln["y"], float)[order]
            if "lo" in ln and "hi" in ln:
                ax.fill_between(x, np.asarray(ln["lo"], float)[order], np.asarray(ln["hi"], float)[order],
                                color=colour, alpha=0.1, linewidth=0)
            ax.plot(x, y, color=colour, linestyle=ln.get("style", "-"), linewidth=1.8, marker="o", markersize=2.5,
                    label=ln["label"])
        for y, label in panel.get("hlines", []):
            ax.axhline(y, color=GREY, linestyle="--", linewidth=1.3, label=label or "_nolegend_")
        for (x, label), colour in zip(panel.get("vlines", []), ("black", "#8e44ad", "#16a085", GREY)):
            ax.axvline(x, color=colour, linestyle=":", linewidth=1.4, label=label or "_nolegend_")
        _style(ax, xlabel, panel.get("ylabel", ""))
        if panel.get("title"):
            ax.set_title(panel["title"], fontsize="medium")
        _legend_below(ax, "x-small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def small_multiples(path, panels: Sequence[dict], title: str = "", xlabel: str = "", ylabel: str = ""):
    """A grid of small panels of named curves (as ``curves`` takes them), one shared legend."""
    _check_path(path)
    if not panels:
        raise ValueError("no panels to draw")
    cols = min(4, len(panels))
    nrows = -(-len(panels) // cols)
    fig = _figure(3.2 * cols, 2.4 * nrows + 0.8)
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, panel in zip(axes.ravel(), panels):
        for ln in panel["lines"]:
            if ln.get("band"):
                ax.fill_between(ln["x"], ln["lo"], ln["hi"], color=GREY, alpha=0.2, linewidth=0, label=ln["label"])
            else:
                ax.plot(ln["x"], ln["y"], color=ln.get("colour"), linewidth=1.3, label=ln["label"])
        ax.set_title(panel["title"], fontsize="small")
        ax.tick_params(labelsize="x-small")
        ax.grid(alpha=0.25)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small", frameon=False)
    fig.supxlabel(xlabel, fontsize="small")
    fig.supylabel(ylabel, fontsize="small")
    if title:
        fig.suptitle(title)
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
