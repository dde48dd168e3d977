"""The concept library (pyintro.concepts): any word, word arguments, a cache written only with
complete words, clearing, and extraction that Ctrl-C stops and the next call continues, with
vectors bit-identical to one uninterrupted pass."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from settings import GPU_LAYERS

from pyintro import concepts
from pyintro.extract import mean_difference
from pyintro.stimuli import BASELINE_WORDS, CONCEPT_WORDS

# Words outside the paper's lists, two whose file names would collide, and some of the paper's.
WORDS = ["Pizza", "NotAWordXYZ", "ice cream", "ice-cream", "Dust", "Oceans", "Peace", "Tornado", "Harmonica",
         "Kaleidoscope", "Origami", "Glacier", "Lighthouse", "Saxophone", "Cactus", "Meteor"]


def _default_sigint():
    """SIGINT at its default in the child, even when a shell started this run in the background
    (which ignores SIGINT, and Python then installs no handler of its own)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- word arguments (no model) ---------------------------------------------------------------


def test_parse_words(tmp_path, monkeypatch):
    assert concepts.parse_words(None) == list(CONCEPT_WORDS)
    assert concepts.parse_words("all") == concepts.all_words()
    assert concepts.parse_words(" Pizza, Dust ,,Oceans") == ["Pizza", "Dust", "Oceans"]
    assert concepts.parse_words("NotAWordXYZ") == ["NotAWordXYZ"]
    listed = tmp_path / "my_words.txt"
    listed.write_text("Pizza\n\n  Dust \n")
    assert concepts.parse_words(str(listed)) == ["Pizza", "Dust"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").write_text("Snow\n")
    assert concepts.parse_words("plain") == ["Snow"]  # a file in this folder, named without a slash


@pytest.mark.parametrize("text, message", [
    ("/nonexistent.txt", "no such word file: /nonexistent.txt"),
    ("words.txt", "no such word file: words.txt"),
    ("some/dir/words", "no such word file: some/dir/words"),
    ("", "the word list is empty"),
    (" , ,", "the word list is empty"),
    ("Dust,dust", "the word 'dust' is listed twice"),
])
def test_parse_words_refuses(text, message):
    with pytest.raises(ValueError) as e:
        concepts.parse_words(text)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_parse_words_refuses_bad_files(tmp_path):
    with pytest.raises(ValueError, match="is a folder, not a word file"):
        concepts.parse_words(str(tmp_path) + "/")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="has no words"):
        concepts.parse_words(str(empty))
    binary = tmp_path / "model.txt"
    binary.write_bytes(b"GGUF\xff\xfe\x00\x80")
    with pytest.raises(ValueError, match="is not a UTF-8 text file"):
        concepts.parse_words(str(binary))


# -- the library on the default model --------------------------------------------------------


@pytest.fixture(scope="module")
def reference(m):
    """The vectors of WORDS from one uninterrupted mean_difference pass (the recipe, spelled out)."""
    found = mean_difference(m, [w.lower() for w in WORDS], baseline=[b.lower() for b in BASELINE_WORDS],
                            template=concepts.TEMPLATE)
    return {w: found[w.lower()] for w in WORDS}


@pytest.fixture(scope="module")
def baseline_dir(m, tmp_path_factory):
    """A library holding one word, so its baseline mean can seed other folders."""
    folder = tmp_path_factory.mktemp("seed")
    concepts.library(m, ["Pizza"], out=folder)
    return folder


def _seeded(baseline_dir, folder):
    """A new library folder that already holds the baseline mean (saves 100 prompts)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in baseline_dir.glob("baseline-*.npy"):
        shutil.copy(f, folder / f.name)
    return folder


def _counting():
    seen = []
    return seen, lambda done, total: seen.append((done, total))


def test_any_word_gets_the_recipes_vector(m, baseline_dir, reference, tmp_path):
    """Words outside the paper's lists work, and equal the recipe computed in one pass."""
    lib = concepts.library(m, ["Pizza"], out=baseline_dir)
    assert np.array_equal(lib["Pizza"].directions, reference["Pizza"].directions)
    assert lib["Pizza"].name == "Pizza" and lib["Pizza"].prompts == reference["Pizza"].prompts
    folder = _seeded(baseline_dir, tmp_path / "lib")
    both = concepts.library(m, ["NotAWordXYZ", "ice cream", "ice-cream"], out=folder)
    for w in both:
        assert np.array_equal(both[w].directions, reference[w].directions), w
    index = json.loads((folder / "index.json").read_text())
    files = [index["words"][w]["file"] for w in ["ice cream", "ice-cream"]]
    assert files[0] == "ice_cream.gguf" and files[1] != files[0]  # no word overwrites another's file
    assert not np.array_equal(both["ice cream"].directions, both["ice-cream"].directions)


def test_cached_words_are_loaded_in_any_case(m, baseline_dir, reference):
    seen, count = _counting()
    lib = concepts.library(m, ["pizza"], out=baseline_dir, progress=count)
    assert seen == [] and lib["pizza"].name == "pizza"  # nothing extracted
    assert np.array_equal(lib["pizza"].directions, reference["Pizza"].directions)


def test_a_changed_key_re_extracts_and_drops_the_old_files(m, baseline_dir, reference, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(baseline_dir, folder)
    index = json.loads((folder / "index.json").read_text())
    index["key"]["pyintro"] = "0.0.1"  # made by another version
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "baseline-0123456789abcdef.npy").write_bytes(b"old")
    (folder / "pizza.gguf").write_bytes(b"not the new vector")
    seen, count = _counting()
    lib = concepts.library(m, ["Pizza"], out=folder, progress=count)
    assert seen[-1] == (1, 1)  # the word again; the baseline (keyed by the new key) was there
    assert np.array_equal(lib["Pizza"].directions, reference["Pizza"].directions)
    assert not (folder / "baseline-0123456789abcdef.npy").exists()
    assert json.loads((folder / "index.json").read_text())["key"] == concepts.key(m)


def test_clear(m, baseline_dir, tmp_path, monkeypatch):
    folder = _seeded(baseline_dir, tmp_path / "lib")
    concepts.library(m, ["Dust", "Peace"], out=folder)
    (folder / "notes.md").write_text("mine")  # not the library's: kept
    removed = concepts.clear(folder, ["dust"])
    assert removed == [folder / "dust.gguf"]
    assert set(json.loads((folder / "index.json").read_text())["words"]) == {"Peace"}
    removed = concepts.clear(folder)
    assert {p.name for p in removed} == {"peace.gguf", "index.json"} | {p.name for p in baseline_dir.glob("*.npy")}
    assert [p.name for p in folder.iterdir()] == ["notes.md"]
    assert concepts.clear(tmp_path / "nothing") == []
    monkeypatch.setenv("PYINTRO_CACHE", str(tmp_path / "cache"))
    _seeded(baseline_dir, concepts.default_dir(m))
    concepts.library(m, ["Dust"])
    assert concepts.clear(m) and not concepts.default_dir(m).exists()  # the model's own folder, emptied


# -- Ctrl-C during extraction, and the next call ---------------------------------------------

EXTRACT = textwrap.dedent('''
    import json, sys
    import pyintro
    from pyintro import concepts
    from pyintro.progress import Interrupted

    concepts.CHUNK_SECONDS = 0.0  # one prompt per chunk: Ctrl-C stops within a prompt
    m = pyintro.Model.load(n_threads=2, n_gpu_layers={gpu})
    try:
        concepts.library(m, json.loads(sys.argv[2]), out=sys.argv[1], progress="log")
    except Interrupted as e:
        print(f"STOPPED {{e.done}} of {{e.total}}", file=sys.stderr, flush=True)
        sys.exit(130)
    print("FINISHED", file=sys.stderr, flush=True)
''')


def _extract_until(tmp_path, folder, ready):
    """Run EXTRACT in a subprocess, send SIGINT once ``ready()`` is true; its stderr lines."""
    script = tmp_path / "extract.py"
    script.write_text(EXTRACT.format(gpu=GPU_LAYERS))
    proc = subprocess.Popen([sys.executable, str(script), str(folder), json.dumps(WORDS)],
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    end = time.monotonic() + 600
    while not ready() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    lines = err.splitlines()
    assert proc.returncode == 130, err
    assert any(s.startswith("Ctrl-C: finishing the chunk in flight") for s in lines), err
    return lines


def _words_in(folder):
    path = folder / "index.json"
    try:
        return json.loads(path.read_text())["words"] if path.exists() else {}
    except json.JSONDecodeError:
        raise AssertionError("index.json was read half-written") from None


def test_ctrl_c_keeps_finished_work_and_the_next_call_continues(m, reference, tmp_path):
    folder = tmp_path / "lib"
    n_base = len(BASELINE_WORDS)

    # 1. Ctrl-C in the baseline prompts: their activations so far are kept, no word is listed.
    lines = _extract_until(tmp_path, folder, lambda: list(folder.glob("baseline-*.partial.npy")))
    assert f"STOPPED 0 of {len(WORDS)}" in lines
    (partial,) = folder.glob("baseline-*.partial.npy")
    kept = len(np.load(partial))
    assert 1 <= kept < n_base and _words_in(folder) == {}

    # 2. The next run starts after them; Ctrl-C once a word is saved: only whole words are listed.
    lines = _extract_until(tmp_path, folder, lambda: len(_words_in(folder)) >= 1)
    assert f"concepts: 0/{n_base - kept + len(WORDS)} prompts" in lines  # the baseline resumed
    held = _words_in(folder)
    stopped = next(s for s in lines if s.startswith("STOPPED"))
    assert stopped == f"STOPPED {len(held)} of {len(WORDS)}" and 1 <= len(held) < len(WORDS)
    assert not list(folder.glob("*.partial.npy")) and not list(folder.glob("*.tmp"))
    assert list(held) == WORDS[:len(held)]
    for w, e in held.items():
        assert (folder / e["file"]).is_file()

    # 3. A third call extracts only the rest; every vector equals one uninterrupted pass's.
    seen, count = _counting()
    lib = concepts.library(m, WORDS, out=folder, progress=count)
    assert seen[-1] == (len(WORDS) - len(held), len(WORDS) - len(held))
    for w in WORDS:
        assert np.array_equal(lib[w].directions, reference[w].directions), w
        assert lib[w].prompts == reference[w].prompts
    index = _words_in(folder)
    assert list(index) == WORDS
    for w in WORDS:
        assert index[w]["norms"] == [float(x) for x in reference[w].norms()]
