"""spark-audit and spark-load: the audit on Apache Spark, and its results in a runaudit database."""

from __future__ import annotations

from pathlib import Path

import typer

from runaudit.cli.app import app, guarded
from runaudit.cli.common import CONFIG_OPT, DB_OPT, JSON_OPT, WAIT_OPT, echo_json, say_waiting
from runaudit.errors import ExitCode, UsageError


@app.command("spark-audit")
@guarded
def spark_audit(
    paths: list[str] = typer.Argument(..., help="Log files or folders: any Hadoop path (local, s3a://, abfss://, gs://)."),
    out: str = typer.Option(..., "--out", help="Folder (any Hadoop path) for the Parquet results and the manifest."),
    master: str = typer.Option("local[*]", "--master", help="Spark master when no session is configured "
                                                              "(spark-submit passes its own)."),
    config: Path | None = CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Audit logs on Apache Spark (needs `pip install 'runaudit[spark]'` and Java 17+): one task per file, the same
    rules evaluated by DuckDB inside each task, results as Parquet; incremental through the manifest."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise UsageError("Spark is not installed", hint="pip install 'runaudit[spark]' (and Java 17+)") from e
    from runaudit import spark as ra_spark
    from runaudit.config import load_config

    cfg = load_config(config)
    session = (SparkSession.builder.master(master).appName("runaudit")
               .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    res = ra_spark.audit(session, paths, out, config=cfg)
    if as_json:
        echo_json(res.as_dict())
    else:
        typer.echo(f"{res.files} file(s): {res.files_read} read, {res.files_unchanged} unchanged; {res.lines} line(s): "
                   f"{res.runs_added} new run(s), {res.duplicates} duplicate(s), {res.quarantined} quarantined; "
                   f"ruleset {res.ruleset}; results in {res.out} ({res.seconds:.1f}s)")
        typer.echo(f"next: runaudit spark-load {res.out} --db runaudit.duckdb (from a local copy of the folder)")
    for e in res.errors:
        typer.echo(f"error: {e['error']}", err=True)
    if res.errors:
        raise typer.Exit(int(ExitCode.INPUT))


@app.command("spark-load")
@guarded
def spark_load(
    folder: Path = typer.Argument(..., help="The --out folder of spark-audit, on local disk."),
    db: Path | None = DB_OPT,
    as_json: bool = JSON_OPT,
    wait: float = WAIT_OPT,
) -> None:
    """Load a Spark audit's Parquet results into the DuckDB file, so that audit, flags, report, review and diff
    work on them (incremental: what is already there is not added twice)."""
    from runaudit import spark as ra_spark
    from runaudit.store import Store

    ra_spark.check_results(folder)  # before the database is created: a wrong folder leaves none behind
    with Store.open(db, wait=wait, on_wait=say_waiting) as store:
        res = ra_spark.load(folder, store)
    if as_json:
        echo_json(res)
    else:
        typer.echo(f"{res['runs_added']} new run(s), {res['quarantined']} quarantined line(s) loaded; "
                   f"{res['classified']} run(s) classified under the Spark audit's ruleset")
