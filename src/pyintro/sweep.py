"""Sweeps: the Yes/No belief over a grid of (question, layer, strength), batched.

One row per point (tidy), so ``pd.DataFrame(rows)`` or ``pd.read_csv(out)`` gives a table:

    question_kind, question, layer, strength, b, p_yes, p_no, top_token, added_norm,
    vector, model, quant_type

All (layer, strength) points of one question go through ``model.points`` in chunks that
fit one batch; with ``out`` set, each chunk is appended to a CSV (flushed and fsynced) as
soon as it is done, and ``resume=True`` picks up where an interrupted sweep stopped. Ctrl-C
stops at the end of the chunk in flight (``SweepInterrupted``). Points whose strength is 0 add
nothing: they all take the question's uninjected belief, decoded once per question.

Note on numerics (measured on SmolLM2-135M Q4_1, CPU): an injected point's b is not a smooth
function of its inputs. Scaling the strength by 1 + 1e-6 moved b by up to 0.02, by 1 + 1e-4 up
to 0.17 (the quantized matmuls round activations to 8 bits, and a flipped rounding grows with
depth), so read differences in b below ~0.2 at a single point as noise. On one machine the
sweep is exact: a batch-invariant Model (the default) gives every point the value it has
alone, whatever chunk it is decoded in, so a resumed or sharded sweep equals an uninterrupted
one bit for bit. Across CPUs see the README's "Numerics".
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import io
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from pyintro.injection import Injection, layer_list
from pyintro.questions import INTROSPECTION, CONTROL_NO, Question, as_questions, prompt_ids
from pyintro.readout import scores, yes_no_ids

COLUMNS = ["question_kind", "question", "layer", "strength", "b", "p_yes", "p_no", "top_token",
           "added_norm", "vector", "model", "quant_type"]
_INTS = {"layer"}
_FLOATS = {"strength", "b", "p_yes", "p_no", "added_norm"}
# Everything that changes a point's value; it must match between a CSV's sidecar and a sweep
# resuming into it.
_SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "vector", "vector_sha256", "positions", "scale",
                   "reference_norms", "full_vocab", "yes_ids", "no_ids", "prompts", "numerics")

DEFAULT_STRENGTHS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


# -- vectors ------------------------------------------------------------------------------------

def directions(vector, n_layer: Optional[int] = None, n_embd: Optional[int] = None) -> np.ndarray:
    """The per-layer directions of a ConceptVector-like object or array: float32 [n_layer, n_embd]."""
    v = getattr(vector, "directions", vector)
    try:
        arr = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("vector must be a ConceptVector or an array [n_layer, n_embd]") from None
    if arr.ndim != 2:
        raise ValueError(f"vector must be [n_layer, n_embd], got shape {arr.shape}; stack one row per layer")
    if n_layer is not None and arr.shape != (n_layer, n_embd):
        raise ValueError(f"vector has shape {arr.shape}, the model needs ({n_layer}, {n_embd})")
    if not np.all(np.isfinite(arr)):
        raise ValueError("vector contains NaN or Inf")
    return arr


def random_like(vector, seed: int = 0) -> np.ndarray:
    """Null control: random directions [n_layer, n_embd] with the same per-layer norms as ``vector``.

    Each row is a Gaussian sample rescaled to that layer's norm; the same seed gives the same array.
    """
    d = directions(vector)
    norms = np.linalg.norm(d, axis=1, keepdims=True)  # [n_layer, 1]
    g = np.random.default_rng(seed).standard_normal(d.shape)  # [n_layer, n_embd]
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return (g * norms).astype(np.float32)


def residual_norms(model, prompts: Sequence[Sequence[int]]) -> np.ndarray:
    """Mean L2 norm of the residual stream after each block over the prompts' tokens: [n_layer].

    The first token of each prompt is left out: it is an attention sink whose norm is an
    outlier (about 25000 from layer 11 on in SmolLM2-135M, against a few hundred elsewhere).
    """
    per_token = []
    for ids in prompts:
        cap = model.capture(ids)  # [n_layer, n_tokens, n_embd]
        norms = np.linalg.norm(cap, axis=2)  # [n_layer, n_tokens]
        per_token.append(norms[:, 1:] if norms.shape[1] > 1 else norms)
    return np.concatenate(per_token, axis=1).mean(axis=1)


def strength_factors(model, dirs: np.ndarray, layers: Sequence[int], scale: str, prompts):
    """Multipliers turning a strength into an Injection strength, per layer: ([n_layer], ref).

    "raw": 1 everywhere, ref None. "relative": R[layer] / |v[layer]| with R = ``residual_norms``
    over ``prompts`` (returned as ref), so strength s adds a vector of norm s * R[layer].
    """
    _check_scale(scale)
    if scale == "raw":
        return np.ones(model.n_layer), None
    v_norm = np.linalg.norm(dirs, axis=1).astype(np.float64)  # [n_layer]
    zero = [L for L in layers if v_norm[L] == 0]
    if zero:
        raise ValueError(f"the vector is zero at layer {zero[0]}; relative scale needs a direction there")
    ref = residual_norms(model, prompts)  # [n_layer]
    return np.where(v_norm > 0, ref / np.where(v_norm > 0, v_norm, 1.0), 0.0), ref


# -- the sweep ----------------------------------------------------------------------------------

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
               left out, see ``residual_norms``), so a strength means the same at every layer
               and the same vector is added for every question. ``added_norm`` records |added|.
    out:       CSV path; rows are appended chunk by chunk (flush + fsync). A sidecar
               ``out + ".json"`` records versions, model, vector, prompts and grid.
               resume=False overwrites ``out``; resume=True keeps its rows and computes only
               the missing points (key: question_kind, question, layer, strength).
    progress:  callable(done, total) after each chunk; None: a bar on stderr if it is a
               terminal; False: nothing.
    seed:      recorded in the sidecar (the sweep itself is deterministic; pass the seed you
               gave ``random_like`` for a null-control sweep).
    full_vocab: True: p_yes / p_no are softmax probabilities over the full vocabulary and
               top_token is the most likely next token (full logits rows are copied out).
               False: only the Yes/No logits are gathered; p_yes / p_no are then normalised
               over the Yes and No tokens only (p_yes + p_no = 1) and top_token is "".
               Cost of True on the default model (960-point sweeps, 256-point batches): +3% CPU
               per batch in isolation (copies of 256 x 49152 logits, ~20 ms softmax), +8% wall
               in a quiet 2-thread A/B (4.3 vs 4.0 ms/point), +10-20% CPU on a loaded machine.
               b is the same either way; use False when only b matters.
    chunk:     at most this many points per batch (and per CSV write); default: as many as
               one batch holds (up to model.n_seq_max).
    """
    dirs = directions(vector, model.n_layer, model.n_embd)  # [n_layer, n_embd]
    layers = _check_layers(model, layers)
    strengths = _check_strengths(strengths)
    qs = _check_questions(questions)
    _check_scale(scale)
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
    const = {"vector": name, "model": Path(model.path).name, "quant_type": model.quant_type}
    meta = {
        "pyintro": _version("pyintro"), "llama_cpp_python": _version("llama_cpp_python"),
        "model_path": str(model.path), "model_sha256": model.sha256, "quant_type": model.quant_type,
        "vector": name, "vector_sha256": hashlib.sha256(dirs.tobytes()).hexdigest(),
        "vector_method": getattr(vector, "method", None), "seed": int(seed),
        "positions": positions if isinstance(positions, str) else int(positions), "scale": scale,
        "full_vocab": bool(full_vocab), "yes_ids": yes_ids, "no_ids": no_ids,
        "yes_tokens": [model.token_str(t) for t in yes_ids], "no_tokens": [model.token_str(t) for t in no_ids],
        "prompts": [{"kind": q.kind, "text": q.text, "system": q.system, "n_tokens": len(p)}
                    for q, p in zip(qs, prompts)],
        "grid": {"layers": layers, "strengths": strengths},
        "reference_norms": None if ref is None else [float(x) for x in ref],
        "numerics": model.numerics(),
        "columns": COLUMNS,
    }

    grid = [(L, s) for L in layers for s in strengths]
    steps = [_chunk_size(model, len(ids), positions, chunk) for ids in prompts]
    meta["points_per_batch"] = steps

    done: dict[tuple, dict] = {}
    writer = None
    if out is not None:
        out = Path(out)
        if resume:
            done = {_key(r): r for r in _load_for_resume(out, meta)}
        writer = _CsvAppender(out, fresh=not (resume and out.exists() and out.stat().st_size > 0))
        _write_json(Path(str(out) + ".json"), meta)

    plan = []  # (question, ids, chunk of points, how many of them are missing)
    for q, ids, step in zip(qs, prompts, steps):
        for start in range(0, len(grid), step):
            part = grid[start:start + step]
            missing = sum((q.kind, q.text, L, s) not in done for L, s in part)
            if missing:
                plan.append((q, ids, part, missing))
    total = sum(p[3] for p in plan)
    report = _progress_fn(progress, total)
    run = _Runner(model, dirs, factor, positions, yes_ids, no_ids, full_vocab, const)
    n_done = 0
    try:
        with _SigintAtChunkEnd() as interrupt:
            last = None
            for q, ids, part, _ in plan:
                if q is not last:
                    run.start(ids)
                    last = q
                rows = [r for r in run(q, ids, part) if _key(r) not in done]
                if writer is not None:
                    writer.append(rows)
                for r in rows:
                    done[_key(r)] = r
                n_done += len(rows)
                report(n_done)
                if interrupt.requested and n_done < total:
                    raise SweepInterrupted(n_done, total, out)
    finally:
        if writer is not None:
            writer.close()
        report(None)
    return [done[(q.kind, q.text, L, s)] for q in qs for L in layers for s in strengths]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep at a chunk boundary: every finished chunk is in ``out``."""

    def __init__(self, done: int, total: int, out):
        self.done, self.total, self.out = done, total, out
        saved = f"; they are saved in {out}: resume=True (pyintro: --resume) computes the rest" if out else ""
        super().__init__(f"sweep interrupted after {done} of {total} points{saved}")


class _SigintAtChunkEnd:
    """While a sweep runs in the main thread, the first Ctrl-C is held until the chunk in
    flight is written (at most one batch, about a second); a second Ctrl-C stops at once
    (a resumed sweep drops any half-written row). Elsewhere, SIGINT is left alone."""

    def __init__(self):
        self.requested = False
        self._old = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_SigintAtChunkEnd":
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class _Runner:
    """Scores one chunk of (layer, strength) points of one question with one ``model.points`` call."""

    def __init__(self, model, dirs, factor, positions, yes_ids, no_ids, full_vocab, const):
        self.model, self.dirs, self.factor, self.positions = model, dirs, factor, positions
        self.v_norm = np.linalg.norm(dirs, axis=1).astype(np.float64)  # [n_layer]
        self.full_vocab, self.const = full_vocab, const
        if full_vocab:
            self.gather, self.cols = None, (yes_ids, no_ids)
        else:  # columns of the gathered logits
            self.gather = list(yes_ids) + list(no_ids)
            self.cols = (list(range(len(yes_ids))), list(range(len(yes_ids), len(self.gather))))
        self._clean: dict = {}

    def start(self, ids: list[int]) -> None:
        """Score the question's uninjected point."""
        self._clean = self._score(ids, [[]])

    def _score(self, ids: list[int], points: list[list[Injection]]) -> dict:
        logits = self.model.points(ids, points, vocab_ids=self.gather)  # [n_points, n_vocab or n_gather]
        return scores(logits, *self.cols, full_vocab=self.full_vocab, overwrite=True)

    def __call__(self, q: Question, ids: list[int], part: list[tuple]) -> list[dict]:
        # Strength 0 adds nothing: those points are the question's clean point, decoded once in
        # start(). It saves their decodes and gives one b for s = 0 at every layer.
        live = [i for i, (L, s) in enumerate(part) if s * self.factor[L] != 0]
        points = [[Injection(self.dirs, part[i][0], part[i][1] * self.factor[part[i][0]], self.positions)]
                  for i in live]
        sc = self._score(ids, points) if points else None
        where = {i: k for k, i in enumerate(live)}
        rows = []
        for i, (L, s) in enumerate(part):
            src, k = (sc, where[i]) if i in where else (self._clean, 0)
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
    recs = _records(rows)
    kinds = {r["question_kind"] for r in recs}
    if introspection not in kinds:
        raise ValueError(f"no rows of kind {introspection!r}; pass introspection=<kind>")
    ctrl = set(kinds - {introspection}) if control is None else set(control)
    if not ctrl & kinds:
        raise ValueError("no control rows; run the sweep with a control question or pass control=[kinds]")
    intro_b: dict[tuple, list] = {}
    ctrl_b: dict[tuple, list] = {}
    for r in recs:
        key = (int(r["layer"]), float(r["strength"]))
        if r["question_kind"] == introspection:
            intro_b.setdefault(key, []).append(float(r["b"]))
        elif r["question_kind"] in ctrl:
            ctrl_b.setdefault(key, []).append(float(r["b"]))
    points = []
    for key in sorted(set(intro_b) & set(ctrl_b)):
        ib, cb = float(np.mean(intro_b[key])), np.asarray(ctrl_b[key])
        points.append({"layer": key[0], "strength": key[1], "introspection_b": ib,
                       "control_b": float(cb.mean()), "diff": ib - float(cb.mean()),
                       "exceeds_all": bool(ib > cb.max())})
    x = np.asarray([p["introspection_b"] for p in points])
    y = np.asarray([p["control_b"] for p in points])
    r = float("nan")
    if len(points) >= 2 and x.std() > 0 and y.std() > 0:
        r = float(np.corrcoef(x, y)[0, 1])
    return {"points": points, "correlation": r, "n_points": len(points),
            "fraction_exceeds": float(np.mean([p["exceeds_all"] for p in points])) if points else float("nan")}


# -- checks and helpers -------------------------------------------------------------------------

def _check_layers(model, layers) -> list[int]:
    return layer_list(layers, model.n_layer)


def _check_strengths(strengths) -> list[float]:
    if isinstance(strengths, (int, float, np.number)):
        strengths = [strengths]
    out = []
    for s in strengths:
        try:
            f = float(s)
        except (TypeError, ValueError):
            raise ValueError(f"strengths must be numbers, got {s!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"strengths must be finite, got {s!r}")
        if f in out:
            raise ValueError(f"strength {s} is listed twice")
        out.append(f)
    if not out:
        raise ValueError("no strengths given")
    return out


def _check_questions(questions) -> list[Question]:
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


def _check_scale(scale) -> None:
    if scale not in ("raw", "relative"):
        raise ValueError(f"scale must be 'raw' or 'relative', got {scale!r}")


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
    step = model._points_per_call(first, n_tokens - first)
    return step if chunk is None else min(step, int(chunk))


def _key(row: dict) -> tuple:
    return (row["question_kind"], row["question"], int(row["layer"]), float(row["strength"]))


def _records(rows) -> list[dict]:
    if hasattr(rows, "to_dict"):
        return rows.to_dict("records")
    return list(rows)


def _version(dist: str) -> Optional[str]:
    for name in (dist, dist.replace("_", "-")):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def _write_json(path: Path, meta: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _parse_row(fields: list[str]) -> dict:
    row = dict(zip(COLUMNS, fields))
    for c in _INTS:
        row[c] = int(row[c])
    for c in _FLOATS:
        row[c] = float(row[c])
    return row


def _load_for_resume(out: Path, meta: dict) -> list[dict]:
    """Rows already in ``out`` (complete records only; a record cut off by a kill is dropped
    and the file rewritten without it). Refuses a file from a different sweep."""
    side = Path(str(out) + ".json")
    if side.exists():
        old = json.loads(side.read_text())
        for k in _SAME_ON_RESUME:
            if old.get(k) != meta[k]:
                raise ValueError(f"{out} holds a sweep with a different {_difference(k, old.get(k), meta[k])}; "
                                 "resume with the same settings, or use a new file (resume=False)")
    if not out.exists():
        return []
    with open(out, encoding="utf-8", newline="") as f:
        text = f.read()
    records = []
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        records = None
    if records is None:  # broken quoting at the end: parse record by record
        records = []
        reader = csv.reader(io.StringIO(text, newline=""))
        while True:
            try:
                records.append(next(reader))
            except (StopIteration, csv.Error):
                break
    if not records:
        return []
    header, body = records[0], records[1:]
    if header != COLUMNS:
        if not body and not text.endswith("\n"):
            header, body = COLUMNS, []  # killed while writing the header
        else:
            raise ValueError(f"{out} does not have pyintro sweep columns; use a new file or resume=False")
    rows = []
    for i, fields in enumerate(body):
        last = i == len(body) - 1
        if len(fields) != len(COLUMNS) or (last and not text.endswith("\n")):
            break
        try:
            rows.append(_parse_row(fields))
        except ValueError:
            break
    clean = _render([COLUMNS] + [[r[c] for c in COLUMNS] for r in rows])
    if clean != text:  # drop what an interrupted write left behind
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(clean)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    return rows


def _difference(key: str, old, new) -> str:
    """Which field differs, e.g. "numerics.n_batch (512, now 56)"."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _difference(f"{key}.{k}", old.get(k), new.get(k))
    shown = [json.dumps(x) for x in (old, new)]
    if max(len(t) for t in shown) > 60:
        return key
    return f"{key} ({shown[0]}, now {shown[1]})"


def _render(records) -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerows(records)
    return buf.getvalue()


class _CsvAppender:
    """Appends rows to a CSV, one write + flush + fsync per call."""

    def __init__(self, path: Path, fresh: bool):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "w" if fresh else "a", encoding="utf-8", newline="")
        if fresh:
            self._write(_render([COLUMNS]))

    def append(self, rows: list[dict]) -> None:
        self._write(_render([[r[c] for c in COLUMNS] for r in rows]))

    def _write(self, text: str) -> None:
        self._f.write(text)
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _progress_fn(progress, total: int) -> Callable:
    """progress(done) after each chunk, progress(None) at the end."""
    if callable(progress):
        return lambda done: None if done is None else progress(done, total)
    if progress is False or progress is not None or not sys.stderr.isatty():
        return lambda done: None

    def bar(done):
        if done is None:
            sys.stderr.write("\n")
        else:
            n = int(30 * done / max(total, 1))
            sys.stderr.write(f"\rsweep [{'#' * n}{'.' * (30 - n)}] {done}/{total} points")
        sys.stderr.flush()
    return bar
