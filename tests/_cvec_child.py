"""Child process of test_device_all_token_injection_equals_llama_cpp_control_vector: pyintro's
all-token injection and llama.cpp's own control vector on the same device, in a process of its
own, so that a crash inside llama.cpp fails one test instead of the whole run.

    python tests/_cvec_child.py IN.npz OUT.json

IN.npz holds: path (the GGUF file), gpu_layers, n_ctx, ids (token ids), v (the vector),
layers and strengths (one strength per layer). OUT.json gets, per layer, whether the logits are
bit-identical with the reference cut into the same pieces, the largest |Δ| with the reference in
one piece, and the hook's transfers; and whether the plain logits agree.

Why a child process: with Debian 12's lavapipe (Mesa 22.3.6, LLVM 15) llama.cpp 0.3.36's
control vector on the Vulkan backend segfaults in the first llama_decode after
llama_set_adapter_cvec, at every placement tried (-1 and partial), with or without
GGML_VK_DISABLE_FUSION / GGML_VK_DISABLE_GRAPH_OPTIMIZE; Mesa 25.0.7 (bookworm-backports) runs it
and the comparison is exact. A crash there fails one test, not the whole run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _device_reference import EngineShapedReference  # noqa: E402

import pyintro  # noqa: E402
from pyintro import Injection  # noqa: E402


def main(src: str, dst: str) -> int:
    d = np.load(src)
    path, gl, n_ctx = str(d["path"]), int(d["gpu_layers"]), int(d["n_ctx"])
    ids, v = [int(t) for t in d["ids"]], d["v"].astype(np.float32)
    m = pyintro.Model.load(path, n_gpu_layers=gl, n_threads=2, n_ctx=n_ctx, chat_template="raw")
    out = {"layers": {}}
    try:
        q = int(m._engine.row_unit)
        with EngineShapedReference(path, gl, q, n_ctx=n_ctx) as ref:
            ref.set_cvec(None)
            plain = ref.logits(ids)
            out["plain_equal"] = bool(np.array_equal(m.logits(ids)[0], plain))
            for layer, s in zip(d["layers"].tolist(), d["strengths"].tolist()):
                m._engine.debug.transfers = 0
                ours = m.logits(ids, inject=[Injection(v, int(layer), float(s), "all")])[0]
                transfers = int(m._engine.debug.transfers)
                data = np.zeros((m.n_layer - 1, m.n_embd), np.float32)  # row il - 1 is layer il
                data[int(layer) - 1] = np.float32(s) * v
                ref.set_cvec(data, int(layer), int(layer))
                ref.wanted = {f"l_out-{int(layer)}".encode()}
                theirs = ref.logits(ids)
                ref.wanted = set()
                whole = ref.logits(ids)
                ref.set_cvec(None)
                out["layers"][str(layer)] = {
                    "equal": bool(np.array_equal(ours, theirs)),
                    "max_abs": float(np.max(np.abs(ours.astype(np.float64) - theirs))),
                    "one_piece_max_abs": float(np.max(np.abs(ours.astype(np.float64) - whole))),
                    "differs_from_plain": bool(not np.array_equal(ours, plain)),
                    "transfers": transfers,
                }
    finally:
        m.close()
    Path(dst).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
