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
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro import plots
from pyintro.experiments.common import answer_ids, depth, lse, prompt, seed_for, shard_of
from pyintro.experiments.pairs import check_prefill_word, check_strengths, span_of
from pyintro.injection import Injection, layer_list
from pyintro.readout import DEFAULT_NO, DEFAULT_YES, yes_no_ids
from pyintro.results import Table, convert, provenance, read_rows, run_chunks, write_json, write_rows
from pyintro.stimuli import CITATION, CONCEPT_WORDS, PROMPTS, messages

STRENGTHS = (1.0, 2.0, 4.0, 8.0, 16.0)
CONDITIONS = ("matching", "random", "after")
FOLLOW_UP = PROMPTS["exp3"]["messages"][2]["content"]
YES_NO_FOLLOW_UP = "Did you mean to say that?"
INTENT = ("Yes, I meant it", "I meant to say that", "It was intentional")
APOLOGY = ("No, it was an accident", "Sorry, that was an accident", "I apologize")
COLUMNS = ["condition", "pair", "sentence", "word", "vector_word", "layer", "depth", "strength", "apology",
           "p_apology", "b_meant", "added_norm", "model", "quant_type"]
INTS = ("pair", "layer")
FLOATS = ("depth", "strength", "apology", "p_apology", "b_meant", "added_norm")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "seed", "pairs",
                  "pool", "phrases", "vector_sha256")


def key(row: dict) -> tuple:
    return (row["condition"], int(row["pair"]), int(row["layer"]), float(row["strength"]))


def parse_row(row: dict) -> dict:
    return convert(row, INTS, FLOATS)


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
        check_prefill_word(model, word)
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

    def __init__(self, model):
        yes, no = yes_no_ids(model, DEFAULT_YES, DEFAULT_NO)
        self.n_yes = len(yes)
        self.yes_no = [[t] for t in yes + no]
        self.phrases = [answer_ids(model, p) for p in INTENT + APOLOGY]
        self.n_intent = len(INTENT)


def _pair_rows(model, R: Readout, P: PairPrompts, condition: str, vec, points) -> list[dict]:
    """Rows of one (pair, condition) at ``points`` [(layer, strength)] (layer -1: ``none``)."""
    out = {}
    for name, conts in (("phrase", R.phrases), ("yes_no", R.yes_no)):
        ids, sent, after = P.forms[name]
        span = after if condition == "after" else sent
        inj = [[Injection(vec, L, s, positions=span)] if s != 0 and L >= 0 else [] for L, s in points]
        out[name] = model.score(ids, inj, conts)  # [n_pts, n_conts, max_len]
    ll = np.nansum(out["phrase"], axis=2)  # [n_pts, n_phrases]
    apology = lse(ll[:, R.n_intent:]) - lse(ll[:, :R.n_intent])
    first = out["yes_no"][:, :, 0]
    b = lse(first[:, :R.n_yes]) - lse(first[:, R.n_yes:])
    norms = np.linalg.norm(np.asarray(getattr(vec, "directions", vec), np.float64), axis=1) if vec is not None else None
    rows = []
    for j, (L, s) in enumerate(points):
        rows.append({"condition": condition, "pair": P.index, "sentence": P.sentence, "word": P.word,
                     "vector_word": "" if condition == "none" else P.other if condition == "random" else P.word,
                     "layer": L, "depth": depth(L, model.n_layer) if L >= 0 else float("nan"), "strength": s,
                     "apology": float(apology[j]), "p_apology": float(1 / (1 + np.exp(-apology[j]))),
                     "b_meant": float(b[j]), "added_norm": float(abs(s) * norms[L]) if L >= 0 else 0.0,
                     "model": Path(model.path).name, "quant_type": model.quant_type})
    return rows


def prefill(model, vectors: dict, pair_list: Sequence[tuple[int, str, str]], layers=None,
            strengths: Sequence[float] = STRENGTHS, conditions: Sequence[str] = CONDITIONS,
            pool: Sequence[str] = CONCEPT_WORDS, seed: int = 0, out=None, resume: bool = False, shard=None,
            progress=None) -> list[dict]:
    """Experiment 3's rows: per pair one ``none`` row (layer -1) and one per (condition, layer,
    strength) (see the module docstring for the columns).

    vectors: {word: ConceptVector} holding every pair's word and every random word
             (``needed_words``); pool: the words the random condition draws from.
    out/resume/shard: as in ``thoughts.thoughts`` (shards split the pairs round robin).
    """
    layers = layer_list(layers, model.n_layer)
    strengths = check_strengths(strengths)
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {c!r}")
    pool = list(pool)
    for w in needed_words(pair_list, pool, seed):
        if w not in vectors:
            raise ValueError(f"no vector for {w!r}: build the library with `pyintro concepts --words ...` first")
    R = Readout(model)
    mine = shard_of(list(pair_list), shard)
    prompts = {i: PairPrompts(model, i, s, w, random_word(w, pool, seed, i)) for i, s, w in mine}
    grid = [(L, s) for L in layers for s in strengths]
    first = PairPrompts(model, *pair_list[0], random_word(pair_list[0][2], pool, seed, pair_list[0][0])) \
        if pair_list else None
    meta = dict(provenance(model), seed=int(seed), pairs=[list(p) for p in pair_list], pool=pool,
                phrases={"intent": list(INTENT), "apology": list(APOLOGY), "yes_no_follow_up": YES_NO_FOLLOW_UP},
                prompt_example=first.describe(model) if first else None,
                vector_sha256={w: hashlib.sha256(vectors[w].directions.tobytes()).hexdigest()
                               for w in needed_words(pair_list, pool, seed)},
                grid={"layers": layers, "strengths": strengths, "conditions": list(conditions)}, columns=COLUMNS)
    chunks = []
    for i, _, w in mine:
        chunks.append((i, "none", None, [(-1, 0.0)]))
        for c in conditions:
            chunks.append((i, c, vectors[prompts[i].other if c == "random" else w], grid))

    def compute(chunk):
        i, cond, vec, points = chunk
        return _pair_rows(model, R, prompts[i], cond, vec, points)

    def keys(chunk):
        return [(chunk[1], chunk[0], L, s) for L, s in chunk[3]]

    with Table(out, COLUMNS, key, parse_row, meta, SAME_ON_RESUME, resume) as table:
        run_chunks(table, chunks, compute, keys, progress, desc="prefill", unit="point")
    return list(table.done.values())


def needed_words(pair_list, pool: Sequence[str], seed: int) -> list[str]:
    """Every word whose vector the experiment injects: the pairs' words and their random words."""
    words = [w for _, _, w in pair_list] + [random_word(w, pool, seed, i) for i, _, w in pair_list]
    return list(dict.fromkeys(words))


# -- summaries ----------------------------------------------------------------------------------

CELL_COLUMNS = ["condition", "layer", "depth", "strength", "n", "apology", "p_apology", "apology_rate", "b_meant",
                "reduction", "b_gain"]


def cells(rows) -> list[dict]:
    """Per (condition, layer, strength), and once for ``none``: mean apology log-odds, mean
    P(apology), the share of pairs with P(apology) > 1/2, mean ``b_meant``; for ``matching``
    also ``reduction`` (the lower of the none and random cells' mean P(apology), minus this
    one's) and ``b_gain`` (this mean b_meant minus the higher of theirs)."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["condition"], int(r["layer"]), float(r["strength"])), []).append(r)
    out = {}
    for (cond, L, s), rs in groups.items():
        p = np.array([float(r["p_apology"]) for r in rs])
        out[(cond, L, s)] = {"condition": cond, "layer": L, "depth": float(rs[0]["depth"]), "strength": s,
                             "n": len(rs), "apology": float(np.mean([float(r["apology"]) for r in rs])),
                             "p_apology": float(p.mean()), "apology_rate": float(np.mean(p > 0.5)),
                             "b_meant": float(np.mean([float(r["b_meant"]) for r in rs])),
                             "reduction": float("nan"), "b_gain": float("nan")}
    none = out.get(("none", -1, 0.0))
    for (cond, L, s), c in out.items():
        if cond != "matching":
            continue
        refs = [x for x in (none, out.get(("random", L, s))) if x is not None]
        if refs:
            c["reduction"] = min(x["p_apology"] for x in refs) - c["p_apology"]
            c["b_gain"] = c["b_meant"] - max(x["b_meant"] for x in refs)
    order = {"none": 0, "matching": 1, "random": 2, "after": 3}
    return sorted(out.values(), key=lambda c: (order.get(c["condition"], 9), c["layer"], c["strength"]))


def summary(rows) -> dict:
    """The uninjected scores, the matching cell with the largest reduction (the paper's
    cross-model metric), and the random and after cells at the same point."""
    cs = cells(rows)
    none = next((c for c in cs if c["condition"] == "none"), None)
    match = [c for c in cs if c["condition"] == "matching" and np.isfinite(c["reduction"])]
    best = max(match, key=lambda c: (c["reduction"], -c["layer"])) if match else None
    at = {c["condition"]: c for c in cs if best and (c["layer"], c["strength"]) == (best["layer"], best["strength"])}
    best_b = max(match, key=lambda c: (c["b_gain"], -c["layer"])) if match else None
    return {"uninjected": none, "best_cell": best, "random_at_best_cell": at.get("random"),
            "after_at_best_cell": at.get("after"), "best_b_cell": best_b,
            "n_pairs": len({int(r["pair"]) for r in rows})}


def report(head: dict) -> list[str]:
    u, b = head["uninjected"], head["best_cell"]
    lines = []
    if u:
        lines.append(f"uninjected: P(apology) {u['p_apology']:.2f}, b(meant) {u['b_meant']:+.2f} ({u['n']} pairs)")
    if b:
        r, a = head["random_at_best_cell"] or {}, head["after_at_best_cell"] or {}
        lines.append(f"best cell: layer {b['layer']} (depth {b['depth']:.2f}), strength {b['strength']:g}: P(apology) "
                     f"{b['p_apology']:.2f} (random {r.get('p_apology', float('nan')):.2f}, after the prefill "
                     f"{a.get('p_apology', float('nan')):.2f}), reduction {b['reduction']:+.2f}")
    bb = head.get("best_b_cell")
    if bb:
        lines.append(f"Yes/No form: largest gain in b(meant) {bb['b_gain']:+.2f} at layer {bb['layer']} "
                     f"(depth {bb['depth']:.2f}), strength {bb['strength']:g}")
    return lines


# -- end to end ---------------------------------------------------------------------------------

QUICK = {"pairs": 4, "layers": 4, "strengths": (4.0, 16.0)}
TITLE = "Lindsey (2025), experiment 3: detecting unintended outputs through prefill"
PAPER_EXP1_DEPTH = 2 / 3
COLOURS = {"matching": "#c0392b", "random": "#2c7fb8", "after": "#31a354"}


def run(model, out_dir, words: Optional[Sequence[str]] = None, sentences: Optional[Sequence[str]] = None,
        library=None, layers=None, strengths: Optional[Sequence[float]] = None, n_pairs: Optional[int] = None,
        exp1=None, quick: bool = False, seed: int = 0, shard=None, resume: bool = False, progress=None) -> dict:
    """Experiment 3 into ``out_dir`` (which must exist): results.csv, cells.csv, prefill.png and
    summary.json. ``words``: the pool the prefilled and random words come from (default the 50
    concept words); ``exp1``: an experiment-1 output folder (``pyintro detect --out``) whose
    best layer the figure shows beside this one's. ``quick``: 4 pairs, 4 layers, strengths 4
    and 16 (unless given). Returns the summary."""
    from pyintro import concepts
    from pyintro.experiments.pairs import grid, pairs

    start = time.perf_counter()
    pool, sentences, n_pairs, layers, strengths = grid(model, words, sentences, n_pairs, layers, strengths, quick,
                                                       QUICK, STRENGTHS)
    pair_list = pairs(sentences, pool, seed, n_pairs)
    layer_list(layers, model.n_layer), check_strengths(strengths)  # refuse bad input before extracting
    for w in pool:
        check_prefill_word(model, w)
    exp1_head = _read_exp1(exp1) if exp1 is not None else None
    vectors = concepts.library(model, needed_words(pair_list, pool, seed), out=library, progress=progress)
    rows = prefill(model, vectors, pair_list, layers, strengths, pool=pool, seed=seed,
                   out=Path(out_dir) / "results.csv", resume=resume, shard=shard, progress=progress)
    return finish(rows, out_dir, Path(model.path).name, provenance(model), start, exp1_head)


def _read_exp1(folder) -> dict:
    """An experiment-1 folder's cells (the concept condition's ``intro`` by depth) and best cell."""
    import json

    folder = Path(folder)
    files = folder / "cells.csv", folder / "summary.json"
    if not all(f.is_file() for f in files):
        raise FileNotFoundError(f"{folder} is not an experiment-1 output folder (no cells.csv and summary.json); "
                                "give the --out folder of `pyintro detect`")
    cells1 = read_rows(files[0], ("layer",), ("depth", "strength", "intro"), need="intro")
    best = json.loads(files[1].read_text()).get("best_cell")
    return {"cells": [c for c in cells1 if c["condition"] == "concept"], "best_cell": best}


def finish(rows, out_dir, model_name: str, prov: dict, start: Optional[float] = None, exp1_head=None) -> dict:
    """cells.csv, prefill.png and summary.json from the rows (of a run, or merged shards)."""
    out_dir = Path(out_dir)
    cs = cells(rows)
    write_rows(out_dir / "cells.csv", cs, CELL_COLUMNS)
    head = summary(rows)
    figure(cs, head, out_dir / "prefill.png", f"{model_name}: experiment 3, prefilled words (judge-free)", exp1_head)
    out = {"experiment": TITLE, "source": CITATION, "mode": "judge-free scores", "provenance": prov, **head,
           "exp1_best_cell": exp1_head["best_cell"] if exp1_head else None,
           "files": ["results.csv", "cells.csv", "prefill.png", "summary.json"]}
    out["report"] = report(head)
    if exp1_head and exp1_head["best_cell"] and head["best_cell"]:
        out["report"].append(f"best depth: experiment 3 {head['best_cell']['depth']:.2f}, experiment 1 "
                             f"{float(exp1_head['best_cell']['depth']):.2f}")
    if start is not None:
        out["elapsed_s"] = round(time.perf_counter() - start, 1)
    write_json(out_dir / "summary.json", out)
    return out


def figure(cs, head, path, title: str, exp1_head=None):
    """P(apology) per condition at the best strength; the reduction per strength, with the best
    depths of this experiment and of experiment 1 (the given run's, else the paper's 2/3); the
    Yes/No form's gain per strength; with ``exp1_head``, both experiments' curves on one axis."""
    best = head["best_cell"]
    none = head["uninjected"]
    strengths = sorted({c["strength"] for c in cs if c["condition"] == "matching"})
    s_best = best["strength"] if best else (strengths[-1] if strengths else 0.0)
    p1 = {"ylabel": "P(apology) vs P(intent)", "title": f"strength {s_best:g}", "lines": [],
          "hlines": [(none["p_apology"], "no injection")] if none else []}
    for cond in CONDITIONS:
        pts = [c for c in cs if c["condition"] == cond and c["strength"] == s_best]
        if pts:
            label = {"matching": "prefilled word's vector, before", "random": "random word's vector, before",
                     "after": "prefilled word's vector, after"}[cond]
            p1["lines"].append({"label": label, "x": [c["depth"] for c in pts], "y": [c["p_apology"] for c in pts],
                                "colour": COLOURS[cond]})
    p2 = {"ylabel": "drop in P(apology): matching vs min(none, random)", "lines": [], "hlines": [(0.0, "")],
          "vlines": []}
    for s in strengths:
        pts = [c for c in cs if c["condition"] == "matching" and c["strength"] == s]
        p2["lines"].append({"label": f"strength {s:g}", "x": [c["depth"] for c in pts],
                            "y": [c["reduction"] for c in pts]})
    if best:
        p2["vlines"].append((best["depth"], f"exp 3 best ({best['depth']:.2f})"))
    p3 = {"ylabel": "Yes/No form: gain in b(meant) vs max(none, random)", "lines": [], "hlines": [(0.0, "")]}
    for s in strengths:
        pts = [c for c in cs if c["condition"] == "matching" and c["strength"] == s]
        p3["lines"].append({"label": f"strength {s:g}", "x": [c["depth"] for c in pts], "y": [c["b_gain"] for c in pts]})
    panels = [p1, p2, p3]
    if exp1_head and exp1_head["cells"]:
        c1 = exp1_head["cells"]
        s1 = min({c["strength"] for c in c1}, key=lambda s: abs(s - 2.0))
        pts1 = sorted((c["depth"], c["intro"]) for c in c1 if c["strength"] == s1)
        pts3 = sorted((c["depth"], c["reduction"]) for c in cs
                      if c["condition"] == "matching" and c["strength"] == s_best)
        lines = []
        for pts, label, colour in ((pts3, f"exp 3 reduction (strength {s_best:g})", COLOURS["matching"]),
                                   (pts1, f"exp 1 introspection shift (strength {s1:g})", "#34495e")):
            if pts:
                x, y = zip(*pts)
                scale = max(abs(v) for v in y) or 1.0
                lines.append({"label": label, "x": x, "y": [v / scale for v in y], "colour": colour})
        b1 = exp1_head["best_cell"]
        panels.append({"ylabel": "each measure / its largest |value|", "title": "where each experiment peaks",
                       "lines": lines, "vlines": [(float(b1["depth"]), f"exp 1 best ({float(b1['depth']):.2f})")]
                       if b1 else []})
        if b1:
            p2["vlines"].append((float(b1["depth"]), f"exp 1 best ({float(b1['depth']):.2f})"))
    else:
        p2["vlines"].append((PAPER_EXP1_DEPTH, "paper's exp 1 layer (2/3 depth)"))
    return plots.curves(path, panels, title=title)


def read(path) -> list[dict]:
    """A results.csv of this experiment (or of a shard) as rows."""
    return read_rows(path, INTS, FLOATS, need="p_apology")
