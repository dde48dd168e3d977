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

from pyintro.experiments.protocol import Experiment, Schema, Stage, Work
from pyintro.experiments import sweep_analysis as analysis
from pyintro.experiments.questions import CONTROL_NO, CONTROL_YES, INTROSPECTION, Question, as_questions, prompt_ids
from pyintro.experiments.stats import evenly_spaced, shard_of
from pyintro.extract import contrast
from pyintro.norms import strength_factors
from pyintro.injection import Injection, Layers, Positions, Strengths, as_positions
from pyintro.model import points_per_call
from pyintro.readout import YesNo, answer_words, yes_no
from pyintro.vectors import directions, load_for, random_like

__all__ = ["EXPERIMENT", "sweep"]

SCHEMA = Schema("vector question_kind question layer:int strength:float b:float b_pooled:float p_yes:float "
                "p_no:float top_token added_norm:float model quant_type",
                key=("vector", "question_kind", "question", "layer", "strength"), need="b")
COLUMNS = SCHEMA.columns
# Everything that changes a point's value: it must match between a CSV's sidecar and a resumed sweep.
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "vector", "vector_sha256", "positions", "scale",
                  "reference_norms", "full_vocab", "answers", "prompts", "numerics", "prompt_format", "n_random",
                  "seed")
DEFAULT_STRENGTHS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
CAPS = ("HI! HOW ARE YOU?", "Hi! How are you?")
RUN_STRENGTHS = tuple(float(s) for s in range(16))


def design(model, vector, layers=None, strengths=DEFAULT_STRENGTHS, questions=None, positions="last",
           scale: str = "raw", seed: int = 0, answers="default", full_vocab: bool = True, chunk=None,
           shard=None, n_random: int = 0) -> Work:
    """The sweep's work: for ``vector`` and ``n_random`` norm-matched random vectors
    (``random_like``, seeds ``seed + 1``...), each question's (layer, strength) grid in chunks of
    one ``model.points`` call (at most ``chunk`` points); a shard takes every N-th layer."""
    dirs = directions(vector, model.n_layer, model.n_embd)  # [n_layer, n_embd]
    layers, strengths = Layers.of(layers, model.n_layer), Strengths.of(strengths)
    qs, positions = check_questions(questions), as_positions(positions)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) or n_random < 0:
        raise ValueError(f"n_random must be a non-negative int, got {n_random!r}")
    main, pooled = YesNo(model, answers), YesNo(model, "pooled")
    prompts = [prompt_ids(model, q) for q in qs]
    for p in prompts:
        positions.mask_for(len(p))  # refuses positions outside a prompt
    factor, ref = strength_factors(model, dirs, layers, scale, prompts)  # [n_layer], [n_layer] or None
    name = str(getattr(vector, "name", "") or "") or "vector"
    if name.startswith("random "):
        raise ValueError(f"the vector's name {name!r} is kept for the null conditions; rename the vector")
    meta = {"vector": name, "vector_sha256": hashlib.sha256(dirs.tobytes()).hexdigest(),
            "vector_method": getattr(vector, "method", None), "seed": int(seed), "n_random": int(n_random),
            "positions": str(positions), "scale": scale, "full_vocab": bool(full_vocab),
            "answers": main.describe(model), "pooled": pooled.describe(model),
            "prompts": [{"kind": q.kind, "text": q.text, "system": q.system, "n_tokens": len(p),
                         "prompt_text": model.detokenize(p)} for q, p in zip(qs, prompts)],
            "grid": {"layers": list(layers), "strengths": list(strengths)},
            "reference_norms": None if ref is None else [float(x) for x in ref]}
    grid = [(L, s) for L in shard_of(list(layers), shard) for s in strengths]
    steps = [_chunk_size(model, ids, positions, chunk) for ids in prompts]
    meta["points_per_batch"] = steps
    const = {"model": Path(model.path).name, "quant_type": model.quant_type}
    clean: dict = {}  # question -> its uninjected scores, shared by every vector
    vectors = [(name, dirs)] + [(f"random {i}", random_like(dirs, seed=int(seed) + i).directions)
                                for i in range(1, n_random + 1)]
    chunks = [(v, q, ids, grid[i:i + step]) for v, _ in vectors for q, ids, step in zip(qs, prompts, steps)
              for i in range(0, len(grid), step)]
    scorers = {v: _Scorer(model, d, factor, positions, main, pooled, full_vocab, const, clean)
               for v, d in vectors}
    stage = Stage(lambda done: chunks, lambda c, done: scorers[c[0]](*c), lambda c: [(c[0], c[1].kind, c[1].text, L, s)
                                                                                    for L, s in c[3]], desc="sweep")
    context = {"grid": [[q.kind, q.text] for q in qs], "vector": name, "vectors": [v for v, _ in vectors],
               "answers": main.describe(model)}
    return Work(meta, [stage], context, units=len(layers), prompts=prompts)


def sweep(model, vector, layers: Optional[Sequence[int]] = None, strengths: Sequence[float] = DEFAULT_STRENGTHS,
          questions: Optional[dict] = None, positions="last", scale: str = "raw", out=None, resume: bool = False,
          progress=None, seed: int = 0, yes=None, no=None, full_vocab: bool = True, chunk: Optional[int] = None,
          shard=None, answers="default", n_random: int = 0) -> list[dict]:
    """Yes/No beliefs for every (vector, question, layer, strength): a list of rows, in grid order.

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
    answers:   the answer tokens of b (``readout.answer_words``: "default", "pooled", or a
               (yes, no) pair of spelling lists; ``yes`` and ``no`` give that pair too); b_pooled is
               always b over the pooled spellings.
    n_random:  also sweep this many norm-matched random vectors (the null), named "random 1"...
    out:       CSV path; rows are appended chunk by chunk (flush + fsync), with a sidecar
               ``out + ".json"``. resume=True keeps its rows and computes only the missing points.
    progress:  see ``pyintro.progress``. seed: the random vectors' (``random_like``, seed + i).
    full_vocab: True: p_yes / p_no are softmax probabilities over the full vocabulary and
               top_token the most likely next token (computed in the engine; only the Yes/No
               logits are copied out). False: p_yes + p_no = 1 and top_token is "". b is the same.
    chunk:     at most this many points per engine call (and per CSV write).
    shard:     (k, n): every n-th layer from the k-th.
    """
    if yes is not None or no is not None:
        answers = answer_words(model, "default") if yes is None or no is None else (yes, no)
        answers = (yes or answers[0], no or answers[1])
    work = design(model, vector, layers, strengths, questions, positions, scale, seed, answers, full_vocab, chunk,
                  shard, n_random)
    by_key = {SCHEMA.key(r): r for r in EXPERIMENT.execute(model, work, out, resume, progress, shard)}
    grid = work.meta["grid"]
    keys = [(v, k, q, L, s) for v in work.context["vectors"] for k, q in work.context["grid"] for L in grid["layers"]
            for s in grid["strengths"]]
    return [by_key[k] for k in keys if k in by_key]


class _Scorer:
    """Scores one chunk of (layer, strength) points of one vector and question with one
    ``model.points`` call: b over the chosen answer tokens and over the pooled ones, from one
    gather of both sets' logits."""

    def __init__(self, model, dirs, factor, positions, main, pooled, full_vocab, const, clean: dict):
        self.model, self.dirs, self.factor, self.positions = model, dirs, factor, positions
        self.v_norm = np.linalg.norm(dirs, axis=1).astype(np.float64)  # [n_layer]
        self.full_vocab, self.const = full_vocab, const
        # Only these logits come back; with full_vocab the engine also returns each row's
        # full-vocabulary log-sum-exp and argmax, so no row of n_vocab floats reaches Python.
        self.gather = list(dict.fromkeys(main.ids + pooled.ids))
        col = {t: i for i, t in enumerate(self.gather)}
        self.cols = ([col[t] for t in main.yes], [col[t] for t in main.no])
        self.pooled_cols = ([col[t] for t in pooled.yes], [col[t] for t in pooled.no])
        self.clean = clean  # question -> the scores of its uninjected point (decoded once, shared)

    def _score(self, ids: list[int], points: list[list[Injection]]) -> dict:
        if self.full_vocab:
            logits, stats = self.model.points(ids, points, vocab_ids=self.gather, stats=True)  # [n, n_gather], [n, 3]
        else:
            logits, stats = self.model.points(ids, points, vocab_ids=self.gather), None
        out = yes_no(logits, *self.cols, stats=stats)
        out["b_pooled"] = yes_no(logits, *self.pooled_cols)["b"]
        return out

    def __call__(self, vector: str, q: Question, ids: list[int], part: list[tuple]) -> list[dict]:
        if (q.kind, q.text) not in self.clean:  # strength 0 adds nothing: one decode for all of them
            self.clean[(q.kind, q.text)] = self._score(ids, [[]])
        clean = self.clean[(q.kind, q.text)]
        live = [i for i, (L, s) in enumerate(part) if s * self.factor[L] != 0]
        points = [[Injection(self.dirs, part[i][0], part[i][1] * self.factor[part[i][0]], self.positions)]
                  for i in live]
        sc = self._score(ids, points) if points else None
        where = {i: k for k, i in enumerate(live)}
        rows = []
        for i, (L, s) in enumerate(part):
            src, k = (sc, where[i]) if i in where else (clean, 0)
            top = "" if src["top"] is None else self.model.token_str(int(src["top"][k]))
            rows.append({"vector": vector, "question_kind": q.kind, "question": q.text, "layer": L, "strength": s,
                         "b": float(src["b"][k]), "b_pooled": float(src["b_pooled"][k]),
                         "p_yes": float(src["p_yes"][k]), "p_no": float(src["p_no"][k]), "top_token": top,
                         "added_norm": float(abs(s) * self.factor[L] * self.v_norm[L]), **self.const})
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


# -- end to end: `pyintro run` ----------------------------------------------------------------------

QUICK = {"layers": 8, "strengths": (0.0, 2.0, 4.0, 8.0, 12.0), "controls": 4, "controls_yes": 2, "random": 1}


def prepare(model, vector=None, layers=None, strengths=None, controls: Optional[int] = None,
            yes_controls: Optional[int] = None,
            questions: Optional[dict] = None, positions="last", scale: str = "raw", n_random: Optional[int] = None,
            answers="default", quick: bool = False, seed: int = 0, out_dir=None, shard=None, progress=None) -> Work:
    """`pyintro run`'s work: ``vector`` (a ConceptVector, an array or a control-vector file; default:
    the all-caps vector, "HI! HOW ARE YOU?" minus "Hi! How are you?", extracted here and saved as
    caps.gguf in ``out_dir``) and ``n_random`` norm-matched random vectors (default 2) over
    ``layers`` (default all) x ``strengths`` (default 0..15) for the introspection question, the
    first ``controls`` control questions whose answer is No (default all 12) and the first
    ``yes_controls`` whose answer is Yes (default all 5). ``quick``: 8 layers, 5 strengths, 4 + 2
    controls, 1 random vector."""
    if quick:
        layers = evenly_spaced(model.n_layer, QUICK["layers"]) if layers is None else layers
        strengths = QUICK["strengths"] if strengths is None else strengths
        controls = QUICK["controls"] if controls is None else controls
        n_random = QUICK["random"] if n_random is None else n_random
    strengths = RUN_STRENGTHS if strengths is None else strengths
    n_yes = (QUICK["controls_yes"] if quick else len(CONTROL_YES)) if yes_controls is None else yes_controls
    if questions is None:
        questions = {"introspection": INTROSPECTION, "control": CONTROL_NO[:controls] if controls else CONTROL_NO}
        if n_yes:
            questions["control_yes"] = CONTROL_YES[:n_yes]
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
    work = design(model, vector, layers, strengths, questions, positions, scale, seed, answers, shard=shard,
                  n_random=2 if n_random is None else n_random)
    yes, no = work.meta["answers"]["yes"], work.meta["answers"]["no"]
    work.context.update(files=files, answer_label="b = logit(" + "|".join(map(repr, yes)) + ") - logit(" +
                        "|".join(map(repr, no)) + ")")
    return work


EXPERIMENT = Experiment("run",
                        "the follow-up post: the introspection question's Yes/No belief beside control questions",
                        SCHEMA, SAME_ON_RESUME, prepare, analysis.analyse, QUICK,
                        ("cells.csv", ("vector", "layer", "strength"), "specific"), mode="Yes/No beliefs")
