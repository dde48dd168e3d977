"""Quantization ladders through llama.cpp's own quantizer (`llama_model_quantize`)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from pyintro.files import FILE_TYPES, UNQUANTIZED, check_gguf_file, file_type
from pyintro.progress import Progress
from pyintro.disk import atomic_path

# The types `pyintro quantize --type` writes (lower case), with llama.cpp's enum llama_ftype.
QUANT_TYPES = {name.lower(): code for code, name in FILE_TYPES.items() if name in (
    "F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
    "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K")}
# Most precise first; used to pick the reference file of a comparison.
PRECISION_ORDER = ["F32", "BF16", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q5_K_S", "Q5_0", "Q4_K_M",
                   "Q4_1", "Q4_K_S", "Q4_0", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K"]


def precision_rank(quant_type: str) -> int:
    """0 for the most precise type; unknown types rank last."""
    name = quant_type.upper()
    return PRECISION_ORDER.index(name) if name in PRECISION_ORDER else len(PRECISION_ORDER)


def quantize(src: str | os.PathLike, dst: str | os.PathLike, qtype: str, threads: Optional[int] = None) -> Path:
    """Write ``src`` quantized to ``qtype`` (a key of QUANT_TYPES) at ``dst``."""
    key = qtype.lower()
    if key not in QUANT_TYPES:
        raise ValueError(f"unknown type {qtype!r}; choose from {', '.join(QUANT_TYPES)}")
    src, dst = Path(src), Path(dst)
    check_gguf_file(src)
    if dst.resolve() == src.resolve():
        raise ValueError(f"the output {dst} is the input file; choose another output name or folder")
    import llama_cpp

    from pyintro._native import _engine

    _engine.log_install()  # importing llama_cpp installs its own log callback; keep ours
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[key]
    params.nthread = int(threads or 0)
    params.allow_requantize = True
    with atomic_path(dst) as tmp:  # a failed run leaves no half-written file
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.is_file():
            raise RuntimeError(f"llama.cpp could not quantize {src} to {qtype} (code {rc})")
    return dst


def ladder(
    src: str | os.PathLike,
    types: Sequence[str],
    outdir: str | os.PathLike,
    threads: Optional[int] = None,
    say: Callable[[str], None] = lambda _: None,
    progress=None,
) -> list[Path]:
    """Quantize ``src`` to each of ``types`` in ``outdir``; returns the files written.

    A source that is already quantized goes through F16 first (re-quantizing a quantized file
    compounds errors); ``say`` is told so. Files are named ``<stem>.<TYPE>.gguf``.
    ``progress``: as in ``pyintro.progress``, over the files.
    """
    src, outdir = Path(src), Path(outdir)
    if not types:
        raise ValueError("give at least one --type")
    for t in types:
        if t.lower() not in QUANT_TYPES:
            raise ValueError(f"unknown type {t!r}; choose from {', '.join(QUANT_TYPES)}")
    if not outdir.is_dir():
        raise ValueError(f"output folder {outdir} does not exist; create it first")
    stem = src.name[: -len(".gguf")] if src.name.endswith(".gguf") else src.name
    for suffix in (".Q4_1", ".Q4_0", ".Q8_0", ".F16", ".F32"):
        stem = stem[: -len(suffix)] if stem.upper().endswith(suffix) else stem
    quantized = file_type(src) not in UNQUANTIZED
    for t in (["f16"] if quantized else []) + list(types):  # refuse before writing anything
        if (outdir / f"{stem}.{t.upper()}.gguf").resolve() == src.resolve():
            raise ValueError(f"the output {stem}.{t.upper()}.gguf would be the input file {src}; "
                             "choose another --outdir or rename the input")
    base = src
    written = []
    todo = [t for t in types if not (quantized and t.lower() == "f16")]
    with Progress(progress, len(todo) + quantized, "quantize", "file") as bar:
        if quantized:
            f16 = outdir / f"{stem}.F16.gguf"
            say(f"{src.name} is already quantized: going through F16 ({f16.name}) first")
            base = quantize(src, f16, "f16", threads)
            bar.advance(1)
            if "f16" in [t.lower() for t in types]:
                written.append(f16)
        for t in todo:
            dst = outdir / f"{stem}.{t.upper()}.gguf"
            say(f"writing {dst.name}")
            written.append(quantize(base, dst, t, threads))
            bar.advance(1)
    return written
