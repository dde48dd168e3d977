"""What every experiment command shares: its options (each declared here once) and how it runs.

An experiment command is a click function decorated with ``experiment_options``: it receives the
shared options as one ``Common`` value, adds its own, and calls ``run_experiment``."""

from __future__ import annotations

import functools
import json
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
# Options that several experiments take, each declared here once.
answer_tokens_option = click.option(
    "--answer-tokens", "answers", default="default", show_default=True,
    help="The tokens of b = logit(Yes) - logit(No): default (one token each, 'Yes'/'No', space-led in a raw "
         "transcript), pooled (every single-token spelling), or YES,.../NO,... (e.g. 'Yes,yes/No,no').")
trials_option = click.option("--trials", "n_trials", type=click.IntRange(min=1), default=None,
                             help="Sample N answers per cell at temperature 1 and grade them (the paper's way) "
                                  "instead of the judge-free scores.")
judge_option = click.option("--judge", default=None,
                            help="With --trials: a GGUF model (path or alias) that grades the answers with the "
                                 "paper's grader prompts (default: keyword rules).")
PLAN_OPTIONS = [
    click.option("--plan", "plan_only", is_flag=True,
                 help="Print what the run will cost (cells, rows, token rows, memory, wall time on this machine, from "
                      "a few seconds of calibration decodes) and stop."),
    click.option("--job-time", default=None, help="With --plan: a wall time per job (e.g. 2h, 45m, 1:30:00); the plan "
                                                  "says how many shards to use."),
    click.option("--json", "as_json", is_flag=True, help="With --plan: print the plan as JSON."),
]


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
    plan_only: bool = False
    job_time: Optional[str] = None
    as_json: bool = False

    def options(self) -> dict:
        """The options the experiment's ``prepare`` takes (words parsed: a bad list is a usage error)."""
        from pyintro.concepts import parse_words

        out = {}
        for name in self.taken:
            if name in ("shard", "resume"):
                continue
            key = "library_dir" if name == "library" else name
            out[key] = getattr(self, key)
        if "words" in self.taken and self.words is not None:
            try:
                out["words"] = parse_words(self.words)
            except ValueError as e:
                raise click.BadParameter(str(e), param_hint="--words") from None
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
            common = Common(kwargs.pop("out_dir"), taken=tuple(take), plan_only=kwargs.pop("plan_only"),
                            job_time=kwargs.pop("job_time"), as_json=kwargs.pop("as_json"),
                            **{names[t]: kwargs.pop(names[t]) for t in take})
            return fn(common, **kwargs)

        f = click.option("--out", "out_dir", type=click.Path(path_type=Path),
                         default=Path(default_out), show_default=True,
                         help="Folder for the rows, cells, figures and summary.json.")(command)
        for option in reversed(PLAN_OPTIONS):
            f = option(f)
        for t in reversed(take):
            f = OPTIONS[t](f)
        return model_options(f)

    return wrap


def run_experiment(exp, common: Common, judge: Optional[str] = None, **options) -> Optional[dict]:
    """Load the model (and a judge model), then print ``exp``'s plan (``--plan``), or run it into
    ``common.out_dir`` and print its report. The plan of a run is kept in its summary.json, beside
    the time it took. Whatever can be checked without the model is checked first (exit 2), and a
    run that fails before its first row leaves no folder behind."""
    from pyintro.experiments.plan import parse_duration

    try:
        job = parse_duration(common.job_time) if common.job_time else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--job-time") from None
    if job is not None and not common.plan_only:
        raise click.UsageError("--job-time goes with --plan")
    if not common.plan_only:
        _check_folder(exp, common.out_dir)
    _check_strengths(exp, common.strengths)
    _check_layers(common.layers)
    options = dict(common.options(), **options)
    made = not common.out_dir.exists()
    try:
        return _load_and_run(exp, common, judge, job, options)
    except BaseException:
        if made:
            _remove_if_empty(common.out_dir)
        raise


def _load_and_run(exp, common: Common, judge, job, options) -> Optional[dict]:
    from pyintro.experiments import run
    from pyintro.experiments.plan import plan
    from pyintro.judge import Judge

    with load_model() as m:  # the folder is made once the model has loaded
        judge_model = load_model(judge, own_format=True) if judge else None
        try:
            if judge_model is not None:
                options["judge"] = Judge(judge_model)
            cost = plan(exp, m, job_time=job, shard=common.shard, **options)
            if common.plan_only:
                click.echo(json.dumps(cost.as_dict(), indent=2) if common.as_json else "\n".join(cost.lines()))
                return None
            summary = run(exp, m, check_out_dir(common.out_dir), resume=common.resume, shard=common.shard,
                          progress=progress(), plan=cost.as_dict(), **options)
        finally:
            if judge_model is not None:
                judge_model.close()
    echo_summary(summary, common.out_dir)
    return summary


def _check_folder(exp, out_dir: Path) -> None:
    """Refuse an --out that cannot be written, or that holds another experiment's run."""
    try:
        check_out_dir(out_dir, create=False)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--out") from None
    side = out_dir / "results.csv.json"
    if side.is_file():
        try:
            held = json.loads(side.read_text()).get("experiment")
        except (json.JSONDecodeError, AttributeError):
            held = None
        if held and held != exp.name:
            raise click.BadParameter(f"{out_dir} holds a `{held}` run, not a `{exp.name}` run; choose another --out",
                                     param_hint="--out")


def _check_strengths(exp, strengths) -> None:
    from pyintro.injection import Strengths

    if strengths is None:
        return
    try:
        Strengths.of(strengths, *exp.strength_range)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--strengths") from None


def _check_layers(layers) -> None:
    """Refuse --layers outside the model file's blocks, read from its header (no weights loaded)."""
    if not layers:
        return
    from pyintro.files import header, resolve_model

    opts = click.get_current_context().meta.get("pyintro.model", {})
    try:
        n_layer = header(resolve_model(opts.get("model"))).get("n_layer")
    except (ValueError, OSError):
        return  # the model's own load says what is wrong with the file
    if n_layer:
        from pyintro.injection import Layers

        try:
            Layers(layers, n_layer)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--layers") from None


def _remove_if_empty(folder: Path) -> None:
    """Remove a folder this run made if no result row reached it."""
    import shutil

    results = folder / "results.csv"
    if folder.is_dir() and (not results.exists() or len(results.read_text().splitlines()) <= 1):
        shutil.rmtree(folder, ignore_errors=True)


def echo_summary(summary: dict, out_dir: Path) -> None:
    for line in summary["report"]:
        click.echo(line)
    click.echo(f"wrote {out_dir}/: " + ", ".join(summary["files"]))
