"""The `pyintro` command line. Each command parses its options and calls the library.

Exit codes: 0 ok; 2 usage errors (click's); 1 runtime errors, printed as one line saying what
is wrong and what to do (a traceback only with --debug); 130 after Ctrl-C.
"""

from __future__ import annotations

import warnings

import click

from pyintro.progress import Interrupted

_USER_ERRORS = (ValueError, RuntimeError, OSError)


class _Group(click.Group):
    """Turns library errors into one-line click errors (exit 1) unless --debug, and shows the
    library's warnings once each."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    return super().invoke(ctx)
                finally:
                    _show(caught)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own (Exit is a RuntimeError)
        except Interrupted as e:
            click.echo(f"\nInterrupted: {e.done} of {e.total} done"
                       + (f" and saved in {e.out}; run the same command with --resume to finish." if e.out else "."),
                       err=True)
            ctx.exit(130)
        except _USER_ERRORS as e:
            if (ctx.obj or {}).get("debug"):
                raise
            raise click.ClickException(_one_line(e)) from None


def _show(caught) -> None:
    """Each warning once; other packages' deprecation notices are theirs, not the user's."""
    seen = set()
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)) and "pyintro" not in w.filename:
            continue
        text = str(w.message)
        if (w.category, text) not in seen:
            seen.add((w.category, text))
            click.echo(f"Warning: {text}", err=True)


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f"{e.strerror}: {e.filename}"
    return " ".join(text.split())


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="pyintro")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Concept-injection ("introspection") experiments on GGUF models.

    Layer L is the output of block L (0-based), llama.cpp's tensor l_out-L.
    """
    ctx.obj = {"debug": debug}


from pyintro.cli import concepts, info, paper, quant, results, sweep, vectors  # noqa: E402  (commands register on main)

__all__ = ["main"]
