"""The ``runaudit`` command line: a thin typer shell over the library (:mod:`runaudit.cli.app` holds the app,
the error handling and the entry point; each ``*_cmd`` module and ``commands`` register their commands)."""

from runaudit.cli.app import app, guarded, main

__all__ = ["app", "guarded", "main"]
