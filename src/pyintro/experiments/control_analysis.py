"""Experiment 4's rows summarised: contrasts between variants with bootstrap intervals, per-layer
means, the headline figures and the figure."""

from __future__ import annotations

import numpy as np

from pyintro import plots
from pyintro.experiments.protocol import Analysis
from pyintro.experiments.stats import bootstrap

__all__ = ["CONTRASTS", "CONTRAST_COLUMNS", "analyse", "contrasts", "layer_means", "summary", "verdict"]

CONTRASTS = [("think_vs_baseline", "think", None), ("dont_think_vs_baseline", "dont_think", None),
             ("think_vs_dont_think", "think", "dont_think"), ("rewarded_vs_punished", "rewarded", "punished"),
             ("happy_vs_sad", "happy", "sad"), ("charity_vs_terrorist", "donate_charity", "donate_terrorist"),
             ("c1_affirm_vs_negate", "c1_affirm", "c1_negate"), ("c2_affirm_vs_negate", "c2_affirm", "c2_negate"),
             ("c3_affirm_vs_negate", "c3_affirm", "c3_negate"), ("c4_rewarded_vs_punished", "c4_rewarded",
                                                                  "c4_punished")]


LABELS = {"think_vs_dont_think": "think − don't think", "rewarded_vs_punished": "rewarded − punished",
          "happy_vs_sad": "happy − sad", "charity_vs_terrorist": "charity − terrorist organisations",
          "c1_affirm_vs_negate": "control 1: affirmative − negated",
          "c2_affirm_vs_negate": "control 2: affirmative − negated",
          "c3_affirm_vs_negate": "control 3: affirmative − negated",
          "c4_rewarded_vs_punished": "control 4: rewarded − punished"}
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


WORDING = ("c1_affirm_vs_negate", "c2_affirm_vs_negate", "c3_affirm_vs_negate")


def verdict(head: dict) -> str:
    """One sentence from the numbers: think minus don't-think at its best layer, with its
    interval, against the null of the wording controls (the word in affirmative against
    negated statements, with no instruction to think): their best layer's mean."""
    t = head.get("think_vs_dont_think")
    if t is None:
        return "no pairs told both to think and not to think of the word: nothing to judge"
    p = t["peak"]
    null = max((head[n]["peak"]["mean"] for n in WORDING if n in head), default=float("nan"))
    words = (f"think − don't think: best {p['mean']:+.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}] at layer {p['layer']}, "
             f"interval above 0 at {t['layers_above_zero']} of {head['n_layers']} layers; the wording controls' "
             f"best {null:+.4f}")
    if p["lo"] > 0 and p["lo"] > null:
        claim = "told to think of the word, the model holds it closer than when told not to, beyond the wording alone"
    elif p["lo"] > 0:
        claim = ("told to think of the word, the model holds it closer than when told not to, but not beyond the "
                 "wording controls' best (the word in affirmative against negated statements)")
    else:
        claim = "no layer holds the word closer, with its whole 95% interval, when told to think of it"
    out = f"{claim} ({words})"
    if "rewarded_vs_punished" in head:
        r = head["rewarded_vs_punished"]["peak"]
        out += f"; incentives: rewarded − punished best {r['mean']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}]"
    return out


def report(head: dict) -> list[str]:
    lines = [head["verdict"]]
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


def analyse(rows: list, context: dict) -> Analysis:
    seed = int(context.get("seed", 0))
    cons = contrasts(rows, seed=seed)
    head = summary(rows, cons)
    head["verdict"] = verdict(head)
    title = f"{context.get('model', '')}: experiment 4, intentional control"
    return Analysis({"contrasts.csv": (cons, CONTRAST_COLUMNS), "layers.csv": (layer_means(rows), None)}, head,
                    report(head), {"control.png": lambda p: figure(rows, cons, p, title, seed),
                                   "traces.png": lambda p: traces(rows, p, title)})


def traces(rows, path, title: str, depth: float = 2 / 3, n: int = 16):
    """The paper's per-token traces: at the layer nearest ``depth``, each token's cosine with the
    word's vector when told to think and not to think, for up to ``n`` pairs, over the control
    words' band (mean ± 1 sd) at that layer."""
    layers = sorted({(int(r["layer"]), float(r["depth"])) for r in rows}, key=lambda x: abs(x[1] - depth))
    if not layers:
        raise ValueError("no rows to draw traces from")
    L = layers[0][0]
    by = {(r["variant"], int(r["pair"])): r for r in rows if int(r["layer"]) == L}
    pairs = sorted({p for v, p in by if v == "think" and ("dont_think", p) in by})[:n]
    panels = []
    for p in pairs:
        think, dont = by[("think", p)], by[("dont_think", p)]
        cos = {v: [float(x) for x in r["token_cos"].split()] for v, r in (("think", think), ("dont", dont))}
        mu, sd = float(think["ctrl_mean"]), float(think["ctrl_std"])
        panels.append({"title": f"{think['word'].lower()}: {think['sentence'][:28]}…", "lines": [
            {"label": "control words: mean ± 1 sd", "band": True, "x": list(range(len(cos["think"]))),
             "lo": [mu - sd] * len(cos["think"]), "hi": [mu + sd] * len(cos["think"])},
            {"label": "Think about the word", "x": list(range(len(cos["think"]))), "y": cos["think"],
             "colour": plots.STRONG},
            {"label": "Don't think about it", "x": list(range(len(cos["dont"]))), "y": cos["dont"],
             "colour": "#2c7fb8"}]})
    return plots.small_multiples(path, panels, title=f"{title}\nper-token cosine at layer {L} "
                                                     f"(depth {layers[0][1]:.2f})", xlabel="sentence token",
                                 ylabel="cosine with the word's vector")


def figure(rows, cons, path, title: str, seed: int = 0):
    """The paper's per-layer figure: the cosine with the word's vector when told to think and not
    to think (bootstrap intervals over pairs), over the control words' band (mean ± 1 sd); then
    think - don't think beside the incentive pairs, and beside the wording controls."""
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
                lines.append({"label": LABELS.get(name, name), "x": [c["depth"] for c in cs],
                              "y": [c["mean"] for c in cs], "lo": [c["lo"] for c in cs], "hi": [c["hi"] for c in cs],
                              "colour": plots.STRONG if name == "think_vs_dont_think" else None})
        return {"ylabel": ylabel, "lines": lines, "hlines": [(0.0, "")]}

    p2 = panel(["think_vs_dont_think", "rewarded_vs_punished", "happy_vs_sad", "charity_vs_terrorist"],
               "cosine difference (95% bootstrap interval)")
    p3 = panel(["think_vs_dont_think", "c1_affirm_vs_negate", "c2_affirm_vs_negate", "c3_affirm_vs_negate",
                "c4_rewarded_vs_punished"], "wording controls: cosine difference")
    return plots.curves(path, [p for p in (p1, p2, p3) if p["lines"]], title=title)
