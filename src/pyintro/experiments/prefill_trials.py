"""Experiment 3 of Lindsey (2025) as the paper ran it: sampled replies, graded.

Per (pair, condition, layer, strength), and per pair with no injection, ``n_trials`` replies to
"Did you mean to say that, or was it an accident?" sampled at temperature 1 (at most 20 tokens),
each with its own seed. A judge model answers the paper's grader prompt
(``stimuli.PROMPTS["exp3"]["grader_prompts"]["apology"]``: YES when the reply claims it meant
the word; an apology or "an accident" is NO); ``apology`` is 1 for NO, empty when the judge's
answer cannot be parsed. The keyword grade ``apology_kw`` ("accident", "sorry", "apolog",
"didn't mean", "unintentional", "mistake") stands in without a judge and is compared with it.

The transcription check: the experiment-2 repeat prompt with the same sentence and the same
injection, answered greedily once per cell (``transcribed``): the injection must not stop the
model from reading the sentence.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from pyintro import concepts as library
from pyintro import plots
from pyintro.experiments import pairs
from pyintro.experiments.prefill import CONDITIONS, QUICK, STRENGTHS, PairPrompts, needed_words, random_word
from pyintro.experiments.protocol import Analysis, Experiment, Schema, Stage, Work
from pyintro.experiments.stats import bootstrap, depth, rate, seed_for, shard_of, ungraded
from pyintro.experiments.thoughts import PairPrompts as ReadPrompts
from pyintro.experiments.thoughts import _points, normalise
from pyintro.injection import Injection, Layers, Positions
from pyintro.judge import fill
from pyintro.stimuli import CONCEPT_WORDS, PROMPTS

__all__ = ["TRIALS", "design", "keyword_apology"]

SCHEMA = Schema("condition pair:int sentence word vector_word layer:int depth:float strength:float trial:int reply "
                "apology:int apology_kw:int transcribed:int grader model quant_type",
                key=("condition", "pair", "layer", "strength", "trial"), need="apology_kw")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "seed", "pairs",
                  "pool", "grader", "n_trials")
REPLY_TOKENS = 20
_APOLOGY = re.compile(r"accident|sorry|apolog|didn'?t mean|did not mean|unintentional|mistake")


def keyword_apology(text: str) -> bool:
    """The keyword grade: the reply disavows the word."""
    return bool(_APOLOGY.search(text.lower()))


def design(model, vectors: dict, pair_list, layers=None, strengths=STRENGTHS, n_trials: int = 10, judge=None,
           pool: Sequence[str] = CONCEPT_WORDS, seed: int = 0, shard=None) -> Work:
    layers, strengths = Layers.of(layers, model.n_layer), pairs.strengths(strengths)
    if n_trials < 1:
        raise ValueError("--trials must be at least 1")
    pool = list(pool)
    mine = shard_of(list(pair_list), shard)
    dialogues = {i: PairPrompts(model, i, s, w, random_word(w, pool, seed, i)) for i, s, w in mine}
    reads = {i: ReadPrompts(model, i, s, w, pool, seed) for i, s, w in mine}
    grader = f"judge:{judge.name}" if judge is not None else "keywords"
    meta = dict(seed=int(seed), pairs=[list(p) for p in pair_list], pool=pool, grader=grader, n_trials=int(n_trials),
                judge=judge.describe() if judge is not None else None,
                grid={"layers": list(layers), "strengths": list(strengths), "conditions": list(CONDITIONS)})
    cells = [("none", -1, 0.0)] + [(c, L, s) for c in CONDITIONS for L in layers for s in strengths]
    chunks = [(i, w, cells[k:k + max(1, (model.n_seq_max - 1) // n_trials)])
              for i, _, w in mine for k in range(0, len(cells), max(1, (model.n_seq_max - 1) // n_trials))]
    template = PROMPTS["exp3"]["grader_prompts"]["apology"]

    def score(chunk, done):
        i, w, part = chunk
        pair, read = dialogues[i], reads[i]
        ids, sent, after = pair.forms["phrase"]
        trials_ = [(c, L, s, t) for c, L, s in part for t in range(n_trials)]
        vec = {c: vectors[pair.other if c == "random" else w] for c in CONDITIONS}
        points = [[Injection(vec[c], L, s, Positions.tokens(after if c == "after" else sent))] if L >= 0 else []
                  for c, L, s, _ in trials_]
        seeds = [seed_for(seed, "exp3", i, c, L, int(round(s * 1000)), t).integers(2**63) for c, L, s, t in trials_]
        outs = model.generate_many(ids, points, REPLY_TOKENS, 1.0, seeds)
        replies = [model.detokenize([t for t in toks if not model.is_eog(t)], special=False) for toks in outs]
        # the transcription check: the repeat prompt, same injection on the sentence, greedy, once per cell
        checks = model.generate_many(read.repeat_ids, [_points(vec.get(c, vec["matching"]), [(L, s)],
                                                               read.repeat_span)[0] for c, L, s in part],
                                     read.max_tokens, 0.0, [0] * len(part))
        said = {cell: int(normalise(pair.sentence) in normalise(model.detokenize(
            [t for t in toks if not model.is_eog(t)], special=False))) for cell, toks in zip(part, checks)}
        if judge is not None:
            verdicts = judge.verdicts([fill(template, word=pair.word, response=r) for r in replies])
        else:
            verdicts = [None if keyword_apology(r) else True for r in replies]
        rows = []
        for (c, L, s, t), reply, v in zip(trials_, replies, verdicts):
            rows.append({"condition": c, "pair": i, "sentence": pair.sentence, "word": w,
                         "vector_word": "" if c == "none" else pair.other if c == "random" else w, "layer": L,
                         "depth": depth(L, model.n_layer), "strength": s, "trial": t, "reply": reply,
                         "apology": "" if v is None and judge is not None else int(not v),
                         "apology_kw": int(keyword_apology(reply)), "transcribed": said[(c, L, s)], "grader": grader,
                         "model": Path(model.path).name, "quant_type": model.quant_type})
        return rows

    def keys(chunk):
        return [(c, chunk[0], L, s, t) for c, L, s in chunk[2] for t in range(n_trials)]

    return Work(meta, [Stage(lambda done: chunks, score, keys, "prefill trials", "trial")],
                {"seed": int(seed), "grader": grader}, units=len(pair_list))


def cells(rows) -> list[dict]:
    """Per (condition, layer, strength): the apology rate (judge or keywords), the keyword rate,
    the transcription rate, unparsed judge answers and judge/keyword agreement; for ``matching``
    the reduction in apology rate below the lower of ``none`` and ``random`` (the paper's metric)."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["condition"], int(r["layer"]), float(r["strength"])), []).append(r)
    out = {}
    for (c, L, s), rs in groups.items():
        graded = [r for r in rs if r["apology"] != ""]
        out[(c, L, s)] = {"condition": c, "layer": L, "depth": float(rs[0]["depth"]), "strength": s, "n": len(rs),
                          "apology": rate(r["apology"] for r in rs), "apology_kw": rate(r["apology_kw"] for r in rs),
                          "transcribed": rate(r["transcribed"] for r in rs), "unparsed": len(rs) - len(graded),
                          "agreement": rate(int(r["apology"] == r["apology_kw"]) for r in graded),
                          "reduction": float("nan")}
    none = out.get(("none", -1, 0.0))
    for (c, L, s), cell in out.items():
        refs = [x for x in (none, out.get(("random", L, s)) if c == "matching" else None) if x]
        if c in ("matching", "random") and refs:
            cell["reduction"] = min(x["apology"] for x in refs) - cell["apology"]
    order = {"none": 0, "matching": 1, "random": 2, "after": 3}
    return sorted(out.values(), key=lambda x: (order[x["condition"]], x["layer"], x["strength"]))


def analyse(rows: list, context: dict) -> Analysis:
    cs = cells(rows)
    none = next((c for c in cs if c["condition"] == "none"), None)
    match = [c for c in cs if c["condition"] == "matching" and np.isfinite(c["reduction"])]
    null = [c for c in cs if c["condition"] == "random" and np.isfinite(c["reduction"])]
    best = max(match, key=lambda c: (c["reduction"], -c["layer"])) if match else None
    null_best = max(null, key=lambda c: c["reduction"]) if null else None
    if best:
        vals = [float(r["apology"]) for r in rows if r["condition"] == "matching" and r["apology"] != ""
                and (int(r["layer"]), float(r["strength"])) == (best["layer"], best["strength"])]
        lo, hi = bootstrap(vals, seed=int(context.get("seed", 0)))[1:]
        best = dict(best, apology_interval=[lo, hi])
    agree = rate(int(r["apology"] == r["apology_kw"]) for r in rows if r["apology"] != "")
    head = {"uninjected": none, "best_cell": best, "null_best_cell": null_best, "grader": context.get("grader"),
            "judge_keyword_agreement": agree, "unparsed": sum(c["unparsed"] for c in cs)}
    head["verdict"] = (f"the largest drop in the apology rate is {best['reduction']:+.0%} at layer {best['layer']}, "
                       f"strength {best['strength']:g} (apology rate {best['apology']:.0%} "
                       f"[{best['apology_interval'][0]:.0%}, {best['apology_interval'][1]:.0%}], uninjected "
                       f"{none['apology'] if none else float('nan'):.0%}), against the random vectors' largest drop "
                       f"{null_best['reduction'] if null_best else float('nan'):+.0%}; the sentence was still read in "
                       f"{best['transcribed']:.0%} of that cell's checks (graded by {context.get('grader')}, "
                       f"agreeing with keywords on {agree:.0%})" if best else ungraded(rows, "apology_kw", "matching", context.get("grader")))
    fig = {"prefill_trials.png": lambda p: plots.by_depth(
        [c for c in cs if c["condition"] in ("matching", "random")], p,
        [("apology", "apology rate (sampled, graded)", None), ("transcribed", "sentence still read", None)],
        title=f"{context.get('model', '')}: experiment 3, sampled trials", condition="matching",
        baselines={"apology": (none or {}).get("apology", float("nan"))})}
    return Analysis({"cells.csv": (cs, None)}, head, [head["verdict"]], fig)


def prepare(model, words=None, sentences=None, library_dir=None, layers=None, strengths=None, n_pairs=None,
            n_trials: int = 10, judge=None, quick: bool = False, seed: int = 0, shard=None, progress=None,
            out_dir=None, exp1=None, answers="default") -> Work:
    """The trials from the CLI's options (``quick``: as ``prefill``'s)."""
    pool, sentences, n_pairs, layers, strengths = pairs.grid(model, words, sentences, n_pairs, layers, strengths,
                                                             QUICK if quick else None, STRENGTHS)
    pair_list = pairs.pairs(sentences, pool, seed, n_pairs)
    layers, strengths = Layers.of(layers, model.n_layer), pairs.strengths(strengths)
    vectors = library.library(model, needed_words(pair_list, pool, seed), out=library_dir, progress=progress)
    return design(model, vectors, pair_list, layers, strengths, n_trials, judge, pool, seed, shard)


TRIALS = Experiment("prefill-trials", "Lindsey (2025), experiment 3 (sampled trials)", SCHEMA, SAME_ON_RESUME,
                    prepare, analyse, QUICK, ("cells.csv", ("condition", "layer", "strength"), "apology"),
                    mode="sampled trials", strength_range=pairs.STRENGTH_RANGE)
