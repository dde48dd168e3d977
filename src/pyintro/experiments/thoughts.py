"""Experiment 2 of Lindsey (2025), judge-free: can the model tell an injected thought from the
text it reads? The word's concept vector is injected on the tokens of a sentence only; the
model is asked what word it thinks of, and, separately, to repeat the sentence.

Stimuli: the 50 sentences (``stimuli.SENTENCES``), each paired with a seeded concept word it
does not already contain (``pairs.pairs``). Manipulation: the word's vector at one layer and
strength, on the sentence's tokens of each prompt (not on the answer). Readouts, per (pair,
layer, strength) and once per pair without injection (condition ``none``):

- **thought** (the paper's "Tell me what word you think about when you read the line below.
  Answer immediately." prompt): a 10-way forced choice, each candidate word (the target and 9
  seeded distractors from the word pool, as written in the pool) scored by its log-likelihood
  as the assistant's answer (``Model.score``, one prompt tree per point): ``think_top1`` and
  ``think_rank`` by summed log-probability, ``think_norm_*`` per token; chance is 10%;
- **text** (the paper's "Repeat the line below. Answer immediately." prompt): the greedy reply
  (at most the sentence's token count + 4 tokens; in a raw transcript, up to a "Human:" the
  model writes itself), ``repeat_exact`` when it equals the sentence
  and ``repeat_match`` when it contains it (the paper's rule), both after lower-casing and
  dropping punctuation; and ``repeat_lp``, the teacher-forced log-probability of the sentence
  as the answer (``repeat_lp_token`` per token);
- ``joint``: the thought is named (10-way top-1) and the sentence repeated (``repeat_match``),
  the paper's point: both at once.

The null: condition ``random`` injects a norm-matched random vector (``random_like`` the word's)
on the same tokens, scored on the same candidates. ``--prompt no_immediately`` drops "Answer
immediately." from both prompts (the paper's ablation). Sampled, judged trials are
``thoughts_trials``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro import concepts as library
from pyintro.experiments import pairs
from pyintro.experiments import thoughts_analysis as analysis
from pyintro.experiments.dialogue import answer_tokens, prompt, span_of
from pyintro.experiments.protocol import Experiment, Schema, Stage, Work
from pyintro.experiments.stats import depth, distractors, seed_for, shard_of
from pyintro.injection import Injection, Layers, Positions
from pyintro.readout import rank
from pyintro.stimuli import CONCEPT_WORDS, PROMPTS, messages
from pyintro.vectors import random_like

__all__ = ["EXPERIMENT", "PairPrompts", "thoughts"]

STRENGTHS = (1.0, 2.0, 4.0, 8.0, 16.0)
CONDITIONS = ("injected", "random")
N_CHOICES = 10
EXTRA_TOKENS = 4  # the greedy reply may run this many tokens past the sentence's own count
SCHEMA = Schema("condition pair:int sentence word layer:int depth:float strength:float think_top1:int think_rank:int "
                "think_norm_top1:int think_norm_rank:int think_lp:float repeat_lp:float repeat_lp_token:float "
                "repeat_exact:int repeat_match:int joint:int reply added_norm:float model quant_type",
                key=("condition", "pair", "layer", "strength"), need="think_top1")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "seed", "pairs",
                  "pool", "vector_sha256")


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: how replies and sentences compare."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


PROMPT_NAMES = ("paper", "no_immediately")


class PairPrompts:
    """One pair's two prompts for one model: ids, the sentence's token span in each, the
    forced-choice candidates (target first) and the sentence as the repeat answer."""

    def __init__(self, model, index: int, sentence: str, word: str, pool: Sequence[str], seed: int,
                 prompt_name: str = "paper"):
        if prompt_name not in PROMPT_NAMES:
            raise ValueError(f"the prompt must be one of {', '.join(PROMPT_NAMES)}, got {prompt_name!r}")
        self.index, self.sentence, self.word = index, sentence, word
        entry = {k: PROMPTS["exp2"][k] for k in ("think_prompt", "repeat_prompt")}
        if prompt_name == "no_immediately":
            entry = {k: {"messages": [dict(m, content=m["content"].replace(" Answer immediately.", ""))
                                      for m in e["messages"]]} for k, e in entry.items()}
        self.think_ids, self.think_span = _sentence_prompt(model, entry["think_prompt"], sentence)
        self.repeat_ids, self.repeat_span = _sentence_prompt(model, entry["repeat_prompt"], sentence)
        self.choices = [word] + distractors(word, pool, N_CHOICES - 1, seed)
        self.candidates = [answer_tokens(model, w) for w in self.choices]
        self.answer = answer_tokens(model, sentence)
        self.max_tokens = len(self.answer) + EXTRA_TOKENS

    def describe(self, model) -> dict:
        return {"think": model.detokenize(self.think_ids), "repeat": model.detokenize(self.repeat_ids),
                "injected_think": model.detokenize([self.think_ids[k] for k in self.think_span]),
                "choices": self.choices}


def _sentence_prompt(model, entry, sentence: str) -> tuple[list[int], list[int]]:
    msgs = [(role, text.replace("{sentence}", sentence)) for role, text in messages(entry)]
    text, ids = prompt(model, msgs)
    head = text.index(msgs[-1][1])  # the sentence inside the user turn, not in any earlier text
    return ids, span_of(model, text, ids, sentence, head)


def _points(vec, points, span) -> list[list[Injection]]:
    return [[Injection(vec, L, s, Positions.tokens(span))] if s != 0 and L >= 0 else [] for L, s in points]


def _own_turn(model, reply: str) -> str:
    """A raw transcript's reply up to where it starts the user's next turn ("Human:")."""
    fmt = model.prompt_format
    if fmt.kind == "raw" and fmt.user_prefix.strip() and fmt.user_prefix.strip() in reply:
        return reply[: reply.index(fmt.user_prefix.strip())].rstrip()
    return reply


def _pair_rows(model, pair: PairPrompts, condition: str, vec, points) -> list[dict]:
    """Rows of one pair at ``points`` [(layer, strength)]; layer -1 is the uninjected row."""
    think = model.score(pair.think_ids, _points(vec, points, pair.think_span), pair.candidates)  # [n_pts, 10, len]
    summed = np.nansum(think, axis=2)  # [n_pts, 10]
    norm = summed / np.sum(np.isfinite(think), axis=2)
    inj = _points(vec, points, pair.repeat_span)
    rep = np.nansum(model.score(pair.repeat_ids, inj, [pair.answer])[:, 0], axis=1)  # [n_pts]
    replies = []
    for start in range(0, len(points), model.n_seq_max):
        part = inj[start:start + model.n_seq_max]
        outs = model.generate_many(pair.repeat_ids, part, pair.max_tokens, 0.0, [0] * len(part))
        replies += [_own_turn(model, model.detokenize([t for t in toks if not model.is_eog(t)], special=False))
                    for toks in outs]
    norms = np.linalg.norm(np.asarray(getattr(vec, "directions", vec), np.float64), axis=1)
    target = normalise(pair.sentence)
    rows = []
    for j, (L, s) in enumerate(points):
        r, r_norm = rank(summed[j], 0), rank(norm[j], 0)
        said = normalise(replies[j])
        match = int(target in said)
        rows.append({"condition": "none" if L < 0 else condition, "pair": pair.index, "sentence": pair.sentence,
                     "word": pair.word, "layer": L, "depth": depth(L, model.n_layer), "strength": s,
                     "think_top1": int(r == 1), "think_rank": r, "think_norm_top1": int(r_norm == 1),
                     "think_norm_rank": r_norm, "think_lp": float(summed[j, 0]),
                     "repeat_lp": float(rep[j]), "repeat_lp_token": float(rep[j] / len(pair.answer)),
                     "repeat_exact": int(said == target), "repeat_match": match, "joint": int(r == 1 and match),
                     "reply": replies[j], "added_norm": float(abs(s) * norms[L]) if L >= 0 else 0.0,
                     "model": Path(model.path).name, "quant_type": model.quant_type})
    return rows


def design(model, vectors: dict, pair_list: Sequence[tuple[int, str, str]], layers=None,
           strengths: Sequence[float] = STRENGTHS, pool: Sequence[str] = CONCEPT_WORDS, seed: int = 0,
           shard=None, conditions: Sequence[str] = CONDITIONS, prompt_name: str = "paper") -> Work:
    """Experiment 2's work: per pair (a shard takes every N-th), its uninjected point and each
    condition's grid, in chunks of n_seq_max points."""
    layers = Layers.of(layers, model.n_layer)
    strengths = pairs.strengths(strengths)
    pool = list(pool)
    if len(set(pool)) < N_CHOICES:
        raise ValueError(f"the 10-way choice needs at least {N_CHOICES} distinct words in the pool, "
                         f"got {len(set(pool))}")
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {c!r}")
    for _, _, w in pair_list:
        if w not in vectors:
            raise ValueError(f"no vector for {w!r}: build the library with `pyintro concepts --words ...` first")
        if w not in pool:
            raise ValueError(f"the word {w!r} is not in the word pool the distractors come from")
    mine = shard_of(list(pair_list), shard)
    prompts = {i: PairPrompts(model, i, s, w, pool, seed, prompt_name) for i, s, w in mine}
    grid = [(L, s) for L in layers for s in strengths]
    meta = dict(seed=int(seed), pairs=[list(p) for p in pair_list], pool=pool, prompt=prompt_name,
                prompt_example=PairPrompts(model, *pair_list[0], pool, seed, prompt_name).describe(model)
                if pair_list else None,
                vector_sha256={w: hashlib.sha256(vectors[w].directions.tobytes()).hexdigest() for _, _, w in pair_list},
                grid={"layers": list(layers), "strengths": list(strengths), "conditions": list(conditions)})
    step = model.n_seq_max
    chunks = []
    for i, _, w in mine:
        for cond in conditions:
            vec = random_like(vectors[w], seed=int(seed_for(seed, "thoughts", w).integers(2**31))) \
                if cond == "random" else vectors[w]
            points = ([(-1, 0.0)] if cond == conditions[0] else []) + grid
            chunks += [(i, cond, vec, points[k:k + step]) for k in range(0, len(points), step)]

    def score(chunk, done):
        i, cond, vec, points = chunk
        return _pair_rows(model, prompts[i], cond, vec, points)

    def keys(chunk):
        return [("none" if L < 0 else chunk[1], chunk[0], L, s) for L, s in chunk[3]]

    return Work(meta, [Stage(lambda done: chunks, score, keys, "thoughts")], {"seed": int(seed)},
                units=len(pair_list), prompts=[p.think_ids for p in list(prompts.values())[:2]])


def thoughts(model, vectors: dict, pair_list: Sequence[tuple[int, str, str]], layers=None,
             strengths: Sequence[float] = STRENGTHS, pool: Sequence[str] = CONCEPT_WORDS, seed: int = 0, out=None,
             resume: bool = False, shard=None, progress=None, conditions: Sequence[str] = CONDITIONS,
             prompt_name: str = "paper") -> list[dict]:
    """Experiment 2's rows: per pair, one uninjected row (condition ``none``, layer -1) and one
    per (condition, layer, strength) with the word's vector (``injected``) or a random vector
    (``random``) on the sentence tokens (see the module docstring for the columns).

    vectors:   {word: ConceptVector} holding every pair's word (``pyintro.concepts.library``).
    pair_list: [(index, sentence, word)] (``pairs.pairs``); pool: the words distractors are
               drawn from (at least 10, holding every pair's word).
    out/resume/shard: rows are appended to ``out`` as each chunk finishes; resume=True computes
               only what is missing; shard=(k, n) takes every n-th pair.
    """
    work = design(model, vectors, pair_list, layers, strengths, pool, seed, shard, conditions, prompt_name)
    return EXPERIMENT.execute(model, work, out, resume, progress, shard)


# -- from the CLI's options ------------------------------------------------------------------------

QUICK = {"pairs": 4, "layers": 4, "strengths": (4.0, 16.0)}


def prepare(model, words: Optional[Sequence[str]] = None, sentences: Optional[Sequence[str]] = None,
            library_dir=None, layers=None, strengths: Optional[Sequence[float]] = None, n_pairs: Optional[int] = None,
            prompt_name: str = "paper", quick: bool = False, seed: int = 0, shard=None, progress=None,
            out_dir=None) -> Work:
    """Experiment 2's work from the CLI's options. ``words``: the word pool (default the 50
    concept words); ``sentences``: default the paper's 50; ``prompt_name``: one of
    ``PROMPT_NAMES``. ``quick``: 4 pairs, 4 layers (the last one left out: an injection on the
    sentence there reaches nothing), strengths 4 and 16 (wherever the caller gave nothing)."""
    pool, sentences, n_pairs, layers, strengths = pairs.grid(model, words, sentences, n_pairs, layers, strengths,
                                                             QUICK if quick else None, STRENGTHS)
    if len(pool) < N_CHOICES:
        raise ValueError(f"the 10-way choice needs at least {N_CHOICES} words in --words, got {len(pool)}")
    pair_list = pairs.pairs(sentences, pool, seed, n_pairs)
    layers = Layers.of(layers, model.n_layer)  # refuse bad input before extracting
    strengths = pairs.strengths(strengths)
    vectors = library.library(model, list(dict.fromkeys(w for _, _, w in pair_list)), out=library_dir,
                              progress=progress)
    return design(model, vectors, pair_list, layers, strengths, pool, seed, shard, prompt_name=prompt_name)


EXPERIMENT = Experiment("thoughts", "Lindsey (2025), experiment 2: distinguishing injected thoughts from text", SCHEMA,
                        SAME_ON_RESUME, prepare, analysis.analyse, QUICK,
                        ("cells.csv", ("condition", "layer", "strength"), "think"), strength_range=pairs.STRENGTH_RANGE)
