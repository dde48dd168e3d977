"""Recurrent and hybrid models: pyintro's Yes/No points against llama.cpp's plain batched decode of
the same points, the recurrent state a point's sequence keeps, and the PyTorch route, on
random-weight files with the exact shapes of Qwen3.5-0.8B and LFM2-350M.

    python bench/hybrid_speed.py [--threads 2] [--points 112] [--repeats 3] [--types q8_0,q4_k_m]
                                 [--shapes qwen3.5-0.8b,lfm2-350m] [--no-hf] [--keep] [--readme docs/performance.md]

The files (bench/results/hybrid/, git-ignored; deleted after unless --keep) hold random weights
with the real tensor shapes: int8 Q8_0 blocks of std 0.02 for the matrices, ones for the norms,
-1 for the delta nets' decay, and a minimal vocabulary of the real size; Q4_K_M is llama.cpp's
requantization of the Q8_0 file. Speed does not depend on the weights' values.

  - Qwen3.5-0.8B: 24 layers (18 gated delta nets, every 4th attention), n_embd 1024, 8 heads /
    2 KV heads of 256 (gated queries), n_ff 3584, delta nets of 16 heads of 128 (conv 4),
    vocabulary 248,320, tied output;
  - LFM2-350M: 16 layers (10 short convolutions of 3, attention at 2, 5, 8, 10, 12, 14),
    n_embd 1024, 16 heads / 8 KV heads, n_ff 4608, vocabulary 65,536, tied output.

Per (shape, type), timed in rotation after a warm-up (``_common.interleaved``), ms per point of a
Yes/No batch over a 50-token prompt whose first 49 tokens are decoded beforehand, untimed:

  - pyintro: one injection at the last token per point (layers and strengths vary), the Yes and
    No logits through the fast head (the default);
  - llama.cpp, plain batched decode (llama-cpp-python, no hook, no padding): the prefix in sequence
    0, copied to sequences 1..k, one token per sequence per llama_decode call, the full logits
    computed and two read; with pyintro's 56-row calls and with llama.cpp's default 512.

Memory per point sequence: ``pyintro.recurrent.state_bytes`` (from the file) and llama.cpp's own
figure (``Engine.seq_state_bytes`` of a one-token sequence), the default n_seq_max Model.load
picks, and the state it reserves (n_seq_max + row_unit - 1 sequences).

The PyTorch route (--no-hf to skip): transformers' model class for the architecture, built from a
config of the same shape with its own random weights in float32, the 50-token prompt decoded for
every point (batched 8 at a time) with a forward hook adding the vector at the last token; where
transformers has no class for the architecture, the row says so.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, OtherLoad, interleaved_timed, machine, machine_line, update_readme, write_json  # noqa: E402

import pyintro  # noqa: E402
from pyintro import Injection, recurrent  # noqa: E402
from pyintro.model import Settings  # noqa: E402
from pyintro.quantize import quantize  # noqa: E402

QWEN35 = {
    "label": "Qwen3.5-0.8B", "arch": "qwen35", "n_embd": 1024, "n_layer": 24, "n_head": 8, "n_head_kv": 2,
    "head_dim": 256, "n_ff": 3584, "n_vocab": 248320, "ssm_state": 128, "ssm_groups": 16, "ssm_heads": 16,
    "conv": 4, "interval": 4, "hf": "qwen3_5_text",
}
LFM2 = {
    "label": "LFM2-350M", "arch": "lfm2", "n_embd": 1024, "n_layer": 16, "n_head": 16, "n_head_kv": 8,
    "head_dim": 64, "n_ff": 4608, "n_vocab": 65536, "l_cache": 3, "attention": (2, 5, 8, 10, 12, 14), "hf": "lfm2",
}
SHAPES = {"qwen3.5-0.8b": QWEN35, "lfm2-350m": LFM2}
CACHE = RESULTS / "hybrid"
PROMPT_TOKENS = 50
YES_NO = (1000, 2000)
TARGET = 1.15  # pyintro's ms/point over llama.cpp's plain batched decode of the same points
GIB = 2 ** 30


# -- the files ----------------------------------------------------------------------------------

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
    """The GGUF of shape ``s``: Q8_0 matrices of random int8 blocks (std 0.02), written tensor by
    tensor, atomically."""
    import gguf

    q8 = gguf.GGMLQuantizationType.Q8_0
    block, block_bytes = gguf.GGML_QUANT_SIZES[q8]
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), s["arch"])
    w.add_name(f"random {s['label']}-shaped")
    for key, value in metadata(s).items():
        full = f"{s['arch']}.{key}"
        if isinstance(value, list):
            w.add_array(full, value)
        elif isinstance(value, float):
            w.add_float32(full, value)
        else:
            w.add_uint32(full, value)
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0))
    v = s["n_vocab"]
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
    if not (CACHE / ".gitignore").exists():
        (CACHE / ".gitignore").write_text("# random-weight files written by bench/hybrid_speed.py\n*\n")
    src = CACHE / f"{key}.Q8_0.gguf"
    if not src.exists():
        say(f"writing {src}")
        write_random(src, SHAPES[key])
    if qtype == "q8_0":
        return src
    dst = CACHE / f"{key}.{qtype.upper()}.gguf"
    if not dst.exists():
        say(f"quantizing to {dst}")
        quantize(src, dst, qtype, threads=threads)
    return dst


# -- llama.cpp's plain batched decode -------------------------------------------------------------

class PlainBatched:
    """llama-cpp-python alone: the prompt's prefix in sequence 0 (one decode), then points as one
    token per sequence 1..k per llama_decode call of up to n_batch rows, all outputs, no hook and no
    padding; the two Yes/No logits read per row."""

    def __init__(self, path: Path, threads: int, n_batch: int, n_seq: int):
        import llama_cpp as L

        from pyintro._native import _engine

        self.L = L
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(str(path).encode(), mp)
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 4096, n_batch, n_batch, n_seq + 1
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified, cp.flash_attn_type = True, L.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cp.op_offload, cp.no_perf = False, True
        self.ctx = L.llama_init_from_model(self.model, cp)
        self.n_batch, self.n_vocab = n_batch, L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.batch = L.llama_batch_init(max(n_batch, PROMPT_TOKENS), 0, 1)
        self.mem = L.llama_get_memory(self.ctx)
        _engine.log_install()  # importing llama_cpp took llama.cpp's log; keep it quiet

    def prefix(self, ids: list[int]) -> None:
        self.L.llama_memory_clear(self.mem, True)
        self._decode([(t, p, 0, False) for p, t in enumerate(ids)])

    def _decode(self, rows) -> None:
        b = self.batch
        b.n_tokens = len(rows)
        for i, (t, p, s, o) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, p, 1, int(o)
            b.seq_id[i][0] = s
        assert self.L.llama_decode(self.ctx, b) == 0

    def points(self, token: int, pos: int, n: int) -> np.ndarray:
        """[n, 2]: the Yes/No logits of n points (token at pos, each in its own sequence)."""
        out = np.empty((n, 2), np.float32)
        for start in range(0, n, self.n_batch):
            k = min(self.n_batch, n - start)
            for s in range(1, k + 1):
                self.L.llama_memory_seq_cp(self.mem, 0, s, -1, -1)
            self._decode([(token, pos, s, True) for s in range(1, k + 1)])
            for i in range(k):
                row = np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
                out[start + i] = row[list(YES_NO)]
            for s in range(1, k + 1):
                self.L.llama_memory_seq_rm(self.mem, s, -1, -1)
        return out

    def close(self) -> None:
        self.L.llama_batch_free(self.batch)
        self.L.llama_free(self.ctx)
        self.L.llama_model_free(self.model)


# -- the PyTorch route --------------------------------------------------------------------------

def hf_route(s: dict, threads: int, ids: list[int], layers: list[int], strengths: list[float], v: np.ndarray,
             batch: int = 8):
    """(ms per point, note) of transformers on the shape, or (None, why not)."""
    try:
        import torch
        import transformers
    except ImportError as e:
        return None, f"transformers is not installed ({e.name})"
    torch.set_num_threads(threads)
    if s["arch"] == "qwen35":
        cls_name, kw = "Qwen3_5ForCausalLM", dict(
            hidden_size=s["n_embd"], num_hidden_layers=s["n_layer"], num_attention_heads=s["n_head"],
            num_key_value_heads=s["n_head_kv"], head_dim=s["head_dim"], intermediate_size=s["n_ff"],
            vocab_size=s["n_vocab"], linear_num_key_heads=s["ssm_groups"], linear_num_value_heads=s["ssm_heads"],
            linear_key_head_dim=s["ssm_state"], linear_value_head_dim=s["ssm_state"], linear_conv_kernel_dim=s["conv"],
            full_attention_interval=s["interval"], tie_word_embeddings=True)
        config_name = "Qwen3_5TextConfig"
    else:
        cls_name, kw = "Lfm2ForCausalLM", dict(
            hidden_size=s["n_embd"], num_hidden_layers=s["n_layer"], num_attention_heads=s["n_head"],
            num_key_value_heads=s["n_head_kv"], intermediate_size=s["n_ff"], block_ff_dim=s["n_ff"],
            block_auto_adjust_ff_dim=False, vocab_size=s["n_vocab"], conv_L_cache=s["l_cache"],
            full_attn_idxs=list(s["attention"]), tie_word_embeddings=True)
        config_name = "Lfm2Config"
    cls, config_cls = getattr(transformers, cls_name, None), getattr(transformers, config_name, None)
    if cls is None or config_cls is None:
        return None, f"transformers {transformers.__version__} has no {cls_name}"
    torch.manual_seed(0)
    model = cls(config_cls(**kw)).eval()
    blocks = model.model.layers
    vec = torch.from_numpy(v)
    scales = torch.zeros(batch)
    active = {"layer": -1}

    def hook(layer_index):
        def add(_module, _inputs, output):
            if active["layer"] != layer_index:
                return None
            hidden = output[0] if isinstance(output, tuple) else output
            hidden[:, -1] += scales[:hidden.shape[0], None] * vec
            return None
        return add

    for i, block in enumerate(blocks):
        block.register_forward_hook(hook(i))
    prompt = torch.tensor([ids])
    pts = [(L, st) for L in layers for st in strengths][:2 * batch]

    def run():
        start = time.perf_counter()
        with torch.no_grad():
            for j in range(0, len(pts), batch):
                chunk = pts[j:j + batch]
                # one forward per layer in the chunk (the hook adds at one layer per forward)
                for L in sorted({p[0] for p in chunk}):
                    rows = [p for p in chunk if p[0] == L]
                    scales[:len(rows)] = torch.tensor([st for _, st in rows])
                    active["layer"] = L
                    model(prompt.expand(len(rows), -1)).logits[:, -1, list(YES_NO)]
        return time.perf_counter() - start

    run()  # warm-up
    t = min(run() for _ in range(2))
    return 1000 * t / len(pts), f"transformers {transformers.__version__} {cls_name}, float32, batch {batch}, no cache"


# -- the measurement ----------------------------------------------------------------------------

def measure(key: str, qtype: str, args, say) -> dict:
    s = SHAPES[key]
    path = model_file(key, qtype, args.threads, say)
    rng = np.random.default_rng(0)
    ids = [int(t) for t in rng.integers(3, s["n_vocab"], PROMPT_TOKENS)]
    model = pyintro.Model.load(path, n_threads=args.threads, chat_template="raw")
    n = args.points
    v = rng.standard_normal((model.n_layer, model.n_embd)).astype(np.float32)
    v *= 0.5 / np.linalg.norm(v, axis=1, keepdims=True)
    points = [[Injection(v, i * model.n_layer // n, float(1 + i % 8))] for i in range(n)]
    plain56 = PlainBatched(path, args.threads, 56, n)
    plain512 = PlainBatched(path, args.threads, 512, n)

    def ours():
        model.points(ids, [[]], vocab_ids=list(YES_NO))  # the prefix, cached, untimed
        start = time.perf_counter()
        ours.out = model.points(ids, points, vocab_ids=list(YES_NO))
        return time.perf_counter() - start

    def theirs(plain):
        def run():
            plain.prefix(ids[:-1])
            start = time.perf_counter()
            run.out = plain.points(ids[-1], len(ids) - 1, n)
            return time.perf_counter() - start
        return run

    other = OtherLoad()
    fns = {"pyintro": ours, "llama.cpp 56": theirs(plain56), "llama.cpp 512": theirs(plain512)}
    timed = interleaved_timed(fns, args.repeats)
    other.stop()
    ms = {k: 1000 * t["median"] / n for k, t in timed.items()}
    zero = model.points(ids, [[Injection(v, 0, 0.0)]], vocab_ids=list(YES_NO))[0]
    b_ours, b_plain = float(zero[0] - zero[1]), float(fns["llama.cpp 56"].out[0, 0] - fns["llama.cpp 56"].out[0, 1])
    # memory per point sequence
    model.reset()
    model._decoder.ensure_prefix(ids[:1])
    one = model._engine.seq_state_bytes(0)
    model._decoder.ensure_prefix(ids[:2])
    per_token = model._engine.seq_state_bytes(0) - one
    model.reset()
    state = recurrent.state_bytes(path)
    unit = model.numerics()["row_unit"]
    row = {
        "shape": s["label"], "type": qtype.upper(), "quant_type": model.quant_type, "row_unit": unit,
        "points": n, "ms_point": ms, "over_llama_cpp_56": ms["pyintro"] / ms["llama.cpp 56"],
        "over_llama_cpp_512": ms["pyintro"] / ms["llama.cpp 512"], "fast_head": bool(model._decoder.head.matched.get(
            np.asarray(YES_NO, np.int32).tobytes(), False)),
        "b_uninjected_pyintro": b_ours, "b_uninjected_llama_cpp": b_plain,
        "state_bytes_per_sequence": state, "llama_cpp_state_bytes_one_token": one, "kv_bytes_per_token": per_token,
        "default_n_seq_max": model.n_seq_max, "state_reserved_gib": (model.n_seq_max + max(unit - 1, 1)) * state / GIB,
        "file_gb": path.stat().st_size / 1e9, "other_processes_cores": round(other.cores, 3),
    }
    plain56.close()
    plain512.close()
    model.close()
    if not args.no_hf:
        say(f"{s['label']}: the PyTorch route")
        row["hf_ms_point"], row["hf_note"] = hf_route(s, args.threads, ids, [0, s["n_layer"] // 2], [1.0, 4.0, 8.0, 2.0], v[0])
    return row


def table(rows: list[dict], m: dict) -> str:
    lines = [
        f"Recurrent and hybrid models, {rows[0]['points']}-point Yes/No batches (one injection at the last token "
        f"each, fast head) over a 50-token prompt whose prefix is cached, random-weight files of the real shapes; "
        f"median of the rounds in rotation ({machine_line(m)}). llama.cpp: llama-cpp-python's plain batched decode "
        "of the same points (one token per sequence per call, no hook, no padding, full logits), with pyintro's "
        "56-row calls and with llama.cpp's default 512. Target: pyintro ≤ 1.15× llama.cpp's.",
        "",
        "| model | type | pyintro ms/point | llama.cpp 56-row ms/point | × | llama.cpp 512-row ms/point | × | "
        "state per sequence | default n_seq_max (state reserved) | PyTorch route ms/point |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        hf = f"{r['hf_ms_point']:.1f} ({r['hf_note']})" if r.get("hf_ms_point") else r.get("hf_note", "not run")
        state = r["state_bytes_per_sequence"]
        state_s = f"{state / 2 ** 20:.1f} MiB" if state >= 2 ** 20 else f"{state / 1024:.0f} KiB"
        lines.append(
            f"| {r['shape']} | {r['quant_type']} | {r['ms_point']['pyintro']:.2f} | {r['ms_point']['llama.cpp 56']:.2f} | "
            f"{r['over_llama_cpp_56']:.2f} | {r['ms_point']['llama.cpp 512']:.2f} | {r['over_llama_cpp_512']:.2f} | "
            f"{state_s} | {r['default_n_seq_max']} ({r['state_reserved_gib']:.2f} GiB) | {hf} |")
    lines += ["", "Reproduce: `python bench/hybrid_speed.py --readme docs/performance.md`"]
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

    rows = []
    for key in args.shapes.split(","):
        for qtype in args.types.split(","):
            say(f"{key} {qtype}")
            rows.append(measure(key, qtype, args, say))
            say(str(rows[-1]))
        if not args.keep:
            for f in CACHE.glob(f"{key}.*.gguf"):
                f.unlink()
    m = machine()
    path = write_json("hybrid_speed", {"machine": m, "rows": rows})
    md = table(rows, m)
    (RESULTS / "hybrid_speed.md").write_text(md + "\n")
    print(md)
    print(f"\nwrote {path}")
    if args.readme:
        update_readme(args.readme, "hybrid_speed", md)


if __name__ == "__main__":
    main()
