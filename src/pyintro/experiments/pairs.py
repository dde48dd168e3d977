"""Experiments 2-4's stimuli: the paper's sentences, each paired with a concept word it does not hold,
and checks on the sentences a user may pass instead of the paper's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro.experiments.stats import seed_for
from pyintro.stimuli import CONCEPT_WORDS, SENTENCES

__all__ = ["STRENGTH_RANGE", "check_sentences", "contains_word", "grid", "pairs", "read_sentences", "strengths",
           "word_forms"]

STRENGTH_RANGE = (0.0, 1e4)  # experiments 2 and 3 inject a word's vector: no negative strengths


def word_forms(word: str) -> list[str]:
    """Lower-case forms of ``word`` that count as the word inside a sentence: the word, and its
    singular by dropping "s", "es" or "ies" -> "y" (forms shorter than 4 letters are left out,
    except the word itself)."""
    w = word.lower().strip()
    forms = [w]
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if w.endswith(suffix) and len(w) - len(suffix) + len(repl) >= 4:
            forms.append(w[: len(w) - len(suffix)] + repl)
    return list(dict.fromkeys(forms))


def contains_word(sentence: str, word: str) -> bool:
    """Whether ``sentence`` already holds ``word``: one of its ``word_forms`` at the start of a
    word ("Snowflakes..." holds Snow, "...cherry tree" holds Trees)."""
    s = sentence.lower()
    return any(re.search(r"\b" + re.escape(f), s) for f in word_forms(word))


def pairs(sentences: Sequence[str] = SENTENCES, words: Sequence[str] = CONCEPT_WORDS, seed: int = 0,
          n: Optional[int] = None) -> list[tuple[int, str, str]]:
    """Sentence/word pairs: [(index, sentence, word)], sentence i with a seeded draw of the words
    (without replacement while they last). A draw that leaves a sentence holding its own word
    (``contains_word``) is drawn again, so no pair has its word in its sentence. ``n``: the first
    n pairs (default: one per sentence)."""
    sentences, words = list(sentences), list(words)
    if not sentences or not words:
        raise ValueError("pairs need at least one sentence and one word")
    n = len(sentences) if n is None else int(n)
    if not 1 <= n <= len(sentences):
        raise ValueError(f"pairs: n must be between 1 and {len(sentences)} (the sentences given), got {n}")
    rng = seed_for(seed, "pairs")
    reps = -(-len(sentences) // len(words))  # enough copies of the word list for every sentence
    for _ in range(1000):
        order = np.concatenate([rng.permutation(len(words)) for _ in range(reps)])[: len(sentences)]
        if not any(contains_word(s, words[k]) for s, k in zip(sentences, order)):
            return [(i, sentences[i], words[int(order[i])]) for i in range(n)]
    raise ValueError("could not pair the sentences with words none of them contains; give other words")


def read_sentences(path) -> list[str]:
    """A sentence file: one sentence per line. **An empty line is refused** (with its line
    number), rather than skipped: a blank sentence would silently shift every pair."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sentence file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():  # a trailing newline or two is not a sentence
        lines.pop()
    if not lines:
        raise ValueError(f"sentence file {path} has no sentences; give one sentence per line")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"line {i} of {path} is empty; remove it (one sentence per line)")
    return [line.strip() for line in lines]


def check_sentences(sentences: Sequence[str]) -> list[str]:
    out = [s.strip() if isinstance(s, str) else s for s in sentences]
    if not out:
        raise ValueError("the sentence list is empty: give at least one sentence")
    for i, s in enumerate(out, 1):
        if not isinstance(s, str) or not s:
            raise ValueError(f"sentence {i} is empty; remove it (one sentence per line)")
    return out


def grid(model, words, sentences, n_pairs, layers, strengths, quick: Optional[dict], default_strengths):
    """What experiments 2 and 3 start from: (word pool, sentences, pair count, layers, strengths),
    the paper's lists and grid by default, the ``quick`` sizes ("pairs", "layers", "strengths")
    wherever the caller gave nothing. Words and sentences are checked."""
    from pyintro import concepts
    from pyintro.experiments.stats import evenly_spaced

    pool = concepts.check_words(words)
    sentences = check_sentences(SENTENCES if sentences is None else sentences)
    if quick:
        n_pairs = min(quick["pairs"], len(sentences)) if n_pairs is None else n_pairs
        # the last layer's output is read only at the output rows: an injection on the sentence there does nothing
        layers = evenly_spaced(model.n_layer - 1, quick["layers"]) if layers is None else layers
    if strengths is None:
        strengths = quick["strengths"] if quick else default_strengths
    return pool, sentences, n_pairs, layers, strengths


def strengths(values):
    """Experiments 2 and 3's strengths, checked: finite, 0 to 10^4, none twice."""
    from pyintro.injection import Strengths

    return Strengths.of(values, *STRENGTH_RANGE, " (the paper's are 1, 2, 4, 8 and 16)")
