"""What every experiment command shares: its options (each declared here once) and how it runs.

An experiment command is a click function decorated with ``experiment_options``: it receives the
shared options as one ``Common`` value, adds its own, and calls ``run_experiment``."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import click

from pyintro.cli.options import check_out_dir, load_model, model_options, parse_spec, progress

__all__ = ["Common", "echo_summary", "experiment_options", "run_experiment"]


def _spec(kind):
    def convert(ctx, param, value):
        return None if value is None else parse_spec(value, kind)
    return convert


def _shard(ctx, param, value):
    if value is None:
        return None
    try:
        k, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not K/N") from None
    if not 1 <= k <= n:
        raise click.BadParameter(f"{value!r}: K must be between 1 and N")
    return k, n


# name -> the click option; commands pick the ones they take (``experiment_options(..., take=...)``).
OPTIONS = {
    "words": click.option("--words", default=None, help="Words: a comma list or a file with one word per line "
                          "(default: the paper's 50 concept words; 'all' for every word the experiments use)."),
    "library": click.option("--library", "library_dir", type=click.Path(file_okay=False, path_type=Path),
                            default=None, help="Concept library folder (default: pyintro's cache for this model; "
                                               "built if missing)."),
    "layers": click.option("--layers", callback=_spec(int), default=None,
                           help="Layers: START:STOP[:STEP] or a comma list; negative ones count from the end (-1: "
                                "the last). Default: all, or the experiment's few with --quick."),
    "strengths": click.option("--strengths", callback=_spec(float), default=None,
                              help="Strengths: START:STOP[:STEP] or a comma list (default: the experiment's)."),
    "quick": click.option("--quick", is_flag=True, help="A small grid that shows the experiment's effect in minutes "
                                                        "(docs/performance.md lists the times)."),
    "seed": click.option("--seed", type=int, default=0, show_default=True, help="Seed of the stimuli's draws."),
    "shard": click.option("--shard", callback=_shard, default=None,
                          help="K/N: compute only every N-th unit of work from the K-th (concepts, pairs or layers); "
                               "join the N folders with `pyintro merge`."),
    "resume": click.option("--resume", is_flag=True, help="Keep the finished rows in OUT and compute the rest."),
}


@dataclass
class Common:
    """The shared options of one experiment command, as given."""

    out_dir: Path
    resume: bool = False
    shard: Optional[tuple] = None
    words: Optional[str] = None
    library_dir: Optional[Path] = None
    layers: Optional[list] = None
    strengths: Optional[list] = None
    quick: bool = False
    seed: int = 0
    taken: tuple = ()

    def options(self) -> dict:
        """The options the experiment's ``prepare`` takes (words parsed)."""
        out = {}
        for name in self.taken:
            if name in ("shard", "resume"):
                continue
            key = "library_dir" if name == "library" else name
            out[key] = parse_words(self.words) if name == "words" else getattr(self, key)
        return out


def experiment_options(default_out: str, take=("words", "library", "layers", "strengths", "quick", "seed", "shard",
                                               "resume")):
    """The model options, the shared options named in ``take`` and ``--out``, collected into the
    command's first argument, a ``Common``."""

    def wrap(fn):
        names = {"words": "words", "library": "library_dir", "layers": "layers", "strengths": "strengths",
                 "quick": "quick", "seed": "seed", "shard": "shard", "resume": "resume"}

        @functools.wraps(fn)
        def command(**kwargs):
            common = Common(kwargs.pop("out_dir"), taken=tuple(take),
                            **{names[t]: kwargs.pop(names[t]) for t in take})
            return fn(common, **kwargs)

        f = click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                         default=Path(default_out), show_default=True,
                         help="Folder for the rows, cells, figures and summary.json.")(command)
        for t in reversed(take):
            f = OPTIONS[t](f)
        return model_options(f)

    return wrap


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


def run_experiment(exp, common: Common, judge: Optional[str] = None, **options) -> dict:
    """Load the model (and a judge model), run ``exp`` into ``common.out_dir`` and print its report."""
    from pyintro.experiments import run
    from pyintro.judge import Judge

    check_out_dir(common.out_dir, create=False)
    with load_model() as m:  # the folder is made once the model has loaded: no empty folder on failure
        judge_model = load_model(judge, own_format=True) if judge else None
        try:
            if judge_model is not None:
                options["judge"] = Judge(judge_model)
            summary = run(exp, m, check_out_dir(common.out_dir), resume=common.resume, shard=common.shard,
                          progress=progress(), **common.options(), **options)
        finally:
            if judge_model is not None:
                judge_model.close()
    echo_summary(summary, common.out_dir)
    return summary


def echo_summary(summary: dict, out_dir: Path) -> None:
    for line in summary["report"]:
        click.echo(line)
    click.echo(f"wrote {out_dir}/: " + ", ".join(summary["files"]))
