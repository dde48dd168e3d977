"""pyintro: concept-injection ("introspection") experiments on GGUF models, over llama.cpp.

Layer convention: "layer L" is the output of block L (0-based), llama.cpp's tensor
``l_out-L``. A vector captured at layer L is injected at layer L; in a control-vector
GGUF file it is the tensor ``direction.L``.
"""

from pyintro.injection import Injection
from pyintro.model import Model, default_model_path

__version__ = "0.1.0"

__all__ = ["Injection", "Model", "default_model_path", "__version__"]
