"""Fixtures experiments 2-4's tests share: the paper's first sentence/word pairs and a concept
library holding every word they inject or compare with.

The library's vectors are seeded random directions (norm 8 at every layer) saved in the
library's own format, not extracted: the invariants these tests check hold for any vector, and
extraction (100 baseline prompts) is tested in test_detection.py."""

import warnings

import numpy as np
import pytest

from pyintro import concepts
from pyintro.experiments import pairs, prefill
from pyintro.disk import write_json
from pyintro.stimuli import CONCEPT_WORDS, CONTROL_WORDS
from pyintro.vectors import ConceptVector

N_PAIRS = 3


@pytest.fixture(scope="session")
def pair_list():
    return pairs.pairs(n=N_PAIRS)


def random_library(m, words, folder):
    """A library folder (as ``concepts.library`` writes one) of seeded random directions."""
    rng = np.random.default_rng(7)
    index = {"key": concepts.key(m), "recipe": concepts.RECIPE, "source": "tests: seeded random directions",
             "words": {}}
    for w in words:
        d = rng.standard_normal((m.n_layer, m.n_embd))
        d = (8.0 * d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)  # [n_layer, n_embd]
        v = ConceptVector(d, model_hint=m.arch, name=w, method="random (tests)", model_sha256=m.sha256)
        file = w.lower().replace(" ", "_") + ".gguf"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # layer 0 is kept for pyintro; llama.cpp ignores it
            v.save(folder / file)
        index["words"][w] = {"file": file, "norms": [float(x) for x in v.norms()]}
    write_json(folder / "index.json", index)
    return folder


@pytest.fixture(scope="session")
def lib_dir(m, pair_list, tmp_path_factory):
    words = prefill.needed_words(pair_list, CONCEPT_WORDS, 0) + list(CONTROL_WORDS)
    return random_library(m, words, tmp_path_factory.mktemp("lib234"))


@pytest.fixture(scope="session")
def lib(m, lib_dir):
    return concepts.load(lib_dir, m)
