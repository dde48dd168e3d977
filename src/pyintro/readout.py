"""Readouts: how a point's logits or continuation log-probabilities become a number.

Every experiment reads its points through these functions:

- the Yes/No belief b = logit(Yes) - logit(No), from logits (``yes_no``, ``belief``) or from the
  first-token log-probabilities of a prompt tree (``YesNo.b``);
- phrase log-odds: log-sum-exp of some continuations' log-likelihoods against others'
  (``log_odds``);
- a forced choice: the rank of a candidate among others by log-likelihood (``rank``);
- the cosine of captured activations with concept vectors (``cosines``).

**The answer tokens** (``answer_words``): by default one token each, b = logit("Yes") -
logit("No"), as the follow-up post defines it; in a raw transcript, where the answer follows
"Assistant:", the space-led " Yes" and " No". ``"pooled"`` takes every single-token spelling
(" Yes", "YES", "yes", ...) as one set, whose logit is the log-sum-exp of its tokens' logits. Pooling
lets a vector that raises "YES" and "NO" (the all-caps vector does) move b directly, so the
experiments record b under both and say whether the choice matters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

__all__ = ["POOLED_NO", "POOLED_YES", "Belief", "YesNo", "answer_words", "belief", "cosines", "from_logits",
           "log_odds", "logsumexp", "rank", "single_token_ids", "yes_no", "yes_no_ids"]

POOLED_YES = ("Yes", " Yes", "YES", "yes", " yes")
POOLED_NO = ("No", " No", "NO", "no", " no")


def logsumexp(x, axis: int = -1) -> np.ndarray:
    """log(sum(exp(x))) along ``axis``, in float64, stable."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


# -- answer tokens --------------------------------------------------------------------------------

def single_token_ids(model, words: Iterable[str]) -> list[int]:
    """Ids of the words that are one token in this model's vocabulary (order kept, no repeats)."""
    if isinstance(words, str):
        words = [words]
    words = list(words)
    ids: list[int] = []
    for w in words:
        if not isinstance(w, str) or not w:
            raise ValueError(f"answer words must be non-empty strings, got {w!r}")
        toks = model.tokenize(w, special=False)
        if len(toks) == 1 and toks[0] not in ids:
            ids.append(toks[0])
    if not ids:
        raise ValueError(f"none of {words!r} is a single token in this model's vocabulary; pass other spellings")
    return ids


def answer_words(model, answers="default") -> tuple[list[str], list[str]]:
    """The Yes and No spellings ``answers`` names: "default" ("Yes" / "No", space-led in a raw
    transcript), "pooled" (every spelling in ``POOLED_YES`` / ``POOLED_NO``), a (yes, no) pair of
    lists, or the CLI's "Yes,yes/No,no"."""
    if isinstance(answers, (tuple, list)) and len(answers) == 2:
        return list(answers[0]), list(answers[1])
    if answers == "default":
        lead = " " if getattr(model.prompt_format, "kind", "") == "raw" else ""
        return [lead + "Yes"], [lead + "No"]
    if answers == "pooled":
        return list(POOLED_YES), list(POOLED_NO)
    if isinstance(answers, str) and answers.count("/") == 1:
        yes, no = ([w for w in side.split(",") if w] for side in answers.split("/"))
        if yes and no:
            return yes, no
    raise ValueError(f"answer tokens {answers!r}: use default, pooled, or YES,...,/NO,... (e.g. 'Yes,yes/No,no')")


def yes_no_ids(model, yes: Optional[Sequence[str]] = None, no: Optional[Sequence[str]] = None):
    """(yes_ids, no_ids) for the given spellings (None: the default answers); the sets must not overlap."""
    dy, dn = answer_words(model)
    y = single_token_ids(model, dy if yes is None else yes)
    n = single_token_ids(model, dn if no is None else no)
    if set(y) & set(n):
        raise ValueError("the Yes and No word lists share a token; give disjoint spellings")
    return y, n


class YesNo:
    """The Yes and No token sets of one model (``answers`` as ``answer_words`` takes it), read
    from logits or from a prompt tree."""

    def __init__(self, model, answers="default"):
        self.answers = answers if isinstance(answers, str) else "custom"
        self.yes, self.no = yes_no_ids(model, *answer_words(model, answers))

    def describe(self, model) -> dict:
        return {"answers": self.answers, "yes_ids": self.yes, "no_ids": self.no,
                "yes": [model.token_str(t) for t in self.yes], "no": [model.token_str(t) for t in self.no]}

    @property
    def ids(self) -> list[int]:
        """The Yes ids, then the No ids (the columns to gather)."""
        return self.yes + self.no

    @property
    def continuations(self) -> list[list[int]]:
        """Each id as a one-token continuation (for ``Model.score``)."""
        return [[t] for t in self.ids]

    def b(self, lp: np.ndarray, ids: Optional[Sequence[int]] = None) -> np.ndarray:
        """b per point from a prompt tree: lp [n_points, n_continuations, max_len], whose first
        continuations are the one-token answers ``ids`` (default: ``continuations``, in order)."""
        ids = self.ids if ids is None else list(ids)
        col = {t: i for i, t in enumerate(ids)}
        first = np.asarray(lp)[:, :len(ids), 0]
        return logsumexp(first[:, [col[t] for t in self.yes]]) - logsumexp(first[:, [col[t] for t in self.no]])


# -- reading logits ---------------------------------------------------------------------------------

def yes_no(logits: np.ndarray, yes_cols: Sequence[int], no_cols: Sequence[int], stats=None) -> dict:
    """b, p_yes, p_no (and the top token id) for each row of ``logits`` [n, n_cols].

    stats: [n, 3] float64, each row's full-vocabulary (max, log-sum-exp, argmax) as
           ``Model.points(..., stats=True)`` returns them: p_* are then softmax probabilities
           over the whole vocabulary and ``top`` is the argmax token id. None: p_* are
           normalised over the Yes and No columns only (p_yes + p_no = 1, whatever else was
           gathered) and ``top`` is None.
    Returns {"b": [n], "p_yes": [n], "p_no": [n], "top": [n] or None} as float64 / int64.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D [n_rows, n_cols], got shape {logits.shape}")
    ly = logsumexp(logits[:, list(yes_cols)], axis=1)  # [n]
    ln = logsumexp(logits[:, list(no_cols)], axis=1)  # [n]
    if stats is None:
        lz, top = np.logaddexp(ly, ln), None
    else:
        stats = np.asarray(stats, dtype=np.float64).reshape(len(logits), 3)
        lz, top = stats[:, 1], stats[:, 2].astype(np.int64)
    return {"b": ly - ln, "p_yes": np.exp(ly - lz), "p_no": np.exp(ln - lz), "top": top}


@dataclass(frozen=True)
class Belief:
    """The model's Yes/No answer at one point.

    b:     logit(Yes) - logit(No), each set combined with logsumexp.
    p_yes: softmax probability (over the full vocabulary) of the Yes tokens together.
    p_no:  the same for the No tokens.
    mass:  p_yes + p_no, the share of the next-token probability the answer sets hold.
    top:   the 5 most likely next tokens, [(token_str, prob)].
    yes_ids, no_ids: the token ids used.
    """

    b: float
    p_yes: float
    p_no: float
    mass: float
    top: list
    yes_ids: tuple
    no_ids: tuple


def from_logits(model, logits: np.ndarray, yes_ids: Sequence[int], no_ids: Sequence[int], k: int = 5,
                stats=None) -> Belief:
    """A Belief from one full-vocabulary logits row [n_vocab] (and its ``stats`` row; None:
    computed here in float64)."""
    row = np.asarray(logits, dtype=np.float32).reshape(-1)
    if row.shape[0] != model.n_vocab:
        raise ValueError(f"expected a full logits row of {model.n_vocab} values, got {row.shape[0]}")
    if stats is None:
        stats = [float(row.max()), float(logsumexp(row)), float(np.argmax(row))]
    s = yes_no(row[None, :], yes_ids, no_ids, stats)
    lz = float(np.asarray(stats).reshape(3)[1])
    best = np.argsort(-row, kind="stable")[:k]
    top = [(model.token_str(int(t)), float(np.exp(float(row[t]) - lz))) for t in best]
    p_yes, p_no = float(s["p_yes"][0]), float(s["p_no"][0])
    return Belief(float(s["b"][0]), p_yes, p_no, p_yes + p_no, top, tuple(yes_ids), tuple(no_ids))


def belief(model, ids: Sequence[int], inject=(), yes: Optional[Sequence[str]] = None,
           no: Optional[Sequence[str]] = None) -> Belief:
    """The Yes/No belief at the last token of ``ids`` under ``inject`` (one decode, full logits).

    yes, no: spellings to try (None: the default answers, ``answer_words``); multi-token ones
             are dropped.
    In a batch-invariant Model (the default), b equals the same point's b in any sweep, bit for bit.
    """
    yes_ids, no_ids = yes_no_ids(model, yes, no)
    logits, stats = model.points(ids, [list(inject)], stats=True)  # [1, n_vocab], [1, 3]
    return from_logits(model, logits[0], yes_ids, no_ids, stats=stats[0])


# -- reading prompt trees ---------------------------------------------------------------------------

def log_odds(lp: np.ndarray, first: Sequence[int], second: Sequence[int]) -> np.ndarray:
    """Phrase log-odds per point: the log-sum-exp of the ``first`` continuations' log-likelihoods
    minus that of the ``second`` ones. lp: [n_points, n_continuations, max_len] (NaN past a
    continuation's end, as ``Model.score`` returns it)."""
    ll = np.nansum(np.asarray(lp), axis=2)  # [n_points, n_continuations]
    return logsumexp(ll[:, list(first)], axis=1) - logsumexp(ll[:, list(second)], axis=1)


def rank(scores: np.ndarray, target: int, among: Optional[Sequence[int]] = None) -> int:
    """The rank (1 = best) of candidate ``target`` among ``among`` (default: all) by ``scores``
    [n_candidates]; ties count in the target's favour."""
    scores = np.asarray(scores)
    pool = scores if among is None else scores[list(among)]
    return 1 + int(np.sum(pool > scores[target]))


def cosines(acts: np.ndarray, target: np.ndarray, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of each captured row with the word's vector and with each control
    word's vector, in float64. acts: [n_layer, n_tok, n_embd]; target: [n_layer, n_embd];
    controls: [n_ctrl, n_layer, n_embd]. Returns ([n_layer, n_tok], [n_ctrl, n_layer, n_tok])."""
    a = np.asarray(acts, np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    t = np.asarray(target, np.float64)
    t = t / np.linalg.norm(t, axis=-1, keepdims=True)
    c = np.asarray(controls, np.float64)
    c = c / np.linalg.norm(c, axis=-1, keepdims=True)
    return np.einsum("ltd,ld->lt", a, t), np.einsum("ltd,kld->klt", a, c)
