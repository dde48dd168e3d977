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
    """Turns library errors into one-line click errors (exit 1) unless --debug, Ctrl-C into exit
    130, and shows each library warning once, when it is raised (before the work it concerns)."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.showwarning = _Shown()
                return super().invoke(ctx)
        except click.UsageError as e:  # one line, like every other error, and exit 2
            hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            click.echo(f"Error: {_one_line(e.format_message())}{hint}", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own (Exit is a RuntimeError)
        except Interrupted as e:
            again = "again" if getattr(e, "resumes_itself", False) else "with --resume"
            click.echo(f"\nInterrupted: {e.done} of {e.total} done"
                       + (f" and saved in {e.out}; run the same command {again} to finish." if e.out else "."),
                       err=True)
            ctx.exit(130)
        except KeyboardInterrupt:
            click.echo("\nInterrupted before any result was saved.", err=True)
            ctx.exit(130)
        except _USER_ERRORS as e:
            if (ctx.obj or {}).get("debug"):
                raise
            raise click.ClickException(_one_line(e)) from None


class _Shown:
    """``warnings.showwarning`` for the CLI: each warning once, as "Warning: ..." on stderr; other
    packages' deprecation notices are theirs, not the user's."""

    def __init__(self):
        self.seen = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (DeprecationWarning, PendingDeprecationWarning)) and "pyintro" not in filename:
            return
        text = str(message)
        if (category, text) not in self.seen:
            self.seen.add((category, text))
            click.echo(f"Warning: {text}", err=True)


def _one_line(e) -> str:
    text = e if isinstance(e, str) else str(e) or type(e).__name__
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


from pyintro.cli import concepts, info, paper, quant, results, slurm, sweep, vectors  # noqa: E402,F401  (commands register on main)

__all__ = ["main"]
