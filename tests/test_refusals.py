"""What pyintro refuses because it cannot be right, each on a tiny random-weight file written
here (tests/tiny_models.py): one-line errors, never a crash or a silent wrong answer."""

import subprocess
import sys

import numpy as np
import pytest

import pyintro
from pyintro import Injection

from tiny_models import tiny


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


def one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text
    return text


def test_encoder_decoder_is_refused_at_load(folder):
    # T5 used to load, then abort the process at its first decode ("llama_encode must be called first").
    with pytest.raises(ValueError) as e:
        pyintro.Model.load(tiny("t5", folder), n_threads=1, n_ctx=256, chat_template="raw")
    assert "encoder-decoder" in one_line(e.value) and "decoder-only" in str(e.value)


def test_encoder_decoder_cannot_crash_the_interpreter(folder):
    code = ("import sys, pyintro\n"
            "try:\n    pyintro.Model.load(sys.argv[1], n_threads=1, n_ctx=256, chat_template='raw')\n"
            "except ValueError as e:\n    print('refused')\n")
    r = subprocess.run([sys.executable, "-c", code, str(tiny("t5", folder))], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "refused", r.stderr[-500:]


def test_kv_less_models_stay_refused_and_recurrent_ones_load(folder):
    with pytest.raises(ValueError, match="no KV cache"):
        pyintro.Model.load(tiny("bert", folder), n_threads=1, n_ctx=256, chat_template="raw")
    # Recurrent memories were refused until their calls were padded by sequence (csrc/engine.h).
    with pyintro.Model.load(tiny("mamba", folder), n_threads=1, n_ctx=256, chat_template="raw") as m:
        assert m._engine.recurrent and np.all(np.isfinite(m.logits([5, 6, 7])))


def test_a_recurrent_call_needs_free_padding_sequences(folder):
    # The engine pads a recurrent model's call with the sequences after its last one: a raw
    # request that leaves them no room is refused with a one-line ValueError, nothing decoded.
    with pyintro.Model.load(tiny("mamba", folder), n_threads=1, n_ctx=256, n_seq_max=4, chat_template="raw") as m:
        e, unit = m._engine, m._engine.row_unit
        assert unit == 2  # F32 matrices: one padding sequence after a call of one sequence
        e.decode([5], [0], [1], [1])  # sequence 1 decoded, its state kept
        with pytest.raises(ValueError) as err:
            e.decode([5], [0], [0], [1])  # sequence 0's padding would be sequence 1
        assert "would pad a call" in one_line(err.value)
        e.seq_rm(1, -1, -1)
        with pytest.raises(ValueError, match="in this request"):
            e.decode([5, 6], [0, 0], [1, 0], [1, 1])  # sequence 0's call would be padded by sequence 1
        assert [e.seq_pos_max(s) for s in range(4)] == [-1] * 4  # nothing decoded
