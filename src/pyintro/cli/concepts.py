"""`pyintro concepts`: the concept library of the paper's recipe."""

from __future__ import annotations

from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.experiment import OPTIONS, parse_words
from pyintro.cli.options import load_model, model_options, progress


@main.command("concepts")
@model_options
@OPTIONS["words"]
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Library folder (default: pyintro's cache for this model).")
def concepts_cmd(words, out):
    """Extract (or load) the concept vectors of the paper's recipe into a library folder."""
    from pyintro import concepts

    with load_model() as m:
        folder = out or concepts.default_dir(m)
        lib = concepts.library(m, parse_words(words), out=folder, progress=progress())
    click.echo(f"{len(lib)} concept vectors in {folder}")
