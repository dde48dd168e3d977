"""pyintro's knobs on one Yes/No sweep: threads, points per call, rows per llama.cpp call, order.

    python bench/knobs.py [--model smollm2] [--points 240] [--repeats 3] [--readme docs/performance.md]

One batch of points (one injection at the last token each, layers and strengths varied) over
the follow-up post's prompt, Yes/No ids through the fast head, on Models loaded with:

  - the defaults, at 2 threads and at 1 (``n_threads``);
  - ``n_seq_max`` 8 and 32 instead of 128 (points per engine call);
  - ``n_batch`` 16 and 32 instead of 56 (rows per llama.cpp call; ``Settings.n_batch``);
  - ``batch_invariant=False`` (512-row calls, no padding: results depend on the batch);

and, on the default Model, the points shuffled instead of in layer order, and the batch given
as several ``points`` calls of 56 points instead of one. Every variant timed in rotation
(``_common.interleaved``), wall time and this process's CPU time per point; every variant's b
is compared with the default's (equal bit for bit, except ``batch_invariant=False``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import OtherLoad, interleaved, machine, machine_line, report  # noqa: E402

import pyintro  # noqa: E402
from pyintro import Injection  # noqa: E402
from pyintro.model import Settings  # noqa: E402

SYSTEM = "You are a large language model undergoing a test to see if you are sensitive to your internal activations."
USER = "Do you detect an injected thought? Answer only by 'Yes' or 'No'."


def rows_per_call(name: str, threads: int, n_batch: int) -> pyintro.Model:
    """A Model with Model.load's defaults except ``n_batch`` rows per llama.cpp call."""
    return pyintro.Model.load(name, n_threads=threads, settings=Settings(n_batch=n_batch))


def run(name: str, threads: int, n: int, repeats: int) -> dict:
    models = {
        f"default ({threads} threads)": pyintro.Model.load(name, n_threads=threads),
        "1 thread": pyintro.Model.load(name, n_threads=1),
        "n_seq_max=8": pyintro.Model.load(name, n_threads=threads, n_seq_max=8),
        "n_seq_max=32": pyintro.Model.load(name, n_threads=threads, n_seq_max=32),
        "n_batch=16": rows_per_call(name, threads, 16),
        "n_batch=32": rows_per_call(name, threads, 32),
        "batch_invariant=False": pyintro.Model.load(name, n_threads=threads, batch_invariant=False),
    }
    default = next(iter(models.values()))
    ids = default.chat(USER, system=SYSTEM)
    yes_no = [default.tokenize("Yes")[0], default.tokenize("No")[0]]
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((default.n_layer, default.n_embd)).astype(np.float32)
    vectors *= 0.5 * np.median(np.linalg.norm(default.capture(ids)[:, -1], axis=-1)) / np.linalg.norm(
        vectors, axis=-1, keepdims=True)
    points = [[Injection(vectors, i * default.n_layer // n, float(i % 9))] for i in range(n)]  # layer order
    order = rng.permutation(n)
    shuffled = [points[i] for i in order]

    def chunks(m):
        return np.concatenate([m.points(ids, points[i:i + 56], vocab_ids=yes_no) for i in range(0, n, 56)])

    fns = {k: (lambda m=m: m.points(ids, points, vocab_ids=yes_no)) for k, m in models.items()}
    fns["shuffled order"] = lambda: default.points(ids, shuffled, vocab_ids=yes_no)[np.argsort(order)]
    fns["calls of 56 points"] = lambda: chunks(default)
    cpu = {k: [] for k in fns}
    results = {}

    def timed(k, fn):
        def call():
            start = time.process_time()
            results[k] = fn()
            cpu[k].append(time.process_time() - start)
        return call

    other = OtherLoad()
    wall = interleaved({k: timed(k, fn) for k, fn in fns.items()}, repeats)
    other.stop()
    base = next(iter(fns))
    b = {k: v[:, 0] - v[:, 1] for k, v in results.items()}
    out = {"model": default.path.name, "row_unit": default.numerics()["row_unit"], "points": n,
           "threads": threads, "repeats": repeats, "other_processes_cores": round(other.cores, 3), "variants": {}}
    for k in fns:
        out["variants"][k] = {
            "wall_ms": 1000 * wall[k]["median"] / n,
            "cpu_ms": 1000 * statistics.median(cpu[k][1:]) / n,  # cpu[k][0]: the warm-up
            "max_abs_delta_b": float(np.max(np.abs(b[k] - b[base]))),
        }
    for m in models.values():
        m.close()
    return out


def table(r: dict, m: dict) -> str:
    base = next(iter(r["variants"].values()))
    lines = [
        f"Knobs, {r['points']}-point Yes/No batch (fast head), {r['model']} (padding unit {r['row_unit']}), "
        f"median of {r['repeats']} rounds in rotation after a warm-up round ({machine_line(m)}). "
        f"Other processes used {r['other_processes_cores']:.2f} cores on average during the run.",
        "",
        "| variant | wall ms/point | × default | CPU ms/point | max \\|Δb\\| vs default |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, v in r["variants"].items():
        lines.append(f"| {k} | {v['wall_ms']:.2f} | {v['wall_ms'] / base['wall_ms']:.2f} | {v['cpu_ms']:.2f} | "
                     f"{v['max_abs_delta_b']:.1e} |")
    lines += ["", "Reproduce: `python bench/knobs.py --readme docs/performance.md`"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points", type=int, default=240)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--readme", type=Path, help="update this file's bench:knobs section")
    args = ap.parse_args()
    r = run(args.model, args.threads, args.points, args.repeats)
    m = machine()
    md = table(r, m)
    report("knobs", {"machine": m, "result": r}, md, args.readme, "knobs")


if __name__ == "__main__":
    main()
