"""`pyintro concepts`: the concept library of the paper's recipe."""

from __future__ import annotations

from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.experiment import OPTIONS
from pyintro.cli.options import load_model, model_options, progress


@main.command("concepts")
@model_options
@OPTIONS["words"]
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Library folder (default: pyintro's cache for this model).")
@click.option("--clear", is_flag=True, help="Remove the library (with --words: only those words' vectors) instead.")
def concepts_cmd(words, out, clear):
    """Extract (or load) the concept vectors of the paper's recipe into a library folder. Any
    word works; Ctrl-C keeps the vectors already extracted and the next run goes on."""
    from pyintro import concepts

    try:
        chosen = concepts.parse_words(words)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--words") from None
    if clear and out is not None:
        removed = concepts.clear(out, chosen if words else None)
        click.echo(f"removed {len(removed)} files from {out}")
        return
    with load_model() as m:
        folder = out or concepts.default_dir(m)
        if clear:
            removed = concepts.clear(folder, chosen if words else None)
            click.echo(f"removed {len(removed)} files from {folder}")
            return
        lib = concepts.library(m, chosen, out=folder, progress=progress())
    click.echo(f"{len(lib)} concept vectors in {folder}")
