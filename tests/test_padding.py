"""The padding unit (pyintro.padding): each file's weight types pick how many rows a call is
padded to, and a point's logits stay the same alone or in any batch at that unit."""

from __future__ import annotations

import platform

import gguf
import numpy as np
import pytest
from tiny_models import tiny

import pyintro
from pyintro import Injection, Positions, padding
from pyintro.quantize import quantize

X86 = platform.machine().lower() in ("x86_64", "amd64")
PROMPT = [1, 5, 9, 14, 20, 33, 41, 7, 12, 50, 3, 28]


def _points(model, n, seed=0):
    rng = np.random.default_rng(seed)
    pts = []
    for i in range(n):
        v = rng.standard_normal(model.n_embd).astype(np.float32)
        # some points inject at the last token only (1 row each), others from token 8 on (4 rows)
        where = "last" if i % 3 else Positions.start(8)
        pts.append([Injection(v, int(rng.integers(0, model.n_layer)), float(rng.uniform(0.5, 4)), where)])
    return pts


def test_the_default_model_pads_to_two_rows(model):
    # Q4_1 matrices and a Q8_0 unembedding: vec_dot and llamafile's sgemm, which need 2 rows
    # (Q8_0 is repacked in groups of 4 rows on ARM).
    assert model.numerics()["row_unit"] == (2 if X86 else 4)
    assert model.batch_invariant


def test_gpu_layers_and_no_invariance_keep_their_units(tmp_path):
    path = tiny("llama", tmp_path)
    assert padding.row_unit(path, n_gpu_layers=-1) == padding.DEFAULT
    with pyintro.Model.load(path, chat_template="raw", n_ctx=256, batch_invariant=False) as m:
        assert m.numerics()["row_unit"] == 1 and not m.batch_invariant


def _header_only(path, split_count=None, expert=False):
    w = gguf.GGUFWriter(str(path), "llama")
    if split_count:
        w.add_uint16("split.count", split_count)
    w.add_tensor("blk.0.ffn_up_exps.weight" if expert else "blk.0.ffn_up.weight", np.zeros((64, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_split_and_expert_files_keep_eight(tmp_path):
    # F32 alone needs 2 (4 on ARM); a split file's first part does not list every tensor, and
    # expert products see the rows routed to each expert: both stay at 8.
    assert padding.row_unit(_header_only(tmp_path / "one.gguf")) == (2 if X86 else 4)
    assert padding.row_unit(_header_only(tmp_path / "split.gguf", split_count=2)) == 8
    assert padding.row_unit(_header_only(tmp_path / "moe.gguf", expert=True)) == 8


@pytest.mark.parametrize("qtype,unit_x86", [("f32", 2), ("f16", 2), ("q8_0", 2), ("q5_0", 2), ("q4_1", 2),
                                            ("q5_1", 2), ("q4_0", 4)])
def test_a_point_alone_equals_it_in_any_batch_at_the_files_unit(qtype, unit_x86, tmp_path):
    # Invariant: batch invariance at the unit each type picks. Batches of 2 to 40 points give
    # calls of 2 to 56 rows (and several calls past 56), each point compared with itself alone.
    src = tiny("llama", tmp_path)
    path = src if qtype == "f32" else quantize(src, tmp_path / f"llama-{qtype}.gguf", qtype)
    with pyintro.Model.load(path, chat_template="raw", n_ctx=1024, n_seq_max=40, n_threads=2) as m:
        unit = m.numerics()["row_unit"]
        if X86:
            assert unit == unit_x86
        pts = _points(m, 40)
        alone = np.stack([m.points(PROMPT, [p])[0] for p in pts[:10]])
        assert len({r.tobytes() for r in alone}) == 10  # the points differ from each other
        for size in (2, 3, 5, 7, 13, 40):
            k = min(size, 10)
            assert np.array_equal(m.points(PROMPT, pts[:size])[:k], alone[:k]), f"{qtype}: batch of {size}"
        # generation: each step decodes one row per sequence, padded to the unit
        three = m.generate_many(PROMPT, pts[:3], max_tokens=6, temperature=1.0, seeds=[1, 2, 3])
        for j in range(3):
            assert m.generate_many(PROMPT, [pts[j]], max_tokens=6, temperature=1.0, seeds=[j + 1])[0] == three[j]
