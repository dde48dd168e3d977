"""Experiments 2-4 of Lindsey (2025): `pyintro thoughts`, `pyintro prefill` and `pyintro control`."""

from __future__ import annotations

from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.exp1 import parse_words, words_option
from pyintro.cli.options import check_out_dir, load_model, model_options, parse_shard, progress, spec_option


def _shared(default_out: str, what: str):
    """The options every one of the three commands takes, each declared once."""

    def wrap(f):
        for option in reversed([
            words_option,
            click.option("--sentences", type=click.Path(dir_okay=False, path_type=Path), default=None,
                         help="A sentence file, one sentence per line, no empty lines (default: the paper's 50)."),
            click.option("--library", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="Concept library folder (default: pyintro's cache for this model; built if missing)."),
            click.option("--pairs", "n_pairs", type=click.IntRange(min=1), default=None,
                         help="Use the first N sentence/word pairs (default: all; --quick: a few)."),
            click.option("--quick", is_flag=True, help=f"A size that finishes in minutes on a laptop ({what})."),
            click.option("--seed", type=int, default=0, show_default=True, help="Seed of the pairs and draws."),
            click.option("--shard", default=None, help="K/N: compute only shard K of N (pairs round-robin)."),
            click.option("--resume", is_flag=True, help="Keep finished rows in OUT and compute the rest."),
            click.option("--merge", "merge_dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
                         help="Merge these shard folders (repeatable) into OUT instead of computing; no model needed."),
            click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                         default=Path(default_out), show_default=True,
                         help="Folder for rows, cells, figures and summary.json."),
        ]):
            f = option(f)
        return model_options(f)

    return wrap


def _sentences(path):
    from pyintro.experiments.pairs import read_sentences

    return read_sentences(path) if path is not None else None


def _merge(module, dirs, out_dir) -> dict:
    from pyintro.experiments.pairs import merge

    return merge(dirs, check_out_dir(out_dir), module.read, module.key, module.COLUMNS, module.finish)


def _echo(summary: dict, out_dir: Path) -> None:
    for line in summary["report"]:
        click.echo(line)
    click.echo(f"wrote {out_dir}/: " + ", ".join(summary["files"]))


@main.command()
@_shared("pyintro-thoughts", "4 pairs, 4 layers, strengths 4 and 16")
@spec_option("--layers", int, None, "Layers (default: all; --quick: 4 evenly spaced).")
@spec_option("--strengths", float, None, "Strengths (default: 1,2,4,8,16; --quick: 4,16).")
def thoughts(words, sentences, library, n_pairs, quick, seed, shard, resume, merge_dirs, out_dir, layers, strengths):
    """Experiment 2: does the model name a word injected on a sentence while still repeating it?

    Judge-free: the thought as a 10-way forced choice by answer log-likelihood (chance 10%),
    the text by greedy repetition (exact match) and the sentence's teacher-forced
    log-probability, each against no injection.
    """
    from pyintro.experiments import thoughts as exp2

    if merge_dirs:
        return _echo(_merge(exp2, merge_dirs, out_dir), out_dir)
    check_out_dir(out_dir, create=False)
    sents, shard = _sentences(sentences), parse_shard(shard) if shard else None
    with load_model() as m:
        summary = exp2.run(m, check_out_dir(out_dir), words=parse_words(words), sentences=sents, library=library,
                           layers=layers, strengths=strengths, n_pairs=n_pairs, quick=quick, seed=seed, shard=shard,
                           resume=resume, progress=progress())
    _echo(summary, out_dir)


@main.command()
@_shared("pyintro-prefill", "4 pairs, 4 layers, strengths 4 and 16")
@spec_option("--layers", int, None, "Layers (default: all; --quick: 4 evenly spaced).")
@spec_option("--strengths", float, None, "Strengths (default: 1,2,4,8,16; --quick: 4,16).")
@click.option("--exp1", "exp1_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="An experiment-1 folder (`pyintro detect --out`) whose best layer the figure shows too.")
def prefill(words, sentences, library, n_pairs, quick, seed, shard, resume, merge_dirs, out_dir, layers, strengths,
            exp1_dir):
    """Experiment 3: does a word's vector, injected before a prefilled answer, make the model
    claim the answer as intended?

    Judge-free: apology vs intent openings of the reply, and Yes/No to "Did you mean to say
    that?", with no injection, the prefilled word's vector before the prefill, a random
    word's vector there, and the prefilled word's vector after the prefill.
    """
    from pyintro.experiments import prefill as exp3

    if merge_dirs:
        return _echo(_merge(exp3, merge_dirs, out_dir), out_dir)
    check_out_dir(out_dir, create=False)
    sents, shard = _sentences(sentences), parse_shard(shard) if shard else None
    with load_model() as m:
        summary = exp3.run(m, check_out_dir(out_dir), words=parse_words(words), sentences=sents, library=library,
                           layers=layers, strengths=strengths, n_pairs=n_pairs, exp1=exp1_dir, quick=quick, seed=seed,
                           shard=shard, resume=resume, progress=progress())
    _echo(summary, out_dir)


@main.command()
@_shared("pyintro-control", "5 pairs, 20 control words")
@spec_option("--layers", int, None, "Layers captured (default: all).")
@click.option("--control-words", "n_control", type=int, default=None,
              help="Use the first N of the 100 control words as the baseline (default: all; --quick: 20).")
def control(words, sentences, library, n_pairs, quick, seed, shard, resume, merge_dirs, out_dir, layers, n_control):
    """Experiment 4: told to think (or not) about a word while writing a sentence, how much
    does the model represent it? Cosine of the sentence tokens' residual stream with the word's
    concept vector, against the control words' vectors, at every layer (no injection).
    """
    from pyintro.experiments import control as exp4

    if merge_dirs:
        return _echo(_merge(exp4, merge_dirs, out_dir), out_dir)
    check_out_dir(out_dir, create=False)
    sents, shard = _sentences(sentences), parse_shard(shard) if shard else None
    with load_model() as m:
        summary = exp4.run(m, check_out_dir(out_dir), words=parse_words(words), sentences=sents, library=library,
                           layers=layers, n_pairs=n_pairs, n_control=n_control, quick=quick, seed=seed, shard=shard,
                           resume=resume, progress=progress())
    _echo(summary, out_dir)
