"""`pyintro slurm EXPERIMENT [its options] --shards N ...`: the experiment as a Slurm job array
(one shard per task) and a merge job (pyintro.slurm writes and submits them; docs/cluster.md).

Bad input is one line and exit 2, before anything is written: an unknown or unshardable
experiment, options the experiment refuses (parsed by the experiment's own command), options the
scripts set themselves, --shards below 1 or above the experiment's shardable units (the
"shard_units" of `pyintro EXPERIMENT ... --plan --json`, run as a subprocess), a --time Slurm
cannot parse, and --submit where sbatch is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import click
from click.core import ParameterSource

from pyintro.cli import main

# Options of the experiment that the scripts set, and why the user may not.
_SET_BY_SLURM = {
    "--shard": "each array task gets its own --shard K/N",
    "--resume": "every task runs with --resume",
    "--threads": "threads come from --cpus-per-task (SLURM_CPUS_PER_TASK)",
    "--plan": "pyintro slurm runs the plan itself (saved in OUT/slurm/plan.json)",
    "--json": "it goes with --plan, which pyintro slurm runs itself",
    "--job-time": "it goes with --plan; for the time of each task give pyintro slurm --time",
}


class BadInput(click.ClickException):
    """One line, exit 2, nothing written."""

    exit_code = 2


class _OneLineCommand(click.Command):
    """Click's usage errors as one line (no usage text), exit 2."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            raise BadInput(e.format_message()) from None


def _option(cmd: click.Command, name: str) -> Optional[click.Parameter]:
    return next((p for p in cmd.params if name in getattr(p, "opts", ())), None)


def _shardable(cmd: click.Command) -> bool:
    """Takes --shard, --resume and a folder --out (not a file, as `pyintro sweep`'s)."""
    out = _option(cmd, "--out")
    return (_option(cmd, "--shard") is not None and _option(cmd, "--resume") is not None and out is not None
            and getattr(out.type, "dir_okay", True))


def _experiment(ctx: click.Context, name: str, options: tuple) -> click.Command:
    """The experiment's command, once it has parsed ``options`` as it would in a task."""
    group = ctx.parent.command
    cmd = group.get_command(ctx.parent, name)
    shardable = sorted(n for n in group.list_commands(ctx.parent) if n != "slurm"
                       and _shardable(group.get_command(ctx.parent, n)))
    if cmd is None or not _shardable(cmd):
        what = "not a pyintro command" if cmd is None else "not a shardable experiment"
        raise BadInput(f"{name!r} is {what}: pyintro slurm runs {', '.join(shardable)}")
    try:
        sub = cmd.make_context(name, list(options))
    except click.exceptions.Exit:
        raise BadInput(f"give pyintro {name}'s options, not --help (see `pyintro {name} --help`)") from None
    except click.UsageError as e:
        raise BadInput(f"pyintro {name}: {e.format_message()}") from None
    for p in cmd.params:
        given = [o for o in p.opts if o in _SET_BY_SLURM]
        if given and sub.get_parameter_source(p.name) is ParameterSource.COMMANDLINE:
            raise BadInput(f"remove {given[0]} from the options of pyintro {name}: {_SET_BY_SLURM[given[0]]}")
    return cmd


def _plan(name: str, options: tuple) -> dict:
    """`pyintro EXPERIMENT OPTIONS --plan --json`, run as a subprocess: its JSON object."""
    proc = subprocess.run([sys.executable, "-m", "pyintro.cli", name, *options, "--plan", "--json"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
        why = errors[-1][len("Error:"):].strip() if errors else f"exit status {proc.returncode}"
        raise BadInput(f"pyintro {name} --plan (run to check --shards) failed: {why}")
    start = proc.stdout.find("{")  # the JSON object, after any line a library printed first
    try:
        plan = json.loads(proc.stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        plan = None
    if isinstance(plan, dict):
        return plan
    raise BadInput(f"pyintro {name} --plan --json printed no JSON object; run it yourself to see why")


def _check_plan(plan: dict, name: str, shards: int, seconds: Optional[int]) -> None:
    units = plan.get("shard_units")
    if isinstance(units, int) and shards > units:
        raise BadInput(f"--shards {shards} is more than the {units} units pyintro {name} shards over with these "
                       f"options: use --shards {units} or fewer")
    est = plan.get("seconds")
    if seconds and isinstance(est, (int, float)) and isinstance(units, int) and units > 0:
        from pyintro.slurm import format_time

        longest = est * -(-units // shards) / units  # the largest shard has ceil(units / shards) units
        if longest <= seconds:
            return
        click.echo(f"Warning: the plan estimates {format_time(longest)} for the largest shard on this machine, more than "
                   f"--time {format_time(seconds)}: use more shards or a longer --time.", err=True)


@main.command(cls=_OneLineCommand, context_settings={"ignore_unknown_options": True})
@click.argument("experiment")
@click.argument("options", nargs=-1, type=click.UNPROCESSED, metavar="[EXPERIMENT_OPTIONS]...")
@click.option("--shards", type=int, required=True, help="Array tasks: the experiment's --shard K/N for K = 1..N.")
@click.option("--time", "time_limit", default=None, envvar="PYINTRO_SLURM_TIME",
              help="Each task's time limit, in Slurm's formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S "
                   "(default: the partition's). [env PYINTRO_SLURM_TIME]")
@click.option("--partition", default=None, envvar="PYINTRO_SLURM_PARTITION",
              help="Slurm partition of both jobs (default: the cluster's). [env PYINTRO_SLURM_PARTITION]")
@click.option("--sbatch-arg", "sbatch_args", multiple=True, envvar="PYINTRO_SLURM_SBATCH_ARGS",
              help="An extra #SBATCH option for both jobs, e.g. --sbatch-arg=--account=abc (repeatable). "
                   "[env PYINTRO_SLURM_SBATCH_ARGS, space-separated]")
@click.option("--cpus-per-task", type=int, default=1, show_default=True, envvar="PYINTRO_SLURM_CPUS",
              help="CPUs per task; pyintro runs --threads $SLURM_CPUS_PER_TASK. [env PYINTRO_SLURM_CPUS]")
@click.option("--gpus", type=int, default=0, show_default=True, envvar="PYINTRO_SLURM_GPUS",
              help="GPUs per task (--gres=gpu:N); tasks then run with --gpu-layers -1 unless the options set "
                   "--gpu-layers. [env PYINTRO_SLURM_GPUS]")
@click.option("--submit", is_flag=True, help="Submit with sbatch (else print the sbatch line to run).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder on a filesystem every node sees (default: pyintro-EXPERIMENT).")
@click.pass_context
def slurm(ctx, experiment, options, shards, time_limit, partition, sbatch_args, cpus_per_task, gpus, submit,
          out_dir):
    """Run EXPERIMENT (with its options) as a Slurm job array, one shard per task, and a merge job.

    Writes OUT/slurm/array.sh (task K: `pyintro EXPERIMENT ... --shard K/N --resume --out
    OUT/shards/K`) and OUT/slurm/merge.sh (after every task succeeds: the merged rows, figures and
    summary.json in OUT). With --submit, submits both; otherwise prints the line that does.
    A requeued or resubmitted task resumes its shard. Example:

        pyintro slurm detect --quick --shards 4 --time 1:00:00 --submit
    """
    from pyintro import slurm as sl
    from pyintro.cli.options import check_out_dir
    from pyintro.disk import write_json

    if shards < 1:
        raise BadInput(f"--shards must be 1 or more, got {shards}")
    if cpus_per_task < 1 or gpus < 0:
        raise BadInput("--cpus-per-task must be 1 or more, --gpus 0 or more")
    _experiment(ctx, experiment, options)
    out_dir = out_dir or Path(f"pyintro-{experiment}")
    try:
        seconds = sl.parse_time(time_limit) if time_limit is not None else None
    except ValueError as e:
        raise BadInput(f"--time {e}") from None
    try:
        sbatch = sl.find_sbatch() if submit else None
        check_out_dir(out_dir, create=False)
        here = Path(sys.executable).parent  # this pyintro's folder, put first on the jobs' PATH
        job = sl.ArrayJob(experiment, options=tuple(options), shards=shards, out=out_dir, workdir=Path.cwd(),
                          time=time_limit, partition=partition, sbatch_args=tuple(sbatch_args), gpus=gpus,
                          cpus_per_task=cpus_per_task,
                          bin_dir=here if (here / "pyintro").exists() else None)
    except (ValueError, OSError) as e:
        raise BadInput(" ".join(str(e).split())) from None
    plan = _plan(experiment, options)
    _check_plan(plan, experiment, shards, seconds)
    array_path, merge_path = sl.write(job)
    write_json(job.out / "slurm" / "plan.json", plan)
    click.echo(f"wrote {array_path} ({shards} tasks) and {merge_path}")
    if not submit:
        click.echo("submit them with:")
        click.echo(f"  {sl.submit_line(job)}")
        return
    jobs = sl.submit(job, sbatch)
    click.echo(f"submitted array job {jobs['array']} ({shards} tasks) and merge job {jobs['merge']} (runs when every "
               f"task has succeeded); logs in {job.out}/logs, results in {job.out}")
