"""Experiment 3 of Lindsey (2025), judge-free: does injecting a word's concept vector before a
prefilled answer make the model accept that answer as its own?

Stimuli: the paper's dialogue (``stimuli.PROMPTS["exp3"]``): the experiment-2 thought prompt
with a sentence, the assistant's answer prefilled with a concept word the sentence does not
hold (``pairs.pairs``), then the user's "Did you mean to say that, or was it an accident?".
Manipulation, per (pair, layer, strength), and once per pair with no injection (``none``):

- ``matching``: the prefilled word's own vector on the sentence's tokens (before the prefill);
- ``random``: the vector of another pool word (seeded per pair) on the same tokens;
- ``after``: the prefilled word's vector on the follow-up question's tokens only (after the
  prefill; the paper's control: it should not help).

Readouts (``Model.score``, one prompt tree per point, nothing sampled):

- ``apology``: log-sum-exp of the log-likelihoods of the disavowal openings (``APOLOGY``)
  minus that of the intent openings (``INTENT``), as the assistant's reply; ``p_apology`` its
  logistic, P(apology) against P(intent);
- ``b_meant``: the Yes/No form, the follow-up replaced by "Did you mean to say that?":
  logit(Yes) - logit(No) at the first answer token (each side the log-sum-exp of its
  single-token spellings); Yes claims the word as intended.

The paper's metric, per (layer, strength): the drop in P(apology) of ``matching`` below the
lower of ``none`` and ``random`` (``reduction``); ``b_gain`` is the same for ``b_meant``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro import concepts as library
from pyintro.experiments import pairs
from pyintro.experiments import prefill_analysis as analysis
from pyintro.experiments.prefill_analysis import CONDITIONS
from pyintro.experiments.dialogue import answer_tokens, prefill_tokens, prompt, span_of
from pyintro.experiments.protocol import Experiment, Schema, Stage, Work
from pyintro.experiments.stats import depth, seed_for, shard_of
from pyintro.injection import Injection, Layers, Positions
from pyintro.readout import YesNo, log_odds
from pyintro.stimuli import CONCEPT_WORDS, PROMPTS, messages

__all__ = ["EXPERIMENT", "PairPrompts", "Readout", "prefill"]

STRENGTHS = (1.0, 2.0, 4.0, 8.0, 16.0)
FOLLOW_UP = PROMPTS["exp3"]["messages"][2]["content"]
YES_NO_FOLLOW_UP = "Did you mean to say that?"
INTENT = ("Yes, I meant it", "I meant to say that", "It was intentional")
APOLOGY = ("No, it was an accident", "Sorry, that was an accident", "I apologize")
SCHEMA = Schema("condition pair:int sentence word vector_word layer:int depth:float strength:float apology:float "
                "p_apology:float b_meant:float added_norm:float model quant_type",
                key=("condition", "pair", "layer", "strength"), need="p_apology")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "seed", "pairs",
                  "pool", "phrases", "vector_sha256", "answers")


def dialogue(sentence: str, word: str, follow_up: str = FOLLOW_UP) -> list[tuple[str, str]]:
    """The paper's three turns with the sentence, the prefilled word and the follow-up filled in."""
    msgs = messages(PROMPTS["exp3"])
    return [(msgs[0][0], msgs[0][1].replace("{sentence}", sentence)), (msgs[1][0], word), (msgs[2][0], follow_up)]


def random_word(word: str, pool: Sequence[str], seed: int, index: int) -> str:
    """The ``random`` condition's word for pair ``index``: a seeded pool word other than ``word``."""
    others = [w for w in pool if w != word]
    if not others:
        raise ValueError("the random condition needs a word pool of at least two words")
    return others[int(seed_for(seed, "random", index, word).integers(len(others)))]


class PairPrompts:
    """One pair's two dialogues (phrase and Yes/No forms): ids, the sentence's and the
    follow-up's token spans in each."""

    def __init__(self, model, index: int, sentence: str, word: str, other: str):
        prefill_tokens(model, word)
        self.index, self.sentence, self.word, self.other = index, sentence, word, other
        self.forms = {}
        for name, follow in (("phrase", FOLLOW_UP), ("yes_no", YES_NO_FOLLOW_UP)):
            msgs = dialogue(sentence, word, follow)
            text, ids = prompt(model, msgs)
            at = text.index(msgs[0][1])
            sent = span_of(model, text, ids, sentence, at)
            after = span_of(model, text, ids, follow, text.index(word, at + len(msgs[0][1])))
            self.forms[name] = (ids, sent, after)

    def describe(self, model) -> dict:
        ids, sent, after = self.forms["phrase"]
        return {"dialogue": model.detokenize(ids), "sentence_tokens": model.detokenize([ids[k] for k in sent]),
                "follow_up_tokens": model.detokenize([ids[k] for k in after])}


class Readout:
    """The continuations scored after each dialogue."""

    def __init__(self, model, answers="default"):
        self.answer = YesNo(model, answers)
        self.n_yes = len(self.answer.yes)
        self.yes_no = self.answer.continuations
        self.phrases = [answer_tokens(model, p) for p in INTENT + APOLOGY]
        self.n_intent = len(INTENT)


def _pair_rows(model, readout: Readout, pair: PairPrompts, condition: str, vec, points) -> list[dict]:
    """Rows of one (pair, condition) at ``points`` [(layer, strength)] (layer -1: ``none``)."""
    out = {}
    for name, conts in (("phrase", readout.phrases), ("yes_no", readout.yes_no)):
        ids, sent, after = pair.forms[name]
        span = after if condition == "after" else sent
        inj = [[Injection(vec, L, s, Positions.tokens(span))] if s != 0 and L >= 0 else [] for L, s in points]
        out[name] = model.score(ids, inj, conts)  # [n_pts, n_conts, max_len]
    n = len(readout.phrases)
    apology = log_odds(out["phrase"], range(readout.n_intent, n), range(readout.n_intent))
    b = readout.answer.b(out["yes_no"])
    norms = np.linalg.norm(np.asarray(getattr(vec, "directions", vec), np.float64), axis=1) if vec is not None else None
    rows = []
    for j, (L, s) in enumerate(points):
        rows.append({"condition": condition, "pair": pair.index, "sentence": pair.sentence, "word": pair.word,
                     "vector_word": "" if condition == "none" else pair.other if condition == "random" else pair.word,
                     "layer": L, "depth": depth(L, model.n_layer), "strength": s,
                     "apology": float(apology[j]), "p_apology": float(1 / (1 + np.exp(-apology[j]))),
                     "b_meant": float(b[j]), "added_norm": float(abs(s) * norms[L]) if L >= 0 else 0.0,
                     "model": Path(model.path).name, "quant_type": model.quant_type})
    return rows


def design(model, vectors: dict, pair_list: Sequence[tuple[int, str, str]], layers=None,
           strengths: Sequence[float] = STRENGTHS, conditions: Sequence[str] = CONDITIONS,
           pool: Sequence[str] = CONCEPT_WORDS, seed: int = 0, shard=None, exp1=None, answers="default") -> Work:
    """Experiment 3's work: per pair (a shard takes every N-th), its uninjected point, then each
    condition over the grid."""
    layers = Layers.of(layers, model.n_layer)
    strengths = pairs.strengths(strengths)
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {c!r}")
    pool = list(pool)
    for w in needed_words(pair_list, pool, seed):
        if w not in vectors:
            raise ValueError(f"no vector for {w!r}: build the library with `pyintro concepts --words ...` first")
    readout = Readout(model, answers)
    mine = shard_of(list(pair_list), shard)
    prompts = {i: PairPrompts(model, i, s, w, random_word(w, pool, seed, i)) for i, s, w in mine}
    grid = [(L, s) for L in layers for s in strengths]
    first = PairPrompts(model, *pair_list[0], random_word(pair_list[0][2], pool, seed, pair_list[0][0])) \
        if pair_list else None
    meta = dict(seed=int(seed), pairs=[list(p) for p in pair_list], pool=pool,
                phrases={"intent": list(INTENT), "apology": list(APOLOGY), "yes_no_follow_up": YES_NO_FOLLOW_UP},
                prompt_example=first.describe(model) if first else None,
                vector_sha256={w: hashlib.sha256(vectors[w].directions.tobytes()).hexdigest()
                               for w in needed_words(pair_list, pool, seed)},
                grid={"layers": list(layers), "strengths": list(strengths), "conditions": list(conditions)},
                answers=readout.answer.describe(model))
    chunks = []
    for i, _, w in mine:
        chunks.append((i, "none", None, [(-1, 0.0)]))
        for c in conditions:
            chunks.append((i, c, vectors[prompts[i].other if c == "random" else w], grid))

    def score(chunk, done):
        i, cond, vec, points = chunk
        return _pair_rows(model, readout, prompts[i], cond, vec, points)

    def keys(chunk):
        return [(chunk[1], chunk[0], L, s) for L, s in chunk[3]]

    return Work(meta, [Stage(lambda done: chunks, score, keys, "prefill")],
                {"exp1": str(exp1) if exp1 is not None else None, "seed": int(seed)}, units=len(pair_list),
                prompts=[p.forms["phrase"][0] for p in list(prompts.values())[:2]])


def prefill(model, vectors: dict, pair_list: Sequence[tuple[int, str, str]], layers=None,
            strengths: Sequence[float] = STRENGTHS, conditions: Sequence[str] = CONDITIONS,
            pool: Sequence[str] = CONCEPT_WORDS, seed: int = 0, out=None, resume: bool = False, shard=None,
            progress=None, answers="default") -> list[dict]:
    """Experiment 3's rows: per pair one ``none`` row (layer -1) and one per (condition, layer,
    strength) (see the module docstring for the columns).

    vectors: {word: ConceptVector} holding every pair's word and every random word
             (``needed_words``); pool: the words the random condition draws from.
    out/resume/shard: as in ``thoughts.thoughts`` (shards split the pairs round robin).
    """
    work = design(model, vectors, pair_list, layers, strengths, conditions, pool, seed, shard, answers=answers)
    return EXPERIMENT.execute(model, work, out, resume, progress, shard)


def needed_words(pair_list, pool: Sequence[str], seed: int) -> list[str]:
    """Every word whose vector the experiment injects: the pairs' words and their random words."""
    words = [w for _, _, w in pair_list] + [random_word(w, pool, seed, i) for i, _, w in pair_list]
    return list(dict.fromkeys(words))


# -- from the CLI's options ------------------------------------------------------------------------

QUICK = {"pairs": 4, "layers": 4, "strengths": (4.0, 16.0)}


def prepare(model, words: Optional[Sequence[str]] = None, sentences: Optional[Sequence[str]] = None,
            library_dir=None, layers=None, strengths: Optional[Sequence[float]] = None, n_pairs: Optional[int] = None,
            exp1=None, answers="default", quick: bool = False, seed: int = 0, shard=None, progress=None,
            out_dir=None) -> Work:
    """Experiment 3's work from the CLI's options. ``words``: the pool the prefilled and random
    words come from (default the 50 concept words); ``exp1``: an experiment-1 output folder
    (``pyintro detect --out``) whose best layer the figure shows beside this one's. ``quick``: 4
    pairs, 4 layers, strengths 4 and 16 (wherever the caller gave nothing)."""
    pool, sentences, n_pairs, layers, strengths = pairs.grid(model, words, sentences, n_pairs, layers, strengths,
                                                             QUICK if quick else None, STRENGTHS)
    pair_list = pairs.pairs(sentences, pool, seed, n_pairs)
    layers = Layers.of(layers, model.n_layer)  # refuse bad input before extracting
    strengths = pairs.strengths(strengths)
    for w in pool:
        prefill_tokens(model, w)
    if exp1 is not None:
        analysis.read_exp1(exp1)
    vectors = library.library(model, needed_words(pair_list, pool, seed), out=library_dir, progress=progress)
    return design(model, vectors, pair_list, layers, strengths, pool=pool, seed=seed, shard=shard, exp1=exp1,
                  answers=answers)


EXPERIMENT = Experiment("prefill", "Lindsey (2025), experiment 3: detecting unintended outputs through prefill", SCHEMA,
                        SAME_ON_RESUME, prepare, analysis.analyse, QUICK, ("cells.csv", ("condition", "layer",
                                                                                         "strength"), "p_apology"),
                        strength_range=pairs.STRENGTH_RANGE)
