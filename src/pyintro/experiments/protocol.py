"""The shape every experiment shares. An `Experiment` is a value that says what an experiment *is*:

- its table (``Schema``): the columns of its results.csv, their types and the row key, declared
  once; parsing, reading and the resume key derive from it;
- how its work is laid out (``prepare``: stimuli, grid and vectors resolved into ``Stage``s of
  chunks, each chunk scored with the shared readouts into rows);
- how its rows are summarised (``analyse``: cell tables, the summary's head, report lines and
  figures), and its ``--quick`` settings.

Running, resuming, sharding, merging, reading and comparing are written once, here, for every
experiment: a module holds only its protocol.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from pyintro.disk import write_json
from pyintro.norms import residual_norms
from pyintro.results import Table, merge_rows, provenance, read_rows, run_chunks, sidecar, write_rows
from pyintro.stimuli import CITATION

__all__ = ["Analysis", "Experiment", "Schema", "Stage", "Work", "execute", "finish", "merge", "read_folder", "reanalyse",
           "run"]

_TYPES = {"int": int, "float": float, "str": str}


class Schema:
    """A results table: ``spec`` lists its columns in order, ``name:int`` / ``name:float`` for
    numeric ones (a cell may be empty where a column does not apply); ``key`` names the columns
    that identify a row; ``need`` is a column every table of this kind has (to recognise one)."""

    def __init__(self, spec: str, key: Sequence[str], need: str):
        self.types = {}
        for item in spec.split():
            name, _, kind = item.partition(":")
            self.types[name] = _TYPES[kind or "str"]
        self.columns = list(self.types)
        self.key_columns = tuple(key)
        self.need = need

    def key(self, row: dict) -> tuple:
        return tuple(row[c] if self.types[c] is str else self.types[c](row[c]) for c in self.key_columns)

    def parse(self, row: dict) -> dict:
        """A row read as text with its numeric cells converted (empty cells stay "")."""
        for c, t in self.types.items():
            if t is not str and row.get(c, "") != "":
                row[c] = t(row[c])
        return row

    def read(self, path) -> list[dict]:
        ints = [c for c, t in self.types.items() if t is int]
        floats = [c for c, t in self.types.items() if t is float]
        return read_rows(path, ints, floats, need=self.need)


@dataclass(frozen=True)
class Stage:
    """A list of chunks, computed in order. ``chunks(done)`` lays them out (``done``: the rows
    finished so far, by key); ``score(chunk, done)`` computes a chunk's rows; ``keys(chunk)`` are
    the keys it yields (a chunk whose keys are all done is skipped)."""

    chunks: Callable[[dict], list]
    score: Callable[[Any, dict], list[dict]]
    keys: Callable[[Any], list[tuple]]
    desc: str
    unit: str = "point"


@dataclass
class Work:
    """One run's work: ``meta`` (the sidecar's fields beside provenance: stimuli, grid, seeds),
    its ``stages``, the ``context`` the analysis needs beside the rows (JSON; kept in the
    sidecar, so a merge or a re-plot can analyse again) and how many ``units`` a shard splits."""

    meta: dict
    stages: list
    context: dict = field(default_factory=dict)
    units: int = 0  # what --shard K/N splits: concepts, pairs or layers
    prompts: list = field(default_factory=list)  # a few of its prompts' token ids (for the residual norms)


@dataclass
class Analysis:
    """What ``finish`` writes: cell tables {file: (rows, columns or None)}, the summary's head,
    report lines and figures {file: draw(path)}."""

    tables: dict
    head: dict
    report: list
    figures: dict


@dataclass(frozen=True)
class Experiment:
    """An experiment: see the module docstring. ``cells``: (table file, key columns, default
    metric), the table a quantization comparison reads; ``strength_range``: (low, high)."""

    name: str
    title: str
    schema: Schema
    same_on_resume: tuple
    prepare: Callable[..., Work]
    analyse: Callable[[list, dict], Analysis]
    quick: dict
    cells: tuple
    mode: str = "judge-free scores"
    strength_range: tuple = (None, None)  # the strengths it accepts (None: unbounded)

    def execute(self, model, work: Work, out=None, resume: bool = False, progress=None, shard=None) -> list[dict]:
        return execute(self, model, work, out, resume, progress, shard)


def execute(exp: Experiment, model, work: Work, out=None, resume: bool = False, progress=None,
            shard=None) -> list[dict]:
    """Compute ``work``'s rows, appending them to ``out`` (a CSV with its sidecar) as each chunk
    finishes; ``resume`` keeps the complete rows already there and computes only the rest."""
    context = dict(work.context, model=Path(model.path).name)
    meta = dict(provenance(model), experiment=exp.name, shard=list(shard) if shard else None, **work.meta,
                context=context, columns=exp.schema.columns)
    with Table(out, exp.schema.columns, exp.schema.key, exp.schema.parse, meta, exp.same_on_resume, resume) as table:
        for stage in work.stages:
            run_chunks(table, stage.chunks(table.done), lambda c, s=stage: s.score(c, table.done), stage.keys,
                       progress, desc=stage.desc, unit=stage.unit)
    # The work's own order (a resumed file holds its rows in the order they were first computed;
    # rows the file held beyond this work come last).
    # Every row's keys in the schema's column order, whether read back or computed now.
    done = dict(table.done)
    ordered = [done.pop(k) for stage in work.stages for c in stage.chunks(table.done) for k in stage.keys(c)
               if k in done]
    columns = exp.schema.columns
    return [{**{c: r[c] for c in columns if c in r}, **r} for r in ordered + list(done.values())]


def run(exp: Experiment, model, out_dir, resume: bool = False, shard=None, progress=None, plan=None,
        **options) -> dict:
    """``exp`` end to end into ``out_dir`` (which must exist): results.csv as it grows, then the
    cell tables, figures and summary.json. ``options`` go to ``exp.prepare``; ``plan`` (an
    estimate of the run, ``experiments.plan``) goes into the summary beside the time taken.
    Returns the summary."""
    start = time.perf_counter()
    work = exp.prepare(model, shard=shard, progress=progress, out_dir=out_dir, **options)
    rows = execute(exp, model, work, Path(out_dir) / "results.csv", resume, progress, shard)
    context = dict(work.context, model=Path(model.path).name)
    if work.prompts:  # what a strength means here: the stream's size at each layer
        context["residual_norms"] = [round(float(x), 3) for x in residual_norms(model, work.prompts[:4])]
    return finish(exp, rows, out_dir, provenance(model), context, start, plan)


def finish(exp: Experiment, rows: list, out_dir, prov: dict, context: dict, start: Optional[float] = None,
           plan: Optional[dict] = None) -> dict:
    """The cell tables, figures and summary.json of ``rows`` (a run's, or merged shards')."""
    out_dir = Path(out_dir)
    a = exp.analyse(rows, context)
    for name, (table, columns) in a.tables.items():
        write_rows(out_dir / name, table, columns)
    for name, draw in a.figures.items():
        draw(out_dir / name)
    summary = {"experiment": exp.title, "source": CITATION, "mode": context.get("mode", exp.mode), "provenance": prov,
               **a.head, "residual_norms": context.get("residual_norms"),
               "files": [*context.get("files", []), "results.csv", *a.tables, *a.figures, "summary.json"],
               "report": a.report}
    if start is not None:
        summary["elapsed_s"] = round(time.perf_counter() - start, 1)
    if plan is not None:
        summary["plan"] = dict(plan, estimate_over_elapsed=round(plan["seconds"] / summary["elapsed_s"], 2)
                               if summary.get("elapsed_s") else None)
    write_json(out_dir / "summary.json", summary)
    return summary


# -- folders: merge and re-analyse -----------------------------------------------------------------

_PROVENANCE = ("pyintro", "llama_cpp_python", "model_path", "model_sha256", "quant_type", "numerics", "prompt_format")
# Sidecar fields that may differ between the shards of one run.
_PER_SHARD = ("shard", "model_path")


def _sidecar(folder: Path) -> dict:
    side = sidecar(folder / "results.csv")
    if not side.is_file():
        raise FileNotFoundError(f"{folder} holds no results.csv.json: is it an output folder of a pyintro experiment?")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{side} is damaged; run that shard again") from None


def experiment_of(meta: dict, folder) -> Experiment:
    from pyintro.experiments import EXPERIMENTS

    name = meta.get("experiment")
    if name not in EXPERIMENTS:
        raise ValueError(f"{folder} was written by an older pyintro (its sidecar names no experiment); run it again")
    return EXPERIMENTS[name]


def read_folder(folder) -> tuple[Experiment, list[dict], dict]:
    """An output folder's experiment, rows and sidecar."""
    folder = Path(folder)
    meta = _sidecar(folder)
    exp = experiment_of(meta, folder)
    return exp, exp.schema.read(folder / "results.csv"), meta


def merge(folders: Sequence, out_dir) -> tuple[Experiment, dict]:
    """Shards of one run (folders made with ``--shard K/N``) into ``out_dir``: the rows once
    each, then the experiment's cell tables, figures and summary. Shards of different runs are
    refused, naming the field that differs; missing shards are named by number."""
    folders = [Path(d) for d in folders]
    if not folders:
        raise ValueError("no shard folders given to merge")
    metas = [_sidecar(d) for d in folders]
    exp = experiment_of(metas[0], folders[0])
    fields = list(exp.same_on_resume) + sorted(set().union(*metas) - set(exp.same_on_resume) - set(_PER_SHARD))
    for d, m in zip(folders[1:], metas[1:]):
        for k in fields:
            if m.get(k) != metas[0].get(k):
                raise ValueError(f"{d} was made with a different {k} than {folders[0]}; merge shards of one run only")
    shards = {tuple(m["shard"]) for m in metas if m.get("shard")}
    if shards:
        n = next(iter(shards))[1]
        missing = sorted(set(range(1, n + 1)) - {k for k, _ in shards})
        if missing:
            raise ValueError(f"shards {', '.join(map(str, missing))} of {n} are missing; run them (with --shard K/{n}) "
                             "and merge again")
    rows = merge_rows([exp.schema.read(d / "results.csv") for d in folders], exp.schema.key)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_rows(out_dir / "results.csv", rows, exp.schema.columns)
    meta = dict(metas[0], shard=None)
    write_json(sidecar(out_dir / "results.csv"), meta)
    for name in (meta.get("context") or {}).get("files", []):  # a run's own inputs (its vector): the same in each shard
        src = next((d / name for d in folders if (d / name).is_file()), None)
        if src is not None:
            shutil.copyfile(src, out_dir / name)
    prov = {k: meta.get(k) for k in _PROVENANCE}
    return exp, finish(exp, rows, out_dir, prov, _context(meta, folders))


def reanalyse(folder, out_dir=None) -> dict:
    """A results folder's cell tables, figures and summary.json drawn again from its rows (into
    ``out_dir``, default the folder itself), with the current analysis. Returns the summary."""
    folder = Path(folder)
    exp, rows, meta = read_folder(folder)
    prov = {k: meta.get(k) for k in _PROVENANCE}
    return finish(exp, rows, out_dir or folder, prov, _context(meta, [folder]))


def _context(meta: dict, folders: Sequence) -> dict:
    """The sidecar's context, with the residual norms the run's summary recorded: they were
    measured with the model, which a re-analysis does without."""
    context = dict(meta.get("context") or {})
    for d in folders:
        try:
            norms = json.loads((Path(d) / "summary.json").read_text()).get("residual_norms")
        except (OSError, ValueError):
            continue
        if norms:
            context["residual_norms"] = norms
            break
    return context
