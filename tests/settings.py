"""Test settings shared by conftest.py and the modules that load their own models: a plain
module, because ``from conftest import ...`` finds whichever conftest.py pytest loaded last."""

import os

import pytest


def _gpu_layers() -> int:
    raw = os.environ.get("PYINTRO_TEST_GPU_LAYERS", "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise pytest.UsageError(
            f"PYINTRO_TEST_GPU_LAYERS must be an integer (layers to offload, -1: all), got {raw!r}") from None


GPU_LAYERS = _gpu_layers()


# The prompt fixture's text, for modules that load their own model.
PROMPT_USER = "Do you detect an injected thought? Answer only by 'Yes' or 'No'."
PROMPT_SYSTEM = ("You are a large language model undergoing a test to see if you are sensitive to your "
                 "internal activations.")
