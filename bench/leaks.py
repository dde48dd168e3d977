"""Resident memory over many decodes and many models: the figures behind tests/test_leaks.py.

    python bench/leaks.py                       # 10000 decodes, 50 models
    python bench/leaks.py --decodes 2000 --models 10

Prints RSS (from /proc/self/statm) at checkpoints, and the growth over each run's second
half, which should be ~0 once allocator pools are warm. Linux only.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import pyintro
from pyintro import Injection

MB = 1 << 20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def decodes_curve(n_decodes: int, every: int) -> list[tuple[int, int]]:
    """RSS after every ``every`` decodes: alternating batched points() (3 points, one
    injected suffix decode over a cached prefix) and capture() of a short prompt with an
    injection into every row."""
    m = pyintro.Model.load(n_threads=1, n_ctx=256, n_seq_max=8)
    try:
        ids = m.chat("Is there an injected thought?")
        short = ids[:6]
        v = np.random.default_rng(5).standard_normal(m.n_embd).astype(np.float32)
        pts = [[Injection(v, 3, 2.0)], [Injection(v, 17, -1.0)], []]
        curve, done = [(0, rss())], 0
        while done < n_decodes:
            m.points(ids, pts, vocab_ids=[1, 2, 3])
            m.capture(short, layers=[2, 20], inject=[Injection(v, 5, 1.5, "all")])
            done += 2
            if done % every == 0:
                curve.append((done, rss()))
        return curve
    finally:
        m.close()


def models_curve(n_models: int) -> list[tuple[int, int]]:
    """RSS after each load + one injected decode + close."""
    curve = [(0, rss())]
    for i in range(n_models):
        m = pyintro.Model.load(n_threads=1, n_ctx=256, n_seq_max=4)
        m.logits(m.chat("Hello"), inject=[Injection(np.ones(m.n_embd, np.float32), 4, 1.0)])
        m.close()
        curve.append((i + 1, rss()))
    return curve


def report(title: str, unit: str, curve: list[tuple[int, int]]) -> None:
    print(f"\n{title}")
    print(f"{unit:>10}  RSS MiB")
    for x, r in curve:
        print(f"{x:>10}  {r / MB:8.1f}")
    mid = curve[len(curve) // 2][1]
    print(f"growth over the second half: {(curve[-1][1] - mid) / MB:+.2f} MiB; "
          f"total {(curve[-1][1] - curve[0][1]) / MB:+.2f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decodes", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--models", type=int, default=50)
    args = ap.parse_args()
    t = time.perf_counter()
    report(f"{args.decodes} decodes with injection and capture", "decodes", decodes_curve(args.decodes, args.every))
    report(f"{args.models} models loaded, used and freed", "models", models_curve(args.models))
    print(f"\n({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
