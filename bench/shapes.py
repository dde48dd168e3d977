"""The sizes users run: pyintro and the plain-PyTorch route on Llama-3.2-1B- and Llama-3-8B-shaped models.

    python bench/shapes.py [--threads 2] [--repeats 3] [--shapes llama-3.2-1b,llama-3-8b]
                           [--types q4_k_m,q8_0] [--points N] [--cache-dir DIR] [--keep] [--quick]
                           [--readme docs/performance.md]

No such model ships offline, so the files are written here: random weights (uniform, std 0.02;
norms 1) with the exact tensor shapes of

  - Llama-3.2-1B: n_embd 2048, 16 layers, 32 heads / 8 KV heads, n_ff 8192, vocabulary 128256,
    output tied to the token embedding;
  - Llama-3-8B: n_embd 4096, 32 layers, 32 / 8 heads, n_ff 14336, vocabulary 128256, own output;

written directly as Q8_0 with the ``gguf`` package (random int8 blocks under one scale: uniform
weights of std 0.02; streamed tensor by tensor; a minimal SentencePiece-style vocabulary of the
right size), then requantized to the other types with ``pyintro.quantize.quantize`` (llama.cpp's
quantizer, which picks each tensor's type from its name and shape alone, so Q4_K_M gets
llama.cpp's own Q4_K/Q6_K mix). Files go to --cache-dir (default bench/results/shapes/, which
gets a ``.gitignore`` of ``*``) and are deleted once measured unless --keep: Q8_0 1.3 GB (1B) /
8.5 GB (8B), Q4_K_M 0.8 / 4.9 GB; at most one shape's Q8_0 and one other file on disk at a time.
Speed does not depend on the weights' values, so random weights measure what the real models
cost (attention over a ~50-token prompt is a small share either way).

Per (shape, type), every variant timed in rotation (``_common.interleaved``):

  - pyintro ms/point of a Yes/No sweep-like workload: ``Model.points`` over a 50-token prompt,
    one injection at the last token per point (layers and strengths vary over the points),
    ``vocab_ids`` of 2 ids (b = logit difference), the prompt's prefix cached beforehand, untimed
    (a sweep decodes it once per question, and pyintro keeps it between calls);
  - prefill tokens/s: pyintro's ``Model.points(ids, [[]], rows=[0, n - 1])`` (nothing shared) on a longer
    prompt with no injection (and transformers' forward of the same prompt, batch 1, last logits), with the default batch-invariant settings (56-row llama.cpp calls) and with
    ``batch_invariant=False`` (512-row calls; a second Model, whose repacked weights are a second
    copy: when two copies would not fit beside the PyTorch model, it is timed after the others);
  - the plain-PyTorch route (``hf_reference.HFModel.prefix_cached_points``): transformers on the
    same GGUF dequantized to float32, the prefix in a KV cache, the points as rows of batched
    last-token forwards with per-row forward hooks, only the Yes/No logits computed (the prefix
    cache made untimed beforehand, like pyintro's); its ms/point,
    the RSS it takes (float32 weights plus the peak during the points) and the Pearson r of its b
    with pyintro's. Before loading, the float32 size is computed from the shape: when it (plus a
    margin for transformers' dequantization) would not fit in the machine's available memory, the
    row says "does not fit in N GiB" and the model is not loaded.

The 8B shape is slow on a laptop-class CPU (16 GFLOP per point): give it fewer --points if needed.
The markdown table is printed and written to bench/results/shapes.md.

--quick: the 1B shape, Q8_0, 24 points, 1 round, a 64-token prefill; it also checks that the
prefix-cached route gives the b of HF's one-point-per-forward route on 2 points.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import (RESULTS, OtherLoad, interleaved, machine, machine_line, meminfo,  # noqa: E402
                     stopwatch, report)
from hf_reference import HFModel, PeakRSS, pearson, rss_mb  # noqa: E402

import pyintro  # noqa: E402
from pyintro import Injection  # noqa: E402
from pyintro.quantize import quantize  # noqa: E402

SHAPES = {
    "llama-3.2-1b": {"label": "Llama-3.2-1B", "n_embd": 2048, "n_layer": 16, "n_head": 32, "n_head_kv": 8,
                     "n_ff": 8192, "n_vocab": 128256, "tied": True},
    "llama-3-8b": {"label": "Llama-3-8B", "n_embd": 4096, "n_layer": 32, "n_head": 32, "n_head_kv": 8,
                   "n_ff": 14336, "n_vocab": 128256, "tied": False},
}
DEFAULT_CACHE = RESULTS / "shapes"
STRENGTHS = (1.0, 2.0, 4.0, 8.0, 16.0)
PROMPT_TOKENS = 50
TARGET_OVER_PYINTRO = 2.0  # issue 18: pyintro >= 2x faster per point than the PyTorch route, or runs where it does not fit
YES_NO = (1000, 2000)  # any two ids: b = logit[yes] - logit[no]
GB = 1e9  # files
GIB = 2 ** 30  # memory
HF_MARGIN = 1.25  # transformers' peak while loading, over the float32 weights (plus 1 GiB)


# -- the files ----------------------------------------------------------------------------------

def tensor_shapes(shape: dict) -> list[tuple[str, tuple[int, ...]]]:
    """(name, numpy shape) of every tensor of a llama-architecture GGUF of this shape, in file order
    (numpy shapes are ggml's ne reversed: [rows, columns])."""
    d, ff, v = shape["n_embd"], shape["n_ff"], shape["n_vocab"]
    kv = d // shape["n_head"] * shape["n_head_kv"]
    out = [("token_embd.weight", (v, d))]
    for i in range(shape["n_layer"]):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (d,)), (b + "attn_q.weight", (d, d)), (b + "attn_k.weight", (kv, d)),
                (b + "attn_v.weight", (kv, d)), (b + "attn_output.weight", (d, d)), (b + "ffn_norm.weight", (d,)),
                (b + "ffn_gate.weight", (ff, d)), (b + "ffn_up.weight", (ff, d)), (b + "ffn_down.weight", (d, ff))]
    out.append(("output_norm.weight", (d,)))
    if not shape["tied"]:
        out.append(("output.weight", (v, d)))
    return out


def n_params(shape: dict) -> int:
    return sum(int(np.prod(s)) for _, s in tensor_shapes(shape))


def float32_bytes(shape: dict) -> int:
    """What transformers holds after dequantizing the file to float32 (a tied output counted once)."""
    return 4 * n_params(shape)


def write_random_q8_0(path: Path, shape: dict, seed: int = 0) -> Path:
    """A llama-architecture GGUF of ``shape`` whose matrices are Q8_0 blocks of random int8 under
    one scale (uniform weights of std 0.02) and whose norms are F32 ones, written tensor by tensor
    (memory: one chunk of rows at a time), atomically."""
    import gguf

    d, v = shape["n_embd"], shape["n_vocab"]
    q8 = gguf.GGMLQuantizationType.Q8_0
    block, block_bytes = gguf.GGML_QUANT_SIZES[q8]  # 32 weights in 34 bytes: f16 scale, 32 int8
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(f"random {shape['label']}-shaped")
    w.add_context_length(8192)
    w.add_embedding_length(d)
    w.add_block_count(shape["n_layer"])
    w.add_feed_forward_length(shape["n_ff"])
    w.add_head_count(shape["n_head"])
    w.add_head_count_kv(shape["n_head_kv"])
    w.add_rope_dimension_count(d // shape["n_head"])
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(v)
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q8_0))
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(v - 3)])
    w.add_token_scores([0.0] * v)
    w.add_token_types([2, 3, 3] + [1] * (v - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    shapes = tensor_shapes(shape)
    for tname, s in shapes:
        if len(s) == 1:
            w.add_tensor_info(tname, s, np.dtype(np.float32), int(np.prod(s)) * 4)
        else:
            row_bytes = s[1] // block * block_bytes
            w.add_tensor_info(tname, (s[0], row_bytes), np.dtype(np.uint8), s[0] * row_bytes, raw_dtype=q8)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    scale = np.frombuffer(np.float16(0.02 * np.sqrt(3.0) / 127).tobytes(), np.uint8)  # int8 in -127..127
    for tname, s in shapes:
        if len(s) == 1:
            w.write_tensor_data(np.ones(s, np.float32))
            continue
        rows, n_blocks = s[0], s[1] // block
        arr = np.empty((rows, n_blocks, block_bytes), np.uint8)
        step = max(1, (1 << 26) // (n_blocks * block_bytes))  # ~64 MB of rows at a time
        for r in range(0, rows, step):
            part = arr[r:r + step]
            part[..., :2] = scale
            q = rng.integers(-127, 128, size=part[..., 2:].shape, dtype=np.int8)
            part[..., 2:] = q.view(np.uint8)
        w.write_tensor_data(arr.reshape(rows, n_blocks * block_bytes))
        del arr
    w.close()
    os.replace(tmp, path)
    return path


def model_file(key: str, qtype: str, cache: Path, threads: int, say) -> Path:
    """The file of ``key`` in ``qtype`` (a pyintro.quantize type) in ``cache``, made if missing: Q8_0
    written directly, other types requantized from it."""
    cache.mkdir(parents=True, exist_ok=True)
    ignore = cache / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# random-weight model files written by bench/shapes.py: never commit them\n*\n")
    src = cache / f"{key}.Q8_0.gguf"
    if not src.exists():
        say(f"writing {src} (random Q8_0 weights, {n_params(SHAPES[key]) * 34 / 32 / GB:.1f} GB)")
        t = time.time()
        write_random_q8_0(src, SHAPES[key])
        say(f"  {time.time() - t:.0f} s")
    if qtype.lower() == "q8_0":
        return src
    dst = cache / f"{key}.{qtype.upper()}.gguf"
    if not dst.exists():
        say(f"quantizing to {dst}")
        t = time.time()
        quantize(src, dst, qtype, threads=threads)
        say(f"  {time.time() - t:.0f} s")
    return dst


# -- the workload -------------------------------------------------------------------------------

def workload(shape: dict, n_points: int, prefill_tokens: int, seed: int = 0):
    """(prompt ids, prefill ids, directions [n_layer, n_embd] of unit rows, points [(layer, strength)])."""
    rng = np.random.default_rng(seed)
    v, L = shape["n_vocab"], shape["n_layer"]
    prompt = [1] + [int(t) for t in rng.integers(3, v, PROMPT_TOKENS - 1)]
    prefill = [1] + [int(t) for t in rng.integers(3, v, prefill_tokens - 1)]
    dirs = rng.standard_normal((L, shape["n_embd"])).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    layers = np.linspace(0, L - 1, L).astype(int)
    points = [(int(layers[i % L]), float(STRENGTHS[(i // L) % len(STRENGTHS)])) for i in range(n_points)]
    return prompt, prefill, dirs, points


def measure(key: str, qtype: str, path: Path, args, say) -> dict:
    shape = SHAPES[key]
    prompt, prefill, dirs, points = workload(shape, args.points, args.prefill_tokens)
    yes, no = YES_NO
    file_bytes = path.stat().st_size
    row = {"shape": key, "label": shape["label"], "type": qtype.upper(), "file": path.name,
           "file_gb": file_bytes / GB, "n_params": n_params(shape), "points": len(points),
           "prompt_tokens": len(prompt), "prefill_tokens": len(prefill)}
    load = lambda **kw: pyintro.Model.load(path, n_threads=args.threads, chat_template="raw", **kw)  # noqa: E731
    injections = [[Injection(dirs, L, s)] for L, s in points]

    def points_fn(m):
        # The prefix is decoded untimed first (the prefill variant, decoding from the start,
        # drops it): ms/point is a sweep's cost once its question's prefix is cached.
        def run():
            m.points(prompt, [[]], vocab_ids=[yes, no])
            start = time.perf_counter()
            got = m.points(prompt, injections, vocab_ids=[yes, no])
            run.b = (got[:, 0] - got[:, 1]).astype(np.float64)
            return time.perf_counter() - start
        return run

    def prefill_fn(m):
        # rows from 0: nothing is shared, the whole prompt is decoded from the start
        return lambda: stopwatch(m.points, prefill, [[]], vocab_ids=[yes], rows=[0, len(prefill) - 1])

    rss0 = rss_mb()
    model = load()
    row["pyintro_quant_type"] = model.quant_type
    say(f"{shape['label']} {qtype.upper()}: pyintro first run")
    run_points = points_fn(model)
    with PeakRSS() as mem_py:
        run_points()
        prefill_fn(model)()
    b_py = run_points.b
    row["pyintro_rss_mb"] = {"before_load": rss0, "peak_first_run": mem_py.peak}
    row["pyintro_rss_gib_peak"] = (mem_py.peak - rss0) / 1024
    fns = {"pyintro_points": run_points, "pyintro_prefill": prefill_fn(model)}
    # A batch_invariant=False Model for the 512-row prefill: in the rotation when a second copy
    # of the weights (llama.cpp repacks them into its own buffers) fits beside the rest, else
    # timed on its own after the others.
    wide_in_rotation = 2.5 * file_bytes < meminfo()["available"] - 1.1 * float32_bytes(shape) * (not args.no_hf)
    if wide_in_rotation:
        wide = load(batch_invariant=False)
        fns["pyintro_prefill_512"] = prefill_fn(wide)

    # -- the plain-PyTorch route, when float32 fits ----------------------------------------------
    f32 = float32_bytes(shape)
    mem = meminfo()
    row["float32_gib"] = f32 / GIB
    row["ram_gib"] = mem["total"] / GIB
    hf = None
    if args.no_hf:
        row["hf"] = {"skipped": "--no-hf"}
    elif not f32 * HF_MARGIN + GIB < mem["available"]:
        row["hf"] = {"does_not_fit": True, "float32_gib": f32 / GIB, "available_gib": mem["available"] / GIB,
                     "ram_gib": mem["total"] / GIB}
        say(f"  float32 weights {f32 / GIB:.1f} GiB (x{HF_MARGIN} + 1 GiB to load) do not fit in the "
            f"{mem['available'] / GIB:.1f} GiB available: no PyTorch run")
    else:
        say(f"  loading in transformers (float32, {f32 / GIB:.1f} GiB)")
        rss_before = rss_mb()
        t = time.time()
        with PeakRSS() as mem_load:
            hf = HFModel(path, args.threads)
        load_s = time.time() - t
        rss_loaded = rss_mb()
        hf_kw = {"batch": args.hf_batch}

        def run_hf():
            cache = hf.prefix_cache(prompt[:-1])  # once per question in a sweep; untimed, as pyintro's
            start = time.perf_counter()
            run_hf.b = hf.prefix_cached_points(prompt, dirs, points, [yes], [no], cache=cache, **hf_kw)
            return time.perf_counter() - start

        with PeakRSS() as mem_hf:
            run_hf()
        b_hf = run_hf.b
        row["hf"] = {"load_s": round(load_s, 1), "batch": args.hf_batch,
                     "rss_mb": {"before_load": rss_before, "after_load": rss_loaded, "peak_load": mem_load.peak,
                                "peak_points": mem_hf.peak},
                     "rss_gib_weights": (rss_loaded - rss_before) / 1024, "rss_gib_peak": (mem_hf.peak - rss_before) / 1024,
                     "rss_gib_peak_load": (mem_load.peak - rss_before) / 1024,
                     "pearson_b_vs_pyintro": pearson(b_hf, b_py),
                     "mean_abs_b_diff_vs_pyintro": float(np.mean(np.abs(b_hf - b_py)))}
        if args.check:
            pts = points[:: max(1, len(points) // args.check)][: args.check]
            ref = []
            for L, s in pts:
                lg = hf.last_logits([prompt], {L: (s * dirs[L])[None, :]})[0]
                ref.append(float(lg[yes]) - float(lg[no]))
            mine = hf.prefix_cached_points(prompt, dirs, pts, [yes], [no], **hf_kw)
            diff = float(np.max(np.abs(mine - np.asarray(ref))))
            row["hf"]["max_abs_b_diff_prefix_cached_vs_one_per_forward"] = diff
            say(f"  prefix-cached vs one point per forward, {len(pts)} points: max |Δb| {diff:.2e}")
            assert diff < 1e-3, f"the prefix-cached route's b differs from one point per forward by {diff}"
        fns["hf_prefix_cached"] = run_hf
        fns["hf_prefill"] = lambda: stopwatch(hf.last_logits, [prefill])

    say(f"  timing {len(fns)} variants in rotation: 1 warm-up round + {args.repeats} rounds")
    timed = interleaved(fns, args.repeats, self_timed=True)
    model.close()
    if hf is not None:
        del hf
    gc.collect()
    if not wide_in_rotation:
        say("  512-row prefill on its own (a second copy of the weights would not fit beside the others)")
        wide = load(batch_invariant=False)
        timed.update(interleaved({"pyintro_prefill_512": prefill_fn(wide)}, args.repeats, self_timed=True))
    wide.close()
    gc.collect()
    t = {k: v["median"] for k, v in timed.items()}
    row["times_s"] = {k: v["times"] for k, v in timed.items()}
    row["prefill_512_in_rotation"] = wide_in_rotation
    row["pyintro_ms_per_point"] = 1000 * t["pyintro_points"] / len(points)
    row["pyintro_prefill_tok_s"] = len(prefill) / t["pyintro_prefill"]
    row["pyintro_prefill_512_tok_s"] = len(prefill) / t["pyintro_prefill_512"]
    if "hf_prefix_cached" in t:
        row["hf"]["ms_per_point"] = 1000 * t["hf_prefix_cached"] / len(points)
        row["hf"]["over_pyintro"] = row["hf"]["ms_per_point"] / row["pyintro_ms_per_point"]
        row["hf"]["prefill_tok_s"] = len(prefill) / t["hf_prefill"]
        row["pass"] = row["hf"]["over_pyintro"] >= TARGET_OVER_PYINTRO
    else:
        row["pass"] = bool(row["hf"].get("does_not_fit"))  # running where PyTorch does not fit
    return row


# -- report -------------------------------------------------------------------------------------

def table(rows: list[dict], args, m_info: dict, other: OtherLoad) -> str:
    lines = [
        f"Random-weight models with the shapes of Llama-3.2-1B and Llama-3-8B (Q8_0 written directly, other types by llama.cpp's quantizer from it); "
        f"{rows[0]['points'] if rows else 0} points per round over a {PROMPT_TOKENS}-token prompt (one injection at the "
        f"last token, Yes/No logits), prefill of {args.prefill_tokens} tokens; {args.threads} threads, median of "
        f"{args.repeats} rounds after a warm-up round (variants timed in rotation); {machine_line(m_info)}. "
        + other.sentence(m_info["cores"]),
        "",
        "| shape | type | file GB | pyintro ms/point | pyintro RSS GiB | prefill tok/s (56-row calls) "
        "| prefill tok/s (512-row) | PyTorch f32 prefix-cached ms/point | PyTorch / pyintro | PyTorch prefill tok/s "
        "| PyTorch RSS GiB (loaded / peak) | r(b) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        hf = r["hf"]
        if "ms_per_point" in hf:
            cols = (f"{hf['ms_per_point']:.1f} | **{hf['over_pyintro']:.1f}×** ({'PASS' if r['pass'] else 'MISS'}) "
                    f"| {hf['prefill_tok_s']:.1f} | {hf['rss_gib_weights']:.1f} / {hf['rss_gib_peak']:.1f} "
                    f"| {hf['pearson_b_vs_pyintro']:.3f}")
        elif hf.get("does_not_fit"):
            cols = (f"does not fit in {hf['ram_gib']:.0f} GiB (float32 weights {hf['float32_gib']:.0f} GiB) "
                    "| pyintro runs (PASS) | | | ")
        else:
            cols = "not run | | | | "
        lines.append(f"| {r['label']} | {r['type']} | {r['file_gb']:.2f} | {r['pyintro_ms_per_point']:.1f} "
                     f"| {r['pyintro_rss_gib_peak']:.1f} | {r['pyintro_prefill_tok_s']:.1f} "
                     f"| {r['pyintro_prefill_512_tok_s']:.1f}{'' if r['prefill_512_in_rotation'] else ' (¹)'} | {cols} |")
    lines += [
        "",
        "pyintro: `Model.points` with `vocab_ids` of 2 ids (the default batch-invariant settings: 56-row llama.cpp "
        "calls, flash attention), the prompt's prefix already cached (as in a sweep, where it is decoded once per "
        "question); its RSS: the process's growth from before loading to the peak of the first run. Prefill: one "
        "prompt with no injection, decoded from the start (512-row: `batch_invariant=False`). PyTorch: transformers "
        "on the same GGUF dequantized to float32, the prompt prefix decoded once into a KV cache (untimed, like "
        f"pyintro's), then {args.hf_batch} points per forward as rows over that cache, per-row forward hooks, only the "
        "Yes/No logits computed (`bench/hf_reference.py`, `HFModel.prefix_cached_points`); its RSS: the process's "
        "growth from before transformers loaded the model (after loading, and at the peak during the points). "
        "r(b): Pearson r of PyTorch's b with pyintro's over the points (different numerics: quantized kernels vs "
        "dequantized float32)."
        + ("" if all(r["prefill_512_in_rotation"] for r in rows) else
           " (¹) timed on its own after the other variants: a second copy of the weights did not fit beside them."),
        "",
        "Target: pyintro ≥ 2× faster per point than the PyTorch route, or running where it does not fit.",
        "",
        "Reproduce: `python bench/shapes.py"
        + (f" --points {args.points}" if args.points != 224 else "") + " --readme docs/performance.md`",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, from {', '.join(SHAPES)}")
    ap.add_argument("--types", default="q4_k_m,q8_0", help="comma-separated pyintro.quantize types")
    ap.add_argument("--points", type=int, default=224, help="points per timed round")
    ap.add_argument("--prefill-tokens", type=int, default=256)
    ap.add_argument("--hf-batch", type=int, default=64, help="points per PyTorch forward")
    ap.add_argument("--check", type=int, default=0,
                    help="check the prefix-cached route against one point per forward on this many points")
    ap.add_argument("--no-hf", action="store_true", help="skip the PyTorch route")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--keep", action="store_true", help="keep the model files (default: delete each once measured)")
    ap.add_argument("--quick", action="store_true", help="1B shape, Q8_0, 24 points, 1 round (for debugging)")
    ap.add_argument("--readme", type=Path, help="update this file's bench:shapes section")
    ap.add_argument("--name", default="shapes", help="results file name in bench/results/ (default: shapes)")
    args = ap.parse_args()
    if args.quick:
        if args.readme:
            raise SystemExit("--quick results do not go into the docs")
        args.shapes, args.types, args.repeats = "llama-3.2-1b", "q8_0", 1
        args.points, args.prefill_tokens, args.hf_batch = 24, 64, 24
        args.check = args.check or 2
    keys = [k.strip() for k in args.shapes.split(",") if k.strip()]
    bad = [k for k in keys if k not in SHAPES]
    if bad:
        raise SystemExit(f"unknown shape {bad[0]!r}; choose from {', '.join(SHAPES)}")
    types = [t.strip().lower() for t in args.types.split(",") if t.strip()]
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if not args.no_hf:  # imported before any RSS is read, so that no row's RSS counts the libraries
        import torch  # noqa: F401
        import transformers  # noqa: F401
    other = OtherLoad()
    t_start = time.time()
    rows = []
    order = sorted(types, key=lambda t: t == "q8_0")  # Q8_0, the others' source, measured last
    for key in keys:
        made = []
        try:
            for qtype in order:
                path = model_file(key, qtype, args.cache_dir, args.threads, say)
                made.append(path)
                rows.append(measure(key, qtype, path, args, say))
                if not args.keep and path.name != f"{key}.Q8_0.gguf":
                    path.unlink()
        finally:
            if not args.keep:
                for f in [args.cache_dir / f"{key}.Q8_0.gguf"] + made:
                    f.unlink(missing_ok=True)
    other.stop()
    m_info = machine()
    result = {"machine": m_info, "other_processes_cores": round(other.cores, 3),
              "wall_s": round(time.time() - t_start, 1), "quick": args.quick, "threads": args.threads,
              "repeats": args.repeats, "shapes": {k: SHAPES[k] for k in keys}, "strengths": STRENGTHS,
              "yes_no_ids": YES_NO, "rows": rows}
    md = table(rows, args, m_info, other)
    report(args.name + ("_quick" if args.quick else ""), result, md,
           args.readme, "shapes", md=True)


if __name__ == "__main__":
    main()
