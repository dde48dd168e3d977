"""Results on disk: tidy rows in a CSV that grows as work finishes (each write flushed and
fsynced) and resumes after a kill, the provenance sidecar beside it, and atomic writes.

A results file ``out.csv`` has a sidecar ``out.csv.json`` recording what made it (versions,
model, decode settings, prompts, grid). A resumed run must match the sidecar in every field
that changes a value, else it is refused with the field named.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from pyintro.disk import write_json, write_text
from pyintro.progress import Closing, Interrupted, Progress, SigintAtChunkEnd

__all__ = ["CsvAppender", "Table", "check_sidecar", "merge_rows", "provenance", "read_rows", "render_csv",
           "resume_rows", "run_chunks", "sidecar", "version", "write_rows"]


# -- CSV rows ---------------------------------------------------------------------------------


def render_csv(records: Iterable[Sequence]) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\n").writerows(records)
    return buf.getvalue()


def write_rows(path, rows: list[dict], columns: Optional[Sequence[str]] = None) -> Path:
    """All rows at once (atomic); columns default to the first row's keys."""
    columns = list(columns or rows[0])
    return write_text(path, render_csv([columns] + [[r.get(c, "") for c in columns] for r in rows]))


class CsvAppender(Closing):
    """Appends rows to a CSV, one write + flush + fsync per call; ``fresh`` starts the file
    with the header, else appends to it."""

    def __init__(self, path, columns: Sequence[str], fresh: bool):
        self.path, self.columns = Path(path), list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w" if fresh else "a", encoding="utf-8", newline="")
        if fresh:
            self._write(render_csv([self.columns]))

    def append(self, rows: list[dict]) -> None:
        if rows:
            self._write(render_csv([[r[c] for c in self.columns] for r in rows]))

    def _write(self, text: str) -> None:
        self._f.write(text)
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def convert(row: dict, ints: Iterable[str] = (), floats: Iterable[str] = ()) -> dict:
    """Numeric columns of a row read as text (empty cells stay "")."""
    for c in ints:
        if row.get(c, "") != "":
            row[c] = int(row[c])
    for c in floats:
        if row.get(c, "") != "":
            row[c] = float(row[c])
    return row


def _records(text: str) -> list[list[str]]:
    """CSV records, read one by one: broken quoting at the end (a killed write) stops there."""
    records = []
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        try:
            records.append(next(reader))
        except (StopIteration, csv.Error):
            return records


def read_rows(path, ints: Iterable[str] = (), floats: Iterable[str] = (), need: str = "b") -> list[dict]:
    """A results CSV as a list of dicts, with the named columns converted to numbers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    records = _records(path.read_text(encoding="utf-8"))
    if len(records) < 2 or need not in records[0]:
        raise ValueError(f"{path} is not a pyintro results table (no rows, or no '{need}' column)")
    header = records[0]
    try:
        return [convert(dict(zip(header, r)), ints, floats) for r in records[1:] if len(r) == len(header)]
    except ValueError:
        raise ValueError(f"{path} has a non-numeric value in a numeric column; was it edited by hand?") from None


def resume_rows(out: Path, columns: Sequence[str], parse: Callable[[dict], dict]) -> list[dict]:
    """The complete rows already in ``out``. A record cut off by a kill is dropped and the file
    rewritten without it; a file with other columns is refused."""
    if not out.exists():
        return []
    text = out.read_text(encoding="utf-8")
    records = _records(text)
    if not records:
        return []
    header, body = records[0], records[1:]
    if header != list(columns):
        if not body and not text.endswith("\n"):
            body = []  # killed while writing the header
        else:
            raise ValueError(f"{out} does not have the columns of this run; choose another output folder (--out), "
                             "or start afresh without --resume")
    rows = []
    for i, fields in enumerate(body):
        last = i == len(body) - 1
        if len(fields) != len(columns) or (last and not text.endswith("\n")):
            break
        try:
            rows.append(parse(dict(zip(columns, fields))))
        except ValueError:
            break
    clean = render_csv([list(columns)] + [[r[c] for c in columns] for r in rows])
    if clean != text:  # drop what an interrupted write left behind
        write_text(out, clean)
    return rows


def merge_rows(tables: list[list[dict]], key: Callable[[dict], tuple]) -> list[dict]:
    """Rows of several tables with the same columns, each key once (the first occurrence)."""
    seen, merged = set(), []
    columns = list(tables[0][0]) if tables and tables[0] else []
    for i, rows in enumerate(tables):
        if rows and list(rows[0]) != columns:
            raise ValueError(f"table {i + 1} has other columns than the first; were they made by the same run?")
        for r in rows:
            k = key(r)
            if k not in seen:
                seen.add(k)
                merged.append(r)
    return merged


# -- provenance ---------------------------------------------------------------------------------


def version(dist: str) -> Optional[str]:
    for name in (dist, dist.replace("_", "-")):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def provenance(model) -> dict:
    """What produced a result: versions, the model file, the prompt format, and the decode
    settings and build (CPU features) that a point's value depends on."""
    return {
        "pyintro": version("pyintro"), "llama_cpp_python": version("llama_cpp_python"),
        "model_path": str(model.path), "model_sha256": model.sha256, "quant_type": model.quant_type,
        "numerics": model.numerics(), "prompt_format": model.prompt_format.describe(),
    }


def sidecar(out) -> Path:
    return Path(str(out) + ".json")


def check_sidecar(out, meta: dict, keys: Sequence[str]) -> None:
    """Refuse to resume into ``out`` if its sidecar differs from ``meta`` in one of ``keys``."""
    side = sidecar(out)
    if not side.exists():
        return
    try:
        old = json.loads(side.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{side} is damaged; choose another output folder (--out), or start afresh without "
                         "--resume") from None
    if old.get("experiment") and meta.get("experiment") and old["experiment"] != meta["experiment"]:
        raise ValueError(f"{Path(out).parent} holds a `{old['experiment']}` run, not a `{meta['experiment']}` run; "
                         "choose another output folder (--out)")
    for k in keys:
        if old.get(k) != meta.get(k):
            raise ValueError(f"{out} holds results with a different {_difference(k, old.get(k), meta.get(k))}; "
                             "resume with the same settings, or choose another output folder (--out)")


def _difference(key: str, old, new) -> str:
    """Which field differs, e.g. "numerics.n_batch (512, now 56)"."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _difference(f"{key}.{k}", old.get(k), new.get(k))
    shown = [json.dumps(x) for x in (old, new)]
    if max(len(t) for t in shown) > 60:
        return key
    return f"{key} ({shown[0]}, now {shown[1]})"


# -- a results table that grows as work finishes ----------------------------------------------


class Table(Closing):
    """The rows of one run, keyed, and (with ``out``) their CSV and sidecar.

    ``resume=False`` starts ``out`` afresh; ``resume=True`` keeps the complete rows already in
    it (after checking the sidecar's ``same_on_resume`` fields against ``meta``) so that only the
    missing keys are computed. ``add`` appends finished rows at once (flush + fsync).
    """

    def __init__(self, out, columns: Sequence[str], key: Callable[[dict], tuple], parse: Callable[[dict], dict],
                 meta: dict, same_on_resume: Sequence[str], resume: bool = False):
        self.out, self.key, self.done = (Path(out) if out is not None else None), key, {}
        self._writer = None
        if self.out is None:
            return
        if resume:
            check_sidecar(self.out, meta, same_on_resume)
            self.done = {key(r): r for r in resume_rows(self.out, columns, parse)}
        fresh = not (resume and self.out.exists() and self.out.stat().st_size > 0)
        self._writer = CsvAppender(self.out, columns, fresh=fresh)
        write_json(sidecar(self.out), meta)

    def missing(self, keys: Iterable[tuple]) -> int:
        return sum(k not in self.done for k in keys)

    def add(self, rows: list[dict]) -> int:
        """Keep (and write) the rows not done yet; returns how many."""
        new = [r for r in rows if self.key(r) not in self.done]
        if self._writer is not None:
            self._writer.append(new)
        for r in new:
            self.done[self.key(r)] = r
        return len(new)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def run_chunks(table: Table, chunks: list, compute: Callable, keys: Callable, progress=None,
               desc: str = "points", unit: str = "point") -> None:
    """Compute every chunk with something missing from ``table`` (``keys(chunk)``: the keys it
    yields; ``compute(chunk)``: its rows), adding rows as each chunk finishes. Ctrl-C stops at
    the end of the chunk in flight with ``Interrupted`` (the finished chunks are saved)."""
    todo = [(c, table.missing(keys(c))) for c in chunks]
    todo = [(c, n) for c, n in todo if n]
    total = sum(n for _, n in todo)
    with Progress(progress, total, desc, unit) as bar, SigintAtChunkEnd(bar) as interrupt:
        for chunk, _ in todo:
            bar.advance(table.add(compute(chunk)))
            if interrupt.requested and bar.done < total:
                raise Interrupted(bar.done, total, table.out, unit + "s")
