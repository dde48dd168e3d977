"""`pyintro info`: the model file and this build of llama.cpp."""

from __future__ import annotations

import json

import click
from click.core import ParameterSource

from pyintro.cli import main
from pyintro.cli.options import load_model, model_options
from pyintro.files import DEFAULT_MODEL_PACKAGE


@main.command()
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys: path, arch, n_layer, n_embd, n_vocab, "
              "quant_type, devices, source, has_template, prompt_format, build).")
@click.pass_context
def info(ctx, as_json):
    """Describe the model file and this build of llama.cpp."""
    source = {ParameterSource.COMMANDLINE: "--model", ParameterSource.ENVIRONMENT: "PYINTRO_MODEL"}.get(
        ctx.get_parameter_source("model"), f"package {DEFAULT_MODEL_PACKAGE}")
    with load_model(threads=1) as m:
        data = {"path": str(m.path), "arch": m.arch, "n_layer": m.n_layer, "n_embd": m.n_embd,
                "n_vocab": m.n_vocab, "quant_type": m.quant_type,
                "devices": [f"{d['name']} ({d['description']})" for d in m.devices()], "source": source,
                "has_template": bool(m.chat_template), "prompt_format": m.prompt_format.source,
                "build": _build(m)}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key:>13}: {', '.join(value) if isinstance(value, list) else value}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of {name, what, status}.")
def models(as_json):
    """The models --model can name here: aliases of packaged models and the Hugging Face cache."""
    from pyintro.files import available_models, hf_cache_dir

    found = available_models()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for m in found:
        click.echo(f"{m['name']:<40} {m['status']:<34} {m['what']}")
    click.echo(f"(Hugging Face cache: {hf_cache_dir()}; or pass any GGUF path)")


def _build(model) -> str:
    """llama-cpp-python's version and the CPU features llama.cpp was compiled for (the last bits of
    every number depend on them: docs/numerics.md)."""
    from pyintro.results import version

    info = model.numerics()["system_info"]
    features = [f.split("=")[0].strip() for f in info.split("|") if f.strip().endswith("= 1")]
    return f"llama-cpp-python {version('llama_cpp_python')}; " + (" ".join(features) or info)
