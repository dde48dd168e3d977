"""Sweep speed on a device backend: a Yes/No sweep's points with every layer offloaded, with
part of them, and on the CPU, each with the fast head and with the full unembedding.

    python bench/device_sweep.py [--model FILE] [--gpu-layers -1,15,0] [--points 240] [--threads N]
                                 [--repeats 3] [--out FILE.json]

The workload is a sweep's: one prompt (the introspection question on the default model; 52
pseudo-random ids on another file), its prefix cached beforehand, one injection per point at
the last token (layers x strengths), two logits gathered per point (b = Yes - No). For each
placement (``n_gpu_layers``) two Models are loaded, ``fast_head=True`` and ``False``, and timed
in rotation (``_common.interleaved``), so each ratio comes from one run: fast head / full path
is what the head saves (or costs) on that graph, device / CPU what offloading gives. Also
reported per placement: ggml_backend_tensor_get/set calls per llama_decode call (the hook's
transfers, plus the fast head's copy of the final norm's rows), and whether the head is used
(it is kept only where it matched the full path on first use, ``pyintro.head``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import OtherLoad, interleaved, machine, machine_line  # noqa: E402

import pyintro  # noqa: E402
from pyintro import Injection  # noqa: E402

PROMPT_USER = "Do you detect an injected thought? Answer only by 'Yes' or 'No'."
PROMPT_SYSTEM = ("You are a large language model undergoing a test to see if you are sensitive to your "
                 "internal activations.")


def prompt_and_ids(m: pyintro.Model, default: bool) -> tuple[list[int], list[int]]:
    if default:
        return m.chat(PROMPT_USER, system=PROMPT_SYSTEM), [m.tokenize("Yes")[0], m.tokenize("No")[0]]
    rng = np.random.default_rng(52)
    return [int(t) for t in rng.integers(3, m.n_vocab, 52)], [5, 6]


def grid(m: pyintro.Model, n_points: int) -> list[list[Injection]]:
    rng = np.random.default_rng(0)
    v = rng.standard_normal(m.n_embd).astype(np.float32)
    v /= np.linalg.norm(v)
    strengths = np.linspace(0.0, 16.0, max(1, n_points // m.n_layer))
    pts = [[Injection(v, il, float(s))] for il in range(m.n_layer) for s in strengths]
    return pts[:n_points]


def run(path: Path, default: bool, gpu_layers: int, n_points: int, threads: int, repeats: int) -> dict:
    load = dict(n_threads=threads, n_ctx=2048, n_gpu_layers=gpu_layers, chat_template="auto" if default else "raw")
    fast = pyintro.Model.load(path, **load)
    full = pyintro.Model.load(path, fast_head=False, **load)
    try:
        ids, yes_no = prompt_and_ids(fast, default)
        pts = grid(fast, n_points)
        fns = {"fast head": lambda: fast.points(ids, pts, vocab_ids=yes_no),
               "full unembedding": lambda: full.points(ids, pts, vocab_ids=yes_no)}
        a, b = fns["fast head"](), fns["full unembedding"]()  # also the head's first-use check
        timed = interleaved(fns, repeats=repeats, warmup=0)
        out = {"n_gpu_layers": gpu_layers, "points": len(pts)}
        for name, m in (("fast head", fast), ("full unembedding", full)):
            m._engine.debug.transfers = 0
            m.points(ids, pts[-1:], vocab_ids=yes_no)  # one point over the cached prefix: one llama_decode call
            out[name] = {"ms_per_point": round(1000 * timed[name]["median"] / len(pts), 3),
                         "times_s": timed[name]["times"],
                         "transfers_per_call": m._engine.debug.transfers / max(1, m._engine.last_calls)}
        out["fast / full"] = round(out["fast head"]["ms_per_point"] / out["full unembedding"]["ms_per_point"], 3)
        key = np.asarray(yes_no, np.int32).tobytes()
        out["head used"] = bool(fast._decoder.head.matched.get(key, False))
        out["max |Δb| fast vs full"] = float(np.max(np.abs((a[:, 0] - a[:, 1]) - (b[:, 0] - b[:, 1]))))
        out["b"] = (a[:, 0] - a[:, 1]).tolist()
        return out
    finally:
        fast.close()
        full.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a GGUF file (default: the default model)")
    ap.add_argument("--gpu-layers", default="-1,15,0", help="n_gpu_layers values, comma-separated (0: the CPU)")
    ap.add_argument("--points", type=int, default=240)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PYINTRO_THREADS", "2")))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    path = pyintro.files.resolve_model(a.model)
    load = OtherLoad()
    rows = [run(path, a.model is None, int(g), a.points, a.threads, a.repeats) for g in a.gpu_layers.split(",")]
    cpu = next((r for r in rows if r["n_gpu_layers"] == 0), None)
    for r in rows:
        if cpu is not None and r is not cpu:
            r["device / CPU (full)"] = round(r["full unembedding"]["ms_per_point"] / cpu["full unembedding"]["ms_per_point"], 3)
            r["max |Δb| device vs CPU"] = float(np.max(np.abs(np.asarray(r["b"]) - np.asarray(cpu["b"]))))
    result = {"machine": machine(), "other_load_cores": round(load.stop(), 2), "model": path.name,
              "devices": pyintro.Model.devices(), "rows": rows}
    print(machine_line(result["machine"]))
    print(f"model {path.name}, {rows[0]['points']} points, other load {result['other_load_cores']} cores")
    print("| n_gpu_layers | fast head ms/point | full ms/point | fast/full | head used | transfers/call (fast, full) |"
          " device/CPU | max Δb fast-full | max Δb vs CPU |")
    print("|---:|---:|---:|---:|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n_gpu_layers']} | {r['fast head']['ms_per_point']} | {r['full unembedding']['ms_per_point']} | "
              f"{r['fast / full']} | {r['head used']} | "
              f"{r['fast head']['transfers_per_call']:.0f}, {r['full unembedding']['transfers_per_call']:.0f} | "
              f"{r.get('device / CPU (full)', '')} | {r['max |Δb| fast vs full']:.3g} | {r.get('max |Δb| device vs CPU', '')} |")
    if a.out:
        a.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
