"""Find, for each llama.cpp architecture, the smallest GGUF file llama.cpp will load: which
metadata keys and which tensors of which shapes it asks for. The answer is written to
tests/arch_specs.json, from which tests/tiny_models.py writes random-weight files at test time.

It asks llama.cpp itself: write a file, load it, read the error ("key not found in model: K",
"missing tensor 'T'", "tensor 'T' has wrong shape; expected A, got B"), add what is missing,
and try again. Shapes are ggml's ne order. A last check in a subprocess creates a context and
decodes a few tokens, so that an architecture whose graph aborts is marked, not kept.

What the loader cannot say (values it uses without asking, optional tensors the graph needs
anyway, layer-kind arrays) is in ARCH_META and ARCH_TENSORS, each with the crash it prevents;
such crashes were found with gdb on the subprocess and read in llama.cpp's src/models/*.cpp.

    python tools/arch_specs.py [ARCH ...]      # default: every architecture in ARCHS
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "arch_specs.json"
sys.path.insert(0, str(ROOT / "tests"))
from tiny_models import write  # noqa: E402  (the tests write their files with the same function)

# Architectures to describe (llama.cpp's names, general.architecture).
ARCHS = [
    "llama", "mistral3", "qwen2", "qwen3", "smollm3", "granite", "gemma", "gemma2", "gemma3", "phi2", "phi3",
    "olmo", "olmo2", "olmoe", "qwen2moe", "qwen3moe", "starcoder", "starcoder2", "stablelm", "gpt2", "falcon",
    "gptneox", "bloom", "mpt", "command-r", "internlm2", "exaone", "gemma3n", "t5", "mamba", "mamba2", "rwkv7",
    "jamba", "lfm2", "qwen3next", "bert",
    # newer and popular ones
    "qwen35", "qwen35moe", "llama4", "gemma4", "gpt-oss", "deepseek2", "glm4", "glm4moe", "cohere2", "ernie4_5",
    "ernie4_5-moe", "seed_oss", "exaone4", "granitemoe", "granitehybrid", "falcon-h1", "nemotron_h", "hunyuan-dense",
    "apertus", "phimoe", "minicpm3", "lfm2moe",
]

N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_LAYER, N_CTX = 64, 128, 4, 2, 2, 256

# Keys every file gets; others are added when llama.cpp asks for them.
BASE = {
    "block_count": N_LAYER, "context_length": N_CTX, "embedding_length": N_EMBD, "feed_forward_length": N_FF,
    "attention.head_count": N_HEAD, "attention.head_count_kv": N_HEAD_KV,
    "attention.layer_norm_rms_epsilon": 1e-5, "attention.layer_norm_epsilon": 1e-5,
    "rope.dimension_count": N_EMBD // N_HEAD, "rope.freq_base": 10000.0,
}


# What some architectures need beyond BASE before llama.cpp's loader says what is missing:
# values it checks or uses rather than asks for, and features the real models have that a
# missing optional key would turn off. Each entry says why.
MOE = {"expert_count": 4, "expert_used_count": 2, "expert_feed_forward_length": 32}
SSM = {"ssm.inner_size": 2 * N_EMBD, "ssm.conv_kernel": 4, "ssm.state_size": 16, "ssm.time_step_rank": 4}
# A sliding window shorter than the tests' 11-token prompts, so that it masks something, and
# a pattern of one sliding-window layer then one full-attention layer, so both kinds are built.
SWA = {"attention.sliding_window": 4, "attention.sliding_window_pattern": 2}
# Gated delta net (qwen3next, qwen35): layer 0 linear attention, layer 1 full attention
# ((il + 1) % full_attention_interval == 0). Its head_v_dim is ssm.inner_size /
# ssm.time_step_rank and must equal ssm.state_size: 64 / 4 = 16.
DELTA_NET = {**SSM, "ssm.inner_size": 64, "ssm.group_count": 2, "full_attention_interval": 2}
# Hybrids that choose each layer's kind from head_count_kv (0: a recurrent layer). With a
# scalar head_count_kv every layer is attention, and the hybrid memory's recurrent-state input
# is then never allocated: llama_decode aborts in llm_graph_input_mem_hybrid::set_input
# (ggml_backend_buffer_get_type on a null buffer).
RECURRENT_FIRST = {"attention.head_count_kv": [0, N_HEAD_KV]}
ARCH_META = {
    # Sliding-window attention as the real models have it (gemma3 and olmo2 (OLMo 3) only turn
    # it on when the key is present; the others default to windows longer than any prompt).
    "gemma2": SWA, "gemma3": SWA, "cohere2": SWA, "olmo2": SWA, "gpt-oss": {**MOE, **SWA},
    # gemma4 reads the pattern as a per-layer bool array (true: sliding window).
    "gemma4": {**SWA, "attention.sliding_window_pattern": [True, False]},
    # smollm3 leaves rope out of every 4th layer (n_no_rope_layer_step = 4): 4 layers build one.
    "smollm3": {"block_count": 4},
    # llama4: likewise every 4th layer has no rope and scales Q by the attention temperature.
    # With fewer than 4 layers that input is built but used by no layer, so it gets no buffer
    # and llama_decode aborts in llm_graph_input_attn_temp::set_input ("tensor buffer not set").
    "llama4": {**MOE, "interleave_moe_layer_step": 1, "block_count": 4},
    # olmoe declares attn_k_norm as [n_embd] and applies it to K ([n_embd_gqa]): OLMoE has no
    # GQA, and with n_head_kv < n_head ggml_mul asserts (ggml_can_repeat) at graph build.
    "olmoe": {**MOE, "attention.head_count_kv": N_HEAD},
    "qwen2moe": {**MOE, "expert_shared_feed_forward_length": 32}, "qwen3moe": MOE, "phimoe": MOE,
    "ernie4_5-moe": MOE, "glm4moe": {**MOE, "expert_shared_count": 1, "leading_dense_block_count": 1},
    # MLA (deepseek2, minicpm3): the key head is a no-rope part plus a rope part of
    # rope.dimension_count; with the whole head roped the no-rope part is empty (GGML_ASSERT).
    # Their K/V heads are one per query head (no GQA) and the KV cache is sized by head_count_kv.
    "deepseek2": {**MOE, "rope.dimension_count": 8, "attention.head_count_kv": N_HEAD, "attention.q_lora_rank": 32,
                  "attention.kv_lora_rank": 16, "expert_shared_count": 1, "leading_dense_block_count": 1},
    "minicpm3": {"rope.dimension_count": 8, "attention.head_count_kv": N_HEAD, "attention.q_lora_rank": 32,
                 "attention.kv_lora_rank": 16},
    "gptneox": {"use_parallel_residual": True},
    # apertus's xIELU activation constants: per-layer float arrays, keys without the arch prefix.
    "apertus": {"xielu.alpha_n": [0.8] * N_LAYER, "xielu.alpha_p": [0.8] * N_LAYER,
                "xielu.beta": [0.5] * N_LAYER, "xielu.eps": [1e-6] * N_LAYER},
    # recurrent and hybrid
    "mamba": SSM,
    # rwkv7's head size as the real models have it (64): ggml's CPU WKV7 kernel steps through a
    # head GGML_F32_STEP floats at a time (32 with AVX/AVX2, 64 with AVX-512) and reads past a
    # smaller head, so a head of 16 gave results that changed from call to call.
    "rwkv7": {"attention.decay_lora_rank": 16, "attention.iclr_lora_rank": 16, "attention.value_residual_mix_lora_rank": 16,
              "attention.gate_lora_rank": 16, "wkv.head_size": 64, "time_mix_extra_dim": 16, "time_decay_extra_dim": 16,
              "rescale_every_n_layers": 0},
    "qwen3next": {**MOE, **DELTA_NET, "expert_shared_feed_forward_length": 32},
    # qwen35 (Qwen3.5): qwen3next's layout; its mrope sections are an i32 array.
    "qwen35": {**DELTA_NET, "rope.dimension_sections": [4, 2, 2, 0]},
    "qwen35moe": {**MOE, **DELTA_NET, "rope.dimension_sections": [4, 2, 2, 0], "expert_shared_feed_forward_length": 32},
    "jamba": {**SSM, **MOE, **RECURRENT_FIRST},
    "lfm2": {**RECURRENT_FIRST, "shortconv.l_cache": 3},
    "lfm2moe": {**MOE, **RECURRENT_FIRST, "shortconv.l_cache": 3, "leading_dense_block_count": 1},
    # granitehybrid's Mamba2 layers need d_inner = 2 * n_embd (SSM's).
    "granitehybrid": {**SSM, **RECURRENT_FIRST, "ssm.group_count": 1},
    "falcon-h1": {**SSM, "ssm.group_count": 1},
    # nemotron_h: each layer is one of Mamba2 (head_count_kv 0 and feed_forward_length 0),
    # attention (feed_forward_length 0) or MLP (head_count_kv 0); one of each.
    "nemotron_h": {**SSM, "ssm.group_count": 1, "block_count": 3, "attention.head_count_kv": [0, N_HEAD_KV, 0],
                   "feed_forward_length": [0, 0, N_FF]},
    # not decoders
    "bert": {"tokenizer.ggml.token_type_count": 2, "pooling_type": 1, "attention.causal": False},
}

# Tensors the loader treats as optional (TENSOR_NOT_REQUIRED: one of several layouts) but the
# graph needs one layout of; without them llama.cpp dereferences a null tensor when it builds
# the graph (a segfault, not an error). They start as [1] and the loader's shape check fixes them.
DELTA_NET_TENSORS = ["blk.0.attn_qkv.weight", "blk.0.attn_gate.weight"]
ARCH_TENSORS = {
    # phi3 loads either attn_qkv or attn_q/k/v, all optional; build_qkv needs one of them.
    "phi3": [f"blk.{i}.attn_qkv.weight" for i in range(N_LAYER)],
    # The gated delta net's projections: attn_qkv + attn_gate (or the legacy ssm_in), optional.
    "qwen3next": DELTA_NET_TENSORS, "qwen35": DELTA_NET_TENSORS, "qwen35moe": DELTA_NET_TENSORS,
    # The Mamba2 mixer adds ssm_conv1d.bias unconditionally; these loaders have it optional.
    "falcon-h1": [f"blk.{i}.ssm_conv1d.bias" for i in range(N_LAYER)],
    "granitehybrid": ["blk.0.ssm_conv1d.bias"], "nemotron_h": ["blk.0.ssm_conv1d.bias"],
}


def guess(key: str):
    """A plausible value for a key llama.cpp asks for, from its name."""
    k = key.split(".", 1)[1] if "." in key else key
    if "epsilon" in k or k.endswith("_eps"):
        return 1e-5
    if "scale" in k or "softcap" in k or "multiplier" in k or "factor" in k or "freq" in k:
        return 1.0
    if k.endswith("expert_count"):
        return 4
    if k.endswith("expert_used_count"):
        return 2
    if "sliding_window" in k:
        return SWA["attention.sliding_window"]
    if "_length" in k or "dim" in k or "size" in k or "rank" in k:
        return 16
    if "count" in k or "num" in k or "group" in k:
        return 2
    return 1


def load_error(path: Path) -> str:
    """llama.cpp's loader error for the file, or "" if it loads."""
    from pyintro._native import _engine

    p = _engine.EngineParams()
    p.path, p.n_ctx, p.n_seq_max, p.n_threads = str(path), 64, 1, 1
    try:
        _engine.Engine(p).close()
    except (RuntimeError, ValueError) as e:
        return str(e)
    return ""


def discover(arch: str, tmp: Path, max_steps: int = 400):
    """Yields the spec after every step (the last one is the answer)."""
    meta, tensors = dict(BASE, **ARCH_META.get(arch, {})), {name: [1] for name in ARCH_TENSORS.get(arch, [])}
    path = tmp / f"{arch}.gguf"
    for _ in range(max_steps):
        write(path, arch, meta, tensors)
        err = " ".join(load_error(path).replace(str(tmp) + "/", "").split())  # one line, no temp folder
        if not err:
            yield {"meta": meta, "tensors": tensors, "loads": True}
            return
        if "pyintro needs" in err:  # llama.cpp loaded it; pyintro's engine refuses it
            yield {"meta": meta, "tensors": tensors, "loads": True, "refused": err[:300]}
            return
        state = {"meta": meta, "tensors": tensors, "loads": False, "error": err[-300:]}
        m = re.search(r"(array )?key not found in model: ([\w.\-]+)", err)
        if m:
            key = m.group(2)
            key = key[len(arch) + 1:] if key.startswith(arch + ".") else key
            if key in meta:  # asked again: it wants another type or form; say so in ARCH_META
                yield state
                return
            n_layer = meta["block_count"]
            meta[key] = [guess(key)] * n_layer if m.group(1) else guess(key)
            yield state
            continue
        m = re.search(r"missing tensor '([^']+)'", err) or re.search(r"tensor '([^']+)' not found", err)
        if m:
            tensors[m.group(1)] = [1]
            yield state
            continue
        m = re.search(r"tensor '([^']+)' has wrong shape; expected ([\d ,]+), got", err)
        if m:
            tensors[m.group(1)] = [int(x) for x in m.group(2).split(",")]
            yield state
            continue
        yield state
        return
    yield {"meta": meta, "tensors": tensors, "loads": False, "error": "too many steps"}


def crash_reason(returncode: int, stderr: str) -> str:
    """What killed a subprocess: llama.cpp's own last words (a GGML_ASSERT, an exception) if
    it left any, else the signal."""
    signal = {-6: "SIGABRT", -11: "SIGSEGV"}.get(returncode, f"exit {returncode}")
    words = [line.strip() for line in stderr.splitlines()
             if "GGML_ASSERT" in line or "terminate called" in line or "what():" in line or "error" in line.lower()]
    return f"{signal}: {words[-1][-200:]}" if words else signal


def run_isolated(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    # GGML_NO_BACKTRACE: an abort then prints its message, not a gdb backtrace of every thread.
    env = dict(os.environ, GGML_NO_BACKTRACE="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)


def discover_isolated(arch: str) -> dict:
    """discover() in a subprocess: llama.cpp's loader can crash on a file it half-understands."""
    r = run_isolated([__file__, "--discover", arch], timeout=1200)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    spec = json.loads(lines[-1]) if lines else {"meta": {}, "tensors": {}, "loads": False}
    if r.returncode != 0:
        spec["loads"] = False
        spec["error"] = (f"llama.cpp crashed ({crash_reason(r.returncode, r.stderr)}) after: "
                         f"{spec.get('error', '')}")[:400]
    return spec


CHECK = """
import sys, numpy as np
from pyintro._native import _engine
p = _engine.EngineParams(); p.path, p.n_ctx, p.n_seq_max, p.n_threads = sys.argv[1], 256, 2, 1
e = _engine.Engine(p)
n = 5
e.decode(np.arange(3, 3 + n, dtype=np.int32), np.arange(n, dtype=np.int32), np.zeros(n, np.int32), np.ones(n, np.uint8))
print("ok")
"""


def decodes(path: Path) -> str:
    """"ok", or how a context + decode of the file failed (in a subprocess: llama.cpp may abort)."""
    r = run_isolated(["-c", CHECK, str(path)], timeout=120)
    if r.returncode == 0 and r.stdout.strip() == "ok":
        return "ok"
    return crash_reason(r.returncode, r.stderr)


def main(archs: list[str]) -> None:
    specs = json.loads(OUT.read_text()) if OUT.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            spec = discover_isolated(arch)
            if spec["loads"] and "refused" not in spec:
                path = Path(tmp) / f"{arch}.gguf"
                write(path, arch, spec["meta"], spec["tensors"])
                spec["decode"] = decodes(path)
            print(f"{arch:12} loads={spec['loads']} tensors={len(spec['tensors'])} "
                  f"{spec.get('decode', spec.get('refused', spec.get('error', '')))}", flush=True)
            specs[arch] = spec
            OUT.write_text(json.dumps(specs, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--discover"]:
        with tempfile.TemporaryDirectory() as tmp:
            for state in discover(sys.argv[2], Path(tmp)):
                print(json.dumps(state), flush=True)
    else:
        main(sys.argv[1:] or ARCHS)
