"""The decodes behind `Model`: one engine, its lock, and the clean prompt prefix it keeps.

Sequence 0 holds a clean (uninjected) prefix that later calls reuse; every call removes what
it added beyond that prefix before it returns. The Decoder checks nothing a Model already
checked (token ids, rows, injections): it is Model's and generate's, not a public API.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from pyintro._native import _engine
from pyintro.head import MATCH_TOL, mismatch
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


class Decoder:
    """pyintro's engine plus the prefix cached in sequence 0. Callers hold ``lock``."""

    def __init__(self, engine: "_engine.Engine", post_ops: Optional[dict] = None):
        self.engine = engine
        self.lock = threading.RLock()
        self.prefix: list[int] = []  # clean tokens held in sequence 0
        self.post_ops = post_ops  # the fast head's scale and softcap; None: always the full path
        self.heads: dict[bytes, bool] = {}  # gather ids -> whether the fast head matched the full path
        self.head_reason = ""  # why the fast head is not used, once known
        self._head_key: Optional[bytes] = None  # the ids the engine's head holds now

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
            rest = np.asarray(prefix[common:], np.int32)
            k = len(rest)
            try:
                self.engine.decode(rest, np.arange(common, common + k, dtype=np.int32), np.zeros(k, np.int32),
                                   np.zeros(k, np.uint8), [], _NONE, _NONE, None, logits=False)
            except BaseException:
                self.engine.seq_rm(-1, common, -1)
                raise
            self.prefix = list(prefix)

    def clear_from(self, pos: int) -> None:
        """Drop every sequence's cells from position ``pos`` on (the prefix before it stays)."""
        self.engine.seq_rm(-1, pos, -1)
        drain_log()

    def points_per_call(self, first: int, s_len: int) -> int:
        """Points one engine call holds: their suffix rows and the padding rows must fit the KV
        cells beside the prefix. When several points fill one llama.cpp call, a whole number of
        calls' worth: a call of a few leftover rows costs nearly as much as a full one."""
        n_ctx, n_batch = self.engine.n_ctx, self.engine.n_batch
        free = n_ctx - first - 2 * n_batch
        if free < s_len:
            raise ValueError(f"the prompt ({first + s_len} tokens) leaves no room for its points in a context of "
                             f"{n_ctx} cells; load the model with a larger n_ctx")
        n = max(1, min(self.engine.n_seq_max, free // s_len))
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
        tokens = np.tile(suffix, n_pts)
        pos = np.tile(np.arange(start, start + s_len, dtype=np.int32), n_pts)
        seq = np.repeat(np.arange(n_pts, dtype=np.int32), s_len)
        out = np.zeros(n_pts * s_len, np.uint8)
        out[(np.arange(n_pts)[:, None] * s_len + rel_rows[None, :]).ravel()] = 1
        inject = _merge_specs([[(s, s.scale[start:]) for s in specs] for specs in point_specs], s_len)
        args = (tokens, pos, seq, out, inject, _NONE, _NONE, gather)
        if gather is not None and not stats and self.post_ops is not None:
            fast = self._fast_head(args, start)
            if fast is not None:
                return fast, None
        res = self.engine.decode(*args, stats=stats)
        return res[0], (res[2] if stats else None)

    def _fast_head(self, args: tuple, start: int) -> Optional[np.ndarray]:
        """Gathered logits through the engine's fast head (no full unembedding), or None where
        it is not used for these ids. The first time an id list is seen, the call is decoded
        both ways and the head is kept only if it matches the full path (``head.MATCH_TOL``);
        after that every call for those ids takes the same path, so a point's numbers do not
        depend on which call it ran in."""
        gather = args[-1]
        key = gather.tobytes()
        if key not in self.heads:
            try:
                self._set_head(gather, key)
            except ValueError as e:  # no single-file output matrix, or a type without a CPU dot product
                self.heads[key], self.head_reason = False, str(e)
                return None
            full = self.engine.decode(*args)[0]  # an error here (a bad strength) decides nothing
            self.engine.seq_rm(-1, start, -1)  # the same rows again: sequence j > 0 keeps its prefix
            try:
                fast = self.engine.decode(*args, fast_head=True)[0]
            except RuntimeError as e:  # no result_norm in this architecture's graph
                self.engine.seq_rm(-1, start, -1)
                self.engine.decode(*args)  # leave the cells as a plain call would
                self.heads[key], self.head_reason = False, str(e)
                return full
            err = mismatch(fast, full)
            log.debug("fast head for %d ids: relative difference %.3g", len(gather), err)
            if err > MATCH_TOL:
                self.heads[key] = False
                self.head_reason = f"the fast head differs from the full path by {err:.2g} (relative)"
                return full
            self.heads[key] = True
            return fast
        if not self.heads[key]:
            return None
        if self._head_key != key:
            self._set_head(gather, key)
        return self.engine.decode(*args, fast_head=True)[0]

    def _set_head(self, gather: np.ndarray, key: bytes) -> None:
        self._head_key = None
        self.engine.set_head(gather, **self.post_ops)
        self._head_key = key

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
        tokens = np.concatenate(suffixes)
        pos = np.concatenate([np.arange(first, first + len(sfx), dtype=np.int32) for sfx in suffixes])
        seqs = np.concatenate([np.full(len(sfx), seq, np.int32) for sfx, seq in zip(suffixes, point_seq)])
        outputs = np.zeros(len(tokens), np.uint8)
        outputs[np.cumsum([len(sfx) for sfx in suffixes]) - 1] = 1
        inject = _merge_specs([[(s, s.scale[first:]) for s in specs] for _, specs in chunk],
                              [len(sfx) for sfx in suffixes])
        logits, _, stats = self.engine.decode(tokens, pos, seqs, outputs, inject, _NONE, _NONE, gather, stats=True)
        for j in range(len(chunk)):  # each continuation's first token, after the branch's last row
            for c, cont in enumerate(conts):
                out[j, c, 0] = logits[j, col[cont[0]]] - stats[j, 1]
        rows = [(j, c, i) for j in range(len(chunk)) for c, cont in enumerate(conts) for i in range(len(cont) - 1)]
        if not rows:
            return
        for seq in point_seq:
            for c in range(n_c):
                self.engine.seq_cp(seq, seq + 1 + c, -1, -1)
        tokens = np.asarray([conts[c][i] for j, c, i in rows], np.int32)
        pos = np.asarray([first + len(suffixes[j]) + i for j, _, i in rows], np.int32)
        seqs = np.asarray([point_seq[j] + 1 + c for j, c, _ in rows], np.int32)
        per_row = [[(s, np.full(1, s.strength if s.continues else 0.0, np.float32)) for s in chunk[j][1]]
                   for j, _, _ in rows]
        inject = _merge_specs(per_row, [1] * len(rows))
        logits, _, stats = self.engine.decode(tokens, pos, seqs, np.ones(len(rows), np.uint8), inject, _NONE, _NONE,
                                              gather, stats=True)
        for k, (j, c, i) in enumerate(rows):  # token i + 1 of continuation c, after its token i
            out[j, c, i + 1] = logits[k, col[conts[c][i + 1]]] - stats[k, 1]

    def step(self, tokens: Sequence[int], pos: int, seqs: Sequence[int], row_specs: Sequence[list[Spec]]) -> np.ndarray:
        """One generation step: token i at position ``pos`` in sequence seqs[i], with
        row_specs[i]'s continuing injections. Full logits [len(tokens), n_vocab]."""
        m = len(tokens)
        inj = _merge_specs([[(s, np.full(1, s.strength if s.continues else 0.0, np.float32)) for s in specs]
                            for specs in row_specs], 1)
        logits, _ = self.engine.decode(np.asarray(tokens, np.int32), np.full(m, pos, np.int32),
                                       np.asarray(seqs, np.int32), np.ones(m, np.uint8), inj, _NONE, _NONE, None)
        return logits

    def capture(self, ids: list[int], layers: list[int], specs: list[Spec]) -> np.ndarray:
        """The residual stream at ``layers`` for every token: [n_layers, n_tokens, n_embd]."""
        n = len(ids)
        with self.lock:
            self.ensure_prefix([])
            # llama.cpp keeps only output rows in the last layer; no logits are copied out.
            out = np.full(n, 1 if self.engine.n_layer - 1 in layers else 0, np.uint8)
            try:
                _, cap = self.engine.decode(
                    np.asarray(ids, np.int32), np.arange(n, dtype=np.int32), np.zeros(n, np.int32), out,
                    [(s.il, s.vec, s.scale) for s in specs], np.asarray(layers, np.int32),
                    np.arange(n, dtype=np.int32), None, logits=False)
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
                    tokens = np.concatenate([np.asarray(prompts[g], np.int32) for g in group])
                    pos = np.concatenate([np.arange(len(prompts[g]), dtype=np.int32) for g in group])
                    seq = np.concatenate([np.full(len(prompts[g]), j, np.int32) for j, g in enumerate(group)])
                    starts = np.cumsum([0] + [len(prompts[g]) for g in group[:-1]])
                    cap_rows = np.concatenate([s + np.asarray(rows_of[g], np.int64) for s, g in zip(starts, group)])
                    out = np.zeros(len(tokens), np.uint8)
                    if last:
                        out[cap_rows] = 1
                    _, cap = self.engine.decode(tokens, pos, seq, out, [], np.asarray(layers, np.int32),
                                                cap_rows.astype(np.int32), None, logits=False)
                    at = 0
                    for g in group:  # [n_layers, n_cap_rows, n_embd] -> each prompt's rows
                        result.append(cap[:, at:at + len(rows_of[g])])
                        at += len(rows_of[g])
                    self.engine.seq_rm(-1, 0, -1)
                    bar.advance(len(group))
            finally:
                self.clear_from(0)
        return result


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
