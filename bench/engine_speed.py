"""Engine speed: batched injection vs. the no-hook limit vs. one full decode per point.

    python bench/engine_speed.py [--threads 2] [--points 256] [--readme docs/performance.md]

(a) limit: a plain batched decode of N sequences' last tokens over a shared prefix,
    in a context created without pyintro's eval callback;
(b) the same batch with an injection on every row, at varied layers and strengths, through
    llama.cpp's full unembedding as (a) (``fast_head=False``: only the hook differs);
(c) the naive way: one full-prompt decode per point (no prefix sharing);
(d) (b) with pyintro's defaults: the fast head computes the two logits from the final norm.
Targets: (b) <= 1.15 x (a), and (d) >= 30 x faster per point than (c).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import OtherLoad, interleaved, machine, machine_line, report  # noqa: E402

import pyintro  # noqa: E402
from pyintro.model import Settings  # noqa: E402
from pyintro import Injection  # noqa: E402

SYSTEM = "You are a large language model undergoing a test to see if you are sensitive to your internal activations."
USER = "Do you detect an injected thought? Answer only by 'Yes' or 'No'."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points", type=int, default=256, help="points per batch (<= 256)")
    ap.add_argument("--naive-points", type=int, default=12, help="points timed for (c)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--readme", type=Path, help="update this file's bench:engine_speed section")
    args = ap.parse_args()

    other = OtherLoad()
    hooked = pyintro.Model.load(n_threads=args.threads, fast_head=False)
    fast = pyintro.Model.load(n_threads=args.threads)
    plain = pyintro.Model.load(n_threads=args.threads, settings=Settings(eval_callback=False))
    # (c) gets its own Model: a call without prefix reuse drops the cached prefix, and (a) and
    # (b) both time batches over a prefix that is already decoded.
    naive_model = pyintro.Model.load(n_threads=args.threads, settings=Settings(reuse_prefix=False))
    ids = hooked.chat(USER, system=SYSTEM)
    yes_no = [hooked.tokenize("Yes")[0], hooked.tokenize("No")[0]]
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((hooked.n_layer, hooked.n_embd)).astype(np.float32)
    n = args.points
    points = [[Injection(vectors, i % hooked.n_layer, float(1 + i % 16))] for i in range(n)]
    empty = [[] for _ in range(n)]

    naive = points[: args.naive_points]

    def one_by_one():
        for p in naive:
            naive_model.points(ids, [p], vocab_ids=yes_no)

    timed = interleaved({
        "a": lambda: plain.points(ids, empty, vocab_ids=yes_no),
        "b": lambda: hooked.points(ids, points, vocab_ids=yes_no),
        "c": one_by_one,
        "d": lambda: fast.points(ids, points, vocab_ids=yes_no),
    }, args.repeats)
    t_a, t_b, t_c, t_d = (timed[k]["median"] for k in "abcd")
    other.stop()
    ms_a, ms_b, ms_c, ms_d = 1000 * t_a / n, 1000 * t_b / n, 1000 * t_c / len(naive), 1000 * t_d / n
    result = {
        "machine": machine(),
        "model": hooked.path.name,
        "prompt_tokens": len(ids),
        "threads": args.threads,
        "points": n,
        "ms_per_point": {"a_limit": ms_a, "b_batched_injection": ms_b, "c_full_decode_each": ms_c,
                         "d_fast_head": ms_d},
        "b_over_a": ms_b / ms_a,
        "c_over_d": ms_c / ms_d,
        "targets": {"b_over_a_max": 1.15, "c_over_d_min": 30},
        "other_processes_cores": round(other.cores, 3),
    }

    table = "\n".join([
        f"Engine, {hooked.path.name}, {len(ids)}-token prompt, {n} points per batch, {args.threads} threads "
        f"(median of {args.repeats} rounds, variants timed in rotation after a warm-up round; "
        f"{machine_line(result['machine'])}). " + other.sentence(result["machine"]["cores"]),
        "",
        "| | ms/point | ratio |",
        "|---|---:|---:|",
        f"| (a) limit: batched decode, no hook | {ms_a:.2f} | 1.00 × (a) |",
        f"| (b) pyintro: batched, injection on every row, full unembedding | {ms_b:.2f} | {ms_b / ms_a:.2f} × (a) "
        "(target ≤ 1.15) |",
        f"| (d) pyintro's default: (b) with the fast head | {ms_d:.2f} | {ms_d / ms_a:.2f} × (a) |",
        f"| (c) naive: one full decode per point | {ms_c:.1f} | {ms_c / ms_d:.0f} × (d) (target ≥ 30) |",
        "",
        "Reproduce: `python bench/engine_speed.py --readme docs/performance.md`",
    ])
    report("engine_speed", result, table, args.readme, "engine_speed")


if __name__ == "__main__":
    main()
