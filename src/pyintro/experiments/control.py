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
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pyintro.experiments.common import depth, prompt, shard_of
from pyintro.experiments.pairs import bootstrap, span_of
from pyintro.injection import layer_list
from pyintro.results import Table, convert, provenance, read_rows, run_chunks, write_json, write_rows
from pyintro.stimuli import CITATION, CONTROL_WORDS, PROMPTS

TEMPLATES = tuple(PROMPTS["exp4"]["templates"])  # think, dont_think, rewarded, punished, happy, sad, donate_*
FORMATS = tuple(PROMPTS["exp4"]["control_prompt_formats"]["formats"])
COLUMNS = ["variant", "pair", "sentence", "word", "layer", "depth", "n_tokens", "cos", "ctrl_mean", "ctrl_std",
           "ctrl_p95", "delta", "z", "token_cos", "model", "quant_type"]
INTS = ("pair", "layer", "n_tokens")
FLOATS = ("depth", "cos", "ctrl_mean", "ctrl_std", "ctrl_p95", "delta", "z")
SAME_ON_RESUME = ("pyintro", "llama_cpp_python", "model_sha256", "numerics", "prompt_format", "pairs", "variants",
                  "control_words", "vector_sha256")


def key(row: dict) -> tuple:
    return (row["variant"], int(row["pair"]), int(row["layer"]))


def parse_row(row: dict) -> dict:
    return convert(row, INTS, FLOATS)


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


CONTRASTS = [("think_vs_baseline", "think", None), ("dont_think_vs_baseline", "dont_think", None),
             ("think_vs_dont_think", "think", "dont_think"), ("rewarded_vs_punished", "rewarded", "punished"),
             ("happy_vs_sad", "happy", "sad"), ("charity_vs_terrorist", "donate_charity", "donate_terrorist"),
             ("c1_affirm_vs_negate", "c1_affirm", "c1_negate"), ("c2_affirm_vs_negate", "c2_affirm", "c2_negate"),
             ("c3_affirm_vs_negate", "c3_affirm", "c3_negate"), ("c4_rewarded_vs_punished", "c4_rewarded",
                                                                  "c4_punished")]


def pair_prompt(model, template: str, sentence: str, word: str) -> tuple[list[int], list[int]]:
    """(ids, rows): the user's instruction, then the sentence as the assistant's answer; rows
    are the sentence's tokens in the answer."""
    user = template.replace("{sentence}", sentence).replace("{word}", word.lower())
    head = model.render([("user", user)], add_assistant=True)
    text, ids = prompt(model, [("user", user)], prefill=sentence)
    return ids, span_of(model, text, ids, sentence, len(head))


def cosines(acts: np.ndarray, target: np.ndarray, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of each captured row with the word's vector and with each control
    word's vector, in float64. acts: [n_layer, n_tok, n_embd]; target: [n_layer, n_embd];
    controls: [n_ctrl, n_layer, n_embd]. Returns ([n_layer, n_tok], [n_ctrl, n_layer, n_tok])."""
    a = np.asarray(acts, np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    t = np.asarray(target, np.float64)
    t = t / np.linalg.norm(t, axis=-1, keepdims=True)
    c = np.asarray(controls, np.float64)
    c = c / np.linalg.norm(c, axis=-1, keepdims=True)
    return np.einsum("ltd,ld->lt", a, t), np.einsum("ltd,kld->klt", a, c)


def control(model, vectors: dict, pair_list: Sequence[tuple[int, str, str]], layers=None,
            variant_names: Optional[Sequence[str]] = None, control_words: Sequence[str] = CONTROL_WORDS, out=None,
            resume: bool = False, shard=None, progress=None) -> list[dict]:
    """Experiment 4's rows, one per (variant, pair, layer) (see the module docstring).

    vectors: {word: ConceptVector} with every pair's word and every control word.
    variant_names: which of ``variants()`` (default all). out/resume/shard: as in
    ``thoughts.thoughts`` (one chunk per pair: its prompts captured in one batched call).
    """
    layers = layer_list(layers, model.n_layer)
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
    ctrl = np.stack([vectors[w].directions[layers] for w in control_words])  # [n_ctrl, n_layers, n_embd]
    mine = shard_of(list(pair_list), shard)
    meta = dict(provenance(model), pairs=[list(p) for p in pair_list], variants={n: all_variants[n] for n in names},
                control_words=control_words, layers=layers,
                prompt_example=model.detokenize(pair_prompt(model, all_variants[names[0]], *pair_list[0][1:])[0])
                if pair_list else None,
                vector_sha256={w: hashlib.sha256(vectors[w].directions.tobytes()).hexdigest()
                               for w in dict.fromkeys([w for _, _, w in pair_list] + control_words)},
                columns=COLUMNS)

    def compute(chunk):
        i, sentence, word = chunk
        built = [pair_prompt(model, all_variants[n], sentence, word) for n in names]
        caps = model.capture_rows([ids for ids, _ in built], [rows for _, rows in built], layers)
        target = vectors[word].directions[layers]
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

    with Table(out, COLUMNS, key, parse_row, meta, SAME_ON_RESUME, resume) as table:
        run_chunks(table, mine, compute, keys, progress, desc="control", unit="row")
    return list(table.done.values())


# -- summaries ----------------------------------------------------------------------------------

CONTRAST_COLUMNS = ["contrast", "a", "b", "layer", "depth", "n", "mean", "lo", "hi"]


def contrasts(rows, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Per (contrast, layer): the mean over pairs of a's cosine minus b's (b None: minus a's own
    control-word mean) and its 95% percentile-bootstrap interval over the pairs. Contrasts
    whose variants are missing are left out."""
    by: dict[tuple, dict] = {}
    for r in rows:
        by.setdefault((r["variant"], int(r["layer"])), {})[int(r["pair"])] = r
    layers = sorted({int(r["layer"]) for r in rows})
    have = {r["variant"] for r in rows}
    out = []
    for name, a, b in CONTRASTS:
        if a not in have or (b is not None and b not in have):
            continue
        for L in layers:
            ra, rb = by.get((a, L), {}), by.get((b, L), {}) if b else {}
            pairs = sorted(ra) if b is None else sorted(set(ra) & set(rb))
            d = [float(ra[p]["delta"]) if b is None else float(ra[p]["cos"]) - float(rb[p]["cos"]) for p in pairs]
            mean, lo, hi = bootstrap(d, n_boot, seed)
            out.append({"contrast": name, "a": a, "b": b or "baseline", "layer": L,
                        "depth": float(ra[pairs[0]]["depth"]) if pairs else float("nan"), "n": len(d), "mean": mean,
                        "lo": lo, "hi": hi})
    return out


def layer_means(rows) -> list[dict]:
    """Per (variant, layer): the mean over pairs of cos, ctrl_mean, ctrl_std and ctrl_p95."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["variant"], int(r["layer"])), []).append(r)
    return [{"variant": v, "layer": L, "depth": float(rs[0]["depth"]), "n": len(rs),
             **{c: float(np.mean([float(r[c]) for r in rs])) for c in ("cos", "ctrl_mean", "ctrl_std", "ctrl_p95")}}
            for (v, L), rs in sorted(groups.items())]


def summary(rows, contrast_rows) -> dict:
    """Where think minus don't-think peaks (with its interval), how many layers put think and
    don't-think above their baselines (interval above 0), and the last layer's values (does
    the representation return to baseline: the paper's "silent" reading)."""
    by = {}
    for c in contrast_rows:
        by.setdefault(c["contrast"], []).append(c)
    head = {"n_pairs": len({int(r["pair"]) for r in rows}), "n_layers": len({int(r["layer"]) for r in rows})}
    for name, cs in by.items():
        best = max(cs, key=lambda c: (c["mean"], -c["layer"]))
        head[name] = {"peak": best, "layers_above_zero": sum(1 for c in cs if c["lo"] > 0),
                      "last_layer": max(cs, key=lambda c: c["layer"])}
    return head


def report(head: dict) -> list[str]:
    lines = []
    for name, label in (("think_vs_baseline", "think − baseline"),
                        ("dont_think_vs_baseline", "don't think − baseline"),
                        ("think_vs_dont_think", "think − don't think"),
                        ("rewarded_vs_punished", "rewarded − punished"),
                        ("c2_affirm_vs_negate", "control 'I [don't] often think' affirm − negate")):
        if name not in head:
            continue
        h = head[name]
        p, last = h["peak"], h["last_layer"]
        lines.append(f"{label}: peak {p['mean']:+.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}] at layer {p['layer']} "
                     f"(depth {p['depth']:.2f}); interval above 0 at {h['layers_above_zero']} of {head['n_layers']} "
                     f"layers; last layer {last['mean']:+.4f} [{last['lo']:+.4f}, {last['hi']:+.4f}]")
    return lines


# -- end to end ---------------------------------------------------------------------------------

QUICK = {"pairs": 5, "control_words": 20}
TITLE = "Lindsey (2025), experiment 4: intentional control of internal states"


def run(model, out_dir, words: Optional[Sequence[str]] = None, sentences: Optional[Sequence[str]] = None,
        library=None, layers=None, n_pairs: Optional[int] = None, n_control: Optional[int] = None,
        quick: bool = False, seed: int = 0, shard=None, resume: bool = False, progress=None) -> dict:
    """Experiment 4 into ``out_dir`` (which must exist): results.csv (one row per variant, pair
    and layer), contrasts.csv, layers.csv, control.png and summary.json. ``words``: the words
    paired with the sentences (default the 50 concept words); ``n_control``: the first N of
    the 100 control words. ``quick``: 5 pairs and 20 control words (unless given); every
    layer is still captured (it is cheap). Returns the summary."""
    from pyintro import concepts
    from pyintro.experiments.pairs import check_sentences, pairs
    from pyintro.stimuli import SENTENCES

    start = time.perf_counter()
    pool = concepts.check_words(words)
    sentences = check_sentences(SENTENCES if sentences is None else sentences)
    if n_pairs is None and quick:
        n_pairs = min(QUICK["pairs"], len(sentences))
    if n_control is None:
        n_control = QUICK["control_words"] if quick else len(CONTROL_WORDS)
    if not 2 <= n_control <= len(CONTROL_WORDS):
        raise ValueError(f"control words: give between 2 and {len(CONTROL_WORDS)}, got {n_control}")
    layer_list(layers, model.n_layer)  # refuse bad input before extracting
    pair_list = pairs(sentences, pool, seed, n_pairs)
    ctrl_words = list(CONTROL_WORDS[:n_control])
    clash = sorted({w.lower() for _, _, w in pair_list} & {c.lower() for c in ctrl_words})
    if clash:
        raise ValueError(f"{', '.join(clash)} is also a control word; pair the sentences with other words")
    vectors = concepts.library(model, list(dict.fromkeys([w for _, _, w in pair_list] + ctrl_words)), out=library,
                               progress=progress)
    rows = control(model, vectors, pair_list, layers, control_words=ctrl_words, out=Path(out_dir) / "results.csv",
                   resume=resume, shard=shard, progress=progress)
    return finish(rows, out_dir, Path(model.path).name, provenance(model), start, seed)


def finish(rows, out_dir, model_name: str, prov: dict, start: Optional[float] = None, seed: int = 0) -> dict:
    """contrasts.csv, layers.csv, control.png and summary.json from the rows."""
    out_dir = Path(out_dir)
    cons = contrasts(rows, seed=seed)
    write_rows(out_dir / "contrasts.csv", cons, CONTRAST_COLUMNS)
    means = layer_means(rows)
    write_rows(out_dir / "layers.csv", means)
    head = summary(rows, cons)
    figure(rows, cons, out_dir / "control.png", f"{model_name}: experiment 4, intentional control", seed)
    out = {"experiment": TITLE, "source": CITATION, "mode": "activation cosines (no injection, no judge)",
           "provenance": prov, **head, "files": ["results.csv", "contrasts.csv", "layers.csv", "control.png",
                                                 "summary.json"]}
    out["report"] = report(head)
    if start is not None:
        out["elapsed_s"] = round(time.perf_counter() - start, 1)
    write_json(out_dir / "summary.json", out)
    return out


def figure(rows, cons, path, title: str, seed: int = 0):
    """The paper's per-layer figure: the cosine with the word's vector when told to think and not
    to think (bootstrap intervals over pairs), over the control words' band (mean ± 1 sd); then
    think - don't think beside the incentive pairs, and beside the wording controls."""
    from pyintro import plots

    p1 = {"ylabel": "cosine with the word's concept vector", "lines": []}
    band = [m for m in layer_means(rows) if m["variant"] == "think"]
    if band:
        p1["lines"].append({"label": "control words: mean ± 1 sd", "band": True, "x": [m["depth"] for m in band],
                            "y": [m["ctrl_mean"] for m in band], "lo": [m["ctrl_mean"] - m["ctrl_std"] for m in band],
                            "hi": [m["ctrl_mean"] + m["ctrl_std"] for m in band]})
    for v, label, colour in (("think", "Think about {word}", plots.STRONG), ("dont_think", "Don't think about {word}",
                                                                            "#2c7fb8")):
        by_layer: dict[int, list] = {}
        for r in rows:
            if r["variant"] == v:
                by_layer.setdefault(int(r["layer"]), []).append(r)
        if by_layer:
            stats = [bootstrap([float(r["cos"]) for r in rs], seed=seed) for _, rs in sorted(by_layer.items())]
            xs = [float(rs[0]["depth"]) for _, rs in sorted(by_layer.items())]
            p1["lines"].append({"label": label, "x": xs, "y": [s[0] for s in stats], "lo": [s[1] for s in stats],
                                "hi": [s[2] for s in stats], "colour": colour})

    def panel(names, ylabel):
        lines = []
        for name in names:
            cs = [c for c in cons if c["contrast"] == name]
            if cs:
                lines.append({"label": name.replace("_vs_", " − ").replace("_", " "), "x": [c["depth"] for c in cs],
                              "y": [c["mean"] for c in cs], "lo": [c["lo"] for c in cs], "hi": [c["hi"] for c in cs],
                              "colour": plots.STRONG if name == "think_vs_dont_think" else None})
        return {"ylabel": ylabel, "lines": lines, "hlines": [(0.0, "")]}

    p2 = panel(["think_vs_dont_think", "rewarded_vs_punished", "happy_vs_sad", "charity_vs_terrorist"],
               "cosine difference (95% bootstrap interval)")
    p3 = panel(["think_vs_dont_think", "c1_affirm_vs_negate", "c2_affirm_vs_negate", "c3_affirm_vs_negate",
                "c4_rewarded_vs_punished"], "wording controls: cosine difference")
    return plots.curves(path, [p for p in (p1, p2, p3) if p["lines"]], title=title)


def read(path) -> list[dict]:
    """A results.csv of this experiment (or of a shard) as rows."""
    return read_rows(path, INTS, FLOATS, need="ctrl_mean")
