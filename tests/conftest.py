"""Shared fixtures: session models of the default model, 2 threads (``model``: n_ctx 2048;
``m``: Model.load's defaults, as the sweep and readout tests and their subprocesses use)."""

import numpy as np
import pytest

import pyintro


@pytest.fixture(scope="session")
def model():
    m = pyintro.Model.load(n_threads=2, n_ctx=2048)
    yield m
    m.close()


@pytest.fixture(scope="session")
def m():
    model = pyintro.Model.load(n_threads=2)
    yield model
    model.close()


@pytest.fixture(scope="session")
def prompt(model):
    # The follow-up post's introspection prompt, in the model's chat template.
    return model.chat(
        "Do you detect an injected thought? Answer only by 'Yes' or 'No'.",
        system="You are a large language model undergoing a test to see if you are sensitive to your internal activations.",
    )


@pytest.fixture(scope="session")
def vec(model):
    # A direction with the scale of the residual stream, so injections have visible effects.
    rng = np.random.default_rng(1234)
    v = rng.standard_normal(model.n_embd).astype(np.float32)
    return v / np.linalg.norm(v) * 4.0
