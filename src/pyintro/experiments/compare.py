"""The quantization study: the same sweep on several model files, and how b drifts across them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from pyintro.experiments.sweep import COLUMNS, SCHEMA, sweep
from pyintro.experiments.sweep_analysis import analyze
from pyintro.model import Model
from pyintro.progress import Progress
from pyintro.quantize import precision_rank
from pyintro.results import write_rows

__all__ = ["compare", "compare_experiment"]


def compare(
    models: Sequence[str | Path],
    vector,
    out: Optional[str | Path] = None,
    load: Callable[[Path], Model] = Model.load,
    say: Callable[[str], None] = lambda _: None,
    progress=None,
    **sweep_args,
) -> dict:
    """Sweep ``vector`` on every model file with the same grid (``sweep_args`` go to ``sweep``).

    The reference is the most precise file (F32 > BF16/F16 > Q8_0 > ... > Q2_K; ties: the
    larger file). For every other file: max and mean |Δb| against the reference over the
    grid, the Pearson correlation of b, and whether the introspection–control gap survives
    (the mean introspection − control gap keeps its sign, and at ≥ 90% of grid points the
    verdict "introspection b exceeds every control" is the same as the reference's).
    Rows of every model go to ``out`` (CSV, rewritten after each model). ``progress``: as in
    ``pyintro.progress``, over the models.
    """
    if len(models) < 2:
        raise ValueError("compare needs at least two model files")
    runs = []
    with Progress(progress, len(models), "compare", "model") as bar:
        for path in models:
            say(f"sweeping {Path(path).name}")
            with load(Path(path)) as m:
                rows = sweep(m, vector, progress=False, **sweep_args)
                runs.append({"path": str(path), "quant_type": m.quant_type, "size": Path(path).stat().st_size,
                             "rows": rows})
            if out is not None:  # the whole table after each model: a later failure keeps the earlier ones
                rows = [r for run in runs for r in run["rows"]]
                write_rows(out, rows, [c for c in COLUMNS if c in rows[0]] + [c for c in rows[0] if c not in COLUMNS])
            bar.advance(1)
    ref = min(runs, key=lambda r: (precision_rank(r["quant_type"]), -r["size"]))
    ref_b = {SCHEMA.key(r): r["b"] for r in ref["rows"]}
    ref_an = _analysis(ref["rows"])
    report = []
    for run in runs:
        b = {SCHEMA.key(r): r["b"] for r in run["rows"]}
        keys = sorted(set(b) & set(ref_b), key=str)
        x = np.array([ref_b[k] for k in keys])
        y = np.array([b[k] for k in keys])
        drift = np.abs(y - x)
        an = _analysis(run["rows"])
        entry = {
            "path": run["path"], "quant_type": run["quant_type"], "size_bytes": run["size"],
            "reference": run is ref, "n_points": len(keys),
            "max_abs_db": float(drift.max()) if len(keys) else float("nan"),
            "mean_abs_db": float(drift.mean()) if len(keys) else float("nan"),
            "correlation_b": _pearson(x, y),
        }
        if an is not None and ref_an is not None:
            agree = _agreement(an, ref_an)
            same_sign = np.sign(an["mean_gap"]) == np.sign(ref_an["mean_gap"])
            entry.update({"introspection_control_correlation": an["correlation"], "mean_gap": an["mean_gap"],
                          "exceeds_agreement": agree, "gap_survives": bool(same_sign and agree >= 0.9)})
        report.append(entry)
    return {"reference": ref["path"], "models": report, "rows": [r for run in runs for r in run["rows"]]}


def _analysis(rows) -> Optional[dict]:
    kinds = {r["question_kind"] for r in rows}
    if "introspection" not in kinds or len(kinds) < 2:
        return None
    an = analyze(rows)
    an["mean_gap"] = float(np.mean([p["diff"] for p in an["points"]]))
    return an


def _agreement(a: dict, b: dict) -> float:
    va = {(p["layer"], p["strength"]): p["exceeds_all"] for p in a["points"]}
    vb = {(p["layer"], p["strength"]): p["exceeds_all"] for p in b["points"]}
    keys = set(va) & set(vb)
    return float(np.mean([va[k] == vb[k] for k in keys])) if keys else float("nan")


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


# -- any experiment ------------------------------------------------------------------------------

def compare_experiment(
    models: Sequence[str | Path],
    experiment: str,
    out_dir: str | Path,
    metric: Optional[str] = None,
    load: Callable[[Path], Model] = Model.load,
    say: Callable[[str], None] = lambda _: None,
    progress=None,
    **run_args,
) -> dict:
    """Run ``experiment`` (a name of ``EXPERIMENTS``) on every model file with the same
    arguments (``run_args`` go to its ``prepare``; each file uses its own concept library), each
    into its own folder under ``out_dir``, and compare one ``metric`` of its cell table (default:
    the experiment's, e.g. the thought's 10-way top-1 rate, P(apology), the contrasts' mean
    cosine difference) against the most precise file: max and mean |difference| and the
    correlation, over the cells both have."""
    from pyintro.experiments import EXPERIMENTS
    from pyintro.experiments import run as run_experiment

    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {experiment!r}")
    if len(models) < 2:
        raise ValueError("compare needs at least two model files")
    exp = EXPERIMENTS[experiment]
    table, key_cols, default = exp.cells
    metric = metric or default
    out_dir = Path(out_dir)
    runs = []
    with Progress(progress, len(models), "compare", "model") as bar:
        for i, path in enumerate(models):
            say(f"{experiment} on {Path(path).name}")
            folder = out_dir / f"{i + 1:02d}-{Path(path).stem}"
            folder.mkdir(parents=True, exist_ok=True)
            with load(Path(path)) as m:
                run_experiment(exp, m, folder, progress=False, **run_args)
                quant = m.quant_type
            cells = _read_cells(folder / table)
            if cells and metric not in cells[0]:
                raise ValueError(f"{table} of {experiment} has no column {metric!r}; choose one of "
                                 f"{', '.join(c for c in cells[0] if c not in key_cols)}")
            for c in cells:
                c["model"], c["quant_type"] = Path(path).name, quant
            runs.append({"path": str(path), "quant_type": quant, "size": Path(path).stat().st_size, "cells": cells,
                         "folder": str(folder)})
            bar.advance(1)
    ref = min(runs, key=lambda r: (precision_rank(r["quant_type"]), -r["size"]))
    value = lambda c: float(c[metric]) if c[metric] != "" else float("nan")  # noqa: E731
    ref_v = {tuple(c[k] for k in key_cols): value(c) for c in ref["cells"]}
    report = []
    for run in runs:
        v = {tuple(c[k] for k in key_cols): value(c) for c in run["cells"]}
        keys = [k for k in ref_v if k in v and np.isfinite(ref_v[k]) and np.isfinite(v[k])]
        x, y = np.array([ref_v[k] for k in keys]), np.array([v[k] for k in keys])
        d = np.abs(y - x)
        report.append({"path": run["path"], "quant_type": run["quant_type"], "size_bytes": run["size"],
                       "reference": run is ref, "folder": run["folder"], "n_cells": len(keys),
                       "max_abs_diff": float(d.max()) if len(keys) else float("nan"),
                       "mean_abs_diff": float(d.mean()) if len(keys) else float("nan"),
                       "correlation": _pearson(x, y), "values": y.tolist(), "reference_values": x.tolist()})
    rows = [c for run in runs for c in run["cells"]]
    return {"experiment": experiment, "metric": metric, "reference": ref["path"], "models": report, "rows": rows}


def _read_cells(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
