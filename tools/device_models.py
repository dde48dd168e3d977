"""Random-weight GGUF files with real models' shapes, for the device checks on a machine where
the default model is not installed (a lent GPU machine has no network and carries no 89 MiB
file):

    python tools/device_models.py OUT_DIR [--shapes smollm2-135m,llama-3.2-1b] [--types q4_1]

Each shape is written as Q8_0 with random int8 blocks (bench/shapes.py's writer: uniform weights
of std 0.02, norms 1, a SentencePiece-style vocabulary of the right size), then requantized with
llama.cpp's own quantizer to each --types entry (q8_0: the written file as is). Prints one path
per line. SmolLM2-135M's shape is the default model's (n_embd 576, 30 layers, 9/3 heads, n_ff
1536, 49152 tokens, tied output); Q4_1 is its type. "mini" keeps that layout at n_embd 128, 8 layers,
2048 tokens, for software devices (lavapipe).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

SMOLLM2 = {"label": "SmolLM2-135M", "n_embd": 576, "n_layer": 30, "n_head": 9, "n_head_kv": 3, "n_ff": 1536,
           "n_vocab": 49152, "tied": True}
# A small llama for a software device (lavapipe runs the default model at ~50 s per decode on a
# busy 2-core machine): the default model's layout and types at a fraction of its size.
MINI = {"label": "mini-llama", "n_embd": 128, "n_layer": 8, "n_head": 4, "n_head_kv": 2, "n_ff": 384,
        "n_vocab": 2048, "tied": True}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--shapes", default="smollm2-135m")
    ap.add_argument("--types", default="q4_1")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    from shapes import SHAPES, write_random_q8_0  # bench/shapes.py (imports pyintro)

    from pyintro.quantize import quantize

    shapes = dict(SHAPES, **{"smollm2-135m": SMOLLM2, "mini": MINI})
    a.out.mkdir(parents=True, exist_ok=True)
    for key in a.shapes.split(","):
        if key not in shapes:
            raise SystemExit(f"unknown shape {key!r}; choose from {', '.join(shapes)}")
        src = a.out / f"{key}.Q8_0.gguf"
        if not src.exists():
            write_random_q8_0(src, shapes[key])
        for qtype in a.types.split(","):
            if qtype.lower() == "q8_0":
                print(src)
                continue
            dst = a.out / f"{key}.{qtype.upper()}.gguf"
            if not dst.exists():
                quantize(src, dst, qtype, threads=a.threads)
            print(dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
