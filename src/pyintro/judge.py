"""A local model as judge: the paper's grader prompts, answered the way the paper asks.

The paper graded with Claude; here any GGUF model pyintro loads can judge, offline. Each grader
prompt (``stimuli.PROMPTS[...]["grader_prompts"]``, slots filled in) is the judge's user turn.
The judge writes its answer greedily (its reasoning, when the prompt invites it to think out
loud), and the verdict is read from the text (``parse``): the last standalone YES or NO. A
judge whose answer holds neither, or both on its last line, is recorded as unparsable (None),
never guessed. Greedy decoding makes a verdict the same alone or among others.

Without a judge, experiments fall back to keyword graders, which are cruder; runs with a judge
report how often the two agree.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

__all__ = ["Judge", "choice", "fill", "parse"]

_UPPER = re.compile(r"\b(YES|NO)\b")
_ANY = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse(text: str) -> Optional[bool]:
    """A judge's verdict: True for YES, False for NO, None when its text gives no single answer.
    The answer is on the last line that holds a standalone YES or NO in upper case, as the grader
    prompts ask (or, in a text with none in upper case, a yes or no in any case); when that line
    holds both, the verdict is None."""
    pattern = _UPPER if _UPPER.search(text) else _ANY
    lines = [ln for ln in text.splitlines() if pattern.search(ln)]
    if not lines:
        return None
    found = {w.upper() for w in pattern.findall(lines[-1])}
    return None if len(found) > 1 else found.pop() == "YES"


def choice(text: str, options: Sequence[str]) -> Optional[str]:
    """The one option a judge's one-word answer names (case and punctuation ignored), or None."""
    words = re.findall(r"[a-z]+", text.lower())
    named = [o for o in options if o.lower() in words]
    return named[0] if len(named) == 1 else None


class Judge:
    """A loaded model used as a grader. ``answers(prompts)`` are its texts; ``verdicts`` parse
    them to YES/NO (None: unparsable); ``choices`` to one of a list of words."""

    def __init__(self, model, max_tokens: int = 96):
        self.model, self.max_tokens = model, int(max_tokens)
        self.name = model.path.name

    def answers(self, prompts: Sequence[str], max_tokens: Optional[int] = None) -> list[str]:
        """The judge's greedy answer to each filled-in grader prompt (its user turn)."""
        out = []
        for p in prompts:
            ids = self.model.prompt_ids(self.model.render([("user", p)]))
            toks = self.model.generate(ids, max_tokens or self.max_tokens)[0]
            out.append(self.model.detokenize([t for t in toks if not self.model.is_eog(t)], special=False))
        return out

    def verdicts(self, prompts: Sequence[str]) -> list[Optional[bool]]:
        return [parse(t) for t in self.answers(prompts)]

    def choices(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[Optional[str]]:
        return [choice(t, o) for t, o in zip(self.answers(prompts, 8), options)]

    def describe(self) -> dict:
        return {"model": str(self.model.path), "model_sha256": self.model.sha256, "max_tokens": self.max_tokens,
                "prompt_format": self.model.prompt_format.describe(), "decoding": "greedy",
                "verdict": "the last standalone YES or NO of its answer (unparsable: recorded as empty)"}


def fill(template: str, **slots: str) -> str:
    """A grader prompt with its {slots} filled; unknown slots are refused."""
    try:
        return template.format(**slots)
    except KeyError as e:
        raise ValueError(f"the grader prompt needs the slot {e.args[0]}") from None
