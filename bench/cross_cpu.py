"""How much a sweep's numbers move between CPU kinds (AVX, AVX2, AVX-512 builds of llama.cpp).

    python bench/cross_cpu.py run --out avx2.json          # in each build's venv (tools/cpu_matrix.sh)
    python bench/cross_cpu.py compare avx.json avx2.json avx512.json [--markdown]

`run` extracts the all-caps vector and sweeps the default model over every layer x 16 strengths
x the introspection question and 12 control questions (`pyintro run`'s grid), and writes the
vector, every b and the introspection-control correlation with the build's CPU features.
`compare` reports, against the first file: how many values are bit-identical, the largest and
mean |difference|, and how far the headline figures moved.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

STRENGTHS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0]


def run(out: Path, threads: int) -> None:
    import pyintro
    from pyintro.experiments.sweep import sweep
    from pyintro.experiments.sweep_analysis import analyze
    from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION

    m = pyintro.Model.load(n_threads=threads)
    v = pyintro.contrast(m, "HI! HOW ARE YOU?", "Hi! How are you?", name="caps")
    rows = sweep(m, v, strengths=STRENGTHS, questions={"introspection": INTROSPECTION, "control": CONTROL_NO},
                 progress=False)
    an = analyze(rows)
    out.write_text(json.dumps({
        "numerics": m.numerics(),
        "vector": v.directions.tolist(),
        "b": [r["b"] for r in rows],
        "top_token": [r["top_token"] for r in rows],
        "keys": [[r["question_kind"], r["question"], r["layer"], r["strength"]] for r in rows],
        "correlation": an["correlation"], "fraction_exceeds": an["fraction_exceeds"],
    }))


def features(numerics: dict) -> str:
    info = numerics["system_info"]
    have = [f for f in ("AVX512", "AVX2", "AVX") if f"{f} = 1" in info]
    return have[0] if have else "?"


def compare(files: list[Path], markdown: bool) -> None:
    runs = [json.loads(p.read_text()) for p in files]
    ref = runs[0]
    keys = ref["keys"]
    injected = np.array([k[3] != 0.0 for k in keys])
    lines = ["| build | vector: bit-identical | vector: max rel. diff | b: bit-identical | b: max abs diff | "
             "b: mean abs diff | top token same | intro-control r |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p, r in zip(files, runs):
        assert r["keys"] == keys, f"{p} has another grid"
        va, vb = np.array(ref["vector"]), np.array(r["vector"])
        rel = np.abs(va - vb).max() / np.abs(va).max()
        ba, bb = np.array(ref["b"]), np.array(r["b"])
        d = np.abs(ba - bb)
        same_top = np.mean([x == y for x, y in zip(ref["top_token"], r["top_token"])])
        lines.append(f"| {features(r['numerics'])} ({p.stem}) | {np.mean(va == vb):.1%} | {rel:.1e} | "
                     f"{np.mean(ba == bb):.1%} ({np.mean(ba[~injected] == bb[~injected]):.0%} at s = 0) | "
                     f"{d.max():.3f} | {d.mean():.4f} | {same_top:.1%} | {r['correlation']:.4f} |")
    print("\n".join(lines) if markdown else "\n".join(x.replace("|", " ") for x in lines))
    print(f"\nreference: {files[0].name} ({features(ref['numerics'])}); {len(keys)} points "
          f"({int(injected.sum())} injected)", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("compare")
    c.add_argument("files", type=Path, nargs="+")
    c.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.cmd == "run":
        run(args.out, args.threads)
    else:
        compare(args.files, args.markdown)


if __name__ == "__main__":
    main()
