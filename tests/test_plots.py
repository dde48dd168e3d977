"""Plots from real sweep rows: files written, valid PNG / SVG, bad input refused."""

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from pyintro.plots import b_vs_layer, b_vs_strength, by_depth, heatmaps, per_concept
from pyintro.experiments.sweep import sweep
from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def rows(m):
    rng = np.random.default_rng(5)
    v = rng.standard_normal((m.n_layer, m.n_embd)).astype(np.float32)
    v *= 40.0 / np.linalg.norm(v, axis=1, keepdims=True)
    qs = {"introspection": INTROSPECTION, "control": CONTROL_NO[:2]}
    return sweep(m, v, layers=[3, 9, 15, 21], strengths=[-2.0, 0.0, 2.0, 6.0], questions=qs, progress=False)


def check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000
    img = imread(path)  # [h, w, channels]
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.05  # not a blank canvas


def check_svg(path):
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert len(list(root.iter())) > 50


def test_heatmaps_png_and_svg(rows, tmp_path):
    check_png(heatmaps(rows, tmp_path / "h.png"))
    check_svg(heatmaps(pd.DataFrame(rows), tmp_path / "h.svg"))


def test_line_plots(rows, tmp_path):
    check_png(b_vs_strength(rows, tmp_path / "s.png", layer=9))
    check_png(b_vs_layer(rows, tmp_path / "l.png", strength=2.0))
    check_svg(b_vs_layer(rows, tmp_path / "l.svg", strength=6.0))
    with pytest.raises(ValueError, match="no rows with layer=4"):
        b_vs_strength(rows, tmp_path / "x.png", layer=4)


def test_experiment_figures(tmp_path):
    cells = [{"condition": cond, "depth": d, "strength": s, "intro": v, "id10": v / 2}
             for cond in ("concept", "random") for d in (0.0, 0.5, 1.0) for s in (2.0, 8.0)
             for v in [d * s if cond == "concept" else 0.1 * s]]
    check_png(by_depth(cells, tmp_path / "d.png", [("intro", "shift", None), ("id10", "identification", 0.1)]))
    rows = [{"condition": "concept", "concept": w, "intro": v} for w, v in (("Dust", 0.3), ("Oceans", -0.2))]
    check_png(per_concept(rows, tmp_path / "c.png", "intro", "shift"))


def test_bad_input(rows, tmp_path):
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        heatmaps(rows, tmp_path / "h.pdf")
    with pytest.raises(ValueError, match="no rows"):
        heatmaps([], tmp_path / "h.png")
    assert not (tmp_path / "h.pdf").exists()


def test_plotting_leaves_the_matplotlib_backend_alone(rows, tmp_path):
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import pyintro.plots as p, pyintro.cli, pyintro.experiments.compare; "
            "p.heatmaps([{'question_kind': 'introspection', 'question': 'q', 'layer': 0, 'strength': 0.0, 'b': 1.0}], "
            "sys.argv[1]); print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", "import sys; " + code, str(tmp_path / "h.png")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_slices_default_to_the_telling_point_and_say_so(rows, tmp_path):
    from pyintro.experiments.sweep_analysis import favourable_point, figures

    layer, strength = favourable_point(rows)
    pts = {(r["layer"], r["strength"]): r for r in rows}
    assert (layer, strength) in pts
    draw = figures(rows)  # no layer or strength given: favourable_point's
    check_png(draw["strength.png"](tmp_path / "s.png"))
    check_png(draw["layer.png"](tmp_path / "l.png"))
