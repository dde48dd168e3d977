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

from pyintro.plots.panels import by_depth, curves, per_concept, small_multiples
from pyintro.plots.style import GREY, STRONG
from pyintro.plots.sweep import b_vs_layer, b_vs_strength, drift, drift_metric, heatmaps, shift_scatter

__all__ = ["GREY", "STRONG", "b_vs_layer", "b_vs_strength", "by_depth", "curves", "drift", "drift_metric", "heatmaps",
           "per_concept", "shift_scatter", "small_multiples"]
