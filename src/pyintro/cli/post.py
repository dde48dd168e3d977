"""The follow-up post's experiment: `pyintro run`, `ask`, `sweep`, `merge` and `plot`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.options import (check_out_dir, check_out_file, finite, load_model, load_vector, model_options,
                                 parse_shard, positions, progress, spec_option)

DEFAULT_STRENGTHS = "0:16"


@main.command()
@model_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("pyintro-run"),
              show_default=True, help="Folder for the results, figures and summary (created if missing).")
@spec_option("--strengths", float, DEFAULT_STRENGTHS, "Strength ladder, START:STOP[:STEP] or a list.")
@spec_option("--layers", int, None, "Layers to sweep (default: all).")
@click.option("--controls", type=click.IntRange(min=1), default=None,
              help="Use only the first N control questions (default: all).")
@click.option("--resume", is_flag=True, help="Keep finished points in OUT/results.csv and compute the rest.")
def run(out_dir, strengths, layers, controls, resume):
    """The follow-up post's experiment, end to end.

    Extracts the all-caps vector ("HI! HOW ARE YOU?" minus "Hi! How are you?"), sweeps every
    layer x the strength ladder for the introspection question and the control questions,
    then writes results.csv, heatmap.png, strength.png, layer.png and summary.json.
    """
    from pyintro.experiments import post

    check_out_dir(out_dir, create=False)
    with load_model() as m:  # the folder is made once the model has loaded: no empty folder on failure
        summary = post.run(m, check_out_dir(out_dir), strengths=strengths, layers=layers, controls=controls,
                           resume=resume, progress=progress())
    click.echo(f"{summary['model']} ({summary['quant_type']}): {summary['n_points']} points in "
               f"{summary['elapsed_s']:.1f} s")
    for line in summary["report"]:
        click.echo(line)
    click.echo(f"wrote {out_dir}/: " + ", ".join(summary["files"]))


def _vector_options(f):
    f = click.option("--relative", is_flag=True,
                     help="Scale the strength by the layer's mean residual norm over |v[layer]|.")(f)
    f = click.option("--strength", type=float, default=None, callback=finite, help="Injection strength.")(f)
    f = click.option("--layer", type=int, default=None, help="Layer to inject into (output of block L).")(f)
    f = click.option("--vector", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Control-vector GGUF file.")(f)
    return f


@main.command()
@model_options
@click.argument("question")
@click.option("--system", default=None, help="System prompt (default: the introspection test's; '' for none).")
@_vector_options
@click.option("--positions", "where", default="last", show_default=True,
              help="Tokens to inject: last, all or K (K onward).")
@click.option("--generate", type=click.IntRange(min=1), default=None, help="Also generate N tokens (greedy).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ask(question, system, vector, layer, strength, relative, where, generate,
        as_json):
    """Ask QUESTION and print b = logit(Yes) - logit(No), p(Yes), p(No) and the top tokens."""
    from pyintro import Injection
    from pyintro.experiments.questions import INTROSPECTION_SYSTEM
    from pyintro.readout import belief
    from pyintro.vectors import strength_factors

    if not question.strip():
        raise click.BadParameter("the question is empty", param_hint="QUESTION")
    given = [x is not None for x in (vector, layer, strength)]
    if any(given) and not all(given):
        raise click.UsageError("--vector, --layer and --strength go together")
    with load_model() as m:
        ids = m.chat(question, system=INTROSPECTION_SYSTEM if system is None else (system or None))
        inject = []
        if vector is not None:
            v = load_vector(vector, m)
            il = Injection(v, layer).resolve_layer(m.n_layer)
            s = strength
            if relative:
                factor, _ = strength_factors(m, v.directions, [il], "relative", [ids])
                s = strength * float(factor[il])
            inject = [Injection(v, il, s, positions(where))]
        bel = belief(m, ids, inject)
        answer = m.detokenize(m.generate(ids, generate, inject=inject)[0], special=False) if generate else None
    data = {"question": question, "b": bel.b, "p_yes": bel.p_yes, "p_no": bel.p_no,
            "top": [[t, p] for t, p in bel.top]}
    if answer is not None:
        data["answer"] = answer
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"b = {bel.b:+.3f}   p(Yes) = {bel.p_yes:.4f}   p(No) = {bel.p_no:.4f}")
    click.echo("top: " + ", ".join(f"{t!r} {p:.3f}" for t, p in bel.top))
    if answer is not None:
        click.echo(f"answer: {answer}")


@main.command("sweep")
@model_options
@click.option("--vector", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Control-vector GGUF file.")
@spec_option("--layers", int, None, "Layers, START:STOP[:STEP] or a list (default: all).")
@spec_option("--strengths", float, DEFAULT_STRENGTHS, "Strengths, START:STOP[:STEP] or a list.")
@click.option("--question", default=None, help="The introspection question (default: the post's).")
@click.option("--control", multiple=True, help="A control question (repeatable; default: 1+1=3).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Results CSV.")
@click.option("--resume", is_flag=True, help="Keep the points already in --out and compute the rest.")
@click.option("--relative", is_flag=True, help="Strengths relative to each layer's mean residual norm.")
@click.option("--positions", "where", default="last", show_default=True,
              help="Tokens to inject: last, all or K (K onward).")
@click.option("--shard", default=None, help="K/N: compute only shard K of N (1-based; layers split round-robin).")
def sweep_cmd(vector, layers, strengths, question, control, out, resume, relative,
              where, shard):
    """Sweep layers x strengths for a question and its controls; rows are written as they finish."""
    from pyintro.experiments import post
    from pyintro.experiments.questions import CONTROL_NO, INTROSPECTION

    pos = positions(where)
    check_out_file(out)
    with load_model() as m:
        v = load_vector(vector, m)
        layers = list(range(m.n_layer)) if layers is None else layers
        if shard:
            k, n = parse_shard(shard)
            layers = layers[k - 1::n]
            if not layers:
                raise ValueError(f"shard {shard} has no layers; use fewer shards")
        questions = {"introspection": question or INTROSPECTION, "control": list(control) or CONTROL_NO[:1]}
        rows = post.sweep(m, v, layers=layers, strengths=strengths, questions=questions, positions=pos,
                          scale="relative" if relative else "raw", out=out, resume=resume, progress=progress())
    click.echo(f"wrote {len(rows)} rows to {out}")
    for line in post.summary_lines(post.analyze(rows)):
        click.echo(line)


@main.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Merged CSV.")
def merge(shards, out):
    """Join the CSVs of a sharded sweep into one table (each point once)."""
    from pyintro.experiments import post
    from pyintro.results import merge_rows, write_rows

    check_out_file(out)
    merged = merge_rows([post.read(p) for p in shards], post.key)
    write_rows(out, merged)
    click.echo(f"wrote {len(merged)} rows from {len(shards)} files to {out}")


@main.command()
@click.argument("table", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["heatmap", "strength", "layer"]), default="heatmap", show_default=True,
              help="heatmap: layer x strength; strength: b vs strength at --layer; layer: b vs layer at --strength.")
@click.option("--layer", type=int, default=None,
              help="Layer for --kind strength (default: where introspection b exceeds the controls' mean most).")
@click.option("--strength", type=float, default=None, callback=finite,
              help="Strength for --kind layer (default: where introspection b exceeds the controls' mean most).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Figure (.png or .svg).")
def plot(table, kind, layer, strength, out):
    """Draw a figure from a sweep CSV."""
    from pyintro import plots
    from pyintro.experiments import post

    check_out_file(out)
    if out.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"{out} must end in .png or .svg")
    rows = post.read(table)
    if kind == "heatmap":
        plots.heatmaps(rows, out)
    elif kind == "strength":
        plots.b_vs_strength(rows, out, layer=layer)
    else:
        plots.b_vs_layer(rows, out, strength=strength)
    click.echo(f"wrote {out}")
