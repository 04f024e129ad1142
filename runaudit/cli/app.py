"""The ``runaudit`` command line: a thin typer shell over the library.

Each command parses its options, calls one library function and renders the result. Errors derived from
:class:`runaudit.errors.RunauditError` become one ``error: …`` line (plus a hint) on stderr and the exit code of
:func:`runaudit.errors.exit_code_for`; an unexpected exception is reported the same way (exit 70), never as a
traceback, because logs contain prompts and keys.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from runaudit.errors import ExitCode, RunauditError, exit_code_for, mark_interrupted

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="runaudit",
    help="Audit LLM call logs: find safety declines and degraded results your pipeline counted as success.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def fail(exc: BaseException) -> typer.Exit:
    """Print an error for a user (no traceback) and return the Exit to raise."""
    code = exit_code_for(exc)
    if code == ExitCode.INTERRUPT:
        typer.echo("interrupted: nothing partial was kept (each file and each classification is atomic)", err=True)
    elif isinstance(exc, RunauditError):
        typer.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
    else:
        typer.echo(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", err=True)
        typer.echo("hint: this is a bug in runaudit; please report it with the command you ran", err=True)
    return typer.Exit(int(code))


def guarded(fn: F) -> F:
    """Decorator: run a command body, translating every error into a message and an exit code."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except BrokenPipeError:
            # the reader went away (| head): stop quietly, like any Unix tool
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the CLI boundary
            raise fail(e) from None

    return wrapper  # type: ignore[return-value]


def version_callback(value: bool) -> None:
    if value:
        from runaudit import __version__

        typer.echo(f"runaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """runaudit: reclassify LLM calls as ok / infra_error / declined / degraded, with evidence."""


def main() -> None:
    """Console-script entry point."""
    import signal

    from runaudit.cli import commands, judge_cmd, report_cmd, review_cmd, spark_cmd  # noqa: F401 - registers commands

    def on_sigint(signum: int, frame: Any) -> None:
        # Remember the Ctrl-C: DuckDB and Arrow turn the KeyboardInterrupt raised here into errors of their own
        # ("Query interrupted") by the time it reaches the CLI boundary.
        mark_interrupted()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERRUPT))
