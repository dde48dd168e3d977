"""Experiment speed: experiments 2-4 of Lindsey (2025) as pyintro runs them vs. the same decodes
with no hook.

    python bench/experiments_speed.py [--threads 2] [--repeats 3] [--quick] [--readme docs/experiments.md]

Each experiment runs a documented slice of its default grid on the default model (random
directions stand in for concept vectors: the decodes do not depend on which vector is added):

  thoughts: 1 pair, every second layer (15 of 30) x the 5 default strengths + the uninjected
            point (76 points): the 10-way forced choice, the sentence's log-probability and the
            greedy repetition;
  prefill:  1 pair, every fifth layer (6) x the 5 strengths x the 3 injected conditions + none
            (91 points), both dialogue forms;
  control:  5 pairs x the 16 prompts, every layer captured on the sentence tokens.

A pair of the default grid is 151 points (experiment 2) or 451 (experiment 3); every pair's
decodes have the same shape, so a slice's rows/s is the grid's.

(a) pyintro: the experiment's own function (``thoughts.thoughts``, ``prefill.prefill``,
    ``control.control``, no CSV), Python included, from a cleared cache;
(b) the limit: the very engine calls (a) made (recorded once: tokens, positions, sequences,
    output rows, gathered ids, KV copies and removals) replayed on a context created without
    pyintro's eval callback, with no injection and nothing captured.

token rows/s = the token rows (a) hands to llama.cpp (padding not counted) / wall time. Target:
(a) >= 0.85 x (b), each experiment's variants timed in rotation (``_common.interleaved``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import OtherLoad, interleaved, machine, machine_line, report  # noqa: E402

import pyintro  # noqa: E402
from pyintro.model import Settings  # noqa: E402
from pyintro.experiments import control, pairs, prefill, thoughts  # noqa: E402
from pyintro.stimuli import CONCEPT_WORDS, CONTROL_WORDS  # noqa: E402
from pyintro.vectors import ConceptVector  # noqa: E402

TARGET = 0.85


class Recorder:
    """Stands in for a Decoder's engine: forwards every call and records the ones that change
    the KV cache or decode (``ops``), with copies of their arrays."""

    def __init__(self, engine):
        self._engine, self.ops = engine, []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def decode(self, *args, **kw):
        self.ops.append(("decode", [np.array(a) if isinstance(a, np.ndarray) else a for a in args], dict(kw)))
        return self._engine.decode(*args, **kw)

    def seq_cp(self, *args):
        self.ops.append(("seq_cp", args, {}))
        return self._engine.seq_cp(*args)

    def seq_rm(self, *args):
        self.ops.append(("seq_rm", args, {}))
        return self._engine.seq_rm(*args)


def record(model, fn) -> list:
    """The engine calls ``fn()`` makes on ``model``, from a cleared cache."""
    model.reset()
    rec = Recorder(model._decoder.engine)
    model._decoder.engine = rec
    try:
        fn()
    finally:
        model._decoder.engine = rec._engine
    return rec.ops


NONE = np.zeros(0, np.int32)


def replay(engine, ops) -> None:
    """The recorded calls on ``engine`` with no injection and no capture (the same tokens,
    positions, sequences, output rows, gathered ids, logits and stats flags)."""
    engine.seq_rm(-1, 0, -1)
    for kind, args, kw in ops:
        if kind == "decode":
            args = list(args)
            args[4:7] = [[], NONE, NONE]  # inject, capture_layers, capture_rows
            kw = {k: v for k, v in kw.items() if k != "fast_head"}  # needs pyintro's hook
            engine.decode(*args, **kw)
        else:
            getattr(engine, kind)(*args)
    engine.seq_rm(-1, 0, -1)


def n_rows(ops) -> int:
    return sum(len(args[0]) for kind, args, _ in ops if kind == "decode")


def random_vectors(model, words, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for w in words:
        d = rng.standard_normal((model.n_layer, model.n_embd))
        d = (8.0 * d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
        out[w] = ConceptVector(d, name=w, model_sha256="bench")
    return out


def workloads(model, quick: bool) -> dict:
    """{name: (description, callable)} for the three slices (``quick``: a tenth of each)."""
    all_layers = list(range(model.n_layer))
    ps = pairs.pairs()
    vecs = random_vectors(model, list(CONCEPT_WORDS) + list(CONTROL_WORDS))
    t_layers = all_layers[::6] if quick else all_layers[::2]
    p_layers = all_layers[::10] if quick else all_layers[::5]
    c_pairs = ps[:1] if quick else ps[:5]
    return {
        "thoughts": (f"1 pair x {len(t_layers)} layers x 5 strengths + none",
                     lambda: thoughts.thoughts(model, vecs, ps[:1], t_layers, progress=False)),
        "prefill": (f"1 pair x {len(p_layers)} layers x 5 strengths x 3 conditions + none",
                    lambda: prefill.prefill(model, vecs, ps[:1], p_layers, progress=False)),
        "control": (f"{len(c_pairs)} pairs x 16 prompts, all {model.n_layer} layers captured",
                    lambda: control.control(model, vecs, c_pairs, progress=False)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a tenth of each slice, 1 round (for debugging)")
    ap.add_argument("--only", default=None,
                    help="comma list of experiments to time (default: all three; results go to "
                         "bench/results/experiments_speed_<names>.json)")
    ap.add_argument("--readme", type=Path, help="update this file's bench:experiments_speed section")
    args = ap.parse_args()
    if args.quick:
        if args.readme:
            raise SystemExit("--quick results do not go into the docs")
        args.repeats = 1
    other = OtherLoad()
    t_start = time.time()
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    hooked = pyintro.Model.load(n_threads=args.threads)
    plain = pyintro.Model.load(n_threads=args.threads, settings=Settings(eval_callback=False))
    hooked.sha256  # hashed once per Model; the experiments record it (not part of the timing)
    jobs = workloads(hooked, args.quick)
    if args.only:
        jobs = {k: v for k, v in jobs.items() if k in args.only.split(",")}
    results = {}
    for name, (slice_, fn) in jobs.items():
        say(f"{name}: recording the engine calls of {slice_}")
        ops = record(hooked, fn)
        rows = n_rows(ops)
        calls = sum(1 for k, _, _ in ops if k == "decode")

        def run_hooked():
            hooked.reset()
            fn()

        say(f"{name}: {rows} token rows in {calls} decode calls; timing 1 warm-up round + {args.repeats}")
        timed = interleaved({"pyintro": run_hooked, "limit": lambda: replay(plain._engine, ops)}, args.repeats)
        t_a, t_b = timed["pyintro"]["median"], timed["limit"]["median"]
        results[name] = {"slice": slice_, "token_rows": rows, "decode_calls": calls,
                         "rows_per_s": {"pyintro": rows / t_a, "limit": rows / t_b},
                         "times_s": {k: v["times"] for k, v in timed.items()}, "ratio": t_b / t_a,
                         "pass": t_b / t_a >= TARGET}
        say(f"{name}: {rows / t_a:.0f} vs {rows / t_b:.0f} rows/s, ratio {t_b / t_a:.2f}")
    other.stop()
    m_info = machine()
    result = {"machine": m_info, "other_processes_cores": round(other.cores, 3),
              "wall_s": round(time.time() - t_start, 1), "quick": args.quick, "model": hooked.path.name,
              "threads": args.threads, "repeats": args.repeats, "target_ratio_min": TARGET,
              "experiments": results}
    name = "experiments_speed" + ("_" + "_".join(jobs) if args.only else "") + ("_quick" if args.quick else "")
    pf = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    table = "\n".join([
        f"Experiments 2-4 on {hooked.path.name}, {args.threads} threads, median of {args.repeats} rounds after a "
        f"warm-up round (each experiment's two variants timed in rotation); {machine_line(m_info)}. "
        + other.sentence(m_info["cores"]),
        "",
        "| experiment | slice of the default grid | token rows | pyintro rows/s | limit rows/s (no hook) | ratio |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {name} | {r['slice']} | {r['token_rows']} | {r['rows_per_s']['pyintro']:.0f} | "
          f"{r['rows_per_s']['limit']:.0f} | {r['ratio']:.2f} (target ≥ {TARGET}: {pf(r['pass'])}) |"
          for name, r in results.items()],
        "",
        "pyintro: the experiment's own function, Python included; limit: the same engine calls replayed in a "
        "context without the eval callback, no injection, nothing captured.",
        "",
        "Reproduce: `python bench/experiments_speed.py --readme docs/experiments.md`",
    ])
    report(name, result, table, args.readme, "experiments_speed")


if __name__ == "__main__":
    main()
