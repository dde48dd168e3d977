"""Options and parsing that several commands share. Each option is declared once, with its
help text and its PYINTRO_* environment variable."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import click

__all__ = ["check_out_dir", "check_out_file", "finite", "gpu_layers_option", "load_model", "model_options",
           "parse_spec", "progress", "prompt_options", "threads_option"]


def _keep(ctx: click.Context, param: click.Parameter, value):
    """Model options are not arguments of the command: they wait in ctx.meta for load_model()."""
    ctx.meta.setdefault("pyintro.model", {})[param.name] = value
    return value


def _option(*names, **kw):
    return click.option(*names, expose_value=False, callback=_keep, **kw)


def threads_option(f):
    return _option("--threads", type=click.IntRange(min=1), default=None, envvar="PYINTRO_THREADS",
                   help="CPU threads (default: all available). [env PYINTRO_THREADS]")(f)


def gpu_layers_option(f):
    return _option("--gpu-layers", type=int, default=0, show_default=True, envvar="PYINTRO_GPU_LAYERS",
                   help="Layers to offload to the GPU (-1: all). [env PYINTRO_GPU_LAYERS]")(f)


def prompt_options(f):
    """--chat-template, --user-prefix and --assistant-prefix: how prompts are formatted."""
    f = _option("--assistant-prefix", default=None, envvar="PYINTRO_ASSISTANT_PREFIX",
                help="With --chat-template raw: the assistant's label (default 'Assistant:').")(f)
    f = _option("--user-prefix", default=None, envvar="PYINTRO_USER_PREFIX",
                help="With --chat-template raw: the user's label (default 'Human: ').")(f)
    f = _option("--chat-template", default="auto", show_default=True, envvar="PYINTRO_CHAT_TEMPLATE",
                help="Prompt format: auto (the file's own; raw if it has none), raw (Human:/Assistant: transcript), "
                     "a llama.cpp template name (chatml, llama3, gemma, ...) or a Jinja file. [env PYINTRO_CHAT_TEMPLATE]")(f)
    return f


def model_options(f):
    """--model, --threads, --gpu-layers and the prompt options, each with its PYINTRO_* variable."""
    f = prompt_options(f)
    f = gpu_layers_option(f)
    f = threads_option(f)
    f = _option("--model", default=None, envvar="PYINTRO_MODEL",
                help="A GGUF file, an alias (smollm2, gemma3-270m) or org/repo:file.gguf from the Hugging Face "
                     "cache (default: smollm2; `pyintro models` lists them). [env PYINTRO_MODEL]")(f)
    return f


def load_model(path=None, threads: Optional[int] = None, own_format: bool = False):
    """The model the command's options name (``path``: another file, for commands over several;
    ``own_format``: with its own prompt format, not the one the options set, e.g. a judge)."""
    from pyintro.model import Model

    opts = click.get_current_context().meta.get("pyintro.model", {})
    gpu_layers = opts.get("gpu_layers") or 0
    if gpu_layers != 0 and not Model.supports_gpu_offload():
        click.echo("Warning: --gpu-layers has no effect: this llama.cpp build has no GPU backend "
                   "(rebuild llama-cpp-python with CMAKE_ARGS=\"-DGGML_CUDA=on\").", err=True)
    fmt = {} if own_format else {"chat_template": opts.get("chat_template") or "auto",
                                 "user_prefix": opts.get("user_prefix"),
                                 "assistant_prefix": opts.get("assistant_prefix")}
    return Model.load(opts.get("model") if path is None else path, n_gpu_layers=gpu_layers,
                      n_threads=threads or opts.get("threads"), **fmt)


def check_out_file(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"output folder {parent} is not writable; choose another --out")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    return path


def check_out_dir(path: Path, create: bool = True) -> Path:
    """An output folder that can be written: created if missing (``create``), provided its
    parent exists. ``create=False`` only checks that it could be."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a folder; choose another --out")
    if not path.exists():
        if not path.parent.is_dir():
            raise ValueError(f"folder {path.parent} does not exist; create it first")
        if not os.access(path.parent, os.W_OK):
            raise ValueError(f"folder {path.parent} is not writable; choose another --out")
        if create:
            path.mkdir()
        return path
    if not os.access(path, os.W_OK):
        raise ValueError(f"output folder {path} is not writable; choose another --out")
    return path


def parse_spec(text: str, kind=float) -> list:
    """``START:STOP[:STEP]`` (STOP exclusive) or a comma list -> list of numbers."""
    text = (text or "").strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = kind(parts[0]), kind(parts[1])
            step = kind(parts[2]) if len(parts) == 3 else kind(1)
            if step == 0:
                raise ValueError
            n = math.ceil((stop - start) / step)
            values = [kind(start + i * step) for i in range(max(0, n))]
            if kind is float:
                values = [round(v, 10) for v in values]
        else:
            values = [kind(v) for v in text.split(",") if v.strip()] if text else []
    except ValueError:
        raise click.BadParameter(f"{text!r} is not START:STOP[:STEP] or a comma list of "
                                 f"{'integers' if kind is int else 'numbers'}") from None
    if not values:
        raise click.BadParameter(f"{text!r} is an empty range")
    if kind is float and not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"{text!r} contains NaN or Inf")
    return values


def finite(ctx, param, value):
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number")
    return value


def progress() -> str:
    """A bar in a terminal, plain lines in a log (pyintro.progress's "log")."""
    return "log"
