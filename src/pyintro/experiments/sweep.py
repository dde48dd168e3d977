"""The follow-up post's experiment: the Yes/No belief over a grid of (question, layer, strength),
the introspection question beside control questions whose true answer is fixed.

One row per point (``SCHEMA``). The (layer, strength) points of one question go through
``model.points`` in chunks of one engine call each. Points whose strength is 0 add nothing: they
all take the question's uninjected belief, decoded once. A batch-invariant Model (the default)
gives every point the value it has alone, whatever chunk it is decoded in, so a resumed or
sharded sweep equals an uninterrupted one bit for bit (docs/numerics.md says how b varies
across CPUs and with tiny changes of strength).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro import plots
from pyintro.experiments.protocol import Analysis, Experiment, Schema, Stage, Work
from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION, Question, as_questions, prompt_ids
from pyintro.experiments.stats import evenly_spaced, shard_of
from pyintro.extract import contrast
from pyintro.norms import strength_factors
from pyintro.injection import Injection, Layers, Positions, Strengths, as_positions
from pyintro.model import points_per_call
from pyintro.readout import yes_no, yes_no_ids
from pyintro.vectors import directions, load_for

__all__ = ["EXPERIMENT", "analyze", "sweep", "favourable_point"]

SCHEMA = Schema("question_kind question layer:int strength:float b:float p_yes:float p_no:float top_token "
                "added_norm:float vector model quant_type", key=("question_kind", "question", "layer", "strength"),
                need="b")
COLUMNS = SCHEMA.columns
# Everything that changes a point's value: it must match between a CSV's sidecar and a resumed sweep.
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "vector", "vector_sha256", "positions", "scale",
                  "reference_norms", "full_vocab", "yes_ids", "no_ids", "prompts", "numerics", "prompt_format")
DEFAULT_STRENGTHS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
CAPS = ("HI! HOW ARE YOU?", "Hi! How are you?")
RUN_STRENGTHS = tuple(float(s) for s in range(16))


def design(model, vector, layers=None, strengths=DEFAULT_STRENGTHS, questions=None, positions="last",
           scale: str = "raw", seed: int = 0, yes=None, no=None, full_vocab: bool = True, chunk=None,
           shard=None) -> Work:
    """The sweep's work: for each question, its (layer, strength) grid in chunks of one
    ``model.points`` call (at most ``chunk`` points); a shard takes every N-th layer."""
    dirs = directions(vector, model.n_layer, model.n_embd)  # [n_layer, n_embd]
    layers, strengths = Layers.of(layers, model.n_layer), Strengths.of(strengths)
    qs, positions = check_questions(questions), as_positions(positions)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    yes_ids, no_ids = yes_no_ids(model, yes, no)
    prompts = [prompt_ids(model, q) for q in qs]
    for p in prompts:
        positions.mask_for(len(p))  # refuses positions outside a prompt
    factor, ref = strength_factors(model, dirs, layers, scale, prompts)  # [n_layer], [n_layer] or None
    name = str(getattr(vector, "name", "") or "")
    meta = {"vector": name, "vector_sha256": hashlib.sha256(dirs.tobytes()).hexdigest(),
            "vector_method": getattr(vector, "method", None), "seed": int(seed), "positions": str(positions),
            "scale": scale, "full_vocab": bool(full_vocab), "yes_ids": yes_ids, "no_ids": no_ids,
            "yes_tokens": [model.token_str(t) for t in yes_ids], "no_tokens": [model.token_str(t) for t in no_ids],
            "prompts": [{"kind": q.kind, "text": q.text, "system": q.system, "n_tokens": len(p),
                         "prompt_text": model.detokenize(p)} for q, p in zip(qs, prompts)],
            "grid": {"layers": list(layers), "strengths": list(strengths)},
            "reference_norms": None if ref is None else [float(x) for x in ref]}
    grid = [(L, s) for L in shard_of(list(layers), shard) for s in strengths]
    steps = [_chunk_size(model, ids, positions, chunk) for ids in prompts]
    meta["points_per_batch"] = steps
    chunks = [(q, ids, grid[i:i + step]) for q, ids, step in zip(qs, prompts, steps) for i in range(0, len(grid), step)]
    const = {"vector": name, "model": Path(model.path).name, "quant_type": model.quant_type}
    score = _Scorer(model, dirs, factor, positions, yes_ids, no_ids, full_vocab, const)
    stage = Stage(lambda done: chunks, lambda c, done: score(*c), lambda c: [(c[0].kind, c[0].text, L, s) for L, s in c[2]],
                  desc="sweep")
    return Work(meta, [stage], {"grid": [[q.kind, q.text] for q in qs]}, units=len(layers))


def sweep(model, vector, layers: Optional[Sequence[int]] = None, strengths: Sequence[float] = DEFAULT_STRENGTHS,
          questions: Optional[dict] = None, positions="last", scale: str = "raw", out=None, resume: bool = False,
          progress=None, seed: int = 0, yes=None, no=None, full_vocab: bool = True, chunk: Optional[int] = None,
          shard=None) -> list[dict]:
    """Yes/No beliefs for every (question, layer, strength): a list of rows, in grid order.

    vector:    a ConceptVector (anything with ``.directions``) or an array [n_layer, n_embd].
    layers:    blocks to inject into (default all).
    questions: {kind: str | Question | list of them}; default one introspection question and
               one control question (1+1=3). Strings get the introspection system prompt.
    positions: a ``Positions`` or "last" / "all" (``Positions.start(k)``: the prompt before k is
               decoded once and shared).
    scale:     "raw": add strength * v[layer]. "relative": add strength * R[layer] * v[layer] /
               |v[layer]|, R[layer] the mean residual norm at that layer over the questions'
               prompt tokens (``norms.residual_norms``): a strength means the same at every layer.
               ``added_norm`` records |added|.
    out:       CSV path; rows are appended chunk by chunk (flush + fsync), with a sidecar
               ``out + ".json"``. resume=True keeps its rows and computes only the missing points.
    progress:  see ``pyintro.progress``. seed: recorded in the sidecar (for a ``random_like`` null).
    full_vocab: True: p_yes / p_no are softmax probabilities over the full vocabulary and
               top_token the most likely next token (computed in the engine; only the Yes/No
               logits are copied out). False: p_yes + p_no = 1 and top_token is "". b is the same.
    chunk:     at most this many points per engine call (and per CSV write).
    shard:     (k, n): every n-th layer from the k-th.
    """
    work = design(model, vector, layers, strengths, questions, positions, scale, seed, yes, no, full_vocab, chunk,
                  shard)
    rows = EXPERIMENT.execute(model, work, out, resume, progress, shard)
    by_key = {SCHEMA.key(r): r for r in rows}
    return [by_key[(q[0], q[1], L, s)] for q in work.context["grid"] for L in work.meta["grid"]["layers"]
            for s in work.meta["grid"]["strengths"] if (q[0], q[1], L, s) in by_key]


class _Scorer:
    """Scores one chunk of (layer, strength) points of one question with one ``model.points`` call."""

    def __init__(self, model, dirs, factor, positions, yes_ids, no_ids, full_vocab, const):
        self.model, self.dirs, self.factor, self.positions = model, dirs, factor, positions
        self.v_norm = np.linalg.norm(dirs, axis=1).astype(np.float64)  # [n_layer]
        self.full_vocab, self.const = full_vocab, const
        # Only the Yes/No logits come back; with full_vocab the engine also returns each row's
        # full-vocabulary log-sum-exp and argmax, so no row of n_vocab floats reaches Python.
        self.gather = list(yes_ids) + list(no_ids)
        self.cols = (list(range(len(yes_ids))), list(range(len(yes_ids), len(self.gather))))
        self._clean: dict[tuple, dict] = {}  # question -> scores of its uninjected point

    def _score(self, ids: list[int], points: list[list[Injection]]) -> dict:
        if not self.full_vocab:
            return yes_no(self.model.points(ids, points, vocab_ids=self.gather), *self.cols)  # [n_points, n_gather]
        logits, stats = self.model.points(ids, points, vocab_ids=self.gather, stats=True)  # [n, n_gather], [n, 3]
        return yes_no(logits, *self.cols, stats=stats)

    def __call__(self, q: Question, ids: list[int], part: list[tuple]) -> list[dict]:
        if (q.kind, q.text) not in self._clean:  # strength 0 adds nothing: one decode for all of them
            self._clean[(q.kind, q.text)] = self._score(ids, [[]])
        clean = self._clean[(q.kind, q.text)]
        live = [i for i, (L, s) in enumerate(part) if s * self.factor[L] != 0]
        points = [[Injection(self.dirs, part[i][0], part[i][1] * self.factor[part[i][0]], self.positions)]
                  for i in live]
        sc = self._score(ids, points) if points else None
        where = {i: k for k, i in enumerate(live)}
        rows = []
        for i, (L, s) in enumerate(part):
            src, k = (sc, where[i]) if i in where else (clean, 0)
            top = "" if src["top"] is None else self.model.token_str(int(src["top"][k]))
            rows.append({"question_kind": q.kind, "question": q.text, "layer": L, "strength": s,
                         "b": float(src["b"][k]), "p_yes": float(src["p_yes"][k]), "p_no": float(src["p_no"][k]),
                         "top_token": top, "added_norm": float(abs(s) * self.factor[L] * self.v_norm[L]),
                         **self.const})
        return rows


def _chunk_size(model, ids: list[int], positions: Positions, chunk: Optional[int]) -> int:
    """Points per ``model.points`` call (and per CSV write): what one call holds, at most ``chunk``."""
    touched = np.flatnonzero(positions.mask_for(len(ids)))
    first = int(touched[0]) if len(touched) else len(ids) - 1
    step = points_per_call(model, first, len(ids) - first)
    return step if chunk is None else min(step, int(chunk))


def check_questions(questions) -> list[Question]:
    if questions is None:
        questions = {"introspection": INTROSPECTION, "control": CONTROL_NO[0]}
    if not isinstance(questions, dict) or not questions:
        raise ValueError("questions must be a dict {kind: question or list of questions}")
    qs, seen = [], set()
    for kind, value in questions.items():
        for q in as_questions(kind, value):
            if (q.kind, q.text) in seen:
                raise ValueError(f"question {q.text!r} is listed twice under {q.kind!r}")
            seen.add((q.kind, q.text))
            qs.append(q)
    return qs


# -- analysis -----------------------------------------------------------------------------------

def analyze(rows, introspection: str = "introspection", control: Optional[Sequence[str]] = None) -> dict:
    """Compare the introspection answer with the control answers at each (layer, strength).

    control: the kinds that count as controls (default: every kind but ``introspection``).
    Per point: ``introspection_b`` (mean over introspection questions), ``control_b`` (mean over
    control questions), ``diff`` = introspection_b - control_b, and ``exceeds_all``: whether
    introspection_b is above every control question's b.
    ``correlation``: Pearson r between introspection_b and control_b over the grid points
    (near 1: the injection moves both the same way, as the follow-up post found).
    """
    recs = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    kinds = {r["question_kind"] for r in recs}
    if introspection not in kinds:
        raise ValueError(f"no rows of kind {introspection!r}; pass introspection=<kind>")
    ctrl = set(kinds - {introspection}) if control is None else set(control)
    if not ctrl & kinds:
        raise ValueError("no control rows; run the sweep with a control question or pass control=[kinds]")
    intro_b: dict[tuple, list] = {}
    ctrl_b: dict[tuple, list] = {}
    for r in recs:
        point = (int(r["layer"]), float(r["strength"]))
        if r["question_kind"] == introspection:
            intro_b.setdefault(point, []).append(float(r["b"]))
        elif r["question_kind"] in ctrl:
            ctrl_b.setdefault(point, []).append(float(r["b"]))
    points = []
    for point in sorted(set(intro_b) & set(ctrl_b)):
        ib, cb = float(np.mean(intro_b[point])), np.asarray(ctrl_b[point])
        points.append({"layer": point[0], "strength": point[1], "introspection_b": ib,
                       "control_b": float(cb.mean()), "control_min": float(cb.min()), "control_max": float(cb.max()),
                       "diff": ib - float(cb.mean()), "exceeds_all": bool(ib > cb.max())})
    x = np.asarray([p["introspection_b"] for p in points])
    y = np.asarray([p["control_b"] for p in points])
    r = float("nan")
    if len(points) >= 2 and x.std() > 0 and y.std() > 0:
        r = float(np.corrcoef(x, y)[0, 1])
    return {"points": points, "correlation": r, "n_points": len(points),
            "fraction_exceeds": float(np.mean([p["exceeds_all"] for p in points])) if points else float("nan")}


def favourable_point(rows, introspection: str = "introspection") -> tuple[int, float]:
    """The (layer, strength) that figures slice the grid at: the point most favourable to the
    introspection reading, where introspection b exceeds the controls' mean b the most (ties:
    the lower layer, then the lower strength). With no control rows, where introspection b is
    highest."""
    recs = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    if len({r["question_kind"] for r in recs}) > 1:
        pts = analyze(recs, introspection)["points"]
        best = max(pts, key=lambda p: (p["diff"], -p["layer"], -p["strength"]))
    else:
        best = max(recs, key=lambda r: (float(r["b"]), -int(r["layer"]), -float(r["strength"])))
    return int(best["layer"]), float(best["strength"])


def summary_lines(an: dict) -> list[str]:
    """``analyze``'s result in three lines of text."""
    return [f"points: {an['n_points']}",
            f"correlation of introspection b with control b: {an['correlation']:.3f}",
            f"points where introspection b exceeds every control: {an['fraction_exceeds']:.1%}"]


def figures(rows, layer: Optional[int] = None, strength: Optional[float] = None) -> dict:
    """The heatmap, and b against strength and against layer, sliced at ``favourable_point`` unless
    given: {file: draw(path)}."""
    best_layer, best_strength = favourable_point(rows)
    why = "(the grid point where introspection b exceeds the controls' mean b most)"
    return {"heatmap.png": lambda p: plots.heatmaps(rows, p),
            "strength.png": lambda p: plots.b_vs_strength(rows, p, best_layer if layer is None else layer,
                                                          why if layer is None else ""),
            "layer.png": lambda p: plots.b_vs_layer(rows, p, best_strength if strength is None else strength,
                                                    why if strength is None else "")}


def analyse(rows: list, context: dict) -> Analysis:
    an = analyze(rows)
    layer, strength = favourable_point(rows)
    intro = [r for r in rows if r["question_kind"] == "introspection"]
    head = {"model": context.get("model"), "vector": context.get("vector", ""), "n_points": len(rows),
            "n_control_questions": len({r["question"] for r in rows if r["question_kind"] != "introspection"}),
            "introspection_control_correlation": an["correlation"],
            "fraction_introspection_exceeds_all_controls": an["fraction_exceeds"],
            "max_introspection_b": max(r["b"] for r in intro),
            "baseline_introspection_b": next((r["b"] for r in intro if r["strength"] == 0), None),
            "strength_plot_layer": layer, "layer_plot_strength": strength,
            "slice_rule": "the (layer, strength) where introspection b exceeds the controls' mean b the most"}
    return Analysis({}, head, summary_lines(an), figures(rows))


# -- end to end: `pyintro run` ----------------------------------------------------------------------

QUICK = {"layers": 8, "strengths": (0.0, 2.0, 4.0, 8.0, 12.0), "controls": 4}


def prepare(model, vector=None, layers=None, strengths=None, controls: Optional[int] = None,
            questions: Optional[dict] = None, positions="last", scale: str = "raw", quick: bool = False, out_dir=None,
            shard=None, progress=None) -> Work:
    """`pyintro run`'s work: ``vector`` (a ConceptVector, an array or a control-vector file; default:
    the all-caps vector, "HI! HOW ARE YOU?" minus "Hi! How are you?", extracted here and saved as
    caps.gguf in ``out_dir``) over ``layers``
    (default all) x ``strengths`` for the introspection question and the first ``controls``
    control questions (default all 12). ``quick``: 8 layers, 5 strengths, 4 controls."""
    if quick:
        layers = evenly_spaced(model.n_layer, QUICK["layers"]) if layers is None else layers
        strengths = QUICK["strengths"] if strengths is None else strengths
        controls = QUICK["controls"] if controls is None else controls
    strengths = RUN_STRENGTHS if strengths is None else strengths
    if questions is None:
        questions = {"introspection": INTROSPECTION, "control": CONTROL_NO[:controls] if controls else CONTROL_NO}
    files = []
    if isinstance(vector, (str, Path)):
        vector = load_for(vector, model)
    elif vector is None:
        vector = contrast(model, CAPS[0], CAPS[1], name="caps")
        if out_dir is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # layer 0 is saved for pyintro; llama.cpp ignores it
                vector.save(Path(out_dir) / "caps.gguf")
            files = ["caps.gguf"]
    work = design(model, vector, layers, strengths, questions, positions, scale, shard=shard)
    work.context.update(vector=str(getattr(vector, "name", "") or ""), files=files)
    return work


EXPERIMENT = Experiment("run", "the follow-up post: the introspection question's Yes/No belief beside control questions",
                        SCHEMA, SAME_ON_RESUME, prepare, analyse, QUICK, ("results.csv", ("question_kind", "question",
                                                                                      "layer", "strength"), "b"),
                        mode="Yes/No beliefs")
