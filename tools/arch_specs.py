"""Find, for each llama.cpp architecture, the smallest GGUF file llama.cpp will load: which
metadata keys and which tensors of which shapes it asks for. The answer is written to
tests/arch_specs.json, from which tests/tiny_models.py writes random-weight files at test time.

It asks llama.cpp itself: write a file, load it, read the error ("key not found in model: K",
"missing tensor 'T'", "tensor 'T' has wrong shape; expected A, got B"), add what is missing,
and try again. Shapes are ggml's ne order. A last check in a subprocess creates a context and
decodes a few tokens, so that an architecture whose graph aborts is marked, not kept.

    python tools/arch_specs.py [ARCH ...]      # default: every architecture in ARCHS
"""

from __future__ import annotations

import json
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
]

N_EMBD, N_FF, N_HEAD, N_HEAD_KV, N_LAYER, N_CTX = 64, 128, 4, 2, 2, 256

# Keys every file gets; others are added when llama.cpp asks for them.
BASE = {
    "block_count": N_LAYER, "context_length": N_CTX, "embedding_length": N_EMBD, "feed_forward_length": N_FF,
    "attention.head_count": N_HEAD, "attention.head_count_kv": N_HEAD_KV,
    "attention.layer_norm_rms_epsilon": 1e-5, "attention.layer_norm_epsilon": 1e-5,
    "rope.dimension_count": N_EMBD // N_HEAD, "rope.freq_base": 10000.0,
}


# What some architectures need beyond BASE before llama.cpp's loader says what is missing
# (values it checks rather than asks for).
MOE = {"expert_count": 4, "expert_used_count": 2, "expert_feed_forward_length": 32}
SSM = {"ssm.inner_size": 2 * N_EMBD, "ssm.conv_kernel": 4, "ssm.state_size": 16, "ssm.time_step_rank": 4}
ARCH_META = {
    "olmoe": MOE, "qwen2moe": dict(MOE, expert_shared_feed_forward_length=32), "qwen3moe": MOE,
    "qwen3next": dict(MOE, **SSM, **{"ssm.group_count": 2, "expert_shared_feed_forward_length": 32,
                                     "full_attention_interval": 2}),
    "gptneox": {"use_parallel_residual": True},
    "mamba": SSM, "jamba": dict(SSM, **MOE),
    "bert": {"tokenizer.ggml.token_type_count": 2, "pooling_type": 1, "attention.causal": False},
    "rwkv7": {"attention.decay_lora_rank": 16, "attention.iclr_lora_rank": 16, "attention.value_residual_mix_lora_rank": 16,
              "attention.gate_lora_rank": 16, "wkv.head_size": 16, "time_mix_extra_dim": 16, "time_decay_extra_dim": 16,
              "rescale_every_n_layers": 0},
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
        return 16
    if k.endswith("_length") or "dim" in k or "size" in k or "rank" in k:
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
    meta, tensors = dict(BASE, **ARCH_META.get(arch, {})), {}
    path = tmp / f"{arch}.gguf"
    for _ in range(max_steps):
        write(path, arch, meta, tensors)
        err = load_error(path)
        if not err:
            yield {"meta": meta, "tensors": tensors, "loads": True}
            return
        if "pyintro needs" in err:  # llama.cpp loaded it; pyintro's engine refuses it
            yield {"meta": meta, "tensors": tensors, "loads": True, "refused": " ".join(err.split())[:300]}
            return
        state = {"meta": meta, "tensors": tensors, "loads": False, "error": " ".join(err.split())[-300:]}
        m = re.search(r"key not found in model: ([\w.\-]+)", err)
        if m:
            key = m.group(1)
            meta[key[len(arch) + 1:] if key.startswith(arch + ".") else key] = guess(key)
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


def discover_isolated(arch: str) -> dict:
    """discover() in a subprocess: llama.cpp's loader can crash on a file it half-understands."""
    r = subprocess.run([sys.executable, __file__, "--discover", arch], capture_output=True, text=True, timeout=1200)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    spec = json.loads(lines[-1]) if lines else {"meta": {}, "tensors": {}, "loads": False}
    if r.returncode != 0:
        spec["loads"] = False
        spec["error"] = f"llama.cpp crashed loading it (exit {r.returncode}) after: {spec.get('error', '')}"[:400]
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
    r = subprocess.run([sys.executable, "-c", CHECK, str(path)], capture_output=True, text=True, timeout=120)
    if r.returncode == 0 and r.stdout.strip() == "ok":
        return "ok"
    tail = (r.stderr.strip().splitlines() or ["exit code %d" % r.returncode])[-1]
    return f"exit {r.returncode}: {tail[:200]}"


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
