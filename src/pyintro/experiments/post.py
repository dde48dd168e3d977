"""The follow-up post's experiment: the Yes/No belief over a grid of (question, layer,
strength), the introspection question beside control questions whose true answer is fixed.

One row per point (tidy), so ``pd.DataFrame(rows)`` or ``pd.read_csv(out)`` gives a table:

    question_kind, question, layer, strength, b, p_yes, p_no, top_token, added_norm,
    vector, model, quant_type

The (layer, strength) points of one question go through ``model.points`` in chunks of one
engine call each; with ``out`` set, each chunk is appended to a CSV (flushed and fsynced) as
soon as it is done, and ``resume=True`` picks up where an interrupted sweep stopped. Ctrl-C
stops at the end of the chunk in flight (``pyintro.progress.Interrupted``). Points whose
strength is 0 add nothing: they all take the question's uninjected belief, decoded once.

Note on numerics (measured on SmolLM2-135M Q4_1, CPU): an injected point's b is not a smooth
function of its inputs. Scaling the strength by 1 + 1e-6 moved b by up to 0.02, by 1 + 1e-4 up
to 0.17 (the quantized matmuls round activations to 8 bits, and a flipped rounding grows with
depth), so read differences in b below ~0.2 at a single point as noise. On one machine the
sweep is exact: a batch-invariant Model (the default) gives every point the value it has
alone, whatever chunk it is decoded in, so a resumed or sharded sweep equals an uninterrupted
one bit for bit. Across CPUs see the README's "Numerics".
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION, Question, as_questions, prompt_ids
from pyintro.injection import Injection, layer_list, strength_list
from pyintro.model import points_per_call
from pyintro.readout import scores, yes_no_ids
from pyintro.results import Table, convert, provenance, run_chunks
from pyintro.vectors import directions, strength_factors

COLUMNS = ["question_kind", "question", "layer", "strength", "b", "p_yes", "p_no", "top_token",
           "added_norm", "vector", "model", "quant_type"]
INTS, FLOATS = ("layer",), ("strength", "b", "p_yes", "p_no", "added_norm")
# Everything that changes a point's value; it must match between a CSV's sidecar and a sweep
# resuming into it.
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "vector", "vector_sha256", "positions", "scale",
                  "reference_norms", "full_vocab", "yes_ids", "no_ids", "prompts", "numerics", "prompt_format")

DEFAULT_STRENGTHS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def key(row: dict) -> tuple:
    return (row["question_kind"], row["question"], int(row["layer"]), float(row["strength"]))


def parse_row(row: dict) -> dict:
    return convert(row, INTS, FLOATS)


def sweep(
    model,
    vector,
    layers: Optional[Sequence[int]] = None,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    questions: Optional[dict] = None,
    positions="last",
    scale: str = "raw",
    out=None,
    resume: bool = False,
    progress=None,
    seed: int = 0,
    yes: Optional[Sequence[str]] = None,
    no: Optional[Sequence[str]] = None,
    full_vocab: bool = True,
    chunk: Optional[int] = None,
) -> list[dict]:
    """Yes/No beliefs for every (question, layer, strength): a list of rows, in grid order.

    vector:    a ConceptVector (anything with ``.directions``) or an array [n_layer, n_embd].
    layers:    blocks to inject into (default all).
    questions: {kind: str | Question | list of them}; default one introspection question and
               one control question (1+1=3). Strings get the introspection system prompt.
    positions: "last", "all", or int k (token k onward; the prompt before k is decoded once).
    scale:     "raw": add strength * v[layer].
               "relative": add strength * R[layer] * v[layer] / |v[layer]|, R[layer] being the
               mean residual norm at that layer over the questions' prompt tokens (first token
               left out, see ``vectors.residual_norms``), so a strength means the same at every
               layer and the same vector is added for every question. ``added_norm`` records |added|.
    out:       CSV path; rows are appended chunk by chunk (flush + fsync). A sidecar
               ``out + ".json"`` records versions, model, decode settings, vector, prompts and grid.
               resume=False overwrites ``out``; resume=True keeps its rows and computes only
               the missing points (key: question_kind, question, layer, strength).
    progress:  see ``pyintro.progress`` (None: a bar in a terminal; False: nothing; a callable).
    seed:      recorded in the sidecar (the sweep itself is deterministic; pass the seed you
               gave ``random_like`` for a null-control sweep).
    full_vocab: True: p_yes / p_no are softmax probabilities over the full vocabulary and
               top_token is the most likely next token (the engine reduces each row to its
               log-sum-exp and argmax; only the Yes/No logits are copied out). False: p_yes /
               p_no are normalised over the Yes and No tokens only (p_yes + p_no = 1) and
               top_token is "". b is the same either way.
    chunk:     at most this many points per engine call (and per CSV write).
    """
    dirs = directions(vector, model.n_layer, model.n_embd)  # [n_layer, n_embd]
    layers = layer_list(layers, model.n_layer)
    strengths = strength_list(strengths)
    qs = check_questions(questions)
    _check_positions(positions)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    yes_ids, no_ids = yes_no_ids(model, yes, no)
    prompts = [prompt_ids(model, q) for q in qs]
    if isinstance(positions, (int, np.integer)) and not isinstance(positions, bool):
        short = [len(p) for p in prompts if not -len(p) <= positions < len(p)]
        if short:
            raise ValueError(f"positions={positions} is outside a prompt of {short[0]} tokens")
    factor, ref = strength_factors(model, dirs, layers, scale, prompts)  # [n_layer], [n_layer] or None

    name = str(getattr(vector, "name", "") or "")
    meta = dict(provenance(model), **{
        "vector": name, "vector_sha256": hashlib.sha256(dirs.tobytes()).hexdigest(),
        "vector_method": getattr(vector, "method", None), "seed": int(seed),
        "positions": positions if isinstance(positions, str) else int(positions), "scale": scale,
        "full_vocab": bool(full_vocab), "yes_ids": yes_ids, "no_ids": no_ids,
        "yes_tokens": [model.token_str(t) for t in yes_ids], "no_tokens": [model.token_str(t) for t in no_ids],
        "prompts": [{"kind": q.kind, "text": q.text, "system": q.system, "n_tokens": len(p),
                     "prompt_text": model.detokenize(p)} for q, p in zip(qs, prompts)],
        "grid": {"layers": layers, "strengths": strengths},
        "reference_norms": None if ref is None else [float(x) for x in ref],
        "columns": COLUMNS,
    })
    grid = [(L, s) for L in layers for s in strengths]
    steps = [_chunk_size(model, len(ids), positions, chunk) for ids in prompts]
    meta["points_per_batch"] = steps
    chunks = [(q, ids, grid[start:start + step]) for q, ids, step in zip(qs, prompts, steps)
              for start in range(0, len(grid), step)]
    const = {"vector": name, "model": Path(model.path).name, "quant_type": model.quant_type}
    runner = _Runner(model, dirs, factor, positions, yes_ids, no_ids, full_vocab, const)
    with Table(out, COLUMNS, key, parse_row, meta, SAME_ON_RESUME, resume) as table:
        run_chunks(table, chunks, lambda c: runner(*c), lambda c: [(c[0].kind, c[0].text, L, s) for L, s in c[2]],
                   progress, desc="sweep")
    return [table.done[(q.kind, q.text, L, s)] for q in qs for L in layers for s in strengths]


class _Runner:
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
            return scores(self.model.points(ids, points, vocab_ids=self.gather), *self.cols)  # [n_points, n_gather]
        logits, stats = self.model.points(ids, points, vocab_ids=self.gather, stats=True)  # [n, n_gather], [n, 3]
        return scores(logits, *self.cols, stats=stats)

    def __call__(self, q: Question, ids: list[int], part: list[tuple]) -> list[dict]:
        # Strength 0 adds nothing: those points are the question's clean point, decoded once.
        # It saves their decodes and gives one b for s = 0 at every layer.
        if (q.kind, q.text) not in self._clean:
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


def telling_slice(rows, introspection: str = "introspection") -> tuple[int, float]:
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


# -- checks -------------------------------------------------------------------------------------

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


def _check_positions(positions) -> None:
    if isinstance(positions, str) and positions in ("last", "all"):
        return
    if isinstance(positions, (int, np.integer)) and not isinstance(positions, bool):
        return
    raise ValueError(f"positions must be 'last', 'all' or an int k (token k onward), got {positions!r}")


def _chunk_size(model, n_tokens: int, positions, chunk: Optional[int]) -> int:
    """Points per ``model.points`` call (and per CSV write): what one call holds, at most ``chunk``."""
    if positions == "last":
        first = n_tokens - 1
    elif positions == "all":
        first = 0
    else:
        first = int(positions) + n_tokens if positions < 0 else int(positions)
    step = points_per_call(model, first, n_tokens - first)
    return step if chunk is None else min(step, int(chunk))


# -- end to end ---------------------------------------------------------------------------------

CAPS = ("HI! HOW ARE YOU?", "Hi! How are you?")
RUN_STRENGTHS = tuple(float(s) for s in range(16))


def run(model, out_dir, strengths: Sequence[float] = RUN_STRENGTHS, layers: Optional[Sequence[int]] = None,
        controls: Optional[int] = None, resume: bool = False, progress=None) -> dict:
    """The follow-up post's experiment end to end, into ``out_dir`` (which must exist).

    Extracts the all-caps vector ("HI! HOW ARE YOU?" minus "Hi! How are you?"), sweeps
    ``layers`` (default all) x ``strengths`` for the introspection question and the first
    ``controls`` control questions (default all 12), then writes caps.gguf, results.csv (+ its
    sidecar), heatmap.png, strength.png, layer.png and summary.json. Returns the summary.
    """
    import time
    import warnings

    from pyintro import plots
    from pyintro.extract import contrast
    from pyintro.results import write_json

    start = time.perf_counter()
    out_dir = Path(out_dir)
    vector = contrast(model, CAPS[0], CAPS[1], name="caps")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layer 0 is saved for pyintro; llama.cpp ignores it
        vector.save(out_dir / "caps.gguf")
    ctrl = CONTROL_NO[:controls] if controls else CONTROL_NO
    rows = sweep(model, vector, layers=layers, strengths=strengths,
                 questions={"introspection": INTROSPECTION, "control": ctrl},
                 out=out_dir / "results.csv", resume=resume, progress=progress)
    an = analyze(rows)
    layer, strength = telling_slice(rows)
    plots.heatmaps(rows, out_dir / "heatmap.png")
    plots.b_vs_strength(rows, out_dir / "strength.png")  # both slice at telling_slice, and say so
    plots.b_vs_layer(rows, out_dir / "layer.png")
    intro = [r for r in rows if r["question_kind"] == "introspection"]
    summary = {
        "model": Path(model.path).name, "quant_type": model.quant_type, "vector": "caps", "n_points": len(rows),
        "n_control_questions": len(ctrl), "introspection_control_correlation": an["correlation"],
        "fraction_introspection_exceeds_all_controls": an["fraction_exceeds"],
        "max_introspection_b": max(r["b"] for r in intro),
        "baseline_introspection_b": next((r["b"] for r in intro if r["strength"] == 0), None),
        "strength_plot_layer": layer, "layer_plot_strength": strength,
        "slice_rule": "the (layer, strength) where introspection b exceeds the controls' mean b the most",
        "report": summary_lines(an),
        "elapsed_s": round(time.perf_counter() - start, 2),
        "files": ["caps.gguf", "results.csv", "heatmap.png", "strength.png", "layer.png", "summary.json"],
        "provenance": provenance(model),
    }
    write_json(out_dir / "summary.json", summary)
    return summary


def summary_lines(an: dict) -> list[str]:
    """``analyze``'s result in three lines of text."""
    return [
        f"points: {an['n_points']}",
        f"correlation of introspection b with control b: {an['correlation']:.3f}",
        f"points where introspection b exceeds every control: {an['fraction_exceeds']:.1%}",
    ]


def read(path) -> list[dict]:
    """A sweep CSV (or a merged one) as rows with numeric columns converted."""
    from pyintro.results import read_rows

    return read_rows(path, INTS, FLOATS)
