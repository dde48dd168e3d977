"""Reference implementations the benchmarks compare pyintro with (not part of pyintro).

- Hugging Face transformers on the same GGUF file (dequantized to float32 by transformers),
  with forward hooks that add a vector to the residual stream after a block: one prompt per
  row (``HFModel.last_logits``), or the strongest plain-PyTorch route for a Yes/No sweep
  (``HFModel.prefix_cached_points``): the prompt prefix decoded once into a KV cache, then every
  point's injected last token as one row of a batch over that cache, only the Yes/No logits
  computed;
- llama-cpp-python alone, through its low-level API: llama.cpp's control vectors
  (``LlamaCvec``), and plain batched generation with no hook (``LlamaBatchedGen``).

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


    def generate_hooked(self, ids: Sequence[int], n: int, max_tokens: int, injections: Sequence[tuple],
                        vectors, temperature: float = 1.0, seed: int = 0, eos_ids: Sequence[int] = (),
                        per_row: bool = False) -> list[list[int]]:
        """``n`` continuations of ``ids`` with transformers' ``generate`` (batch of n identical rows,
        KV cache, sampling at ``temperature`` over the whole vocabulary: top_k 0, top_p 1; greedy at
        0), row i adding ``strength_i * vectors[layer_i]`` (with ``per_row``: ``vectors[i]``) to the
        output of block ``layer_i`` at the last prompt token and at every generated token (a forward
        hook per distinct layer, adding at the last position of every forward). ``injections``:
        [(layer, strength)] per row (one entry: the same for every row). Returns each row's new
        tokens, cut after the first of ``eos_ids``."""
        torch = self.torch
        inj = list(injections) * n if len(injections) == 1 else list(injections)
        if len(inj) != n:
            raise ValueError("injections must hold one (layer, strength) or one per row")
        vecs = np.asarray(vectors, np.float32)
        if vecs.shape != ((n if per_row else self.n_layer), self.n_embd):
            raise ValueError(f"vectors must be [{'n' if per_row else 'n_layer'}, {self.n_embd}], got {vecs.shape}")
        deltas: dict[int, np.ndarray] = {}
        for r, (layer, strength) in enumerate(inj):
            if int(layer) not in deltas:
                deltas[int(layer)] = np.zeros((n, self.n_embd), np.float32)
            deltas[int(layer)][r] = np.float32(strength) * vecs[r if per_row else int(layer)]
        handles = [self.layers[L].register_forward_hook(_adder(torch.from_numpy(d))) for L, d in deltas.items()]
        eos = [int(t) for t in eos_ids]
        input_ids = torch.tensor([list(ids)] * n, dtype=torch.long)
        kw = dict(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0) if temperature > 0 \
            else dict(do_sample=False)
        torch.manual_seed(int(seed))
        try:
            with torch.inference_mode():
                out = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=int(max_tokens),
                                          eos_token_id=eos or None, pad_token_id=eos[0] if eos else 0, **kw)
        finally:
            for h in handles:
                h.remove()
        rows = []
        for row in out[:, len(ids):].tolist():
            cut = next((k + 1 for k, t in enumerate(row) if t in eos), len(row))
            rows.append(row[:cut])
        return rows

    # -- the prefix-cached route ----------------------------------------------------------------

    def prefix_cache(self, prefix_ids: Sequence[int]):
        """Decode ``prefix_ids`` once (batch 1, no hooks) and return transformers' KV cache of it
        (a DynamicCache). An empty prefix gives None."""
        torch = self.torch
        if not len(prefix_ids):
            return None
        ids = torch.tensor([list(prefix_ids)], dtype=torch.long)
        with torch.inference_mode():
            out = self.model.model(input_ids=ids, position_ids=torch.arange(len(prefix_ids))[None, :],
                                   use_cache=True)
        cache = getattr(out, "cache", None)
        return cache if cache is not None else out.past_key_values

    def prefix_cached_points(self, prompt_ids: Sequence[int], vectors, points: Sequence[tuple],
                             yes_ids: Sequence[int], no_ids: Sequence[int], batch: int = 64,
                             per_point: bool = False, full_logits: bool = False, cache=None) -> np.ndarray:
        """b = logsumexp(Yes logits) - logsumexp(No logits) at the last token of ``prompt_ids``
        under each point's injection, the strongest plain-PyTorch way for a sweep:

        - the prefix (every token before the last) is decoded once into a KV cache (``cache``:
          one from ``prefix_cache(prompt_ids[:-1])`` to reuse across calls);
        - the points go ``batch`` at a time as rows of one forward of the last token over that
          cache (its keys and values expanded to the batch; transformers' cache update
          concatenates, so the shared prefix tensors are never written);
        - row i adds ``strength_i * v_i`` to the output of block ``layer_i`` (a forward hook per
          distinct layer of the batch, each adding a [B, n_embd] delta that is zero on the other
          rows), so rows may differ in layer, strength and vector;
        - only the Yes/No logits are computed (final-norm hidden state times those rows of the
          output matrix, then the model's final logit soft-capping, if any), unless
          ``full_logits`` (the model's own lm_head over the whole vocabulary).

        vectors: [n_layer, n_embd] (row i adds vectors[layer_i]) or, with ``per_point``,
                 [n_points, n_embd] (row i adds vectors[i]).
        points:  [(layer, strength)] per point. Returns b [n_points] float64.
        """
        torch = self.torch
        ids = [int(t) for t in prompt_ids]
        if not ids:
            raise ValueError("the prompt is empty")
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[1] != self.n_embd or vecs.shape[0] != (len(points) if per_point else self.n_layer):
            raise ValueError(f"vectors must be [{'n_points' if per_point else 'n_layer'}, {self.n_embd}], got {vecs.shape}")
        yes, no = [int(t) for t in yes_ids], [int(t) for t in no_ids]
        gather = yes + no
        prefix = ids[:-1]
        if cache is None:
            cache = self.prefix_cache(prefix)
        w_sel = None if full_logits else self._head_rows(gather)
        cap = getattr(self._text_config, "final_logit_softcapping", None)
        last = torch.tensor([ids[-1]], dtype=torch.long)
        out = np.empty(len(points), dtype=np.float64)
        for start in range(0, len(points), int(batch)):
            part = points[start:start + int(batch)]
            rows = len(part)
            deltas: dict[int, np.ndarray] = {}
            for r, (layer, strength) in enumerate(part):
                layer = int(layer)
                if not 0 <= layer < self.n_layer:
                    raise ValueError(f"layer {layer} is outside 0..{self.n_layer - 1}")
                if layer not in deltas:
                    deltas[layer] = np.zeros((rows, self.n_embd), np.float32)
                deltas[layer][r] = np.float32(strength) * vecs[start + r if per_point else layer]
            handles = [self.layers[L].register_forward_hook(_adder(torch.from_numpy(d))) for L, d in deltas.items()]
            try:
                with torch.inference_mode():
                    kv = _expanded(cache, rows)
                    kw = {self._cache_kw: kv} if kv is not None else {}
                    input_ids = last.expand(rows, 1)
                    pos = torch.full((rows, 1), len(prefix), dtype=torch.long)
                    if full_logits:
                        logits = self.model(input_ids=input_ids, position_ids=pos, use_cache=True, logits_to_keep=1,
                                            **kw).logits[:, -1, :]
                        logits = logits[:, gather]
                    else:
                        h = self.model.model(input_ids=input_ids, position_ids=pos, use_cache=True,
                                             **kw).last_hidden_state[:, -1, :]
                        logits = h @ w_sel.T
                        if cap:
                            logits = torch.tanh(logits / cap) * cap
            finally:
                for h_ in handles:
                    h_.remove()
            g = logits.double().numpy()
            out[start:start + rows] = (_lse(g[:, :len(yes)]) - _lse(g[:, len(yes):]))
        return out

    def prefix_cached_timed(self, prompt_ids, vectors, points, yes_ids, no_ids, batch: int = 64,
                            repeats: int = 1, **kw) -> dict:
        """``prefix_cached_points`` timed: {"b", "ms_per_point" (median of ``repeats`` calls, each
        decoding the prefix afresh), "times_s", "peak_rss_mb" / "rss_growth_mb" (over the first
        call)}."""
        import statistics
        import time

        times = []
        with PeakRSS() as mem:
            t = time.perf_counter()
            b = self.prefix_cached_points(prompt_ids, vectors, points, yes_ids, no_ids, batch=batch, **kw)
            times.append(time.perf_counter() - t)
        for _ in range(int(repeats) - 1):
            t = time.perf_counter()
            self.prefix_cached_points(prompt_ids, vectors, points, yes_ids, no_ids, batch=batch, **kw)
            times.append(time.perf_counter() - t)
        return {"b": b, "ms_per_point": 1000 * statistics.median(times) / max(1, len(points)),
                "times_s": [round(x, 4) for x in times], "peak_rss_mb": mem.peak, "rss_growth_mb": mem.growth}

    @property
    def _text_config(self):
        cfg = self.model.config
        return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg

    @property
    def _cache_kw(self) -> str:
        """The forward's name for the KV cache: ``cache`` in transformers >= 5.x's newer models,
        ``past_key_values`` before."""
        return "cache" if _accepts(self.model.model.forward, "cache") else "past_key_values"

    def _head_rows(self, ids: Sequence[int]):
        """The output matrix's rows for ``ids`` [len(ids), n_embd] (cached per id list)."""
        key = tuple(ids)
        if getattr(self, "_head_key", None) != key:
            w = self.model.get_output_embeddings().weight
            self._head_key, self._head_w = key, w[list(ids)].detach().clone().float()
        return self._head_w


def _expanded(cache, rows: int):
    """A copy of a batch-1 KV cache whose every layer's keys and values are ``rows``-wide views of
    the original tensors (the next update concatenates them into new tensors)."""
    if cache is None:
        return None
    import copy

    memo = {}
    layers = getattr(cache, "layers", None)
    if layers is None:  # a legacy tuple of (keys, values) per layer
        return tuple((k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in cache)
    for layer in layers:  # the copy shares the tensors; only the containers are new
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if t is not None:
                memo[id(t)] = t
    new = copy.deepcopy(cache, memo)
    for layer in new.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys.expand(rows, -1, -1, -1)
            layer.values = layer.values.expand(rows, -1, -1, -1)
    return new


def _lse(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


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


class LlamaBatchedGen:
    """llama-cpp-python's low-level API: plain batched generation with no hook, in a context
    with pyintro's settings (flash attention on, n_batch = n_ubatch = 56, kv_unified, swa_full,
    n_seq_max = width + 1). The prompt is decoded once in sequence 0 and copied to the other
    sequences (``llama_memory_seq_cp``); then every step decodes one token per sequence in one
    ``llama_decode``. Greedy: the only Python-side work is an argmax over the logits rows; sampled:
    llama.cpp's own sampler chain (temperature, then ``dist``), one per sequence, as llama.cpp's
    ``examples/batched`` samples."""

    def __init__(self, path: str | os.PathLike, threads: int, max_width: int, n_ctx: int = 4096, n_batch: int = 56):
        import llama_cpp

        from pyintro._native import _engine

        _engine.log_install()
        ll = self.ll = llama_cpp
        mp = ll.llama_model_default_params()
        self.model = ll.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama-cpp-python could not load {path}")
        if max_width > n_batch:
            raise ValueError(f"width {max_width} exceeds n_batch {n_batch}")
        cp = ll.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = cp.n_ubatch = n_batch
        cp.n_seq_max = max_width + 1
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = True
        cp.swa_full = True
        cp.no_perf = True
        cp.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self.ctx = ll.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama-cpp-python could not create a context")
        self.mem = ll.llama_get_memory(self.ctx)
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.n_batch = n_batch
        self.batch = ll.llama_batch_init(n_batch, 0, 1)
        b = self.batch
        self._tok = np.ctypeslib.as_array(b.token, shape=(n_batch,))
        self._pos = np.ctypeslib.as_array(b.pos, shape=(n_batch,))
        self._nseq = np.ctypeslib.as_array(b.n_seq_id, shape=(n_batch,))
        self._out = np.ctypeslib.as_array(ctypes.cast(b.logits, ctypes.POINTER(ctypes.c_int8)), shape=(n_batch,))
        self._nseq[:] = 1

    def _seq_ids(self, ids) -> None:
        for i, s in enumerate(ids):
            self.batch.seq_id[i][0] = int(s)

    def _decode(self, n: int) -> None:
        self.batch.n_tokens = n
        rc = self.ll.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc})")

    def generate(self, ids: Sequence[int], n: int, max_tokens: int, keep_prompt: bool = True,
                 temperature: float = 0.0, seed: int = 0) -> np.ndarray:
        """Continuations [n, max_tokens] (no stop at end of generation: every sequence decodes
        max_tokens tokens): greedy at ``temperature`` 0, else sampled by llama.cpp's samplers
        (sequence j seeded with seed * 1000 + j; its first token, from the prompt's kept logits
        row, drawn in numpy). ``keep_prompt``: when ``ids`` is the previous call's prompt, reuse
        its KV cells and first logits instead of decoding it again (as pyintro keeps its cached
        prefix)."""
        ll = self.ll
        if temperature > 0:
            return self._sampled(ids, n, max_tokens, keep_prompt, float(temperature), int(seed))
        p = len(ids)
        ids = [int(t) for t in ids]
        if keep_prompt and getattr(self, "_prompt", None) == ids:
            for j in range(1, self._seqs):  # drop the other sequences and sequence 0's generated cells
                ll.llama_memory_seq_rm(self.mem, j, -1, -1)
            ll.llama_memory_seq_rm(self.mem, 0, p, -1)
            first_tok = self._first
        else:
            ll.llama_memory_clear(self.mem, True)
            self._prompt = None
            self._seq_ids([0] * self.n_batch)
            for start in range(0, p, self.n_batch):  # the prompt, in sequence 0
                k = min(self.n_batch, p - start)
                self._tok[:k] = ids[start:start + k]
                self._pos[:k] = np.arange(start, start + k)
                self._out[:k] = 0
                if start + k == p:
                    self._out[k - 1] = 1
                self._decode(k)
            first = np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))
            self._first_row = first.copy()
            first_tok = self._first = int(np.argmax(first))
            self._prompt = ids
        self._seqs = n
        for j in range(1, n):
            ll.llama_memory_seq_cp(self.mem, 0, j, -1, -1)
        toks = np.full(n, first_tok, np.int32)
        out = np.empty((n, max_tokens), np.int32)
        out[:, 0] = toks
        self._seq_ids(range(n))
        self._out[:n] = 1
        for step in range(1, max_tokens):
            self._tok[:n] = toks
            self._pos[:n] = p + step - 1
            self._decode(n)
            logits = np.ctypeslib.as_array(ll.llama_get_logits(self.ctx), shape=(n, self.n_vocab))
            toks = logits.argmax(axis=1).astype(np.int32)
            out[:, step] = toks
        return out

    def _sampled(self, ids, n: int, max_tokens: int, keep_prompt: bool, temperature: float, seed: int) -> np.ndarray:
        ll = self.ll
        self.generate(ids, 1, 1, keep_prompt)  # the prompt in sequence 0 (kept), its last logits row saved
        p = len(ids)
        rng = np.random.default_rng(seed)
        z = self._first_row.astype(np.float64) / temperature
        prob = np.exp(z - z.max())
        toks = rng.choice(self.n_vocab, size=n, p=prob / prob.sum()).astype(np.int32)
        for j in range(1, n):
            ll.llama_memory_seq_cp(self.mem, 0, j, -1, -1)
        self._seqs = n
        chains = []
        for j in range(n):
            chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(temperature))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed * 1000 + j))
            chains.append(chain)
        out = np.empty((n, max_tokens), np.int32)
        out[:, 0] = toks
        self._seq_ids(range(n))
        self._out[:n] = 1
        try:
            for step in range(1, max_tokens):
                self._tok[:n] = toks
                self._pos[:n] = p + step - 1
                self._decode(n)
                toks = np.asarray([ll.llama_sampler_sample(chains[j], self.ctx, j) for j in range(n)], np.int32)
                out[:, step] = toks
        finally:
            for chain in chains:
                ll.llama_sampler_free(chain)
        return out

    def close(self) -> None:
        if self.batch is not None:
            self.ll.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            self.ll.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.ll.llama_model_free(self.model)
            self.model = None
