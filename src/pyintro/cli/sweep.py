"""The follow-up post's experiment: `pyintro run` (the sweep of a vector over layers x strengths
for the introspection question and control questions) and `pyintro ask` (one question)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.experiment import answer_tokens_option, experiment_options, run_experiment
from pyintro.cli.options import finite, load_model, model_options

positions_option = click.option("--positions", "where", default="last", show_default=True,
                                help="Tokens to inject: last, all, from:K (token K onward) or tokens:I,J,...")
relative_option = click.option("--relative", is_flag=True,
                               help="Scale the strength by the layer's mean residual norm over |v[layer]|.")
vector_option = click.option("--vector", type=click.Path(dir_okay=False, path_type=Path), default=None,
                             help="Control-vector GGUF file.")


@main.command()
@experiment_options("pyintro-run", take=("layers", "strengths", "quick", "seed", "shard", "resume"))
@vector_option
@click.option("--question", default=None, help="The introspection question (default: the post's).")
@click.option("--control", "control_questions", multiple=True,
              help="A control question (repeatable; default: the post's 12, true answer No).")
@click.option("--controls", type=click.IntRange(min=1), default=None,
              help="Use only the first N of the default control questions (true answer No; default 12).")
@click.option("--yes-controls", type=click.IntRange(min=0), default=None,
              help="Use the first N control questions whose true answer is Yes (default 5; --quick: 2).")
@positions_option
@relative_option
@click.option("--random", "n_random", type=click.IntRange(min=0), default=None,
              help="Norm-matched random vectors swept beside the vector, the null (default 2; --quick: 1).")
@answer_tokens_option
def run(common, vector, question, control_questions, controls, yes_controls, where, relative, n_random, answers):
    """The follow-up post's experiment, end to end.

    Sweeps a vector (default: the all-caps vector, "HI! HOW ARE YOU?" minus "Hi! How are you?",
    extracted and saved as caps.gguf) over every layer x a ladder of strengths (0 to 15) for the
    introspection question and the control questions, then writes results.csv, heatmap.png,
    strength.png, layer.png and summary.json.
    """
    from pyintro.experiments import sweep
    from pyintro.experiments.questions import CONTROL_NO, CONTROL_YES, INTROSPECTION

    options = {"positions": where, "scale": "relative" if relative else "raw", "controls": controls,
               "yes_controls": yes_controls, "n_random": n_random, "answers": answers}
    if question or control_questions:
        if controls is not None and control_questions:
            raise click.UsageError("--controls picks among the default control questions; --control gives your own")
        options["questions"] = {"introspection": question or INTROSPECTION,
                                "control": list(control_questions) or CONTROL_NO[:controls or len(CONTROL_NO)]}
        if yes_controls != 0:
            options["questions"]["control_yes"] = CONTROL_YES[:yes_controls]
    run_experiment(sweep.EXPERIMENT, common, vector=vector, **options)


@main.command()
@click.argument("question")
@click.option("--system", default=None, help="System prompt (default: the introspection test's; '' for none).")
@vector_option
@click.option("--layer", type=int, default=None, help="Layer to inject into (output of block L).")
@click.option("--strength", type=float, default=None, callback=finite, help="Injection strength.")
@relative_option
@positions_option
@click.option("--generate", type=click.IntRange(min=1), default=None, help="Also generate N tokens (greedy).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@model_options
def ask(question, system, vector, layer, strength, relative, where, generate, as_json):
    """Ask QUESTION and print b = logit(Yes) - logit(No), p(Yes), p(No) and the top tokens."""
    from pyintro import Injection, Positions
    from pyintro.experiments.questions import INTROSPECTION_SYSTEM
    from pyintro.norms import strength_factors
    from pyintro.readout import belief
    from pyintro.vectors import load_for

    if not question.strip():
        raise click.BadParameter("the question is empty", param_hint="QUESTION")
    given = [x is not None for x in (vector, layer, strength)]
    if any(given) and not all(given):
        raise click.UsageError("--vector, --layer and --strength go together")
    positions = Positions.parse(where)
    with load_model() as m:
        ids = m.chat(question, system=INTROSPECTION_SYSTEM if system is None else (system or None))
        inject = []
        if vector is not None:
            v = load_for(vector, m)
            il = Injection(v, layer).resolve_layer(m.n_layer)
            s = strength
            if relative:
                factor, _ = strength_factors(m, v.directions, [il], "relative", [ids])
                s = strength * float(factor[il])
            inject = [Injection(v, il, s, positions)]
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
