"""Experiment 1 of Lindsey (2025) as the paper ran it: sampled answers, graded.

For each (layer, strength) the model answers the trial prompt ``n_trials`` times (the paper:
50) at temperature 1, up to ``max_tokens`` tokens, each trial injecting a concept drawn at
random (seeded) from the pool (the concept words and the category words), from the double
newline before "Trial 1" on and into every sampled token; control trials (no injection) give
the false-positive rate. Trials of many cells run together, each sequence with its own vector,
layer, strength and seed: a trial is the same alone or in any batch.

Grading: with a judge model (``pyintro.judge.Judge``), the paper's four grader questions, each
answered by the judge and parsed (an unparsable answer is recorded as empty); beside it, and
without a judge in its place, keyword rules (cruder: they cannot tell a coherent answer from
word salad that happens to say "yes"), whose agreement with the judge is reported. Success
follows the paper:
coherent, affirmative, naming the concept, the detection not after the word (the
affirmative_correct_identification grader encodes the last rule; the keyword grader refuses
answers whose first word is the concept). Alternative prompts inject on every token and count
coherent + "thinking about the word" as success. Each injected trial also gets the paper's
failure mode (``mode``): success, no detection, unconscious influence (no claim, but the
concept is mentioned), brain damage (incoherent), late detection (the word before the claim),
or a claim without the word.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro import concepts as library
from pyintro import plots
from pyintro.experiments.detection import TRIAL_MARKER, trial_messages
from pyintro.experiments.dialogue import prompt, span_start
from pyintro.experiments.protocol import Analysis, Experiment, Schema, Stage, Work
from pyintro.experiments.stats import depth, evenly_spaced, rate, seed_for, shard_of
from pyintro.injection import Injection, Layers, Positions, Strengths
from pyintro.judge import fill
from pyintro.stimuli import CATEGORY_WORDS, CONCEPT_WORDS, PROMPTS, messages

__all__ = ["EXPERIMENT", "keyword_grade", "rates", "trials"]

GRADES = ("coherent", "affirmative", "identified", "thinking")
PROMPT_NAMES = ("paper", "revised", "thinking_about", "whats_going_on", "anything_unusual")
SCHEMA = Schema("condition concept category layer:int depth:float strength:float trial:int text n_tokens:int "
                "coherent:int affirmative:int identified:int thinking:int success:int mode mentioned:int "
                "kw_coherent:int kw_affirmative:int kw_identified:int kw_thinking:int grader model quant_type",
                key=("condition", "layer", "strength", "trial"), need="success")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "prompt", "seed",
                  "max_tokens", "temperature", "grader")

# Checked in order on the lower-cased answer: a negative phrase wins over a positive one.
NEGATIVE = (r"^\W*no\b", r"\bdo(?:n't| not)\s+(?:detect|notice|sense|feel)", r"\bdid(?:n't| not)\s+(?:detect|notice)",
            r"\bnot\s+detect", r"\bno\s+(?:injected|thought|injection)", r"\bnothing\b", r"\bcannot\s+detect",
            r"\bcan't\s+detect")
POSITIVE = (r"^\W*yes\b", r"\bi\s+(?:do\s+|can\s+)?(?:detect|notice|sense|feel)", r"\bdetected\b",
            r"\bthere\s+is\s+an?\s+injected", r"\binjected\s+thought\s+(?:is|was|seems)", r"\bthought\s+is\s+about")


def trial_prompt(model, name: str = "paper") -> tuple[list[int], int, str, bool]:
    """(ids, first injected token, the question the grader sees, whether the injection covers
    every token) for one of ``PROMPT_NAMES``."""
    if name in ("paper", "revised"):
        msgs = trial_messages(name)
        text, ids = prompt(model, msgs)
        return ids, span_start(model, text, TRIAL_MARKER, ids), msgs[-1][1], False
    if name == "anything_unusual":
        msgs = trial_messages(name)
        return prompt(model, msgs)[1], 0, msgs[-1][1], True
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
    v = {name: judge.verdicts(ps) for name, ps in asks.items()}
    return [{n: v[n][i] for n in asks} for i in range(len(texts))]


def failure_mode(text: str, word: str, g: dict, everywhere: bool) -> str:
    """The paper's reading of an injected trial: success, brain damage (incoherent), no
    detection, unconscious influence (no claim, the word mentioned), late detection (the word
    before the claim), or a claim without the word."""
    if g["coherent"] is False:
        return "brain damage"
    if g["coherent"] and (g["thinking"] if everywhere else g["identified"]):
        return "success"
    named = mentions(text, word)
    if not g["affirmative"]:
        return "unconscious influence" if named else "no detection"
    return "late detection" if named else "claim without the word"


def mentions(text: str, word: str) -> bool:
    return bool(word) and re.search(r"\b" + re.escape(word.lower()) + r"(?:s|es)?\b", text.lower()) is not None


def design(model, vectors: dict, concepts: Sequence[str], layers=None, strengths: Sequence[float] = (1, 2, 4, 8),
           n_trials: int = 50, n_control: int = 100, max_tokens: int = 100, temperature: float = 1.0,
           prompt_name: str = "paper", judge=None, seed: int = 0, shard=None) -> Work:
    """The trials' work: control trials (no injection), then ``n_trials`` per (layer, strength),
    each with a concept drawn from ``concepts`` (the pool), in chunks of n_seq_max - 1 sequences
    decoded together; a shard takes every N-th layer (the control trials go with shard 1)."""
    layers, strengths = Layers.of(layers, model.n_layer), Strengths.of(strengths)
    concepts = list(concepts)
    for w in concepts:
        if w not in vectors:
            raise ValueError(f"no vector for {w!r}: build the library with `pyintro concepts --words ...` first")
    if n_trials < 1 or n_control < 0 or max_tokens < 1:
        raise ValueError("--trials and the token budget must be at least 1, the control trials at least 0")
    ids, k, question, everywhere = trial_prompt(model, prompt_name)
    grader = f"judge:{judge.name}" if judge is not None else "keywords"
    meta = dict(prompt=prompt_name, prompt_text=model.detokenize(ids), seed=int(seed), max_tokens=int(max_tokens),
                temperature=float(temperature), grader=grader, pool=concepts,
                judge=judge.describe() if judge is not None else None)
    cells = [("control", "", -1, 0.0, t) for t in range(n_control)] if shard is None or shard[0] == 1 else []
    cells += [("concept", concepts[int(seed_for(seed, "concept", L, int(round(s * 1000)), t).integers(len(concepts)))],
               L, s, t) for L in shard_of(list(layers), shard) for s in strengths for t in range(n_trials)]
    per_call = max(1, model.n_seq_max - 1)
    chunks = [cells[i:i + per_call] for i in range(0, len(cells), per_call)]
    where = Positions.all() if everywhere else Positions.start(k)

    def score(chunk, done):
        points = [[] if cond == "control" else [Injection(vectors[w], L, s, where)] for cond, w, L, s, _ in chunk]
        seeds = [seed_for(seed, cond, L, int(round(s * 1000)), t).integers(2**63) for cond, _, L, s, t in chunk]
        outs = model.generate_many(ids, points, max_tokens, temperature, seeds)
        texts = [model.detokenize([t for t in toks if not model.is_eog(t)], special=False) for toks in outs]
        words = [w.lower() for _, w, *_ in chunk]
        kw = [keyword_grade(t, w) for t, w in zip(texts, words)]
        grades = _judged(judge, question, texts, words) if judge is not None else kw
        rows = []
        for (cond, w, L, s, t), text, toks, g, kg in zip(chunk, texts, outs, grades, kw):
            ok = g["coherent"] and (g["thinking"] if everywhere else g["identified"])
            rows.append({"condition": cond, "concept": w, "category": _category(w), "layer": L,
                         "depth": depth(L, model.n_layer), "strength": s, "trial": t, "text": text,
                         "n_tokens": len(toks), **{n: "" if g[n] is None else int(g[n]) for n in GRADES},
                         "success": int(bool(ok) and cond == "concept"),
                         "mode": failure_mode(text, w, g, everywhere) if cond == "concept" else "",
                         "mentioned": int(mentions(text, w)), **{f"kw_{n}": int(kg[n]) for n in GRADES},
                         "grader": grader, "model": Path(model.path).name, "quant_type": model.quant_type})
        return rows

    stage = Stage(lambda done: chunks, score, lambda c: [(x[0], x[2], x[3], x[4]) for x in c], "trials", "trial")
    return Work(meta, [stage], {"mode": f"{n_trials} sampled trials per (layer, strength)", "grader": grader,
                                "judge": judge.describe() if judge is not None else None}, units=len(layers),
                prompts=[ids])


def trials(model, vectors: dict, concepts: Sequence[str], layers=None, strengths: Sequence[float] = (1, 2, 4, 8),
           n_trials: int = 50, n_control: int = 100, max_tokens: int = 100, temperature: float = 1.0,
           prompt_name: str = "paper", judge=None, seed: int = 0, out=None, resume: bool = False, shard=None,
           progress=None) -> list[dict]:
    """Sampled, graded trials: one row per trial (see the module docstring); control trials
    are condition "control" with layer -1."""
    work = design(model, vectors, concepts, layers, strengths, n_trials, n_control, max_tokens, temperature,
                  prompt_name, judge, seed, shard)
    return EXPERIMENT.execute(model, work, out, resume, progress, shard)


def _category(word: str) -> str:
    return next((c for c, ws in CATEGORY_WORDS.items() if word in ws), "")


def rates(rows, by: str = "cell") -> list[dict]:
    """Per (layer, strength) (``by="cell"``) or per category (``by="category"``): the success
    rate of injected trials, the false-positive rate of control trials (coherent and
    affirmative without injection), and their difference, the paper's summary metric; the
    share of trials that mention their concept; trials the judge left unparsed."""
    control = [r for r in rows if r["condition"] == "control"]
    fp = rate("" if "" in (r["coherent"], r["affirmative"]) else int(r["coherent"] and r["affirmative"])
               for r in control)
    groups: dict[tuple, list] = {}
    for r in rows:
        if r["condition"] == "concept":
            g = (int(r["layer"]), float(r["strength"])) if by == "cell" else (r["category"] or "concept words",)
            groups.setdefault(g, []).append(r)
    out = []
    for g, rs in sorted(groups.items()):
        success = rate(r["success"] for r in rs)
        cell = {"layer": g[0], "depth": float(rs[0]["depth"]), "strength": g[1]} if by == "cell" else {"category": g[0]}
        out.append({**cell, "condition": "concept", "n": len(rs), "success": success,
                    "affirmative": rate(r["affirmative"] for r in rs), "mentioned": rate(r["mentioned"] for r in rs),
                    "unparsed": sum(1 for r in rs if "" in (r["coherent"], r["affirmative"], r["identified"])),
                    "false_positive": fp, "net": success - fp})
    return out


def modes(rows) -> list[dict]:
    """Per strength: the share of injected trials in each failure mode, and how often the
    concept is mentioned at all (the paper: more often as strength grows)."""
    names = ("success", "no detection", "unconscious influence", "brain damage", "late detection",
             "claim without the word")
    by: dict[float, list] = {}
    for r in rows:
        if r["condition"] == "concept":
            by.setdefault(float(r["strength"]), []).append(r)
    return [{"strength": s, "n": len(rs), **{m: float(np.mean([r["mode"] == m for r in rs])) for m in names},
             "mentioned": rate(r["mentioned"] for r in rs)} for s, rs in sorted(by.items())]


def analyse(rows: list, context: dict) -> Analysis:
    cs = rates(rows)
    best = max(cs, key=lambda c: c["net"]) if cs else None
    judged = context.get("judge") is not None
    grader = f"judge {context['judge']['model']}" if judged else "keywords"
    graded = [r for r in rows if r["coherent"] != "" and r["affirmative"] != ""]
    agree = rate(int((r["coherent"], r["affirmative"], r["identified"]) ==
                      (r["kw_coherent"], r["kw_affirmative"], r["kw_identified"])) for r in graded) if judged else None
    head = {"best_cell": best, "by_category": rates(rows, by="category"), "failure_modes": modes(rows),
            "grader": "judge" if judged else "keywords (cruder than a judge)", "judge": context.get("judge"),
            "judge_keyword_agreement": agree, "unparsed": len(rows) - len(graded)}
    head["verdict"] = (f"the best cell's net success (success minus the control trials' false-positive rate) is "
                       f"{best['net']:+.0%} at layer {best['layer']}, strength {best['strength']:g} (success "
                       f"{best['success']:.0%} of {best['n']}, false positives {best['false_positive']:.0%})"
                       if best else "no trials")
    report = [head["verdict"]] + [f"strength {m['strength']:g}: " + ", ".join(
        f"{k} {m[k]:.0%}" for k in m if k not in ("strength", "n") and m[k]) for m in head["failure_modes"]]
    figure = {"rates.png": lambda p: plots.by_depth(cs, p, [("net", "success rate − false-positive rate", 0.0),
                                                            ("affirmative", "affirmative answers", None),
                                                            ("mentioned", "the concept mentioned", None)],
                                                    title=f"{context.get('model', '')}: experiment 1, {grader}")}
    return Analysis({"cells.csv": (cs, None), "modes.csv": (head["failure_modes"], None)}, head, report, figure)


QUICK = {"concepts": 4, "layers": 4, "strengths": (2.0, 8.0), "trials": 4, "control": 8, "max_tokens": 32,
         "category": 1}


def prepare(model, words: Optional[Sequence[str]] = None, library_dir=None, layers=None, strengths=None,
            n_trials: int = 50, judge=None, prompt_name: str = "paper", quick: bool = False, seed: int = 0, shard=None,
            progress=None, out_dir=None, answers="default") -> Work:
    """The trials' work from the CLI's options: ``n_trials`` sampled trials per (layer,
    strength), each with a concept drawn from ``words`` (default the 50 concept words) and the
    category words, graded by ``judge`` (a loaded ``judge.Judge``) or keywords; ``quick``: 4
    concepts and 1 word of each category, 4 layers, strengths 2 and 8, 8 control trials, 32
    tokens (wherever the caller gave nothing)."""
    words = library.check_words(words if words is not None else CONCEPT_WORDS[:QUICK["concepts"]] if quick else None)
    n_cat = QUICK["category"] if quick else None
    pool = list(dict.fromkeys(list(words) + [w for ws in CATEGORY_WORDS.values() for w in ws[:n_cat]]))
    if layers is None and quick:
        layers = evenly_spaced(model.n_layer, QUICK["layers"])
    strengths = (QUICK["strengths"] if quick else (1.0, 2.0, 4.0, 8.0)) if strengths is None else strengths
    vectors = library.library(model, pool, out=library_dir, progress=progress)
    return design(model, vectors, pool, layers, strengths, n_trials=n_trials,
                  n_control=QUICK["control"] if quick else 100, max_tokens=QUICK["max_tokens"] if quick else 100,
                  prompt_name=prompt_name, judge=judge, seed=seed, shard=shard)


EXPERIMENT = Experiment("trials", "Lindsey (2025), experiment 1: detecting injected thoughts (sampled trials)", SCHEMA,
                        SAME_ON_RESUME, prepare, analyse, QUICK, ("cells.csv", ("layer", "strength"), "net"),
                        mode="sampled trials")
