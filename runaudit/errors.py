"""One exception tree and the fixed exit codes of the command line."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; documented in README.md and stable across releases."""

    OK = 0
    FINDINGS = 1  # --fail-on matched something
    USAGE = 2  # bad arguments or options (also typer's own code)
    INPUT = 3  # unreadable or malformed input files, bad config
    STORE = 4  # database missing, locked, corrupt or from a newer runaudit
    JUDGE = 5  # the LLM judge could not run (no key, API failure)
    OUTPUT = 6  # an output folder or file cannot be written (report, review export)
    STATE = 7  # nothing to act on yet: no second ruleset to compare, nothing classified, no such review item
    INTERNAL = 70  # a bug in runaudit: reported without a traceback, please file it
    INTERRUPT = 130


class RunauditError(Exception):
    """Base of every error runaudit raises on purpose.

    Args:
        message: what went wrong, in one sentence a user can act on.
        hint: optionally, what to do about it.
    """

    exit_code: ExitCode = ExitCode.INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class UsageError(RunauditError):
    """An option value that parses but makes no sense (a bad week, an unknown rule code)."""

    exit_code = ExitCode.USAGE


class InputFormatError(RunauditError):
    """An input path or file cannot be read at all (missing, unreadable, corrupt gzip)."""

    exit_code = ExitCode.INPUT


class RuleConfigError(RunauditError):
    """The TOML config is invalid: unknown keys, bad regex, bad JSON path."""

    exit_code = ExitCode.INPUT


class StoreError(RunauditError):
    """The DuckDB file cannot be used: locked, corrupt, newer schema, failed query."""

    exit_code = ExitCode.STORE


class StoreBusyError(StoreError):
    """Another process holds the database's write lock."""


class StateError(RunauditError):
    """The request is valid but the database holds nothing to act on yet (one ruleset only, nothing classified)."""

    exit_code = ExitCode.STATE


class ReviewStateError(StateError):
    """A review action refers to a key that no queued item has (or that several share)."""


class OutputError(RunauditError):
    """An output folder or file cannot be created or written (permissions, missing parent, disk full)."""

    exit_code = ExitCode.OUTPUT


@contextlib.contextmanager
def writing_to(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError raised while writing under ``path`` into an :class:`OutputError` that names it."""
    try:
        yield
    except OSError as e:
        where = e.filename if e.filename else path
        raise OutputError(f"cannot write {where}: {e.strerror or e}",
                          hint="check the folder exists or can be created, is writable, and the disk has space") from e


class JudgeError(RunauditError):
    """The optional LLM judge cannot run."""

    exit_code = ExitCode.JUDGE


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map any exception to the process exit code the CLI returns."""
    if interrupted(exc):
        return ExitCode.INTERRUPT
    if isinstance(exc, RunauditError):
        return exc.exit_code
    return ExitCode.INTERNAL


_INTERRUPTED: list[bool] = []


def mark_interrupted() -> None:
    """Record that the process received Ctrl-C (called by the CLI's SIGINT handler)."""
    _INTERRUPTED.append(True)


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, a Ctrl-C: Python's KeyboardInterrupt or DuckDB's
    InterruptException (DuckDB turns SIGINT into its own error inside a query, which the store wraps), or any
    error after the CLI's SIGINT handler ran."""
    if _INTERRUPTED:
        return True
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, KeyboardInterrupt) or type(e).__name__ == "InterruptException":
            return True
        e = e.__cause__ or e.__context__
    return False
