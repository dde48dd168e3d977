"""Capture speed: mean-difference concept vectors at every layer vs. a plain decode and transformers.

    python bench/capture_speed.py [--threads 2] [--repeats 3] [--quick] [--readme docs/performance.md]

``pyintro.mean_difference(m, CONCEPT_WORDS, baseline=BASELINE_WORDS)``: 50 concepts and 100
baseline words, "Tell me about {word}" in the chat template, all layers at the last token,
150 prompts in batched decodes (``Model.capture_many``). Compared with:

  (a) Hugging Face transformers on the same GGUF (dequantized to float32), the same token ids,
      ``output_hidden_states=True``, batched (left-padded), last token taken;
  (b) the limit: the same batches decoded in a context without pyintro's eval callback, with the
      same output rows and the same logits copied out, and nothing captured.

Target: capture <= 1.2 x plain decode.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import OtherLoad, interleaved, machine, machine_line, report  # noqa: E402
from hf_reference import HFModel  # noqa: E402

import pyintro  # noqa: E402
from pyintro.model import Settings  # noqa: E402
from pyintro import BASELINE_WORDS, CONCEPT_WORDS  # noqa: E402
from pyintro.decode import plan_batches  # noqa: E402

TEMPLATE = "Tell me about {}"  # mean_difference's default
TARGET = 1.2


def plain_decode(model, prompts: list[list[int]], groups: list[list[int]]) -> None:
    """The decodes ``capture_many`` makes (same tokens, positions, sequences, output rows and
    full logits rows copied out), without capture."""
    eng = model._engine
    none = np.zeros(0, np.int32)
    eng.seq_rm(-1, 0, -1)
    for group in groups:
        tokens = np.concatenate([np.asarray(prompts[g], np.int32) for g in group])
        pos = np.concatenate([np.arange(len(prompts[g]), dtype=np.int32) for g in group])
        seq = np.concatenate([np.full(len(prompts[g]), j, np.int32) for j, g in enumerate(group)])
        ends = np.cumsum([len(prompts[g]) for g in group]) - 1
        out = np.zeros(len(tokens), np.uint8)
        out[ends] = 1
        eng.decode(tokens, pos, seq, out, [], none, none, none)
        eng.seq_rm(-1, 0, -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="5 concepts, 10 baseline words, 1 repeat (for debugging)")
    ap.add_argument("--readme", type=Path, help="update this file's bench:capture_speed section")
    ap.add_argument("--hf-batch", type=int, default=50, help="prompts per transformers forward")
    args = ap.parse_args()
    if args.quick:
        if args.readme:
            raise SystemExit("--quick results do not go into the docs")
        args.repeats = 1
    concepts = list(CONCEPT_WORDS[:5] if args.quick else CONCEPT_WORDS)
    baseline = list(BASELINE_WORDS[:10] if args.quick else BASELINE_WORDS)
    other = OtherLoad()
    t_start = time.time()
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    hooked = pyintro.Model.load(n_threads=args.threads)
    plain = pyintro.Model.load(n_threads=args.threads, settings=Settings(eval_callback=False))
    hooked.sha256  # hashed once per Model; ConceptVector records it (not part of the timing)
    texts = [hooked.chat_text(TEMPLATE.format(w)) for w in concepts + baseline]
    prompts = [hooked.tokenize(t) for t in texts]
    n = len(prompts)
    groups = plan_batches([len(p) for p in prompts], hooked.n_seq_max, hooked.n_ctx - 2 * hooked.n_batch)
    n_tokens = sum(len(p) for p in prompts)

    vectors, acts, hs = {}, {}, {}

    def extract():
        vectors.update(pyintro.mean_difference(hooked, concepts, baseline=baseline))

    def capture():
        acts["x"] = hooked.capture_many(prompts)

    say("loading the GGUF in transformers (float32)")
    hf = HFModel(hooked.path, args.threads)
    hf_batches = [list(range(i, min(n, i + args.hf_batch))) for i in range(0, n, args.hf_batch)]

    def hf_run():
        hs["x"] = np.concatenate([hf.hidden_last([prompts[i] for i in b]) for b in hf_batches])

    say(f"timing 4 variants in rotation: 1 warm-up round + {args.repeats} rounds")
    timed = interleaved({
        "mean_difference": extract,
        "capture_many": capture,
        "plain_decode": lambda: plain_decode(plain, prompts, groups),
        "hf_output_hidden_states": hf_run,
    }, args.repeats)
    plain.close()

    # The same mean-difference vectors from transformers' hidden states, compared per layer.
    x = hs["x"].astype(np.float64)  # [n, n_layer, n_embd]
    hf_vecs = x[: len(concepts)] - x[len(concepts):].mean(0)
    ours = np.stack([vectors[c].directions for c in concepts]).astype(np.float64)
    cos = (ours * hf_vecs).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(hf_vecs, axis=-1))
    # capture_many vs mean_difference's own capture: the vectors must be rebuilt exactly.
    base = acts["x"][len(concepts):].astype(np.float64).mean(0)
    rebuilt = np.abs(acts["x"][: len(concepts)].astype(np.float64) - base - ours).max()

    ms = {
        k: 1000 * v["median"] / n for k, v in timed.items()
    }
    r_capture = ms["capture_many"] / ms["plain_decode"]
    r_extract = ms["mean_difference"] / ms["plain_decode"]
    r_hf = ms["hf_output_hidden_states"] / ms["mean_difference"]
    other.stop()
    pf = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    m_info = machine()
    result = {
        "machine": m_info,
        "other_processes_cores": round(other.cores, 3),
        "wall_s": round(time.time() - t_start, 1),
        "quick": args.quick,
        "model": hooked.path.name,
        "threads": args.threads,
        "repeats": args.repeats,
        "prompts": n,
        "concepts": len(concepts),
        "baseline_words": len(baseline),
        "template": TEMPLATE,
        "tokens": n_tokens,
        "layers_captured": hooked.n_layer,
        "pyintro_decodes": len(groups),
        "prompts_per_decode": [len(g) for g in groups],
        "hf_batch": args.hf_batch,
        "ms_per_prompt": ms,
        "times_s": {k: v["times"] for k, v in timed.items()},
        "capture_over_plain": r_capture,
        "mean_difference_over_plain": r_extract,
        "hf_over_mean_difference": r_hf,
        "cosine_pyintro_vs_hf_vectors": {"mean": float(cos.mean()), "min": float(cos.min()),
                                         "per_layer_mean": [float(c) for c in cos.mean(0)]},
        "capture_many_rebuilds_mean_difference_max_abs": float(rebuilt),
        "target_capture_over_plain_max": TARGET,
        "pass": {"capture_over_plain": r_capture <= TARGET, "mean_difference_over_plain": r_extract <= TARGET},
    }

    table = "\n".join([
        f"Mean-difference vectors for {len(concepts)} concepts over {len(baseline)} baseline words: {n} prompts "
        f"(\"{TEMPLATE}\" in the chat template, {n_tokens} tokens), every layer ({hooked.n_layer}) at the last "
        f"token; {hooked.path.name}, {args.threads} threads, median of {args.repeats} rounds after a warm-up round "
        f"(all variants timed in rotation); "
        f"{machine_line(m_info)}. " + other.sentence(m_info["cores"]),
        "",
        "| | ms/prompt | ratio |",
        "|---|---:|---:|",
        f"| limit: the same {len(groups)} batched decode(s), no callback, nothing captured "
        f"| {ms['plain_decode']:.2f} | 1.00 × limit |",
        f"| pyintro `capture_many` (token ids in, [{n}, {hooked.n_layer}, {hooked.n_embd}] out) "
        f"| {ms['capture_many']:.2f} | {r_capture:.2f} × limit (target ≤ {TARGET}: {pf(r_capture <= TARGET)}) |",
        f"| pyintro `mean_difference` (chat template, tokenize, capture, means, ConceptVectors) "
        f"| {ms['mean_difference']:.2f} | {r_extract:.2f} × limit ({pf(r_extract <= TARGET)}) |",
        f"| HF transformers (float32), `output_hidden_states=True`, {args.hf_batch} prompts per forward, "
        f"left-padded | {ms['hf_output_hidden_states']:.2f} | {r_hf:.1f} × `mean_difference` |",
        "",
        f"The vectors from transformers' hidden states point the same way as pyintro's: cosine similarity "
        f"{cos.mean():.4f} on average over concepts and layers (lowest {cos.min():.4f}; Q4_1 kernels vs "
        "dequantized float32).",
        "",
        "Reproduce: `python bench/capture_speed.py --readme docs/performance.md`",
    ])
    report("capture_speed_quick" if args.quick else "capture_speed", result, table, args.readme, "capture_speed")


if __name__ == "__main__":
    main()
