"""The concept library: Lindsey (2025)'s concept vectors for one model, extracted once and kept.

The recipe, for a word w: the one-turn chat "Tell me about {w}" with w in lower case (as the
paper's appendix gives it), the residual stream at the prompt's last token (where the
assistant speaks), minus the mean over the 100 baseline words through the same prompt; at
every layer, unnormalised.

A library is a folder: one llama.cpp control-vector GGUF per word (layer 0 kept in pyintro's
metadata) and ``index.json``, which records the model's sha256, the recipe, the prompt format,
the settings the values depend on and, per word, its file and its norm at each layer. Asking
again for words already there, under the same key, loads them; only missing words are
extracted, and a changed key (another build, prompt format or version) re-extracts them. A
folder made from another model file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from pyintro.extract import mean_difference
from pyintro.disk import write_json
from pyintro.results import provenance
from pyintro.stimuli import BASELINE_WORDS, CATEGORY_WORDS, CONCEPT_WORDS, CONTROL_WORDS
from pyintro.vectors import ConceptVector

TEMPLATE = "Tell me about {}"
RECIPE = {"template": TEMPLATE, "word_case": "lower", "position": "the prompt's last token (where the assistant speaks)",
          "baseline": "stimuli.BASELINE_WORDS (Lindsey 2025, 100 entries), lower case", "normalised": False}


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


def key(model) -> dict:
    """What a library's vectors depend on: when any of it differs, they are extracted again."""
    p = provenance(model)
    numerics = {k: v for k, v in p["numerics"].items() if k not in ("n_ctx", "n_seq_max")}  # these change nothing
    return {"model_sha256": p["model_sha256"], "recipe": RECIPE, "prompt_format": p["prompt_format"],
            "baseline_sha256": hashlib.sha256("\n".join(BASELINE_WORDS).encode()).hexdigest(),
            "numerics": numerics, "pyintro": p["pyintro"], "llama_cpp_python": p["llama_cpp_python"]}


def library(model, words: Optional[Iterable[str]] = None, out=None, progress=None) -> dict[str, ConceptVector]:
    """The concept vectors of ``words`` (default: the 50 concept words) for ``model``: {word:
    ConceptVector}, from the library folder ``out`` (default ``default_dir(model)``),
    extracting in one batched pass only the words it does not hold yet."""
    words = check_words(words)
    out = Path(out) if out is not None else default_dir(model)
    index = _read_index(out, model)
    k = key(model)
    held = index["words"] if index.get("key") == k else {}
    missing = [w for w in words if w not in held or not (out / held[w]["file"]).is_file()]
    if getattr(model, "dry_run", False):  # a plan: count the extraction of what is missing, keep nothing
        if missing:
            model.capture_many([model.chat(TEMPLATE.format(w.lower())) for w in missing + list(BASELINE_WORDS)])
        ones = np.ones((model.n_layer, model.n_embd), np.float32)
        return {w: ConceptVector(ones, model_hint=model.arch, name=w, model_sha256=model.sha256) for w in words}
    if missing:
        out.mkdir(parents=True, exist_ok=True)
        found = mean_difference(model, [w.lower() for w in missing], baseline=[b.lower() for b in BASELINE_WORDS],
                                template=TEMPLATE, progress=progress)
        for w in missing:
            v = found[w.lower()]
            v.name = w
            file = _slug(w) + ".gguf"
            _save_quietly(v, out / file)
            held[w] = {"file": file, "norms": [float(x) for x in v.norms()]}
        write_json(out / "index.json", {"key": k, "recipe": RECIPE, "source": "pyintro.concepts (Lindsey 2025 recipe)",
                                        "words": held})
    return {w: ConceptVector.load(out / held[w]["file"]) for w in words}


def load(folder, model=None) -> dict[str, ConceptVector]:
    """Every vector of a library folder; with ``model``, refuse one made from another model file."""
    folder = Path(folder)
    index = _read_index(folder, model)
    if not index.get("words"):
        raise FileNotFoundError(f"{folder} holds no concept library; make one with `pyintro concepts --out {folder}`")
    return {w: ConceptVector.load(folder / e["file"]) for w, e in index["words"].items()}


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
    return index


def _slug(word: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", word.lower()).strip("_") or "word"


def _save_quietly(v: ConceptVector, path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layer 0 is kept for pyintro; llama.cpp ignores it
        v.save(path)
