"""The concept library: Lindsey (2025)'s concept vectors for one model, extracted once and kept.

The recipe, for any word w (the paper's or not): the one-turn chat "Tell me about {w}" with w in
lower case (as the paper's appendix gives it), the residual stream at the prompt's last token
(where the assistant speaks), minus the mean over the 100 baseline words through the same
prompt; at every layer, unnormalised.

A library is a folder: one llama.cpp control-vector GGUF per word (layer 0 kept in pyintro's
metadata), the baseline mean (``baseline-<key>.npy``) and ``index.json``, which records the
model's sha256, the recipe, the prompt format, the settings the values depend on and, per word,
its file and its norm at each layer. Asking again for words already there, under the same key,
loads them; only missing words are extracted, and a changed key (another build, prompt format
or version) re-extracts them. A folder made from another model file is refused.

Extraction runs in short chunks: first the baseline prompts (their activations so far kept in
``baseline-<key>.partial.npy``), then the words, each finished word's file written atomically and
entered in ``index.json`` at once; nothing half-made is ever listed there. Ctrl-C stops at the
end of the chunk in flight with ``progress.Interrupted`` and the next call continues where it
stopped; with a batch-invariant model (the default) the vectors are bit-identical to one
uninterrupted pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from pyintro.disk import atomic_path, write_json
from pyintro.extract import activations, difference, prompt_texts, read_words
from pyintro.progress import Interrupted, Progress, SigintAtChunkEnd
from pyintro.results import provenance
from pyintro.stimuli import BASELINE_WORDS, CATEGORY_WORDS, CONCEPT_WORDS, CONTROL_WORDS
from pyintro.vectors import ConceptVector

TEMPLATE = "Tell me about {}"
RECIPE = {"template": TEMPLATE, "word_case": "lower",
          "position": "the prompt's last token (where the assistant speaks)",
          "baseline": "stimuli.BASELINE_WORDS (Lindsey 2025, 100 entries), lower case", "normalised": False}
CHUNK_SECONDS = 2.0  # extraction chunks are sized to take about this long (Ctrl-C waits for one)
FIRST_CHUNK = 2  # prompts in the first chunk, before a rate is known
MAX_CHUNK = 64


def all_words() -> list[str]:
    """Every word the paper's experiments inject or compare with: the 50 concepts, the five
    category lists and experiment 4's control words (each once, in that order)."""
    words = list(CONCEPT_WORDS) + [w for ws in CATEGORY_WORDS.values() for w in ws] + list(CONTROL_WORDS)
    return list(dict.fromkeys(words))


def cache_dir() -> Path:
    """pyintro's cache folder ($PYINTRO_CACHE, else $XDG_CACHE_HOME/pyintro or ~/.cache/pyintro)."""
    if os.environ.get("PYINTRO_CACHE"):
        return Path(os.environ["PYINTRO_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "pyintro"


def default_dir(model) -> Path:
    """Where ``library`` keeps a model's vectors unless told otherwise."""
    return cache_dir() / "concepts" / model.sha256[:16]


def check_words(words: Optional[Iterable[str]]) -> list[str]:
    """A word list: None means the 50 concept words; each a non-empty string, none twice."""
    if words is None:
        return list(CONCEPT_WORDS)
    if isinstance(words, str):
        words = [words]
    out = [w.strip() if isinstance(w, str) else w for w in words]
    if not out:
        raise ValueError("the word list is empty: give at least one word")
    for w in out:
        if not isinstance(w, str) or not w:
            raise ValueError(f"a word must be a non-empty string, got {w!r}")
    seen = set()
    for w in out:
        if w.lower() in seen:
            raise ValueError(f"the word {w!r} is listed twice (words are compared in lower case)")
        seen.add(w.lower())
    return out


def parse_words(text: Optional[str]) -> list[str]:
    """A words argument as the CLI takes it: None (the paper's 50 concept words), "all" (every
    word of the paper's experiments, ``all_words``), a word file that exists (one word per line),
    or a comma list ("Pizza, Dust"). A text that looks like a path (it holds "/" or ends in
    ".txt") but names no file is refused, not taken as a word. Raises ValueError (one line)."""
    if text is None:
        return list(CONCEPT_WORDS)
    text = text.strip()
    if text == "all":
        return all_words()
    path = Path(text).expanduser()
    if path.is_file():
        try:
            words = read_words(path)
        except OSError as e:
            raise ValueError(f"cannot read the word file {text}: {e.strerror or e}") from None
    elif "/" in text or os.sep in text or text.lower().endswith(".txt"):
        raise ValueError(f"{text} is a folder, not a word file" if path.is_dir() else f"no such word file: {text}")
    else:
        words = [w for w in text.split(",") if w.strip()]
    return check_words(words)


def key(model) -> dict:
    """What a library's vectors depend on: when any of it differs, they are extracted again."""
    p = provenance(model)
    numerics = {k: v for k, v in p["numerics"].items() if k not in ("n_ctx", "n_seq_max")}  # these change nothing
    return {"model_sha256": p["model_sha256"], "recipe": RECIPE, "prompt_format": p["prompt_format"],
            "baseline_sha256": hashlib.sha256("\n".join(BASELINE_WORDS).encode()).hexdigest(),
            "numerics": numerics, "pyintro": p["pyintro"], "llama_cpp_python": p["llama_cpp_python"]}


def library(model, words: Optional[Iterable[str]] = None, out=None, progress=None) -> dict[str, ConceptVector]:
    """The concept vectors of ``words`` (default: the 50 concept words; any word works) for
    ``model``: {word: ConceptVector}, from the library folder ``out`` (default
    ``default_dir(model)``), extracting only the words it does not hold yet (in chunks; Ctrl-C
    raises ``progress.Interrupted`` after the chunk in flight, keeping every finished word).
    ``progress``: as in ``pyintro.progress``, over the prompts to run."""
    words = check_words(words)
    out = Path(out) if out is not None else default_dir(model)
    index = _read_index(out, model)
    k = key(model)
    held = index["words"] if index.get("key") == k else {}
    missing = [w for w in words if _entry(held, w, out) is None]
    if getattr(model, "dry_run", False):  # a plan: count the extraction of what is missing, keep nothing
        if missing:
            model.capture_many([model.chat(TEMPLATE.format(w.lower())) for w in missing + list(BASELINE_WORDS)])
        ones = np.ones((model.n_layer, model.n_embd), np.float32)
        return {w: ConceptVector(ones, model_hint=model.arch, name=w, model_sha256=model.sha256) for w in words}
    if missing:
        _drop_stale(out, index, k)
        _extract(model, words, missing, out, k, progress)
        held = _read_index(out, model)["words"]
    return {w: _load(out, _entry(held, w, out), w) for w in words}


def load(folder, model=None) -> dict[str, ConceptVector]:
    """Every vector of a library folder; with ``model``, refuse one made from another model file."""
    folder = Path(folder)
    index = _read_index(folder, model)
    if not index.get("words"):
        raise FileNotFoundError(f"{folder} holds no concept library; make one with `pyintro concepts --out {folder}`")
    return {w: _load(folder, e, w) for w, e in index["words"].items()}


def clear(folder_or_model, words: Optional[Iterable[str]] = None) -> list[Path]:
    """Remove a concept library (a folder, or a model's ``default_dir``), or with ``words`` only
    those words' vectors; returns the files removed (none when there is no library). Only files
    the library wrote are removed (its index, the files it lists, its baseline and temporary
    files), and the folder itself when that leaves it empty."""
    folder = default_dir(folder_or_model) if hasattr(folder_or_model, "sha256") else Path(folder_or_model)
    if not folder.is_dir():
        return []
    try:
        index = _read_index(folder, None)
    except ValueError:  # a damaged index: nothing in it to keep
        index = {"words": {}}
    entries = index.get("words", {})
    removed, changed = [], False
    if words is not None:
        for w in check_words(words):
            name = next((n for n in entries if n.lower() == w.lower()), None)
            if name is not None:
                file, changed = entries.pop(name)["file"], True
                if all(e["file"] != file for e in entries.values()):
                    removed += _remove([folder / file])
        if changed:
            write_json(folder / "index.json", dict(index, words=entries))
        return removed
    targets = [folder / e["file"] for e in entries.values()] + sorted(folder.glob("baseline-*.npy"))
    targets += sorted(folder.glob("*.tmp"))
    if folder.resolve().parent == (cache_dir() / "concepts").resolve():  # pyintro's own cache: every vector
        targets += sorted(folder.glob("*.gguf"))
    if (folder / "index.json").exists():
        targets.append(folder / "index.json")
    removed = _remove(dict.fromkeys(targets))
    if not any(folder.iterdir()):
        folder.rmdir()
    return removed


# -- extraction in chunks ----------------------------------------------------------------------


def _extract(model, words: list[str], missing: list[str], out: Path, k: dict, progress) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mean_file, partial_file = out / f"baseline-{_tag(k)}.npy", out / f"baseline-{_tag(k)}.partial.npy"
    b_texts = prompt_texts(model, [b.lower() for b in BASELINE_WORDS], TEMPLATE)
    shape = (model.n_layer, model.n_embd)
    base = _load_array(mean_file, np.float64, lambda a: a.shape == shape)  # [n_layer, n_embd]
    b_acts = None if base is not None else _load_array(  # [n_done, n_layer, n_embd]
        partial_file, np.float32, lambda a: a.ndim == 3 and a.shape[1:] == shape and len(a) < len(b_texts))
    b_done = 0 if b_acts is None else len(b_acts)
    n_todo = (0 if base is not None else len(b_texts) - b_done) + len(missing)

    def stop():
        done = len(words) - len(missing) + n_words
        raise Interrupted(done, len(words), out, "words", resumes_itself=True)

    n_words = 0
    with Progress(progress, n_todo, "concepts", "prompt") as bar, SigintAtChunkEnd(bar) as interrupt:
        while base is None and b_done < len(b_texts):
            n = _chunk_size(bar)
            acts = activations(model, b_texts[b_done:b_done + n], -1).astype(np.float32)  # exact: captured in float32
            b_acts = acts if b_acts is None else np.concatenate([b_acts, acts])
            b_done = len(b_acts)
            if b_done < len(b_texts):
                _save_array(partial_file, b_acts)
            bar.advance(len(acts))
            if interrupt.requested and b_done < len(b_texts):
                stop()
        if base is None:
            base = b_acts.astype(np.float64).mean(0)  # as mean_difference computes it: the same bits
            _save_array(mean_file, base)
            partial_file.unlink(missing_ok=True)
        while n_words < len(missing):
            chunk = missing[n_words:n_words + _chunk_size(bar)]
            texts = prompt_texts(model, [w.lower() for w in chunk], TEMPLATE)
            acts = activations(model, texts, -1)  # [len(chunk), n_layer, n_embd]
            new = {}
            for i, w in enumerate(chunk):
                v = difference(model, w, acts[i], base, texts[i], b_texts)
                file = _file_name(w, out, new)
                _save_quietly(v, out / file)
                new[w] = {"file": file, "norms": [float(x) for x in v.norms()]}
            _add_to_index(out, model, k, new)
            n_words += len(chunk)
            bar.advance(len(chunk))
            if interrupt.requested and n_words < len(missing):
                stop()


def _chunk_size(bar: Progress) -> int:
    """Prompts for the next chunk: about CHUNK_SECONDS at the rate so far."""
    if bar.chunks == 0 or bar.last <= bar.start:
        return FIRST_CHUNK
    rate = bar.done / (bar.last - bar.start)
    return max(1, min(MAX_CHUNK, int(CHUNK_SECONDS * rate)))


def _add_to_index(out: Path, model, k: dict, new: dict) -> None:
    """Enter finished words in index.json (read again first, so that words another process
    entered meanwhile are kept)."""
    index = _read_index(out, model)
    words = index["words"] if index.get("key") == k else {}
    words.update(new)
    write_json(out / "index.json", {"key": k, "recipe": RECIPE, "source": "pyintro.concepts (Lindsey 2025 recipe)",
                                    "words": words})


def _file_name(word: str, out: Path, new: dict) -> str:
    """``<slug>.gguf``, unless another word of the library already has that file."""
    index = _read_index(out, None)
    taken = {e["file"]: w for w, e in {**index.get("words", {}), **new}.items()}
    file = _slug(word) + ".gguf"
    if taken.get(file, word).lower() != word.lower():
        file = f"{_slug(word)}_{hashlib.sha256(word.lower().encode()).hexdigest()[:8]}.gguf"
    return file


def _tag(k: dict) -> str:
    """A library key in 16 hex digits, for file names."""
    return hashlib.sha256(json.dumps(k, sort_keys=True).encode()).hexdigest()[:16]


def _drop_stale(out: Path, index: dict, k: dict) -> None:
    """Files of another key (another pyintro, build or prompt format) would never be used again."""
    stale = [out / e["file"] for e in index["words"].values()] if index.get("key") not in (None, k) else []
    _remove(stale + [f for f in sorted(out.glob("baseline-*.npy")) if not f.name.startswith(f"baseline-{_tag(k)}.")])


# -- files ---------------------------------------------------------------------------------------


def _entry(held: dict, word: str, folder: Path) -> Optional[dict]:
    """The index entry of ``word`` (compared in lower case) whose file is there, else None."""
    for name, e in held.items():
        if name.lower() == word.lower() and (folder / e["file"]).is_file():
            return e
    return None


def _load(folder: Path, entry: dict, word: str) -> ConceptVector:
    v = ConceptVector.load(folder / entry["file"])
    v.name = word
    return v


def _read_index(folder: Path, model) -> dict:
    path = folder / "index.json"
    if not path.is_file():
        return {"words": {}}
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{path} is damaged; delete the folder or choose another --out") from None
    sha = index.get("key", {}).get("model_sha256")
    if model is not None and sha != model.sha256:
        raise ValueError(f"{folder} holds concept vectors of another model file (sha256 {str(sha)[:12]}..., this "
                         f"model {model.sha256[:12]}...); choose another folder (--out / --library) for this model")
    index.setdefault("words", {})
    return index


def _load_array(path: Path, dtype, fits) -> Optional[np.ndarray]:
    """An array saved by ``_save_array``, or None when it is missing or unusable."""
    try:
        a = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    return a if a.dtype == dtype and fits(a) else None


def _save_array(path: Path, a: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, a)


def _remove(paths: Iterable[Path]) -> list[Path]:
    removed = []
    for p in paths:
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def _slug(word: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", word.lower()).strip("_") or "word"


def _save_quietly(v: ConceptVector, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layer 0 is kept for pyintro; llama.cpp ignores it
        v.save(path)
