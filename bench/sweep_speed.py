"""Sweep speed: a full layer x strength grid with pyintro vs. the tools researchers use today.

    python bench/sweep_speed.py [--threads 2] [--repeats 3] [--quick] [--model FILE|gemma3-270m] [--readme docs/performance.md]

Grid: every layer x 16 strengths x (introspection question + 1 control question) = 960 points
on the default model, injecting the all-caps vector at the last prompt token.

  1. pyintro: ``pyintro.sweep`` (batched over a shared prefix), with full_vocab=True (the
     default: full logits rows, softmax over the vocabulary) and with full_vocab=False (only the
     Yes/No logits are gathered);
  2. pyintro one point at a time, no prefix reuse (``Settings(reuse_prefix=False)``);
  3. llama-cpp-python alone: llama.cpp's control vector (``llama_set_adapter_cvec``; it adds the
     vector to every token), one full decode per point, KV cache cleared in between;
  4. Hugging Face transformers on the same GGUF (dequantized to float32), a forward hook adding
     the vector at the last token, one point per forward;
  5. the same, batched: one row per point, left-padded, per-row vectors added by one hook per
     layer;
  6. the limit: a plain batched decode of the same points over the same shared prefix, in the
     same batches, in a context without pyintro's eval callback;
  7. the strongest plain-PyTorch route (``HFModel.prefix_cached_points``): transformers on the same
     GGUF in float32, each question's prompt prefix decoded once into a KV cache (inside the timing,
     as pyintro's sweep decodes its prefix once per question), then --hf-batch points per forward as
     rows of the last token over that cache, per-row forward hooks, only the Yes/No logits computed.
     Timed on all points unless --hf-cached-points.

--model runs everything on another GGUF file or model alias (``gemma3-270m``; transformers
dequantizes that file too); its results go to bench/results/sweep_speed_<QUANT>.json and .md and
the section ``bench:sweep_speed_<quant>`` of docs/performance.md.

2-5 are timed on a sample of points and scaled to ms/point. Also: correctness checks (pyintro
all-token injection vs llama.cpp's control vector; HF's b vs pyintro's b; the prefix-cached route's
b vs HF one point per forward), and resident memory during the pyintro sweep. The markdown table
is printed and written to bench/results/sweep_speed[_<QUANT>].md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import OtherLoad, interleaved, machine, machine_line, report  # noqa: E402
from hf_reference import HFModel, LlamaCvec, PeakRSS, b_values, pearson, rss_mb  # noqa: E402

import pyintro  # noqa: E402
from pyintro.model import Settings  # noqa: E402
from pyintro import Injection  # noqa: E402
from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION, Question, prompt_ids  # noqa: E402
from pyintro.readout import yes_no_ids  # noqa: E402
from pyintro.experiments.sweep import sweep  # noqa: E402

STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0)
QUESTIONS = {"introspection": INTROSPECTION, "control": CONTROL_NO[0]}
TARGETS = {"pyintro_over_limit_max": 1.15, "hf_batched_over_pyintro_min": 25, "hf_single_over_pyintro_min": 40,
           "rss_growth_mb_max": 150}
# The prefix-cached PyTorch route over pyintro's Yes/No sweep (issue 18): 3x on Gemma-3, 1.2x elsewhere.
CACHED_TARGET = {"gemma3": 3.0}
CACHED_TARGET_DEFAULT = 1.2




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny grid and samples, 1 repeat (for debugging)")
    ap.add_argument("--readme", type=Path, help="update this file's bench:sweep_speed section")
    ap.add_argument("--model", default=None,
                    help="GGUF file or model alias such as gemma3-270m (default: pyintro's default model)")
    ap.add_argument("--naive-points", type=int, default=12, help="points timed for pyintro one at a time")
    ap.add_argument("--cvec-points", type=int, default=12, help="points timed for llama-cpp-python")
    ap.add_argument("--hf-points", type=int, default=12, help="points timed for HF one per forward")
    ap.add_argument("--hf-batch", type=int, default=64, help="rows per HF batched forward")
    ap.add_argument("--hf-batches", type=int, default=1, help="HF batched forwards timed")
    ap.add_argument("--hf-cached-points", type=int, default=0,
                    help="points timed for the prefix-cached PyTorch route (0: all)")
    args = ap.parse_args()
    if args.quick:
        if args.readme:
            raise SystemExit("--quick results do not go into the docs")
        args.repeats = 1
        args.naive_points = args.cvec_points = args.hf_points = 2
        args.hf_batch, args.hf_batches = 4, 1
    other = OtherLoad()
    t_start = time.time()
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    # -- pyintro ---------------------------------------------------------------------------------
    rss0 = rss_mb()
    hooked = pyintro.Model.load(args.model, n_threads=args.threads)
    default = args.model is None
    suffix = "" if default else "_" + hooked.quant_type
    rss_loaded = rss_mb()
    vec = pyintro.contrast(hooked, "HI! HOW ARE YOU?", "Hi! How are you?")
    dirs = vec.directions  # [n_layer, n_embd]
    layers = [0, hooked.n_layer // 2, hooked.n_layer - 1] if args.quick else list(range(hooked.n_layer))
    strengths = list(STRENGTHS[::4]) if args.quick else list(STRENGTHS)
    qs = {kind: Question(kind, text) for kind, text in QUESTIONS.items()}
    prompts = {kind: prompt_ids(hooked, q) for kind, q in qs.items()}
    yes_ids, no_ids = yes_no_ids(hooked)
    gather = yes_ids + no_ids
    grid = [(kind, L, s) for kind in qs for L in layers for s in strengths]
    n = len(grid)
    hooked.sha256  # hashed once per Model; sweep records it (not part of the timing)

    def run_sweep(full_vocab: bool):
        return sweep(hooked, vec, layers=layers, strengths=strengths, questions=QUESTIONS, progress=False,
                     full_vocab=full_vocab)

    say(f"pyintro sweep, {n} points (first run: memory)")
    with PeakRSS() as mem_full:
        rows = run_sweep(True)
    with PeakRSS() as mem_gather:
        run_sweep(False)
    rss_after = rss_mb()
    b_pyintro = {(r["question_kind"], r["layer"], r["strength"]): r["b"] for r in rows}
    # -- the limit -------------------------------------------------------------------------------
    plain = pyintro.Model.load(args.model, n_threads=args.threads, settings=Settings(eval_callback=False))
    per_q = {kind: sum(1 for k, _, _ in grid if k == kind) for kind in qs}
    step = hooked.n_seq_max  # the sweep's chunk: as many points as one batch holds (1-token suffix)

    def limit(vocab):
        # The decodes the sweep makes, without the callback: per question, drop the cached prefix
        # with a one-token decode (sweep's fresh_prefix), then the shared prefix and the same
        # chunks of points (model.points decodes the prefix once, then one token per point).
        for kind, ids in prompts.items():
            plain.points(ids[:1], [[]], vocab_ids=vocab)
            for start in range(0, per_q[kind], step):
                plain.points(ids, [[] for _ in range(min(step, per_q[kind] - start))], vocab_ids=vocab)

    # -- samples for the slow ways ---------------------------------------------------------------
    order = [grid[i] for i in np.random.default_rng(0).permutation(n)]
    naive_pts = order[: args.naive_points]
    cvec_pts = [p for p in order if p[1] >= 1][: args.cvec_points]
    hf_pts = order[: args.hf_points]
    hf_batch_pts = order[: args.hf_batch * args.hf_batches]
    cached_pts = grid if not args.hf_cached_points else sorted(order[: args.hf_cached_points], key=grid.index)

    naive_model = pyintro.Model.load(args.model, n_threads=args.threads, settings=Settings(reuse_prefix=False))

    def naive():
        for kind, L, s in naive_pts:
            naive_model.points(prompts[kind], [[Injection(dirs, L, s)]], vocab_ids=gather)

    # -- llama-cpp-python alone ------------------------------------------------------------------
    cv = LlamaCvec(hooked.path, args.threads)

    def cvec_run():
        out = []
        for kind, L, s in cvec_pts:
            cv.set_cvec(dirs, L, s)
            out.append(cv.last_logits(prompts[kind]))
        return out

    # The check decodes the way pyintro does (tests/_reference.py: flash attention on, one
    # llama_decode call of at most 56 rows padded to multiples of 8 rows and outputs, the
    # largest padding unit), so the comparison is exact by design; the timed context above
    # keeps llama.cpp's defaults, as a llama-cpp-python user would.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from _reference import Reference

    checks = []
    with Reference(hooked.path, n_ctx=512, threads=args.threads) as ref:
        for kind, L, s in [("introspection", 5, 4.0), ("control", hooked.n_layer - 8, 2.0)]:
            a = hooked.points(prompts[kind], [[Injection(dirs, L, s, "all")]])[0]  # "all": nothing is shared
            data = np.zeros((hooked.n_layer - 1, hooked.n_embd), np.float32)
            data[L - 1] = np.float32(s) * dirs[L]
            ref.set_cvec(data, L, L)
            c = ref.logits(prompts[kind])
            db = abs(float(b_values(a[None], yes_ids, no_ids)[0] - b_values(c[None], yes_ids, no_ids)[0]))
            checks.append({"question": kind, "layer": L, "strength": s,
                           "max_abs_logit_diff": float(np.abs(a - c).max()), "abs_b_diff": db})
    cvec_ok = all(c["max_abs_logit_diff"] <= 1e-3 for c in checks)
    rss_before_hf = rss_mb()

    # -- Hugging Face transformers ---------------------------------------------------------------
    say("loading the GGUF in transformers (float32)")
    hf = HFModel(hooked.path, args.threads)

    def hf_single():
        out = []
        for kind, L, s in hf_pts:
            out.append(hf.last_logits([prompts[kind]], {L: (s * dirs[L])[None, :]})[0])
        return out

    def hf_batches():
        out = []
        for b in range(args.hf_batches):
            pts = hf_batch_pts[b * args.hf_batch:(b + 1) * args.hf_batch]
            deltas = {}
            for row, (kind, L, s) in enumerate(pts):
                if L not in deltas:
                    deltas[L] = np.zeros((len(pts), hf.n_embd), np.float32)
                deltas[L][row] = s * dirs[L]
            out.extend(hf.last_logits([prompts[kind] for kind, _, _ in pts], deltas))
        return out

    def hf_cached():
        # Per question: its prefix decoded once into a KV cache (timed, as the sweep's prefix is),
        # then its points, args.hf_batch per forward. Returns {point: b}.
        out = {}
        for kind in qs:
            pts = [(L, s) for k, L, s in cached_pts if k == kind]
            if pts:
                b = hf.prefix_cached_points(prompts[kind], dirs, pts, yes_ids, no_ids, batch=args.hf_batch)
                out.update({(kind, L, s): float(v) for (L, s), v in zip(pts, b)})
        return out

    # -- timing: every variant in rotation, so that load changes hit them alike --------------------
    say(f"timing 9 variants in rotation: 1 warm-up round + {args.repeats} rounds")
    timed = interleaved({
        "pyintro_sweep_full_vocab": lambda: run_sweep(True),
        "pyintro_sweep_gather": lambda: run_sweep(False),
        "limit_full_vocab": lambda: limit(None),
        "limit_gather": lambda: limit(gather),
        "pyintro_one_at_a_time": naive,
        "llama_cpp_python_cvec": cvec_run,
        "hf_one_per_forward": hf_single,
        "hf_batched": hf_batches,
        "hf_prefix_cached": hf_cached,
    }, args.repeats)
    t = {k: v["median"] for k, v in timed.items()}
    cv.set_cvec(None)
    cv.close()
    plain.close()

    b_hf_single = b_values(np.asarray(hf_single()), yes_ids, no_ids)
    b_hf_batch = b_values(np.asarray(hf_batches()), yes_ids, no_ids)
    r_single = pearson(b_hf_single, [b_pyintro[p] for p in hf_pts])
    r_batch = pearson(b_hf_batch, [b_pyintro[p] for p in hf_batch_pts])
    mad_batch = float(np.mean(np.abs(b_hf_batch - np.asarray([b_pyintro[p] for p in hf_batch_pts]))))
    single_vs_batch = float(np.max(np.abs(b_hf_single - b_hf_batch[: len(b_hf_single)]))) \
        if hf_pts == hf_batch_pts[: len(hf_pts)] else float("nan")
    b_cached = hf_cached()
    both = [p for p in hf_pts if p in b_cached]
    cached_vs_single = float(np.max(np.abs(np.asarray([b_cached[p] for p in both])
                                           - np.asarray([b for p, b in zip(hf_pts, b_hf_single) if p in b_cached])))) \
        if both else float("nan")
    r_cached = pearson([b_cached[p] for p in cached_pts], [b_pyintro[p] for p in cached_pts])

    # -- report ----------------------------------------------------------------------------------
    ms = {
        "pyintro_sweep_full_vocab": 1000 * t["pyintro_sweep_full_vocab"] / n,
        "pyintro_sweep_gather": 1000 * t["pyintro_sweep_gather"] / n,
        "limit_full_vocab": 1000 * t["limit_full_vocab"] / n,
        "limit_gather": 1000 * t["limit_gather"] / n,
        "pyintro_one_at_a_time": 1000 * t["pyintro_one_at_a_time"] / len(naive_pts),
        "llama_cpp_python_cvec": 1000 * t["llama_cpp_python_cvec"] / len(cvec_pts),
        "hf_one_per_forward": 1000 * t["hf_one_per_forward"] / len(hf_pts),
        "hf_batched": 1000 * t["hf_batched"] / len(hf_batch_pts),
        "hf_prefix_cached": 1000 * t["hf_prefix_cached"] / len(cached_pts),
    }
    base = ms["pyintro_sweep_full_vocab"]
    ratio_limit = base / ms["limit_full_vocab"]
    ratio_limit_gather = ms["pyintro_sweep_gather"] / ms["limit_gather"]
    ratio_default_vs_gather_limit = base / ms["limit_gather"]
    r_hf_b = ms["hf_batched"] / base
    r_hf_s = ms["hf_one_per_forward"] / base
    r_cached_full = ms["hf_prefix_cached"] / base
    r_cached_gather = ms["hf_prefix_cached"] / ms["pyintro_sweep_gather"]
    cached_target = CACHED_TARGET.get(hooked.arch, CACHED_TARGET_DEFAULT)
    growth = mem_full.growth
    verdict = {
        "pyintro_over_limit": ratio_limit <= TARGETS["pyintro_over_limit_max"],
        "pyintro_gather_over_limit_gather": ratio_limit_gather <= TARGETS["pyintro_over_limit_max"],
        "hf_batched_over_pyintro": r_hf_b >= TARGETS["hf_batched_over_pyintro_min"],
        "hf_single_over_pyintro": r_hf_s >= TARGETS["hf_single_over_pyintro_min"],
        "rss_growth": growth <= TARGETS["rss_growth_mb_max"],
        "hf_prefix_cached_over_pyintro_gather": r_cached_gather >= cached_target,
    }
    other.stop()
    pf = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    m_info = machine()
    result = {
        "machine": m_info,
        "other_processes_cores": round(other.cores, 3),
        "wall_s": round(time.time() - t_start, 1),
        "quick": args.quick,
        "model": hooked.path.name,
        "quant_type": hooked.quant_type,
        "threads": args.threads,
        "repeats": args.repeats,
        "grid": {"layers": layers, "strengths": strengths, "questions": QUESTIONS, "points": n,
                 "prompt_tokens": {k: len(v) for k, v in prompts.items()}, "positions": "last",
                 "vector": "contrast(HI! HOW ARE YOU? vs Hi! How are you?)"},
        "points_per_batch": step,
        "samples": {"pyintro_one_at_a_time": len(naive_pts), "llama_cpp_python_cvec": len(cvec_pts),
                    "hf_one_per_forward": len(hf_pts), "hf_batched": len(hf_batch_pts),
                    "hf_batch_rows": args.hf_batch, "hf_prefix_cached": len(cached_pts)},
        "ms_per_point": ms,
        "times_s": {k: v["times"] for k, v in timed.items()},
        "ratio_to_pyintro": {k: v / base for k, v in ms.items()},
        "pyintro_over_limit": ratio_limit,
        "pyintro_gather_over_limit_gather": ratio_limit_gather,
        "pyintro_default_over_limit_gather": ratio_default_vs_gather_limit,
        "hf_prefix_cached_over_pyintro_full_vocab": r_cached_full,
        "hf_prefix_cached_over_pyintro_gather": r_cached_gather,
        "rss_mb": {"before_load": rss0, "after_load": rss_loaded, "before_sweep": mem_full.start,
                   "peak_sweep_full_vocab": mem_full.peak, "growth_sweep_full_vocab": growth,
                   "peak_sweep_gather": mem_gather.peak, "growth_sweep_gather": mem_gather.growth,
                   "after_sweeps": rss_after, "before_hf": rss_before_hf},
        "correctness": {
            "pyintro_all_tokens_vs_cvec": checks, "pyintro_all_tokens_vs_cvec_within_1e-3": cvec_ok,
            "pearson_b_hf_one_per_forward_vs_pyintro": r_single, "pearson_b_hf_batched_vs_pyintro": r_batch,
            "mean_abs_b_diff_hf_batched_vs_pyintro": mad_batch,
            "max_abs_b_diff_hf_single_vs_hf_batched": single_vs_batch,
            "max_abs_b_diff_hf_prefix_cached_vs_hf_single": cached_vs_single,
            "pearson_b_hf_prefix_cached_vs_pyintro": r_cached,
        },
        "targets": {**TARGETS, "hf_prefix_cached_over_pyintro_gather_min": cached_target},
        "pass": verdict,
    }

    lines = [
        f"Sweep of {n} points ({len(layers)} layers × {len(strengths)} strengths × introspection + 1 control "
        f"question, all-caps vector at the last token), {hooked.path.name}, {args.threads} threads, median of "
        f"{args.repeats} rounds after a warm-up round (all variants timed in rotation); {machine_line(m_info)}. "
        + other.sentence(m_info["cores"]),
        "",
        "| | ms/point | × pyintro | timed on |",
        "|---|---:|---:|---|",
        f"| **pyintro** `sweep()` (default `full_vocab=True`: full logits rows, softmax over the vocabulary) "
        f"| {base:.2f} | 1.00 | all {n} |",
        f"| pyintro `sweep(full_vocab=False)` (Yes/No logits only) | {ms['pyintro_sweep_gather']:.2f} "
        f"| {ms['pyintro_sweep_gather'] / base:.2f} | all {n} |",
        f"| limit: plain batched decode, no callback, full logits rows | {ms['limit_full_vocab']:.2f} "
        f"| {ms['limit_full_vocab'] / base:.2f} | all {n} |",
        f"| limit: plain batched decode, no callback, Yes/No logits | {ms['limit_gather']:.2f} "
        f"| {ms['limit_gather'] / base:.2f} | all {n} |",
        f"| pyintro one point per decode, no prefix reuse | {ms['pyintro_one_at_a_time']:.1f} "
        f"| {ms['pyintro_one_at_a_time'] / base:.0f} | {len(naive_pts)} points, scaled |",
        f"| llama-cpp-python alone (llama.cpp's default context): control vector (all tokens), one full decode per point "
        f"| {ms['llama_cpp_python_cvec']:.1f} | {ms['llama_cpp_python_cvec'] / base:.0f} "
        f"| {len(cvec_pts)} points (layers ≥ 1), scaled |",
        f"| HF transformers (float32), forward hook, one point per forward | {ms['hf_one_per_forward']:.1f} "
        f"| {r_hf_s:.0f} | {len(hf_pts)} points, scaled |",
        f"| HF transformers (float32), {args.hf_batch} points per forward (left-padded, one hook per layer) "
        f"| {ms['hf_batched']:.1f} | {r_hf_b:.0f} | {len(hf_batch_pts)} points, scaled |",
        f"| PyTorch prefix-cached: HF (float32), prompt prefix in a KV cache decoded once per question, "
        f"{args.hf_batch} last-token rows per forward, per-row hooks, Yes/No logits only "
        f"| {ms['hf_prefix_cached']:.2f} | {r_cached_full:.2f} "
        f"| {'all ' + str(n) if len(cached_pts) == n else str(len(cached_pts)) + ' points, scaled'} |",
        "",
        f"- PyTorch prefix-cached / pyintro `full_vocab=False`: **{r_cached_gather:.2f}×** (target ≥ {cached_target:g}: "
        f"{pf(verdict['hf_prefix_cached_over_pyintro_gather'])}); / pyintro default sweep: {r_cached_full:.2f}×. "
        f"Its b equals HF one point per forward to max |Δb| {cached_vs_single:.1e}; Pearson r with pyintro's b "
        f"{r_cached:.3f}.",
        f"- pyintro / limit: **{ratio_limit:.2f}×** (same full-vocabulary outputs; target ≤ 1.15: "
        f"{pf(verdict['pyintro_over_limit'])}); with `full_vocab=False` vs the Yes/No limit: "
        f"**{ratio_limit_gather:.2f}×** ({pf(verdict['pyintro_gather_over_limit_gather'])}); default sweep vs "
        f"Yes/No limit: {ratio_default_vs_gather_limit:.2f}×.",
        f"- HF batched / pyintro: **{r_hf_b:.0f}×** (target ≥ 25: {pf(verdict['hf_batched_over_pyintro'])}); "
        f"HF one per forward / pyintro: **{r_hf_s:.0f}×** (target ≥ 40: {pf(verdict['hf_single_over_pyintro'])}).",
        f"- Memory: RSS {rss_loaded:.0f} MB after loading the model; peak growth during the {n}-point sweep "
        f"**{growth:.0f} MB** with `full_vocab=True` (target ≤ 150: {pf(verdict['rss_growth'])}), "
        f"{mem_gather.growth:.0f} MB with `full_vocab=False`.",
        "- Correctness: pyintro injecting on every token vs llama.cpp's control vector (llama.cpp decoding "
        "as pyintro does: tests/_reference.py), max |Δlogit| "
        + ", ".join(f"{c['max_abs_logit_diff']:.1e} (layer {c['layer']}, s={c['strength']:g})" for c in checks)
        + f" ({'within' if cvec_ok else 'NOT within'} 1e-3). HF float32 vs pyintro {hooked.quant_type} b over the sampled "
        f"points: Pearson r = {r_single:.3f} (one per forward, {len(hf_pts)} points), {r_batch:.3f} "
        f"(batched, {len(hf_batch_pts)} points), mean |Δb| {mad_batch:.2f} (different numerics: {hooked.quant_type} kernels "
        "vs dequantized float32).",
        "- llama-cpp-python's control vector adds to every token, pyintro's sweep to the last token only, so "
        "their b values are not comparable; its row shows the cost of one full decode per point.",
        "",
        "Reproduce: `python bench/sweep_speed.py "
        + ("" if default else f"--model {_shown(args.model)} ") + f"--repeats {args.repeats} --readme docs/performance.md`",
    ]
    table = "\n".join(lines)
    report(("sweep_speed_quick" if args.quick else "sweep_speed") + suffix, result, table,
           args.readme, "sweep_speed" + suffix.lower(), md=True)


def _shown(path) -> str:
    """``path`` relative to the current folder when it is inside it (a model alias as given)."""
    path = Path(path)
    if not path.exists():
        return str(path)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    main()
