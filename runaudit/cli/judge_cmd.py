"""judge."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from runaudit.cli.app import app, guarded
from runaudit.cli.common import CONFIG_OPT, DB_OPT, JSON_OPT, WAIT_OPT, echo_json, say_waiting


@app.command()
@guarded
def judge(
    db: Path | None = DB_OPT,
    config: Path | None = CONFIG_OPT,
    select: str = typer.Option("ambiguous", "--select", help="ambiguous (borderline refusal scores and short "
                               "degraded bodies), declined, or all."),
    limit: int | None = typer.Option(None, "--limit", help="Judge at most N distinct responses."),
    model: str | None = typer.Option(None, "--model", help="Claude model for the judge (default claude-haiku-4-5)."),
    batch: bool = typer.Option(True, "--batch/--no-batch", help="Message Batches API (half price) or direct calls."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    poll: float = typer.Option(30.0, "--poll-seconds", help="How often to check a batch."),
    timeout: float = typer.Option(3600.0, "--timeout-seconds", help="Stop waiting for a batch after this long "
                                  "(a later `runaudit judge` collects it)."),
    as_json: bool = JSON_OPT,
    wait: float = WAIT_OPT,
) -> None:
    """Ask Claude to classify ambiguous runs (opt-in). The judge only classifies; nothing is resent."""
    from runaudit.config import config_for
    from runaudit.errors import UsageError
    from runaudit.judge import collect_pending, make_client, plan, run
    from runaudit.store import Store

    client = make_client()
    with Store.open(db, wait=wait, create=False, on_wait=say_waiting) as store:
        cfg = config_for(store, config, store.path)
        earlier = collect_pending(store, cfg, client)
        if earlier is not None:
            msg = (f"batch {earlier.batch_id} from an earlier run is still processing; try again later"
                   if earlier.pending else f"collected batch {earlier.batch_id}: {earlier.verdicts} "
                   f"({earlier.undecided} undecided)")
            typer.echo(msg, err=True)
            if earlier.pending:
                raise typer.Exit(0)
        p = plan(store, cfg, select, limit, model, batch)
        typer.echo(p.describe(), err=True)
        if not p.items:
            typer.echo("nothing to send", err=True)
            if as_json:
                echo_json({"sent": 0, "cached_runs": p.cached_runs})
            return
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("refusing to send without confirmation", hint="pass --yes to confirm")
            if not typer.confirm("Send these to the judge?", default=False, err=True):
                raise typer.Exit(0)
        res = run(store, cfg, p, client, poll_interval=poll, timeout=timeout)
    if as_json:
        echo_json(res.as_dict())
    elif res.pending:
        typer.echo(f"batch {res.batch_id} is still processing after {timeout:.0f}s; run `runaudit judge` again "
                   "later to collect it")
    else:
        typer.echo(f"judged {res.sent}: {res.verdicts} ({res.undecided} undecided, {res.errors} errors); "
                   f"{res.reclassified} runs reclassified")
