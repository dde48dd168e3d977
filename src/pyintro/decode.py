"""The decodes behind `Model`: one engine, its lock, and the clean prompt prefix it keeps.

Sequence 0 holds a clean (uninjected) prefix that later calls reuse; every call removes what
it added beyond that prefix before it returns. The Decoder checks nothing a Model already
checked (token ids, rows, injections): it is Model's and generate's, not a public API.

Its jobs, one method each: the cached prefix (``ensure_prefix``), points over it (``points``),
prompt trees (``tree``), generation steps (``step``) and captures (``capture``,
``capture_many``). Every engine request is a ``Rows`` value, run by ``Decoder.run``; the fast
head's state is a ``pyintro.head.FastHead``.
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

    @classmethod
    def sequence(cls, tokens: Sequence[int], start: int, seq: int = 0, output: int = 0, inject=()) -> "Rows":
        """``tokens`` at positions start.. of sequence ``seq``, every row's output flag ``output``."""
        n = len(tokens)
        return cls(np.asarray(tokens, np.int32), np.arange(start, start + n, dtype=np.int32),
                   np.full(n, seq, np.int32), np.full(n, output, np.uint8), list(inject))

    @classmethod
    def joined(cls, parts: Sequence[tuple[Sequence[int], int, int]]) -> "Rows":
        """Sequences back to back, each (tokens, start position, sequence id); no outputs."""
        n = sum(len(t) for t, _, _ in parts)
        return cls(np.concatenate([np.asarray(t, np.int32) for t, _, _ in parts]),
                   np.concatenate([np.arange(p, p + len(t), dtype=np.int32) for t, p, _ in parts]),
                   np.concatenate([np.full(len(t), s, np.int32) for t, _, s in parts]), np.zeros(n, np.uint8))


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

    def run(self, rows: Rows, gather: Optional[np.ndarray] = None, layers: Optional[np.ndarray] = None,
            capture_rows: Optional[np.ndarray] = None, logits: bool = True, stats: bool = False,
            fast_head: bool = False) -> tuple:
        """``engine.decode`` of ``rows``, gathering ``gather`` and capturing ``layers`` at
        ``capture_rows``: (logits, capture), and with ``stats`` the statistics third."""
        return self.engine.decode(rows.tokens, rows.pos, rows.seq, rows.output, rows.inject,
                                  _NONE if layers is None else layers, _NONE if capture_rows is None else capture_rows,
                                  gather, logits=logits, stats=stats, fast_head=fast_head)

    def reset(self) -> None:
        with self.lock:
            self.engine.seq_rm(-1, 0, -1)
            self.prefix = []

    def ensure_prefix(self, prefix: list[int]) -> None:
        """Make sequence 0 hold exactly ``prefix`` (clean), reusing what it already holds."""
        common = 0
        for a, b in zip(self.prefix, prefix):
            if a != b:
                break
            common += 1
        self.engine.seq_rm(-1, common, -1)
        self.prefix = self.prefix[:common]
        if len(prefix) > common:
            try:
                self.run(Rows.sequence(prefix[common:], common), logits=False)
            except BaseException:
                self.engine.seq_rm(-1, common, -1)
                raise
            self.prefix = list(prefix)

    def clear_from(self, pos: int) -> None:
        """Drop every sequence's cells from position ``pos`` on (the prefix before it stays)."""
        self.engine.seq_rm(-1, pos, -1)
        drain_log()

    # -- points -------------------------------------------------------------------------------

    def points_per_call(self, first: int, s_len: int) -> int:
        """Points one engine call holds: their suffix rows and the padding rows must fit the KV
        cells beside the prefix. When several points fill one llama.cpp call, a whole number of
        calls' worth: a call of a few leftover rows costs nearly as much as a full one."""
        n_ctx, n_batch = self.engine.n_ctx, self.engine.n_batch
        free = n_ctx - first - 2 * n_batch
        if free < s_len:
            raise ValueError(f"the prompt ({first + s_len} tokens) leaves no room for its points in a context of "
                             f"{n_ctx} cells; load the model with a larger n_ctx")
        n = max(1, min(self.engine.n_seq_max, free // s_len, self.max_per_call or self.engine.n_seq_max))
        per_decode = n_batch // s_len
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
                    self.engine.seq_rm(-1, first, -1)
            finally:
                self.clear_from(first)
        return _joined(parts, shape + (n_cols,), np.float32), (_joined(stat_parts, shape + (3,), np.float64)
                                                                if stats else None)

    def suffix_points(self, suffix: np.ndarray, start: int, point_specs: list[list[Spec]],
                      rel_rows: np.ndarray, gather: Optional[np.ndarray], stats: bool = False):
        """Decode ``suffix`` (positions start..) once per point, point j in sequence j, over the
        shared prefix in sequence 0. Returns (logits ``[n_points * len(rel_rows), n_cols]``,
        stats ``[..., 3]`` or None)."""
        n_pts, s_len = len(point_specs), len(suffix)
        for j in range(1, n_pts):
            self.engine.seq_cp(0, j, -1, -1)
        rows = Rows.joined([(suffix, start, j) for j in range(n_pts)])
        rows.output[(np.arange(n_pts)[:, None] * s_len + rel_rows[None, :]).ravel()] = 1
        rows.inject = _merge_specs([[(s, s.scale[start:]) for s in specs] for specs in point_specs], s_len)
        if self.head.wanted(gather, stats):
            # undo: the same rows again; sequence j > 0 keeps its copy of the prefix
            fast = self.head.logits(gather, lambda fast_head: self.run(rows, gather, fast_head=fast_head)[0],
                                    lambda: self.engine.seq_rm(-1, start, -1))
            if fast is not None:
                return fast, None
        res = self.run(rows, gather, stats=stats)
        return res[0], (res[2] if stats else None)

    # -- prompt trees -------------------------------------------------------------------------

    def tree(self, branches: list[tuple[list[int], list[Spec]]], first: int, conts: list[list[int]]) -> np.ndarray:
        """A prompt tree: every continuation's token log-probabilities after each branch (a
        prompt and its injections): float64 [n_branches, n_conts, max_len], NaN past a
        continuation's end. The branches' prompts share their first ``first`` tokens.

        A branch's suffix (its prompt from ``first``) is decoded once in its own sequence; each
        continuation branches from it (``seq_cp`` shares the branch's cells) and decodes only
        its own tokens but the last, with the branch's continuing injections on them. Only the
        continuations' token ids are gathered, with each row's full-vocabulary log-sum-exp.
        """
        n_c, width = len(conts), max(len(c) for c in conts)
        vocab = sorted({t for c in conts for t in c})
        gather = np.asarray(vocab, np.int32)
        col = {t: i for i, t in enumerate(vocab)}
        n_seq, n_ctx, n_batch = self.engine.n_seq_max, self.engine.n_ctx, self.engine.n_batch
        if n_seq < 2 + n_c:
            raise ValueError(f"{n_c} continuations need {2 + n_c} sequences; load the model with n_seq_max >= {2 + n_c}")
        free = n_ctx - first - 2 * n_batch
        c_rows = sum(len(c) - 1 for c in conts)
        out = np.full((len(branches), n_c, width), np.nan)
        with self.lock:
            self.ensure_prefix(branches[0][0][:first])
            try:
                start = 0
                while start < len(branches):  # as many branches per call as sequences and cells allow
                    end, cells = start, 0
                    while end < len(branches) and (end - start + 1) * (1 + n_c) < n_seq:
                        need = len(branches[end][0]) - first + c_rows
                        if cells + need > free and end > start:
                            break
                        cells, end = cells + need, end + 1
                    if cells > free:
                        raise ValueError(f"a prompt and its continuations do not fit a context of {n_ctx} cells; "
                                         "load the model with a larger n_ctx")
                    self._tree_chunk(branches[start:end], first, conts, gather, col, out[start:end])
                    self.engine.seq_rm(-1, first, -1)
                    start = end
            finally:
                self.clear_from(first)
        return out

    def _tree_chunk(self, chunk, first, conts, gather, col, out) -> None:
        n_c = len(conts)
        point_seq = [1 + j * (1 + n_c) for j in range(len(chunk))]  # continuation c: point_seq + 1 + c
        suffixes = [np.asarray(ids[first:], np.int32) for ids, _ in chunk]
        for seq in point_seq:
            self.engine.seq_cp(0, seq, -1, -1)
        rows = Rows.joined([(sfx, first, seq) for sfx, seq in zip(suffixes, point_seq)])
        rows.output[np.cumsum([len(sfx) for sfx in suffixes]) - 1] = 1
        rows.inject = _merge_specs([[(s, s.scale[first:]) for s in specs] for _, specs in chunk],
                                   [len(sfx) for sfx in suffixes])
        logits, _, stats = self.run(rows, gather, stats=True)
        for j in range(len(chunk)):  # each continuation's first token, after the branch's last row
            for c, cont in enumerate(conts):
                out[j, c, 0] = logits[j, col[cont[0]]] - stats[j, 1]
        todo = [(j, c, i) for j in range(len(chunk)) for c, cont in enumerate(conts) for i in range(len(cont) - 1)]
        if not todo:
            return
        for seq in point_seq:
            for c in range(n_c):
                self.engine.seq_cp(seq, seq + 1 + c, -1, -1)
        rows = Rows(np.asarray([conts[c][i] for _, c, i in todo], np.int32),
                    np.asarray([first + len(suffixes[j]) + i for j, _, i in todo], np.int32),
                    np.asarray([point_seq[j] + 1 + c for j, c, _ in todo], np.int32), np.ones(len(todo), np.uint8),
                    _merge_specs([_continuing(chunk[j][1]) for j, _, _ in todo], 1))
        logits, _, stats = self.run(rows, gather, stats=True)
        for k, (j, c, i) in enumerate(todo):  # token i + 1 of continuation c, after its token i
            out[j, c, i + 1] = logits[k, col[conts[c][i + 1]]] - stats[k, 1]

    # -- generation and captures --------------------------------------------------------------

    def step(self, tokens: Sequence[int], pos: int, seqs: Sequence[int], row_specs: Sequence[list[Spec]]) -> np.ndarray:
        """One generation step: token i at position ``pos`` in sequence seqs[i], with
        row_specs[i]'s continuing injections. Full logits [len(tokens), n_vocab]."""
        m = len(tokens)
        rows = Rows(np.asarray(tokens, np.int32), np.full(m, pos, np.int32), np.asarray(seqs, np.int32),
                    np.ones(m, np.uint8), _merge_specs([_continuing(specs) for specs in row_specs], 1))
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
        together: one float32 [n_layers, len(rows_of[i]), n_embd] per prompt."""
        result = []
        n_rows = self.engine.n_ctx - 2 * self.engine.n_batch
        last = self.engine.n_layer - 1 in layers  # llama.cpp keeps only output rows there
        with self.lock, Progress(progress, len(prompts), "capture", "prompt") as bar:
            self.ensure_prefix([])
            try:
                for group in plan_batches([len(p) for p in prompts], self.engine.n_seq_max, n_rows):
                    rows = Rows.joined([(prompts[g], 0, j) for j, g in enumerate(group)])
                    starts = np.cumsum([0] + [len(prompts[g]) for g in group[:-1]])
                    cap_rows = np.concatenate([s + np.asarray(rows_of[g], np.int64) for s, g in zip(starts, group)])
                    if last:
                        rows.output[cap_rows] = 1
                    _, cap = self.run(rows, None, np.asarray(layers, np.int32), cap_rows.astype(np.int32),
                                      logits=False)
                    at = 0
                    for g in group:  # [n_layers, n_cap_rows, n_embd] -> each prompt's rows
                        result.append(cap[:, at:at + len(rows_of[g])])
                        at += len(rows_of[g])
                    self.engine.seq_rm(-1, 0, -1)
                    bar.advance(len(group))
            finally:
                self.clear_from(0)
        return result


def _continuing(specs: list[Spec]) -> list[tuple[Spec, np.ndarray]]:
    """One row's scales of ``specs`` on a token past the prompt: the strength where the
    injection continues into generated tokens, else 0."""
    return [(s, np.full(1, s.strength if s.continues else 0.0, np.float32)) for s in specs]


def _merge_specs(per_point: list[list[tuple[Spec, np.ndarray]]], n_rows) -> list:
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


def plan_batches(lengths: Sequence[int], n_seq: int, n_rows: int) -> list[list[int]]:
    """Group prompts (by their token counts) into engine calls, in order: whole prompts, at most
    ``n_seq`` of them and ``n_rows`` tokens per call. How ``capture_many`` batches."""
    groups, i = [], 0
    while i < len(lengths):
        group, rows = [], 0
        while i < len(lengths) and len(group) < n_seq and (not group or rows + lengths[i] <= n_rows):
            group.append(i)
            rows += lengths[i]
            i += 1
        groups.append(group)
    return groups
