"""Generation speed: batched, injected generation with pyintro vs plain llama.cpp and HF transformers.

    python bench/generate_speed.py [--threads 2] [--repeats 3] [--widths 1,8,32] [--tokens 48]
                                   [--model FILE|gemma3-270m] [--no-hf] [--quick] [--readme docs/performance.md]

At each width n (sequences generated together from one prompt, 48 tokens, temperature 1.0),
tokens per second of:

  1. pyintro, per-sequence injections: ``Model.generate_many(ids, points, temperature=1.0)`` where
     sequence j has its own vector (a random direction with the norm of the all-caps vector at
     its layer), its own layer and its own strength, at the last prompt token and every generated
     token: the workload of a steering sweep over generations;
  2. pyintro, one injection for all (``Model.generate(..., n=n, inject=[...])``: the all-caps
     vector at the middle layer), and with no injection at all (pyintro's engine and Python loop
     with nothing to add);
  3. pyintro, per-sequence injections, greedy (temperature 0: the difference to 1 is the
     Python-side sampling), and sampled on a Model loaded with ``batch_invariant=False`` (no
     padding of each llama.cpp call's rows to the file's padding unit: the default model pads a
     1-sequence step to 2 rows, K-quant files to 8);
  4. the limit: plain batched generation with llama-cpp-python's low-level API, no hook, a
     context with pyintro's settings (flash attention on, n_batch = n_ubatch = 56, kv_unified,
     n_seq_max = n + 1): the prompt decoded once (kept between calls, as pyintro keeps its prefix)
     and copied to every sequence, then one ``llama_decode`` per step for all sequences; sampled
     with llama.cpp's own sampler chain (temperature 1, ``dist``) per sequence, and greedy with an
     argmax in numpy (``hf_reference.LlamaBatchedGen``);
  5. HF transformers on the same GGUF (dequantized to float32): ``generate`` on n rows, sampling
     at temperature 1.0 over the whole vocabulary, a forward hook per layer adding each row's own
     vector at its own layer and strength (the same injections as 1).

tokens/s counts the tokens each variant produced: pyintro and transformers stop a sequence at an
end-of-generation token, the limit never does (the table gives the mean tokens per sequence).
Variants are timed in rotation (``_common.interleaved``), so the ratios come from one run.
Also: a profile of pyintro's sampled, per-sequence generate at the widest width (time in its
sampler, in the engine's decode, in ``is_eog``, in the rest of Python), and the sampler's cost
per row against numpy's ``Generator.choice`` on a fresh softmax per row (how pyintro sampled
before). The markdown table is printed and written to bench/results/generate_speed[_<QUANT>].md.

--quick: widths 1 and 8, 8 tokens, 1 round.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import (OtherLoad, interleaved, machine, machine_line,  # noqa: E402
                     report)
from hf_reference import HFModel, LlamaBatchedGen  # noqa: E402

import pyintro  # noqa: E402
from pyintro import Injection  # noqa: E402
from pyintro.generate import sampler  # noqa: E402

PROMPT = "Write a long story about a dragon who learns to fly."
STRENGTH = 4.0
PER_SEQ_STRENGTHS = (2.0, 4.0, 6.0, 8.0)
TARGET_OVER_PLAIN = 0.9  # issue 18: injected generation >= 0.9x llama.cpp's plain batched generation


def eog_ids(model) -> list[int]:
    return [t for t in range(model.n_vocab) if model.is_eog(t)]


def sampler_cost(n_vocab: int, reps: int = 200) -> dict:
    """µs per row at temperature 1.0 on a random logits row: pyintro's sampler (with the shared
    work row ``generate`` gives it) and numpy's ``Generator.choice`` over a fresh softmax."""
    rng = np.random.default_rng(0)
    row = rng.standard_normal(n_vocab).astype(np.float32) * 3
    sample = sampler(1.0, 0, 1.0, np.random.default_rng(0))
    work = np.empty(n_vocab, np.float64)
    ref_rng = np.random.default_rng(0)

    def choice(logits):
        z = logits.astype(np.float64)
        q = np.exp(z - z.max())
        q /= q.sum()
        return int(ref_rng.choice(len(q), p=q))

    out = {}
    for name, fn in (("pyintro", lambda: sample(row, work)), ("numpy_choice", lambda: choice(row))):
        fn()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        out[name] = 1e6 * (time.perf_counter() - start) / reps
    return out


def profile_generate(model, ids, points, tokens: int) -> dict:
    """Seconds of one sampled ``generate_many`` spent in pyintro's sampler, the engine's decode,
    is_eog and the rest."""
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    out = model.generate_many(ids, points, tokens, temperature=1.0, seeds=[[99, j] for j in range(len(points))])
    prof.disable()
    total = time.perf_counter() - start
    st = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    spent = {"sample": 0.0, "decode": 0.0, "is_eog": 0.0}
    for (file, _, name), (_, _, _, ct, _) in st.items():
        if name == "__call__" and file.endswith("generate.py"):
            spent["sample"] += ct
        elif name == "is_eog" and file.endswith("model.py"):
            spent["is_eog"] += ct
        elif file == "~" and name.endswith(".decode>"):  # the pybind11 method
            spent["decode"] += ct
    spent["other_python"] = total - sum(spent.values())
    return {"total_s": total, **{k + "_s": v for k, v in spent.items()}, "tokens": sum(len(s) for s in out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--widths", default="1,8,32")
    ap.add_argument("--tokens", type=int, default=48, help="max_tokens per sequence")
    ap.add_argument("--model", default=None, help="GGUF file or model alias (default: pyintro's default model)")
    ap.add_argument("--no-hf", action="store_true", help="skip transformers")
    ap.add_argument("--quick", action="store_true", help="widths 1 and 8, 8 tokens, 1 round (for debugging)")
    ap.add_argument("--readme", type=Path, help="update this file's bench:generate_speed section")
    args = ap.parse_args()
    if args.quick:
        if args.readme:
            raise SystemExit("--quick results do not go into the docs")
        args.widths, args.tokens, args.repeats = "1,8", 8, 1
    widths = [int(w) for w in args.widths.split(",")]
    wide_n = max(widths)
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    other = OtherLoad()
    t_start = time.time()

    n_seq = max(128, wide_n)
    model = pyintro.Model.load(args.model, n_threads=args.threads, n_seq_max=n_seq)
    unit = model.numerics()["row_unit"]
    # The same with llama.cpp's throughput settings: no padding of each call's rows to a multiple of 8
    # (the default pads a 1-row generation step to the file's unit: 2 rows here, 8 for K-quants).
    unpadded = pyintro.Model.load(args.model, n_threads=args.threads, n_seq_max=n_seq, batch_invariant=False)
    default = args.model is None
    suffix = "" if default else "_" + model.quant_type
    ids = model.chat(PROMPT)
    dirs = pyintro.contrast(model, "HI! HOW ARE YOU?", "Hi! How are you?").directions  # [n_layer, n_embd]
    mid = model.n_layer // 2
    inject = [Injection(dirs, mid, STRENGTH)]
    eos = eog_ids(model)
    # Sequence j: its own layer, strength and vector (a random direction with the norm of the
    # all-caps vector at that layer).
    layers = np.linspace(1, model.n_layer - 2, wide_n).round().astype(int)
    per_seq = [(int(layers[j]), PER_SEQ_STRENGTHS[j % len(PER_SEQ_STRENGTHS)]) for j in range(wide_n)]
    rand = np.random.default_rng(3).standard_normal((wide_n, model.n_embd)).astype(np.float32)
    seq_vecs = (rand / np.linalg.norm(rand, axis=1, keepdims=True)
                * np.linalg.norm(dirs[layers], axis=1, keepdims=True)).astype(np.float32)  # [wide_n, n_embd]
    seq_points = [[Injection(seq_vecs[j], L, s)] for j, (L, s) in enumerate(per_seq)]
    plain = LlamaBatchedGen(model.path, args.threads, wide_n)
    hf = None
    if not args.no_hf:
        say("loading the GGUF in transformers (float32)")
        hf = HFModel(model.path, args.threads)

    counts: dict = {}

    def timed(name, fn):
        def run():
            start = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - start
            counts[name] = [len(s) for s in out]
            return elapsed
        return run

    seed = iter(range(1, 1 << 30))
    seeds = lambda n: [[next(seed), j] for j in range(n)]  # noqa: E731
    results = []
    for n in widths:
        fns = {
            "pyintro": lambda n=n: model.generate_many(ids, seq_points[:n], args.tokens, temperature=1.0,
                                                       seeds=seeds(n)),
            "pyintro_shared": lambda n=n: model.generate(ids, args.tokens, inject, n=n, temperature=1.0,
                                                         seed=next(seed)),
            "pyintro_no_injection": lambda n=n: model.generate(ids, args.tokens, n=n, temperature=1.0, seed=next(seed)),
            "pyintro_greedy": lambda n=n: model.generate_many(ids, seq_points[:n], args.tokens),
            "pyintro_unpadded": lambda n=n: unpadded.generate_many(ids, seq_points[:n], args.tokens, temperature=1.0,
                                                                   seeds=seeds(n)),
            "llama_plain": lambda n=n: plain.generate(ids, n, args.tokens, temperature=1.0, seed=next(seed)),
            "llama_plain_greedy": lambda n=n: plain.generate(ids, n, args.tokens),
        }
        if hf is not None:
            fns["hf"] = lambda n=n: hf.generate_hooked(ids, n, args.tokens, per_seq[:n], seq_vecs[:n], temperature=1.0,
                                                       seed=next(seed), eos_ids=eos, per_row=True)
        fns = {k: timed(k, fn) for k, fn in fns.items()}
        say(f"width {n}: {len(fns)} variants in rotation, 1 warm-up round + {args.repeats} rounds")
        t = interleaved(fns, args.repeats, self_timed=True)
        row = {"width": n, "times_s": {k: v["times"] for k, v in t.items()}, "tok_s": {}, "mean_tokens": {}}
        for k, v in t.items():
            # token counts of the last run (sampled variants' lengths vary a little between runs)
            row["tok_s"][k] = sum(counts[k]) / v["median"]
            row["mean_tokens"][k] = float(np.mean(counts[k]))
        ts = row["tok_s"]
        for k in ("pyintro", "pyintro_shared", "pyintro_no_injection", "pyintro_unpadded"):
            row[k + "_over_plain"] = ts[k] / ts["llama_plain"]
        row["pyintro_greedy_over_plain_greedy"] = ts["pyintro_greedy"] / ts["llama_plain_greedy"]
        if "hf" in ts:
            row["pyintro_over_hf"] = ts["pyintro"] / ts["hf"]
        row["pass"] = row["pyintro_over_plain"] >= TARGET_OVER_PLAIN
        results.append(row)

    say("profiling pyintro's sampled generate at the widest width")
    prof = profile_generate(model, ids, seq_points[:wide_n], args.tokens)
    us_row = sampler_cost(model.n_vocab)
    plain.close()
    other.stop()
    m_info = machine()
    result = {
        "machine": m_info, "other_processes_cores": round(other.cores, 3), "wall_s": round(time.time() - t_start, 1),
        "quick": args.quick, "model": model.path.name, "quant_type": model.quant_type, "threads": args.threads,
        "repeats": args.repeats, "max_tokens": args.tokens, "prompt": PROMPT, "prompt_tokens": len(ids),
        "injection": {"shared": {"vector": "contrast(HI! HOW ARE YOU? vs Hi! How are you?)", "layer": mid,
                                 "strength": STRENGTH},
                      "per_sequence": {"layers_strengths": per_seq,
                                       "vectors": "random directions, norm of the all-caps vector at the layer"}},
        "target_pyintro_over_plain_min": TARGET_OVER_PLAIN,
        "widths": results, "profile_widest": prof, "sampler_us_per_row": us_row,
    }

    has_hf = hf is not None
    pf = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    lines = [
        f"Generation of up to {args.tokens} tokens per sequence at temperature 1 from a {len(ids)}-token prompt, "
        f"{model.path.name}, {args.threads} threads, median of {args.repeats} rounds after a warm-up round (all "
        f"variants timed in rotation); {machine_line(m_info)}. " + other.sentence(m_info["cores"]),
        "",
        "| width | **pyintro, per-sequence injections** | pyintro, one injection for all | pyintro, no injection "
        "| pyintro, per-sequence, greedy | pyintro, per-sequence, `batch_invariant=False` "
        "| limit: llama.cpp plain batched, no hook | limit, greedy"
        + (" | HF transformers (float32), per-sequence hooks" if has_hf else "")
        + " | pyintro / limit | greedy / greedy limit" + (" | pyintro / HF" if has_hf else "") + " |",
        "|---:|" + "---:|" * (7 + has_hf + 2 + has_hf),
    ]
    for r in results:
        ts, mt = r["tok_s"], r["mean_tokens"]
        cell = lambda k: f"{ts[k]:.1f} ({mt[k]:.0f})" if k in ts else "—"  # noqa: E731
        lines.append(
            f"| {r['width']} | {cell('pyintro')} | {cell('pyintro_shared')} | {cell('pyintro_no_injection')} "
            f"| {cell('pyintro_greedy')} | {cell('pyintro_unpadded')} | {cell('llama_plain')} "
            f"| {cell('llama_plain_greedy')}" + (f" | {cell('hf')}" if has_hf else "")
            + f" | **{r['pyintro_over_plain']:.2f}** ({pf(r['pass'])}) | {r['pyintro_greedy_over_plain_greedy']:.2f}"
            + (f" | {r['pyintro_over_hf']:.1f}×" if has_hf else "") + " |")
    lines += [
        "",
        "Tokens per second (mean tokens per sequence in parentheses: pyintro and transformers stop a sequence at an "
        "end-of-generation token, the limit never does). Per-sequence injections: sequence j adds its own vector "
        "(a random direction with the all-caps vector's norm at its layer) at its own layer "
        f"({per_seq[0][0]}..{per_seq[-1][0]}) and strength ({', '.join(f'{x:g}' for x in PER_SEQ_STRENGTHS)}), at the "
        "last prompt token and every generated token (`Model.generate_many`); one injection for all: the all-caps "
        f"vector at layer {mid}, strength {STRENGTH:g}. transformers gets the same per-sequence injections through "
        "forward hooks. The limit samples with llama.cpp's own sampler chain (temperature, `dist`) per sequence; "
        "greedy: an argmax in numpy. `batch_invariant=False`: llama.cpp's throughput settings (512-row calls, no "
        f"padding; by default pyintro pads each call's rows to a multiple of the file's padding unit, {unit} rows here, "
        f"so a step of fewer than {unit} sequences costs {unit} rows). pyintro and the limit both keep the prompt cached "
        "between calls.",
        f"- Target: pyintro with per-sequence injections ≥ {TARGET_OVER_PLAIN} × the limit at every width: "
        + ", ".join(f"{r['pyintro_over_plain']:.2f} at {r['width']} ({pf(r['pass'])})" for r in results) + ".",
        f"- pyintro's sampled, per-sequence generate at width {wide_n}: {prof['total_s']:.2f} s under cProfile, of "
        f"which {prof['sample_s']:.2f} s in its sampler ({100 * prof['sample_s'] / prof['total_s']:.0f}%; "
        f"{us_row['pyintro']:.0f} µs per row over {model.n_vocab} logits, against {us_row['numpy_choice']:.0f} µs "
        f"for numpy's `Generator.choice` on a fresh softmax), {prof['decode_s']:.2f} s in the engine's decode "
        f"({100 * prof['decode_s'] / prof['total_s']:.0f}%), {prof['is_eog_s']:.3f} s in `is_eog`, "
        f"{prof['other_python_s']:.2f} s in the rest of the Python side.",
        "",
        "Reproduce: `python bench/generate_speed.py " + ("" if default else f"--model {args.model} ")
        + ("" if args.threads == 2 else f"--threads {args.threads} ")
        + ("" if args.tokens == 48 else f"--tokens {args.tokens} ")
        + ("" if args.widths == "1,8,32" else f"--widths {args.widths} ")
        + f"--repeats {args.repeats} --readme docs/performance.md`",
    ]
    md = "\n".join(lines)
    model.close()
    unpadded.close()
    report(("generate_speed_quick" if args.quick else "generate_speed") + suffix, result, md,
           args.readme, "generate_speed" + suffix.lower(), md=True)


if __name__ == "__main__":
    main()
