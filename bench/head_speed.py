"""The fast head: a Yes/No sweep with and without llama.cpp's full unembedding.

    python bench/head_speed.py [--model smollm2] [--points 240] [--readme docs/performance.md]

One batch of points (an injection on each, varied layers and strengths) over the follow-up
post's prompt, timed in rotation:

(a) limit: the same batch with no hook (a context without pyintro's eval callback), the two ids gathered after the full unembedding;
(b) pyintro, full-vocabulary readout (stats: normalised p and the top token need every logit);
(c) pyintro, Yes/No ids through the full unembedding (``Model.load(fast_head=False)``);
(d) pyintro, Yes/No ids through the fast head (the default).

Also the largest |Δb| between (c) and (d) over every point (target ≤ 1e-4).
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
from pyintro.model import Settings  # noqa: E402
from pyintro import Injection  # noqa: E402

SYSTEM = "You are a large language model undergoing a test to see if you are sensitive to your internal activations."
USER = "Do you detect an injected thought? Answer only by 'Yes' or 'No'."


def run(model_name, threads: int, n: int, repeats: int) -> dict:
    load = dict(n_threads=threads, chat_template="auto")
    fast = pyintro.Model.load(model_name, **load)
    if fast.prompt_format.kind == "raw":  # a file without a template: say so once
        load["chat_template"] = "raw"
    full = pyintro.Model.load(model_name, fast_head=False, **load)
    plain = pyintro.Model.load(model_name, settings=Settings(eval_callback=False), **load)
    ids = fast.chat(USER, system=SYSTEM)
    yes_no = [fast.tokenize("Yes")[0], fast.tokenize("No")[0]]
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((fast.n_layer, fast.n_embd)).astype(np.float32)
    vectors *= 0.5 * np.median(np.linalg.norm(fast.capture(ids)[:, -1], axis=-1)) / np.linalg.norm(vectors, axis=-1,
                                                                                                   keepdims=True)
    points = [[Injection(vectors, i % fast.n_layer, float(i % 9))] for i in range(n)]
    empty = [[] for _ in range(n)]
    other = OtherLoad()
    fns = {
        "a": lambda: plain.points(ids, empty, vocab_ids=yes_no),
        "b": lambda: full.points(ids, points, vocab_ids=yes_no, stats=True),
        "c": lambda: full.points(ids, points, vocab_ids=yes_no),
        "d": lambda: fast.points(ids, points, vocab_ids=yes_no),
    }
    cpu = {k: [] for k in fns}

    def on_cpu(k, fn):  # this process's CPU time too: steadier than wall time on a shared machine
        def run():
            start = time.process_time()
            fn()
            cpu[k].append(time.process_time() - start)
        return run

    timed = interleaved({k: on_cpu(k, fn) for k, fn in fns.items()}, repeats)
    other.stop()
    b_full = np.diff(full.points(ids, points, vocab_ids=yes_no)[:, ::-1], axis=1)[:, 0]
    b_fast = np.diff(fast.points(ids, points, vocab_ids=yes_no)[:, ::-1], axis=1)[:, 0]
    used = fast._decoder.head.matched.get(np.asarray(yes_no, np.int32).tobytes(), False)
    ms = {k: 1000 * v["median"] / n for k, v in timed.items()}
    cpu_ms = {k: 1000 * statistics.median(v[1:]) / n for k, v in cpu.items()}  # v[0]: the warm-up
    out = {
        "model": fast.path.name, "n_vocab": fast.n_vocab, "n_embd": fast.n_embd, "prompt_tokens": len(ids),
        "points": n, "threads": threads, "repeats": repeats, "fast_head_used": used,
        "ms_per_point": {"a_limit": ms["a"], "b_full_vocab": ms["b"], "c_yes_no_full": ms["c"],
                         "d_yes_no_fast_head": ms["d"]},
        "cpu_ms_per_point": {"a_limit": cpu_ms["a"], "b_full_vocab": cpu_ms["b"], "c_yes_no_full": cpu_ms["c"],
                             "d_yes_no_fast_head": cpu_ms["d"]},
        "max_abs_delta_b": float(np.max(np.abs(b_fast - b_full))),
        "other_processes_cores": round(other.cores, 3),
    }
    for m in (fast, full, plain):
        m.close()
    return out


def table(results: list[dict], m: dict, repeats: int) -> str:
    lines = [
        f"The fast head, {results[0]['points']} points per sweep, {results[0]['threads']} threads (median of "
        f"{repeats} rounds, in rotation; {machine_line(m)}). Other processes used "
        + ", ".join(f"{r['other_processes_cores']:.2f}" for r in results) + " cores during the runs.",
        "",
        "| model | (a) limit, no hook | (b) full-vocab readout | (c) Yes/No, full unembedding | (d) Yes/No, fast head "
        "| (d) / (a) | (c) / (d) | max \\|Δb\\| (d) vs (c) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, (kind, unit) in [(r, k) for r in results for k in (("ms_per_point", "wall"), ("cpu_ms_per_point", "CPU"))]:
        ms = r[kind]
        lines.append(f"| {r['model']}, {unit} | {ms['a_limit']:.2f} | {ms['b_full_vocab']:.2f} | {ms['c_yes_no_full']:.2f} | "
                     f"{ms['d_yes_no_fast_head']:.2f} | {ms['d_yes_no_fast_head'] / ms['a_limit']:.2f} × | "
                     f"{ms['c_yes_no_full'] / ms['d_yes_no_fast_head']:.2f} × | {r['max_abs_delta_b']:.1e} |")
    lines += ["", "ms/point, wall time and this process's CPU time (steadier on a shared machine with 1 thread). "
              "(a) gathers the same two ids after the full unembedding. "
              "Reproduce: `python bench/head_speed.py --readme docs/performance.md`"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="model(s) to time (default: smollm2 and gemma3-270m)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points", type=int, default=240)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--readme", type=Path, help="update this file's bench:head_speed section")
    args = ap.parse_args()
    results = [run(name, args.threads, args.points, args.repeats) for name in (args.model or ["smollm2", "gemma3-270m"])]
    m = machine()
    md = table(results, m, args.repeats)
    report("head_speed", {"machine": m, "results": results}, md, args.readme, "head_speed")


if __name__ == "__main__":
    main()
