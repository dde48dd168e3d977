"""What a new user meets: bad input refused before the model loads (exit 2) with one line in option
names, no folder left behind by a failed run, every experiment's folder mergeable and re-plottable,
and Ctrl-C during concept extraction (exit 130, then --resume goes on)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from pyintro.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error(result, code):
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip() and not ln.startswith("Warning:")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("args, code, words", [
    (["thoughts", "--words", "/nonexistent/words.txt"], 2, "no such word file"),
    (["detect", "--layers", "99"], 2, "layer 99 is out of range"),
    (["thoughts", "--strengths", "-4"], 2, "strength -4 is out of range"),
    (["thoughts", "--strengths", "nan"], 2, "contains NaN"),
    (["run", "--job-time", "soon", "--plan"], 2, "is not a duration"),
    (["detect", "--judge", "gemma3-270m"], 2, "give --trials"),
    (["detect", "--prompt", "thinking_about"], 2, "open question"),
])
def test_bad_input_is_refused_before_the_model_loads(tmp_path, args, code, words):
    start = time.perf_counter()
    line = error(invoke(*args, "--out", tmp_path / "out"), code)
    assert words in line
    assert not (tmp_path / "out").exists()
    assert time.perf_counter() - start < 60  # no model was loaded (a load takes seconds; this is generous)


def test_out_that_cannot_be_written_and_a_folder_of_another_experiment(tmp_path, lib_dir):
    (tmp_path / "file").write_text("not a folder")
    assert "is not a folder" in error(invoke("thoughts", "--out", tmp_path / "file"), 2)
    other = tmp_path / "other"
    assert invoke("control", "--pairs", 1, "--control-words", 2, "--layers", "10", "--library", lib_dir,
                  "--out", other, "--threads", 2).exit_code == 0
    line = error(invoke("prefill", "--resume", "--library", lib_dir, "--out", other), 2)
    assert "holds a `control` run, not a `prefill` run" in line


def test_a_run_that_fails_before_its_first_row_leaves_no_folder(tmp_path):
    out = tmp_path / "t"
    assert "at least 10 words" in error(invoke("thoughts", "--words", "Dust,Peace", "--out", out, "--threads", 2), 1)
    assert not out.exists()


def test_negative_layers_count_from_the_end(tmp_path, lib_dir):
    r = invoke("control", "--pairs", 1, "--control-words", 2, "--layers=-1", "--library", lib_dir,
               "--out", tmp_path / "c", "--threads", 2)
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["n_layers"] == 1 and summary["think_vs_dont_think"]["peak"]["layer"] == 29


EXPERIMENTS = {
    "run": ["--layers", "6,20", "--strengths", "0,6", "--controls", 1, "--yes-controls", 0, "--random", 1],
    "detect": ["--words", "WORDS", "--layers", "12,24", "--strengths", "4", "--bias", 1],
    "thoughts": ["--pairs", 2, "--layers", "12", "--strengths", "8"],
    "prefill": ["--pairs", 2, "--layers", "12", "--strengths", "8"],
    "control": ["--pairs", 2, "--control-words", 2, "--layers", "10,20"],
}


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_merges_and_plots(name, tmp_path, lib_dir, pair_list):
    words = ",".join(w for _, _, w in pair_list[:2])
    args = [str(a).replace("WORDS", words) for a in EXPERIMENTS[name]]
    lib = [] if name == "run" else ["--library", lib_dir]
    (tmp_path / "shards").mkdir()  # an --out's parent must exist
    for k in (1, 2):
        r = invoke(name, *args, *lib, "--shard", f"{k}/2", "--out", tmp_path / "shards" / str(k), "--threads", 2)
        assert r.exit_code == 0, r.output
    r = invoke("merge", tmp_path / "shards", "--out", tmp_path / "merged")
    assert r.exit_code == 0 and "wrote" in r.output, r.output
    summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    # The residual norms were measured with the model; a merge (without it) keeps the first shard's.
    first = json.loads((tmp_path / "shards" / "1" / "summary.json").read_text())
    assert summary["residual_norms"] == first["residual_norms"] and len(first["residual_norms"]) == 30
    for f in summary["files"]:
        if f.endswith((".csv", ".png")):
            assert (tmp_path / "merged" / f).stat().st_size > 0, f
    (tmp_path / "merged" / summary["files"][-2]).unlink()  # a figure, drawn again by plot
    r = invoke("plot", tmp_path / "merged")
    assert r.exit_code == 0, r.output
    assert all((tmp_path / "merged" / f).exists() for f in summary["files"])
    again = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert again["verdict"] and again["residual_norms"] == first["residual_norms"]


def test_ctrl_c_during_extraction_exits_130_and_resume_goes_on(tmp_path):
    out = tmp_path / "lib"
    cmd = [sys.executable, "-m", "pyintro.cli", "concepts", "--words", "Pizza,Dust,Oceans", "--out", str(out),
           "--threads", "1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and not any(out.glob("*.npy")):
        time.sleep(0.05)  # the baseline's activations are being saved: extraction is under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    if proc.returncode == 0:
        pytest.skip("the extraction finished before Ctrl-C arrived")
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "--resume" in err or "again" in err, err
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "3 concept vectors" in done.stdout, done.stderr
    assert not os.listdir(out) or all(not p.name.endswith(".tmp") for p in out.iterdir())
