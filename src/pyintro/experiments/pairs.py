"""Stimuli that experiments 2-4 of Lindsey (2025) share: sentence/word pairs, the token span of
a piece of a prompt, and checks on the inputs a user may pass instead of the paper's lists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro.experiments.common import seed_for
from pyintro.injection import strength_list
from pyintro.stimuli import CONCEPT_WORDS, SENTENCES


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


def grid(model, words, sentences, n_pairs, layers, strengths, quick: bool, quick_sizes: dict, default_strengths):
    """What an experiment's ``run()`` starts from: (word pool, sentences, pair count, layers,
    strengths), the paper's lists and grid by default, ``quick_sizes`` ("pairs", "layers",
    "strengths") with ``quick`` wherever the caller gave nothing. Words and sentences are checked."""
    from pyintro import concepts
    from pyintro.experiments.common import evenly_spaced

    pool = concepts.check_words(words)
    sentences = check_sentences(SENTENCES if sentences is None else sentences)
    if n_pairs is None and quick:
        n_pairs = min(quick_sizes["pairs"], len(sentences))
    if layers is None and quick:
        layers = evenly_spaced(model.n_layer, quick_sizes["layers"])
    if strengths is None:
        strengths = quick_sizes["strengths"] if quick else default_strengths
    return pool, sentences, n_pairs, layers, strengths


def check_sentences(sentences: Sequence[str]) -> list[str]:
    out = [s.strip() if isinstance(s, str) else s for s in sentences]
    if not out:
        raise ValueError("the sentence list is empty: give at least one sentence")
    for i, s in enumerate(out, 1):
        if not isinstance(s, str) or not s:
            raise ValueError(f"sentence {i} is empty; remove it (one sentence per line)")
    return out


def check_strengths(strengths, limit: float = 1e4) -> list[float]:
    """Checked strengths for experiments 2 and 3: finite, 0 to ``limit``, none twice."""
    out = strength_list(strengths)
    for s in out:
        if not 0 <= s <= limit:
            raise ValueError(f"strength {s:g} is out of range: use strengths from 0 to {limit:g} "
                             "(the paper's are 1, 2, 4, 8 and 16)")
    return out


def check_prefill_word(model, word: str) -> list[int]:
    """The tokens of ``word`` as the assistant's (prefilled) answer; refused if it has none."""
    from pyintro.experiments.common import answer_ids

    if not isinstance(word, str) or not word.strip() or not model.tokenize(word.strip(), special=False):
        raise ValueError(f"the prefill word {word!r} tokenises to nothing in this model; choose another word")
    return answer_ids(model, word.strip())


def token_span(model, text: str, ids: Sequence[int], start: int, end: int) -> list[int]:
    """The indices of the tokens of ``ids`` (the prompt ids of ``text``) whose text overlaps
    ``text[start:end]``. Each token's characters come from detokenizing the prompt up to it, so
    a whitespace token before the piece is not counted even when the piece's text alone would
    tokenize differently; a begin-of-sequence token's text (not in ``text``) is skipped."""
    ids = list(ids)
    full = model.detokenize(ids)
    if not full.endswith(text):
        raise ValueError("the prompt's tokens do not detokenize to its text; cannot locate the sentence in it")
    lead = len(full) - len(text)
    ends = [len(model.detokenize(ids[:k + 1])) - lead for k in range(len(ids))]
    starts = [-lead] + ends[:-1]
    span = [k for k in range(len(ids)) if starts[k] < end and ends[k] > start and ends[k] > starts[k]]
    if not span:
        raise ValueError(f"no token of the prompt holds {text[start:end]!r}")
    return span


def span_of(model, text: str, ids: Sequence[int], piece: str, after: int = 0) -> list[int]:
    """``token_span`` of the first occurrence of ``piece`` in ``text`` at or after char ``after``."""
    at = text.index(piece, after)
    return token_span(model, text, ids, at, at + len(piece))


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


def merge(dirs, out_dir, read, key, columns, finish) -> dict:
    """Shards of one experiment (folders that each hold a results.csv of the same run, made with
    ``--shard K/N``) into ``out_dir``: the rows once each (``results.merge_rows``), then the
    experiment's ``finish`` (cells, figures, summary). Refuses shards of different model files."""
    import json

    from pyintro.results import merge_rows, sidecar, write_rows

    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise ValueError("no shard folders given to merge")
    metas = []
    for d in dirs:
        side = sidecar(d / "results.csv")
        if not side.is_file():
            raise FileNotFoundError(f"{d} holds no results.csv.json: is it an output folder of this experiment?")
        metas.append(json.loads(side.read_text()))
    for d, m in zip(dirs[1:], metas[1:]):
        for k in ("model_sha256", "numerics", "prompt_format", "seed", "pairs", "pool", "grid", "phrases", "layers",
                  "variants", "control_words", "vector_sha256"):
            if m.get(k) != metas[0].get(k):
                raise ValueError(f"{d} was made with a different {k} than {dirs[0]}; merge shards of one run only")
    rows = merge_rows([read(d / "results.csv") for d in dirs], key)
    out_dir = Path(out_dir)
    write_rows(out_dir / "results.csv", rows, columns)
    prov = {k: metas[0].get(k) for k in ("pyintro", "llama_cpp_python", "model_path", "model_sha256", "quant_type",
                                         "numerics", "prompt_format")}
    return finish(rows, out_dir, Path(metas[0]["model_path"]).name, prov)
