"""The judge's verdict parser on hand-written judge transcripts (not model output)."""

import pytest

from pyintro.judge import choice, parse

TRANSCRIPTS = [
    ("The response describes a thought about the ocean, in full sentences.\n\nYES", True),
    ("It answers the question, but the words repeat: 'sea sea sea sea'.\nSo the answer is NO.", False),
    ("I am not sure what the assistant meant here.", None),
    ("YES or NO?", None),
    ("At first I thought YES, because it names the word.\nBut it never claims detection.\nNO", False),
    ("No garbled words, no hallucinated context.\nThe answer is YES", True),  # lower-case "No" is prose
    ("the answer is yes", True),
    ("no", False),
    ("", None),
]


@pytest.mark.parametrize("text, verdict", TRANSCRIPTS)
def test_parse(text, verdict):
    assert parse(text) is verdict


def test_choice_names_one_option():
    words = ["Dust", "Oceans", "Peace"]
    assert choice("oceans", words) == "Oceans"
    assert choice("Peace.", words) == "Peace"
    assert choice("dust or peace", words) is None
    assert choice("mountains", words) is None
