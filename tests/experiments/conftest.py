"""Fixtures experiments 2-4's tests share: the paper's first sentence/word pairs and a concept
library holding every word they inject or compare with.

The library's vectors are seeded random directions (norm 8 at every layer) saved in the
library's own format, not extracted: the invariants these tests check hold for any vector, and
extraction (100 baseline prompts) is tested in test_detection.py."""

import pytest

from pyintro import concepts
from pyintro.experiments import pairs, prefill
from pyintro.stimuli import CONCEPT_WORDS, CONTROL_WORDS
from tiny_models import random_library

N_PAIRS = 3


@pytest.fixture(scope="session")
def pair_list():
    return pairs.pairs(n=N_PAIRS)


@pytest.fixture(scope="session")
def lib_dir(m, pair_list, tmp_path_factory):
    words = prefill.needed_words(pair_list, CONCEPT_WORDS, 0) + list(CONTROL_WORDS)
    return random_library(m, words, tmp_path_factory.mktemp("lib234"))


@pytest.fixture(scope="session")
def lib(m, lib_dir):
    return concepts.load(lib_dir, m)
