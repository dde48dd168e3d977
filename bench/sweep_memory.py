"""Sweep memory: RSS growth over a long Yes/No sweep, above the footprint right after load.

    python bench/sweep_memory.py [--model smollm2 --model gemma3-270m] [--points 1000] [--readme docs/performance.md]

For each model: RSS right after ``Model.load`` (weights, KV cache, compute buffers), then the
peak RSS during a sweep of ``--points`` points (the follow-up post's two questions, every layer,
strengths cycling to fill the count), with the full-vocabulary readout (the default) and with
Yes/No ids only (the fast head). Targets: ≤ 200 MB above the footprint for 1,000 points on
Gemma-3-270M; ≤ 150 MB of growth over 10,000 points on either model (``--points 10000``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, machine_line, report  # noqa: E402
from hf_reference import PeakRSS, rss_mb  # noqa: E402

import pyintro  # noqa: E402
from pyintro.experiments.sweep import sweep  # noqa: E402


def run(name: str, n_points: int, threads: int) -> dict:
    before = rss_mb()
    model = pyintro.Model.load(name, n_threads=threads, chat_template="raw" if name == "gemma3-270m" else "auto")
    loaded = rss_mb()
    rng = np.random.default_rng(0)
    vec = rng.standard_normal((model.n_layer, model.n_embd)).astype(np.float32)
    per_strength = 2 * model.n_layer  # two questions x every layer
    n_strengths = max(1, -(-n_points // per_strength))
    strengths = [float(s) for s in np.linspace(0.0, 8.0, n_strengths)]
    out = {"model": model.path.name, "rss_mb_before_load": before, "rss_mb_after_load": loaded,
           "points": per_strength * n_strengths}
    for full_vocab in (True, False):
        with PeakRSS() as mem:
            rows = sweep(model, vec, strengths=strengths, progress=False, full_vocab=full_vocab)
        key = "full_vocab" if full_vocab else "yes_no"
        out[key] = {"rows": len(rows), "peak_mb": mem.peak, "above_footprint_mb": mem.peak - loaded,
                    "growth_mb": mem.peak - mem.start}
        del rows
    model.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="models (default: smollm2 and gemma3-270m)")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--readme", type=Path, help="update this file's bench:sweep_memory section")
    args = ap.parse_args()
    results = [run(name, args.points, args.threads) for name in (args.model or ["smollm2", "gemma3-270m"])]
    m = machine()
    lines = [f"Sweep memory, about {args.points} points per sweep ({machine_line(m)}).", "",
             "| model | points | RSS after load | full-vocab sweep: peak above load | Yes/No sweep: peak above load |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['points']} | {r['rss_mb_after_load']:.0f} MB | "
                     f"{r['full_vocab']['above_footprint_mb']:.0f} MB | {r['yes_no']['above_footprint_mb']:.0f} MB |")
    lines += ["", f"Reproduce: `python bench/sweep_memory.py --points {args.points} --readme docs/performance.md`"]
    md = "\n".join(lines)
    report(f"sweep_memory_{args.points}", {"machine": m, "results": results}, md,
           args.readme, f"sweep_memory_{args.points}")


if __name__ == "__main__":
    main()
