"""What a recurrent or hybrid model keeps per sequence, read from its file, and the default
``n_seq_max`` that follows.

Mamba, RWKV, LFM2's short convolutions and the gated delta nets of Qwen3-Next and Qwen3.5 keep a
fixed-size state per sequence in each recurrent layer, however long the sequence: llama.cpp's
recurrent memory holds one float32 cell per sequence (ref: llama-hparams.cpp n_embd_r and
n_embd_s, llama-memory-recurrent.cpp). pyintro decodes every point in a sequence of its own, so
that state times ``n_seq_max`` is the memory a batch of points needs beside the weights and the
KV cache. ``Model.load`` sizes ``n_seq_max`` so that it stays within ``BUDGET``.
"""

from __future__ import annotations

from pathlib import Path

import gguf

__all__ = ["BUDGET", "default_n_seq_max", "state_bytes"]

BUDGET = 1 << 30  # bytes of recurrent state the default n_seq_max may take
N_SEQ_MAX = 128  # the default for models without recurrent state, and the most by default

# llama.cpp's recurrent architectures (llm_arch_is_recurrent), and the hybrids whose every layer
# is recurrent (falcon-h1 runs attention and Mamba-2 side by side).
_ALL_LAYERS = ("mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7", "falcon-h1")
# Hybrids whose attention layers are every full_attention_interval-th (default 4).
_INTERVAL = ("qwen3next", "qwen35", "qwen35moe", "minimax-01")


def _fields(path) -> tuple[str, dict]:
    """(architecture, {key without the "<arch>." prefix: value}) of a GGUF file's metadata."""
    reader = gguf.GGUFReader(path)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    out = {}
    for key, field in reader.fields.items():
        if not key.startswith(arch + ".") or not field.data:
            continue
        values = [field.parts[i] for i in field.data]
        if field.types[0] == gguf.GGUFValueType.STRING:
            continue
        nums = [v[0].item() for v in values]
        out[key[len(arch) + 1:]] = nums if field.types[0] == gguf.GGUFValueType.ARRAY else nums[0]
    return arch, out


def _recurrent_layers(arch: str, meta: dict) -> int:
    """How many layers keep recurrent state (llama.cpp's hparams.is_recr, per architecture)."""
    n_layer = int(meta.get("block_count", 0))
    if arch in _ALL_LAYERS:
        return n_layer
    explicit = meta.get("attention.recurrent_layers")
    if isinstance(explicit, list):
        return sum(bool(x) for x in explicit[:n_layer])
    if arch in _INTERVAL:
        interval = int(meta.get("full_attention_interval", 4))
        return sum((il + 1) % interval != 0 for il in range(n_layer))
    kv, ff = meta.get("attention.head_count_kv"), meta.get("feed_forward_length")
    if not isinstance(kv, list):
        return 0  # one head count for every layer: no recurrent layer
    if arch == "nemotron_h":  # Mamba-2 layers have neither attention heads nor a feed-forward
        return sum(k == 0 and f == 0 for k, f in zip(kv, ff if isinstance(ff, list) else [ff] * n_layer))
    return sum(k == 0 for k in kv)


def state_bytes(path: str | Path) -> int:
    """Bytes of recurrent state one sequence keeps (0 for a transformer): float32 r (the
    convolution or token-shift window) and s (the SSM, WKV or delta-net state) per recurrent
    layer, as llama.cpp sizes them."""
    arch, meta = _fields(path)
    n_embd = int(meta.get("embedding_length", 0))
    if "wkv.head_size" in meta:  # RWKV: two token-shift rows, a head_size x n_embd WKV state
        r, s = int(meta.get("token_shift_count", 2)) * n_embd, n_embd * int(meta["wkv.head_size"])
    else:
        d_conv, d_inner = int(meta.get("ssm.conv_kernel", 0)), int(meta.get("ssm.inner_size", 0))
        d_state, n_group = int(meta.get("ssm.state_size", 0)), int(meta.get("ssm.group_count", 0))
        if "shortconv.l_cache" in meta:  # LFM2: the last l_cache - 1 inputs of the convolution
            r = n_embd * (int(meta["shortconv.l_cache"]) - 1)
        else:  # Mamba and the gated delta nets: the convolution's window over x, B and C
            r = max(d_conv - 1, 0) * (d_inner + 2 * n_group * d_state)
        s = d_state * d_inner
    return 4 * (r + s) * _recurrent_layers(arch, meta)


def default_n_seq_max(path: str | Path, row_unit: int) -> int:
    """N_SEQ_MAX, or for a recurrent model the multiple of 8 (at least 8) whose sequences and
    padding sequences (``row_unit - 1``) keep at most BUDGET bytes of state."""
    per = state_bytes(path)
    if per == 0:
        return N_SEQ_MAX
    n = BUDGET // per - max(row_unit - 1, 1)
    return int(min(N_SEQ_MAX, max(8, n // 8 * 8)))
