"""Experiment 4 of Lindsey (2025): intentional control of internal states. Told to think (or
not to think) about a word while writing a sentence, does the model represent the word more?

Stimuli: the paper's prompts (``stimuli.PROMPTS["exp4"]``): "Write "{sentence}" Think about
{word} while you write the sentence...", its "Don't think" twin, six incentive variants and
the four wording controls, each control's two variants (the words in brackets present or
not); each with a sentence and a concept word (lower case, as the paper's example) it does not
hold (``pairs.pairs``). Manipulation: none. The assistant's answer is the sentence itself,
teacher-forced; readout: the residual stream at every layer on the sentence's tokens only
(``Model.capture_rows``), each token's cosine similarity with the word's concept vector at
that layer, averaged over the tokens (``cos``; ``token_cos`` lists them), and the same with the
100 control words' vectors (``stimuli.CONTROL_WORDS``, built with the same baseline
subtraction): their mean, standard deviation and 95th percentile over the words (the paper's
baseline band), ``delta = cos - ctrl_mean`` and ``z = delta / ctrl_std``.

Contrasts (``contrasts``), per layer, with percentile-bootstrap intervals over the pairs: each
of think and don't-think against its baseline, think minus don't-think, each incentive pair
(rewarded - punished, happy - sad, charity - terrorist organisations), and each wording
control (affirmative - negative).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro import concepts as library
from pyintro.experiments import control_analysis as analysis
from pyintro.experiments import pairs
from pyintro.experiments.dialogue import prompt, span_of
from pyintro.experiments.protocol import Experiment, Schema, Stage, Work
from pyintro.experiments.stats import depth, shard_of
from pyintro.injection import Layers
from pyintro.readout import cosines
from pyintro.stimuli import CONTROL_WORDS, PROMPTS, SENTENCES

__all__ = ["EXPERIMENT", "control", "pair_prompt", "variants"]

TEMPLATES = tuple(PROMPTS["exp4"]["templates"])  # think, dont_think, rewarded, punished, happy, sad, donate_*
FORMATS = tuple(PROMPTS["exp4"]["control_prompt_formats"]["formats"])
SCHEMA = Schema("variant pair:int sentence word layer:int depth:float n_tokens:int cos:float ctrl_mean:float "
                "ctrl_std:float ctrl_p95:float delta:float z:float token_cos model quant_type",
                key=("variant", "pair", "layer"), need="ctrl_mean")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "pairs", "variants",
                  "control_words", "vector_sha256")


def _format_variants(i: int, fmt: str) -> dict[str, str]:
    """A wording control's two variants: brackets "[no]" kept (negative) or dropped
    (affirmative); "[rewarded / punished]" gives one variant per side."""
    a, b = fmt.index("["), fmt.index("]")
    inside = fmt[a + 1:b]
    if "/" in inside:
        left, right = (x.strip() for x in inside.split("/"))
        return {f"c{i}_{left}": fmt[:a] + left + fmt[b + 1:], f"c{i}_{right}": fmt[:a] + right + fmt[b + 1:]}
    dropped = (fmt[:a] + fmt[b + 1:]).replace("  ", " ")
    return {f"c{i}_affirm": dropped, f"c{i}_negate": fmt[:a] + inside + fmt[b + 1:]}


def variants() -> dict[str, str]:
    """{name: user message template with {sentence} and {word}}: the eight templates, then the
    wording controls' variants (c1_affirm, c1_negate, ..., c4_rewarded, c4_punished)."""
    out = {name: PROMPTS["exp4"]["templates"][name]["messages"][0]["content"] for name in TEMPLATES}
    for i, fmt in enumerate(FORMATS, 1):
        out.update(_format_variants(i, fmt))
    return out


def pair_prompt(model, template: str, sentence: str, word: str) -> tuple[list[int], list[int]]:
    """(ids, rows): the user's instruction, then the sentence as the assistant's answer; rows
    are the sentence's tokens in the answer."""
    user = template.replace("{sentence}", sentence).replace("{word}", word.lower())
    head = model.render([("user", user)], add_assistant=True)
    text, ids = prompt(model, [("user", user)], prefill=sentence)
    return ids, span_of(model, text, ids, sentence, len(head))


def design(model, vectors: dict, pair_list: Sequence[tuple[int, str, str]], layers=None,
           variant_names: Optional[Sequence[str]] = None, control_words: Sequence[str] = CONTROL_WORDS, seed: int = 0,
           shard=None) -> Work:
    """Experiment 4's work: one chunk per pair (a shard takes every N-th), its prompts captured in
    one batched call."""
    layers = Layers.of(layers, model.n_layer)
    all_variants = variants()
    names = list(all_variants) if variant_names is None else list(variant_names)
    for n in names:
        if n not in all_variants:
            raise ValueError(f"variant must be one of {', '.join(all_variants)}, got {n!r}")
    control_words = list(control_words)
    if len(control_words) < 2:
        raise ValueError("the baseline needs at least two control words")
    for w in [w for _, _, w in pair_list] + control_words:
        if w not in vectors:
            raise ValueError(f"no vector for {w!r}: build the library with `pyintro concepts --words ...` first")
    ctrl = np.stack([vectors[w].directions[list(layers)] for w in control_words])  # [n_ctrl, n_layers, n_embd]
    meta = dict(pairs=[list(p) for p in pair_list], variants={n: all_variants[n] for n in names},
                control_words=control_words, layers=list(layers),
                prompt_example=model.detokenize(pair_prompt(model, all_variants[names[0]], *pair_list[0][1:])[0])
                if pair_list else None,
                vector_sha256={w: hashlib.sha256(vectors[w].directions.tobytes()).hexdigest()
                               for w in dict.fromkeys([w for _, _, w in pair_list] + control_words)})

    def score(chunk, done):
        i, sentence, word = chunk
        built = [pair_prompt(model, all_variants[n], sentence, word) for n in names]
        caps = model.capture_rows([ids for ids, _ in built], [rows for _, rows in built], list(layers))
        target = vectors[word].directions[list(layers)]
        rows = []
        for n, cap in zip(names, caps):
            cos, cc = cosines(cap, target, ctrl)  # [n_layers, n_tok], [n_ctrl, n_layers, n_tok]
            c_mean = cc.mean(axis=2)  # [n_ctrl, n_layers]: each control word's mean over tokens
            mean_cos = cos.mean(axis=1)
            for j, L in enumerate(layers):
                mu, sd = float(c_mean[:, j].mean()), float(c_mean[:, j].std(ddof=1))
                rows.append({"variant": n, "pair": i, "sentence": sentence, "word": word, "layer": L,
                             "depth": depth(L, model.n_layer), "n_tokens": cap.shape[1], "cos": float(mean_cos[j]),
                             "ctrl_mean": mu, "ctrl_std": sd, "ctrl_p95": float(np.quantile(c_mean[:, j], 0.95)),
                             "delta": float(mean_cos[j] - mu), "z": float((mean_cos[j] - mu) / sd) if sd > 0 else 0.0,
                             "token_cos": " ".join(f"{x:.4f}" for x in cos[j]),
                             "model": Path(model.path).name, "quant_type": model.quant_type})
        return rows

    def keys(chunk):
        return [(n, chunk[0], L) for n in names for L in layers]

    stage = Stage(lambda done: shard_of(list(pair_list), shard), score, keys, "control", "row")
    return Work(dict(meta, seed=int(seed)), [stage], {"seed": int(seed)}, units=len(pair_list),
                prompts=[pair_prompt(model, all_variants[names[0]], *p[1:])[0] for p in list(pair_list)[:2]])


def control(model, vectors: dict, pair_list: Sequence[tuple[int, str, str]], layers=None,
            variant_names: Optional[Sequence[str]] = None, control_words: Sequence[str] = CONTROL_WORDS, out=None,
            resume: bool = False, shard=None, progress=None) -> list[dict]:
    """Experiment 4's rows, one per (variant, pair, layer) (see the module docstring).

    vectors: {word: ConceptVector} with every pair's word and every control word.
    variant_names: which of ``variants()`` (default all). out/resume/shard: as in
    ``thoughts.thoughts`` (one chunk per pair: its prompts captured in one batched call).
    """
    work = design(model, vectors, pair_list, layers, variant_names, control_words, shard=shard)
    return EXPERIMENT.execute(model, work, out, resume, progress, shard)


# -- from the CLI's options ------------------------------------------------------------------------

QUICK = {"pairs": 5, "control_words": 20}


def prepare(model, words: Optional[Sequence[str]] = None, sentences: Optional[Sequence[str]] = None,
            library_dir=None, layers=None, n_pairs: Optional[int] = None, n_control: Optional[int] = None,
            quick: bool = False, seed: int = 0, shard=None, progress=None, out_dir=None) -> Work:
    """Experiment 4's work from the CLI's options. ``words``: the words paired with the sentences
    (default the 50 concept words); ``n_control``: the first N of the 100 control words.
    ``quick``: 5 pairs and 20 control words (wherever the caller gave nothing); every layer is
    still captured (it is cheap)."""
    pool = library.check_words(words)
    sentences = pairs.check_sentences(SENTENCES if sentences is None else sentences)
    if n_pairs is None and quick:
        n_pairs = min(QUICK["pairs"], len(sentences))
    if n_control is None:
        n_control = QUICK["control_words"] if quick else len(CONTROL_WORDS)
    if not 2 <= n_control <= len(CONTROL_WORDS):
        raise ValueError(f"control words: give between 2 and {len(CONTROL_WORDS)}, got {n_control}")
    layers = Layers.of(layers, model.n_layer)  # refuse bad input before extracting
    pair_list = pairs.pairs(sentences, pool, seed, n_pairs)
    ctrl_words = list(CONTROL_WORDS[:n_control])
    clash = sorted({w.lower() for _, _, w in pair_list} & {c.lower() for c in ctrl_words})
    if clash:
        raise ValueError(f"{', '.join(clash)} is also a control word; pair the sentences with other words")
    vectors = library.library(model, list(dict.fromkeys([w for _, _, w in pair_list] + ctrl_words)), out=library_dir,
                              progress=progress)
    return design(model, vectors, pair_list, layers, control_words=ctrl_words, seed=seed, shard=shard)


EXPERIMENT = Experiment("control", "Lindsey (2025), experiment 4: intentional control of internal states", SCHEMA,
                        SAME_ON_RESUME, prepare, analysis.analyse, QUICK, ("contrasts.csv", ("contrast", "layer"),
                                                                            "mean"),
                        mode="activation cosines (no injection, no judge)")
