"""An experiment as a Slurm job array: one shard per array task, then a merge job.

``OUT`` (on a filesystem every node sees) ends up holding::

    slurm/array.sh      the job array: task K runs `pyintro EXPERIMENT ... --shard K/N --resume
                        --out OUT/shards/K` and, when it exits 0, marks slurm/done/K
    slurm/merge.sh      the merge job (submitted with --dependency=afterok on the array): checks
                        that every shard is marked done, then merges OUT/shards into OUT
    slurm/jobs.json     the job ids, after a submission
    logs/shard-K.out    each task's output and errors (appended to by a requeued or resubmitted
    logs/shard-K.err    task), and logs/merge.out, logs/merge.err
    shards/K/           shard K's rows (resumable), its sidecar and its own summary
    results.csv ...     the merged rows, figures and summary.json, written by the merge job

**Shard folders are kept after the merge**: they are the merged result's provenance and let it
be merged again; remove OUT/shards yourself when you no longer need it.

A task that Slurm requeues (preemption, node failure; the array script asks for ``--requeue``)
or that you resubmit (``sbatch --array=K OUT/slurm/array.sh``) runs the same command into the
same folder with ``--resume``: it keeps the rows already flushed and computes the rest.

No click here: the command is ``pyintro.cli.slurm``.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pyintro.disk import write_json

TIME_FORMATS = "M, M:S, H:M:S, D-H, D-H:M or D-H:M:S"
# Slurm's --time formats (sbatch(1)); like Slurm, fields are not range-checked ("90" is 90 minutes).
_TIME = re.compile(r"([0-9]+)-([0-9]+)(?::([0-9]+)(?::([0-9]+))?)?|([0-9]+)(?::([0-9]+)(?::([0-9]+))?)?")
_PARTITION = re.compile(r"[A-Za-z0-9_.,-]+")
_UNSAFE_PATH = re.compile(r"[\s%\"'\\$`]")  # characters an #SBATCH line or Slurm's %-patterns would misread


def parse_time(text: str) -> int:
    """The seconds in a Slurm time limit, in one of Slurm's formats: minutes, minutes:seconds,
    hours:minutes:seconds, days-hours, days-hours:minutes or days-hours:minutes:seconds.
    Anything else raises ValueError (one line that lists the formats), and so do the limits
    Slurm reads as "no limit" (0, INFINITE, UNLIMITED): leave the limit out for that."""
    if isinstance(text, str) and text.strip().lower() in ("infinite", "unlimited", "-1"):
        raise ValueError(f"{text!r} means no limit to Slurm: leave it out for the partition's default, or give the "
                         "limit one shard needs (e.g. 2:00:00)")
    m = _TIME.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not a Slurm time limit: use {TIME_FORMATS} (e.g. 2:00:00 for two hours, "
                         "1-12 for a day and a half)")
    days, hours, minutes, seconds, a, b, c = (int(x) if x else 0 for x in m.groups())
    if m.group(1) is not None:
        total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    elif m.group(7) is not None:  # H:M:S
        total = a * 3600 + b * 60 + c
    else:  # M or M:S
        total = a * 60 + b
    if total == 0:
        raise ValueError(f"{text!r} is a time limit of 0, which Slurm reads as no limit: give the limit one shard "
                         "needs (e.g. 2:00:00), or leave it out for the partition's default")
    return total


def format_time(seconds: float) -> str:
    """Seconds as Slurm writes a time limit: H:MM:SS, or D-HH:MM:SS from one day on (rounded up)."""
    s = max(0, int(-(-seconds // 1)))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else f"{h}:{m:02d}:{s:02d}"


def check_partition(name: str) -> str:
    if not _PARTITION.fullmatch(name or ""):
        raise ValueError(f"{name!r} is not a partition name: use letters, digits, '_', '.', '-' (a comma list "
                         "for several)")
    return name


def check_sbatch_arg(arg: str) -> str:
    """One extra #SBATCH line's option, e.g. "--mem=8G" or "--account=abc"."""
    if not isinstance(arg, str) or not arg.startswith("-") or any(ch in arg for ch in "\n\r\0"):
        raise ValueError(f"{arg!r} is not an sbatch option: give one option per --sbatch-arg, starting with '-' "
                         "(e.g. --sbatch-arg=--mem=8G)")
    return arg.strip()


def check_path(path: Path, what: str) -> Path:
    """An absolute path that #SBATCH lines and Slurm's %-patterns take as it is."""
    path = Path(path).absolute()
    if _UNSAFE_PATH.search(str(path)):
        raise ValueError(f"{what} {path} holds a space, quote, '$', '\\' or '%', which #SBATCH lines cannot carry; "
                         "use a path without them")
    return path


@dataclass(frozen=True)
class ArrayJob:
    """What to run: ``pyintro EXPERIMENT OPTIONS`` in ``shards`` array tasks, results in ``out``.

    options:      the experiment's own options as the user wrote them (without --shard,
                  --resume, --out, --threads: the scripts set those).
    workdir:      where the jobs start (relative paths in ``options`` resolve there).
    cpus_per_task: each task's CPUs, passed to pyintro as --threads $SLURM_CPUS_PER_TASK.
    gpus:         GPUs per task (--gres=gpu:N); with any, tasks run with --gpu-layers -1
                  unless ``options`` set --gpu-layers.
    bin_dir:      put first on the jobs' PATH (the folder of the pyintro that wrote them).
    """

    experiment: str
    options: tuple = ()
    shards: int = 1
    out: Path = Path("pyintro-slurm")
    workdir: Path = Path(".")
    time: Optional[str] = None
    partition: Optional[str] = None
    sbatch_args: tuple = ()
    gpus: int = 0
    cpus_per_task: int = 1
    bin_dir: Optional[Path] = None

    def __post_init__(self):
        if not isinstance(self.shards, int) or self.shards < 1:
            raise ValueError(f"shards must be 1 or more, got {self.shards!r}")
        if self.cpus_per_task < 1 or self.gpus < 0:
            raise ValueError("cpus_per_task must be 1 or more and gpus 0 or more")
        if self.time is not None:
            parse_time(self.time)
        if self.partition is not None:
            check_partition(self.partition)
        for a in self.sbatch_args:
            check_sbatch_arg(a)
        object.__setattr__(self, "out", check_path(self.out, "the output folder"))
        object.__setattr__(self, "workdir", check_path(self.workdir, "the working folder"))

    @property
    def array_path(self) -> Path:
        return self.out / "slurm" / "array.sh"

    @property
    def merge_path(self) -> Path:
        return self.out / "slurm" / "merge.sh"

    def task_line(self) -> str:
        """Task K's command line in the array script: the user's words quoted, and $K, $OUT and
        $SLURM_CPUS_PER_TASK left for the shell to expand."""
        words = " ".join(shlex.quote(w) for w in ("pyintro", self.experiment, *self.options))
        line = (f'{words} --shard "$K/{self.shards}" --resume --out "$OUT/shards/$K" '
                '--threads "${SLURM_CPUS_PER_TASK:-1}"')
        if self.gpus and not any(o == "--gpu-layers" or o.startswith("--gpu-layers=") for o in self.options):
            line += " --gpu-layers -1"
        return line


def _head(job: ArrayJob, name: str, lines: list[str], log: str, what: str) -> list[str]:
    out = ["#!/bin/bash", f"# {what}", "# Written by `pyintro slurm`; see docs/cluster.md.", f"#SBATCH --job-name={name}",
           *lines]
    if job.time:
        out.append(f"#SBATCH --time={job.time.strip()}")
    if job.partition:
        out.append(f"#SBATCH --partition={job.partition}")
    out += [f"#SBATCH --chdir={job.workdir}", f"#SBATCH --output={job.out}/logs/{log}.out",
            f"#SBATCH --error={job.out}/logs/{log}.err", "#SBATCH --open-mode=append"]
    out += [f"#SBATCH {a.strip()}" for a in job.sbatch_args]
    out += ["set -euo pipefail"]
    if job.bin_dir is not None:
        out.append(f"export PATH={shlex.quote(str(job.bin_dir))}:\"$PATH\"  # the pyintro that wrote this script")
    out.append(f"OUT={shlex.quote(str(job.out))}")
    return out


def array_script(job: ArrayJob) -> str:
    """The job array's script: task K computes shard K of N into OUT/shards/K, resuming what a
    previous run of the same task left there, and marks OUT/slurm/done/K when it succeeds."""
    n = job.shards
    lines = [f"#SBATCH --array=1-{n}", f"#SBATCH --cpus-per-task={job.cpus_per_task}", "#SBATCH --requeue"]
    if job.gpus:
        lines.append(f"#SBATCH --gres=gpu:{job.gpus}")
    out = _head(job, f"pyintro-{job.experiment}", lines, "shard-%a",
                f"pyintro {job.experiment} in {n} shards, one per array task. Submit with merge.sh: "
                f"jid=$(sbatch --parsable {job.array_path}) && sbatch --dependency=afterok:${{jid%%;*}} {job.merge_path}")
    out += [
        "K=${SLURM_ARRAY_TASK_ID:?submit this script with sbatch: it is a job array}",
        f'echo "pyintro slurm: shard $K/{n}, job ${{SLURM_ARRAY_JOB_ID:-?}}_$K on $(hostname), '
        'restart ${SLURM_RESTART_COUNT:-0}, $(date -Is)"',
        'rm -f "$OUT/slurm/done/$K"',
        job.task_line(),
        'touch "$OUT/slurm/done/$K"',
        f'echo "pyintro slurm: shard $K/{n} done, $(date -Is)"',
    ]
    return "\n".join(out) + "\n"


def merge_script(job: ArrayJob) -> str:
    """The merge job's script: refuses (exit 1, naming them) while shards are not marked done,
    else merges OUT/shards into OUT (rows, figures, summary.json), keeping the shard folders."""
    n = job.shards
    out = _head(job, f"pyintro-{job.experiment}-merge", ["#SBATCH --cpus-per-task=1"], "merge",
                f"Merges the {n} shards of pyintro {job.experiment} (run after array.sh succeeds).")
    out += [
        "missing=()",
        f'for k in $(seq 1 {n}); do [[ -e "$OUT/slurm/done/$k" ]] || missing+=("$k"); done',
        'if (( ${#missing[@]} )); then',
        '    list=$(IFS=,; echo "${missing[*]}")',
        f'    echo "pyintro slurm: shard(s) $list of {n} have not finished; rerun them with: '
        'sbatch --array=$list $OUT/slurm/array.sh" >&2',
        "    exit 1",
        "fi",
    ]
    out.append('pyintro merge "$OUT/shards" --out "$OUT"')
    out.append(f'echo "pyintro slurm: merged {n} shards into $OUT; the shard folders stay in $OUT/shards '
               '(remove them when you no longer need them)"')
    return "\n".join(out) + "\n"


def write(job: ArrayJob) -> tuple[Path, Path]:
    """Both scripts, and the folders the jobs write to (OUT/logs, OUT/shards, OUT/slurm/done)."""
    for d in (job.out / "slurm" / "done", job.out / "logs", job.out / "shards"):
        d.mkdir(parents=True, exist_ok=True)
    for path, text in ((job.array_path, array_script(job)), (job.merge_path, merge_script(job))):
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
    return job.array_path, job.merge_path


def submit_line(job: ArrayJob) -> str:
    """The shell line that submits the array, then the merge job after it."""
    return (f"jid=$(sbatch --parsable {job.array_path}) && "
            f"sbatch --dependency=afterok:${{jid%%;*}} {job.merge_path}")


def find_sbatch() -> str:
    """The path of sbatch, or a one-line error that says what to do."""
    path = shutil.which("sbatch")
    if path is None:
        raise FileNotFoundError("sbatch is not on PATH: run this on a Slurm login node, or leave out --submit to "
                                "write the scripts only")
    return path


def _sbatch(args: list[str]) -> str:
    """Runs sbatch --parsable; returns the job id (what comes before ';cluster')."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True)
    except OSError as e:
        raise RuntimeError(f"could not run {args[0]}: {e.strerror or e}") from None
    out = proc.stdout.strip()
    if proc.returncode != 0 or not out:
        err = " ".join((proc.stderr or proc.stdout or f"exit status {proc.returncode}").split())
        raise RuntimeError(f"sbatch refused {args[-1]}: {err}")
    return out.splitlines()[-1].split(";")[0].strip()


def submit(job: ArrayJob, sbatch: Optional[str] = None) -> dict:
    """Submits the written scripts: the array, then the merge job with --dependency=afterok on
    it. Returns (and writes to OUT/slurm/jobs.json) {"array": id, "merge": id, ...}."""
    sbatch = sbatch or find_sbatch()
    array_id = _sbatch([sbatch, "--parsable", str(job.array_path)])
    try:
        merge_id = _sbatch([sbatch, "--parsable", f"--dependency=afterok:{array_id}", str(job.merge_path)])
    except RuntimeError as e:
        raise RuntimeError(f"submitted the array as job {array_id}, but {e}; submit the merge with: "
                           f"sbatch --dependency=afterok:{array_id} {job.merge_path}") from None
    jobs = {"array": array_id, "merge": merge_id, "shards": job.shards, "experiment": job.experiment,
            "options": list(job.options)}
    write_json(job.out / "slurm" / "jobs.json", jobs)
    return jobs
