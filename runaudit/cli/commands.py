"""ingest, audit, flags, diff and rules."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import typer

from runaudit.cli.app import app, guarded
from runaudit.cli.common import (
    CONFIG_OPT,
    DB_OPT,
    JSON_OPT,
    WAIT_OPT,
    echo_json,
    progress_bar,
    say_used,
    say_waiting,
)
from runaudit.errors import ExitCode, UsageError
from runaudit.redact import for_csv, for_terminal

FAIL_ON = ("false-success", "ok", "infra_error", "declined", "degraded")


def _run_ingest(store: Any, files: list[str], cfg: Any, show_progress: bool) -> Any:
    """Ingest ``files`` (already checked with ``log_files``), with a progress bar on a terminal."""
    from runaudit.ingest import ingest

    total = 0
    for f in files:
        try:
            total += os.path.getsize(f)
        except OSError:
            pass
    bar = progress_bar(show_progress, total)
    if bar is None:
        return ingest(store, files, cfg)
    with bar:
        task = bar.add_task("ingest", total=total)
        return ingest(store, files, cfg, progress=lambda n, _f: bar.advance(task, n))


def _report_ingest_errors(res: Any) -> None:
    for e in res.errors:
        typer.echo(f"error: {e['error']}", err=True)


@app.command()
@guarded
def ingest(
    paths: list[Path] = typer.Argument(
        ..., help="Log files or folders (*.jsonl, *.ndjson, *.json and their .gz, llm logs.db)."),
    db: Path | None = DB_OPT,
    config: Path | None = CONFIG_OPT,
    as_json: bool = JSON_OPT,
    wait: float = WAIT_OPT,
) -> None:
    """Ingest JSONL logs into the DuckDB file: incremental, lossless (bad lines are quarantined)."""
    from runaudit.config import config_for
    from runaudit.ingest import log_files
    from runaudit.store import Store

    files = log_files(paths)  # before the database is created: a bad path leaves none behind
    with Store.open(db, wait=wait, on_wait=say_waiting) as store:
        cfg = config_for(store, config, store.path)
        res = _run_ingest(store, files, cfg, not as_json)
    if as_json:
        echo_json(res.as_dict())
    else:
        streamed = f" (as {res.runs_added} new run(s): streams and sessions fold lines, OTLP lines hold spans)" \
            if res.runs_added != res.ingested else ""
        other = f", {res.not_calls} with no model call" if res.not_calls else ""
        typer.echo(f"{res.files} file(s), {res.lines} line(s): {res.ingested} ingested{streamed}, "
                   f"{res.duplicates} duplicate(s), {res.blank} blank{other}, {res.quarantined} quarantined "
                   f"({res.seconds:.1f}s)")
        if res.spans_other:
            typer.echo(f"OTel spans that are not model calls (HTTP, tools, agents): {res.spans_other}, counted only")
        if res.held:
            typer.echo(f"held back: {res.held} line(s) still being written (an unfinished last line or stream); "
                       "read when completed or once the file has been quiet for [ingest] settle_seconds")
    _report_ingest_errors(res)
    if res.errors:
        raise typer.Exit(int(ExitCode.INPUT))


def _fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


@app.command()
@guarded
def audit(
    paths: list[Path] = typer.Argument(None, help="Optional logs to ingest first."),
    db: Path | None = DB_OPT,
    config: Path | None = CONFIG_OPT,
    as_json: bool = JSON_OPT,
    fail_on: list[str] = typer.Option(None, "--fail-on", help="Exit 1 if any run is KIND: false-success, ok, "
                                      "infra_error, declined or degraded (repeatable)."),
    wait: float = WAIT_OPT,
    week: str | None = typer.Option(None, "--week", help="Summarise only ISO week 2026-W27 (or 'last')."),
    since: str | None = typer.Option(None, "--since", help="Summarise only runs from this date (with --until)."),
    until: str | None = typer.Option(None, "--until", help="... up to this date (exclusive)."),
) -> None:
    """Ingest PATHs if given, reclassify every run under the current rules, and print the summary."""
    from runaudit.audit import summary
    from runaudit.classify import classify
    from runaudit.config import config_for, describe
    from runaudit.ingest import log_files
    from runaudit.store import Store

    kinds = [k.replace("-", "_") if k != "false-success" else k for k in (fail_on or [])]
    bad = [k for k in kinds if k not in ("false-success", "ok", "infra_error", "declined", "degraded")]
    if bad:
        raise UsageError(f"--fail-on {bad[0]!r} is not one of: {', '.join(FAIL_ON)}")
    ingest_res = None
    files = log_files(paths) if paths else []  # before the database is created: a bad path leaves none behind
    with Store.open(db, wait=wait, create=bool(paths), on_wait=say_waiting) as store:
        cfg = config_for(store, config, store.path)
        if files:
            ingest_res = _run_ingest(store, files, cfg, not as_json)
        cres = classify(store, cfg)
        if week or since or until:
            from runaudit.cli.report_cmd import parse_date
            from runaudit.report.data import resolve_window

            win = resolve_window(store, week, parse_date(since, "--since"), parse_date(until, "--until"))
            summ = summary(store, win.start, win.end)
            summ["window"] = win.label
        else:
            summ = summary(store)
    if ingest_res is not None:
        summ["ingest"] = ingest_res.as_dict()
    summ["classified_now"] = cres.classified
    summ["config"] = describe(cfg)
    if as_json:
        echo_json(summ)
    else:
        o = summ["outcomes"]
        typer.echo(f"runs: {summ['runs']}   ruleset: {summ['ruleset']}   config: {for_terminal(summ['config'])}")
        typer.echo(f"  ok {o['ok']}   infra_error {o['infra_error']}   declined {o['declined']}   "
                   f"degraded {o['degraded']}")
        typer.echo(f"reported success rate: {_fmt_rate(summ['reported_success_rate'])}   "
                   f"true success rate: {_fmt_rate(summ['true_success_rate'])}")
        typer.echo(f"falsely marked success: {summ['false_success']}   (list them: runaudit flags)")
        if summ["awaiting_review"]:
            typer.echo(f"declined runs awaiting a person: {summ['awaiting_review']} run(s) in "
                       f"{summ['awaiting_review_items']} review item(s)   (runaudit review list)")
        if summ["quarantined"]:
            typer.echo(f"quarantined lines: {summ['quarantined']}   (see them: runaudit quarantine)")
        if ingest_res is not None and ingest_res.held:
            typer.echo(f"held back: {ingest_res.held} line(s) still being written (read when complete or once the "
                       "file has been quiet for [ingest] settle_seconds)")
    if ingest_res is not None:
        _report_ingest_errors(ingest_res)
    hit = any((summ["false_success"] if k == "false-success" else summ["outcomes"][k]) > 0 for k in kinds)
    if hit:
        raise typer.Exit(int(ExitCode.FINDINGS))
    if ingest_res is not None and ingest_res.errors:
        raise typer.Exit(int(ExitCode.INPUT))


@app.command()
@guarded
def flags(
    db: Path | None = DB_OPT,
    as_json: bool = JSON_OPT,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
    task: str | None = typer.Option(None, "--task", help="Only tasks matching this glob."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N rows."),
    borderline: bool = typer.Option(False, "--borderline", help="Instead: runs whose refusal score is in the "
                                    "ambiguous band ([classify] ambiguous_band), whatever their outcome."),
    config: Path | None = CONFIG_OPT,
    wait: float = WAIT_OPT,
) -> None:
    """Runs the pipeline logged as success whose real outcome is not ok (or, with --borderline, uncertain ones)."""
    from runaudit.audit import borderline as borderline_runs
    from runaudit.audit import false_successes
    from runaudit.store import Store

    if as_json and as_csv:
        raise UsageError("--json and --csv are alternatives: pass one of them")
    with Store.open(db, read_only=True, wait=wait, on_wait=say_waiting) as store:
        if borderline:
            from runaudit.config import config_for

            cfg = config_for(store, config, store.path)
            df = borderline_runs(store, cfg.ambiguous_low, cfg.ambiguous_high, task, limit)
        else:
            df = false_successes(store, task=task, limit=limit)
        say_used(store)
    if as_json:
        echo_json(df.to_dicts())
    elif as_csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(df.columns)
        for row in df.iter_rows():
            w.writerow([for_csv(v) for v in row])
        typer.echo(buf.getvalue(), nl=False)
    else:
        if df.height == 0:
            typer.echo("no borderline runs" if borderline else "no falsely-marked-success runs")
            return
        if borderline:
            for r in df.iter_rows(named=True):
                typer.echo(f"{r['refusal_score']:.2f}  {str(r['ts'])[:19]}  {for_terminal(r['task_id'])}  -> "
                           f"{r['outcome']} ({r['rule_code']})  {for_terminal(r['response_start'] or '')[:80]}")
            typer.echo(f"{df.height} run(s) in the ambiguous band; `runaudit judge` can classify them")
            return
        for r in df.iter_rows(named=True):
            where = f"{os.path.basename(r['source_file'] or '')}:{r['source_line']}"
            # a run whose pipeline logged no status counts as reported success by its HTTP status
            said = (for_terminal(r["reported_status"]) if r["reported_status"] is not None
                    else f"http {r['http_status']}" if r["http_status"] is not None else "no error logged")
            snippet = for_terminal(" ".join(str(r["returned"] or "").split()))[:80]
            typer.echo(f"{str(r['ts'])[:19]}  {for_terminal(r['task_id'])}  "
                       f"reported={said}  -> {r['outcome']} "
                       f"({for_terminal(r['sub_reason'])}; {r['rule_code']} {r['signal']})  {for_terminal(where)}")
            if snippet:
                typer.echo(f"    returned: {snippet}")
        typer.echo(f"{df.height} run(s)")


@app.command()
@guarded
def diff(db: Path | None = DB_OPT, as_json: bool = JSON_OPT, wait: float = WAIT_OPT) -> None:
    """Runs whose outcome changed between the last two rulesets, and why."""
    from runaudit.audit import ruleset_diff
    from runaudit.store import Store

    with Store.open(db, read_only=True, wait=wait, on_wait=say_waiting) as store:
        old, new, df = ruleset_diff(store)
        used = say_used(store)
    if as_json:
        echo_json({"old_ruleset": old, "new_ruleset": new, "config": used["config"], "changed": df.to_dicts()})
        return
    typer.echo(f"ruleset {old} -> {new}: {df.height} run(s) changed")

    def why(rule: str, sub: str | None, done: list[str] | None) -> str:
        # which done-conditions failed (DN codes), else the sub-reason; an ok run has none to show
        detail = ",".join(done or []) or (for_terminal(sub) if sub else "")
        return f"{rule}: {detail}" if detail else rule

    for r in df.iter_rows(named=True):
        typer.echo(f"  {for_terminal(r['run_id'] or r['rid'])}  {for_terminal(r['task_id'])}  {r['old_outcome']} "
                   f"({why(r['old_rule'], r['old_sub_reason'], r['old_done_failures'])}) -> {r['new_outcome']} "
                   f"({why(r['new_rule'], r['new_sub_reason'], r['new_done_failures'])})")


@app.command()
@guarded
def quarantine(
    file: str | None = typer.Option(None, "--file", help="Only lines from files whose path contains this text."),
    limit: int = typer.Option(50, "--limit", help="Show at most this many lines (0: all)."),
    db: Path | None = DB_OPT, as_json: bool = JSON_OPT, wait: float = WAIT_OPT,
) -> None:
    """Lines that were not ingested as runs, with their file, line, reason and first bytes."""
    from runaudit.store import Store

    sql = ("SELECT source_file, source_line, source_offset, reason, detail, left(raw, 200) AS start, raw_bytes "
           "FROM quarantine WHERE (? IS NULL OR contains(source_file, ?)) ORDER BY source_file, source_line")
    with Store.open(db, read_only=True, wait=wait, on_wait=say_waiting) as store:
        total = int(store.scalar("SELECT count(*) FROM quarantine WHERE (? IS NULL OR contains(source_file, ?))",
                                 [file, file]))
        df = store.query(sql + (f" LIMIT {int(limit)}" if limit > 0 else ""), [file, file])
        used = say_used(store)
    if as_json:
        echo_json({"total": total, **used, "lines": df.to_dicts()})
        return
    if total == 0:
        typer.echo("no quarantined lines")
        return
    for r in df.iter_rows(named=True):
        start = for_terminal(" ".join(str(r["start"] or "").split()))[:100]
        typer.echo(f"{for_terminal(r['source_file'])}:{r['source_line']}  {r['reason']}: {for_terminal(r['detail'])}")
        typer.echo(f"    {start}")
    more = f" (showing {df.height}; --limit 0 for all)" if df.height < total else ""
    typer.echo(f"{total} quarantined line(s){more}")


rules_app = typer.Typer(help="Show the classification rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


@rules_app.command("list")
@guarded
def rules_list(as_json: bool = JSON_OPT) -> None:
    """Every rule, in priority order, with what it matches."""
    from runaudit.rules.done import DONE_RULES
    from runaudit.rules.outcome import RULES

    rows = [{"code": r.code, "name": r.name, "outcome": r.outcome, "signal": r.signal, "retryable": r.retryable,
             "description": r.description()} for r in RULES]
    rows += [{"code": d.code, "name": d.key, "outcome": "degraded", "signal": "done_condition", "retryable": False,
              "description": d.description} for d in DONE_RULES]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['code']}  {r['outcome']:<11} {r['name']:<20} {r['description']}")


@rules_app.command("explain")
@guarded
def rules_explain(code: str = typer.Argument(..., help="A rule code, e.g. DE10 or DN04.")) -> None:
    """The full description of one rule: what it matches and what it does not."""
    from runaudit.rules.base import plain
    from runaudit.rules.done import DONE_RULES
    from runaudit.rules.outcome import RULES

    for d in DONE_RULES:
        if d.code.lower() == code.lower():
            typer.echo(f"{d.code} {d.key} -> degraded (via DN00)\n\n{d.description}\n\n"
                       f"Matches: {plain(d.matches)}\nDoes not match: {plain(d.does_not_match)}\n\n"
                       f"Configure in runaudit.toml: [done] {d.key} = … or [done.tasks.\"GLOB\"] {d.key} = …")
            return
    r = RULES.get(code)
    typer.echo(f"{r.code} {r.name} -> {r.outcome} (signal: {r.signal}, retryable: {str(r.retryable).lower()})\n")
    typer.echo(r.doc())
    if r.code == "DE10":
        from runaudit.rules.refusal import BIAS, FEATURES

        typer.echo(f"\nEvidence (weight; bias {BIAS}):")
        for f in FEATURES:
            typer.echo(f"  {f.weight:+.1f}  {f.name}: {f.doc}")
