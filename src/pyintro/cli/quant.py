"""The quantization study: `pyintro quantize` and `pyintro compare`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.options import (check_out_file, gpu_layers_option, load_model, progress, prompt_options,
                                 spec_option, threads_option)


@main.command()
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--type", "types", multiple=True, required=True,
              help="Target type, repeatable: f16, q8_0, q6_k, q5_k_m, q4_k_m, q3_k_m, q2_k, ...")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--threads", type=click.IntRange(min=1), default=None, envvar="PYINTRO_THREADS",
              help="Threads for the quantizer (default: all). [env PYINTRO_THREADS]")
def quantize(src, types, outdir, threads):
    """Quantize SRC with llama.cpp's quantizer (a quantized SRC goes through F16 first)."""
    from pyintro.quantize import ladder

    if not src.is_file():
        raise FileNotFoundError(f"model file not found: {src}")
    for path in ladder(src, types, outdir, threads, say=lambda s: click.echo(s, err=True), progress=progress()):
        click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--vector", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Control-vector GGUF file.")
@spec_option("--layers", int, None, "Layers (default: all).")
@spec_option("--strengths", float, "0:16:3", "Strengths.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Results CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Drift figure (default: next to --out, .png).")
@threads_option
@gpu_layers_option
@prompt_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def compare(models, vector, layers, strengths, out, plot_path, as_json):
    """Run the same sweep on each model file and report the drift of b against the most precise."""
    from pyintro import plots
    from pyintro.experiments import compare as cmp
    from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION
    from pyintro.vectors import ConceptVector, directions

    check_out_file(out)
    plot_path = check_out_file(plot_path or out.with_suffix(".png"))
    v = ConceptVector.load(vector)
    for path in models:
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")

    def load(path):
        m = load_model(path)
        try:
            directions(v, m.n_layer, m.n_embd)
        except ValueError as e:
            m.close()
            raise ValueError(f"{vector} does not fit {path.name}: {e}") from None
        return m

    result = cmp.compare(models, v, out=out, load=load, say=lambda s: click.echo(s, err=True),
                         progress=False if as_json else progress(),
                         layers=layers,
                         strengths=strengths, questions={"introspection": INTROSPECTION, "control": CONTROL_NO[:1]})
    plots.drift(result, plot_path)
    report = {"reference": result["reference"], "models": result["models"], "plot": str(plot_path), "out": str(out)}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"reference: {Path(result['reference']).name}")
    for e in result["models"]:
        if e["reference"]:
            continue
        line = (f"{Path(e['path']).name:<40} {e['quant_type']:<7} max|Δb| {e['max_abs_db']:.3f}  "
                f"mean|Δb| {e['mean_abs_db']:.3f}  r {e['correlation_b']:.3f}")
        if "gap_survives" in e:
            line += f"  gap survives: {'yes' if e['gap_survives'] else 'no'}"
        click.echo(line)
    click.echo(f"wrote {out} and {plot_path}")
