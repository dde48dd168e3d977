"""Results folders of any experiment: `pyintro merge` (shards into one) and `pyintro plot`
(figures and summary again, or one figure of a sweep)."""

from __future__ import annotations

from pathlib import Path

import click

from pyintro.cli import main
from pyintro.cli.experiment import echo_summary
from pyintro.cli.options import check_out_dir, check_out_file, finite


def _shard_folders(folders: list[Path]) -> list[Path]:
    """The folders given, or, for one folder that holds no results.csv, the folders inside it that do."""
    if len(folders) == 1 and not (folders[0] / "results.csv").is_file():
        inside = sorted(p.parent for p in folders[0].glob("*/results.csv.json"))
        if not inside:
            raise FileNotFoundError(f"{folders[0]} holds no shard folders (folders with a results.csv.json)")
        return inside
    return folders


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the merged rows, cells, figures and summary.json.")
def merge(folders, out_dir):
    """Join the shard folders of one run (made with --shard K/N) into one: each row once, then the
    experiment's cells, figures and summary. FOLDERS: the shard folders, or one folder holding them."""
    from pyintro.experiments import merge as merge_shards

    shards = _shard_folders(list(folders))
    check_out_dir(out_dir, create=False)
    _, summary = merge_shards(shards, check_out_dir(out_dir))
    echo_summary(summary, out_dir)


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--kind", type=click.Choice(["heatmap", "strength", "layer"]), default=None,
              help="For a `pyintro run` folder: draw one figure (heatmap: layer x strength; strength: b vs strength "
                   "at --layer; layer: b vs layer at --strength) into --out.")
@click.option("--layer", type=int, default=None, help="Layer for --kind strength (default: the telling slice).")
@click.option("--strength", type=float, default=None, callback=finite,
              help="Strength for --kind layer (default: the telling slice).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="With --kind: the figure (.png or .svg). Otherwise the folder for the figures and summary "
                   "(default: FOLDER itself).")
def plot(folder, kind, layer, strength, out):
    """Draw an experiment's figures (and its cells and summary.json) again from its results folder."""
    from pyintro.experiments import read_folder, reanalyse
    from pyintro.experiments.sweep_analysis import figures

    folder = folder.parent if folder.name == "results.csv" else folder
    exp, rows, meta = read_folder(folder)
    if kind is not None:
        if exp.name != "run":
            raise click.UsageError(f"--kind draws the sweep's figures; {folder} holds a `{exp.name}` run: "
                                   "leave --kind out to draw its own")
        if out is None or out.suffix.lower() not in (".png", ".svg"):
            raise click.UsageError("--kind needs --out FIGURE.png (or .svg)")
        check_out_file(out)
        figures(rows, layer, strength, vector=(meta.get("context") or {}).get("vector"))[f"{kind}.png"](out)
        click.echo(f"wrote {out}")
        return
    out = check_out_dir(out or folder)
    echo_summary(reanalyse(folder, out), out)
