"""What a run will cost, before it runs: its cells, rows and token rows, counted by laying the
experiment out against a stand-in model that counts instead of decoding (``DryModel``), and its
wall time on this machine, from a few seconds of real decodes (``calibrate``)."""

from __future__ import annotations

import math
import re
import resource
import time
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

__all__ = ["DryModel", "Plan", "calibrate", "parse_duration", "plan"]

_ITEMS = ("concept", "pair", "question", "trial")  # key columns that name an item, not a grid cell


class DryModel:
    """A Model that decodes nothing: ``points``, ``score``, ``generate_many`` and the captures
    count the token rows and llama.cpp calls the real model would decode and return neutral
    values of the right shapes; everything else (tokens, prompt formats, sizes) is the real
    model's. ``dry_run`` tells the concept library to count an extraction instead of making one."""

    dry_run = True

    def __init__(self, model):
        self._model = model
        self.rows = 0  # token rows decoded
        self.calls = 0  # llama_decode calls
        self.outputs = 0  # rows whose full-vocabulary logits are computed (the unembedding and its statistics)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _count(self, rows: int, outputs: int = 0) -> None:
        self.rows += int(rows)
        self.calls += max(1, math.ceil(rows / self._model.n_batch))
        self.outputs += int(outputs)

    @staticmethod
    def _first(ids, points) -> int:
        """The first prompt row any point injects into (the shared prefix ends there)."""
        firsts = [int(np.flatnonzero(inj.scales(len(ids)))[0]) for p in points for inj in p
                  if np.any(inj.scales(len(ids)))]
        return min(firsts + [len(ids) - 1])

    def points(self, ids, points, vocab_ids=None, rows=None, stats=False, **_):
        first = self._first(ids, points)
        n_rows = 1 if rows is None else len(rows)
        full = vocab_ids is None or stats  # else the fast head reads a few logits from the final norm
        self._count(first + len(points) * (len(ids) - first), len(points) * n_rows if full else 0)
        n_cols = self._model.n_vocab if vocab_ids is None else len(vocab_ids)
        logits = np.zeros((len(points), n_rows, n_cols), np.float32)
        st = np.zeros((len(points), n_rows, 3))
        if rows is None:
            logits, st = logits[:, 0], st[:, 0]
        return (logits, st) if stats else logits

    def logits(self, ids, inject=(), rows=None, **_):
        return self.points(ids, [list(inject)], rows=None if rows is None else list(range(len(ids))))[0]

    def score(self, ids, points, continuations):
        prompts = [ids] * len(points) if len(ids) and isinstance(ids[0], (int, np.integer)) else list(ids)
        first = min(self._first(p, [pt]) for p, pt in zip(prompts, points))
        cont = sum(len(c) - 1 for c in continuations)
        self._count(first + sum(len(p) - first + cont for p in prompts), len(prompts) * (1 + cont))
        return np.full((len(points), len(continuations), max(len(c) for c in continuations)), -1.0)

    def generate_many(self, ids, points, max_tokens=32, temperature=0.0, seeds=None, **_):
        first = self._first(ids, points)
        self._count(first + len(points) * (len(ids) - first), len(points))
        for _ in range(max_tokens - 1):  # one call per step, every sequence running to the end
            self._count(len(points), len(points))
        return [[] for _ in points]

    def generate(self, ids, max_tokens=32, inject=(), n=1, **_):
        return self.generate_many(ids, [list(inject)] * n, max_tokens)

    def capture_rows(self, prompts, rows, layers=None, progress=None):
        self._count(sum(len(p) for p in prompts))
        n_layers = self._model.n_layer if layers is None else len(layers)
        return [np.ones((n_layers, len(r), self._model.n_embd), np.float32) for r in rows]

    def capture_many(self, prompts, layers=None, position=-1, progress=None):
        self._count(sum(len(p) for p in prompts))
        n_layers = self._model.n_layer if layers is None else len(layers)
        return np.ones((len(prompts), n_layers, self._model.n_embd), np.float32)

    def capture(self, ids, layers=None, inject=()):
        self._count(len(ids))
        n_layers = self._model.n_layer if layers is None else len(layers)
        return np.ones((n_layers, len(ids), self._model.n_embd), np.float32)

    def belief(self, ids, inject=(), **kw):
        from pyintro.readout import belief

        return belief(self, ids, inject, **kw)


@dataclass
class Plan:
    """A run's cost: ``cells`` (units of work with results), ``rows`` (result rows),
    ``token_rows``, ``calls`` (llama.cpp decodes) and ``output_rows`` (full-vocabulary logits),
    ``shard_units`` (what ``--shard`` splits),
    ``seconds`` (the estimate on this machine), ``peak_memory_bytes`` and, for a target time
    per job, ``shards`` (how many to use)."""

    experiment: str
    cells: int
    rows: int
    token_rows: int
    calls: int
    output_rows: int
    shard_units: int
    seconds: float
    peak_memory_bytes: int
    seconds_per_token_row: float
    seconds_per_call: float
    seconds_per_output_row: float
    shards: Optional[int] = None
    job_seconds: Optional[float] = None

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"{self.experiment}: {self.cells} cells, {self.rows} result rows, {self.token_rows:,} token rows in "
               f"{self.calls:,} llama.cpp calls ({self.output_rows:,} of them full-vocabulary outputs)",
               f"estimated wall time on this machine: {_clock(self.seconds)} (calibrated: "
               f"{1000 * self.seconds_per_token_row:.2f} ms per token row, {1000 * self.seconds_per_call:.1f} ms per "
               f"call, {1000 * self.seconds_per_output_row:.2f} ms per output row)",
               f"peak memory: about {self.peak_memory_bytes / 2**20:.0f} MiB",
               f"shardable units (--shard K/N splits them): {self.shard_units}"]
        if self.shards is not None:
            out.append(f"for at most {_clock(self.job_seconds)} per job: --shard K/{self.shards} "
                       f"(about {_clock(self.seconds / self.shards)} each)")
        return out


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def calibrate(model, seconds: float = 1.5) -> tuple[float, float, float]:
    """(seconds per token row, per llama.cpp call, per full-vocabulary output row) of this model
    on this machine, from real decodes of three shapes: points that decode their whole prompt
    (full calls, few outputs), points that decode only their last token over a cached prefix
    (one small call) and a prompt tree whose continuations are all outputs."""
    from pyintro.injection import Injection, Positions

    ids = model.chat("Calibrating: how long does a decode take on this machine?")
    n = max(2, min(model.n_seq_max - 2, 4))
    whole = [[Injection(np.zeros(model.n_embd, np.float32), 0, 1.0, Positions.all())]] * n  # decodes every row
    conts = [ids[1:9]] * 2
    rows = n * len(ids)
    shapes = [(lambda: model.points(ids, whole, vocab_ids=[0]), rows, math.ceil(rows / model.n_batch), 0),
              (lambda: model.points(ids, [[]] * 2, vocab_ids=[0]), 2, 1, 0),
              (lambda: model.score(ids, [[]], conts), 15, 2, 15)]
    timed = []
    for call, rows, calls, outputs in shapes:
        call()  # warm-up; it also caches the prompt's prefix
        start, reps = time.perf_counter(), 0
        while reps < 1 or time.perf_counter() - start < seconds / 3:
            call()
            reps += 1
        timed.append([(time.perf_counter() - start) / reps, rows, calls, outputs])
    a = np.array([[r, c, o] for _, r, c, o in timed], float)
    t = np.array([x[0] for x in timed])
    coef = np.linalg.lstsq(a, t, rcond=None)[0]
    return tuple(float(max(x, 0.0)) for x in coef)


def plan(exp, model, calibration=None, job_time: Optional[float] = None, **options) -> Plan:
    """``exp``'s cost for these ``options`` (as ``protocol.run`` takes them): laid out against a
    DryModel, and timed with ``calibration`` (seconds per token row and per call; None: measured
    now on ``model``). A judge's generations are laid out on a DryModel of the judge too, counted
    with the model's and timed at the model's rates."""
    from pyintro.experiments.protocol import execute
    from pyintro.judge import Judge

    dry, dry_judge = DryModel(model), None
    if options.get("judge") is not None:
        dry_judge = DryModel(options["judge"].model)
        options = dict(options, judge=Judge(dry_judge, options["judge"].max_tokens))
    work = exp.prepare(dry, progress=False, **options)
    rows = execute(exp, dry, work)
    if dry_judge is not None:
        dry.rows, dry.calls, dry.outputs = (dry.rows + dry_judge.rows, dry.calls + dry_judge.calls,
                                            dry.outputs + dry_judge.outputs)
    per_row, per_call, per_output = calibration or calibrate(model)
    seconds = dry.rows * per_row + dry.calls * per_call + dry.outputs * per_output
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    grid = [c for c in exp.schema.key_columns if c not in _ITEMS]
    p = Plan(exp.name, len({tuple(r[c] for c in grid) for r in rows}), len(rows), dry.rows, dry.calls, dry.outputs,
             int(work.units), seconds, int(peak), per_row, per_call, per_output)
    if job_time:
        p.job_seconds = job_time
        p.shards = max(1, min(p.shard_units, math.ceil(seconds / job_time)))
    return p


def parse_duration(text: str) -> float:
    """Seconds of "90s", "45m", "2h", "1h30m", "1d" or Slurm's "H:M:S" / "D-H:M:S"."""
    t = str(text).strip().lower()
    m = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", t)
    if t and m and any(m.groups()):
        d, h, mi, s = (int(x or 0) for x in m.groups())
        return float(((d * 24 + h) * 60 + mi) * 60 + s)
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+)(?::(\d+))?", t)
    if m:
        d, a, b, c = m.groups()
        h, mi, s = (int(a), int(b), int(c)) if c is not None else (0, int(a), int(b))
        return float(((int(d or 0) * 24 + h) * 60 + mi) * 60 + s)
    raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 45m, 2h, 1h30m or H:M:S")
