"""The paper's experiments' figures: measures against depth, one line per strength with the
null as a grey band, per-concept bars beside their null, and panels of named curves."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pyintro.plots.style import (GREY, STRONG, _check_path, _figure, _legend_below, _records, _save, _strength_colours,
                                 _style)


def by_depth(cells, path, panels: Sequence[tuple[str, str, float | None]], control: str = "random",
             title: str = "", baselines: dict | None = None, condition: str | None = None):
    """Experiment figures as the paper draws them: each panel a measure against layer as a
    fraction of depth, one line per strength (the injected condition), and the ``control``
    condition as one grey band (its min to max over strengths) with its mean.

    cells: rows with condition, depth, strength and the measures (e.g. ``detection.cells``).
    panels: (column, label, reference) per panel: the reference is None, a chance level, or a
            (value, label) pair for another line (a threshold).
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
            value, text = chance if isinstance(chance, tuple) else (chance, f"chance ({chance:g})")
            ax.axhline(value, color="black", linestyle=":", linewidth=1, label=text)
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
        _legend_below(ax, "x-small", ncol=1)
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
    fig = _figure(max(8.0, 3.2 * cols), 2.4 * nrows + 1.4)
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
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize="small", frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize="small")
    fig.supylabel(ylabel, fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
