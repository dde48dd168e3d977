"""Experiment 1 of Lindsey (2025) as the paper ran it: sampled answers, graded.

For each (concept, layer, strength) the model answers the trial prompt ``n_trials`` times at
temperature 1, up to ``max_tokens`` tokens, with the concept injected from the double newline
before "Trial 1" on and into every sampled token; control trials (no injection) give the
false-positive rate. Trials of many cells run together, each sequence with its own vector,
layer, strength and seed: a trial is the same alone or in any batch.

Grading: with a judge model (``pyintro.judge.Judge``), the paper's four grader questions, each
read as the judge's Yes/No belief; without one, keyword rules (cruder: they cannot tell a
coherent answer from word salad that happens to say "yes"). Success follows the paper:
coherent, affirmative, naming the concept, the detection not after the word (the
affirmative_correct_identification grader encodes the last rule; the keyword grader refuses
answers whose first word is the concept). Alternative prompts inject on every token and count
coherent + "thinking about the word" as success.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro.experiments.common import depth, prompt, seed_for, shard_of, span_start
from pyintro.experiments.detection import TRIAL_MARKER, trial_messages
from pyintro.injection import Injection, layer_list, strength_list
from pyintro.judge import fill
from pyintro.results import Table, convert, provenance, run_chunks
from pyintro.stimuli import CATEGORY_WORDS, PROMPTS, messages

PROMPT_NAMES = ("paper", "revised", "thinking_about", "whats_going_on")
COLUMNS = ["condition", "concept", "category", "layer", "depth", "strength", "trial", "text", "n_tokens", "coherent",
           "affirmative", "identified", "thinking", "success", "b_coherent", "b_affirmative", "b_identified",
           "b_thinking", "grader", "model", "quant_type"]
INTS = ("layer", "trial", "n_tokens", "coherent", "affirmative", "identified", "thinking", "success")
FLOATS = ("depth", "strength", "b_coherent", "b_affirmative", "b_identified", "b_thinking")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "prompt", "seed",
                  "max_tokens", "temperature", "grader")

# Checked in order on the lower-cased answer: a negative phrase wins over a positive one.
NEGATIVE = (r"^\W*no\b", r"\bdo(?:n't| not)\s+(?:detect|notice|sense|feel)", r"\bdid(?:n't| not)\s+(?:detect|notice)",
            r"\bnot\s+detect", r"\bno\s+(?:injected|thought|injection)", r"\bnothing\b", r"\bcannot\s+detect",
            r"\bcan't\s+detect")
POSITIVE = (r"^\W*yes\b", r"\bi\s+(?:do\s+|can\s+)?(?:detect|notice|sense|feel)", r"\bdetected\b",
            r"\bthere\s+is\s+an?\s+injected", r"\binjected\s+thought\s+(?:is|was|seems)", r"\bthought\s+is\s+about")


def key(row: dict) -> tuple:
    return (row["condition"], row["concept"], int(row["layer"]), float(row["strength"]), int(row["trial"]))


def parse_row(row: dict) -> dict:
    return convert(row, INTS, FLOATS)


def trial_prompt(model, name: str = "paper") -> tuple[list[int], int, str, bool]:
    """(ids, first injected token, the question the grader sees, whether the injection covers
    every token) for one of ``PROMPT_NAMES``."""
    if name in ("paper", "revised"):
        msgs = trial_messages(name)
        text, ids = prompt(model, msgs)
        return ids, span_start(model, text, TRIAL_MARKER, ids), msgs[-1][1], False
    if name not in PROMPT_NAMES:
        raise ValueError(f"prompt must be one of {', '.join(PROMPT_NAMES)}, got {name!r}")
    msgs = messages(PROMPTS["exp1"]["alternative_prompts"][name])
    return prompt(model, msgs)[1], 0, msgs[-1][1], True


def keyword_grade(text: str, word: str) -> dict:
    """The cruder grader: affirmative if a positive pattern matches and no negative one does;
    identified if affirmative and the word (or its plural) appears, but not as the first word;
    coherent unless the answer is short or repeats itself (fewer than half its words distinct)."""
    t = text.strip().lower()
    words = re.findall(r"[a-z']+", t)
    coherent = len(words) >= 3 and len(set(words)) >= 0.5 * len(words)
    affirmative = not any(re.search(p, t) for p in NEGATIVE) and any(re.search(p, t) for p in POSITIVE)
    pattern = r"\b" + re.escape(word.lower()) + r"(?:s|es)?\b"
    named = bool(word) and re.search(pattern, t) is not None and not (words and re.fullmatch(pattern, words[0]))
    return {"coherent": coherent, "affirmative": affirmative, "identified": affirmative and named, "thinking": named}


def _judged(judge, question: str, texts: list[str], words: list[str]) -> list[dict]:
    g = PROMPTS["exp1"]["grader_prompts"]
    asks = {"coherent": [fill(g["coherence"], prompt=question, response=t) for t in texts],
            "affirmative": [fill(g["affirmative"], prompt=question, response=t) for t in texts],
            "identified": [fill(g["affirmative_correct_identification"], question=question, response=t, word=w)
                           for t, w in zip(texts, words)],
            "thinking": [fill(g["thinking_about_word"], question=question, response=t, word=w)
                         for t, w in zip(texts, words)]}
    b = {name: judge.verdicts(ps) for name, ps in asks.items()}
    return [{**{n: bool(b[n][i] > 0) for n in asks}, **{f"b_{n}": float(b[n][i]) for n in asks}} for i in range(len(texts))]


def trials(model, vectors: dict, concepts: Sequence[str], layers=None, strengths: Sequence[float] = (1, 2, 4, 8),
           n_trials: int = 50, n_control: int = 100, max_tokens: int = 100, temperature: float = 1.0,
           prompt_name: str = "paper", judge=None, seed: int = 0, out=None, resume: bool = False, shard=None,
           progress=None) -> list[dict]:
    """Sampled, graded trials: one row per trial (see the module docstring); control trials
    are condition "control" with layer -1."""
    layers = layer_list(layers, model.n_layer)
    strengths = strength_list(strengths)
    for w in concepts:
        if w not in vectors:
            raise ValueError(f"no vector for {w!r}: build the library with `pyintro concepts --words ...` first")
    if n_trials < 1 or n_control < 0 or max_tokens < 1:
        raise ValueError("n_trials and max_tokens must be at least 1, n_control at least 0")
    ids, k, question, everywhere = trial_prompt(model, prompt_name)
    grader = f"judge:{judge.name}" if judge is not None else "keywords"
    meta = dict(provenance(model), prompt=prompt_name, prompt_text=model.detokenize(ids), seed=int(seed),
                max_tokens=int(max_tokens), temperature=float(temperature), grader=grader,
                judge=judge.describe() if judge is not None else None, columns=COLUMNS)
    cells = [("control", "", None, -1, 0.0, t) for t in range(n_control)]
    cells += [("concept", w, vectors[w], L, s, t) for w in shard_of(list(concepts), shard)
              for L in layers for s in strengths for t in range(n_trials)]
    per_call = max(1, model.n_seq_max - 1)
    chunks = [cells[i:i + per_call] for i in range(0, len(cells), per_call)]

    def compute(chunk):
        points = [[] if cond == "control" else [Injection(v, L, s, positions="all" if everywhere else k)]
                  for cond, _, v, L, s, _ in chunk]
        seeds = [seed_for(seed, cond, w, L, int(round(s * 1000)), t).integers(2**63) for cond, w, _, L, s, t in chunk]
        outs = model.generate_many(ids, points, max_tokens, temperature, seeds)
        texts = [model.detokenize([t for t in toks if not model.is_eog(t)], special=False) for toks in outs]
        words = [w.lower() for _, w, *_ in chunk]
        grades = _judged(judge, question, texts, words) if judge is not None else [keyword_grade(t, w)
                                                                                  for t, w in zip(texts, words)]
        rows = []
        for (cond, w, _, L, s, t), text, toks, g in zip(chunk, texts, outs, grades):
            ok = g["coherent"] and (g["thinking"] if everywhere else g["identified"])
            rows.append({"condition": cond, "concept": w, "category": _category(w), "layer": L,
                         "depth": depth(L, model.n_layer) if L >= 0 else float("nan"), "strength": s, "trial": t,
                         "text": text, "n_tokens": len(toks), **{n: int(g[n]) for n in ("coherent", "affirmative",
                                                                                          "identified", "thinking")},
                         "success": int(bool(ok) and cond == "concept"),
                         **{f"b_{n}": g.get(f"b_{n}", float("nan")) for n in ("coherent", "affirmative", "identified",
                                                                              "thinking")},
                         "grader": grader, "model": Path(model.path).name, "quant_type": model.quant_type})
        return rows

    with Table(out, COLUMNS, key, parse_row, meta, SAME_ON_RESUME, resume) as table:
        run_chunks(table, chunks, compute, lambda c: [(x[0], x[1], x[3], x[4], x[5]) for x in c], progress,
                   desc="trials", unit="trial")
    return list(table.done.values())


def _category(word: str) -> str:
    return next((c for c, ws in CATEGORY_WORDS.items() if word in ws), "")


def rates(rows, by: str = "cell") -> list[dict]:
    """Per (layer, strength) (``by="cell"``) or per category (``by="category"``): the success
    rate of injected trials, the false-positive rate of control trials (coherent and
    affirmative without injection), and their difference, the paper's summary metric."""
    control = [r for r in rows if r["condition"] == "control"]
    fp = float(np.mean([bool(int(r["coherent"])) and bool(int(r["affirmative"])) for r in control])) \
        if control else float("nan")
    groups: dict[tuple, list] = {}
    for r in rows:
        if r["condition"] == "concept":
            g = (int(r["layer"]), float(r["strength"])) if by == "cell" else (r["category"] or "concept words",)
            groups.setdefault(g, []).append(r)
    out = []
    for g, rs in sorted(groups.items()):
        success = float(np.mean([int(r["success"]) for r in rs]))
        cell = {"layer": g[0], "depth": float(rs[0]["depth"]), "strength": g[1]} if by == "cell" else {"category": g[0]}
        out.append({**cell, "condition": "concept", "n": len(rs), "success": success,
                    "affirmative": float(np.mean([int(r["affirmative"]) for r in rs])),
                    "false_positive": fp, "net": success - fp})
    return out
