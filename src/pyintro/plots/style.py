"""The one style every figure shares: a Figure on the Agg canvas (never pyplot), PNG or SVG by the
file's suffix, one strong colour, grey for controls and nulls, legends under the axes."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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


def _legend_below(ax, size: str = "small", ncol: int = 3) -> None:
    """The legend under the axes, where it cannot cover the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=size, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncol=min(ncol, len(handles)))


def _strength_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    return [cmap(0.15 + 0.7 * i / max(1, n - 1)) for i in range(n)]
