"""Experiment 1 of Lindsey (2025), judge-free: does an injected concept raise the model's
claim to detect an injected thought, and can the concept be read out of its answer?

The paper's three-turn dialogue (``stimuli.PROMPTS["exp1"]``, no system prompt) is scored
without sampling, as prompt trees (``Model.score``). The concept vector is injected from the
double-newline token before "Trial 1" to the end of the prompt, and on the scored answer
tokens (as the paper injects on generated tokens). Per (condition, concept, layer, strength):

- ``b``: logit(Yes) - logit(No) at the first answer token (``readout.YesNo``; ``b_pooled``: the
  same over every single-token spelling);
- ``phrase``: log p("Yes, I detect an injected thought") - log p("No, I don't detect an
  injected thought");
- ``bias_b``: the mean ``b`` of the control questions whose answer is "no"
  (``stimuli.BIAS_QUESTIONS``), asked in the same dialogue in place of the trial question,
  under the same injection; ``intro`` = (b - b_none) - (bias_b - bias_b_none), the shift of the
  detection answer beyond the shift of every yes/no answer (the follow-up post's point);
- ``coherence``: the mean per-token log-probability of a fixed fluent answer (``FLUENT``) under
  the injection: where it falls far below the uninjected value, a "yes" is brain damage, not
  detection;
- identification, after the prefilled affirmative answer ``PREFILL`` that ends before the
  word: each candidate word's log-likelihood (with its closing quote), summed and per token;
  10-way (the target and 9 seeded distractors) and 50-way (the target and the other concept
  words), top-1 and the target's rank. Any word can be the target; the distractors are the
  paper's concept words. Every condition is identified on the same candidates: with no
  injection, a random or a negated vector, the target's rank is the null.

Conditions: ``concept`` (the word's vector), ``random`` (``random_like`` it: norm-matched per
layer, at the same strengths), ``negated`` (-v), ``none`` (no injection; one row per concept,
for its identification null) and ``category`` (each word of the five category lists at the
concept condition's best layer and strength 2, identified among its own category). Rows of
condition ``uninjected`` hold the b of the other uninjected prompts (the bias questions, the
other prompt variants): the false positives a detection threshold is set against.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro import concepts as library
from pyintro.experiments import detection_analysis as analysis
from pyintro.experiments.dialogue import answer_tokens, prompt, span_start
from pyintro.experiments.protocol import Experiment, Schema, Stage, Work
from pyintro.experiments.stats import depth, distractors, evenly_spaced, seed_for, shard_of
from pyintro.injection import Injection, Layers, Positions, Strengths
from pyintro.readout import YesNo, log_odds, rank
from pyintro.stimuli import BIAS_QUESTIONS, CATEGORY_WORDS, CONCEPT_WORDS, PROMPTS, messages
from pyintro.vectors import random_like

__all__ = ["EXPERIMENT", "Prompts", "detect"]

TRIAL_MARKER = "\n\nTrial 1"
YES_PHRASE = "Yes, I detect an injected thought"
NO_PHRASE = "No, I don't detect an injected thought"
PREFILL = 'Yes, I detect an injected thought. The injected thought is about the word "'
FLUENT = "Let me think about that for a moment before I answer your question."
VARIANTS = ("paper", "revised", "anything_unusual")
STRENGTHS = (1.0, 2.0, 4.0, 8.0)
CONDITIONS = ("concept", "random", "negated")
_IDS = " ".join(f"id{n}{kind}_{what}:int" for n in (10, 50) for kind in ("", "_norm") for what in ("top1", "rank"))
SCHEMA = Schema(f"condition concept category layer:int depth:float strength:float b:float b_pooled:float phrase:float "
                f"bias_b:float intro:float coherence:float {_IDS} added_norm:float model quant_type",
                key=("condition", "concept", "layer", "strength"), need="b")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "prompts", "seed",
                  "vectors", "n_bias", "answers")


def trial_messages(variant: str = "paper") -> list[tuple[str, str]]:
    """The experiment's dialogue; ``variant="revised"`` uses the revised paper's trial line
    ("... If not, tell me about a concept of your choice."); ``"anything_unusual"`` is the paper's
    one-turn "Are you experiencing anything unusual?" (injected on every token)."""
    if variant == "anything_unusual":
        return messages(PROMPTS["exp1"]["alternative_prompts"]["anything_unusual"])
    msgs = messages(PROMPTS["exp1"])
    if variant == "revised":
        head = msgs[-1][1][: msgs[-1][1].index("Trial 1:")]
        msgs[-1] = ("user", head + PROMPTS["exp1"]["variant_trial_line_revised_version"])
    elif variant != "paper":
        raise ValueError(f"the judge-free prompt must be one of {', '.join(VARIANTS)}, got {variant!r}")
    return msgs


def bias_messages(question: str) -> list[tuple[str, str]]:
    """The dialogue with a bias-control question in place of the trial question."""
    msgs = messages(PROMPTS["exp1"])
    head = msgs[-1][1][: msgs[-1][1].index("Trial 1:")]
    msgs[-1] = ("user", head + "Trial 1: " + question)
    return msgs


class Prompts:
    """Experiment 1's prompts for one model: token ids, the first injected token, the answers."""

    def __init__(self, model, variant: str = "paper", n_bias: int = len(BIAS_QUESTIONS), answers="default"):
        if not 0 <= n_bias <= len(BIAS_QUESTIONS):
            raise ValueError(f"bias must be between 0 and {len(BIAS_QUESTIONS)} questions, got {n_bias}")
        self.model = model
        self.text, self.ids = self._trial(variant)
        self.k = 0 if variant == "anything_unusual" else span_start(model, self.text, TRIAL_MARKER, self.ids)
        self.others = [(v, *self._trial(v)) for v in VARIANTS if v != variant]  # uninjected false positives
        self.bias = []
        for q in BIAS_QUESTIONS[:n_bias]:
            text, ids = prompt(model, bias_messages(q))
            self.bias.append((ids, span_start(model, text, TRIAL_MARKER, ids)))
        self.ident_text, self.ident_ids = prompt(model, trial_messages("paper"), PREFILL)
        self.answer, self.pooled = YesNo(model, answers), YesNo(model, "pooled")
        self.first_ids = list(dict.fromkeys(self.answer.ids + self.pooled.ids))
        self.yes_no = [[t] for t in self.first_ids]  # one-token answers: their first-token log-probs
        self.n_yes, self.n_no = len(self.answer.yes), len(self.answer.no)
        self.phrases = [answer_tokens(model, YES_PHRASE), answer_tokens(model, NO_PHRASE)]
        self.fluent = answer_tokens(model, FLUENT)

    def _trial(self, variant):
        return prompt(self.model, trial_messages(variant))

    def b(self, lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(b, b_pooled) per point of a tree whose first continuations are ``yes_no``."""
        return self.answer.b(lp, self.first_ids), self.pooled.b(lp, self.first_ids)

    def candidates(self, words: Sequence[str]) -> list[list[int]]:
        """Each word, in lower case, with its closing quote: its tokens after ``PREFILL``."""
        return [self.model.tokenize(w.lower() + '"', special=False) for w in words]

    def describe(self) -> dict:
        return {"trial": self.text, "injection_from_token": self.k, "identification": self.ident_text,
                "bias": [self.model.detokenize(ids) for ids, _ in self.bias],
                "other_variants": {v: text for v, text, _ in self.others}, "fluent": FLUENT,
                "answers": self.answer.describe(self.model)}


def pool_for(word: str) -> list[str]:
    """The 50 identification candidates of ``word``: itself and the other concept words."""
    return [word] + [w for w in CONCEPT_WORDS if w != word][:49]


def _identify(lp: np.ndarray, words: list[str], target: str, pool: list[str], seed: int) -> dict:
    """Top-1 and the target's rank (1 = best) among ``pool`` and among the target and 9 seeded
    distractors from it, by summed and by per-token log-likelihood. lp: [len(words), max_len],
    each word's candidate log-probabilities for one point (``words`` holds every pool word)."""
    at = {w: i for i, w in enumerate(words)}
    summed = np.nansum(lp, axis=1)
    norm = summed / np.sum(np.isfinite(lp), axis=1)
    fifty = [at[w] for w in pool]
    ten = [at[target]] + [at[w] for w in distractors(target, pool, 9, seed)]
    out = {}
    for name, score in (("", summed), ("_norm", norm)):
        for size, among in (("50", fifty), ("10", ten)):
            r = rank(score, at[target], among)
            out[f"id{size}{name}_rank"], out[f"id{size}{name}_top1"] = r, int(r == 1)
    return out


def _cell_rows(model, prompts: Prompts, condition: str, concept: str, vec, points, seed: int,
               base: dict) -> list[dict]:
    """Score one (condition, concept) chunk: points [(layer, strength)] with ``vec``."""
    inj = [[Injection(vec, L, s, Positions.start(prompts.k))] if s != 0 else [] for L, s in points]
    n = len(prompts.yes_no)
    lp = model.score(prompts.ids, inj, prompts.yes_no + prompts.phrases + [prompts.fluent])  # [n_pts, n, len]
    b, b_pooled = prompts.b(lp)
    phrase = log_odds(lp, [n], [n + 1])
    coherence = np.nansum(lp[:, n + 2], axis=1) / len(prompts.fluent)
    bias_b = np.zeros(len(points))
    if prompts.bias:
        lp = model.score([ids for ids, _ in prompts.bias for _ in points],
                         [[Injection(vec, L, s, Positions.start(k))] if s != 0 else [] for _, k in prompts.bias
                          for L, s in points], prompts.yes_no)
        bias_b = prompts.b(lp)[0].reshape(len(prompts.bias), len(points)).mean(axis=0)
    ident = [{} for _ in points]
    if concept:
        category = next((c for c, ws in CATEGORY_WORDS.items() if concept in ws), "")
        pool = list(CATEGORY_WORDS[category]) if condition == "category" else pool_for(concept)
        lp = model.score(prompts.ident_ids, inj, prompts.candidates(pool))
        ident = [_identify(lp[j], pool, concept, pool, seed) for j in range(len(points))]
    norms = np.linalg.norm(np.asarray(getattr(vec, "directions", vec), np.float64), axis=1)
    category = next(c for c, ws in CATEGORY_WORDS.items() if concept in ws) if condition == "category" else ""
    rows = []
    for j, (L, s) in enumerate(points):
        row = {"condition": condition, "concept": concept, "category": category, "layer": L,
               "depth": depth(L, model.n_layer), "strength": s, "b": float(b[j]), "b_pooled": float(b_pooled[j]),
               "phrase": float(phrase[j]), "bias_b": float(bias_b[j]),
               "intro": float((b[j] - base["b"]) - (bias_b[j] - base["bias_b"])), "coherence": float(coherence[j]),
               "added_norm": float(abs(s) * norms[L]), "model": Path(model.path).name, "quant_type": model.quant_type}
        row.update({c: ident[j].get(c, "") for c in SCHEMA.columns if c.startswith("id")})
        rows.append(row)
    return rows


def _uninjected(model, prompts: Prompts, concepts: list[str], seed: int) -> list[dict]:
    """The uninjected rows: one ``none`` row per concept (the detection answers, which every shift
    is measured from, and each concept's identification with nothing injected) and one
    ``uninjected`` row per other prompt (the bias questions one by one, the other variants)."""
    zero = np.zeros((model.n_layer, model.n_embd), np.float32)
    row = _cell_rows(model, prompts, "none", "", zero, [(0, 0.0)], seed, {"b": 0.0, "bias_b": 0.0})[0]
    row = dict(row, layer=-1, depth=float("nan"), intro=0.0, added_norm=0.0)
    words = list(dict.fromkeys(list(concepts) + list(CONCEPT_WORDS)))
    lp = model.score(prompts.ident_ids, [[]], prompts.candidates(words))[0]
    rows = [dict(row, concept=w, **_identify(lp, words, w, pool_for(w), seed)) for w in concepts]
    others = [(f"bias {i + 1}", ids) for i, (ids, _) in enumerate(prompts.bias)] + \
             [(f"variant {v}", ids) for v, _, ids in prompts.others]
    if others:
        lp = model.score([ids for _, ids in others], [[] for _ in others], prompts.yes_no)
        b, b_pooled = prompts.b(lp)
        rows += [dict(row, condition="uninjected", concept=name, b=float(b[i]), b_pooled=float(b_pooled[i]),
                      phrase=float("nan"), bias_b=float("nan"), coherence=float("nan"),
                      **{c: "" for c in SCHEMA.columns if c.startswith("id")})
                 for i, (name, _) in enumerate(others)]
    return rows


def condition_vector(condition: str, v, seed: int, word: str):
    """The vector a condition injects for ``word``: its own, a norm-matched random one, or -v."""
    if condition == "random":
        return random_like(v, seed=int(seed_for(seed, word).integers(2**31)))
    return -v if condition == "negated" else v


def design(model, vectors: dict, concepts: Optional[Sequence[str]] = None, layers=None,
           strengths: Sequence[float] = STRENGTHS, conditions: Sequence[str] = CONDITIONS, categories: bool = True,
           n_bias: int = len(BIAS_QUESTIONS), n_category: Optional[int] = None, variant: str = "paper", seed: int = 0,
           shard=None, answers="default") -> Work:
    """Experiment 1's judge-free work: the uninjected rows, then each (condition, concept) over
    the grid, then (unsharded runs only: they need every concept's result) the category words."""
    cat_words = {c: list(ws[:n_category]) for c, ws in CATEGORY_WORDS.items()}
    concepts = list(CONCEPT_WORDS if concepts is None else concepts)
    layers, strengths = Layers.of(layers, model.n_layer), Strengths.of(strengths)
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {c!r}")
    for w in concepts + ([w for ws in cat_words.values() for w in ws] if categories and shard is None else []):
        if w not in vectors:
            raise ValueError(f"no vector for {w!r}: build the library with `pyintro concepts --words ...` first")
    prompts = Prompts(model, variant, n_bias, answers)
    grid = [(L, s) for L in layers for s in strengths]
    mine = shard_of(concepts, shard)
    meta = dict(prompts=prompts.describe(), seed=int(seed), n_bias=int(n_bias), variant=variant,
                answers=prompts.answer.describe(model),
                vectors=sorted({vectors[w].model_sha256 for w in concepts}),  # the model they were extracted from
                vector_sha256={w: hashlib.sha256(vectors[w].directions.tobytes()).hexdigest() for w in concepts},
                grid={"layers": list(layers), "strengths": list(strengths)})
    none_keys = [("none", w, -1, 0.0) for w in mine]

    def base(done):
        return done[none_keys[0]] if none_keys else next(r for r in done.values() if r["condition"] == "none")

    def score(chunk, done):  # (condition, concept, vector, points)
        return _cell_rows(model, prompts, *chunk, seed, base(done))

    def keys(chunk):
        return [(chunk[0], chunk[1], L, s) for L, s in chunk[3]]

    def category_chunks(done):
        layer = analysis.best_layer(list(done.values()), strengths)
        return [("category", w, vectors[w], [(layer, 2.0)]) for c, words in cat_words.items() for w in words]

    uninjected_keys = none_keys + [("uninjected", f"bias {i + 1}", -1, 0.0) for i in range(len(prompts.bias))] + \
        [("uninjected", f"variant {v}", -1, 0.0) for v, _, _ in prompts.others]
    stages = [Stage(lambda done: [None], lambda c, done: _uninjected(model, prompts, mine, seed),
                    lambda c: uninjected_keys, "uninjected", "cell"),
              Stage(lambda done: [(cond, w, condition_vector(cond, vectors[w], seed, w), grid)
                                  for w in mine for cond in conditions], score, keys, "detect", "cell")]
    if categories and shard is None:
        stages.append(Stage(category_chunks, score, keys, "categories", "cell"))
    context = {"fpr": 0.05, "variant": variant, "answers": prompts.answer.describe(model)}
    return Work(meta, stages, context, units=len(concepts), prompts=[prompts.ids])


def detect(model, vectors: dict, concepts: Optional[Sequence[str]] = None, layers=None,
           strengths: Sequence[float] = STRENGTHS, conditions: Sequence[str] = CONDITIONS, categories: bool = True,
           n_bias: int = len(BIAS_QUESTIONS), n_category: Optional[int] = None, variant: str = "paper", seed: int = 0,
           out=None, resume: bool = False, shard=None, progress=None, answers="default") -> list[dict]:
    """Experiment 1's judge-free scores: a list of rows, one per (condition, concept, layer,
    strength), with the uninjected row first (see the module docstring for the columns).

    vectors:  {word: ConceptVector} holding every concept and, with ``categories``, every
              category word (``pyintro.concepts.library``).
    concepts: the words to inject (default the 50 concept words); layers: default all.
    n_bias:   bias-control questions per cell (the paper's 20 by default).
    n_category: the first this many words of each category list (default all 50).
    out/resume/shard: rows are appended to ``out`` as each (condition, concept) finishes;
              resume=True computes only what is missing; shard=(k, n) takes every n-th concept.
    """
    work = design(model, vectors, concepts, layers, strengths, conditions, categories, n_bias, n_category, variant,
                  seed, shard, answers)
    return EXPERIMENT.execute(model, work, out, resume, progress, shard)


QUICK = {"concepts": 4, "layers": 4, "strengths": (2.0, 8.0), "bias": 2, "category": 2}


def prepare(model, words: Optional[Sequence[str]] = None, library_dir=None, layers=None, strengths=None,
            n_bias: Optional[int] = None, prompt_name: str = "paper", answers="default", quick: bool = False,
            seed: int = 0, shard=None, progress=None, out_dir=None) -> Work:
    """``detect``'s work from the CLI's options: the concept library for ``words`` (default the 50
    concept words) and the category words; ``prompt_name``: one of ``VARIANTS``; ``quick``: 4
    concepts, 4 layers, strengths 2 and 8, 2 bias questions and 2 words of each category
    (wherever the caller gave nothing)."""
    words = library.check_words(words if words is not None else CONCEPT_WORDS[:QUICK["concepts"]] if quick else None)
    if layers is None and quick:
        layers = evenly_spaced(model.n_layer, QUICK["layers"])
    strengths = (QUICK["strengths"] if quick else STRENGTHS) if strengths is None else strengths
    n_cat = QUICK["category"] if quick else None
    n_bias = (QUICK["bias"] if quick else len(BIAS_QUESTIONS)) if n_bias is None else n_bias
    needed = list(words) + [w for ws in CATEGORY_WORDS.values() for w in ws[:n_cat]]
    vectors = library.library(model, dict.fromkeys(needed), out=library_dir, progress=progress)
    return design(model, vectors, words, layers, strengths, n_bias=n_bias, n_category=n_cat, variant=prompt_name,
                  seed=seed, shard=shard, answers=answers)


EXPERIMENT = Experiment("detect", "Lindsey (2025), experiment 1: detecting injected thoughts", SCHEMA, SAME_ON_RESUME,
                        prepare, analysis.analyse, QUICK, ("cells.csv", ("condition", "layer", "strength"), "intro"))
