"""Options shared by several commands, and output helpers."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import typer

DB_OPT = typer.Option(None, "--db", help="DuckDB file (default: $RUNAUDIT_DB or ./runaudit.duckdb).",
                      show_default=False)
CONFIG_OPT = typer.Option(None, "--config", help="TOML config (default: ./runaudit.toml if present).",
                          exists=False, show_default=False)
JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of text (an object; a list for listings).")
WAIT_OPT = typer.Option(30.0, "--wait", help="Seconds to wait for another runaudit process holding the database.")


def say_waiting(message: str) -> None:
    """Tell the user (on stderr) that the command waits for the database lock."""
    typer.echo(f"{message} ...", err=True)


def echo_json(obj: Any) -> None:
    """Print one JSON object on stdout: secrets masked in every string; control characters (C0 are escaped by
    JSON itself, C1 and bidirectional overrides are not) written as \\u escapes."""
    from runaudit.redact import mask_obj

    text = json.dumps(mask_obj(json.loads(json.dumps(obj, default=str))), indent=2, ensure_ascii=False)
    typer.echo(_C1.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text))


_C1 = re.compile(r"[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def progress_bar(enabled: bool, total: int) -> Any:
    """A rich progress bar on stderr when attached to a terminal (else a no-op context)."""
    if not enabled or not sys.stderr.isatty() or total <= 0:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]ingest"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)


def config_path(p: Path | None) -> Path | None:
    return p


def say_used(store: Any) -> dict[str, str | None]:
    """Name the ruleset and the config behind the stored numbers: one short line on stderr (stdout stays what
    --json and --csv promise), and the same as a dict for JSON objects."""
    from runaudit.redact import for_terminal

    rs = store.get_meta("current_ruleset")
    src = store.scalar("SELECT json_extract_string(config, '$.source') FROM rulesets WHERE ruleset = ?", [rs]) \
        if rs else None
    used = {"ruleset": rs, "config": src or "built-in defaults"}
    typer.echo(f"ruleset: {rs or 'none yet'}   config: {for_terminal(used['config'])}", err=True)
    return used
