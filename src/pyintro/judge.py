"""A local model as judge: the paper's grader prompts, read as Yes/No log-probabilities.

The paper graded with Claude; here any GGUF model pyintro loads can judge, offline. Each
grader prompt (``stimuli.PROMPTS[...]["grader_prompts"]``, slots filled in) is the judge's
user turn; instead of letting it "think out loud" and parsing its last word, pyintro reads the
judge's belief at its first answer token: ``b = logsumexp(log p(YES spellings)) - logsumexp(log
p(NO spellings))``, and the verdict is ``b > 0``. No sampling, so the same verdict alone or in
a batch; all prompts of a call are scored together (``Model.score``).

Without a judge, experiments fall back to keyword graders, which are cruder.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pyintro.readout import logsumexp

__all__ = ["Judge", "fill"]

YES = ("YES", "Yes", "yes", " YES", " Yes", " yes")
NO = ("NO", "No", "no", " NO", " No", " no")


class Judge:
    """A loaded model used as a grader. ``verdicts(prompts)`` -> b per prompt (float64)."""

    def __init__(self, model):
        self.model = model
        ids = []
        for words in (YES, NO):
            side = []
            for w in words:
                t = model.tokenize(w, special=False)
                if len(t) == 1 and t[0] not in side and t[0] not in [x for s in ids for x in s]:
                    side.append(t[0])
            if not side:
                raise ValueError(f"the judge {model.path.name} has no single token for {words[0]}: choose another judge")
            ids.append(side)
        self.yes, self.no = ids
        self.name = model.path.name

    def verdicts(self, prompts: Sequence[str]) -> np.ndarray:
        """The judge's b for each filled-in grader prompt (its user turn)."""
        if not prompts:
            return np.zeros(0)
        ids = [self.model.prompt_ids(self.model.render([("user", p)])) for p in prompts]
        lp = self.model.score(ids, [[] for _ in ids], [[t] for t in self.yes + self.no])[:, :, 0]
        return logsumexp(lp[:, :len(self.yes)], axis=1) - logsumexp(lp[:, len(self.yes):], axis=1)

    def describe(self) -> dict:
        return {"model": str(self.model.path), "model_sha256": self.model.sha256,
                "prompt_format": self.model.prompt_format.describe(),
                "yes": [self.model.token_str(t) for t in self.yes], "no": [self.model.token_str(t) for t in self.no]}


def fill(template: str, **slots: str) -> str:
    """A grader prompt with its {slots} filled; unknown slots are refused."""
    try:
        return template.format(**slots)
    except KeyError as e:
        raise ValueError(f"the grader prompt needs the slot {e.args[0]}") from None
