"""The decodes behind `Model`: one engine, its lock, and the clean prompt prefix it keeps.

Sequence 0 holds a clean (uninjected) prefix that later calls reuse; every call removes what
it added beyond that prefix before it returns. The Decoder checks nothing a Model already
checked (token ids, rows, injections): it is Model's and generate's, not a public API.

Its jobs, one method each: the cached prefix (``ensure_prefix``), points over it (``points``),
generation steps (``step``) and captures (``capture``, ``capture_many``); prompt trees are
``pyintro.tree``'s, generation ``pyintro.generate``'s. Every engine request is a ``Rows`` value,
run by ``Decoder.run``; the fast head's state is a ``pyintro.head.FastHead``.

**Recurrent and hybrid models** (``Decoder.recurrent``: Mamba, RWKV, LFM2, Qwen3.5, ...) keep a
state per sequence that cannot be rolled back like KV cells. For them the engine decodes one
row per sequence and llama.cpp call, padding each call with whole sequences (csrc/engine.h),
and the Decoder keeps the layout that needs: points in sequences 1.. (sequence 0, the prefix,
is never written after it is decoded), every request's sequences in consecutive ids with the
same number of rows (``run`` interleaves them token by token), and whole sequences removed
after each call. A prefix that is not an extension of the cached one is decoded from the start.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from pyintro._native import _engine
from pyintro.head import FastHead
from pyintro.progress import Progress

log = logging.getLogger("pyintro.llama")
log.addHandler(logging.NullHandler())

_LOG_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_NONE = np.zeros(0, np.int32)


def drain_log() -> None:
    """Forward llama.cpp's buffered log lines to the ``pyintro.llama`` logger."""
    for level, text in _engine.log_drain():
        log.log(_LOG_LEVELS.get(level, logging.DEBUG), "%s", text)


@dataclass(frozen=True)
class Spec:
    """One resolved injection: layer, vector [n_embd], scale per prompt token [n_tokens]."""

    il: int
    vec: np.ndarray
    scale: np.ndarray
    continues: bool  # also injects into generated tokens
    strength: float


def first_injected(specs: Sequence[Spec], default: int) -> int:
    """The first prompt row any of ``specs`` touches (``default`` if none)."""
    return min([default] + [int(np.flatnonzero(s.scale)[0]) for s in specs if s.scale.any()])


@dataclass
class Rows:
    """One engine request: per row a token, position, sequence and output flag (1: the row's
    logits, or its last-layer capture, are wanted), and the injections as (layer, vector
    [n_embd], scale per row)."""

    tokens: np.ndarray  # int32 [n_rows]
    pos: np.ndarray  # int32 [n_rows]
    seq: np.ndarray  # int32 [n_rows]
    output: np.ndarray  # uint8 [n_rows]
    inject: list = field(default_factory=list)
    counts: Optional[list] = None  # rows per sequence, when whole sequences lie back to back

    @classmethod
    def sequence(cls, tokens: Sequence[int], start: int, seq: int = 0, output: int = 0, inject=()) -> "Rows":
        """``tokens`` at positions start.. of sequence ``seq``, every row's output flag ``output``."""
        n = len(tokens)
        return cls(np.asarray(tokens, np.int32), np.arange(start, start + n, dtype=np.int32),
                   np.full(n, seq, np.int32), np.full(n, output, np.uint8), list(inject), [n])

    @classmethod
    def joined(cls, parts: Sequence[tuple[Sequence[int], int, int]]) -> "Rows":
        """Sequences back to back, each (tokens, start position, sequence id); no outputs."""
        n = sum(len(t) for t, _, _ in parts)
        return cls(np.concatenate([np.asarray(t, np.int32) for t, _, _ in parts]),
                   np.concatenate([np.arange(p, p + len(t), dtype=np.int32) for t, p, _ in parts]),
                   np.concatenate([np.full(len(t), s, np.int32) for t, _, s in parts]), np.zeros(n, np.uint8),
                   counts=[len(t) for t, _, _ in parts])

    def take(self, order: np.ndarray) -> "Rows":
        """These rows in another order (row i of the result is row order[i])."""
        return Rows(self.tokens[order], self.pos[order], self.seq[order], self.output[order],
                    [(il, vec, scale[order]) for il, vec, scale in self.inject])

    def interleaved(self) -> np.ndarray:
        """The order in which a recurrent memory decodes these sequences (each the same number
        of rows): token 0 of every sequence, then token 1 of every sequence, ..."""
        n_seq, t = len(self.counts), self.counts[0]
        if any(c != t for c in self.counts):
            raise AssertionError("a recurrent model's request needs the same number of rows per sequence")
        return (np.arange(t)[:, None] + np.arange(n_seq)[None, :] * t).ravel()


class Decoder:
    """pyintro's engine plus the prefix cached in sequence 0. Callers hold ``lock``.

    ``max_per_call`` caps the points of one engine call (None: as many as the context holds)."""

    def __init__(self, engine: "_engine.Engine", post_ops: Optional[dict] = None,
                 max_per_call: Optional[int] = None):
        self.engine = engine
        self.lock = threading.RLock()
        self.prefix: list[int] = []  # clean tokens held in sequence 0
        self.head = FastHead(engine, post_ops)
        self.max_per_call = max_per_call
        self.recurrent = bool(engine.recurrent)
        self.first_seq = 1 if self.recurrent else 0  # the points' first sequence

    def run(self, rows: Rows, gather: Optional[np.ndarray] = None, layers: Optional[np.ndarray] = None,
            capture_rows: Optional[np.ndarray] = None, logits: bool = True, stats: bool = False,
            fast_head: bool = False) -> tuple:
        """``engine.decode`` of ``rows``, gathering ``gather`` and capturing ``layers`` at
        ``capture_rows``: (logits, capture), and with ``stats`` the statistics third. Results
        come in the order of ``rows`` also where a recurrent model decodes them interleaved."""
        layers = _NONE if layers is None else layers
        capture_rows = _NONE if capture_rows is None else np.asarray(capture_rows, np.int32)
        if not self.recurrent:
            return self.engine.decode(rows.tokens, rows.pos, rows.seq, rows.output, rows.inject, layers,
                                      capture_rows, gather, logits=logits, stats=stats, fast_head=fast_head)
        try:
            return self._run_recurrent(rows, gather, layers, capture_rows, logits, stats, fast_head)
        except RuntimeError:
            # A failed call may leave NaN or Inf in a state cell, and llama.cpp starts a new
            # sequence from a free cell scaled by 0 (llama-graph.cpp build_rs): clear them all.
            self.engine.memory_clear()
            self.prefix = []
            raise

    def _run_recurrent(self, rows, gather, layers, capture_rows, logits, stats, fast_head) -> tuple:
        if rows.counts is None or len(rows.counts) < 2:
            return self.engine.decode(rows.tokens, rows.pos, rows.seq, rows.output, rows.inject, layers,
                                      capture_rows, gather, logits=logits, stats=stats, fast_head=fast_head)
        order = rows.interleaved()
        where = np.empty(len(order), np.int64)
        where[order] = np.arange(len(order))  # where[i]: the place of row i in the request sent
        cap = where[capture_rows]
        sent = rows.take(order)
        res = self.engine.decode(sent.tokens, sent.pos, sent.seq, sent.output, sent.inject, layers,
                                 np.sort(cap).astype(np.int32), gather, logits=logits, stats=stats, fast_head=fast_head)
        outs = _ranks(where[np.flatnonzero(rows.output)])  # the engine returns outputs in the order sent
        back = [r[outs] if r.shape[0] == len(outs) and len(outs) else r for r in (res[0],) + tuple(res[2:])]
        return (back[0], res[1][:, _ranks(cap)]) + tuple(back[1:])

    def reset(self) -> None:
        with self.lock:
            self.release(0)
            self.prefix = []

    def ensure_prefix(self, prefix: list[int]) -> None:
        """Make sequence 0 hold exactly ``prefix`` (clean), reusing what it already holds."""
        common = 0
        for a, b in zip(self.prefix, prefix):
            if a != b:
                break
            common += 1
        if self.recurrent and common < len(self.prefix):
            common = 0  # a recurrent state cannot go back: decode from the start
        self.release(common)
        self.prefix = self.prefix[:common]
        if len(prefix) > common:
            try:
                self.run(Rows.sequence(prefix[common:], common), logits=False)
            except BaseException:
                common = 0 if self.recurrent else common
                self.release(common)
                self.prefix = self.prefix[:common]
                raise
            self.prefix = list(prefix)

    def clear_from(self, pos: int) -> None:
        """Drop every sequence's cells from position ``pos`` on (the prefix before it stays)."""
        self.release(pos)
        drain_log()

    def release(self, pos: int) -> None:
        """Drop what calls added from position ``pos`` on. A recurrent memory drops whole
        sequences, one by one (it refuses sequence -1): every one but the prefix's (nothing else
        is written once the prefix is), or with ``pos`` 0 every one."""
        if not self.recurrent:
            self.engine.seq_rm(-1, pos, -1)
            return
        for seq in range(0 if pos == 0 else 1, self.engine.n_seq_max):
            self.engine.seq_rm(seq, -1, -1)

    def _restart(self, start: int, seqs: Sequence[int]) -> None:
        """Take the points' sequences back to the prefix before ``start``, to run a call again."""
        if not self.recurrent:
            self.engine.seq_rm(-1, start, -1)  # sequence j > 0 keeps its copy of the prefix
            return
        for seq in seqs:
            self.engine.seq_rm(seq, -1, -1)
            self.engine.seq_cp(0, seq, -1, -1)

    # -- points -------------------------------------------------------------------------------

    def points_per_call(self, first: int, s_len: int) -> int:
        """Points one engine call holds: their suffix rows and the padding rows must fit the KV
        cells beside the prefix. When several points fill one llama.cpp call, a whole number of
        calls' worth: a call of a few leftover rows costs nearly as much as a full one."""
        n_ctx, n_batch, n_seq = self.engine.n_ctx, self.engine.n_batch, self.engine.n_seq_max - self.first_seq
        free = n_ctx - first - 2 * n_batch
        if free < s_len:
            raise ValueError(f"the prompt ({first + s_len} tokens) leaves no room for its points in a context of "
                             f"{n_ctx} cells; load the model with a larger n_ctx")
        n = max(1, min(n_seq, free // s_len, self.max_per_call or n_seq))
        per_decode = n_batch if self.recurrent else n_batch // s_len  # points per llama.cpp call
        return n if per_decode < 2 or n < per_decode else n // per_decode * per_decode

    def points(self, ids: list[int], specs: list[list[Spec]], first: int, out_rows: list[int],
               gather: Optional[np.ndarray], n_cols: int, stats: bool = False):
        """Every point's logits at ``out_rows``: [n_points, n_rows, n_cols], and with ``stats``
        their full-vocabulary (max, log-sum-exp, argmax) [n_points, n_rows, 3] (else None). The
        prompt before ``first`` is the shared prefix; points are decoded in engine calls that
        each hold ``points_per_call`` of them."""
        parts, stat_parts = [], []  # one array per call, used as is (a call of full rows is tens of MB)
        shape = (len(out_rows),)
        with self.lock:
            self.ensure_prefix(ids[:first])
            suffix = np.asarray(ids[first:], dtype=np.int32)
            per_call = self.points_per_call(first, len(suffix))
            rel_rows = np.asarray(out_rows, dtype=np.int64) - first
            try:
                for start in range(0, len(specs), per_call):
                    chunk = specs[start:start + per_call]
                    logits, st = self.suffix_points(suffix, first, chunk, rel_rows, gather, stats)
                    parts.append(logits.reshape((len(chunk),) + shape + (n_cols,)))
                    if stats:
                        stat_parts.append(st.reshape((len(chunk),) + shape + (3,)))
                    self.release(first)
            finally:
                self.clear_from(first)
        return _joined(parts, shape + (n_cols,), np.float32), (_joined(stat_parts, shape + (3,), np.float64)
                                                                if stats else None)

    def suffix_points(self, suffix: np.ndarray, start: int, point_specs: list[list[Spec]],
                      rel_rows: np.ndarray, gather: Optional[np.ndarray], stats: bool = False):
        """Decode ``suffix`` (positions start..) once per point, point j in sequence
        ``first_seq + j``, over the shared prefix in sequence 0. Returns (logits
        ``[n_points * len(rel_rows), n_cols]``, stats ``[..., 3]`` or None)."""
        n_pts, s_len = len(point_specs), len(suffix)
        seqs = range(self.first_seq, self.first_seq + n_pts)
        for seq in seqs:
            if seq != 0:
                self.engine.seq_cp(0, seq, -1, -1)
        rows = Rows.joined([(suffix, start, seq) for seq in seqs])
        rows.output[(np.arange(n_pts)[:, None] * s_len + rel_rows[None, :]).ravel()] = 1
        rows.inject = merge_specs([[(s, s.scale[start:]) for s in specs] for specs in point_specs], s_len)
        if self.head.wanted(gather, stats):
            fast = self.head.logits(gather, lambda fast_head: self.run(rows, gather, fast_head=fast_head)[0],
                                    lambda: self._restart(start, seqs))
            if fast is not None:
                return fast, None
        res = self.run(rows, gather, stats=stats)
        return res[0], (res[2] if stats else None)

    # -- generation and captures --------------------------------------------------------------

    def step(self, tokens: Sequence[int], pos: int, seqs: Sequence[int], row_specs: Sequence[list[Spec]]) -> np.ndarray:
        """One generation step: token i at position ``pos`` in sequence seqs[i], with
        row_specs[i]'s continuing injections. Full logits [len(tokens), n_vocab]."""
        m = len(tokens)
        rows = Rows(np.asarray(tokens, np.int32), np.full(m, pos, np.int32), np.asarray(seqs, np.int32),
                    np.ones(m, np.uint8), merge_specs([continuing(specs) for specs in row_specs], 1))
        return self.run(rows)[0]

    def capture(self, ids: list[int], layers: list[int], specs: list[Spec]) -> np.ndarray:
        """The residual stream at ``layers`` for every token: [n_layers, n_tokens, n_embd]."""
        n = len(ids)
        with self.lock:
            self.ensure_prefix([])
            # llama.cpp keeps only output rows in the last layer; no logits are copied out.
            rows = Rows.sequence(ids, 0, output=1 if self.engine.n_layer - 1 in layers else 0,
                                 inject=[(s.il, s.vec, s.scale) for s in specs])
            try:
                _, cap = self.run(rows, None, np.asarray(layers, np.int32), np.arange(n, dtype=np.int32), logits=False)
            finally:
                self.clear_from(0)
        return cap

    def capture_many(self, prompts: list[list[int]], layers: list[int], rows_of: list[list[int]],
                     progress=None) -> list[np.ndarray]:
        """Tokens ``rows_of[i]`` (increasing) of each prompt at ``layers``, the prompts batched
        together: one float32 [n_layers, len(rows_of[i]), n_embd] per prompt. A recurrent model
        pads a call's prompts to the longest (the rows past a prompt's end are never read)."""
        result = []
        n_rows = self.engine.n_ctx - 2 * self.engine.n_batch
        last = self.engine.n_layer - 1 in layers  # llama.cpp keeps only output rows there
        with self.lock, Progress(progress, len(prompts), "capture", "prompt") as bar:
            self.ensure_prefix([])
            try:
                for group in plan_batches([len(p) for p in prompts], self.engine.n_seq_max, n_rows, self.recurrent):
                    width = max(len(prompts[g]) for g in group)
                    sized = [list(prompts[g]) + [0] * (width - len(prompts[g])) if self.recurrent else prompts[g]
                             for g in group]
                    rows = Rows.joined([(p, 0, j) for j, p in enumerate(sized)])
                    starts = np.cumsum([0] + [len(p) for p in sized[:-1]])
                    cap_rows = np.concatenate([s + np.asarray(rows_of[g], np.int64) for s, g in zip(starts, group)])
                    if last:  # with a recurrent memory every row, so that each call's outputs fill its rows
                        rows.output[slice(None) if self.recurrent else cap_rows] = 1
                    _, cap = self.run(rows, None, np.asarray(layers, np.int32), cap_rows.astype(np.int32),
                                      logits=False)
                    at = 0
                    for g in group:  # [n_layers, n_cap_rows, n_embd] -> each prompt's rows
                        result.append(cap[:, at:at + len(rows_of[g])])
                        at += len(rows_of[g])
                    self.release(0)
                    bar.advance(len(group))
            finally:
                self.clear_from(0)
        return result


def continuing(specs: list[Spec]) -> list[tuple[Spec, np.ndarray]]:
    """One row's scales of ``specs`` on a token past the prompt: the strength where the
    injection continues into generated tokens, else 0."""
    return [(s, np.full(1, s.strength if s.continues else 0.0, np.float32)) for s in specs]


def merge_specs(per_point: list[list[tuple[Spec, np.ndarray]]], n_rows) -> list:
    """Engine injections for points laid out back to back, ``n_rows`` rows each (an int, or one
    count per point): one (layer, vector, scale) per distinct layer and vector, each point
    filling its own rows' scales."""
    counts = [n_rows] * len(per_point) if isinstance(n_rows, int) else list(n_rows)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    merged: dict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = {}
    for j, pairs in enumerate(per_point):
        for s, scale in pairs:
            key = (s.il, s.vec.tobytes())
            if key not in merged:
                merged[key] = (s.vec, np.zeros(starts[-1], np.float32))
            merged[key][1][starts[j]:starts[j + 1]] += scale
    return [(il, vec, scale) for (il, _), (vec, scale) in merged.items()]


def _joined(parts: list[np.ndarray], tail: tuple, dtype) -> np.ndarray:
    if not parts:
        return np.empty((0,) + tail, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def plan_batches(lengths: Sequence[int], n_seq: int, n_rows: int, padded: bool = False) -> list[list[int]]:
    """Group prompts (by their token counts) into engine calls, in order: whole prompts, at most
    ``n_seq`` of them and ``n_rows`` tokens per call (``padded``: each counted as long as the
    group's longest). How ``capture_many`` batches."""
    groups, i = [], 0
    while i < len(lengths):
        group, rows, width = [], 0, 0
        while i < len(lengths) and len(group) < n_seq:
            rows_next = (len(group) + 1) * max(width, lengths[i]) if padded else rows + lengths[i]
            if group and rows_next > n_rows:
                break
            group.append(i)
            rows, width = rows_next, max(width, lengths[i])
            i += 1
        groups.append(group)
    return groups


def _ranks(x: np.ndarray) -> np.ndarray:
    """The rank of each entry of ``x`` (distinct values): where it falls once ``x`` is sorted."""
    return np.argsort(np.argsort(x, kind="stable"), kind="stable")
