"""Prompts built from the stimuli: dialogues in the model's prompt format, answers written for the
assistant, and the token spans of pieces of a prompt (where an injection goes)."""

from __future__ import annotations

from typing import Sequence

__all__ = ["answer_tokens", "prefill_tokens", "prompt", "span_of", "span_start", "token_span"]


def prompt(model, messages, prefill: str = "") -> tuple[str, list[int]]:
    """(text, ids) of a dialogue ending where the assistant speaks, then ``prefill`` (the start
    of the assistant's answer, written for it)."""
    text = model.render(messages, add_assistant=True)
    if prefill:
        text += (" " if model.prompt_format.kind == "raw" else "") + prefill
    return text, model.prompt_ids(text)


def answer_tokens(model, text: str) -> list[int]:
    """Token ids of ``text`` as the start of the assistant's answer: after a chat template's
    generation prompt as written, after a raw transcript's "Assistant:" with a space first."""
    lead = " " if model.prompt_format.kind == "raw" else ""
    return model.tokenize(lead + text, special=False)


def prefill_tokens(model, word: str) -> list[int]:
    """The tokens of ``word`` as the assistant's (prefilled) answer; refused if it has none."""
    if not isinstance(word, str) or not word.strip() or not model.tokenize(word.strip(), special=False):
        raise ValueError(f"the prefill word {word!r} tokenises to nothing in this model; choose another word")
    return answer_tokens(model, word.strip())


def span_start(model, text: str, marker: str, ids: Sequence[int]) -> int:
    """The index of the first token of ``ids`` (the tokens of ``text``) that holds any of
    ``marker``, the first occurrence of it in ``text``: the prompt before it tokenizes the same."""
    at = text.index(marker)
    head = model.prompt_ids(text[:at])
    k = 0
    while k < min(len(ids), len(head)) and ids[k] == head[k]:
        k += 1
    return min(k, len(ids) - 1)


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
