"""The eval callback's transfer path (csrc/hook.cpp, Hook::apply), forced on host tensors.

For a layer output in device memory (GPU) the hook cannot write in place: it copies the span
of touched rows to a host staging buffer (one ggml_backend_tensor_get), does the same float32
arithmetic as in place, and writes the span of injected rows back (one ggml_backend_tensor_set).
The engine's test seam ``debug.force_transfer`` takes that path for host tensors too, so the
GPU path's bookkeeping (spans, staging offsets, write-back) is checked here on any machine; the
debug counter ``debug.transfers`` counts the get/set calls. docs/gpu.md says what this covers and
what it does not (a real device's kernels).

This module loads its own model (not the session fixtures) with ``force_transfer`` on, so
toggling it never leaks into other modules. With PYINTRO_TEST_GPU_LAYERS (tests/conftest.py)
the model and the llama.cpp reference are offloaded alike.
"""

import numpy as np
import pytest

import pyintro
from pyintro import Injection, Positions
from pyintro._native import _engine
from pyintro.model import points_per_call

from _reference import Reference
from settings import GPU_LAYERS, PROMPT_SYSTEM, PROMPT_USER

# Layer outputs live in host memory: the in-place path runs unless force_transfer is on.
# (On a CUDA/Metal build even n_gpu_layers=0 can put a layer output on the device: llama.cpp
# offloads matrix products of >= 32 rows there (op_offload), and the ops around them follow.)
HOST_ONLY = GPU_LAYERS == 0 and not pyintro.Model.supports_gpu_offload()


@pytest.fixture(scope="module")
def tm():
    m = pyintro.Model.load(n_threads=2, n_gpu_layers=GPU_LAYERS)
    m._engine.debug.force_transfer = True
    yield m
    m.close()


@pytest.fixture(autouse=True)
def forced(tm):
    # Every test starts, and leaves the model, on the transfer path (a test that toggles it and
    # fails half-way must not change the next one).
    tm._engine.debug.force_transfer = True
    yield
    tm._engine.debug.force_transfer = True


@pytest.fixture(scope="module")
def ids(tm):
    # The `prompt` fixture's text (tests/conftest.py), in this model's chat template.
    p = tm.chat(PROMPT_USER, system=PROMPT_SYSTEM)
    assert len(p) == 52
    return p


@pytest.fixture(scope="module")
def v(tm):
    # A direction with the scale of the residual stream (as conftest's `vec`).
    rng = np.random.default_rng(1234)
    x = rng.standard_normal(tm.n_embd).astype(np.float32)
    return x / np.linalg.norm(x) * 4.0


@pytest.fixture(scope="module")
def yes_no(tm):
    return [tm.tokenize(t)[0] for t in ("Yes", "No", " Yes", " No")]


@pytest.fixture(scope="module")
def reference(tm):
    """tests/_reference.py's plain llama.cpp context, with the model placed as ``tm`` is.

    llama-cpp-python 0.3.36's llama_model_default_params() has n_gpu_layers = -1 (every layer
    offloaded), which Reference uses as is: on a CUDA or Metal build it would put the
    reference on the GPU while ``tm`` runs with PYINTRO_TEST_GPU_LAYERS (default 0). Pin it to
    the same value so the comparison stays within one placement."""
    import llama_cpp

    default = llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.n_gpu_layers = GPU_LAYERS
        return p

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(llama_cpp, "llama_model_default_params", params)
        ref = Reference(tm.path)
    _engine.log_install()  # importing llama_cpp points llama.cpp's log at llama-cpp-python
    yield ref
    ref.close()
    _engine.log_install()


@pytest.fixture(scope="module")
def reference_plain(reference, ids):
    """The reference's last-token logits of the prompt, no control vector."""
    reference.set_cvec(None)
    return reference.logits(ids)


def _counted(tm, fn):
    """(fn(), transfers it made, llama_decode calls of its last engine decode)."""
    tm._engine.debug.transfers = 0
    out = fn()
    return out, tm._engine.debug.transfers, tm._engine.last_calls


# -- (a) control vector ---------------------------------------------------------------------

@pytest.mark.parametrize("layer, strength", [(1, 1.0), (14, 2.5), (29, 4.0)])
def test_transfer_all_token_injection_equals_control_vector(tm, ids, v, reference, reference_plain, layer,
                                                           strength):
    # Invariant: on the transfer path (tensor_get of the touched rows, host float32 add of
    # s * v, tensor_set), injecting on every token at layer L is llama.cpp's own control vector
    # at layer L (a ggml_add of fl(s * v) on l_out-L), bit for bit. Layer 29 is the last layer,
    # where llama.cpp keeps only the output rows.
    (ours,), n, _ = _counted(tm, lambda: tm.logits(ids, inject=[Injection(v, layer, strength, positions="all")]))
    assert n > 0  # the transfer path ran
    data = np.zeros((tm.n_layer - 1, tm.n_embd), np.float32)  # row il - 1 is layer il
    data[layer - 1] = np.float32(strength) * v
    reference.set_cvec(data, layer, layer)
    try:
        theirs = reference.logits(ids)
    finally:
        reference.set_cvec(None)
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours, reference_plain)


def test_transfer_control_vector_reference_agrees_without_injection(tm, ids, reference_plain):
    # Invariant: without injection pyintro and the reference decode the prompt alike (what the
    # control-vector comparisons above stand on).
    assert np.array_equal(tm.logits(ids)[0], reference_plain)


# -- (b) strength 0 -------------------------------------------------------------------------

def test_transfer_strength_zero_and_untouched_rows_are_bit_identical(tm, ids, v):
    # Invariant: strength 0 or an empty mask is no injection, bit for bit, and on the transfer
    # path a row that is read and written back inside the get/set span without being injected
    # (a strength-0 point between injected points, a mask-0 row between injected rows) keeps
    # its exact bits.
    base = tm.logits(ids)
    tm._engine.debug.transfers = 0
    assert np.array_equal(tm.logits(ids, inject=[Injection(v, 12, 0.0, positions="all")]), base)
    assert np.array_equal(tm.logits(ids, inject=[Injection(v, 12, 5.0, positions=Positions.weights(np.zeros(len(ids))))]), base)
    assert tm._engine.debug.transfers == 0  # nothing touched: no transfer at all

    # Strength-0 points (slots 1, 3, 4, 6, 8) between injected ones, at the same layer: one engine spec,
    # one get/set span over the call's rows. The same batch with no injection at all has the same
    # rows, cells and kernels, so each strength-0 point must equal its uninjected twin.
    strengths = [3.0, 0.0, 5.0, 0.0, 0.0, 2.0, 0.0, 7.0, 0.0]
    pts = [[Injection(v, 12, s)] for s in strengths]
    mixed, n, _ = _counted(tm, lambda: tm.points(ids, pts))
    assert n > 0
    clean = tm.points(ids, [[] for _ in strengths])
    for j, s in enumerate(strengths):
        assert np.array_equal(mixed[j], clean[j]) == (s == 0.0), (j, s)

    # One prompt, injected at rows 10 and 40 only: the rows between them are in the set span.
    layer, s = 9, 2.5
    mask = np.zeros(len(ids))
    mask[[10, 40]] = 1.0
    mask = Positions.weights(mask)
    plain = tm.capture(ids)
    injected = tm.capture(ids, inject=[Injection(v, layer, s, mask)])
    expected = plain[layer].copy()
    expected[[10, 40]] += np.float32(s) * v  # the hook's float32 arithmetic, exactly
    assert np.array_equal(injected[layer], expected)
    assert np.array_equal(injected[:layer], plain[:layer])  # layers below L unchanged
    assert np.array_equal(injected[:, :10], plain[:, :10])  # rows before the first injected one
    assert not np.array_equal(injected[layer + 1:, 11:40], plain[layer + 1:, 11:40])  # row 10 is seen later


# -- (c) batch invariance -------------------------------------------------------------------

def test_transfer_point_alone_equals_it_in_any_batch_and_slot(tm, ids, yes_no):
    # Invariant: batch invariance on the transfer path: random vectors at random layers and
    # strengths 1-8; each point alone equals it in a batch of 7 and of n_seq_max, and at every
    # slot of a shuffled batch (the get/set spans then cover other rows and other layers).
    rng = np.random.default_rng(7)
    n = tm.n_seq_max
    points = []
    for _ in range(n):
        w = rng.standard_normal(tm.n_embd).astype(np.float32)
        w *= 4.0 / np.linalg.norm(w)
        points.append([Injection(w, int(rng.integers(0, tm.n_layer)), float(rng.uniform(1, 8)))])
    alone = np.stack([tm.points(ids, [p], vocab_ids=yes_no)[0] for p in points[:8]])
    seven = tm.points(ids, points[:7], vocab_ids=yes_no)
    assert np.array_equal(seven, alone[:7])
    everything, n_transfers, _ = _counted(tm, lambda: tm.points(ids, points, vocab_ids=yes_no))
    assert n_transfers > 0
    assert np.array_equal(everything[:8], alone)
    order = rng.permutation(n)
    shuffled = tm.points(ids, [points[i] for i in order], vocab_ids=yes_no)
    assert np.array_equal(shuffled, everything[order])
    slot = np.argsort(order)  # where point i sits in the shuffled batch
    for i in range(8):
        assert np.array_equal(shuffled[slot[i]], alone[i])
    assert len({tuple(r) for r in everything}) > n // 2  # the points differ from each other


# -- (d) transfer path == in-place path -----------------------------------------------------

def test_transfer_captures_and_logits_same_with_force_on_and_off(tm, ids, v, yes_no):
    # Invariant: the transfer path computes exactly what the in-place path computes: captures
    # (every layer, with and without injection, the last layer's output rows, batched) and
    # logits are bit-identical with force_transfer on and off, on the same model.
    mask = np.zeros(len(ids))
    mask[[5, 30, 51]] = [1.0, 0.5, 2.0]
    mask = Positions.weights(mask)
    others = [tm.chat(f"Tell me about {w}") for w in ("dust", "oceans", "silver")]

    def run():
        return {
            "capture": tm.capture(ids),
            "capture injected": tm.capture(ids, inject=[Injection(v, 3, 2.0, "all"), Injection(-v, 17, 5.0, mask)]),
            "capture injected, 3 layers": tm.capture(ids, layers=[0, 9, 29], inject=[Injection(v, 9, 4.0, "last")]),
            "capture_many": tm.capture_many(others, layers=[2, 29]),
            "logits every row": tm.logits(ids, inject=[Injection(v, 14, 3.0, "all")], rows="all"),
            "points": tm.points(ids, [[Injection(v, il, s)] for il in (0, 13, 29) for s in (1.0, 6.0)] + [[]],
                                vocab_ids=yes_no),
        }

    tm._engine.debug.force_transfer = True
    on, n_on, _ = _counted(tm, run)
    tm._engine.debug.force_transfer = False
    off, n_off, _ = _counted(tm, run)
    tm._engine.debug.force_transfer = True
    for key in on:
        assert np.array_equal(on[key], off[key]), key
    assert n_on > 0
    if HOST_ONLY:
        assert n_off == 0
    # The captures see the injection, computed as numpy computes it in float32.
    c, ci = on["capture"], on["capture injected"]
    assert np.array_equal(ci[:3], c[:3])
    assert np.array_equal(ci[3], c[3] + np.float32(2.0) * v)
    assert not np.array_equal(on["capture injected, 3 layers"][1], c[9])


# -- (e) the counter ------------------------------------------------------------------------

def test_transfer_count_is_at_most_two_per_touched_layer_per_call(tm, ids, v):
    # Invariant: the transfer path makes at most one tensor_get and one tensor_set per touched
    # layer (a non-zero injection or a capture there) per llama_decode call: transfers <=
    # 2 x touched layers x last_calls, and > 0. Each workload below is one engine decode (the
    # shared prefix, when there is one, is decoded separately with nothing to touch).
    per_call = points_per_call(tm, len(ids) - 1, 1)
    n_points = min(100, per_call)
    mask = np.zeros(len(ids))
    mask[20] = 1.0
    mask = Positions.weights(mask)
    workloads = {
        # name: (touched layers, the call). A few gathered ids take the fast head, whose copy of
        # the final norm's rows is one more get per call (checked below).
        "last-token injection at one layer, many points": (
            1, lambda: tm.points(ids, [[Injection(v, 12, s)] for s in np.linspace(0.5, 8.0, n_points)], vocab_ids=[1])),
        "all-token injection at two layers": (
            2, lambda: tm.logits(ids, inject=[Injection(v, 5, 2.0, "all"), Injection(v, 20, 3.0, "all")])),
        "capture of 3 layers (the last one: output rows only)": (
            3, lambda: tm.capture(ids, layers=[2, 11, tm.n_layer - 1])),
        "injection and capture on the same layer": (
            1, lambda: tm.capture(ids, layers=[9], inject=[Injection(v, 9, 2.0, mask)])),
    }
    seen = {}
    for fn in [fn for _, fn in workloads.values()]:
        fn()  # the fast head's first use for an id list also decodes the full way: not counted
    head = int(tm._decoder.head.matched.get(np.asarray([1], np.int32).tobytes(), False))
    for force in (True, False):
        tm._engine.debug.force_transfer = force
        for name, (touched, fn) in workloads.items():
            _, n, calls = _counted(tm, fn)
            seen[force, name] = (n, calls)
            assert calls >= 1, name
            norm = head if name.startswith("last-token") else 0
            assert n <= (2 * touched + norm) * calls, (name, force, n, touched, calls)
            if force:
                assert n > 0, name
            elif HOST_ONLY:
                assert n == 0, name  # host tensors: changed in place, nothing transferred
    tm._engine.debug.force_transfer = True
    print("transfers, llama_decode calls:", {f"{k[1]} (force_transfer={k[0]})": val for k, val in seen.items()})
