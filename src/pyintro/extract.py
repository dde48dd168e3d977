"""Concept vectors from a model's own activations.

Every method reads all layers at one token of each prompt, in one batched pass
(``Model.capture_many``). Prompts go through the model's chat template unless
``chat=False``. The vectors record where they came from: ``prompts`` holds each text as
fed to the tokenizer, prefixed ``+`` (positive side) or ``-`` (negative side).
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from pyintro.stimuli import BASELINE_WORDS
from pyintro.vectors import ConceptVector

Texts = Union[str, Sequence[str]]


def contrast(model, positive: Texts, negative: Texts, position="last", chat: bool = True,
             name: str | None = None) -> ConceptVector:
    """``activation(positive) - activation(negative)`` at every layer.

    positive, negative: a text, or a list of texts (each side is then averaged).
    position: ``"last"`` or a token index into each prompt (negative counts from the end).
    The all-caps vector: ``contrast(m, "HI! HOW ARE YOU?", "Hi! How are you?")``.
    """
    pos = _texts(positive, "positive")
    neg = _texts(negative, "negative")
    index, label = _position(position)
    texts = [_prompt_text(model, t, chat) for t in pos + neg]
    acts = activations(model, texts, index)  # [n_pos + n_neg, n_layer, n_embd]
    directions = acts[: len(pos)].mean(0) - acts[len(pos):].mean(0)  # [n_layer, n_embd]
    if name is None:
        name = f"{_summary(pos)} vs {_summary(neg)}"
    return _vector(model, directions, name, "contrast", _signed(texts, len(pos)), label)


def mean_difference(model, concept: Texts, baseline: Sequence[str] | None = None,
                    template: str = "Tell me about {}", chat: bool = True, progress=None):
    """The concept's activation minus the mean over baseline words, at every layer.

    Activations are read at the last token of ``template.format(word)``. ``baseline``
    defaults to ``BASELINE_WORDS``. With a list of concepts, returns a dict
    concept -> ConceptVector; all prompts run in one batched pass and the baseline once.
    ``progress``: as in ``pyintro.progress`` (a bar over the prompts in a terminal).
    """
    single = isinstance(concept, str)
    concepts = _texts(concept, "concept")
    for c in concepts:
        if not c.strip():
            raise ValueError("a concept is empty: give a word such as 'Dust'")
    if len(set(concepts)) != len(concepts):
        raise ValueError("a concept is listed twice: give each concept once")
    words = _texts(BASELINE_WORDS if baseline is None else baseline, "baseline")
    if any(not w.strip() for w in words):
        raise ValueError("a baseline word is empty: remove it")
    _check_template(template)

    c_texts = prompt_texts(model, concepts, template, chat)
    b_texts = prompt_texts(model, words, template, chat)
    acts = activations(model, c_texts + b_texts, -1, progress)  # [n_concepts + n_baseline, n_layer, n_embd]
    base = acts[len(concepts):].mean(0)  # [n_layer, n_embd]
    out = {c: difference(model, c, acts[i], base, c_texts[i], b_texts) for i, c in enumerate(concepts)}
    return out[concepts[0]] if single else out


def prompt_texts(model, words: Sequence[str], template: str = "Tell me about {}", chat: bool = True) -> list[str]:
    """The exact text of each word's prompt, as ``mean_difference`` feeds it to the tokenizer."""
    return [_prompt_text(model, template.format(w), chat) for w in words]


def activations(model, texts: list[str], index: int = -1, progress=False) -> np.ndarray:
    """All layers at token ``index`` of each text (-1: the last), float64 ``[n_texts, n_layer, n_embd]``
    (float32 captures widened: exact)."""
    ids = [model.prompt_ids(t) for t in texts]
    return model.capture_many(ids, layers=None, position=index, progress=progress).astype(np.float64)


def difference(model, name: str, act: np.ndarray, base: np.ndarray, text: str, baseline_texts: list[str]):
    """``mean_difference``'s vector from its parts: the concept prompt's activations ``act``
    [n_layer, n_embd] minus the baseline mean ``base`` [n_layer, n_embd] (float64 both), with
    the prompts in its provenance. Extracting in pieces (``pyintro.concepts``) gives the same
    bits as one ``mean_difference`` pass."""
    return _vector(model, act - base, name, "mean_difference", _signed([text] + list(baseline_texts), 1), "last")


def pca(model, pairs: Sequence[tuple[str, str]], chat: bool = True, name: str | None = None) -> ConceptVector:
    """Per layer, the first principal component of the paired differences (positive - negative).

    The differences ``[n_pairs, n_embd]`` are centred, then decomposed by SVD. The sign is
    chosen so that positives project above negatives on average. Each layer's direction
    is scaled to the mean norm of that layer's (uncentred) differences, so that strengths
    are comparable with ``contrast`` vectors. Needs at least two pairs.
    """
    pairs = _pairs(pairs)
    pos = [p for p, _ in pairs]
    neg = [n for _, n in pairs]
    texts = [_prompt_text(model, t, chat) for t in pos + neg]
    acts = activations(model, texts, -1)
    diffs = acts[: len(pairs)] - acts[len(pairs):]  # [n_pairs, n_layer, n_embd]
    directions = np.zeros(diffs.shape[1:], dtype=np.float64)  # [n_layer, n_embd]
    for il in range(diffs.shape[1]):
        d = diffs[:, il]  # [n_pairs, n_embd]
        mean = d.mean(0)  # [n_embd]
        _, s, vt = np.linalg.svd(d - mean, full_matrices=False)
        if s[0] > 1e-9 * (1.0 + np.abs(d).max()):
            u = vt[0]
        else:  # the differences are all the same: their direction is the component
            norm = np.linalg.norm(mean)
            u = mean / norm if norm > 0 else np.zeros_like(mean)
        if mean @ u < 0:  # mean(pos @ u) - mean(neg @ u) == mean(d) @ u must be positive
            u = -u
        directions[il] = u * np.linalg.norm(d, axis=1).mean()
    if name is None:
        name = f"pca: {_summary(pos)} vs {_summary(neg)}"
    interleaved = [t for i in range(len(pairs)) for t in ("+" + texts[i], "-" + texts[len(pairs) + i])]
    return _vector(model, directions, name, "pca", interleaved, "last")


# -- helpers ----------------------------------------------------------------------------------


def _texts(x, what: str) -> list[str]:
    if isinstance(x, str):
        return [x]
    try:
        items = list(x)
    except TypeError:
        raise ValueError(f"{what} must be a string or a list of strings, got {type(x).__name__}") from None
    if not items:
        raise ValueError(f"{what} is empty: give at least one string")
    for t in items:
        if not isinstance(t, str):
            raise ValueError(f"{what} must hold strings, got {t!r}")
    return items


def _pairs(pairs) -> list[tuple[str, str]]:
    if isinstance(pairs, str):
        raise ValueError("pairs must be a list of (positive, negative) text pairs")
    out = []
    for p in pairs:
        if not isinstance(p, (tuple, list)) or len(p) != 2 or not all(isinstance(t, str) for t in p):
            raise ValueError(f"each pair must be (positive_text, negative_text), got {p!r}")
        out.append((p[0], p[1]))
    if len(out) < 2:
        raise ValueError("pca needs at least 2 pairs; for a single pair use contrast()")
    return out


def _position(position) -> tuple[int, str]:
    """``position`` as a capture index and as the label stored in the vector."""
    if isinstance(position, str):
        if position != "last":
            raise ValueError(f"position must be 'last' or an int token index, got {position!r}")
        return -1, "last"
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
        raise ValueError(f"position must be 'last' or an int token index, got {position!r}")
    return int(position), str(int(position))


def _check_template(template: str) -> None:
    if not isinstance(template, str):
        raise ValueError("template must be a string with one '{}' for the word")
    try:
        a, b = template.format("A"), template.format("B")
    except (IndexError, KeyError, ValueError):
        raise ValueError(f"template {template!r} must hold exactly one '{{}}' for the word "
                         "(write other braces as '{{' and '}}')") from None
    if a == b:
        raise ValueError(f"template {template!r} has no '{{}}' for the word")


def _prompt_text(model, text: str, chat: bool) -> str:
    """The exact text to tokenize: ``model.prompt_ids(_prompt_text(...))`` equals ``model.chat(text)``."""
    return model.chat_text(text) if chat else text


def _signed(texts: list[str], n_pos: int) -> list[str]:
    return ["+" + t for t in texts[:n_pos]] + ["-" + t for t in texts[n_pos:]]


def _summary(texts: list[str]) -> str:
    return texts[0] if len(texts) == 1 else f"{texts[0]} (+{len(texts) - 1} more)"


def _vector(model, directions: np.ndarray, name: str, method: str, prompts: list[str],
            position: str) -> ConceptVector:
    return ConceptVector(
        directions=directions.astype(np.float32),
        model_hint=model.arch,
        name=name,
        method=method,
        prompts=prompts,
        position=position,
        model_sha256=model.sha256,
    )


def read_words(path) -> list[str]:
    """A word list file: one word per line (UTF-8), blank lines skipped."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word list not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"word list {path} is not a UTF-8 text file (one word per line)") from None
    words = [w.strip() for w in text.splitlines() if w.strip()]
    if not words:
        raise ValueError(f"word list {path} has no words")
    return words
