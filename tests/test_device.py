"""The hook on a real device backend (Vulkan, CUDA, Metal): layer outputs in device memory,
the scheduler's splits, partial offload.

Run on a GPU build (docs/gpu.md; tools/vulkan_check.sh, tools/gpu_check.sh):

    PYINTRO_TEST_GPU_LAYERS=-1 pytest -m device tests/test_device.py     # every layer offloaded
    PYINTRO_TEST_GPU_LAYERS=15 pytest -m device tests/test_device.py     # the last 15 layers

On a CPU-only build, or with PYINTRO_TEST_GPU_LAYERS unset, every test here skips and says why.
``PYINTRO_TEST_MODEL`` names another GGUF file (tests/_device.py).

What is exact and what is bounded: comparisons that keep the decode's shape (the same rows in
the same llama_decode calls, the graph computed in the same pieces) and change only what the
hook does are exact by design on any backend, and are compared with np.array_equal. Comparisons
across shapes (a point alone against the same point in a batch of another size, a prompt tree
against separate decodes) and across backends (device against the CPU) are bounded by
measurements recorded in docs/gpu.md; each bound names where it was measured.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _device import (DEFAULT_MODEL, GPU_LAYERS, MODEL, direction, load, max_abs, on_device, prompt_ids,
                     report, skip_reason)
from pyintro import Injection, Positions
from pyintro.engine import Settings
from pyintro.head import MATCH_TOL, mismatch
from pyintro.model import points_per_call

SKIP = skip_reason()
pytestmark = [pytest.mark.device, pytest.mark.skipif(bool(SKIP), reason=SKIP or "runs")]

# -- measured bounds (docs/gpu.md, "Bounds") ----------------------------------------------------
# Measured on Vulkan (lavapipe, Mesa 25.0.7) with the "mini" random-weight llama
# (tools/device_models.py), every layer offloaded (-1) and the last 4 of 8 (4); each bound is
# twice the larger of the two. Not yet measured on CUDA or Metal: there a failure reports the
# figure to measure.
# A point alone against the same point in a batch: max |Δ logit| / the batch's max |logit|
# (measured 1.4e-3 at -1, 2.4e-3 at 4).
BATCH_REL = 0.005
# The device against the CPU backend, same file and prompt: max |Δ logit| / the CPU row's max
# |logit| (measured 0.0102 at -1, 0.0110 at 4), and max |Δ| of a capture / the layer's max
# |activation| (0.0115 at both).
CPU_LOGIT_REL = 0.025
CPU_CAPTURE_REL = 0.025
# A prompt tree's log-probabilities against separate decodes: max |Δ log p| (measured 1.1e-3
# at -1, 1.9e-3 at 4).
TREE_BOUND = 0.004
# The control-vector child process (a software device reloads the model and decodes 10 times).
CHILD_TIMEOUT = 3600


@pytest.fixture(scope="module")
def cpu():
    m = load(0)
    yield m
    m.close()


@pytest.fixture(scope="module")
def dev():
    m = load(GPU_LAYERS)
    yield m
    m.close()


@pytest.fixture(autouse=True)
def real_transfers(dev):
    # Never the test seam here: device tensors take the transfer path because they are in
    # device memory, host tensors (partial offload) stay in place.
    dev._engine.debug.force_transfer = False


@pytest.fixture(scope="module")
def ids(cpu):
    return prompt_ids(cpu)


@pytest.fixture(scope="module")
def cpu_capture(cpu, ids):
    return cpu.capture(ids)


@pytest.fixture(scope="module")
def v(cpu, cpu_capture):
    return direction(cpu, cpu_capture)


@pytest.fixture(scope="module")
def vocab2(dev):
    """Two ids to gather (Yes/No on the default model)."""
    if DEFAULT_MODEL:
        return [dev.tokenize("Yes")[0], dev.tokenize("No")[0]]
    return [5, 6]


def _counted(m, fn):
    m._engine.debug.transfers = 0
    out = fn()
    return out, m._engine.debug.transfers, m._engine.last_calls


def _layers(m):
    """Layer 1, the middle layer and the last (on both sides of a partial offload)."""
    return [1, m.n_layer // 2, m.n_layer - 1]


# -- where the tensors are --------------------------------------------------------------------

def test_device_layer_outputs_are_in_device_memory(dev, ids):
    # The hook sees l_out-<il> of an offloaded layer in a non-host buffer: a capture of that
    # layer alone makes exactly one ggml_backend_tensor_get per llama_decode call.
    found = {}
    for il in range(dev.n_layer):
        _, n, calls = _counted(dev, lambda: dev.capture(ids, layers=[il]))
        found[il] = (n, calls)
        if on_device(il, dev.n_layer):
            assert n == calls, (il, n, calls)
    report("transfers per capture of one layer (layer: gets, calls)", found)
    assert any(n for n, _ in found.values())


# -- exact on the device ----------------------------------------------------------------------

def test_device_strength_zero_is_no_injection_bit_for_bit(dev, ids, v):
    # Invariant: strength 0, an empty mask and v - v are no injection, bit for bit; rows read
    # and written back inside a transfer span without being injected keep their bits.
    base = dev.logits(ids)
    dev._engine.debug.transfers = 0
    assert np.array_equal(dev.logits(ids, inject=[Injection(v, 12 % dev.n_layer, 0.0, "all")]), base)
    assert np.array_equal(dev.logits(ids, inject=[Injection(v, 12 % dev.n_layer, 5.0, Positions.weights(np.zeros(len(ids))))]), base)
    assert dev._engine.debug.transfers == 0  # nothing touched, nothing copied
    assert np.array_equal(dev.logits(ids, inject=[Injection(v - v, 7 % dev.n_layer, 3.0, "all")]), base)
    assert not np.array_equal(dev.logits(ids, inject=[Injection(v, 12 % dev.n_layer, 5.0)]), base)

    # Strength-0 points between injected ones in one batch: the same calls as the same batch
    # with no injection at all, so each strength-0 point equals its uninjected twin.
    strengths = [3.0, 0.0, 5.0, 0.0, 0.0, 2.0, 0.0, 7.0, 0.0]
    pts = [[Injection(v, dev.n_layer - 2, s)] for s in strengths]
    mixed, n, _ = _counted(dev, lambda: dev.points(ids, pts))
    clean = dev.points(ids, [[] for _ in strengths])
    for j, s in enumerate(strengths):
        assert np.array_equal(mixed[j], clean[j]) == (s == 0.0), (j, s)
    if on_device(dev.n_layer - 2, dev.n_layer):
        assert n > 0


def test_device_capture_sees_the_injection_exactly(dev, ids, v):
    # Invariant: the hook's float32 arithmetic on the staged rows, written back: a capture of
    # the injected layer is the plain capture plus s * v on the injected rows, exactly, and
    # every layer before it is unchanged.
    for layer in _layers(dev)[:2]:
        s = 2.5
        mask = np.zeros(len(ids))
        mask[[10, 40]] = 1.0
        plain = dev.capture(ids)
        injected = dev.capture(ids, inject=[Injection(v, layer, s, Positions.weights(mask))])
        expected = plain[layer].copy()
        expected[[10, 40]] += np.float32(s) * v
        assert np.array_equal(injected[layer], expected), layer
        assert np.array_equal(injected[:layer], plain[:layer])
        assert np.array_equal(injected[:, :10], plain[:, :10])
        assert not np.array_equal(injected[layer + 1:, 11:40], plain[layer + 1:, 11:40])


def test_device_all_token_injection_equals_llama_cpp_control_vector(dev, ids, v, tmp_path):
    # Invariant: injecting s * v on every token at layer L equals llama.cpp's own control
    # vector at L on the same device, bit for bit, when llama.cpp decodes the prompt in the
    # engine's calls and computes the graph in the same pieces (tests/_device_reference.py).
    # In a child process (tests/_cvec_child.py), so that a crash inside llama.cpp fails this test
    # alone: with Debian 12's lavapipe (Mesa 22.3.6) llama.cpp's control vector segfaults the
    # Vulkan backend on its first decode (Mesa 25.0.7 runs it; docs/gpu.md).
    env = dict(os.environ)
    layers = _layers(dev)
    np.savez(tmp_path / "in.npz", path=str(MODEL), gpu_layers=GPU_LAYERS, n_ctx=dev.n_ctx, ids=np.asarray(ids),
             v=v, layers=np.asarray(layers), strengths=np.asarray([1.0, 2.5, 4.0]))
    child = Path(__file__).with_name("_cvec_child.py")
    run = subprocess.run([sys.executable, str(child), str(tmp_path / "in.npz"), str(tmp_path / "out.json")],
                         env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert run.returncode == 0, f"the child process failed ({run.returncode}): {run.stderr[-2000:]}"
    out = json.loads((tmp_path / "out.json").read_text())
    report("control vector (child process)", out)
    assert out["plain_equal"]
    for layer in layers:
        r = out["layers"][str(layer)]
        assert r["equal"], (layer, r)
        assert r["differs_from_plain"]
        if on_device(layer, dev.n_layer):
            assert r["transfers"] > 0


def test_device_transfer_count_is_at_most_one_get_and_set_per_touched_layer_per_call(dev, ids, v):
    # Invariant: on real device tensors the hook makes at most one tensor_get and one
    # tensor_set per touched layer per llama_decode call, and reads only for a capture.
    L = dev.n_layer
    per_call = points_per_call(dev, len(ids) - 1, 1)
    mask = np.zeros(len(ids))
    mask[20] = 1.0
    workloads = {
        "last-token injection at one layer, many points": (
            [L - 2], True, lambda: dev.points(ids, [[Injection(v, L - 2, s)] for s in np.linspace(0.5, 8.0, min(100, per_call))])),
        "all-token injection at two layers": (
            [L // 4, L - 3], True, lambda: dev.logits(ids, inject=[Injection(v, L // 4, 2.0, "all"), Injection(v, L - 3, 3.0, "all")])),
        "capture of 3 layers (the last: output rows only)": (
            [2, L // 2, L - 1], False, lambda: dev.capture(ids, layers=[2, L // 2, L - 1])),
        "injection and capture on the same layer": (
            [L - 4], True, lambda: dev.capture(ids, layers=[L - 4], inject=[Injection(v, L - 4, 2.0, Positions.weights(mask))])),
    }
    seen = {}
    for name, (layers, sets, fn) in workloads.items():
        fn()
        _, n, calls = _counted(dev, fn)
        touched_dev = sum(on_device(il, L) for il in layers)
        seen[name] = {"transfers": n, "llama_decode calls": calls, "touched layers on the device": touched_dev}
        assert calls >= 1
        assert n <= 2 * len(layers) * calls, (name, n, calls)
        if touched_dev:
            assert n > 0, name
        if not sets:  # captures only read: one get per device layer per call
            assert n == touched_dev * calls or GPU_LAYERS > 0, (name, n)
    report("transfers on device tensors", seen)


# -- bounded across shapes and backends -------------------------------------------------------

def test_device_point_alone_equals_it_in_a_batch(dev, ids, vocab2):
    # Invariant (exact on the CPU, docs/numerics.md): a point's logits do not depend on the
    # batch around it. On the device the calls of a point alone and of a batch of 7 have the
    # same shape (8 rows) and still differ (lavapipe: docs/gpu.md, "Bounds"), as do a point
    # alone against it in a batch of n_seq_max (56-row calls) and a point at another slot of
    # the same batch: all bounded by BATCH_REL, relative to the batch's largest |logit|.
    rng = np.random.default_rng(7)
    n = dev.n_seq_max
    points = []
    for _ in range(n):
        w = rng.standard_normal(dev.n_embd).astype(np.float32)
        w *= np.float32(4.0 / np.linalg.norm(w))
        points.append([Injection(w, int(rng.integers(0, dev.n_layer)), float(rng.uniform(1, 8)))])
    alone = np.stack([dev.points(ids, [p], vocab_ids=vocab2)[0] for p in points[:8]])
    seven = dev.points(ids, points[:7], vocab_ids=vocab2)
    everything = dev.points(ids, points, vocab_ids=vocab2)
    order = rng.permutation(n)
    shuffled = dev.points(ids, [points[i] for i in order], vocab_ids=vocab2)
    scale = float(np.max(np.abs(everything)))
    rel = {"alone vs in a batch of 7 (8-row calls)": max_abs(seven, alone[:7]) / scale,
           "alone vs in a batch of n_seq_max": max_abs(everything[:8], alone) / scale,
           "another slot of the same batch": max_abs(shuffled, everything[order]) / scale}
    report("point alone vs in a batch: max |Δ logit| / max |logit|", rel)
    assert np.array_equal(seven[0], alone[0])  # the same slot, the same calls: the same bits
    assert max(rel.values()) <= BATCH_REL, rel
    assert len({tuple(r) for r in everything}) > n // 2


def test_device_logits_and_captures_match_the_cpu(dev, cpu, ids, v, cpu_capture, vocab2):
    # The device against this build's CPU backend (the CPU build's kernels): logits with and
    # without injection, and the residual stream at every layer, within the measured bounds.
    L = dev.n_layer
    pts = [[]] + [[Injection(v, il, s)] for il in (1, L // 2, L - 2) for s in (1.0, 4.0)]
    a, b = dev.points(ids, pts), cpu.points(ids, pts)
    rel = [max_abs(x, y) / float(np.max(np.abs(y))) for x, y in zip(a, b)]
    yes, no = vocab2
    db = [abs(float((x[yes] - x[no]) - (y[yes] - y[no]))) for x, y in zip(a, b)]
    top = float(np.mean(a.argmax(1) == b.argmax(1)))
    cap = dev.capture(ids)
    cap_rel = [max_abs(cap[il], cpu_capture[il]) / float(np.max(np.abs(cpu_capture[il]))) for il in range(L)]
    report("device vs CPU: logits max |Δ| / max |logit|, per point", [round(r, 6) for r in rel])
    report("device vs CPU: |Δb| per point (b: logit difference of the two vocab2 ids)", [round(x, 5) for x in db])
    report("device vs CPU: top token equal (share of points)", top)
    report("device vs CPU: capture max |Δ| / max |x|, per layer", [round(r, 6) for r in cap_rel])
    assert max(rel) <= CPU_LOGIT_REL
    assert max(cap_rel) <= CPU_CAPTURE_REL
    assert not np.array_equal(a[0], a[1])


def test_device_prompt_tree_equals_separate_decodes(dev, ids, v):
    # Invariant: a continuation scored in the prompt tree (its branch's KV shared by seq_cp)
    # has the log-probabilities of prompt + continuation decoded from scratch (exact on the
    # CPU); on a device the tree's calls have other shapes: within TREE_BOUND (measured).
    if DEFAULT_MODEL:
        conts = [dev.tokenize(t, special=False) for t in ("Yes, I detect an injected thought", "No", " Maybe so")]
    else:
        conts = [[11, 12, 13, 14, 15, 16], [17], [18, 19, 20]]
    k = len(ids) - 8
    branches = [(ids, [Injection(v, 6 % dev.n_layer, 3.0, positions=Positions.start(k))]), (ids, []),
                (ids[:-3], [Injection(v, dev.n_layer - 3, 2.0, "last")])]
    lp = dev.score([b[0] for b in branches], [b[1] for b in branches], conts)
    scratch = load(GPU_LAYERS, settings=Settings(reuse_prefix=False))  # every decode from token 0
    worst = 0.0
    for j, (p, inject) in enumerate(branches):
        inject = [dataclasses.replace(i, positions=Positions.start(len(p) - 1)) if i.positions.kind == "last" else i
                  for i in inject]
        for c, cont in enumerate(conts):
            full = p + cont
            logits = scratch.logits(full, inject=inject, rows=list(range(len(p) - 1, len(full) - 1)))
            lse = logits.max(1) + np.log(np.exp(logits.astype(np.float64) - logits.max(1, keepdims=True)).sum(1))
            ref = logits[np.arange(len(cont)), cont] - lse
            worst = max(worst, max_abs(lp[j, c, :len(cont)], ref))
            assert np.all(np.isnan(lp[j, c, len(cont):]))
    scratch.close()
    report("prompt tree vs separate decodes: max |Δ log p|", worst)
    assert worst <= TREE_BOUND


def test_device_generation_with_per_sequence_injections(dev, ids, v):
    # Generation with one injection per sequence: each continuation equals the same point
    # generated alone (each step is one call of 8 rows either way), and the injections act.
    L = dev.n_layer
    points = [[], [Injection(v * 3, L // 5, 4.0, "last")], [Injection(-v * 3, L - 3, 6.0, "last")]]
    together = dev.generate_many(ids, points, max_tokens=8)
    alone = [dev.generate_many(ids, [p], max_tokens=8)[0] for p in points]
    report("generation: tokens per point", together)
    assert together == alone
    assert together[1] != together[0] or together[2] != together[0]


# -- the fast head ------------------------------------------------------------------------------

def test_device_fast_head_matches_the_full_path(ids, v, vocab2):
    # The fast head reads result_norm's rows from the device (one get per call) and computes the
    # gathered logits on the CPU. It is kept only where it matched the full path on its first
    # use (pyintro.head); then it equals the full path to MATCH_TOL, else the full path runs
    # and the numbers are the full path's, bit for bit (two fresh models, the same calls).
    with load(GPU_LAYERS) as fast, load(GPU_LAYERS, fast_head=False) as full:
        pts = [[Injection(v, il, s)] for il in (0, fast.n_layer // 2) for s in (0.0, 4.0)]
        want = full.points(ids, pts, vocab_ids=vocab2)
        got = fast.points(ids, pts, vocab_ids=vocab2)
        used = bool(fast._decoder.head.matched.get(np.asarray(vocab2, np.int32).tobytes(), False))
    report("fast head: used (it matched the full path on first use), relative difference", [used, mismatch(got, want)])
    if used:
        assert mismatch(got, want) <= MATCH_TOL
    else:
        assert np.array_equal(got, want)
