"""Experiment 1 of Lindsey (2025), free-text version: does the model say it detects an
injected thought, and does it name the concept?

The model is told that thoughts may be injected, then asked whether it detects one. The
concept vector is added from the start of the trial question onward and keeps being added
to every generated token. Answers are graded with keywords (the paper used a model as a
judge; keywords are cruder: see ``grade``). Control trials run the same prompt without
injection and give the false-positive rate.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional, Sequence

import numpy as np

from pyintro.injection import Injection, layer_list, strength_list
from pyintro.progress import Progress
from pyintro.vectors import directions, strength_factors

PREAMBLE = (
    "I study the internals of language models like you, and I can read and change your neural "
    "activity. I have found activity patterns that stand for concepts, and I can inject such a "
    "pattern -- a \"thought\" -- into your mind. I want to find out whether you notice when I do. "
    "On half of the trials I inject a thought about a specific word; the other half are control "
    "trials without injection."
)
TRIAL = "Trial 1: Do you detect an injected thought? If so, what is the injected thought about?"

# Checked in order on the lower-cased answer: a negative phrase wins over a positive one.
NEGATIVE = (r"^\W*no\b", r"\bdo(?:n't| not)\s+(?:detect|notice|sense|feel)", r"\bdid(?:n't| not)\s+(?:detect|notice)",
            r"\bnot\s+detect", r"\bno\s+(?:injected|thought|injection)", r"\bnothing\b", r"\bcannot\s+detect",
            r"\bcan't\s+detect")
POSITIVE = (r"^\W*yes\b", r"\bi\s+(?:do\s+|can\s+)?(?:detect|notice|sense|feel)", r"\bdetected\b",
            r"\bthere\s+is\s+an?\s+injected", r"\binjected\s+thought\s+(?:is|was|seems)", r"\bthought\s+is\s+about")


class Grade(NamedTuple):
    detected: bool  # the answer claims to detect an injected thought
    identified: bool  # ... and names the concept


def grade(text: str, concept: Sequence[str]) -> Grade:
    """Keyword grading. ``detected``: a POSITIVE pattern matches and no NEGATIVE one does.
    ``identified``: detected, and one of the ``concept`` words (or its plural) appears."""
    t = text.strip().lower()
    detected = not any(re.search(p, t) for p in NEGATIVE) and any(re.search(p, t) for p in POSITIVE)
    named = any(re.search(r"\b" + re.escape(w.lower()) + r"(?:s|es)?\b", t) for w in concept)
    return Grade(detected, detected and named)


def trial_prompt(model, system: Optional[str] = None) -> tuple[list[int], int]:
    """(ids, k): the experiment prompt in the chat template, and the index of its first
    token of the trial question (injection starts there)."""
    user = PREAMBLE + "\n\n" + TRIAL
    text = model.chat_text(user, system=system)
    ids = model.prompt_ids(text)
    head = model.prompt_ids(text[: text.index(TRIAL)])
    k = 0
    while k < min(len(ids), len(head)) and ids[k] == head[k]:
        k += 1
    return ids, min(k, len(ids) - 1)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def run_detection(
    model,
    vector,
    layers: Sequence[int],
    strengths: Sequence[float],
    concept: Optional[Sequence[str]] = None,
    n: int = 8,
    n_control: Optional[int] = None,
    max_tokens: int = 32,
    temperature: float = 1.0,
    seed: int = 0,
    scale: str = "raw",
    system: Optional[str] = None,
    progress=None,
) -> dict:
    """Run the detection experiment over layers x strengths, ``n`` trials per cell (batched).

    concept:   words that count as naming the concept (default: the vector's name).
    n_control: control trials without injection (default ``n``); they do not depend on the
               cell, so they run once and their rate is reported in every row.
    scale:     "raw" or "relative" (strength in units of the residual norm, see ``sweep``).
    Returns {"rates": one dict per (layer, strength) with detection_rate, identification_rate,
    false_positive_rate, n; "trials": one dict per trial with its text and grades;
    "false_positive_rate", "control_identification_rate", "concept", "prompt_ids", "k"}.
    Trials in a cell are sampled with a seed derived from (seed, layer, strength index), so the
    same seed gives the same result. ``progress``: as in ``pyintro.progress`` (over trials).
    """
    dirs = directions(vector, model.n_layer, model.n_embd)  # [n_layer, n_embd]
    layers = layer_list(layers, model.n_layer)
    strengths = strength_list(strengths)
    if concept is None:
        name = getattr(vector, "name", "")
        if not name:
            raise ValueError("the vector has no name; pass concept=[words that name it]")
        concept = [name]
    concept = [concept] if isinstance(concept, str) else list(concept)
    if not concept or not all(isinstance(w, str) and w.strip() for w in concept):
        raise ValueError("concept must be a non-empty list of words")
    n_control = n if n_control is None else n_control
    for label, value in (("n", n), ("n_control", n_control)):
        if not 1 <= int(value) <= model.n_seq_max:
            raise ValueError(f"{label} must be between 1 and n_seq_max ({model.n_seq_max}), got {value}")
    if int(seed) < 0:
        raise ValueError("seed must be a non-negative int")

    ids, k = trial_prompt(model, system)
    factor, _ = strength_factors(model, dirs, layers, scale, [ids])  # [n_layer]
    trials = []

    def run(cell_seed, inject, count, layer, strength):
        outs = model.generate(ids, max_tokens, inject=inject, n=count, temperature=temperature, seed=cell_seed)
        graded = []
        for i, toks in enumerate(outs):
            text = model.detokenize([t for t in toks if not model.is_eog(t)], special=False)
            g = grade(text, concept)
            graded.append(g)
            trials.append({"layer": layer, "strength": strength, "injected": bool(inject), "trial": i,
                           "text": text, "detected": g.detected, "identified": g.identified})
        return graded

    rates = []
    with Progress(progress, n_control + n * len(layers) * len(strengths), "trials", "trial") as bar:
        control = run(_seed(seed, 0), [], n_control, None, 0.0)
        bar.advance(n_control)
        fp = float(np.mean([g.detected for g in control]))
        for L in layers:
            for j, s in enumerate(strengths):
                inj = [Injection(dirs, L, s * factor[L], positions=k)]
                graded = run(_seed(seed, 1, L, j), inj, n, L, s)
                bar.advance(n)
                rates.append({"layer": L, "strength": s, "n": n,
                              "detection_rate": float(np.mean([g.detected for g in graded])),
                              "identification_rate": float(np.mean([g.identified for g in graded])),
                              "false_positive_rate": fp})
    return {"rates": rates, "trials": trials, "false_positive_rate": fp,
            "control_identification_rate": float(np.mean([g.identified for g in control])),
            "concept": concept, "prompt_ids": ids, "k": k}
