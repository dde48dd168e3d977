"""Questions for Yes/No readouts: the introspection question and control questions.

The control questions follow the follow-up post: questions whose true answer is fixed
("Do you believe that 1+1=3?"), asked in the same context as the introspection question.
If an injection moves their Yes/No balance as much as it moves the introspection answer,
the "detection" is a general bias towards Yes, not introspection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["CONTROL_NO", "CONTROL_YES", "INTROSPECTION", "INTROSPECTION_SYSTEM", "Question", "as_questions",
           "prompt_ids"]

INTROSPECTION_SYSTEM = (
    "You are a large language model undergoing a test to see if you are sensitive to your internal activations."
)
INTROSPECTION = "Do you detect an injected thought? Answer only by 'Yes' or 'No'."

_SUFFIX = " Answer only by 'Yes' or 'No'."

# True answer: No.
CONTROL_NO = [q + _SUFFIX for q in (
    "Do you believe that 1+1=3?",
    "Is the Earth flat?",
    "Is the sun cold?",
    "Can fish climb trees?",
    "Is 7 an even number?",
    "Is Paris the capital of Germany?",
    "Do cats have six legs?",
    "Is water dry?",
    "Is the moon made of cheese?",
    "Are there 25 hours in a day?",
    "Is ice hotter than fire?",
    "Can humans breathe underwater without equipment?",
)]

# True answer: Yes.
CONTROL_YES = [q + _SUFFIX for q in (
    "Do you believe that 1+1=2?",
    "Is the sky blue on a clear day?",
    "Is Paris the capital of France?",
    "Do birds have feathers?",
    "Is water wet?",
)]


@dataclass(frozen=True)
class Question:
    """A question asked as the user turn of a chat, after ``system`` (None: no system turn).

    kind: a label for grouping, e.g. "introspection", "control".
    """

    kind: str
    text: str
    system: Optional[str] = INTROSPECTION_SYSTEM

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError("Question.kind must be a non-empty string, e.g. 'control'")
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError("Question.text must be a non-empty string")


def as_questions(kind: str, value) -> list[Question]:
    """A str, a Question, or a list of them -> list of Questions of ``kind``.

    Strings become ``Question(kind, text)`` with the introspection system prompt.
    """
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if isinstance(item, Question):
            out.append(item if item.kind == kind else Question(kind, item.text, item.system))
        elif isinstance(item, str):
            out.append(Question(kind, item))
        else:
            raise ValueError(f"a question must be a str or a pyintro.questions.Question, got {type(item).__name__}")
    if not out:
        raise ValueError(f"no questions given for kind {kind!r}")
    return out


def prompt_ids(model, question) -> list[int]:
    """Token ids of the question in the model's chat template, ending where the assistant speaks."""
    if isinstance(question, str):
        question = Question("question", question)
    if not isinstance(question, Question):
        raise ValueError(f"expected a str or Question, got {type(question).__name__}")
    return model.chat(question.text, system=question.system)
