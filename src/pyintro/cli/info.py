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
              "quant_type, devices, source).")
@click.pass_context
def info(ctx, model_path, threads, gpu_layers, as_json):
    """Describe the model file and this build of llama.cpp."""
    source = {ParameterSource.COMMANDLINE: "--model", ParameterSource.ENVIRONMENT: "PYINTRO_MODEL"}.get(
        ctx.get_parameter_source("model_path"), f"package {DEFAULT_MODEL_PACKAGE}")
    with load_model(model_path, threads or 1, gpu_layers) as m:
        data = {"path": str(m.path), "arch": m.arch, "n_layer": m.n_layer, "n_embd": m.n_embd,
                "n_vocab": m.n_vocab, "quant_type": m.quant_type,
                "devices": [f"{d['name']} ({d['description']})" for d in m.devices()], "source": source}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key:>10}: {', '.join(value) if isinstance(value, list) else value}")
