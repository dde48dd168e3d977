"""The four experiments of Lindsey (2025): `pyintro detect`, `thoughts`, `prefill` and `control`."""

from __future__ import annotations

from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.experiment import experiment_options, run_experiment


def _sentences(path):
    from pyintro.experiments.pairs import read_sentences

    return read_sentences(path) if path is not None else None


sentences_option = click.option("--sentences", type=click.Path(dir_okay=False, path_type=Path), default=None,
                                help="A sentence file, one sentence per line, no empty lines (default: the paper's 50).")
pairs_option = click.option("--pairs", "n_pairs", type=click.IntRange(min=1), default=None,
                            help="Use the first N sentence/word pairs (default: all; --quick: a few).")


@main.command()
@experiment_options("pyintro-detect")
@click.option("--trials", "n_trials", type=click.IntRange(min=1), default=None,
              help="Sample N graded trials per cell instead of the judge-free scores.")
@click.option("--judge", default=None, help="With --trials: a GGUF model (path or alias) that grades the answers.")
@click.option("--prompt", "prompt_name", type=click.Choice(["paper", "revised", "thinking_about", "whats_going_on"]),
              default="paper", show_default=True, help="The trial prompt (the paper's, its revision, or an alternative).")
@click.option("--bias", "n_bias", type=click.IntRange(0, 20), default=None,
              help="Bias-control questions per cell (default 20; --quick: 4).")
def detect(common, n_trials, judge, prompt_name, n_bias):
    """Experiment 1: does an injected concept make the model claim an injected thought?

    By default judge-free: Yes/No and phrase log-likelihoods, identification by forced choice,
    against random and negated vectors and 20 bias-control questions (the paper's sizes; hours
    on a laptop: use --quick, or --shard to split the work). With --trials N: sampled answers,
    graded by --judge MODEL or by keywords.
    """
    from pyintro.experiments import detection, trials

    if common.strengths is None:
        common.strengths = list(detection.STRENGTHS)
    if n_trials is None:
        if judge is not None:
            raise click.UsageError("--judge grades sampled trials: give --trials N too")
        run_experiment(detection.EXPERIMENT, common, n_bias=n_bias)
    else:
        run_experiment(trials.EXPERIMENT, common, judge=judge, n_trials=n_trials, prompt_name=prompt_name)


@main.command()
@experiment_options("pyintro-thoughts")
@sentences_option
@pairs_option
def thoughts(common, sentences, n_pairs):
    """Experiment 2: does the model name a word injected on a sentence while still repeating it?

    Judge-free: the thought as a 10-way forced choice by answer log-likelihood (chance 10%),
    the text by greedy repetition (exact match) and the sentence's teacher-forced
    log-probability, each against no injection.
    """
    from pyintro.experiments import thoughts as exp2

    run_experiment(exp2.EXPERIMENT, common, sentences=_sentences(sentences), n_pairs=n_pairs)


@main.command()
@experiment_options("pyintro-prefill")
@sentences_option
@pairs_option
@click.option("--exp1", "exp1_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="An experiment-1 folder (`pyintro detect --out`) whose best layer the figure shows too.")
def prefill(common, sentences, n_pairs, exp1_dir):
    """Experiment 3: does a word's vector, injected before a prefilled answer, make the model
    claim the answer as intended?

    Judge-free: apology vs intent openings of the reply, and Yes/No to "Did you mean to say
    that?", with no injection, the prefilled word's vector before the prefill, a random
    word's vector there, and the prefilled word's vector after the prefill.
    """
    from pyintro.experiments import prefill as exp3

    run_experiment(exp3.EXPERIMENT, common, sentences=_sentences(sentences), n_pairs=n_pairs, exp1=exp1_dir)


@main.command()
@experiment_options("pyintro-control", take=("words", "library", "layers", "quick", "seed", "shard", "resume"))
@sentences_option
@pairs_option
@click.option("--control-words", "n_control", type=int, default=None,
              help="Use the first N of the 100 control words as the baseline (default: all; --quick: 20).")
def control(common, sentences, n_pairs, n_control):
    """Experiment 4: told to think (or not) about a word while writing a sentence, how much
    does the model represent it? Cosine of the sentence tokens' residual stream with the word's
    concept vector, against the control words' vectors, at every layer (no injection).
    """
    from pyintro.experiments import control as exp4

    run_experiment(exp4.EXPERIMENT, common, sentences=_sentences(sentences), n_pairs=n_pairs, n_control=n_control)
