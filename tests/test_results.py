"""pyintro.results and pyintro.progress without a model: atomic writes, the growing table,
resume checks and progress reporting."""

import json
import math

import numpy as np
import pytest

from pyintro.progress import Interrupted, Progress
from pyintro.disk import atomic_path, write_json, write_text
from pyintro.results import Table, check_sidecar, read_rows, run_chunks, sidecar

COLUMNS = ["k", "v"]


def parse(row):
    return {"k": int(row["k"]), "v": float(row["v"])}


def test_atomic_path_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.txt"
    write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old\n" and not list(tmp_path.glob("*.tmp"))
    write_text(path, "new\n")
    assert path.read_text() == "new\n"


def _write_many(args):
    import time

    path, i, start = args
    while time.time() < start:  # the writers start together, once every process is up
        time.sleep(0.001)
    while time.time() < start + 1:
        write_text(path, f"writer {i}\n" * 100)


def test_processes_writing_one_file_at_once_each_rename_a_whole_file(tmp_path):
    # Slurm array tasks that start together all fill the same concept cache: with one shared
    # temporary name, about 20% of such writes failed here (a writer's temporary file renamed
    # away by another's).
    import multiprocessing
    import time

    path, start = tmp_path / "index.json", time.time() + 5
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_write_many, [(path, i, start) for i in range(4)])
    text = path.read_text()
    assert text in {f"writer {i}\n" * 100 for i in range(4)} and not list(tmp_path.glob("*.tmp"))


def test_table_appends_resumes_and_refuses_another_run(tmp_path):
    out = tmp_path / "t.csv"
    meta = {"model_sha256": "abc", "numerics": {"n_batch": 56}}
    chunks = [[0, 1], [2, 3], [4, 5]]
    compute = lambda c: [{"k": k, "v": k / 2} for k in c]  # noqa: E731
    with Table(out, COLUMNS, lambda r: (r["k"],), parse, meta, ["model_sha256", "numerics"]) as t:
        run_chunks(t, chunks[:2], compute, lambda c: [(k,) for k in c], progress=False)
    assert json.loads(sidecar(out).read_text()) == meta
    with open(out, "a") as f:
        f.write("9,")  # a row cut off by a kill
    calls = []
    with Table(out, COLUMNS, lambda r: (r["k"],), parse, meta, ["model_sha256", "numerics"], resume=True) as t:
        run_chunks(t, chunks, compute, lambda c: [(k,) for k in c], progress=lambda d, n: calls.append((d, n)))
    assert calls == [(2, 2)]  # only the missing chunk was computed
    assert [r["k"] for r in read_rows(out, ints=["k"], need="v")] == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match=r"different numerics.n_batch \(56, now 512\)"):
        check_sidecar(out, dict(meta, numerics={"n_batch": 512}), ["numerics"])


def test_interrupted_names_what_is_saved(tmp_path):
    e = Interrupted(3, 10, tmp_path / "t.csv")
    assert isinstance(e, KeyboardInterrupt) and "3 of 10" in str(e) and "resume" in str(e)


def test_progress_calls_back_and_stays_quiet_off_a_terminal(capsys):
    seen = []
    with Progress(lambda d, n: seen.append((d, n)), 5, "x") as p:
        p.advance(2)
        p.advance(3)
    assert seen == [(2, 5), (5, 5)]
    with Progress(None, 5, "x") as p:  # stderr is not a terminal under pytest
        p.advance(5)
    assert capsys.readouterr().err == ""


def test_write_json_is_strict_json(tmp_path):
    """NaN and +-Inf (numpy's too) are written as null, so strict parsers read the file; every
    finite number round-trips exactly."""
    path = tmp_path / "summary.json"
    data = {"b": math.nan, "inf": [math.inf, -math.inf, 1.5], "np": np.float64("nan"), "f32": np.float32(0.25),
            "arr": np.array([1.0, np.nan]), "nested": {"t": (np.int64(3), float("nan"))}, "x": 0.1 + 0.2}
    write_json(path, data)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    back = json.loads(text, parse_constant=refuse)
    assert back == {"b": None, "inf": [None, None, 1.5], "np": None, "f32": 0.25, "arr": [1.0, None],
                    "nested": {"t": [3, None]}, "x": 0.1 + 0.2}
