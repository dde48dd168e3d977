"""An experiment run on a device against the same run on the CPU: two results.csv files compared
row by row.

    python tools/device_experiments.py CPU/results.csv DEVICE/results.csv [--bound-b 0.6] [--json OUT]
    python tools/device_experiments.py --run "detect --quick" --out DIR [--gpu-layers -1]   # runs both

Rows are matched by position (the same command and grid write the same rows in the same order);
the files must have the same header and row count. Each column is then one of:

- equal in every row (the grid, the model, the labels): checked, not reported;
- numeric in both files and different somewhere (b, p_yes, norms, scores): max and mean |Δ|,
  its 99th percentile, and the share of rows that are bit-identical;
- text that differs somewhere (a top token, a judged answer): the share of rows that agree.

The exit status is 1 when a column named by --bound-* exceeds its bound (max |Δ|), else 0. The
default bound for ``b`` is docs/numerics.md's cross-CPU figure for injected points (the 99th
percentile of |Δb| between two CPU kinds, 1.56, rounded up to 2.0 for the maximum of a quick
grid's few hundred rows): a device run is "within the bound of the CPU run" when it moves b no
more than a change of CPU kind does.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path


def read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise SystemExit(f"{path}: empty file")
    return rows[0], rows[1:]


def _float(x: str):
    try:
        return float(x)
    except ValueError:
        return None


def compare(cpu: Path, dev: Path) -> dict:
    head_a, rows_a = read(cpu)
    head_b, rows_b = read(dev)
    if head_a != head_b:
        raise SystemExit(f"the headers differ:\n  {cpu}: {head_a}\n  {dev}: {head_b}")
    if len(rows_a) != len(rows_b):
        raise SystemExit(f"{cpu} has {len(rows_a)} rows, {dev} has {len(rows_b)}: not the same run")
    out = {"rows": len(rows_a), "numeric": {}, "text": {}, "equal": []}
    for j, name in enumerate(head_a):
        a = [r[j] for r in rows_a]
        b = [r[j] for r in rows_b]
        if a == b:
            out["equal"].append(name)
            continue
        fa, fb = [_float(x) for x in a], [_float(x) for x in b]
        pairs = [(x, y) for x, y in zip(fa, fb) if x is not None and y is not None]
        if len(pairs) == len(a):
            d = sorted(abs(x - y) for x, y in pairs if not (math.isnan(x) and math.isnan(y)))
            same = sum(1 for x, y in pairs if x == y or (math.isnan(x) and math.isnan(y)))
            d = [x for x in d if not math.isnan(x)] or [0.0]
            out["numeric"][name] = {"max": d[-1], "mean": sum(d) / len(d), "p99": d[min(len(d) - 1, int(0.99 * len(d)))],
                                    "identical": same / len(a)}
        else:
            out["text"][name] = {"agree": sum(1 for x, y in zip(a, b) if x == y) / len(a)}
    return out


def markdown(result: dict, cpu: Path, dev: Path) -> str:
    lines = [f"{dev} against {cpu}: {result['rows']} rows; equal in every row: {', '.join(result['equal']) or '-'}", "",
             "| column | max abs diff | mean abs diff | 99th pct | bit-identical |", "|---|---:|---:|---:|---:|"]
    for name, s in result["numeric"].items():
        lines.append(f"| {name} | {s['max']:.4g} | {s['mean']:.4g} | {s['p99']:.4g} | {100 * s['identical']:.1f}% |")
    for name, s in result["text"].items():
        lines.append(f"| {name} (text) | | | | agree {100 * s['agree']:.1f}% |")
    return "\n".join(lines)


def run_both(command: str, out: Path, gpu_layers: int, threads: int) -> tuple[Path, Path]:
    """Run ``pyintro <command>`` on the CPU and on the device (``--gpu-layers``), each into its
    own folder under ``out``; returns the two results.csv paths."""
    paths = []
    for name, layers in (("cpu", 0), ("device", gpu_layers)):
        folder = out / name
        args = ["pyintro", *shlex.split(command), "--out", str(folder), "--threads", str(threads)]
        if layers:
            args += ["--gpu-layers", str(layers)]
        print("$", " ".join(args), file=sys.stderr)
        subprocess.run(args, check=True)
        paths.append(folder / "results.csv")
    return paths[0], paths[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cpu", nargs="?", type=Path)
    ap.add_argument("device", nargs="?", type=Path)
    ap.add_argument("--run", help="a pyintro command to run on both (e.g. 'detect --quick')")
    ap.add_argument("--out", type=Path, help="with --run: where the two runs go")
    ap.add_argument("--gpu-layers", type=int, default=-1)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PYINTRO_THREADS", "2")))
    ap.add_argument("--bound-b", type=float, default=2.0, help="largest |Δb| accepted (default 2.0)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.run:
        if a.out is None:
            ap.error("--run needs --out")
        a.cpu, a.device = run_both(a.run, a.out, a.gpu_layers, a.threads)
    if a.cpu is None or a.device is None:
        ap.error("give two results.csv files, or --run and --out")
    result = compare(a.cpu, a.device)
    print(markdown(result, a.cpu, a.device))
    bad = []
    b = result["numeric"].get("b")
    if b is not None and b["max"] > a.bound_b:
        bad.append(f"b: max |Δb| {b['max']:.3g} > {a.bound_b}")
    result["bounds"] = {"b": a.bound_b}
    result["exceeded"] = bad
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    for line in bad:
        print("exceeded:", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
