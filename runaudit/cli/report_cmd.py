"""report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from runaudit.cli.app import app, guarded
from runaudit.cli.common import CONFIG_OPT, DB_OPT, JSON_OPT, WAIT_OPT, echo_json, say_used, say_waiting


def parse_date(value: str | None, name: str) -> dt.date | None:
    """A YYYY-MM-DD option value."""
    from runaudit.errors import UsageError

    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as e:
        raise UsageError(f"{name} {value!r} is not a date like 2026-07-01") from e


@app.command()
@guarded
def report(
    db: Path | None = DB_OPT,
    config: Path | None = CONFIG_OPT,
    week: str | None = typer.Option(None, "--week", help="ISO week like 2026-W27, or 'last' (default: last week "
                                    "with runs)."),
    since: str | None = typer.Option(None, "--since", help="Start date (inclusive), with --until."),
    until: str | None = typer.Option(None, "--until", help="End date (exclusive), with --since."),
    out: Path = typer.Option(Path("report"), "--out", help="Output folder."),
    fmt: str = typer.Option("md,html", "--format", help="Comma-separated: md, html."),
    as_json: bool = JSON_OPT,
    wait: float = WAIT_OPT,
) -> None:
    """Write the weekly report: report.md, a self-contained report.html, report.json and chart PNGs."""
    from runaudit.config import config_for
    from runaudit.report import write_report
    from runaudit.store import Store

    formats = tuple(f.strip().lower() for f in fmt.split(",") if f.strip())
    with Store.open(db, read_only=True, wait=wait, on_wait=say_waiting) as store:
        cfg = config_for(store, config, store.path)
        res = write_report(store, cfg, out, week, parse_date(since, "--since"), parse_date(until, "--until"), formats)
        used = say_used(store)
    if as_json:
        echo_json({**res.__dict__, **used})
    else:
        typer.echo(f"report for {res.window} written to {res.out_dir}/ ({len(res.files)} files, {res.seconds:.1f}s)")
