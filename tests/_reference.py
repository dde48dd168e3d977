"""llama.cpp on its own (through llama-cpp-python's ctypes API), decoding the way pyintro's
engine does: flash attention on, one llama_decode call of at most 56 rows, padded with rows of
a second sequence to a multiple of 8 rows and of 8 outputs (the largest padding unit; pyintro
pads the default model's calls to 2, so the comparisons also check that the unit changes
nothing). A recurrent or hybrid model decodes one token per call, padded with seven
one-token sequences, as pyintro does (csrc/engine.h). Comparisons with pyintro are then exact
by design (docs/numerics.md), not within a tolerance."""

from __future__ import annotations

import ctypes
import os
from typing import Optional, Sequence

import numpy as np

QUANTUM = 8
N_BATCH = 56


def _padded(n: int, n_out: int, q: int = QUANTUM) -> tuple[int, int]:
    """(padding outputs, padding rows in all) for n rows of which n_out are outputs."""
    po = (q - n_out % q) % q
    return po, po + (q - (n + po) % q) % q


class Reference:
    """A plain llama.cpp context on a GGUF file; ``cvec`` is a control-vector buffer set with
    llama_set_adapter_cvec (its row il - 1 is layer il)."""

    def __init__(self, path, n_ctx: int = 512, threads: int = 2):
        import llama_cpp

        self.L = llama_cpp
        mp = llama_cpp.llama_model_default_params()
        # the backend of the model under test (llama.cpp's own default offloads every layer)
        gpu_layers = int(os.environ.get("PYINTRO_TEST_GPU_LAYERS", "0"))
        mp.n_gpu_layers = gpu_layers
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
        assert self.model, f"llama.cpp could not load {path}"
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = cp.n_ubatch = N_BATCH
        self.recurrent = llama_cpp.llama_model_is_recurrent(self.model) or llama_cpp.llama_model_is_hybrid(self.model)
        cp.n_seq_max = QUANTUM if self.recurrent else 2
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = True
        cp.swa_full = True
        cp.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cp.op_offload = gpu_layers != 0  # as the engine sets it
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

    def __enter__(self) -> "Reference":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_cvec(self, data: Optional[np.ndarray], il_start: int = 1, il_end: int = 0) -> None:
        """data: float32 [n_layer - 1, n_embd], row il - 1 for layer il (None: clear)."""
        if data is None:
            assert self.L.llama_set_adapter_cvec(self.ctx, None, 0, self.n_embd, 0, 0) == 0
            return
        data = np.ascontiguousarray(data, np.float32)
        self._cvec = data  # llama.cpp copies it, but keep it alive for the call
        ptr = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        assert self.L.llama_set_adapter_cvec(self.ctx, ptr, data.size, self.n_embd, il_start, il_end) == 0

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Full-vocabulary logits [n_vocab] at the last token of ``ids``, decoded from scratch."""
        L = self.L
        mem = L.llama_get_memory(self.ctx)
        L.llama_memory_clear(mem, True)
        ids = [int(t) for t in ids]
        if self.recurrent:
            return self._recurrent_logits(ids)
        out = None
        for start in range(0, len(ids), N_BATCH - 2 * QUANTUM):
            part = ids[start:start + N_BATCH - 2 * QUANTUM]
            last = start + len(part) == len(ids)
            po, pad = _padded(len(part), 1 if last else 0)
            rows = [(t, start + i, 0, last and i == len(part) - 1) for i, t in enumerate(part)]
            rows += [(0, k, 1, k < po) for k in range(pad)]
            b = self.batch
            b.n_tokens = len(rows)
            for i, (t, p, s, o) in enumerate(rows):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, p, 1, int(o)
                b.seq_id[i][0] = s
            assert L.llama_decode(self.ctx, b) == 0
            L.llama_memory_seq_rm(mem, 1, -1, -1)
            if last:
                out = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, len(part) - 1), shape=(self.n_vocab,)).copy()
        return out

    def _recurrent_logits(self, ids: list[int]) -> np.ndarray:
        """One token per call in sequence 0, with sequences 1..7 of one token each as padding
        (outputs in the last call only, so that its outputs are a multiple of 8 too)."""
        L, b = self.L, self.batch
        mem = L.llama_get_memory(self.ctx)
        for p, t in enumerate(ids):
            last = p == len(ids) - 1
            rows = [(t, p, 0, last)] + [(0, 0, s, last) for s in range(1, QUANTUM)]
            b.n_tokens = len(rows)
            for i, (tok, pos, s, o) in enumerate(rows):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, int(o)
                b.seq_id[i][0] = s
            assert L.llama_decode(self.ctx, b) == 0
            for s in range(1, QUANTUM):
                L.llama_memory_seq_rm(mem, s, -1, -1)
        return np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, 0), shape=(self.n_vocab,)).copy()
