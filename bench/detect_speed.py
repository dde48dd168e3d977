"""Experiment 1's judge-free scoring against a plain llama.cpp decode of the same rows.

    python bench/detect_speed.py [--concepts 1] [--bias 4] [--readme docs/performance.md]

Runs ``detection.detect`` (Yes/No and phrase log-likelihoods, 10- and 50-way identification,
random and negated controls, the bias questions) on the default model over every layer × the
paper's 4 strengths for the first ``--concepts`` concept words (the paper's grid has 50; the
rate per row does not depend on how many). Every engine call it makes (decodes, sequence
copies and removals) is recorded, then replayed on a context without pyintro's eval callback
and with no injection: the same rows, in the same llama_decode calls, over the same KV
layout. Target: token rows per second ≥ 0.85 × the replay's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import OtherLoad, machine, machine_line, report  # noqa: E402
from experiments_speed import n_rows, record, replay  # noqa: E402  (the same recorder as experiments 2-4)

import pyintro  # noqa: E402
from pyintro.model import Settings  # noqa: E402
from pyintro import concepts  # noqa: E402
from pyintro.experiments import detection  # noqa: E402
from pyintro.stimuli import CONCEPT_WORDS  # noqa: E402


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", type=int, default=1)
    ap.add_argument("--bias", type=int, default=4, help="bias-control questions per cell (the paper's: 20)")
    ap.add_argument("--layers", type=int, default=0, help="every k-th layer only (0: every layer)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--readme", type=Path, help="update this file's bench:detect_speed section")
    args = ap.parse_args()

    model = pyintro.Model.load(n_threads=args.threads)
    plain = pyintro.Model.load(n_threads=args.threads, settings=Settings(eval_callback=False))
    words = list(CONCEPT_WORDS[:args.concepts])
    vectors = concepts.library(model, words)  # cached after the first run
    layers = list(range(0, model.n_layer, args.layers)) if args.layers else None
    other = OtherLoad()
    rows: list = []

    def run():
        rows.extend(detection.detect(model, vectors, words, layers, detection.STRENGTHS, categories=False,
                                     n_bias=args.bias))

    seconds: list = []
    ops = record(model, lambda: seconds.append(cpu_seconds(run)))
    t_detect = seconds[0]
    t_plain = cpu_seconds(lambda: replay(plain._decoder.engine, ops))
    other.stop()
    n_tok = n_rows(ops)
    n_calls = sum(1 for name, _, _ in ops if name == "decode")
    result = {
        "machine": machine(), "model": model.path.name, "threads": args.threads, "concepts": words,
        "layers": layers or list(range(model.n_layer)), "strengths": list(detection.STRENGTHS), "bias_questions": args.bias,
        "result_rows": len(rows), "engine_decodes": n_calls, "token_rows": n_tok,
        "seconds": {"detect": t_detect, "replay_no_hook": t_plain},
        "rows_per_s": {"detect": n_tok / t_detect, "replay_no_hook": n_tok / t_plain},
        "ratio": t_plain / t_detect, "target_min": 0.85, "other_processes_cores": round(other.cores, 3),
    }
    md = "\n".join([
        f"Experiment 1, judge-free, {len(words)} concept(s) × {len(layers) if layers else model.n_layer} layers × "
        f"{len(detection.STRENGTHS)} "
        f"strengths with the random and negated controls and {args.bias} bias questions per cell: {len(rows)} result "
        f"rows from {n_tok} token rows in {n_calls} engine calls; {model.path.name}, {args.threads} threads "
        f"({machine_line(result['machine'])}). Times are this process's CPU time (the two runs are "
        f"sequential, and other processes used {other.cores:.2f} of the {result['machine']['cores']} cores).",
        "",
        "| | CPU s | token rows/s |",
        "|---|---:|---:|",
        f"| pyintro `detect` (injections, prompt trees, full-vocabulary log-sum-exp) | {t_detect:.1f} | "
        f"{n_tok / t_detect:.0f} |",
        f"| the same engine calls replayed without the hook or any injection (the limit) | {t_plain:.1f} | "
        f"{n_tok / t_plain:.0f} |",
        "",
        f"pyintro / limit: **{t_plain / t_detect:.2f}×** the limit's rows per second (target ≥ 0.85).",
        "",
        "Reproduce: `python bench/detect_speed.py --readme docs/performance.md`",
    ])
    report("detect_speed", result, md, args.readme, "detect_speed")


if __name__ == "__main__":
    main()
