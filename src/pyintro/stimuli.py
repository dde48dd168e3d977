"""The stimuli of Lindsey (2025), "Emergent Introspective Awareness in Large Language Models"
(Transformer Circuits Thread, 2025-10-29, https://transformer-circuits.pub/2025/introspection/):
its word lists, sentences, prompts and judge prompts, shipped as package data
(``pyintro/data/stimuli.json``; where they were read from, and the few editorial fixes, are in
its ``source`` entry). The entries are the paper's; pyintro never edits them.

- ``CONCEPT_WORDS``: the 50 concepts injected in experiments 1-3.
- ``BASELINE_WORDS``: the 100 baseline words whose mean activation is subtracted (the paper's
  list holds "Butterflies" twice; it is kept as printed, so the mean counts it twice).
- ``CATEGORY_WORDS``: {category: 50 words} for experiment 1's category analysis.
- ``CONTROL_WORDS``: experiment 4's 100 control words (its baseline band).
- ``SENTENCES``: experiments 2-4's 50 sentences.
- ``BIAS_QUESTIONS``: experiment 1's 20 yes/no questions whose true answer is "no".
- ``PROMPTS``: the prompts of each experiment (``PROMPTS["exp1"]["messages"]``, ...).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

__all__ = ["BASELINE_WORDS", "BIAS_QUESTIONS", "CATEGORY_WORDS", "CITATION", "CONCEPT_WORDS", "CONTROL_WORDS",
           "PROMPTS", "SENTENCES", "SOURCE", "load", "messages"]


@lru_cache(maxsize=1)
def load() -> dict:
    """The whole stimuli file (a fresh copy is not made: do not modify it)."""
    return json.loads(files("pyintro").joinpath("data/stimuli.json").read_text(encoding="utf-8"))


_S = load()
SOURCE: dict = _S["source"]
CONCEPT_WORDS: tuple[str, ...] = tuple(_S["concept_words"])
BASELINE_WORDS: tuple[str, ...] = tuple(_S["baseline_words"])
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _S["exp1_category_words"].items()}
CONTROL_WORDS: tuple[str, ...] = tuple(_S["exp4_control_words"])
SENTENCES: tuple[str, ...] = tuple(_S["exp2_sentences"])
BIAS_QUESTIONS: tuple[str, ...] = tuple(_S["exp1_bias_control_questions"]["questions"])
PROMPTS: dict = _S["prompts"]
CITATION = SOURCE["paper"]


def messages(entry) -> list[tuple[str, str]]:
    """A prompt entry's messages as (role, content) pairs."""
    return [(m["role"], m["content"]) for m in entry["messages"]]
