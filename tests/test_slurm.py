"""`pyintro slurm` and pyintro.slurm: Slurm's time formats, what the array and merge scripts
run (executed with bash and a recording `pyintro`), submission order, and bad input (one line,
exit 2, nothing written). None of these needs Slurm, and only the test of the real plan loads the
model (the others stand in for `pyintro EXPERIMENT --plan --json`). The slow tests run against a
Slurm that `sinfo` answers: Slurm's own reading of the time formats, and tools/slurm_check.sh."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyintro import slurm as sl
from pyintro.cli import main

ROOT = Path(__file__).resolve().parents[1]

# Each of Slurm's six formats (sbatch --time), in seconds. Like Slurm, fields are not range-checked.
GOOD_TIMES = {"30": 1800, "90": 5400, "0:90": 90, "30:15": 1815, "2:00:00": 7200, "1:75:00": 8100, "1-12": 129600,
              "1-2:30": 95400, "1-2:30:15": 95415, "0-0:0:30": 30, " 45 ": 2700}
BAD_TIMES = ["", " ", "2h", "1.5", "1:2:3:4", "1-2-3", "-5", "1-", "1-:30", ":30", "1:", "1-2:", "1-2:3:4:5", "1 2",
             "+5", "\u0663", "0", "0:00", "0-0", "0:0:0", "INFINITE", "unlimited", "-1", "1d"]


@pytest.mark.parametrize("text,seconds", GOOD_TIMES.items())
def test_time_in_each_slurm_format(text, seconds):
    assert sl.parse_time(text) == seconds


@pytest.mark.parametrize("text", BAD_TIMES)
def test_other_times_are_refused_in_one_line(text):
    with pytest.raises(ValueError) as e:
        sl.parse_time(text)
    assert "\n" not in str(e.value) and ("D-H:M:S" in str(e.value) or "no limit" in str(e.value))


def test_format_time():
    assert [sl.format_time(s) for s in (0, 59.2, 3600, 86399, 86400 + 61)] == \
        ["0:00:00", "0:01:00", "1:00:00", "23:59:59", "1-00:01:01"]


# -- the scripts, run by bash with a `pyintro` that records its arguments -------------------------


@pytest.fixture
def fake_bin(tmp_path):
    """A folder with a `pyintro` that appends its argv (JSON) to $FAKE_LOG and exits $FAKE_RC."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pyintro"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      "open(os.environ['FAKE_LOG'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                      "sys.exit(int(os.environ.get('FAKE_RC', '0')))\n")
    script.chmod(0o755)
    return bin_dir


def job(tmp_path, fake_bin, **kw):
    args = dict(experiment="thoughts", options=("--quick", "--words", "it's $HOME", "--layers", "10,20"), shards=4,
                out=tmp_path / "out", workdir=tmp_path, bin_dir=fake_bin)
    args.update(kw)
    j = sl.ArrayJob(**args)
    sl.write(j)
    return j


def run_script(path, tmp_path, rc=0, **env):
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    full = dict(os.environ, FAKE_LOG=str(log), FAKE_RC=str(rc), **{k: str(v) for k, v in env.items()})
    proc = subprocess.run(["bash", str(path)], capture_output=True, text=True, env=full, cwd=tmp_path)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def sbatch_lines(text):
    """The #SBATCH options of a script, checking that they all come before its first command
    (sbatch reads no #SBATCH line after one)."""
    lines = text.splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    assert all(line.startswith("#") or not line.strip() for line in lines[:last])
    return [line.split(None, 1)[1] for line in lines if line.startswith("#SBATCH")]


def test_array_task_runs_its_shard_with_the_users_words_verbatim(tmp_path, fake_bin):
    j = job(tmp_path, fake_bin)
    proc, calls = run_script(j.array_path, tmp_path, SLURM_ARRAY_TASK_ID=3, SLURM_CPUS_PER_TASK=6)
    assert proc.returncode == 0, proc.stderr
    out = str(tmp_path / "out")
    assert calls == [["thoughts", "--quick", "--words", "it's $HOME", "--layers", "10,20", "--shard", "3/4",
                      "--resume", "--out", f"{out}/shards/3", "--threads", "6"]]
    assert (tmp_path / "out" / "slurm" / "done" / "3").exists()
    assert "shard 3/4" in proc.stdout


def test_a_failed_task_is_not_marked_done(tmp_path, fake_bin):
    j = job(tmp_path, fake_bin)
    (j.out / "slurm" / "done" / "2").touch()  # from an earlier run: a rerun clears it first
    proc, calls = run_script(j.array_path, tmp_path, rc=1, SLURM_ARRAY_TASK_ID=2)
    assert proc.returncode != 0 and len(calls) == 1
    assert not (j.out / "slurm" / "done" / "2").exists()
    proc, calls = run_script(j.array_path, tmp_path)  # not under sbatch: no task id
    assert proc.returncode != 0 and not calls and "sbatch" in proc.stderr


def test_array_script_options(tmp_path, fake_bin):
    j = job(tmp_path, fake_bin, time="1-12", partition="short,long", sbatch_args=("--mem=8G", "-A abc"),
            cpus_per_task=4)
    opts = sbatch_lines(j.array_path.read_text())
    out = tmp_path / "out"
    for o in ["--job-name=pyintro-thoughts", "--array=1-4", "--cpus-per-task=4", "--requeue", "--time=1-12",
              "--partition=short,long", f"--chdir={tmp_path}", f"--output={out}/logs/shard-%a.out",
              f"--error={out}/logs/shard-%a.err", "--open-mode=append", "--mem=8G", "-A abc"]:
        assert o in opts
    assert not any(o.startswith("--gres") for o in opts)
    merge_opts = sbatch_lines(j.merge_path.read_text())
    assert "--time=1-12" in merge_opts and "--mem=8G" in merge_opts and "--partition=short,long" in merge_opts
    assert not any(o.startswith(("--array", "--gres", "--requeue")) for o in merge_opts)
    assert f"--output={out}/logs/merge.out" in merge_opts


def test_gpus_offload_every_layer_unless_the_options_say(tmp_path, fake_bin):
    j = job(tmp_path, fake_bin, gpus=2)
    assert "--gres=gpu:2" in sbatch_lines(j.array_path.read_text())
    _, calls = run_script(j.array_path, tmp_path, SLURM_ARRAY_TASK_ID=1, SLURM_CPUS_PER_TASK=8)
    assert calls[0][-4:] == ["--threads", "8", "--gpu-layers", "-1"]
    j = job(tmp_path, fake_bin, gpus=1, options=("--quick", "--gpu-layers", "20"))
    _, calls = run_script(j.array_path, tmp_path, SLURM_ARRAY_TASK_ID=1)
    assert calls[0].count("--gpu-layers") == 1 and calls[0][-2:] == ["--threads", "1"]


def test_merge_waits_for_every_shard_then_merges(tmp_path, fake_bin):
    j = job(tmp_path, fake_bin)
    done = j.out / "slurm" / "done"
    for k in (1, 3):
        (done / str(k)).touch()
    proc, calls = run_script(j.merge_path, tmp_path)
    assert proc.returncode == 1 and not calls
    assert "shard(s) 2,4 of 4 have not finished" in proc.stderr and "sbatch --array=2,4" in proc.stderr
    for k in (2, 4):
        (done / str(k)).touch()
    proc, calls = run_script(j.merge_path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = str(j.out)
    assert calls == [["merge", f"{out}/shards", "--out", out]]
    assert "shard folders stay" in proc.stdout


def test_bad_job_fields_are_refused(tmp_path, fake_bin):
    for kw in ({"shards": 0}, {"time": "2h"}, {"partition": "a b"}, {"sbatch_args": ("mem=8G",)},
               {"sbatch_args": ("--mem=8G\nrm -rf /",)}, {"out": tmp_path / "with space"}, {"out": tmp_path / "50%"},
               {"cpus_per_task": 0}, {"gpus": -1}):
        with pytest.raises(ValueError):
            job(tmp_path, fake_bin, **kw)


# -- submission, with an sbatch that records its arguments ----------------------------------------


def fake_sbatch(tmp_path, fail_second=False):
    path = tmp_path / "sbatch"
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "log = os.environ['SBATCH_LOG']\n"
                    "n = len(open(log).readlines()) if os.path.exists(log) else 0\n"
                    "open(log, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                    f"if n == 1 and {fail_second}:\n"
                    "    print('sbatch: error: Batch job submission failed: Invalid account', file=sys.stderr)\n"
                    "    sys.exit(1)\n"
                    "print(['101;cluster', '102'][n])\n")
    path.chmod(0o755)
    return path


def test_submit_sends_the_array_then_the_merge_after_it(tmp_path, fake_bin, monkeypatch):
    j = job(tmp_path, fake_bin)
    monkeypatch.setenv("SBATCH_LOG", str(tmp_path / "sbatch.jsonl"))
    jobs = sl.submit(j, str(fake_sbatch(tmp_path)))
    calls = [json.loads(line) for line in (tmp_path / "sbatch.jsonl").read_text().splitlines()]
    assert calls == [["--parsable", str(j.array_path)], ["--parsable", "--dependency=afterok:101", str(j.merge_path)]]
    assert jobs["array"] == "101" and jobs["merge"] == "102"
    assert json.loads((j.out / "slurm" / "jobs.json").read_text()) == jobs


def test_a_refused_merge_submission_says_how_to_submit_it(tmp_path, fake_bin, monkeypatch):
    j = job(tmp_path, fake_bin)
    monkeypatch.setenv("SBATCH_LOG", str(tmp_path / "sbatch.jsonl"))
    with pytest.raises(RuntimeError) as e:
        sl.submit(j, str(fake_sbatch(tmp_path, fail_second=True)))
    assert "array as job 101" in str(e.value) and "Invalid account" in str(e.value)
    assert f"sbatch --dependency=afterok:101 {j.merge_path}" in str(e.value)


# -- the command: bad input is one line, exit 2, nothing written ----------------------------------


def invoke(*args, env=None):
    return CliRunner().invoke(main, ["slurm", *map(str, args)], env=env, catch_exceptions=False)


def refused(result):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip() and not ln.startswith("Warning:")]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("args,says", [
    (["thoughts", "--quick", "--shards", 0], "--shards must be 1 or more"),
    (["thoughts", "--quick", "--shards", "x"], "not a valid integer"),
    (["thoughts", "--quick"], "Missing option '--shards'"),
    (["thoughts", "--quick", "--shards", 2, "--time", "2h"], "not a Slurm time limit"),
    (["thoughts", "--quick", "--shards", 2, "--time", "0"], "no limit"),
    (["nope", "--shards", 2], "not a pyintro command"),
    (["ask", "--shards", 2], "not a shardable experiment"),
    (["merge", "--shards", 2], "not a shardable experiment"),
    (["thoughts", "--quick", "--shards", 2, "--shard", "1/2"], "remove --shard"),
    (["thoughts", "--quick", "--shards", 2, "--resume"], "remove --resume"),
    (["thoughts", "--quick", "--shards", 2, "--threads", 4], "remove --threads"),
    (["thoughts", "--quick", "--shards", 2, "--plan"], "remove --plan"),
    (["detect", "--quick", "--shards", 2, "--json"], "remove --json"),
    (["detect", "--quick", "--shards", 2, "--job-time", "2h"], "remove --job-time"),
    (["thoughts", "--quick", "--shards", 2, "--layers", "x"], "pyintro thoughts: Invalid value for '--layers'"),
    (["thoughts", "--quick", "--shards", 2, "--no-such-option"], "No such option"),
    (["thoughts", "--quick", "--shards", 2, "--partition", "a b"], "not a partition name"),
    (["thoughts", "--quick", "--shards", 2, "--sbatch-arg", "mem=8G"], "not an sbatch option"),
    (["thoughts", "--quick", "--shards", 2, "--gpus", -1], "--gpus 0 or more"),
])
def test_bad_input(tmp_path, args, says):
    out = tmp_path / "out"
    assert says in refused(invoke(*args, "--out", out))
    assert not out.exists()


def test_submit_where_sbatch_is_missing(tmp_path):
    out = tmp_path / "out"
    line = refused(invoke("thoughts", "--quick", "--shards", 2, "--submit", "--out", out,
                          env={"PATH": str(tmp_path / "empty")}))
    assert "sbatch is not on PATH" in line and not out.exists()


def test_out_folder_that_cannot_be_made(tmp_path):
    assert "does not exist" in refused(invoke("thoughts", "--quick", "--shards", 2, "--out", tmp_path / "no" / "out"))
    (tmp_path / "file").write_text("")
    assert "not a folder" in refused(invoke("thoughts", "--quick", "--shards", 2, "--out", tmp_path / "file"))


def stub_plan(monkeypatch, units, seconds=600.0):
    """Stands in for `pyintro EXPERIMENT ... --plan --json` (a model load and calibration decodes);
    returns the list of (experiment, options) it was asked for."""
    from pyintro.cli import slurm as cli

    asked = []
    monkeypatch.setattr(cli, "_plan", lambda name, options: asked.append((name, options)) or
                        {"experiment": name, "shard_units": units, "seconds": seconds})
    return asked


def test_writes_the_scripts_and_prints_the_sbatch_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stub_plan(monkeypatch, units=8)
    result = invoke("thoughts", "--quick", "--pairs", 8, "--shards", 4, "--time", "30", "--out", "run")
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    array, merge = out / "slurm" / "array.sh", out / "slurm" / "merge.sh"
    assert f"jid=$(sbatch --parsable {array}) && sbatch --dependency=afterok:${{jid%%;*}} {merge}" in result.output
    for path in (array, merge):
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    assert "--time=30" in sbatch_lines(array.read_text())
    assert "pyintro thoughts --quick --pairs 8 --shard" in array.read_text()
    assert (out / "shards").is_dir() and (out / "logs").is_dir() and not (out / "slurm" / "jobs.json").exists()


def test_shards_are_checked_against_the_plan(tmp_path, monkeypatch):
    """More shards than the plan's units are refused; a largest shard slower than --time warns."""
    asked = stub_plan(monkeypatch, units=5, seconds=600.0)
    out = tmp_path / "out"
    assert "more than the 5 units" in refused(invoke("thoughts", "--quick", "--shards", 6, "--out", out))
    assert asked == [("thoughts", ("--quick",))] and not out.exists()
    # 5 units in 2 shards: the largest has 3, 360 s of the 600 s; --time 5 (minutes) is less.
    result = invoke("thoughts", "--quick", "--shards", 2, "--time", "5", "--out", out)
    assert result.exit_code == 0 and "Warning: the plan estimates 0:06:00 for the largest shard" in result.output
    assert json.loads((out / "slurm" / "plan.json").read_text())["shard_units"] == 5
    assert "Warning" not in invoke("thoughts", "--quick", "--shards", 2, "--time", "6", "--out", out).output


def test_the_real_plan_refuses_more_shards_than_concepts(tmp_path):
    """`pyintro detect ... --plan --json` on the default model: detect shards over its words."""
    out, words = tmp_path / "out", "Dust,Satellites,Trumpets"
    assert "more than the 3 units" in refused(invoke("detect", "--quick", "--words", words, "--layers", 12,
                                                     "--shards", 4, "--out", out))
    assert invoke("detect", "--quick", "--words", words, "--layers", 12, "--shards", 3, "--out", out).exit_code == 0
    plan = json.loads((out / "slurm" / "plan.json").read_text())
    assert {"experiment", "cells", "rows", "token_rows", "peak_memory_bytes", "seconds", "shard_units"} <= set(plan)
    assert plan["experiment"] == "detect" and plan["shard_units"] == 3


# -- a real Slurm ----------------------------------------------------------------------------------


def _slurm_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_slurm = pytest.mark.skipif(not _slurm_answers(), reason="no Slurm answers sinfo here (tools/slurm_check.sh "
                                 "starts one as root; on a cluster, run from a login node)")


@pytest.mark.slow
@needs_slurm
def test_slurm_reads_each_time_format_as_we_do():
    """Held jobs submitted with each accepted --time: Slurm's TimeLimit (minutes, rounded up) is ours."""
    for text, seconds in GOOD_TIMES.items():
        jid = subprocess.run(["sbatch", "--parsable", "--hold", f"--time={text.strip()}", "--wrap", "true"],
                             capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
        try:
            info = subprocess.run(["scontrol", "-o", "show", "job", jid], capture_output=True, text=True).stdout
        finally:
            subprocess.run(["scancel", jid])
        limit = re.search(r"TimeLimit=(\S+)", info).group(1)
        days, _, hms = limit.rpartition("-")
        h, m, s = (int(x) for x in hms.split(":"))
        assert int(days or 0) * 1440 + h * 60 + m + (s > 0) == math.ceil(seconds / 60), (text, limit)
    for text in ("2h", "1.5", "1:2:3:4", "1-2-3", "1d"):
        proc = subprocess.run(["sbatch", "--parsable", "--hold", f"--time={text}", "--wrap", "true"],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            subprocess.run(["scancel", proc.stdout.strip().split(";")[0]])
        assert proc.returncode != 0, f"Slurm accepted --time={text}, which pyintro refuses"


@pytest.mark.slow
@needs_slurm
def test_slurm_check_on_the_running_slurm(tmp_path):
    """tools/slurm_check.sh --existing: 4 shards, one cancelled mid-run and resubmitted, merged
    equal to the unsharded run row for row. Its work folder must be one every node sees:
    PYINTRO_SLURM_WORK, else a folder under tmp_path (fine for a one-node Slurm)."""
    env = dict(os.environ)
    env.setdefault("PYINTRO_SLURM_WORK", str(tmp_path / "work"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    proc = subprocess.run(["bash", str(ROOT / "tools" / "slurm_check.sh"), "--existing"], capture_output=True,
                          text=True, env=env, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASSED" in proc.stdout
