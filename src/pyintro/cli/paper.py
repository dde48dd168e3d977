"""The four experiments of Lindsey (2025): `pyintro detect`, `thoughts`, `prefill` and `control`."""

from __future__ import annotations

from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.experiment import answer_tokens_option, experiment_options, judge_option, run_experiment, trials_option


def _sentences(path):
    from pyintro.experiments.pairs import read_sentences

    return read_sentences(path) if path is not None else None


sentences_option = click.option("--sentences", type=click.Path(dir_okay=False, path_type=Path), default=None,
                                help="A sentence file, one sentence per line, no empty lines "
                                     "(default: the paper's 50).")
pairs_option = click.option("--pairs", "n_pairs", type=click.IntRange(min=1), default=None,
                            help="Use the first N sentence/word pairs (default: all; --quick: a few).")


def _no_judge_without_trials(n_trials, judge) -> None:
    if n_trials is None and judge is not None:
        raise click.UsageError("--judge grades sampled trials: give --trials N too")


@main.command()
@experiment_options("pyintro-detect")
@trials_option
@judge_option
@click.option("--prompt", "prompt_name",
              type=click.Choice(["paper", "revised", "anything_unusual", "thinking_about", "whats_going_on"]),
              default="paper", show_default=True,
              help="The trial prompt: the paper's, its revision, or an alternative (thinking_about and whats_going_on "
                   "are open questions: with --trials only).")
@click.option("--bias", "n_bias", type=click.IntRange(0, 20), default=None,
              help="Bias-control questions per cell (default 20; --quick: 2).")
@answer_tokens_option
def detect(common, n_trials, judge, prompt_name, n_bias, answers):
    """Experiment 1: does an injected concept make the model claim an injected thought?

    By default judge-free: Yes/No and phrase log-likelihoods, identification by forced choice,
    a detection threshold set on the uninjected answers, coherence, against random and negated
    vectors, no injection and 20 bias-control questions (the paper's sizes; hours on a laptop:
    use --quick, or --shard to split the work). With --trials N: sampled answers, graded by
    --judge MODEL or by keywords.
    """
    from pyintro.experiments import detection, trials

    _no_judge_without_trials(n_trials, judge)
    if n_trials is None:
        if prompt_name not in detection.VARIANTS:
            raise click.BadParameter(f"{prompt_name} is an open question: judge-free scores need a yes/no prompt "
                                     f"({', '.join(detection.VARIANTS)}); add --trials N", param_hint="--prompt")
        run_experiment(detection.EXPERIMENT, common, n_bias=n_bias, prompt_name=prompt_name, answers=answers)
    else:
        run_experiment(trials.EXPERIMENT, common, judge=judge, n_trials=n_trials, prompt_name=prompt_name)


@main.command()
@experiment_options("pyintro-thoughts")
@sentences_option
@pairs_option
@trials_option
@judge_option
@click.option("--prompt", "prompt_name", type=click.Choice(["paper", "no_immediately"]), default="paper",
              show_default=True,
              help="The paper's prompts, or the same without \"Answer immediately.\" (its ablation).")
def thoughts(common, sentences, n_pairs, n_trials, judge, prompt_name):
    """Experiment 2: does the model name a word injected on a sentence while still repeating it?

    Judge-free: the thought as a 10-way forced choice by answer log-likelihood (chance 10%),
    the text by greedy repetition (exact match) and the sentence's teacher-forced
    log-probability, each against no injection and a random vector. With --trials N: sampled
    answers, the thought graded by --judge MODEL (or keywords).
    """
    from pyintro.experiments import thoughts as exp2
    from pyintro.experiments import thoughts_trials

    _no_judge_without_trials(n_trials, judge)
    if n_trials is None:
        run_experiment(exp2.EXPERIMENT, common, sentences=_sentences(sentences), n_pairs=n_pairs,
                       prompt_name=prompt_name)
    else:
        run_experiment(thoughts_trials.TRIALS, common, judge=judge, sentences=_sentences(sentences), n_pairs=n_pairs,
                       n_trials=n_trials, prompt_name=prompt_name)


@main.command()
@experiment_options("pyintro-prefill")
@sentences_option
@pairs_option
@click.option("--exp1", "exp1_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="An experiment-1 folder (`pyintro detect --out`) whose best layer the figure shows too.")
@trials_option
@judge_option
@answer_tokens_option
def prefill(common, sentences, n_pairs, exp1_dir, n_trials, judge, answers):
    """Experiment 3: does a word's vector, injected before a prefilled answer, make the model
    claim the answer as intended?

    Judge-free: apology vs intent openings of the reply, and Yes/No to "Did you mean to say
    that?", with no injection, the prefilled word's vector before the prefill, a random
    word's vector there, and the prefilled word's vector after the prefill. With --trials N:
    sampled replies graded by --judge MODEL (or keywords), with the transcription check.
    """
    from pyintro.experiments import prefill as exp3
    from pyintro.experiments import prefill_trials

    _no_judge_without_trials(n_trials, judge)
    if n_trials is None:
        run_experiment(exp3.EXPERIMENT, common, sentences=_sentences(sentences), n_pairs=n_pairs, exp1=exp1_dir,
                       answers=answers)
    else:
        run_experiment(prefill_trials.TRIALS, common, judge=judge, sentences=_sentences(sentences), n_pairs=n_pairs,
                       n_trials=n_trials)


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
