"""Prompt trees (``Model.score``): the log-probabilities of continuations after each branch (a
prompt and its injections), each continuation decoded from its branch's state instead of from
the start, and equal to decoding prompt + continuation whole (batch invariance)."""

from __future__ import annotations

import numpy as np

from pyintro.decode import Decoder, Rows, Spec, continuing, merge_specs


def tree(decoder: Decoder, branches: list[tuple[list[int], list[Spec]]], first: int,
         conts: list[list[int]]) -> np.ndarray:
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
    n_seq, n_ctx, n_batch = decoder.engine.n_seq_max, decoder.engine.n_ctx, decoder.engine.n_batch
    if n_seq < 2 + n_c:
        raise ValueError(f"{n_c} continuations need {2 + n_c} sequences; load the model with n_seq_max >= {2 + n_c}")
    free = n_ctx - first - 2 * n_batch
    c_rows = sum(len(c) - 1 for c in conts)
    if decoder.recurrent:  # continuations decode together, padded to the longest
        c_rows = sum(len(c) > 1 for c in conts) * (width - 1)
    out = np.full((len(branches), n_c, width), np.nan)
    with decoder.lock:
        decoder.ensure_prefix(branches[0][0][:first])
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
                tree_chunk = _chunk_recurrent if decoder.recurrent else _chunk
                tree_chunk(decoder, branches[start:end], first, conts, gather, col, out[start:end])
                decoder.release(first)
                start = end
        finally:
            decoder.clear_from(first)
    return out


def _chunk(decoder: Decoder, chunk, first, conts, gather, col, out) -> None:
    """A chunk of branches and their continuations, for an attention-only memory."""
    n_c = len(conts)
    point_seq = [1 + j * (1 + n_c) for j in range(len(chunk))]  # continuation c: point_seq + 1 + c
    suffixes = [np.asarray(ids[first:], np.int32) for ids, _ in chunk]
    for seq in point_seq:
        decoder.engine.seq_cp(0, seq, -1, -1)
    rows = Rows.joined([(sfx, first, seq) for sfx, seq in zip(suffixes, point_seq)])
    rows.output[np.cumsum([len(sfx) for sfx in suffixes]) - 1] = 1
    rows.inject = merge_specs([[(s, s.scale[first:]) for s in specs] for _, specs in chunk],
                               [len(sfx) for sfx in suffixes])
    logits, _, stats = decoder.run(rows, gather, stats=True)
    for j in range(len(chunk)):  # each continuation's first token, after the branch's last row
        for c, cont in enumerate(conts):
            out[j, c, 0] = logits[j, col[cont[0]]] - stats[j, 1]
    todo = [(j, c, i) for j in range(len(chunk)) for c, cont in enumerate(conts) for i in range(len(cont) - 1)]
    if not todo:
        return
    for seq in point_seq:
        for c in range(n_c):
            decoder.engine.seq_cp(seq, seq + 1 + c, -1, -1)
    rows = Rows(np.asarray([conts[c][i] for _, c, i in todo], np.int32),
                np.asarray([first + len(suffixes[j]) + i for j, _, i in todo], np.int32),
                np.asarray([point_seq[j] + 1 + c for j, c, _ in todo], np.int32), np.ones(len(todo), np.uint8),
                merge_specs([continuing(chunk[j][1]) for j, _, _ in todo], 1))
    logits, _, stats = decoder.run(rows, gather, stats=True)
    for k, (j, c, i) in enumerate(todo):  # token i + 1 of continuation c, after its token i
        out[j, c, i + 1] = logits[k, col[conts[c][i + 1]]] - stats[k, 1]


def _chunk_recurrent(decoder: Decoder, chunk, first, conts, gather, col, out) -> None:
    """``_chunk`` for a recurrent memory: branch j's suffix in its own sequence (the
    branches of each suffix length together, copied from the prefix just before), then each
    continuation longer than one token in a sequence copied from its branch's, all of them
    together, padded to the longest (rows past a continuation's end are decoded and dropped)."""
    lens = [len(ids) - first for ids, _ in chunk]
    order = sorted(range(len(chunk)), key=lambda j: lens[j])
    seq_of = {j: 1 + i for i, j in enumerate(order)}  # free sequences follow each group: its padding
    i = 0
    while i < len(order):
        group = [j for j in order[i:] if lens[j] == lens[order[i]]]
        for j in group:
            decoder.engine.seq_cp(0, seq_of[j], -1, -1)
        rows = Rows.joined([(chunk[j][0][first:], first, seq_of[j]) for j in group])
        rows.output[np.cumsum([lens[j] for j in group]) - 1] = 1
        rows.inject = merge_specs([[(s, s.scale[first:]) for s in chunk[j][1]] for j in group], lens[group[0]])
        logits, _, stats = decoder.run(rows, gather, stats=True)
        for r, j in enumerate(group):  # each continuation's first token, after the branch's last row
            for c, cont in enumerate(conts):
                out[j, c, 0] = logits[r, col[cont[0]]] - stats[r, 1]
        i += len(group)
    todo = [(j, c) for j in range(len(chunk)) for c, cont in enumerate(conts) if len(cont) > 1]
    if not todo:
        return
    width = max(len(conts[c]) for _, c in todo) - 1
    base = 1 + len(chunk)
    for k, (j, _) in enumerate(todo):
        decoder.engine.seq_cp(seq_of[j], base + k, -1, -1)
    rows = Rows.joined([(list(conts[c][:-1]) + [0] * (width + 1 - len(conts[c])), first + lens[j], base + k)
                        for k, (j, c) in enumerate(todo)])
    rows.output[:] = 1  # padding rows too: every call's outputs then fill its rows
    per_seq = []
    for j, c in todo:
        on = np.arange(width) < len(conts[c]) - 1
        per_seq.append([(s, np.where(on, s.strength if s.continues else 0.0, 0.0).astype(np.float32))
                        for s in chunk[j][1]])
    rows.inject = merge_specs(per_seq, width)
    logits, _, stats = decoder.run(rows, gather, stats=True)
    for k, (j, c) in enumerate(todo):  # token i + 1 of continuation c, after its token i
        for i in range(len(conts[c]) - 1):
            out[j, c, i + 1] = logits[k * width + i, col[conts[c][i + 1]]] - stats[k * width + i, 1]
