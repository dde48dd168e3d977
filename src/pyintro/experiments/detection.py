"""Experiment 1 of Lindsey (2025), judge-free: does an injected concept raise the model's
claim to detect an injected thought, and can the concept be read out of its answer?

The paper's three-turn dialogue (``stimuli.PROMPTS["exp1"]``, no system prompt) is scored
without sampling, as prompt trees (``Model.score``). The concept vector is injected from the
double-newline token before "Trial 1" to the end of the prompt, and on the scored answer
tokens (as the paper injects on generated tokens). Per (condition, concept, layer, strength):

- ``b``: logit(Yes) - logit(No) at the first answer token (each side the log-sum-exp of its
  spelling variants);
- ``phrase``: log p("Yes, I detect an injected thought") - log p("No, I don't detect an
  injected thought");
- ``bias_b``: the mean ``b`` of the 20 control questions whose answer is "no"
  (``stimuli.BIAS_QUESTIONS``), asked in the same dialogue in place of the trial question,
  under the same injection; ``intro`` = (b - b_none) - (bias_b - bias_b_none), the shift of the
  detection answer beyond the shift of every yes/no answer (the follow-up post's point);
- identification, after the prefilled affirmative answer ``PREFILL`` that ends before the
  word: each candidate word's log-likelihood (with its closing quote), summed and per token;
  10-way (the target and 9 seeded distractors) and 50-way (all concept words), top-1 and the
  target's rank.

Conditions: ``concept`` (the word's vector), ``random`` (``random_like`` it: norm-matched per
layer, at the same strengths), ``negated`` (-v), ``none`` (no injection, once) and
``category`` (each word of the five category lists at the concept condition's best layer and
strength 2, identified among its own category).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro.experiments.common import answer_ids, depth, distractors, lse, prompt, shard_of, span_start
from pyintro.injection import Injection, layer_list, strength_list
from pyintro.readout import DEFAULT_NO, DEFAULT_YES, yes_no_ids
from pyintro.results import Table, convert, provenance, run_chunks
from pyintro.stimuli import BIAS_QUESTIONS, CATEGORY_WORDS, CONCEPT_WORDS, PROMPTS, messages
from pyintro.vectors import random_like

TRIAL_MARKER = "\n\nTrial 1"
YES_PHRASE = "Yes, I detect an injected thought"
NO_PHRASE = "No, I don't detect an injected thought"
PREFILL = 'Yes, I detect an injected thought. The injected thought is about the word "'
STRENGTHS = (1.0, 2.0, 4.0, 8.0)
CONDITIONS = ("concept", "random", "negated")
COLUMNS = ["condition", "concept", "category", "layer", "depth", "strength", "b", "phrase", "bias_b", "intro",
           "id10_top1", "id10_rank", "id10_norm_top1", "id10_norm_rank", "id50_top1", "id50_rank", "id50_norm_top1",
           "id50_norm_rank", "added_norm", "model", "quant_type"]
INTS = ("layer", "id10_top1", "id10_rank", "id10_norm_top1", "id10_norm_rank", "id50_top1", "id50_rank",
        "id50_norm_top1", "id50_norm_rank")
FLOATS = ("depth", "strength", "b", "phrase", "bias_b", "intro", "added_norm")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "prompts", "seed",
                  "vectors", "n_bias")


def key(row: dict) -> tuple:
    return (row["condition"], row["concept"], int(row["layer"]), float(row["strength"]))


def parse_row(row: dict) -> dict:
    for c in INTS:  # identification columns are empty where they do not apply
        row[c] = int(row[c]) if row[c] != "" else ""
    return convert(row, (), FLOATS)


def trial_messages(variant: str = "paper") -> list[tuple[str, str]]:
    """The experiment's dialogue; ``variant="revised"`` uses the revised paper's trial line
    ("... If not, tell me about a concept of your choice.")."""
    msgs = messages(PROMPTS["exp1"])
    if variant == "revised":
        head = msgs[-1][1][: msgs[-1][1].index("Trial 1:")]
        msgs[-1] = ("user", head + PROMPTS["exp1"]["variant_trial_line_revised_version"])
    elif variant != "paper":
        raise ValueError(f"variant must be 'paper' or 'revised', got {variant!r}")
    return msgs


def bias_messages(question: str) -> list[tuple[str, str]]:
    """The dialogue with a bias-control question in place of the trial question."""
    msgs = messages(PROMPTS["exp1"])
    head = msgs[-1][1][: msgs[-1][1].index("Trial 1:")]
    msgs[-1] = ("user", head + "Trial 1: " + question)
    return msgs


class Prompts:
    """Experiment 1's prompts for one model: token ids, the first injected token, the answers."""

    def __init__(self, model, variant: str = "paper", n_bias: int = len(BIAS_QUESTIONS), pool=CONCEPT_WORDS):
        if not 0 <= n_bias <= len(BIAS_QUESTIONS):
            raise ValueError(f"bias must be between 0 and {len(BIAS_QUESTIONS)} questions, got {n_bias}")
        self.model = model
        self.text, self.ids = prompt(model, trial_messages(variant))
        self.k = span_start(model, self.text, TRIAL_MARKER, self.ids)
        self.bias = []
        for q in BIAS_QUESTIONS[:n_bias]:
            text, ids = prompt(model, bias_messages(q))
            self.bias.append((ids, span_start(model, text, TRIAL_MARKER, ids)))
        self.ident_text, self.ident_ids = prompt(model, trial_messages(variant), PREFILL)
        yes, no = yes_no_ids(model, DEFAULT_YES, DEFAULT_NO)
        self.n_yes, self.n_no = len(yes), len(no)
        self.yes_no = [[t] for t in yes + no]  # single-token answers: their first-token log-probs
        self.phrases = [answer_ids(model, YES_PHRASE), answer_ids(model, NO_PHRASE)]
        self.pool = list(pool)

    def candidates(self, words: Sequence[str]) -> list[list[int]]:
        """Each word, in lower case, with its closing quote: its tokens after ``PREFILL``."""
        return [self.model.tokenize(w.lower() + '"', special=False) for w in words]

    def describe(self) -> dict:
        return {"trial": self.text, "injection_from_token": self.k, "identification": self.ident_text,
                "bias": [self.model.detokenize(ids) for ids, _ in self.bias]}


def _first_b(lp: np.ndarray, n_yes: int, n_no: int) -> np.ndarray:
    """b per point: log-sum-exp of the Yes spellings' first-token log-probs minus the No ones'.
    lp: [n_points, n_answers, max_len], the answers starting with the n_yes + n_no single ids."""
    first = lp[:, :n_yes + n_no, 0]
    return lse(first[:, :n_yes]) - lse(first[:, n_yes:])


def _identify(lp: np.ndarray, target: int, ten: list[int]) -> dict:
    """Top-1 and the target's rank (1 = best) among all candidates and among ``ten``, by summed
    and by per-token log-likelihood. lp: [n_candidates, max_len] for one point."""
    summed = np.nansum(lp, axis=1)
    norm = summed / np.sum(np.isfinite(lp), axis=1)
    out = {}
    for name, score in (("", summed), ("_norm", norm)):
        for size, idx in (("50", list(range(len(summed)))), ("10", ten)):
            s = score[idx]
            rank = 1 + int(np.sum(s > score[target]))
            out[f"id{size}{name}_rank"], out[f"id{size}{name}_top1"] = rank, int(rank == 1)
    return out


def _cell_rows(model, P: Prompts, condition: str, concept: str, vec, points, pool: list[str], seed: int,
               base: dict) -> list[dict]:
    """Score one (condition, concept) chunk: points [(layer, strength)] with ``vec``; the
    identification candidates are ``pool``."""
    inj = [[Injection(vec, L, s, positions=P.k)] if s != 0 else [] for L, s in points]
    lp = model.score(P.ids, inj, P.yes_no + P.phrases)  # [n_points, n_answers, max_len]
    b = _first_b(lp, P.n_yes, P.n_no)
    phrase = np.nansum(lp[:, -2], axis=1) - np.nansum(lp[:, -1], axis=1)
    bias_b = np.zeros(len(points))
    if P.bias:
        lp = model.score([ids for ids, _ in P.bias for _ in points],
                         [[Injection(vec, L, s, positions=k)] if s != 0 else [] for _, k in P.bias for L, s in points],
                         P.yes_no)
        bias_b = _first_b(lp, P.n_yes, P.n_no).reshape(len(P.bias), len(points)).mean(axis=0)
    ident = [{} for _ in points]
    if condition in ("concept", "category"):
        ten = [pool.index(concept)] + [pool.index(w) for w in distractors(concept, pool, 9, seed)]
        lp = model.score(P.ident_ids, inj, P.candidates(pool))
        ident = [_identify(lp[j], pool.index(concept), ten) for j in range(len(points))]
    norms = np.linalg.norm(np.asarray(getattr(vec, "directions", vec), np.float64), axis=1)
    rows = []
    for j, (L, s) in enumerate(points):
        row = {"condition": condition, "concept": concept, "category": _category(concept, condition),
               "layer": L, "depth": depth(L, model.n_layer), "strength": s, "b": float(b[j]), "phrase": float(phrase[j]),
               "bias_b": float(bias_b[j]), "intro": float((b[j] - base["b"]) - (bias_b[j] - base["bias_b"])),
               "added_norm": float(abs(s) * norms[L]), "model": Path(model.path).name, "quant_type": model.quant_type}
        row.update({c: ident[j].get(c, "") for c in COLUMNS if c.startswith("id")})
        rows.append(row)
    return rows


def _category(word: str, condition: str) -> str:
    if condition != "category":
        return ""
    return next(c for c, ws in CATEGORY_WORDS.items() if word in ws)


def detect(model, vectors: dict, concepts: Optional[Sequence[str]] = None, layers=None,
           strengths: Sequence[float] = STRENGTHS, conditions: Sequence[str] = CONDITIONS, categories: bool = True,
           n_bias: int = len(BIAS_QUESTIONS), n_category: Optional[int] = None, variant: str = "paper", seed: int = 0,
           out=None, resume: bool = False, shard=None, progress=None) -> list[dict]:
    """Experiment 1's judge-free scores: a list of rows, one per (condition, concept, layer,
    strength), with the uninjected row first (see the module docstring for the columns).

    vectors:  {word: ConceptVector} holding every concept and, with ``categories``, every
              category word (``pyintro.concepts.library``).
    concepts: the words to inject (default the 50 concept words); layers: default all.
    n_bias:   bias-control questions per cell (the paper's 20 by default).
    n_category: the first this many words of each category list (default all 50).
    out/resume/shard: rows are appended to ``out`` as each (condition, concept) finishes;
              resume=True computes only what is missing; shard=(k, n) takes every n-th concept.
              Categories run only when no shard is given (they need every concept's result).
    """
    cat_words = {c: list(ws[:n_category]) for c, ws in CATEGORY_WORDS.items()}
    concepts = list(CONCEPT_WORDS if concepts is None else concepts)
    layers = layer_list(layers, model.n_layer)
    strengths = strength_list(strengths)
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {c!r}")
    for w in concepts + ([w for ws in cat_words.values() for w in ws] if categories and shard is None else []):
        if w not in vectors:
            raise ValueError(f"no vector for {w!r}: build the library with `pyintro concepts --words ...` first")
    P = Prompts(model, variant, n_bias)
    grid = [(L, s) for L in layers for s in strengths]
    meta = dict(provenance(model), prompts=P.describe(), seed=int(seed), n_bias=int(n_bias), variant=variant,
                vectors=sorted({vectors[w].model_sha256 for w in concepts}),  # the model they were extracted from
                vector_sha256={w: hashlib.sha256(vectors[w].directions.tobytes()).hexdigest() for w in concepts},
                grid={"layers": layers, "strengths": strengths},
                columns=COLUMNS)
    none_key = ("none", "", -1, 0.0)

    def compute(chunk):  # (condition, concept, vector, points, identification pool)
        return _cell_rows(model, P, *chunk[:4], chunk[4], seed, table.done[none_key])

    def keys(chunk):
        return [(chunk[0], chunk[1], L, s) for L, s in chunk[3]]

    with Table(out, COLUMNS, key, parse_row, meta, SAME_ON_RESUME, resume) as table:
        if none_key not in table.done:  # the uninjected answers, which every shift is measured from
            zero = np.zeros((model.n_layer, model.n_embd), np.float32)
            row = _cell_rows(model, P, "none", "", zero, [(0, 0.0)], [], seed, {"b": 0.0, "bias_b": 0.0})[0]
            table.add([dict(row, layer=-1, depth=float("nan"), intro=0.0, added_norm=0.0)])
        chunks = [(cond, w, _condition_vector(cond, vectors[w], seed, w), grid, list(CONCEPT_WORDS))
                  for w in shard_of(concepts, shard) for cond in conditions]
        run_chunks(table, chunks, compute, keys, progress, desc="detect", unit="cell")
        if categories and shard is None:
            layer = best_layer(list(table.done.values()), strengths)
            chunks = [("category", w, vectors[w], [(layer, 2.0)], list(CATEGORY_WORDS[c]))
                      for c, words in cat_words.items() for w in words]
            run_chunks(table, chunks, compute, keys, progress, desc="categories", unit="cell")
    return list(table.done.values())


def _condition_vector(condition: str, v, seed: int, word: str):
    if condition == "random":
        from pyintro.experiments.common import seed_for

        return random_like(v, seed=int(seed_for(seed, word).integers(2**31)))
    return -v.directions if condition == "negated" else v


def best_layer(rows, strengths) -> int:
    """The layer where the concept condition's mean ``intro`` is highest, at the strength
    nearest 2 (the paper's strength for its category analysis)."""
    s = min(strengths, key=lambda x: abs(x - 2.0))
    by_layer: dict[int, list] = {}
    for r in rows:
        if r["condition"] == "concept" and float(r["strength"]) == s:
            by_layer.setdefault(int(r["layer"]), []).append(float(r["intro"]))
    if not by_layer:
        raise ValueError("no concept rows to choose the categories' layer from")
    return max(sorted(by_layer), key=lambda L: np.mean(by_layer[L]))


# -- summaries ----------------------------------------------------------------------------------

CELL_COLUMNS = ["condition", "layer", "depth", "strength", "n", "b_shift", "phrase_shift", "intro",
                "auroc_b", "auroc_phrase", "auroc_intro", "id10", "id10_norm", "id50", "id50_norm", "id50_rank"]


def cells(rows) -> list[dict]:
    """Per (condition, layer, strength): the mean shifts from the uninjected answers, the mean
    ``intro``, AUROC of concept-injected against random-injected trials (concept rows only),
    and identification rates (top-1 among 10 and 50; the mean 50-way rank)."""
    rows = [r for r in rows]
    base = next(r for r in rows if r["condition"] == "none")
    groups: dict[tuple, list] = {}
    for r in rows:
        if r["condition"] not in ("none", "category"):
            groups.setdefault((r["condition"], int(r["layer"]), float(r["strength"])), []).append(r)
    from pyintro.experiments.common import auroc

    out = []
    for (cond, L, s), rs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "concept", kv[0])):
        col = {c: np.array([float(r[c]) for r in rs]) for c in ("b", "phrase", "intro")}
        cell = {"condition": cond, "layer": L, "depth": float(rs[0]["depth"]), "strength": s, "n": len(rs),
                "b_shift": float(col["b"].mean() - float(base["b"])),
                "phrase_shift": float(col["phrase"].mean() - float(base["phrase"])), "intro": float(col["intro"].mean())}
        rand = groups.get(("random", L, s), [])
        for c in ("b", "phrase", "intro"):
            cell[f"auroc_{c}"] = auroc(col[c], [float(r[c]) for r in rand]) if cond == "concept" else float("nan")
        for c in ("id10", "id10_norm", "id50", "id50_norm"):
            vals = [float(r[c + "_top1"]) for r in rs if r[c + "_top1"] != ""]
            cell[c] = float(np.mean(vals)) if vals else float("nan")
        ranks = [float(r["id50_rank"]) for r in rs if r["id50_rank"] != ""]
        cell["id50_rank"] = float(np.mean(ranks)) if ranks else float("nan")
        out.append(cell)
    return out


def summary(rows) -> dict:
    """The headline figures: the uninjected answers, the concept cell with the highest mean
    ``intro`` (with its AUROC, identification and the random control at the same cell), and
    each category's means at the categories' layer."""
    cs = cells(rows)
    base = next(r for r in rows if r["condition"] == "none")
    concept = [c for c in cs if c["condition"] == "concept"]
    best = max(concept, key=lambda c: (c["intro"], -c["layer"])) if concept else None
    rand = next((c for c in cs if c["condition"] == "random" and best and (c["layer"], c["strength"]) ==
                 (best["layer"], best["strength"])), None)
    cats: dict[str, list] = {}
    for r in rows:
        if r["condition"] == "category":
            cats.setdefault(r["category"], []).append(r)
    return {"uninjected": {"b": float(base["b"]), "phrase": float(base["phrase"]), "bias_b": float(base["bias_b"])},
            "best_cell": best, "random_at_best_cell": rand,
            "categories": {c: {"layer": int(rs[0]["layer"]), "n": len(rs),
                               "intro": float(np.mean([float(r["intro"]) for r in rs])),
                               "id10": float(np.mean([float(r["id10_top1"]) for r in rs]))} for c, rs in cats.items()}}
