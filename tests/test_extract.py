"""contrast / mean_difference / pca against activations read directly from the model."""

import numpy as np
import pytest

import pyintro
from pyintro.stimuli import BASELINE_WORDS, CONCEPT_WORDS
from pyintro.extract import contrast, mean_difference, pca
from pyintro.vectors import ConceptVector

# A small baseline keeps the tests quick; the default (BASELINE_WORDS) is used once below.
BASELINE = ["Chairs", "Spoons", "Lamps", "Boots", "Kettles", "Pencils"]

PAIRS = [
    ("I love this, it is wonderful!", "I hate this, it is awful!"),
    ("What a beautiful, happy day.", "What a miserable, sad day."),
    ("She smiled with joy.", "She cried with grief."),
    ("Great news, we won!", "Terrible news, we lost."),
    ("The party was delightful.", "The funeral was heartbreaking."),
]


@pytest.fixture(scope="module")
def model():
    m = pyintro.Model.load(n_threads=2)
    yield m
    m.close()


def test_word_lists():
    # The paper's lists, as printed: 100 baseline entries with "Butterflies" twice.
    assert len(BASELINE_WORDS) == 100 and len(set(BASELINE_WORDS)) == 99
    assert BASELINE_WORDS.count("Butterflies") == 2
    assert len(CONCEPT_WORDS) == 50 and len(set(CONCEPT_WORDS)) == 50
    assert not set(BASELINE_WORDS) & set(CONCEPT_WORDS)
    assert all(w and w == w.strip() and w[0].isupper() for w in BASELINE_WORDS + CONCEPT_WORDS)


def test_contrast_equals_captured_difference(model):
    pos, neg = "HI! HOW ARE YOU?", "Hi! How are you?"
    v = contrast(model, pos, neg)
    a = model.capture(model.chat(pos))[:, -1]  # [n_layer, n_embd]
    b = model.capture(model.chat(neg))[:, -1]
    assert isinstance(v, ConceptVector) and v.directions.shape == (model.n_layer, model.n_embd)
    # Captures are bit-identical batched or alone; the difference is computed in float64 and
    # rounded once, which equals float32's correctly rounded subtraction: exact.
    assert np.array_equal(v.directions, a - b)
    assert v.norms().min() > 0
    # provenance
    assert (v.method, v.position, v.model_hint, v.layer_convention) == ("contrast", "last", model.arch, "l_out")
    assert v.model_sha256 == model.sha256 and len(v.model_sha256) == 64
    assert v.prompts == ["+" + model.chat_text(pos), "-" + model.chat_text(neg)]
    assert v.name == f"{pos} vs {neg}"
    assert contrast(model, pos, neg, name="caps").name == "caps"


def test_contrast_is_antisymmetric(model):
    v = contrast(model, "HI! HOW ARE YOU?", "Hi! How are you?")
    w = contrast(model, "Hi! How are you?", "HI! HOW ARE YOU?")
    assert np.array_equal(v.directions, -w.directions)


def test_contrast_lists_position_and_raw_text(model):
    pos = ["GOOD MORNING!", "THANK YOU!"]
    neg = ["Good morning!", "Thank you!"]
    v = contrast(model, pos, neg, chat=False, position=1)
    acts = np.stack([model.capture(model.tokenize(t))[:, 1] for t in pos + neg]).astype(np.float64)
    expected = acts[:2].mean(0) - acts[2:].mean(0)  # the same float64 arithmetic: exact
    assert np.array_equal(v.directions, expected.astype(np.float32))
    assert v.position == "1" and v.prompts == ["+GOOD MORNING!", "+THANK YOU!", "-Good morning!", "-Thank you!"]


def test_contrast_bad_input(model):
    with pytest.raises(ValueError, match="position"):
        contrast(model, "A", "B", position="first")
    with pytest.raises(ValueError, match="empty"):
        contrast(model, [], "B")
    with pytest.raises(ValueError, match="strings"):
        contrast(model, ["A", 3], "B")
    with pytest.raises(ValueError, match="outside"):
        contrast(model, "A", "B", position=500)


def test_mean_difference_equals_manual_computation(model):
    v = mean_difference(model, "Dust", baseline=BASELINE)
    prompts = [model.chat(f"Tell me about {w}") for w in ["Dust"] + BASELINE]
    acts = model.capture_many(prompts).astype(np.float64)  # [7, n_layer, n_embd]
    expected = acts[0] - acts[1:].mean(0)  # the same float64 arithmetic: exact
    assert np.array_equal(v.directions, expected.astype(np.float32))
    assert (v.name, v.method, v.position) == ("Dust", "mean_difference", "last")
    assert v.prompts[0] == "+" + model.chat_text("Tell me about Dust")
    assert v.prompts[1:] == ["-" + model.chat_text(f"Tell me about {w}") for w in BASELINE]


def test_mean_difference_template_and_raw_text(model):
    v = mean_difference(model, "Snow", baseline=BASELINE[:3], template="I keep thinking about {}.", chat=False)
    acts = model.capture_many([model.tokenize(f"I keep thinking about {w}.") for w in ["Snow"] + BASELINE[:3]])
    expected = acts[0].astype(np.float64) - acts[1:].astype(np.float64).mean(0)
    assert np.array_equal(v.directions, expected.astype(np.float32))


def test_mean_difference_batched_equals_single_calls(model):
    # Invariant: batch invariance. Prompts captured together give the vectors they give alone.
    concepts = ["Dust", "Oceans"]
    both = mean_difference(model, concepts, baseline=BASELINE[:2])
    assert list(both) == concepts
    for c in concepts:
        single = mean_difference(model, c, baseline=BASELINE[:2])
        assert np.array_equal(both[c].directions, single.directions)
        assert both[c].name == c and both[c].prompts == single.prompts


def test_mean_difference_default_baseline(model):
    concepts = ["Peace", "Volcanoes"]
    vs = mean_difference(model, concepts)
    words = concepts + list(BASELINE_WORDS)
    acts = model.capture_many([model.chat(f"Tell me about {w}") for w in words]).astype(np.float64)
    base = acts[2:].mean(0)  # [n_layer, n_embd]
    for i, c in enumerate(concepts):
        assert np.array_equal(vs[c].directions, (acts[i] - base).astype(np.float32))
        assert len(vs[c].prompts) == 1 + len(BASELINE_WORDS)
        assert vs[c].prompts[1] == "-" + model.chat_text(f"Tell me about {BASELINE_WORDS[0]}")


def test_mean_difference_bad_input(model):
    for bad in ("", "   ", [""], ["Dust", " "]):
        with pytest.raises(ValueError, match="empty"):
            mean_difference(model, bad, baseline=BASELINE)
    with pytest.raises(ValueError, match="empty"):
        mean_difference(model, [], baseline=BASELINE)
    with pytest.raises(ValueError, match="twice"):
        mean_difference(model, ["Dust", "Dust"], baseline=BASELINE)
    with pytest.raises(ValueError, match="baseline"):
        mean_difference(model, "Dust", baseline=[])
    with pytest.raises(ValueError, match="no '{}'"):
        mean_difference(model, "Dust", baseline=BASELINE, template="Tell me about it")
    with pytest.raises(ValueError, match="exactly one"):
        mean_difference(model, "Dust", baseline=BASELINE, template="Tell me about {name}")


def _pair_activations(model, pairs=PAIRS):
    """Positives and negatives ``[n_pairs, n_layer, n_embd]``, captured in pca's own batch layout."""
    texts = [p for p, _ in pairs] + [n for _, n in pairs]
    acts = model.capture_many([model.chat(t) for t in texts]).astype(np.float64)
    return acts[: len(pairs)], acts[len(pairs):]


def test_pca_sign_positives_project_above_negatives(model):
    v = pca(model, PAIRS)
    pos, neg = _pair_activations(model)
    d = v.directions.astype(np.float64)  # [n_layer, n_embd]
    gap = np.einsum("ple,le->l", pos, d) / len(PAIRS) - np.einsum("ple,le->l", neg, d) / len(PAIRS)
    assert np.all(gap > 0), gap  # at every layer


def test_pca_swapping_sides_flips_the_vector(model):
    # No arbitrary SVD sign: (neg, pos) pairs give the opposite vector. The activations are the
    # same bits (batch invariance); only LAPACK's float64 SVD of the negated differences may
    # round differently, far below float32's resolution of the result (|v| ~ 1-100).
    pairs = [("I love it", "I hate it"), ("Great day", "Awful day"), ("So happy", "So sad")]
    v = pca(model, pairs, chat=False)
    w = pca(model, [(b, a) for a, b in pairs], chat=False)
    np.testing.assert_allclose(w.directions, -v.directions, rtol=1e-6, atol=1e-9)
    assert v.prompts == ["+I love it", "-I hate it", "+Great day", "-Awful day", "+So happy", "-So sad"]


def test_pca_is_the_first_component_scaled_to_the_mean_difference_norm(model):
    v = pca(model, PAIRS)
    pos, neg = _pair_activations(model)
    diffs = pos - neg  # [n_pairs, n_layer, n_embd]
    # each layer's direction is scaled in float64 and stored in float32 (relative rounding 2**-24)
    np.testing.assert_allclose(v.norms(), np.linalg.norm(diffs, axis=2).mean(0), rtol=1e-6)
    for il in (0, 15, model.n_layer - 1):
        centred = diffs[:, il] - diffs[:, il].mean(0)
        top = np.linalg.svd(centred, full_matrices=False)[2][0]
        cos = abs(top @ v[il]) / np.linalg.norm(v[il])
        assert cos > 0.999, (il, cos)
    assert (v.method, v.position) == ("pca", "last")
    assert v.prompts[:2] == ["+" + model.chat_text(PAIRS[0][0]), "-" + model.chat_text(PAIRS[0][1])]


def test_pca_bad_input(model):
    with pytest.raises(ValueError, match="at least 2"):
        pca(model, PAIRS[:1])
    with pytest.raises(ValueError, match="pair"):
        pca(model, [("a", "b", "c"), ("d", "e")])
    with pytest.raises(ValueError, match="pair"):
        pca(model, "not pairs")
