"""`pyintro extract caps|pair|mean`: concept vectors into llama.cpp control-vector files."""

from __future__ import annotations

from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.options import check_out_file, load_model, model_options, progress


@main.group()
def extract():
    """Extract a concept vector into a llama.cpp control-vector GGUF file."""


def _out_vector_option(f):
    return click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
                        help="Control-vector GGUF file to write.")(f)


@extract.command("caps")
@model_options
@_out_vector_option
def extract_caps(out):
    """The all-caps vector: "HI! HOW ARE YOU?" minus "Hi! How are you?"."""
    from pyintro.experiments.sweep import CAPS
    from pyintro.extract import contrast

    check_out_file(out)
    with load_model() as m:
        contrast(m, CAPS[0], CAPS[1], name="caps").save(out)
    click.echo(f"wrote {out}")


@extract.command("pair")
@model_options
@click.option("--positive", required=True, help="Text on the positive side.")
@click.option("--negative", required=True, help="Text on the negative side.")
@_out_vector_option
def extract_pair(positive, negative, out):
    """Positive minus negative, at the last token of each chat-templated prompt."""
    from pyintro.extract import contrast

    check_out_file(out)
    with load_model() as m:
        contrast(m, positive, negative).save(out)
    click.echo(f"wrote {out}")


@extract.command("mean")
@model_options
@click.option("--concept", required=True, help="The concept word.")
@click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File of baseline words, one per line (default: pyintro's ~100 words).")
@_out_vector_option
def extract_mean(concept, baseline, out):
    """The concept's activation minus the mean over baseline words (Lindsey 2025)."""
    from pyintro.extract import mean_difference, read_words

    if not concept.strip():
        raise ValueError("the concept is empty; pass --concept WORD")
    words = None if baseline is None else read_words(baseline)
    check_out_file(out)
    with load_model() as m:
        mean_difference(m, concept, baseline=words, progress=progress()).save(out)
    click.echo(f"wrote {out}")
