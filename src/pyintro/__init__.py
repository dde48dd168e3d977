"""pyintro: concept-injection ("introspection") experiments on GGUF models, over llama.cpp.

Layer convention: "layer L" is the output of block L (0-based), llama.cpp's tensor
``l_out-L``. A vector captured at layer L is injected at layer L; in a control-vector
GGUF file it is the tensor ``direction.L``.
"""

from pyintro.stimuli import BASELINE_WORDS, CONCEPT_WORDS
from pyintro.experiments.sweep import sweep
from pyintro.experiments.sweep_analysis import analyze
from pyintro.extract import contrast, mean_difference, pca
from pyintro.files import default_model_path
from pyintro.injection import Injection, Layers, Positions, Strengths
from pyintro.model import Model
from pyintro.vectors import ConceptVector, random_like

__version__ = "0.1.0"

__all__ = [
    "BASELINE_WORDS",
    "CONCEPT_WORDS",
    "ConceptVector",
    "Injection",
    "Layers",
    "Model",
    "Positions",
    "Strengths",
    "__version__",
    "analyze",
    "contrast",
    "default_model_path",
    "mean_difference",
    "pca",
    "random_like",
    "sweep",
]
