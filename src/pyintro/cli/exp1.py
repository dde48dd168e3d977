"""Experiment 1 of Lindsey (2025): `pyintro concepts` (the concept library) and `pyintro detect`."""

from __future__ import annotations

from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.options import check_out_dir, load_model, model_options, parse_shard, progress, spec_option


def words_option(f):
    return click.option("--words", default=None,
                        help="Words: a file (one per line) or a comma list (default: the paper's 50 concept words; "
                             "'all' for every word the experiments use).")(f)


def parse_words(text):
    from pyintro import concepts
    from pyintro.extract import read_words

    if text is None:
        return None
    if text == "all":
        return concepts.all_words()
    path = Path(text)
    if path.is_file():
        return read_words(path)
    return [w.strip() for w in text.split(",") if w.strip()] or concepts.check_words([])


@main.command("concepts")
@model_options
@words_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Library folder (default: pyintro's cache for this model).")
def concepts_cmd(words, out):
    """Extract (or load) the concept vectors of the paper's recipe into a library folder."""
    from pyintro import concepts

    with load_model() as m:
        folder = out or concepts.default_dir(m)
        lib = concepts.library(m, parse_words(words), out=folder, progress=progress())
    click.echo(f"{len(lib)} concept vectors in {folder}")


@main.command()
@model_options
@words_option
@click.option("--library", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Concept library folder (default: pyintro's cache for this model; built if missing).")
@spec_option("--layers", int, None, "Layers (default: all; --quick: 6 evenly spaced).")
@spec_option("--strengths", float, "1,2,4,8", "Strengths.")
@click.option("--trials", "n_trials", type=click.IntRange(min=1), default=None,
              help="Sample N graded trials per cell instead of the judge-free scores.")
@click.option("--judge", default=None, help="With --trials: a GGUF model (path or alias) that grades the answers.")
@click.option("--prompt", "prompt_name", type=click.Choice(["paper", "revised", "thinking_about", "whats_going_on"]),
              default="paper", show_default=True, help="The trial prompt (the paper's, its revision, or an alternative).")
@click.option("--bias", "n_bias", type=click.IntRange(0, 20), default=None,
              help="Bias-control questions per cell (default 20; --quick: 4).")
@click.option("--quick", is_flag=True, help="A size that finishes in minutes on a laptop.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--shard", default=None, help="K/N: compute only shard K of N (concepts round-robin).")
@click.option("--resume", is_flag=True, help="Keep finished rows in OUT and compute the rest.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("pyintro-detect"),
              show_default=True, help="Folder for rows, cells, figures and summary.json.")
def detect(words, library, layers, strengths, n_trials, judge, prompt_name, n_bias, quick, seed, shard, resume,
           out_dir):
    """Experiment 1: does an injected concept make the model claim an injected thought?

    By default judge-free: Yes/No and phrase log-likelihoods, identification by forced choice,
    against random and negated vectors and 20 bias-control questions (the paper's sizes; hours
    on a laptop: use --quick, or --shard to split the work). With --trials N: sampled answers,
    graded by --judge MODEL or by keywords.
    """
    from pyintro.experiments import exp1

    check_out_dir(out_dir, create=False)
    shard = parse_shard(shard) if shard else None
    with load_model() as m:
        judge_model = load_model(judge, own_format=True) if judge else None
        try:
            summary = exp1.run(m, check_out_dir(out_dir), words=parse_words(words), library=library, layers=layers,
                               strengths=strengths, n_trials=n_trials, judge_model=judge_model,
                               prompt_name=prompt_name, n_bias=n_bias, quick=quick, seed=seed, shard=shard,
                               resume=resume, progress=progress())
        finally:
            if judge_model is not None:
                judge_model.close()
    for line in summary["report"]:
        click.echo(line)
    click.echo(f"wrote {out_dir}/: " + ", ".join(summary["files"]))
