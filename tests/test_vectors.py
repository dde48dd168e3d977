"""ConceptVector: arithmetic, indexing, and its control-vector GGUF file (ours, other
tools', damaged ones, and llama.cpp's own loader reading ours)."""

import ctypes
import platform
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

import pyintro
from pyintro import Injection
from pyintro.vectors import ConceptVector

from _reference import Reference

N_LAYER, N_EMBD = 30, 576


@pytest.fixture(scope="module")
def model():
    m = pyintro.Model.load(n_threads=2)
    yield m
    m.close()


def make_vector(seed=0, layer0=True, n_layer=N_LAYER, n_embd=N_EMBD, norm=4.0) -> ConceptVector:
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((n_layer, n_embd)).astype(np.float32)
    d *= norm / np.linalg.norm(d, axis=1, keepdims=True)
    if not layer0:
        d[0] = 0.0
    return ConceptVector(d, model_hint="llama", name="test", method="random", prompts=["+a", "-b ü"],
                         position="-2", model_sha256="ab" * 32)


def assert_same(a: ConceptVector, b: ConceptVector) -> None:
    assert np.array_equal(a.directions, b.directions)
    assert a.directions.dtype == np.float32 and a.directions.flags.c_contiguous
    for key in ("model_hint", "name", "method", "prompts", "position", "model_sha256", "layer_convention"):
        assert getattr(a, key) == getattr(b, key), key


# -- the object -------------------------------------------------------------------------------


def test_construction_coerces_and_rejects():
    v = ConceptVector(np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::-1])
    assert v.directions.dtype == np.float32 and v.directions.flags.c_contiguous
    assert (v.n_layer, v.n_embd) == (3, 4)
    assert v.layer_convention == "l_out" and v.position == "last" and v.prompts == []
    with pytest.raises(ValueError, match="2-D"):
        ConceptVector(np.zeros(4))
    with pytest.raises(ValueError, match="2-D"):
        ConceptVector(np.zeros((2, 3, 4)))
    for bad in (np.nan, np.inf):
        d = np.zeros((2, 3))
        d[1, 2] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            ConceptVector(d)
    with pytest.raises(ValueError, match="prompts"):
        ConceptVector(np.zeros((2, 3)), prompts="not a list")


def test_norms_and_indexing():
    v = make_vector(norm=3.0)
    norms = v.norms()
    assert norms.shape == (N_LAYER,)
    np.testing.assert_allclose(norms, 3.0, rtol=1e-6)
    assert np.array_equal(v[2], v.directions[2])
    assert np.array_equal(v[-1], v.directions[N_LAYER - 1])
    assert np.array_equal(v[np.int64(5)], v.directions[5])
    for bad in (N_LAYER, -N_LAYER - 1):
        with pytest.raises(ValueError, match="out of range"):
            v[bad]
    with pytest.raises(ValueError, match="int layer"):
        v[1.5]


def test_arithmetic_keeps_provenance():
    v, w = make_vector(0), make_vector(1)
    assert np.array_equal((-2 * v).directions, -2 * v.directions)
    assert np.array_equal((v * 0.5).directions, v.directions * np.float32(0.5))
    assert np.array_equal((np.float32(3) * v).directions, 3 * v.directions)
    assert np.array_equal((v / 4).directions, v.directions / np.float32(4))
    assert np.array_equal((-v).directions, -v.directions)
    assert np.array_equal((v + w).directions, v.directions + w.directions)
    assert not np.any((v - v).directions)
    for result in (-v, 2 * v, v / 2, v + w):
        assert isinstance(result, ConceptVector)
        assert (result.method, result.prompts, result.position, result.model_sha256) == (
            v.method, v.prompts, v.position, v.model_sha256)
    assert (v - w).name == "test - test"
    scaled = 2 * v
    scaled.directions[0, 0] = 123.0
    assert v.directions[0, 0] != 123.0  # results do not share memory with their operands
    with pytest.raises(ValueError, match="shapes"):
        v + make_vector(n_layer=4)
    with pytest.raises(ValueError, match="zero"):
        v / 0
    with pytest.raises(ValueError, match="scale"):
        v * float("inf")
    with pytest.raises(TypeError):
        v * v


# -- files ------------------------------------------------------------------------------------


def test_round_trip_is_bit_exact(tmp_path):
    v = make_vector(layer0=False)
    v.directions[3, 7] = -0.0
    v.directions[4, 1] = np.float32(1e-38)  # tiny values survive
    v.prompts = ['+{"json": [1, 2]}', "-line\nbreak", "+ünïcødé"]
    path = tmp_path / "v.gguf"
    v.save(path)
    u = ConceptVector.load(path)
    assert_same(u, v)
    assert np.signbit(u.directions[3, 7])


def test_round_trip_with_layer0_warns_and_stays_exact(tmp_path):
    v = make_vector(layer0=True)
    path = tmp_path / "v.gguf"
    with pytest.warns(UserWarning, match="ignores layer 0"):
        v.save(path)
    assert_same(ConceptVector.load(path), v)
    # Layer 0 lives in metadata: every tensor is a direction.L with L >= 1, as llama.cpp needs.
    reader = gguf.GGUFReader(path)
    names = sorted(t.name for t in reader.tensors)
    assert names == sorted(f"direction.{il}" for il in range(1, N_LAYER))
    assert reader.get_field("pyintro.has_layer0").contents() is True
    assert reader.get_field("controlvector.layer_count").contents() == N_LAYER - 1


def test_saved_keys(tmp_path):
    v = make_vector(layer0=False)
    v.save(tmp_path / "v.gguf")
    fields = gguf.GGUFReader(tmp_path / "v.gguf").fields
    got = {k: fields[k].contents() for k in fields if k.startswith(("pyintro.", "controlvector.", "general."))}
    assert got["general.architecture"] == "controlvector"
    assert got["controlvector.model_hint"] == "llama"
    assert got["pyintro.method"] == "random" and got["pyintro.has_layer0"] is False
    assert got["pyintro.prompts"] == '["+a", "-b ü"]'
    assert got["pyintro.layer_convention"] == "l_out"
    assert "pyintro.direction0" not in got


def test_load_file_from_another_tool(tmp_path):
    # As repeng / cvector-generator write them: no pyintro keys, only some layers.
    rng = np.random.default_rng(3)
    rows = {il: rng.standard_normal(N_EMBD).astype(np.float32) for il in (2, 5, 9)}
    path = tmp_path / "other.gguf"
    w = gguf.GGUFWriter(path, "controlvector")
    w.add_string("controlvector.model_hint", "llama")
    w.add_uint32("controlvector.layer_count", N_LAYER - 1)
    for il, row in rows.items():
        w.add_tensor(f"direction.{il}", row)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    v = ConceptVector.load(path)
    assert (v.n_layer, v.n_embd) == (N_LAYER, N_EMBD)  # layer_count counts layers 1..n_layer-1
    for il in range(N_LAYER):
        assert np.array_equal(v[il], rows.get(il, np.zeros(N_EMBD, np.float32)))
    assert (v.model_hint, v.name, v.method, v.prompts, v.position) == ("llama", "", "", [], "last")


def test_load_file_without_layer_count(tmp_path):
    path = tmp_path / "bare.gguf"
    w = gguf.GGUFWriter(path, "controlvector")
    w.add_tensor("direction.7", np.ones(8, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    v = ConceptVector.load(path)
    assert (v.n_layer, v.n_embd) == (8, 8)
    assert v.norms()[7] > 0 and not v.directions[:7].any()


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ConceptVector.load(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="not a file"):
        ConceptVector.load(tmp_path)
    text = tmp_path / "text.gguf"
    text.write_text("hello, I am not a GGUF file\n")
    with pytest.raises(ValueError, match="not a GGUF file"):
        ConceptVector.load(text)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a GGUF file"):
        ConceptVector.load(empty)

    good = tmp_path / "good.gguf"
    make_vector(layer0=False).save(good)
    data = good.read_bytes()
    for cut in (6, 40, len(data) // 3, len(data) - 100):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError) as info:
            ConceptVector.load(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)

    # A GGUF that is not a control vector (no direction tensors).
    other = tmp_path / "other.gguf"
    w = gguf.GGUFWriter(other, "llama")
    w.add_tensor("token_embd.weight", np.ones((2, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="no direction"):
        ConceptVector.load(other)


def test_save_into_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_vector(layer0=False).save(tmp_path / "nope" / "v.gguf")
    assert not (tmp_path / "nope").exists()


# -- llama.cpp reads our file -------------------------------------------------------------------
#
# llama.cpp's own loader, common_control_vector_load(), ships in llama-cpp-python's
# libllama-common.so. It takes a std::vector<common_control_vector_load_info> and returns a
# common_control_vector_data by value, so we call it through the x86-64 SysV / libstdc++ ABI:
#   struct common_control_vector_load_info { float strength; std::string fname; };  // 40 bytes
#   struct common_control_vector_data { int n_embd; std::vector<float> data; };     // 32 bytes
# The result is returned through a hidden pointer (std::vector is not trivially copyable).

_ON_THIS_ABI = sys.platform.startswith("linux") and platform.machine() == "x86_64"


class _StdString(ctypes.Structure):  # libstdc++ (C++11 ABI): pointer, length, 16-byte local buffer
    _fields_ = [("ptr", ctypes.c_char_p), ("length", ctypes.c_size_t), ("local", ctypes.c_char * 16)]


class _LoadInfo(ctypes.Structure):
    _fields_ = [("strength", ctypes.c_float), ("fname", _StdString)]


class _StdVector(ctypes.Structure):
    _fields_ = [("begin", ctypes.c_void_p), ("end", ctypes.c_void_p), ("end_of_storage", ctypes.c_void_p)]


class _CvecData(ctypes.Structure):
    _fields_ = [("n_embd", ctypes.c_int), ("data", _StdVector)]


def llama_cpp_control_vector_load(path: Path) -> tuple[int, np.ndarray]:
    """llama.cpp's loader on one file at strength 1: (n_embd, data [n_layers_from_1 * n_embd]),
    layer 1 at offset 0 as llama_set_adapter_cvec wants it; n_embd is -1 if it rejects the file."""
    import llama_cpp

    assert ctypes.sizeof(_LoadInfo) == 40 and ctypes.sizeof(_CvecData) == 32
    lib = Path(llama_cpp.__file__).parent.parent / "lib" / "libllama-common.so"
    common = ctypes.CDLL(str(lib))  # its libllama/libggml resolve to the copies pyintro loaded
    fn = common["_Z26common_control_vector_loadRKSt6vectorI31common_control_vector_load_infoSaIS0_EE"]
    fn.argtypes = [ctypes.POINTER(_CvecData), ctypes.POINTER(_StdVector)]
    fn.restype = ctypes.c_void_p
    name = str(path).encode()
    infos = (_LoadInfo * 1)(_LoadInfo(1.0, _StdString(name, len(name), b"")))
    start = ctypes.addressof(infos)
    arg = _StdVector(start, start + ctypes.sizeof(infos), start + ctypes.sizeof(infos))
    out = _CvecData()
    fn(ctypes.byref(out), ctypes.byref(arg))  # the result's buffer is leaked: a few KiB per call
    n = (out.data.end - out.data.begin) // 4 if out.data.begin else 0
    data = np.ctypeslib.as_array((ctypes.c_float * n).from_address(out.data.begin)).copy() if n else np.zeros(0)
    return out.n_embd, data.astype(np.float32)


@pytest.fixture(scope="module")
def restore_pyintro_log():
    yield
    # Importing llama_cpp points llama.cpp's log at llama-cpp-python; give it back to pyintro.
    from pyintro._native import _engine

    _engine.log_install()


needs_abi = pytest.mark.skipif(not _ON_THIS_ABI, reason="calls llama.cpp's C++ loader through the x86-64 Linux ABI")


@needs_abi
def test_llama_cpp_loader_reads_our_file(tmp_path, restore_pyintro_log):
    v = make_vector(layer0=True)
    path = tmp_path / "v.gguf"
    with pytest.warns(UserWarning, match="ignores layer 0"):
        v.save(path)
    n_embd, data = llama_cpp_control_vector_load(path)
    assert n_embd == N_EMBD
    assert np.array_equal(data.reshape(-1, N_EMBD), v.directions[1:])


@needs_abi
def test_llama_cpp_loader_rejects_direction0(tmp_path, restore_pyintro_log):
    # Why layer 0 is not a tensor in our files: llama.cpp refuses the whole file.
    path = tmp_path / "with0.gguf"
    w = gguf.GGUFWriter(path, "controlvector")
    for il in (0, 1):
        w.add_tensor(f"direction.{il}", np.ones(N_EMBD, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert llama_cpp_control_vector_load(path)[0] == -1


def _llama_cpp_logits(model, ids, data, il_start, il_end) -> np.ndarray:
    """Last-token logits [n_vocab] from plain llama.cpp with a control vector buffer set,
    decoded as pyintro's engine decodes (tests/_reference.py), so equality is exact."""
    with Reference(model.path) as ref:
        ref.set_cvec(data, il_start, il_end)
        return ref.logits(ids)


@needs_abi
def test_our_file_steers_llama_cpp_like_pyintro(model, tmp_path, restore_pyintro_log):
    v = make_vector(seed=5, layer0=False, norm=2.0)
    path = tmp_path / "v.gguf"
    v.save(path)
    n_embd, data = llama_cpp_control_vector_load(path)
    assert n_embd == model.n_embd
    ids = model.chat("Tell me about the sea.")
    clean = model.logits(ids)[0]

    layer = 14  # one layer: the file's direction.14 acts where pyintro's layer 14 does
    ours = model.logits(ids, inject=[Injection(v, layer, 1.0, positions="all")])[0]
    theirs = _llama_cpp_logits(model, ids, data, layer, layer)
    assert np.array_equal(theirs, ours)
    assert np.abs(ours - clean).max() > 0.1  # the injection does change the logits

    # The whole file, as `--control-vector` applies it: every layer from 1 on.
    ours = model.logits(ids, inject=[Injection(v, il, 1.0, positions="all") for il in range(1, model.n_layer)])[0]
    theirs = _llama_cpp_logits(model, ids, data, 1, model.n_layer)
    assert np.array_equal(theirs, ours)
    assert np.abs(ours - clean).max() > 0.1
