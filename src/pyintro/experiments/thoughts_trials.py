"""Experiment 2 of Lindsey (2025) as the paper ran it: sampled answers, graded.

Per (pair, layer, strength), and per pair with no injection (condition ``none``), ``n_trials``
samples at temperature 1 of the think prompt (at most 5 tokens) and of the repeat prompt (at
most 15 tokens), each trial with its own seed, the word's vector on the sentence tokens.

- **think**: a judge model reads the reply and the 10 candidate words (the injected word and 9
  seeded distractors) and names the one the reply is most related to (the paper's grader
  prompt, ``stimuli.PROMPTS["exp2"]["grader_prompts"]["think"]``); ``think`` is 1 when it names
  the injected word, empty when its answer names none or several. Without a judge, and always
  beside it, the keyword grade ``think_kw``: the reply names exactly one candidate, the injected
  word. Their agreement is reported.
- **repeat** (no judge, the paper's rule): the lower-cased sentence appears in the lower-cased reply.
- ``joint``: both at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pyintro import concepts as library
from pyintro import plots
from pyintro.experiments import pairs
from pyintro.experiments.protocol import Analysis, Experiment, Schema, Stage, Work
from pyintro.experiments.stats import bootstrap, depth, rate, seed_for, shard_of, ungraded
from pyintro.experiments.thoughts import N_CHOICES, QUICK, STRENGTHS, PairPrompts, _points, normalise
from pyintro.injection import Layers
from pyintro.judge import choice, fill
from pyintro.stimuli import CONCEPT_WORDS, PROMPTS

__all__ = ["TRIALS", "design"]

SCHEMA = Schema("condition pair:int sentence word layer:int depth:float strength:float trial:int think_text think:int "
                "think_kw:int repeat_text repeat:int joint:int grader model quant_type",
                key=("condition", "pair", "layer", "strength", "trial"), need="repeat")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "seed", "pairs",
                  "pool", "grader", "n_trials")
THINK_TOKENS, REPEAT_TOKENS = 5, 15


def design(model, vectors: dict, pair_list, layers=None, strengths=STRENGTHS, n_trials: int = 10, judge=None,
           pool: Sequence[str] = CONCEPT_WORDS, seed: int = 0, shard=None) -> Work:
    """The trials' work: per pair (a shard takes every N-th), its uninjected trials and its grid's."""
    layers, strengths = Layers.of(layers, model.n_layer), pairs.strengths(strengths)
    if n_trials < 1:
        raise ValueError("--trials must be at least 1")
    mine = shard_of(list(pair_list), shard)
    prompts = {i: PairPrompts(model, i, s, w, list(pool), seed) for i, s, w in mine}
    grader = f"judge:{judge.name}" if judge is not None else "keywords"
    meta = dict(seed=int(seed), pairs=[list(p) for p in pair_list], pool=list(pool), grader=grader,
                n_trials=int(n_trials), judge=judge.describe() if judge is not None else None,
                grid={"layers": list(layers), "strengths": list(strengths)})
    points = [(-1, 0.0)] + [(L, s) for L in layers for s in strengths]
    step = max(1, model.n_seq_max - 1)
    chunks = []
    for i, _, w in mine:
        cells = [(L, s, t) for L, s in points for t in range(n_trials)]
        chunks += [(i, w, cells[k:k + step]) for k in range(0, len(cells), step)]
    template = PROMPTS["exp2"]["grader_prompts"]["think"]

    def score(chunk, done):
        i, w, cells = chunk
        pair, vec = prompts[i], vectors[w]
        seeds = [seed_for(seed, "exp2", i, L, int(round(s * 1000)), t).integers(2**63) for L, s, t in cells]
        texts = {}
        for name, ids, span, budget in (("think", pair.think_ids, pair.think_span, THINK_TOKENS),
                                        ("repeat", pair.repeat_ids, pair.repeat_span, REPEAT_TOKENS)):
            outs = model.generate_many(ids, _points(vec, [(L, s) for L, s, _ in cells], span), budget, 1.0, seeds)
            texts[name] = [model.detokenize([t for t in toks if not model.is_eog(t)], special=False) for toks in outs]
        kw = [choice(t, pair.choices) for t in texts["think"]]
        if judge is not None:
            words = "\n".join(c.lower() for c in pair.choices)
            picked = judge.choices([fill(template, response=t, words_list_raw=words) for t in texts["think"]],
                                   [pair.choices] * len(cells))
        else:
            picked = kw
        rows = []
        for (L, s, t), think_text, repeat_text, p, k in zip(cells, texts["think"], texts["repeat"], picked, kw):
            think = "" if p is None and judge is not None else int(p == w)  # keywords: naming none is a miss
            repeat = int(normalise(pair.sentence) in normalise(repeat_text))
            rows.append({"condition": "none" if L < 0 else "injected", "pair": i, "sentence": pair.sentence,
                         "word": w, "layer": L, "depth": depth(L, model.n_layer), "strength": s, "trial": t,
                         "think_text": think_text, "think": think, "think_kw": int(k == w), "repeat_text": repeat_text,
                         "repeat": repeat, "joint": "" if think == "" else int(think and repeat), "grader": grader,
                         "model": Path(model.path).name, "quant_type": model.quant_type})
        return rows

    def keys(chunk):
        return [("none" if L < 0 else "injected", chunk[0], L, s, t) for L, s, t in chunk[2]]

    return Work(meta, [Stage(lambda done: chunks, score, keys, "thought trials", "trial")],
                {"seed": int(seed), "grader": grader}, units=len(pair_list))


def cells(rows) -> list[dict]:
    """Per (condition, layer, strength): the thought, repeat and joint rates over the graded
    trials, the keyword grade's thought rate, how many the judge left unparsed, and how often the
    judge and the keywords agree."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["condition"], int(r["layer"]), float(r["strength"])), []).append(r)
    out = []
    for (cond, L, s), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "none", kv[0][1:])):
        graded = [r for r in rs if r["think"] != ""]
        out.append({"condition": cond, "layer": L, "depth": float(rs[0]["depth"]), "strength": s, "n": len(rs),
                    "think": rate(r["think"] for r in rs), "think_kw": rate(r["think_kw"] for r in rs),
                    "repeat": rate(r["repeat"] for r in rs), "joint": rate(r["joint"] for r in rs),
                    "unparsed": len(rs) - len(graded),
                    "agreement": rate(int(r["think"] == r["think_kw"]) for r in graded)})
    return out


def analyse(rows: list, context: dict) -> Analysis:
    cs = cells(rows)
    none = next((c for c in cs if c["condition"] == "none"), None)
    injected = [c for c in cs if c["condition"] == "injected" and np.isfinite(c["joint"])]
    best = max(injected, key=lambda c: (c["joint"], c["think"], -c["layer"])) if injected else None
    if best:
        vals = [float(r["joint"]) for r in rows if r["joint"] != "" and r["condition"] == "injected"
                and (int(r["layer"]), float(r["strength"])) == (best["layer"], best["strength"])]
        best = dict(best, interval=list(bootstrap(vals, seed=int(context.get("seed", 0)))[1:]))
    agree = rate(int(r["think"] == r["think_kw"]) for r in rows if r["think"] != "")
    head = {"uninjected": none, "best_cell": best, "grader": context.get("grader"), "judge_keyword_agreement": agree,
            "unparsed": sum(c["unparsed"] for c in cs), "chance": 1 / N_CHOICES}
    nan = float("nan")
    head["verdict"] = (f"best joint rate {best['joint']:.0%} [{best['interval'][0]:.0%}, {best['interval'][1]:.0%}] at "
                       f"layer {best['layer']}, strength {best['strength']:g}, against "
                       f"{none['joint'] if none else nan:.0%} with no injection (the word named {best['think']:.0%} vs "
                       f"{none['think'] if none else nan:.0%}; graded by {context.get('grader')}, agreeing with "
                       f"keywords on {agree:.0%})" if best else ungraded(rows, "think_kw", "injected", context.get("grader")))
    fig = {"thought_trials.png": lambda p: plots.by_depth(
        [c for c in cs if c["condition"] == "injected"], p,
        [("think", "thought named (sampled, graded)", 0.1), ("repeat", "sentence repeated (sampled)", None),
         ("joint", "both at once", None)], title=f"{context.get('model', '')}: experiment 2, sampled trials",
        baselines={k: (none or {}).get(k, float("nan")) for k in ("think", "repeat", "joint")})}
    return Analysis({"cells.csv": (cs, None)}, head, [head["verdict"]], fig)


def prepare(model, words=None, sentences=None, library_dir=None, layers=None, strengths=None, n_pairs=None,
            n_trials: int = 10, judge=None, quick: bool = False, seed: int = 0, shard=None, progress=None,
            out_dir=None, prompt_name: str = "paper") -> Work:
    """The trials from the CLI's options (``quick``: as ``thoughts``'s)."""
    pool, sentences, n_pairs, layers, strengths = pairs.grid(model, words, sentences, n_pairs, layers, strengths,
                                                             QUICK if quick else None, STRENGTHS)
    pair_list = pairs.pairs(sentences, pool, seed, n_pairs)
    layers, strengths = Layers.of(layers, model.n_layer), pairs.strengths(strengths)
    vectors = library.library(model, list(dict.fromkeys(w for _, _, w in pair_list)), out=library_dir,
                              progress=progress)
    return design(model, vectors, pair_list, layers, strengths, n_trials, judge, pool, seed, shard)


TRIALS = Experiment("thoughts-trials", "Lindsey (2025), experiment 2 (sampled trials)", SCHEMA, SAME_ON_RESUME,
                    prepare, analyse, QUICK, ("cells.csv", ("condition", "layer", "strength"), "joint"),
                    mode="sampled trials", strength_range=pairs.STRENGTH_RANGE)
