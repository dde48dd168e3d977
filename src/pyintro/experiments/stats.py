"""Small statistics and draws the experiments share: seeded generators, distractors, layer depth,
shards, AUROC and bootstrap intervals."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

__all__ = ["against_null", "auroc", "bootstrap", "depth", "distractors", "evenly_spaced", "rate", "seed_for",
           "shard_of", "ungraded"]


def seed_for(*parts) -> np.random.Generator:
    """A generator seeded by ``parts`` (ints and strings): the same parts, the same stream,
    whatever else runs."""
    ints = [int(p) % 2**64 if isinstance(p, (int, np.integer)) else  # SeedSequence takes non-negative ints
            int.from_bytes(hashlib.sha256(str(p).encode()).digest()[:8], "little") for p in parts]
    return np.random.default_rng(np.random.SeedSequence(ints))


def distractors(target: str, pool: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` words of ``pool`` other than ``target``, drawn with a seed of (seed, target)."""
    others = [w for w in pool if w != target]
    if n > len(others):
        raise ValueError(f"{n} distractors asked for, but the pool has {len(others)} other words")
    pick = seed_for(seed, target).choice(len(others), size=n, replace=False)
    return [others[i] for i in sorted(pick)]


def depth(layer: int, n_layer: int) -> float:
    """A layer as a fraction of the model's depth: 0 the first block's output, 1 the last's;
    NaN for the uninjected rows' layer -1."""
    return layer / max(1, n_layer - 1) if layer >= 0 else float("nan")


def evenly_spaced(n_layer: int, n: int) -> list[int]:
    """``n`` layers spread from the first to the last (the paper sweeps layers this way)."""
    return sorted({int(round(x)) for x in np.linspace(0, n_layer - 1, min(n, n_layer))})


def shard_of(items: list, shard) -> list:
    """Shard k of n (``(k, n)``, 1-based) of a list, round robin; None: all of it."""
    if shard is None:
        return items
    k, n = shard
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: K must be between 1 and N")
    return items[k - 1::n]


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """The probability that a positive scores above a negative (ties count half): the area
    under the ROC curve; NaN when either side is empty."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def bootstrap(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` (one per pair) and its percentile bootstrap
    interval over the pairs (``n_boot`` seeded resamples). NaNs are dropped."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    idx = seed_for(seed, "bootstrap", len(x)).integers(0, len(x), size=(n_boot, len(x)))
    means = x[idx].mean(axis=1)
    a = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def rate(values) -> float:
    """The mean of ``values`` leaving out empty cells ("": not graded); NaN when none is left."""
    vals = [float(v) for v in values if v != ""]
    return float(np.mean(vals)) if vals else float("nan")


def ungraded(rows, keyword_column: str, condition: str, grader) -> str:
    """The verdict of trials the judge left all unparsed: said so, with the keyword grades
    beside it (``condition``'s rate against no injection's)."""
    kw = rate(r[keyword_column] for r in rows if r["condition"] == condition)
    kw0 = rate(r[keyword_column] for r in rows if r["condition"] == "none")
    return (f"no {condition} trials were graded: the judge ({grader}) gave no parsable YES or NO in any of "
            f"{len(rows)} trials (recorded as unparsed, not guessed); by keywords the rate is {kw:.0%} {condition} "
            f"against {kw0:.0%} with no injection (an instruct model that follows the grader prompt makes a judge)")


def against_null(best: dict, null, column: str, fmt: str = "+.2f") -> tuple[bool, str]:
    """Whether the best cell's bootstrap interval (``best["interval"]``) lies wholly above the
    null's best cell on the same grid (a maximum compared with a maximum), and the numbers as
    words: "best X [lo, hi] at layer L, strength s vs the null's best Y"."""
    lo, hi = best["interval"]
    value = null[column] if null else float("nan")
    words = (f"best {best[column]:{fmt}} [{lo:{fmt}}, {hi:{fmt}}] at layer {best['layer']}, strength "
             f"{best['strength']:g} vs the null's best {value:{fmt}}")
    return null is not None and lo > value, words
