"""Tiny random-weight GGUF models of many llama.cpp architectures, written at test time.

Each architecture's metadata keys and tensor shapes are in arch_specs.json, found by asking
llama.cpp's own loader what it needs (tools/arch_specs.py). The files are 2 layers deep (3 or
4 where one layer of each kind needs more: llama4, smollm3, nemotron_h), n_embd 64, 64 tokens:
enough to build each architecture's real graph, and nothing else.

``tiny_chat`` writes a few architectures with their real models' layer layout and the default
model's vocabulary and chat template instead, so that prompts, Yes/No ids and the experiments
run on them as on the default model:

    python tests/tiny_models.py OUT_DIR qwen35 lfm2    # OUT_DIR/qwen35-chat.gguf, OUT_DIR/lfm2-chat.gguf
"""

from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path

import gguf
import numpy as np

SPECS = Path(__file__).with_name("arch_specs.json")
N_VOCAB = 64
# Metadata keys llama.cpp reads without the "<arch>." prefix.
UNPREFIXED = ("general.", "tokenizer.", "xielu.")


@lru_cache(maxsize=1)
def specs() -> dict:
    return json.loads(SPECS.read_text())


def write(path, arch: str, meta: dict, tensors: dict, seed: int = 0, vocab: dict | None = None) -> Path:
    """A GGUF file: metadata {key (without the "<arch>." prefix, or a full general./tokenizer./
    xielu. key): value}, random F32 tensors {name: ggml ne}; a 64-token SentencePiece-style
    vocabulary, or ``vocab``: tokenizer fields {full key: value} (``default_vocab``)."""
    path = Path(path)
    w = gguf.GGUFWriter(str(path), arch)
    for key, value in meta.items():
        full = key if key.startswith(UNPREFIXED + (arch + ".",)) else f"{arch}.{key}"
        if isinstance(value, bool):
            w.add_bool(full, value)
        elif isinstance(value, int):
            w.add_uint32(full, value)
        elif isinstance(value, float):
            w.add_float32(full, value)
        elif isinstance(value, str):
            w.add_string(full, value)
        elif isinstance(value, list):
            w.add_array(full, value)
        else:
            raise TypeError(f"{key}: {value!r}")
    if vocab is None:
        w.add_tokenizer_model("llama")
        w.add_token_list(["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(N_VOCAB - 3)])
        w.add_token_scores([0.0] * N_VOCAB)
        w.add_token_types([2, 3, 3] + [1] * (N_VOCAB - 3))
    else:
        for key, value in vocab.items():
            if isinstance(value, list):
                w.add_array(key, value)
            elif isinstance(value, bool):
                w.add_bool(key, value)
            elif isinstance(value, int):
                w.add_uint32(key, value)
            else:
                w.add_string(key, value)
    rng = np.random.default_rng(seed)
    for name, ne in tensors.items():
        shape = tuple(int(x) for x in ne)[::-1]  # gguf takes numpy shapes
        data = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if "norm" in name:
            data = 1.0 + 0.1 * data  # norms near 1 keep the random activations in range
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tiny(arch: str, folder, seed: int = 0) -> Path:
    """Write the tiny model of ``arch`` into ``folder`` (once) and return its path."""
    path = Path(folder) / f"{arch}.gguf"
    if not path.exists():
        spec = specs()[arch]
        write(path, arch, spec["meta"], spec["tensors"], seed)
    return path


# Real layer layouts for tiny_chat: (the spec's layer each new layer copies, metadata changes).
CHAT_LAYOUTS = {
    # Qwen3.5: three gated-delta-net layers, then one attention layer ((il + 1) % 4 == 0)
    "qwen35": ([0, 0, 0, 1], {"full_attention_interval": 4}),
    # LFM2-350M's layers begin conv, conv, attention, conv (head_count_kv 0: a short-convolution layer)
    "lfm2": ([0, 0, 1, 0], {"attention.head_count_kv": [0, 0, 2, 0]}),
}


@lru_cache(maxsize=1)
def default_vocab() -> dict:
    """The default model's tokenizer fields and chat template {full key: value}."""
    from pyintro import default_model_path

    reader = gguf.GGUFReader(default_model_path())
    out = {}
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            items = [field.parts[i] for i in field.data]
            if field.types[1] == gguf.GGUFValueType.STRING:
                out[key] = [bytes(x).decode("utf-8") for x in items]
            else:
                out[key] = [int(x[0]) for x in items]
        elif kind == gguf.GGUFValueType.STRING:
            out[key] = bytes(field.parts[field.data[0]]).decode("utf-8")
        elif kind == gguf.GGUFValueType.BOOL:
            out[key] = bool(field.parts[field.data[0]][0])
        else:
            out[key] = int(field.parts[field.data[0]][0])
    return out


def tiny_chat(arch: str, folder, seed: int = 0) -> Path:
    """Write ``<arch>-chat.gguf`` into ``folder`` (once) and return its path: the tiny model of
    ``arch`` with the layer layout of CHAT_LAYOUTS and the default model's vocabulary (49,152
    tokens) and chat template."""
    path = Path(folder) / f"{arch}-chat.gguf"
    if path.exists():
        return path
    spec = specs()[arch]
    sources, changes = CHAT_LAYOUTS[arch]
    vocab = default_vocab()
    n_vocab, n_embd = len(vocab["tokenizer.ggml.tokens"]), spec["meta"]["embedding_length"]
    tensors = {}
    for name, ne in spec["tensors"].items():
        if not name.startswith("blk."):
            tensors[name] = [n_embd, n_vocab] if name in ("token_embd.weight", "output.weight") else ne
            continue
        il, rest = name[4:].split(".", 1)
        for new, src in enumerate(sources):
            if src == int(il):
                tensors[f"blk.{new}.{rest}"] = ne
    meta = dict(spec["meta"], block_count=len(sources), **changes)
    return write(path, arch, meta, tensors, seed, vocab)


def random_library(m, words, folder):
    """A library folder (as ``pyintro.concepts.library`` writes one) for model ``m`` of seeded
    random directions (norm 8 at every layer), not extracted: the experiments' invariants hold
    for any vector."""
    from pyintro import concepts
    from pyintro.disk import write_json
    from pyintro.vectors import ConceptVector

    rng = np.random.default_rng(7)
    index = {"key": concepts.key(m), "recipe": concepts.RECIPE, "source": "tests: seeded random directions",
             "words": {}}
    for w in words:
        d = rng.standard_normal((m.n_layer, m.n_embd))
        d = (8.0 * d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)  # [n_layer, n_embd]
        v = ConceptVector(d, model_hint=m.arch, name=w, method="random (tests)", model_sha256=m.sha256)
        file = w.lower().replace(" ", "_") + ".gguf"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # layer 0 is kept for pyintro; llama.cpp ignores it
            v.save(folder / file)
        index["words"][w] = {"file": file, "norms": [float(x) for x in v.norms()]}
    write_json(folder / "index.json", index)
    return folder


if __name__ == "__main__":
    import sys

    for arch in sys.argv[2:]:
        print(tiny_chat(arch, sys.argv[1]))
