"""Reference implementations the benchmarks compare pyintro with (not part of pyintro).

- Hugging Face transformers on the same GGUF file (dequantized to float32 by transformers),
  with forward hooks that add a vector to the residual stream after a block;
- llama-cpp-python alone, through its low-level API and llama.cpp's control vectors.

Both take pyintro's token ids, so every variant sees exactly the same tokens.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader draws progress bars


def rss_mb() -> float:
    """Current resident set size of this process, in MB (VmRSS)."""
    return _status_kb("VmRSS") / 1024.0


def hwm_mb() -> float:
    """Peak resident set size of this process, in MB (VmHWM)."""
    return _status_kb("VmHWM") / 1024.0


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return float("nan")


class PeakRSS:
    """Context manager: peak RSS (MB) while the block runs, from VmHWM (reset on entry) and
    from a thread sampling VmRSS every ``interval`` seconds; ``peak`` is the larger of the two."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.start = self.peak = float("nan")

    def __enter__(self) -> "PeakRSS":
        import threading

        self._hwm_ok = reset_hwm()
        self.start = rss_mb()
        self._max = self.start
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self._max = max(self._max, rss_mb())
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self._max, hwm_mb() if self._hwm_ok else 0.0, rss_mb())

    @property
    def growth(self) -> float:
        return self.peak - self.start


def b_values(logits: np.ndarray, yes_ids: Sequence[int], no_ids: Sequence[int]) -> np.ndarray:
    """b = logsumexp(logits[yes]) - logsumexp(logits[no]) per row of [n, n_vocab] -> [n] float64."""
    from pyintro.readout import logsumexp

    x = np.asarray(logits, dtype=np.float64)
    return logsumexp(x[:, list(yes_ids)], axis=1) - logsumexp(x[:, list(no_ids)], axis=1)


def pearson(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


# -- Hugging Face transformers ------------------------------------------------------------------


class HFModel:
    """The GGUF file loaded by transformers (weights dequantized to float32), on the CPU.

    ``last_logits(ids_batch, deltas)`` runs one forward over a batch of prompts (left-padded)
    and returns the logits of each row's last token; ``deltas`` {layer: [B, n_embd]} adds
    ``deltas[L][row]`` to the output of block L at the last position (forward hooks; one hook
    per layer that has an injection).
    """

    def __init__(self, gguf_path: str | os.PathLike, threads: int):
        import torch
        from transformers import AutoModelForCausalLM

        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        torch.set_num_threads(int(threads))
        p = Path(gguf_path)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, dtype=torch.float32)
        self.model.eval()
        self.layers = self.model.model.layers
        self.n_layer = len(self.layers)
        self.n_embd = self.model.config.hidden_size
        self._keep = _accepts(self.model.forward, "logits_to_keep")

    def _inputs(self, batch: Sequence[Sequence[int]], pad_id: int) -> dict:
        """Left-padded input_ids, attention_mask and position_ids (counted from each row's
        first real token, as generate() does)."""
        torch = self.torch
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), int(pad_id), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(batch):  # left padding: every row ends at position width - 1
            input_ids[i, width - len(ids):] = torch.tensor(list(ids), dtype=torch.long)
            mask[i, width - len(ids):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return {"input_ids": input_ids, "attention_mask": mask, "position_ids": pos}

    def last_logits(self, batch: Sequence[Sequence[int]], deltas: Optional[dict] = None,
                    pad_id: int = 0) -> np.ndarray:
        """Logits [B, n_vocab] (float32) at the last token of each prompt in ``batch``."""
        torch = self.torch
        inputs = self._inputs(batch, pad_id)
        handles = []
        for layer, d in (deltas or {}).items():
            handles.append(self.layers[int(layer)].register_forward_hook(_adder(torch.as_tensor(d, dtype=torch.float32))))
        try:
            with torch.inference_mode():
                kw = {"logits_to_keep": 1} if self._keep else {}
                out = self.model(**inputs, use_cache=False, **kw)
        finally:
            for h in handles:
                h.remove()
        return out.logits[:, -1, :].float().numpy()

    def hidden_last(self, batch: Sequence[Sequence[int]], pad_id: int = 0) -> np.ndarray:
        """Residual stream after every block at each prompt's last token, via
        ``output_hidden_states=True``: [B, n_layer, n_embd] float32. hidden_states[L + 1] is the
        output of block L, except the last entry, which transformers returns after the final
        norm; the last block's raw output is taken with a hook instead."""
        torch = self.torch
        inputs = self._inputs(batch, pad_id)
        last = {}

        def grab(mod, inp, out):
            h = out[0] if isinstance(out, tuple) else out
            last["h"] = h[:, -1, :].detach().clone()

        handle = self.layers[self.n_layer - 1].register_forward_hook(grab)
        try:
            with torch.inference_mode():
                kw = {"logits_to_keep": 1} if self._keep else {}
                out = self.model(**inputs, use_cache=False, output_hidden_states=True, **kw)
        finally:
            handle.remove()
        hs = torch.stack([h[:, -1, :] for h in out.hidden_states[1:self.n_layer]] + [last["h"]], dim=1)
        return hs.float().numpy()


def _adder(delta):
    """Forward hook adding delta [B, n_embd] to the block output at the last position."""

    def hook(mod, inp, out):
        h = out[0] if isinstance(out, tuple) else out
        h[:, -1, :] += delta.to(h.dtype)
        return out

    return hook


def _accepts(fn, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


# -- llama-cpp-python alone ---------------------------------------------------------------------


class LlamaCvec:
    """llama-cpp-python's low-level API: one context, one full decode per point, with the vector
    set as llama.cpp's control vector (which adds it to every token at the chosen layers).

    llama.cpp's control-vector buffer starts at layer 1: data[L - 1] = s * v[L], applied with
    il_start = il_end = L. Layer 0 cannot be expressed.
    """

    def __init__(self, path: str | os.PathLike, threads: int, n_ctx: int = 4096, n_batch: int = 512,
                 flash_attn: Optional[bool] = None):
        """flash_attn: None keeps llama.cpp's default (auto); True/False forces it on/off (pyintro's
        Model.load turns it off by default, so a bit-exact comparison needs False)."""
        import llama_cpp

        from pyintro._native import _engine

        _engine.log_install()  # importing llama_cpp installed its own log callback; keep llama.cpp quiet
        self.ll = llama_cpp
        mp = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama-cpp-python could not load {path}")
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = 1
        cp.n_threads = threads
        cp.n_threads_batch = threads
        if flash_attn is not None:
            cp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self.ctx = llama_cpp.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama-cpp-python could not create a context")
        self.n_layer = llama_cpp.llama_model_n_layer(self.model)
        self.n_embd = llama_cpp.llama_model_n_embd(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self._buf = np.zeros((self.n_layer - 1, self.n_embd), dtype=np.float32)

    def set_cvec(self, dirs: Optional[np.ndarray], layer: int = 0, strength: float = 0.0) -> None:
        """Add strength * dirs[layer] to every token after block ``layer`` (None: clear)."""
        ll = self.ll
        if dirs is None:
            rc = ll.llama_set_adapter_cvec(self.ctx, None, 0, self.n_embd, 0, 0)
        else:
            if not 1 <= layer < self.n_layer:
                raise ValueError("llama.cpp control vectors cannot act on layer 0")
            self._buf[:] = 0.0
            self._buf[layer - 1] = np.float32(strength) * np.asarray(dirs[layer], np.float32)
            ptr = self._buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            rc = ll.llama_set_adapter_cvec(self.ctx, ptr, self._buf.size, self.n_embd, layer, layer)
        if rc != 0:
            raise RuntimeError(f"llama_set_adapter_cvec failed ({rc})")

    def last_logits(self, ids: Sequence[int]) -> np.ndarray:
        """Clear the KV cache, decode the whole prompt in one batch, return the last logits [n_vocab]."""
        ll = self.ll
        ll.llama_memory_clear(ll.llama_get_memory(self.ctx), True)
        arr = (ll.llama_token * len(ids))(*[int(i) for i in ids])
        batch = ll.llama_batch_get_one(arr, len(ids))
        rc = ll.llama_decode(self.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc})")
        row = ll.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(row, shape=(self.n_vocab,)).copy()

    def close(self) -> None:
        if self.ctx:
            self.ll.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.ll.llama_model_free(self.model)
            self.model = None
