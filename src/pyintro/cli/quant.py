"""The quantization study: `pyintro quantize` and `pyintro compare`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.experiment import OPTIONS
from pyintro.cli.options import check_out_file, gpu_layers_option, load_model, progress, prompt_options, threads_option


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
@click.option("--experiment", type=click.Choice(["run", "detect", "thoughts", "prefill", "control"]), default="run",
              show_default=True, help="What to compare: the follow-up post's sweep of --vector (b), or an experiment "
                                      "of Lindsey (2025) (its --metric).")
@click.option("--metric", default=None,
              help="With an experiment: the column compared (default: detect 'intro', thoughts 'think', prefill "
                   "'p_apology', control 'mean' of the contrasts).")
@click.option("--vector", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Control-vector GGUF file (--experiment run).")
@OPTIONS["layers"]
@OPTIONS["strengths"]
@click.option("--pairs", "n_pairs", type=click.IntRange(min=1), default=None,
              help="With an experiment: its first N sentence/word pairs.")
@click.option("--quick", is_flag=True, help="With an experiment: its --quick size.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Results CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Drift figure (default: next to --out, .png).")
@threads_option
@gpu_layers_option
@prompt_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def compare(models, experiment, metric, vector, layers, strengths, n_pairs, quick, out, plot_path, as_json):
    """Run the same sweep (or experiment) on each model file and report the drift against the most precise."""
    from pyintro import plots
    from pyintro.cli.options import parse_spec
    from pyintro.experiments import compare as cmp
    from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION
    from pyintro.results import write_rows
    from pyintro.vectors import ConceptVector, directions

    check_out_file(out)
    plot_path = check_out_file(plot_path or out.with_suffix(".png"))
    for path in models:
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
    if experiment != "run":
        if vector is not None:
            raise click.UsageError("--vector is for --experiment run; the paper's experiments use each model's own "
                                   "concept library")
        args = dict(layers=layers, quick=quick)
        if n_pairs is not None:
            if experiment == "detect":
                raise click.UsageError("--pairs: experiment 1 has no sentence/word pairs")
            args["n_pairs"] = n_pairs
        if strengths is not None:
            if experiment == "control":
                raise click.UsageError("--strengths: experiment 4 injects nothing")
            args["strengths"] = strengths
        result = cmp.compare_experiment(models, experiment, out.with_name(out.stem + "-runs"), metric,
                                        load=load_model, say=lambda s: click.echo(s, err=True),
                                        progress=False if as_json else progress(), **args)
        write_rows(out, result["rows"])
        plots.drift_metric(result, plot_path, result["metric"])
        report = {"experiment": experiment, "metric": result["metric"], "reference": result["reference"],
                  "models": [{k: v for k, v in e.items() if k not in ("values", "reference_values")}
                             for e in result["models"]], "plot": str(plot_path), "out": str(out)}
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        click.echo(f"reference: {Path(result['reference']).name}; {experiment}, {result['metric']}")
        for e in report["models"]:
            if not e["reference"]:
                click.echo(f"{Path(e['path']).name:<40} {e['quant_type']:<7} max|Δ| {e['max_abs_diff']:.3f}  "
                           f"mean|Δ| {e['mean_abs_diff']:.3f}  r {e['correlation']:.3f}  ({e['n_cells']} cells)")
        click.echo(f"wrote {out} and {plot_path}")
        return
    if vector is None:
        raise click.UsageError("--experiment run needs --vector FILE")
    if n_pairs is not None or quick or metric is not None:
        raise click.UsageError("--pairs, --quick and --metric are for the paper's experiments (--experiment)")
    v = ConceptVector.load(vector)

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
                         layers=layers, strengths=strengths if strengths is not None else parse_spec("0:16:3", float),
                         questions={"introspection": INTROSPECTION, "control": CONTROL_NO[:1]})
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
