"""Run the same sweep on several model files and measure how b drifts across them."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from pyintro.model import Model
from pyintro.quantize import precision_rank
from pyintro.sweep import COLUMNS, analyze, sweep

_KEY = ("question_kind", "question", "layer", "strength")


def compare(
    models: Sequence[str | Path],
    vector,
    out: Optional[str | Path] = None,
    load: Callable[[Path], Model] = Model.load,
    say: Callable[[str], None] = lambda _: None,
    **sweep_args,
) -> dict:
    """Sweep ``vector`` on every model file with the same grid (``sweep_args`` go to ``sweep``).

    The reference is the most precise file (F32 > BF16/F16 > Q8_0 > ... > Q2_K; ties: the
    larger file). For every other file: max and mean |Δb| against the reference over the
    grid, the Pearson correlation of b, and whether the introspection–control gap survives
    (the mean introspection − control gap keeps its sign, and at ≥ 90% of grid points the
    verdict "introspection b exceeds every control" is the same as the reference's).
    Rows of every model go to ``out`` (CSV, one model after another).
    """
    if len(models) < 2:
        raise ValueError("compare needs at least two model files")
    runs = []
    for path in models:
        say(f"sweeping {Path(path).name}")
        with load(Path(path)) as m:
            rows = sweep(m, vector, progress=False, **sweep_args)
            runs.append({"path": str(path), "quant_type": m.quant_type, "size": Path(path).stat().st_size, "rows": rows})
        if out is not None:
            _write(Path(out), [r for run in runs for r in run["rows"]])
    ref = min(runs, key=lambda r: (precision_rank(r["quant_type"]), -r["size"]))
    ref_b = {tuple(r[k] for k in _KEY): r["b"] for r in ref["rows"]}
    ref_an = _analysis(ref["rows"])
    report = []
    for run in runs:
        b = {tuple(r[k] for k in _KEY): r["b"] for r in run["rows"]}
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


def plot(result: dict, path: str | Path) -> None:
    """b of each model against b of the reference, one colour per model, on the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ref_path = result["reference"]
    ref_name = Path(ref_path).name
    ref_b = {tuple(r[k] for k in _KEY): r["b"] for r in rows if r["model"] == ref_name}
    fig, ax = plt.subplots(figsize=(6, 6))
    for entry in result["models"]:
        if entry["reference"]:
            continue
        name = Path(entry["path"]).name
        pairs = [(ref_b[k], r["b"]) for r in rows if r["model"] == name
                 for k in [tuple(r[c] for c in _KEY)] if k in ref_b]
        if pairs:
            x, y = np.array(pairs).T
            ax.scatter(x, y, s=8, alpha=0.6, label=f"{entry['quant_type']} (mean |Δb| {entry['mean_abs_db']:.2f})")
    lo = min([r["b"] for r in rows]) - 0.5
    hi = max([r["b"] for r in rows]) + 0.5
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
    ax.set_xlabel(f"b, reference {ref_name}")
    ax.set_ylabel("b, other quantization")
    ax.set_title("Belief drift across quantizations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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


def _write(path: Path, rows: list[dict]) -> None:
    fields = [c for c in COLUMNS if c in rows[0]] + [c for c in rows[0] if c not in COLUMNS]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
