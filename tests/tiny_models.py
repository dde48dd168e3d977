"""Tiny random-weight GGUF models of many llama.cpp architectures, written at test time.

Each architecture's metadata keys and tensor shapes are in arch_specs.json, found by asking
llama.cpp's own loader what it needs (tools/arch_specs.py). The files are 2 layers deep (3 or
4 where one layer of each kind needs more: llama4, smollm3, nemotron_h), n_embd 64, 64 tokens:
enough to build each architecture's real graph, and nothing else.
"""

from __future__ import annotations

import json
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


def write(path, arch: str, meta: dict, tensors: dict, seed: int = 0) -> Path:
    """A GGUF file: metadata {key (without the "<arch>." prefix, or a full general./tokenizer./
    xielu. key): value}, random F32 tensors {name: ggml ne}; a 64-token SentencePiece-style vocabulary."""
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
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(N_VOCAB - 3)])
    w.add_token_scores([0.0] * N_VOCAB)
    w.add_token_types([2, 3, 3] + [1] * (N_VOCAB - 3))
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
