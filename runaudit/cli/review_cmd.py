"""review export / list / resolve."""

from __future__ import annotations

from pathlib import Path

import typer

from runaudit.cli.app import app, guarded
from runaudit.cli.common import DB_OPT, JSON_OPT, WAIT_OPT, echo_json, say_used, say_waiting

review_app = typer.Typer(help="The review queue: declined runs for a person to judge (never resent).",
                         no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("export")
@guarded
def export(
    db: Path | None = DB_OPT,
    directory: Path = typer.Option(Path("review_queue"), "--dir", help="Folder for the <key>.json files."),
    include: list[str] = typer.Option(None, "--include", help="Also queue this outcome (degraded)."),
    prune: bool = typer.Option(False, "--prune", help="Remove <key>.json files no longer in the queue."),
    as_json: bool = JSON_OPT,
    wait: float = WAIT_OPT,
) -> None:
    """Write one JSON file per queue item (whole input and output); re-running updates them in place."""
    from runaudit.errors import UsageError
    from runaudit.review import export_queue
    from runaudit.store import Store

    extra = [i.lower() for i in include or []]
    if any(i != "degraded" for i in extra):
        raise UsageError("--include takes only: degraded")
    with Store.open(db, read_only=True, wait=wait, on_wait=say_waiting) as store:
        res = export_queue(store, directory, include_degraded="degraded" in extra, prune=prune)
    if as_json:
        echo_json(res.as_dict())
        return
    typer.echo(f"{res.items} item(s) in {res.directory}: {res.written} new, {res.updated} updated, "
               f"{res.unchanged} unchanged" + (f", {len(res.stale)} stale" + (" removed" if prune else
                                                                            " (use --prune to remove)")
                                               if res.stale else ""))


@review_app.command("list")
@guarded
def list_(
    db: Path | None = DB_OPT,
    status: str = typer.Option("open", "--status", help="open, confirmed, false-positive or all."),
    include: list[str] = typer.Option(None, "--include", help="Also list this outcome (degraded)."),
    as_json: bool = JSON_OPT,
    wait: float = WAIT_OPT,
) -> None:
    """Queue items, one per idempotency key, with how often and when they were seen."""
    from runaudit.redact import for_terminal
    from runaudit.review import review_queue
    from runaudit.store import Store

    with Store.open(db, read_only=True, wait=wait, on_wait=say_waiting) as store:
        df = review_queue(store, status, include_degraded="degraded" in (include or []))
        say_used(store)
    if as_json:
        echo_json([{k: v for k, v in r.items() if k not in ("prompt", "response_text")}
                   for r in df.to_dicts()])
        return
    if df.height == 0:
        typer.echo(f"no {status if status != 'all' else ''} review items".replace("  ", " "))
        return
    def cut(text: str, n: int) -> str:
        return text if len(text) <= n else text[: n - 1] + "…"

    rows = []
    for r in df.iter_rows(named=True):
        said = r["refusal_text"] or r["response_text"] or r["error_message"] or r["tool_payload"] or ""
        rows.append([r["key"], r["status"], cut(for_terminal(r["task_id"]), 24), str(r["occurrences"]),
                     f"{str(r['first_seen'])[:10]}..{str(r['last_seen'])[:10]}", f"{r['rule_code']} {r['signal']}",
                     cut(for_terminal(r["prompt"] or "—"), 40), cut(for_terminal(said or "—"), 48)])
    head = ["KEY", "STATUS", "TASK", "RUNS", "SEEN", "RULE", "PROMPT", "RETURNED"]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head) - 1)]
    for line in [head, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1])
    typer.echo(f"{df.height} item(s), {int(df['occurrences'].sum())} run(s)")


@review_app.command("resolve")
@guarded
def resolve_(
    key: str = typer.Argument(..., help="The item's key (16 hex characters, or a unique prefix)."),
    verdict: str = typer.Option(..., "--verdict", help="confirmed, false-positive, or open to clear."),
    note: str | None = typer.Option(None, "--note", help="Why (kept with the verdict)."),
    reviewer: str | None = typer.Option(None, "--reviewer", help="Who decided (default $USER)."),
    db: Path | None = DB_OPT,
    wait: float = WAIT_OPT,
) -> None:
    """Record a person's verdict for every run with this key, including future ones."""
    from runaudit.review import resolve
    from runaudit.store import Store

    with Store.open(db, wait=wait, create=False, on_wait=say_waiting) as store:
        full = resolve(store, key, verdict, note, reviewer)
    typer.echo(f"{full}: {verdict}")


@review_app.command("serve")
@guarded
def serve_(
    db: Path | None = DB_OPT,
    port: int = typer.Option(8765, "--port", help="Port on 127.0.0.1 (the page is never served on another address)."),
    wait: float = typer.Option(5.0, "--wait", help="Seconds a request waits for another runaudit process holding "
                                                  "the database before the page says so and retries."),
) -> None:
    """Review declines in a browser: a local page (127.0.0.1 only) with the queue, each item whole, and keyboard
    shortcuts to confirm or mark false positive. Needs `pip install 'runaudit[serve]'`."""
    try:
        import flask  # noqa: F401
    except ImportError as e:
        from runaudit.errors import UsageError

        raise UsageError("the review page needs Flask", hint="pip install 'runaudit[serve]'") from e
    from runaudit.review_web import serve
    from runaudit.store import Store, default_db_path

    path = str(db) if db is not None else default_db_path()
    with Store.open(path, read_only=True, wait=wait, on_wait=say_waiting):
        pass  # a clear error now (no database, not classified yet) rather than on the first page
    serve(path, port, wait=wait, on_ready=lambda url: typer.echo(f"review page: {url}  (Ctrl-C to stop)"))
