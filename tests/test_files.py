"""files.header: a GGUF file's header read without its weights, and the one-line errors for
files that are cut short or damaged, from files.header and from Model.load's pre-check."""

from __future__ import annotations

import struct

import gguf
import pytest
from tiny_models import specs, tiny

import pyintro
from pyintro import files

TRUNCATED = ": the file is truncated or corrupt: "


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_files")


@pytest.fixture(scope="module")
def llama(folder):
    return tiny("llama", folder)


def _cut(src, dst, n: int):
    dst.write_bytes(src.read_bytes()[:n])
    return dst


def test_header_matches_the_loaded_default_model(m):
    h = files.header(m.path)
    assert (h["arch"], h["n_layer"], h["n_embd"], h["n_vocab"]) == (m.arch, m.n_layer, m.n_embd, m.n_vocab)
    assert h["file_type"] == m.quant_type == files.file_type(m.path)
    assert h["chat_template"] is True  # SmolLM2-Instruct ships a ChatML template
    assert h["size"] == m.path.stat().st_size and h["split_count"] == 1 and h["n_expert"] == 0
    reader = gguf.GGUFReader(m.path)  # the slow reader that loads every field, as a reference
    types = {}
    for t in reader.tensors:
        if len(t.shape) >= 2:
            types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    assert h["tensor_types"] == types and h["n_tensors"] == len(reader.tensors)


@pytest.mark.parametrize("arch", sorted(specs()))
def test_header_reads_every_architecture_like_its_spec(arch, folder):
    """The header's numbers are the file's own keys, for every architecture the tests describe."""
    path = tiny(arch, folder)
    meta = specs()[arch]["meta"]
    h = files.header(path)
    assert h["arch"] == arch
    assert h["n_layer"] == meta["block_count"]
    assert h["n_embd"] == meta.get("embedding_length")
    assert h["n_vocab"] == 64
    assert h["n_tensors"] == len(specs()[arch]["tensors"])
    shapes = specs()[arch]["tensors"].values()
    assert sum(h["tensor_types"].values()) == sum(len(ne) >= 2 for ne in shapes)
    assert set(h["tensor_types"]) <= {"F32"}  # tiny_models writes F32 tensors
    assert h["chat_template"] is False


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "phi3"])
def test_header_agrees_with_llama_cpp(arch, folder):
    path = tiny(arch, folder)
    h = files.header(path)
    with pyintro.Model.load(path, n_threads=1, n_ctx=256, n_seq_max=2, chat_template="raw") as model:
        assert (h["arch"], h["n_layer"], h["n_embd"], h["n_vocab"]) == (model.arch, model.n_layer, model.n_embd,
                                                                        model.n_vocab)


def test_header_sees_a_chat_template(folder):
    spec = specs()["llama"]
    path = folder / "templated.gguf"
    from tiny_models import write

    write(path, "llama", {**spec["meta"], "tokenizer.chat_template": "{{ messages }}"}, spec["tensors"])
    assert files.header(path)["chat_template"] is True


def test_header_takes_a_model_alias():
    assert files.header("smollm2")["n_layer"] == files.header(files.default_model_path())["n_layer"]


def test_every_cut_point_is_named(llama, tmp_path):
    """A file cut anywhere in its header, or anywhere in its tensor data, is refused with one
    line that says the file is truncated, never accepted and never a Python traceback."""
    size = llama.stat().st_size
    data_start = gguf.GGUFReader(llama).data_offset
    cut = tmp_path / "cut.gguf"
    for n in list(range(4, data_start, 7)) + [data_start - 1, data_start, size - 1]:
        _cut(llama, cut, n)
        with pytest.raises(ValueError) as e:
            files.header(cut)
        text = str(e.value)
        assert text.startswith(f"{cut}{TRUNCATED}"), (n, text)
        assert "\n" not in text
        if n >= data_start:
            assert "its tensor data ends early" in text, (n, text)
        elif n < data_start - gguf.GGUF_DEFAULT_ALIGNMENT:  # cuts in the padding after the header can read either way
            assert "its header ends early" in text, (n, text)


@pytest.mark.parametrize("where", ["magic", "keys", "tensor infos", "data"])
def test_model_load_says_truncated_not_llama_cpp(llama, tmp_path, where):
    size = llama.stat().st_size
    data_start = gguf.GGUFReader(llama).data_offset
    n = {"magic": 3, "keys": 40, "tensor infos": data_start - 20, "data": size - 100}[where]
    cut = _cut(llama, tmp_path / "cut.gguf", n)
    with pytest.raises(ValueError, match="the file is truncated or corrupt") as e:
        pyintro.Model.load(cut, n_threads=1)
    assert "gguf_init_from_reader" not in str(e.value)


def test_the_default_model_cut_short(tmp_path):
    """The issue's case: the default model's file cut in its metadata."""
    src = files.default_model_path()
    with open(src, "rb") as f:
        head = f.read(600_000)
    cut = tmp_path / "smollm2-cut.gguf"
    cut.write_bytes(head)
    with pytest.raises(ValueError) as e:
        pyintro.Model.load(cut, n_threads=1)
    assert str(e.value) == f"{cut}: the file is truncated or corrupt: its header ends early"


def _key_offset(path, key: str) -> int:
    """Where ``key``'s value type sits in a GGUF file."""
    raw = path.read_bytes()
    name = key.encode()
    at = raw.index(struct.pack("<Q", len(name)) + name)
    return at + 8 + len(name)


def test_corrupt_files_say_what_is_wrong(llama, tmp_path):
    raw = bytearray(llama.read_bytes())
    bad = tmp_path / "bad.gguf"

    at = _key_offset(llama, "general.architecture")
    wrong = raw.copy()
    wrong[at:at + 4] = struct.pack("<I", 99)
    bad.write_bytes(wrong)
    with pytest.raises(ValueError, match=f"{TRUNCATED}the key general.architecture has an unknown value type 99"):
        files.header(bad)

    old = raw.copy()
    old[4:8] = struct.pack("<I", 1)
    bad.write_bytes(old)
    with pytest.raises(ValueError, match="its GGUF version is 1; llama.cpp reads versions 2 and 3"):
        files.header(bad)

    huge = raw.copy()
    huge[16:24] = struct.pack("<Q", 1 << 60)  # n_kv
    bad.write_bytes(huge)
    with pytest.raises(ValueError, match="it claims 1152921504606846976 metadata keys"):
        files.header(bad)


def test_empty_and_foreign_files(tmp_path):
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"is empty \(0 bytes\), not a GGUF file"):
        files.header(empty)
    text = tmp_path / "notes.gguf"
    text.write_text("hello, this is not a model")
    with pytest.raises(ValueError, match="is not a GGUF file"):
        files.header(text)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        files.header(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="is not a file"):
        files.header(tmp_path)


def test_header_follows_a_rewritten_file(folder, tmp_path):
    """The cache is keyed by size and modification time: a file replaced in place is read again."""
    path = tmp_path / "model.gguf"
    path.write_bytes(tiny("llama", folder).read_bytes())
    assert files.header(path)["arch"] == "llama"
    path.write_bytes(tiny("qwen2", folder).read_bytes())
    assert files.header(path)["arch"] == "qwen2"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=TRUNCATED):
        files.header(path)



def test_damaged_headers_raise_one_line_value_errors(llama, tmp_path):
    """Random damage to the header region: header() returns, or raises a one-line ValueError
    naming the file; never another exception (no struct.error, IndexError, MemoryError)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    data = llama.read_bytes()
    end = gguf.GGUFReader(llama).data_offset
    path = tmp_path / "damaged.gguf"
    seen = {"ok": 0, "error": 0}

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(at=st.integers(4, end - 1), blob=st.binary(min_size=1, max_size=8), cut=st.booleans())
    def damaged(at, blob, cut):
        buf = bytearray(data)
        buf[at:at + len(blob)] = blob
        path.write_bytes(bytes(buf[:at + len(blob)]) if cut else bytes(buf))
        try:
            files.header(path)
            seen["ok"] += 1
        except ValueError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)
            seen["error"] += 1

    damaged()
    assert seen["error"] > 0, seen
