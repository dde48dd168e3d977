"""Quantization effects: a ladder of quantized files, their sweep speed, and how b drifts.

    python bench/quant_effects.py [--threads 2] [--repeats 3] [--quick] [--workdir DIR] [--readme docs/performance.md]

The default model (SmolLM2-135M-Instruct Q4_1) goes to F16 and from there to Q8_0, Q6_K,
Q5_K_M, Q4_K_M, Q3_K_M and Q2_K with ``pyintro.quantize.ladder`` (llama.cpp's quantizer);
the files are cached in --workdir (default bench/results/quant, which gets a ``.gitignore``
of ``*`` so that no model file lands in git). For each file, and for the original Q4_1:
file size, the tensor types actually written (read with ``gguf.GGUFReader``), the speed of
the 960-point sweep (30 layers x 16 strengths x introspection + 1 control question), the
drift of b against F16 over those points (max and mean |Δb|, Pearson r), and the
introspection-control correlation of the sweep (``pyintro.analyze``).

The vector is the all-caps vector extracted once, from the F16 file, and injected unchanged
into every file, so the drift measures the quantized forward pass only.

SmolLM2-135M has n_embd = 576, not a multiple of 256: llama.cpp cannot use K-quants for
tensors whose rows have 576 values and falls back to other types (e.g. Q5_0, Q5_1, Q8_0,
IQ4_NL) for most of them, so the K-quant rungs are not a clean ladder.

Only the Q4_1 file is available offline, so "F16" is Q4_1 dequantized, and every rung is a
re-quantization of Q4_1's values; the Q4_1 row (the same weights as F16 up to rounding) shows the drift
that comes from the matrix kernels alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, OtherLoad, interleaved, machine, machine_line, report  # noqa: E402
from hf_reference import pearson  # noqa: E402

import pyintro  # noqa: E402
from pyintro.quantize import ladder  # noqa: E402
from pyintro.experiments.sweep import sweep  # noqa: E402
from pyintro.experiments.sweep_analysis import analyze  # noqa: E402
from pyintro.experiments.questions import INTROSPECTION  # noqa: E402

TYPES = ["f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"]
STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0)




def tensor_types(path: Path) -> dict:
    """Share of the weights (by number of values) held in each tensor type, and tensor counts."""
    import gguf

    reader = gguf.GGUFReader(path)
    values, counts = Counter(), Counter()
    for t in reader.tensors:
        name = t.tensor_type.name
        values[name] += int(t.n_elements)
        counts[name] += 1
    total = sum(values.values())
    share = {k: v / total for k, v in values.most_common()}
    return {"share_of_weights": share, "tensors": dict(counts.most_common()),
            "dominant": next(iter(share)), "n_tensors": sum(counts.values())}


def files_for(src: Path, workdir: Path, types: list[str], say) -> dict[str, Path]:
    """{TYPE: path} for the ladder, quantizing only what is not cached in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    ignore = workdir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# quantized model files written by bench/quant_effects.py: never commit them\n*\n")
    stem = src.name[: -len(".gguf")] if src.name.endswith(".gguf") else src.name
    for suffix in (".Q4_1", ".Q4_0", ".Q8_0", ".F16", ".F32"):
        stem = stem[: -len(suffix)] if stem.upper().endswith(suffix) else stem
    want = {t.upper(): workdir / f"{stem}.{t.upper()}.gguf" for t in types}
    missing = [t for t in types if not want[t.upper()].is_file()]
    if missing:
        f16 = want.get("F16", workdir / f"{stem}.F16.gguf")
        if f16.is_file():  # quantize from the cached F16 file
            ladder(f16, [t for t in missing if t != "f16"], workdir, say=say)
        else:
            ladder(src, missing, workdir, say=say)
    return want


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="3 layers x 4 strengths, 1 repeat (for debugging)")
    ap.add_argument("--workdir", type=Path, default=RESULTS / "quant", help="where the quantized files are cached")
    ap.add_argument("--readme", type=Path, help="update this file's bench:quant_effects section")
    args = ap.parse_args()
    if args.quick:
        if args.readme:
            raise SystemExit("--quick results do not go into the docs")
        args.repeats = 1
    other = OtherLoad()
    t_start = time.time()
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    src = pyintro.default_model_path()
    files = files_for(src, args.workdir, TYPES, say)
    entries = [("F16", files["F16"])] + [(t.upper(), files[t.upper()]) for t in TYPES if t != "f16"]
    entries.append(("Q4_1 (default)", src))

    ref = pyintro.Model.load(files["F16"], n_threads=args.threads)
    vec = pyintro.contrast(ref, "HI! HOW ARE YOU?", "Hi! How are you?")  # extracted from F16, used everywhere
    layers = [0, ref.n_layer // 2, ref.n_layer - 1] if args.quick else list(range(ref.n_layer))
    strengths = list(STRENGTHS[::4]) if args.quick else list(STRENGTHS)
    ref.close()
    n_points = 2 * len(layers) * len(strengths)

    models = {}
    for label, path in entries:
        say(f"loading {label}: {path.name}")
        models[label] = pyintro.Model.load(path, n_threads=args.threads)
        models[label].sha256  # hashed once per Model; the sweep records it

    def run(label, v):
        return sweep(models[label], v, layers=layers, strengths=strengths, progress=False)

    say(f"timing {len(entries)} files in rotation: a one-batch warm-up each + {args.repeats} rounds")
    # Warm-up: one batch-sized sweep per file (the same batch shapes and buffers as the full
    # sweep, at a quarter of its cost); then the files' full sweeps in rotation.
    warm_layers = layers[: max(1, min(len(layers), models["F16"].n_seq_max // len(strengths)))]
    for label, _ in entries:
        sweep(models[label], vec, layers=warm_layers, strengths=strengths,
              questions={"introspection": INTROSPECTION}, progress=False)
    rows_of = {}  # the sweep is deterministic: keep the rows of the timed runs
    timed = interleaved({label: (lambda label=label: rows_of.__setitem__(label, run(label, vec)))
                         for label, _ in entries}, args.repeats, warmup=0)

    per_file = []
    b_ref = None
    for label, path in entries:
        m = models[label]
        rows = rows_of[label]
        b = np.asarray([r["b"] for r in rows])
        if b_ref is None:
            b_ref = b
        d = np.abs(b - b_ref)
        per_file.append({
            "label": label, "file": path.name, "quant_type": m.quant_type,
            "size_mb": path.stat().st_size / 1e6, "tensor_types": tensor_types(path),
            "ms_per_point": 1000 * timed[label]["median"] / n_points, "times_s": timed[label]["times"],
            "drift_vs_f16": {"max_abs_db": float(d.max()), "mean_abs_db": float(d.mean()),
                             "pearson_r": pearson(b, b_ref)},
            "introspection_control_r": analyze(rows)["correlation"],
            "b_range": [float(b.min()), float(b.max())],
        })
    for m in models.values():
        m.close()

    other.stop()
    m_info = machine()
    result = {
        "machine": m_info, "other_processes_cores": round(other.cores, 3),
        "wall_s": round(time.time() - t_start, 1), "quick": args.quick, "source": src.name,
        "threads": args.threads, "repeats": args.repeats, "points": n_points,
        "grid": {"layers": layers, "strengths": strengths, "questions": "introspection + control (1+1=3)",
                 "positions": "last", "vector": "contrast(HI! HOW ARE YOU? vs Hi! How are you?) from F16"},
        "files": per_file,
    }
    name = "quant_effects_quick" if args.quick else "quant_effects"
    png = plot(per_file, RESULTS / f"{name}.png")

    def types_cell(f):
        share = f["tensor_types"]["share_of_weights"]
        return ", ".join(f"{k} {100 * v:.0f}%" for k, v in list(share.items())[:3])

    lines = [
        f"Quantization ladder of {src.name} (through F16, with llama.cpp's quantizer), {n_points}-point sweep "
        f"({len(layers)} layers × {len(strengths)} strengths × introspection + 1 control question, the F16 all-caps "
        f"vector at the last token), {args.threads} threads, median of {args.repeats} rounds (files timed in rotation, after "
        f"a one-batch warm-up sweep each); "
        f"{machine_line(m_info)}. "
        + other.sentence(m_info["cores"]),
        "",
        "| file | size MB | tensor types (share of weights) | ms/point | max \\|Δb\\| | mean \\|Δb\\| | r vs F16 "
        "| intro–control r |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for f in per_file:
        dr = f["drift_vs_f16"]
        lines.append(
            f"| {f['label']} | {f['size_mb']:.0f} | {types_cell(f)} | {f['ms_per_point']:.2f} | {dr['max_abs_db']:.3f} "
            f"| {dr['mean_abs_db']:.3f} | {dr['pearson_r']:.4f} | {f['introspection_control_r']:.3f} |")
    lines += [
        "",
        "Δb is b(file) − b(F16) at the same point, with the same (F16) vector in every file. "
        "intro–control r: Pearson r between the introspection and the control question's b over the grid "
        "(`pyintro.analyze`). With n_embd = 576 (not a multiple of 256) llama.cpp cannot store most "
        "tensors in K-quants and falls back to other types, so the K-quant names do not form a clean ladder: "
        "the tensor-type column shows what each file really holds. Only the Q4_1 file ships (no original "
        "F16/BF16 weights are available offline), so F16 here is Q4_1 dequantized: every rung re-quantizes "
        "Q4_1's values, and the Q4_1 row (the same weights as F16 up to F16 rounding) shows the drift from the kernels alone (Q4_1 dot products quantize activations to 8 bits).",
        "",
        f"![mean |Δb| and file size per quantization type](bench/results/{png.name})",
        "",
        "Reproduce: `python bench/quant_effects.py --readme docs/performance.md`",
    ]
    table = "\n".join(lines)
    report(name, result, table, args.readme, "quant_effects", extra=[png])


def plot(per_file: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(per_file, key=lambda f: -f["size_mb"])
    x = np.arange(len(rows))
    labels = [f"{f['label'].replace(' (default)', '*')}\n({f['tensor_types']['dominant']})" for f in rows]
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    mean_db = [f["drift_vs_f16"]["mean_abs_db"] for f in rows]
    max_db = [f["drift_vs_f16"]["max_abs_db"] for f in rows]
    ax.bar(x, mean_db, color="tab:blue", width=0.6, label="mean |Δb| vs F16")
    ax.plot(x, max_db, "v", color="tab:blue", markersize=7, label="max |Δb| vs F16")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_ylabel("|Δb| over the sweep grid (logits)")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlabel("file (dominant tensor type by weights); * = the default model")
    ax2 = ax.twinx()
    ax2.plot(x, [f["size_mb"] for f in rows], "o-", color="tab:orange", label="file size")
    ax2.set_ylabel("file size (MB)", color="tab:orange")
    ax2.set_ylim(0, max(f["size_mb"] for f in rows) * 1.1)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8, frameon=False)
    ax.set_title("SmolLM2-135M-Instruct: drift of b = logit(Yes) − logit(No) against F16, and file size", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    main()
