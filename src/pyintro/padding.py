"""How many rows each batch-invariant llama.cpp call is padded to, read from the file's weight types.

A point's logits do not depend on its batch as long as every matrix product takes the same CPU
kernel whatever the number of rows (docs/numerics.md). Each kernel needs a row multiple for
that; the padding unit of a model is the largest over its weight matrices:

- 2 for every type: one query row alone takes flash attention's split-KV path
  (``use_split_kv_path``, ``ops.cpp``), and one row alone leaves llamafile's sgemm (``n < 2``).
- 4 for the types llama.cpp repacks at load on some CPU (Q4_0 and IQ4_NL on x86 with AVX2, Q8_0
  on ARM too): the repacked ``gemm`` runs on groups of 4 rows and ``gemv`` on the rest
  (``repack.cpp``, ``forward_mul_mat_one_chunk``).
- 8 for the K-quants and the other types: the tiled kernel from 8 rows on (x86), repacked
  K-quants on ARM, llamafile's F16 kernel from 8 rows on (ARM with FP16 arithmetic).

Types that only ever take ``vec_dot`` (Q4_1, Q5_1) or llamafile's sgemm from 2 rows on (F32,
F16, BF16, Q8_0 and Q5_0 on x86) need 2. A smaller unit matters where calls are small:
generating one sequence decodes 2 rows per step instead of 8. On a GPU (``n_gpu_layers`` not 0),
for mixture-of-experts files (whose expert products see the rows routed to each expert) and for
files split into parts, the unit stays 8.
"""

from __future__ import annotations

import platform
from pathlib import Path

import gguf

DEFAULT = 8

# Row multiples per weight type; types not named here get DEFAULT.
_X86 = {"F32": 2, "F16": 2, "BF16": 2, "Q8_0": 2, "Q5_0": 2, "Q4_1": 2, "Q5_1": 2, "Q4_0": 4, "IQ4_NL": 4}
_OTHER = {"Q4_1": 2, "Q5_0": 2, "Q5_1": 2, "F32": 4, "Q8_0": 4, "Q4_0": 4, "IQ4_NL": 4}


def _table() -> dict[str, int]:
    machine = platform.machine().lower()
    return _X86 if machine in ("x86_64", "amd64", "i386", "i686") else _OTHER


def row_unit(path: str | Path, n_gpu_layers: int = 0) -> int:
    """The padding unit for a model file's batch-invariant decodes on this machine's CPU."""
    if n_gpu_layers != 0:
        return DEFAULT
    try:
        reader = gguf.GGUFReader(path)
    except Exception:  # unreadable here; llama.cpp's own loader reports what is wrong
        return DEFAULT
    split = reader.fields.get("split.count")
    if split is not None and int(split.parts[split.data[0]][0]) > 1:
        return DEFAULT  # a split file: this part does not hold every tensor
    if any("_exps" in t.name for t in reader.tensors):
        return DEFAULT
    table = _table()
    types = {t.tensor_type.name for t in reader.tensors if len(t.shape) >= 2}
    return max((table.get(name, DEFAULT) for name in types), default=DEFAULT)
