"""Recurrent and hybrid models on random-weight files with the exact shapes of Qwen3.5-0.8B and
LFM2-350M: pyintro's Yes/No points against llama.cpp's plain batched decode of the same points, the
recurrent state a point's sequence keeps, and the PyTorch route.

    python bench/hybrid_speed.py [--threads 2] [--points 112] [--repeats 3] [--types q8_0,q4_k_m]
                                 [--shapes qwen3.5-0.8b,lfm2-350m] [--no-hf] [--keep] [--readme docs/performance.md]

The files (bench/results/hybrid/, git-ignored, deleted after unless --keep): Q8_0 matrices of random
int8 blocks (std 0.02), norms of ones, a vocabulary of the real size; Q4_K_M requantizes the Q8_0 file.
Speed does not depend on the weights' values. Timed in rotation (``_common.interleaved``), ms per
point over a 50-token prompt whose first 49 tokens are decoded beforehand, untimed:
  - pyintro: one injection at the last token per point (layers and strengths vary), the Yes and No
    logits through the fast head (the default), and with ``fast_head=False`` (the full unembedding);
  - llama.cpp's plain batched decode (llama-cpp-python, no hook, no padding): the prefix in sequence
    0 copied to sequences 1..k, one token per sequence, full logits; in 56-row and 512-row calls.
Memory: the recurrent state per sequence (``pyintro.recurrent.state_bytes``, and llama.cpp's own
``seq_state_bytes`` of a one-token sequence), the default n_seq_max and the state it reserves.
PyTorch (--no-hf skips it): transformers' class for the architecture with random float32 weights,
the whole prompt decoded per point, a forward hook adding the vector at the last token.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, OtherLoad, interleaved, machine, machine_line, report  # noqa: E402

import pyintro  # noqa: E402
from pyintro import Injection, recurrent  # noqa: E402
from pyintro.quantize import quantize  # noqa: E402

QWEN35 = {
    "label": "Qwen3.5-0.8B", "arch": "qwen35", "n_embd": 1024, "n_layer": 24, "n_head": 8, "n_head_kv": 2,
    "head_dim": 256, "n_ff": 3584, "n_vocab": 248320, "ssm_state": 128, "ssm_groups": 16, "ssm_heads": 16,
    "conv": 4, "interval": 4,
}
LFM2 = {
    "label": "LFM2-350M", "arch": "lfm2", "n_embd": 1024, "n_layer": 16, "n_head": 16, "n_head_kv": 8,
    "head_dim": 64, "n_ff": 4608, "n_vocab": 65536, "l_cache": 3, "attention": (2, 5, 8, 10, 12, 14),
}
SHAPES = {"qwen3.5-0.8b": QWEN35, "lfm2-350m": LFM2}
CACHE = RESULTS / "hybrid"
PROMPT_TOKENS = 50
YES_NO = [1000, 2000]
TARGET = 1.15  # pyintro's ms/point over llama.cpp's plain batched decode of the same points
MIB = 2 ** 20


def tensors(s: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape, kind) of every tensor, kind "q8" (a matrix), "f32", "one" or "neg"."""
    d, ff = s["n_embd"], s["n_ff"]
    out = [("token_embd.weight", (s["n_vocab"], d), "q8")]
    for il in range(s["n_layer"]):
        b = f"blk.{il}."
        ffn = [(b + "ffn_gate.weight", (ff, d), "q8"), (b + "ffn_up.weight", (ff, d), "q8"),
               (b + "ffn_down.weight", (d, ff), "q8")]
        if s["arch"] == "qwen35":
            out += [(b + "attn_norm.weight", (d,), "one"), (b + "post_attention_norm.weight", (d,), "one")] + ffn
            if (il + 1) % s["interval"]:  # a gated delta net
                key, value = s["ssm_state"] * s["ssm_groups"], s["ssm_state"] * s["ssm_heads"]
                conv = 2 * key + value
                out += [(b + "attn_qkv.weight", (conv, d), "q8"), (b + "attn_gate.weight", (value, d), "q8"),
                        (b + "ssm_conv1d.weight", (conv, s["conv"]), "f32"), (b + "ssm_dt.bias", (s["ssm_heads"],), "f32"),
                        (b + "ssm_a", (s["ssm_heads"],), "neg"), (b + "ssm_beta.weight", (s["ssm_heads"], d), "q8"),
                        (b + "ssm_alpha.weight", (s["ssm_heads"], d), "q8"), (b + "ssm_norm.weight", (s["ssm_state"],), "one"),
                        (b + "ssm_out.weight", (d, value), "q8")]
            else:  # gated attention: the query projection holds the gate too
                hd = s["head_dim"]
                out += [(b + "attn_q.weight", (2 * hd * s["n_head"], d), "q8"), (b + "attn_k.weight", (hd * s["n_head_kv"], d), "q8"),
                        (b + "attn_v.weight", (hd * s["n_head_kv"], d), "q8"), (b + "attn_output.weight", (d, hd * s["n_head"]), "q8"),
                        (b + "attn_q_norm.weight", (hd,), "one"), (b + "attn_k_norm.weight", (hd,), "one")]
        else:
            out += [(b + "ffn_norm.weight", (d,), "one"), (b + "attn_norm.weight", (d,), "one")] + ffn
            if il in s["attention"]:
                kv = s["head_dim"] * s["n_head_kv"]
                out += [(b + "attn_q_norm.weight", (s["head_dim"],), "one"), (b + "attn_k_norm.weight", (s["head_dim"],), "one"),
                        (b + "attn_q.weight", (d, d), "q8"), (b + "attn_k.weight", (kv, d), "q8"),
                        (b + "attn_v.weight", (kv, d), "q8"), (b + "attn_output.weight", (d, d), "q8")]
            else:
                out += [(b + "shortconv.conv.weight", (d, s["l_cache"]), "f32"),
                        (b + "shortconv.in_proj.weight", (3 * d, d), "q8"), (b + "shortconv.out_proj.weight", (d, d), "q8")]
    out.append(("output_norm.weight" if s["arch"] == "qwen35" else "token_embd_norm.weight", (d,), "one"))
    return out


def metadata(s: dict) -> dict:
    """The architecture's keys (without the "<arch>." prefix), as llama.cpp reads them."""
    common = {"block_count": s["n_layer"], "context_length": 4096, "embedding_length": s["n_embd"],
              "feed_forward_length": s["n_ff"], "attention.head_count": s["n_head"],
              "attention.layer_norm_rms_epsilon": 1e-6}
    if s["arch"] == "qwen35":
        return {**common, "attention.head_count_kv": s["n_head_kv"], "attention.key_length": s["head_dim"],
                "attention.value_length": s["head_dim"], "rope.dimension_count": s["head_dim"] // 4,
                "rope.dimension_sections": [11, 11, 10, 0], "rope.freq_base": 1e7, "full_attention_interval": s["interval"],
                "ssm.conv_kernel": s["conv"], "ssm.state_size": s["ssm_state"], "ssm.group_count": s["ssm_groups"],
                "ssm.time_step_rank": s["ssm_heads"], "ssm.inner_size": s["ssm_state"] * s["ssm_heads"]}
    kv = [s["n_head_kv"] if il in s["attention"] else 0 for il in range(s["n_layer"])]
    return {**common, "attention.head_count_kv": kv, "rope.dimension_count": s["head_dim"], "rope.freq_base": 1e6,
            "shortconv.l_cache": s["l_cache"]}


def write_random(path: Path, s: dict, seed: int = 0) -> Path:
    """The GGUF of shape ``s`` (Q8_0 matrices of random int8 blocks), tensor by tensor, atomically."""
    import gguf

    q8 = gguf.GGMLQuantizationType.Q8_0
    block, block_bytes = gguf.GGML_QUANT_SIZES[q8]
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), s["arch"])
    w.add_name(f"random {s['label']}-shaped")
    for key, value in metadata(s).items():
        add = w.add_array if isinstance(value, list) else w.add_float32 if isinstance(value, float) else w.add_uint32
        add(f"{s['arch']}.{key}", value)
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0))
    v = s["n_vocab"]  # a vocabulary of the real size: <unk>, <s>, </s>, then plain tokens
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(v - 3)])
    w.add_token_scores([0.0] * v)
    w.add_token_types([2, 3, 3] + [1] * (v - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    items = tensors(s)
    for name, shape, kind in items:
        if kind == "q8":
            row_bytes = shape[1] // block * block_bytes
            w.add_tensor_info(name, (shape[0], row_bytes), np.dtype(np.uint8), shape[0] * row_bytes, raw_dtype=q8)
        else:
            w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    scale = np.frombuffer(np.float16(0.02 * np.sqrt(3.0) / 127).tobytes(), np.uint8)
    for name, shape, kind in items:
        if kind != "q8":
            data = {"one": np.ones(shape, np.float32), "neg": -np.ones(shape, np.float32)}.get(kind)
            w.write_tensor_data(data if data is not None else (rng.standard_normal(shape) * 0.02).astype(np.float32))
            continue
        arr = np.empty((shape[0], shape[1] // block, block_bytes), np.uint8)
        arr[..., :2] = scale
        arr[..., 2:] = rng.integers(-127, 128, size=arr[..., 2:].shape, dtype=np.int8).view(np.uint8)
        w.write_tensor_data(arr.reshape(shape[0], -1))
    w.close()
    os.replace(tmp, path)
    return path


def model_file(key: str, qtype: str, threads: int, say) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("# random-weight files written by bench/hybrid_speed.py\n*\n")
    src = CACHE / f"{key}.Q8_0.gguf"
    if not src.exists():
        say(f"writing {src}")
        write_random(src, SHAPES[key])
    dst = CACHE / f"{key}.{qtype.upper()}.gguf"
    if not dst.exists():  # another type: llama.cpp's requantization of the Q8_0 file
        say(f"quantizing to {dst}")
        quantize(src, dst, qtype, threads=threads)
    return dst


class PlainBatched:
    """llama-cpp-python alone: the prompt's prefix in sequence 0, then points as one token per
    sequence 1..k per llama_decode call of up to n_batch rows (removed after each call), all outputs,
    no hook, no padding; the Yes/No logits read per row."""

    def __init__(self, path: Path, threads: int, n_batch: int, n_points: int):
        import llama_cpp as L

        from pyintro._native import _engine

        _engine.log_install()  # importing llama_cpp installed its own log callback; keep llama.cpp quiet
        self.L = L
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(str(path).encode(), mp)
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = 4096, n_batch, n_batch
        cp.n_seq_max = min(n_batch, n_points) + 1
        cp.n_outputs_max = max(n_batch, cp.n_seq_max)  # llama.cpp reserves an output per sequence
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified, cp.flash_attn_type = True, L.LLAMA_FLASH_ATTN_TYPE_ENABLED  # as pyintro decodes
        cp.op_offload, cp.no_perf = False, True
        self.ctx = L.llama_init_from_model(self.model, cp)
        self.n_batch, self.n_vocab = n_batch, L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.batch = L.llama_batch_init(max(n_batch, PROMPT_TOKENS), 0, 1)
        self.mem = L.llama_get_memory(self.ctx)

    def prefix(self, ids: list[int]) -> None:
        self.L.llama_memory_clear(self.mem, True)
        self._decode([(t, p, 0, False) for p, t in enumerate(ids)])

    def _decode(self, rows) -> None:
        b = self.batch
        b.n_tokens = len(rows)
        for i, (t, p, s, o) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, p, 1, int(o)
            b.seq_id[i][0] = s
        if self.L.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def points(self, token: int, pos: int, n: int) -> np.ndarray:
        """[n, 2]: the Yes/No logits of n points (token at pos, each in its own sequence)."""
        out = np.empty((n, 2), np.float32)
        for start in range(0, n, self.n_batch):
            k = min(self.n_batch, n - start)
            for s in range(1, k + 1):
                self.L.llama_memory_seq_cp(self.mem, 0, s, -1, -1)
            self._decode([(token, pos, s, True) for s in range(1, k + 1)])
            for i in range(k):
                out[start + i] = np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))[YES_NO]
            for s in range(1, k + 1):
                self.L.llama_memory_seq_rm(self.mem, s, -1, -1)
        return out

    def close(self) -> None:
        self.L.llama_batch_free(self.batch)
        self.L.llama_free(self.ctx)
        self.L.llama_model_free(self.model)


def hf_route(s: dict, threads: int, ids: list[int], v: np.ndarray) -> tuple:
    """(ms per point, note) of transformers on shape ``s`` (8 points at 2 layers), or (None, why not)."""
    try:
        import torch
        import transformers
    except ImportError as e:
        return None, f"transformers is not installed ({e.name})"
    common = dict(hidden_size=s["n_embd"], num_hidden_layers=s["n_layer"], num_attention_heads=s["n_head"],
                  num_key_value_heads=s["n_head_kv"], intermediate_size=s["n_ff"], vocab_size=s["n_vocab"],
                  tie_word_embeddings=True)
    if s["arch"] == "qwen35":
        names = "Qwen3_5ForCausalLM", "Qwen3_5TextConfig"
        kw = dict(head_dim=s["head_dim"], linear_num_key_heads=s["ssm_groups"], linear_num_value_heads=s["ssm_heads"],
                  linear_key_head_dim=s["ssm_state"], linear_value_head_dim=s["ssm_state"], linear_conv_kernel_dim=s["conv"],
                  layer_types=["full_attention" if (il + 1) % s["interval"] == 0 else "linear_attention"
                               for il in range(s["n_layer"])])
    else:
        names = "Lfm2ForCausalLM", "Lfm2Config"
        kw = dict(block_auto_adjust_ff_dim=False, conv_L_cache=s["l_cache"], full_attn_idxs=list(s["attention"]))
    cls, config_cls = (getattr(transformers, n, None) for n in names)
    if cls is None or config_cls is None:
        return None, f"transformers {transformers.__version__} has no {names[0]}"
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = cls(config_cls(**common, **kw)).eval()
    vec, scales, active = torch.from_numpy(v), torch.zeros(8), [-1]

    def add(module, _inputs, output):  # at the last token of each row, in the active layer only
        hidden = output[0] if isinstance(output, tuple) else output
        if model.model.layers[active[0]] is module:
            hidden[:, -1] += scales[:hidden.shape[0], None] * vec

    for block in model.model.layers:
        block.register_forward_hook(add)
    prompt = torch.tensor([ids])
    pts = [(layer, st) for layer in (0, s["n_layer"] // 2) for st in (1.0, 2.0, 4.0, 8.0)]
    with torch.no_grad():
        model(prompt[:, :8])  # warm-up
        start = time.perf_counter()
        for layer in sorted({p[0] for p in pts}):  # one forward per layer: the hook adds at one layer
            rows = [st for p, st in pts if p == layer]
            scales[:len(rows)], active[0] = torch.tensor(rows), layer
            model(prompt.expand(len(rows), -1)).logits[:, -1, YES_NO]
        took = time.perf_counter() - start
    return 1000 * took / len(pts), f"transformers {transformers.__version__} {names[0]}, float32, no cache, {len(pts)} points"


def self_timed(prepare, work):
    """For ``interleaved(self_timed=True)``: ``prepare()`` untimed, ``work()`` timed (its result in ``.out``)."""
    def run():
        prepare()
        start = time.perf_counter()
        run.out = work()
        return time.perf_counter() - start
    return run


def measure(key: str, qtype: str, args, say) -> dict:
    s = SHAPES[key]
    path = model_file(key, qtype, args.threads, say)
    rng = np.random.default_rng(0)
    ids = [int(t) for t in rng.integers(3, s["n_vocab"], PROMPT_TOKENS)]
    model = pyintro.Model.load(path, n_threads=args.threads, chat_template="raw")
    full = pyintro.Model.load(path, n_threads=args.threads, chat_template="raw", fast_head=False)
    n = args.points
    v = rng.standard_normal((model.n_layer, model.n_embd)).astype(np.float32)
    v *= 0.5 / np.linalg.norm(v, axis=1, keepdims=True)
    points = [[Injection(v, i * model.n_layer // n, float(1 + i % 8))] for i in range(n)]
    plain = {b: PlainBatched(path, args.threads, b, n) for b in (56, 512)}

    fns = {name: self_timed(lambda m=m: m.points(ids, [[]], vocab_ids=YES_NO),  # caches the prefix
                            lambda m=m: m.points(ids, points, vocab_ids=YES_NO))
           for name, m in (("pyintro", model), ("pyintro full head", full))}
    fns.update({f"llama.cpp {b}": self_timed(lambda p=p: p.prefix(ids[:-1]), lambda p=p: p.points(ids[-1], len(ids) - 1, n))
                for b, p in plain.items()})
    timed = interleaved(fns, args.repeats, self_timed=True)
    ms = {k: 1000 * t["median"] / n for k, t in timed.items()}
    rounds = {k: np.asarray(t["times"]) for k, t in timed.items()}  # a ratio: the median of each round's
    ratio = {k: float(np.median(rounds[k] / rounds["llama.cpp 56"])) for k in ("pyintro", "pyintro full head")}
    # strength 0 against llama.cpp's own logits (every plain row is the same uninjected point)
    zero = [m.points(ids, [[Injection(v, 0, 0.0)]], vocab_ids=YES_NO)[0] for m in (model, full)]
    diff = [float(np.abs(z - fns["llama.cpp 56"].out[0]).max()) for z in zero]
    # memory per point sequence: llama.cpp's figure for a one-token sequence, and per added token
    model.reset()
    model._decoder.ensure_prefix(ids[:1])
    one = model._engine.seq_state_bytes(0)
    model._decoder.ensure_prefix(ids[:2])
    per_token = model._engine.seq_state_bytes(0) - one
    state, unit = recurrent.state_bytes(path), model.numerics()["row_unit"]
    row = {
        "shape": s["label"], "quant_type": model.quant_type, "row_unit": unit, "points": n, "ms_point": ms,
        "timed": timed, "over_llama_cpp_56": ratio["pyintro"],
        "full_head_over_llama_cpp_56": ratio["pyintro full head"],
        "fast_head": bool(model._decoder.head.matched.get(np.asarray(YES_NO, np.int32).tobytes(), False)),
        "strength0_vs_llama_cpp_max_abs": {"pyintro": diff[0], "pyintro full head": diff[1]},
        "state_bytes_per_sequence": state, "llama_cpp_state_bytes_one_token": one, "kv_bytes_per_token": per_token,
        "default_n_seq_max": model.n_seq_max, "state_reserved_mib": (model.n_seq_max + max(unit - 1, 1)) * state / MIB,
        "file_gb": path.stat().st_size / 1e9,
    }
    for m in (model, full, *plain.values()):
        m.close()
    if not args.no_hf:
        say(f"{s['label']}: the PyTorch route")
        row["hf_ms_point"], row["hf_note"] = hf_route(s, args.threads, ids, v[0])
    return row


def table(rows: list[dict], m: dict, threads: int, other: OtherLoad, command: str) -> str:
    lines = [
        f"Recurrent and hybrid models, {rows[0]['points']}-point Yes/No batches (one injection at the last token "
        "each) over a 50-token prompt whose 49-token prefix is cached, random-weight files of the real shapes, "
        f"{threads} threads; median ms per point of the rounds timed in rotation ({machine_line(m)}). "
        + other.sentence(m["cores"]),
        "llama.cpp: llama-cpp-python's plain batched decode of the same points (one token per sequence per call, "
        "no hook, no padding, full logits), in pyintro's 56-row calls and in llama.cpp's default 512. "
        f"pyintro: the fast head (the default) and `fast_head=False` (full logits, like llama.cpp's). "
        f"Target: pyintro ≤ {TARGET}× llama.cpp's 56-row calls (÷: the median of each round's ratio). Δ0: the largest difference of a Yes/No logit at "
        "strength 0 from llama.cpp's (fast head / full head). State: the recurrent state one point's sequence "
        "keeps; the default n_seq_max keeps the state of its sequences and padding within 1 GiB.",
        "",
        "| model | type | pyintro | pyintro full head | llama.cpp 56-row | llama.cpp 512-row | pyintro ÷ llama.cpp 56 "
        "| full head ÷ llama.cpp 56 | Δ0 | state per sequence | default n_seq_max (state reserved) | PyTorch route |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ms, d = r["ms_point"], r["strength0_vs_llama_cpp_max_abs"]
        hf = f"{r['hf_ms_point']:.0f} ms/point ({r['hf_note']})" if r.get("hf_ms_point") else r.get("hf_note", "not run")
        lines.append(
            f"| {r['shape']} | {r['quant_type']} | {ms['pyintro']:.1f} | {ms['pyintro full head']:.1f} | "
            f"{ms['llama.cpp 56']:.1f} | {ms['llama.cpp 512']:.1f} | {r['over_llama_cpp_56']:.2f} | "
            f"{r['full_head_over_llama_cpp_56']:.2f} | {d['pyintro']:.1e} / {d['pyintro full head']:.1e} | "
            f"{r['state_bytes_per_sequence'] / MIB:.2f} MiB | {r['default_n_seq_max']} ({r['state_reserved_mib']:.0f} MiB) | {hf} |")
    lines += ["", f"Reproduce: `{command}`"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points", type=int, default=112)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--types", default="q8_0,q4_k_m")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the model files in bench/results/hybrid/")
    ap.add_argument("--readme", type=Path, help="update this file's bench:hybrid_speed section")
    args = ap.parse_args()

    def say(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    rows, other = [], OtherLoad()
    for key in args.shapes.split(","):
        for qtype in args.types.split(","):
            say(f"{key} {qtype}")
            rows.append(measure(key, qtype, args, say))
            say(str(rows[-1]))
        if not args.keep:
            for f in CACHE.glob(f"{key}.*.gguf"):
                f.unlink()
    other.stop()
    m = machine()
    command = "python bench/hybrid_speed.py " + " ".join(a for a in sys.argv[1:] if a != "--keep")
    report("hybrid_speed", {"machine": m, "command": command, "other_load_cores": other.cores, "rows": rows},
           table(rows, m, args.threads, other, command), args.readme, md=True)


if __name__ == "__main__":
    main()
