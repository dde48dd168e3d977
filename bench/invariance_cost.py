"""What batch invariance costs: the same sweep in pyintro's design and in the one before it.

    python bench/invariance_cost.py [--points 960] [--threads 1] [--readme docs/numerics.md]

One batch of points (an injection at the last token, every layer, strengths 0..15, the
follow-up post's prompt, Yes/No logits after the full unembedding), timed in rotation:

- invariant (the default): flash attention on, llama_decode calls of at most 56 rows, padded
  to multiples of the file's padding unit in rows and outputs (2 for the default model);
- the earlier design: flash attention off, 512-row calls, no padding (whose values depend on
  the batch in the last bits: docs/numerics.md).

Both through the full unembedding (``fast_head=False``), so only the decode design differs.
Target: invariant ≤ 1.10 × the earlier design.
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


def earlier_design(threads: int) -> pyintro.Model:
    return pyintro.Model.load(n_threads=threads, fast_head=False, batch_invariant=False,
                              settings=Settings(flash_attn=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=960)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--readme", type=Path, help="update this file's bench:invariance_cost section")
    args = ap.parse_args()
    inv = pyintro.Model.load(n_threads=args.threads, fast_head=False)
    old = earlier_design(args.threads)
    ids = inv.chat(USER, system=SYSTEM)
    yes_no = [inv.tokenize("Yes")[0], inv.tokenize("No")[0]]
    v = np.random.default_rng(0).standard_normal((inv.n_layer, inv.n_embd)).astype(np.float32)
    points = [[Injection(v, i % inv.n_layer, float(i // inv.n_layer % 16))] for i in range(args.points)]
    cpu = {"invariant": [], "earlier": []}

    def timed(name, m):
        def run():
            start = time.process_time()
            m.points(ids, points, vocab_ids=yes_no)
            cpu[name].append(time.process_time() - start)
        return run

    other = OtherLoad()
    wall = interleaved({"invariant": timed("invariant", inv), "earlier": timed("earlier", old)}, args.repeats)
    other.stop()
    ms = {k: 1000 * wall[k]["median"] / args.points for k in wall}
    cpu_ms = {k: 1000 * statistics.median(v[1:]) / args.points for k, v in cpu.items()}
    result = {"machine": machine(), "model": inv.path.name, "points": args.points, "threads": args.threads,
              "ms_per_point": ms, "cpu_ms_per_point": cpu_ms, "ratio_wall": ms["invariant"] / ms["earlier"],
              "ratio_cpu": cpu_ms["invariant"] / cpu_ms["earlier"], "target_max": 1.10,
              "other_processes_cores": round(other.cores, 3)}
    md = "\n".join([
        f"{args.points}-point Yes/No sweep, {inv.path.name}, {args.threads} thread(s), median of {args.repeats} rounds "
        f"in rotation ({machine_line(result['machine'])}). " + other.sentence(result["machine"]["cores"]),
        "",
        "| design | wall ms/point | CPU ms/point |",
        "|---|---:|---:|",
        f"| batch-invariant (flash attention, 56-row calls padded to the file's unit, "
        f"{inv.numerics()['row_unit']} here) | {ms['invariant']:.2f} | {cpu_ms['invariant']:.2f} |",
        f"| earlier (no flash attention, 512-row calls, no padding) | {ms['earlier']:.2f} | {cpu_ms['earlier']:.2f} |",
        "",
        f"Invariant / earlier: **{result['ratio_wall']:.2f}×** wall, **{result['ratio_cpu']:.2f}×** CPU (target ≤ 1.10).",
        "",
        "Reproduce: `python bench/invariance_cost.py --readme docs/numerics.md`",
    ])
    report("invariance_cost", result, md, args.readme, "invariance_cost")
    inv.close()
    old.close()


if __name__ == "__main__":
    main()
