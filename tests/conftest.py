"""Shared fixtures: session models of the default model, 2 threads (``model``: n_ctx 2048;
``m``: Model.load's defaults, as the sweep and readout tests and their subprocesses use).

``PYINTRO_TEST_GPU_LAYERS`` (an int, default 0) is passed to both as ``n_gpu_layers``, so the
same tests can run with the residual stream in GPU memory: ``PYINTRO_TEST_GPU_LAYERS=-1`` on a
CUDA or Metal build offloads every layer (docs/gpu.md). On a CPU-only build it changes nothing."""

import numpy as np
import pytest

import pyintro
from settings import GPU_LAYERS, PROMPT_SYSTEM, PROMPT_USER


def pytest_report_header(config):
    if GPU_LAYERS:
        return [f"pyintro: session models load with n_gpu_layers={GPU_LAYERS} (PYINTRO_TEST_GPU_LAYERS)"]
    return []


@pytest.fixture(scope="session")
def gpu_layers():
    """n_gpu_layers for the models the tests load (PYINTRO_TEST_GPU_LAYERS, default 0)."""
    return GPU_LAYERS


@pytest.fixture(scope="session")
def model():
    m = pyintro.Model.load(n_threads=2, n_ctx=2048, n_gpu_layers=GPU_LAYERS)
    yield m
    m.close()


@pytest.fixture(scope="session")
def m():
    model = pyintro.Model.load(n_threads=2, n_gpu_layers=GPU_LAYERS)
    yield model
    model.close()


@pytest.fixture(scope="session")
def prompt(model):
    # The follow-up post's introspection prompt, in the model's chat template.
    return model.chat(PROMPT_USER, system=PROMPT_SYSTEM)


@pytest.fixture(scope="session")
def vec(model):
    # A direction with the scale of the residual stream, so injections have visible effects.
    rng = np.random.default_rng(1234)
    v = rng.standard_normal(model.n_embd).astype(np.float32)
    return v / np.linalg.norm(v) * 4.0
