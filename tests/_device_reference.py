"""llama.cpp on its own (llama-cpp-python's ctypes API), cut into llama_decode calls exactly as
pyintro's engine cuts a request, for comparisons on a device backend.

``tests/_reference.py`` decodes in calls of 40 + 12 rows padded to 8; the engine's calls for a
52-token prompt are 51 rows (56 once padded) and 1 row (8). On the CPU that changes nothing
(batch invariance, docs/numerics.md). On a GPU the kernels are chosen by the number of rows, so
a comparison of pyintro with llama.cpp's control vector is exact only when both cut the prompt
alike: this reference copies ``Engine::chunk_end`` and ``Engine::decode_chunk`` (csrc/engine.cpp):
greedy calls of at most ``n_batch`` rows once padded to a multiple of ``quantum`` outputs and
rows, padding rows in a scratch sequence at positions 0, 1, ... (the first ones outputs),
removed after each call.

``want`` (and the attribute ``wanted``, a set of tensor names as bytes, which may change between
decodes): layer outputs (``l_out-<il>``) for which a no-op eval callback answers "yes".
pyintro's hook asks for the layers it touches, and the scheduler then computes the graph in
pieces that end at those nodes (``ggml_backend_sched_compute_splits``). A device backend may
fuse operations within a piece (Vulkan fuses a layer's last add with the next RMS norm), so
the reference asks for the same nodes to be computed in the same pieces.
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional, Sequence

import numpy as np

N_BATCH = 56


def padded_rows(n: int, n_out: int, q: int) -> int:
    """Engine's padded_rows: n rows, n_out outputs, padded to q outputs, then to q rows."""
    po = (q - n_out % q) % q
    return n + po + (q - (n + po) % q) % q


def chunks(n_rows: int, outputs: Sequence[bool], q: int, n_batch: int = N_BATCH) -> list[tuple[int, int]]:
    """Engine::chunk_end, applied over a request: [(begin, end)] of each llama_decode call."""
    out, begin = [], 0
    while begin < n_rows:
        end, n_out = begin, 0
        while end < n_rows:
            o = n_out + (1 if outputs[end] else 0)
            if end > begin and padded_rows(end - begin + 1, o, q) > n_batch:
                break
            n_out, end = o, end + 1
        out.append((begin, end))
        begin = end
    return out


def _ggml_get_name():
    """ggml_get_name from the libggml-base that llama_cpp loaded (one copy per process)."""
    import llama_cpp

    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        path = os.path.join(lib_dir, name)
        if os.path.exists(path):
            lib = ctypes.CDLL(path)
            fn = lib.ggml_get_name
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_char_p
            return fn
    raise RuntimeError(f"no libggml-base in {lib_dir}")


class EngineShapedReference:
    """A plain llama.cpp context set up as pyintro's engine sets up its own (flash attention,
    unified KV cache, n_batch = n_ubatch = 56, op_offload only when layers are offloaded),
    decoding one prompt in the engine's calls. ``cvec`` as in tests/_reference.py."""

    def __init__(self, path, n_gpu_layers: int, quantum: int, n_ctx: int = 512, threads: int = 2,
                 want: Sequence[int] = ()):
        import llama_cpp

        self.L = llama_cpp
        self.quantum = quantum
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = n_gpu_layers
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
        assert self.model, f"llama.cpp could not load {path}"
        self.wanted = {f"l_out-{il}".encode() for il in want}
        get_name = _ggml_get_name()

        def callback(t, ask, _user):
            return get_name(t) in self.wanted if ask else True

        self._callback = llama_cpp.ggml_backend_sched_eval_callback(callback)  # kept alive with self
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = cp.n_ubatch = N_BATCH
        cp.n_seq_max = 2  # sequence 1: the padding rows
        cp.n_outputs_max = N_BATCH
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = True
        cp.swa_full = True
        cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cp.op_offload = n_gpu_layers != 0
        cp.cb_eval = self._callback  # with nothing wanted, the graph runs in one piece, as without it
        self.ctx = llama_cpp.llama_init_from_model(self.model, cp)
        assert self.ctx
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_embd = llama_cpp.llama_model_n_embd(self.model)
        self.batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)

    def close(self) -> None:
        if self.ctx:
            self.L.llama_batch_free(self.batch)
            self.L.llama_free(self.ctx)
            self.L.llama_model_free(self.model)
            self.ctx = None

    def __enter__(self) -> "EngineShapedReference":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_cvec(self, data: Optional[np.ndarray], il_start: int = 1, il_end: int = 0) -> None:
        """data: float32 [n_layer - 1, n_embd], row il - 1 for layer il (None: clear)."""
        if data is None:
            assert self.L.llama_set_adapter_cvec(self.ctx, None, 0, self.n_embd, 0, 0) == 0
            return
        data = np.ascontiguousarray(data, np.float32)
        self._cvec = data
        ptr = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        assert self.L.llama_set_adapter_cvec(self.ctx, ptr, data.size, self.n_embd, il_start, il_end) == 0

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Full-vocabulary logits [n_vocab] at the last token of ``ids``, decoded from scratch
        in the engine's calls."""
        L, q = self.L, self.quantum
        mem = L.llama_get_memory(self.ctx)
        L.llama_memory_clear(mem, True)
        ids = [int(t) for t in ids]
        outputs = [i == len(ids) - 1 for i in range(len(ids))]
        out = None
        for begin, end in chunks(len(ids), outputs, q):
            n_real = end - begin
            n_out = sum(outputs[begin:end])
            n_total = padded_rows(n_real, n_out, q)
            n_pad_out = (q - n_out % q) % q
            rows = [(ids[i], i, 0, outputs[i]) for i in range(begin, end)]
            rows += [(0, k, 1, k < n_pad_out) for k in range(n_total - n_real)]
            b = self.batch
            b.n_tokens = len(rows)
            for j, (t, p, s, o) in enumerate(rows):
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = t, p, 1, int(o)
                b.seq_id[j][0] = s
            assert L.llama_decode(self.ctx, b) == 0
            L.llama_memory_seq_rm(mem, 1, -1, -1)
            if end == len(ids):
                row = L.llama_get_logits_ith(self.ctx, n_real - 1)
                out = np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()
        return out
