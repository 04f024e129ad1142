"""The Python API: ``runaudit.open(path)`` and methods that return polars DataFrames.

    import runaudit
    audit = runaudit.open("runaudit.duckdb")
    audit.ingest("logs/")          # optional: add logs
    audit.classify()               # reclassify under the current config
    audit.outcome_counts()         # polars DataFrame
    audit.sql("SELECT task_id, count(*) AS n FROM audit_runs WHERE outcome = ? GROUP BY 1", ["declined"])

These are the same functions the command line uses; nothing here imports typer or matplotlib (charts are drawn
only by :meth:`Audit.report`).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runaudit.config import Config, config_for
from runaudit.store import Store

if TYPE_CHECKING:
    import polars as pl

    from runaudit.classify import ClassifyResult
    from runaudit.ingest import IngestResult
    from runaudit.report import ReportResult


def _date(d: str | dt.date | None) -> dt.date | None:
    if d is None or isinstance(d, dt.date):
        return d
    return dt.date.fromisoformat(d)


class Audit:
    """An open runaudit database with its configuration.

    Args:
        store: the open :class:`~runaudit.store.Store`.
        config: the classification/report configuration.
    """

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    # -- writing ---------------------------------------------------------------------------------------
    def ingest(self, *paths: str | os.PathLike[str]) -> IngestResult:
        """Ingest log files or folders (see :func:`runaudit.ingest.ingest`)."""
        from runaudit.ingest import ingest

        return ingest(self.store, paths, self.config)

    def classify(self, force: bool = False) -> ClassifyResult:
        """Classify new runs, or every run if the rules or config changed."""
        from runaudit.classify import classify

        return classify(self.store, self.config, force=force)

    def resolve(self, key: str, verdict: str, note: str | None = None) -> str:
        """Record a review verdict (``confirmed`` / ``false-positive`` / ``open``) for a queue key."""
        from runaudit.review import resolve

        return resolve(self.store, key, verdict, note)

    # -- reading ---------------------------------------------------------------------------------------
    def runs(self, *, task: str | None = None, outcome: str | None = None, since: str | dt.date | None = None,
             until: str | dt.date | None = None, limit: int | None = None) -> pl.DataFrame:
        """Runs with their outcome and evidence (the ``audit_runs`` view), newest first."""
        from runaudit.audit import require_classified, window_where

        require_classified(self.store)
        where, params = window_where(_date(since), _date(until), task)
        if outcome:
            where += " AND outcome = ?"
            params.append(outcome)
        sql = f"SELECT * EXCLUDE (ruleset) FROM audit_runs WHERE {where} ORDER BY ts DESC, rid DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        return self.store.query(sql, params)

    def summary(self, since: str | dt.date | None = None, until: str | dt.date | None = None) -> dict[str, Any]:
        """The ``audit --json`` summary over an optional window."""
        from runaudit.audit import summary

        return summary(self.store, _date(since), _date(until))

    def outcome_counts(self, by: str | None = None) -> pl.DataFrame:
        """Runs per outcome (and per ``by`` column, e.g. ``"task_id"``), with reported-success counts."""
        from runaudit.audit import require_classified
        from runaudit.errors import UsageError

        require_classified(self.store)
        allowed = {None, "task_id", "provider", "model", "signal", "shape"}
        if by not in allowed:
            raise UsageError(f"by must be one of {sorted(a for a in allowed if a)}")
        keys = f"{by}, outcome" if by else "outcome"
        return self.store.query(f"SELECT {keys}, count(*) AS runs, count(*) FILTER (WHERE reported_success) AS "
                                f"reported_success FROM audit_runs GROUP BY ALL ORDER BY {keys}")

    def false_successes(self, task: str | None = None, since: str | dt.date | None = None,
                        until: str | dt.date | None = None) -> pl.DataFrame:
        """Runs logged as success whose outcome is not ok."""
        from runaudit.audit import false_successes

        return false_successes(self.store, _date(since), _date(until), task)

    def weekly(self) -> pl.DataFrame:
        """Per ISO week: runs, outcome counts, reported and true success rate."""
        import polars as pl

        from runaudit.audit import OUTCOME_COUNTS, require_classified

        require_classified(self.store)
        df = self.store.query(f"SELECT strftime(ts, '%G-W%V') AS week, {OUTCOME_COUNTS} "
                              "FROM audit_runs GROUP BY 1 ORDER BY 1")
        return df.with_columns((pl.col("reported_success") / pl.col("runs")).round(4).alias("reported_rate"),
                               (pl.col("ok") / pl.col("runs")).round(4).alias("true_rate"))

    def decline_topics(self, week: str | None = None, since: str | dt.date | None = None,
                       until: str | dt.date | None = None) -> pl.DataFrame:
        """Decline rate per topic (config ``[topics]``, else distinguishing prompt terms).

        The window is the weekly report's: by default the **last week with runs** (as ``runaudit report``);
        ``week="2026-W27"`` for one ISO week, ``week="all"`` for every run stored, or ``since``/``until`` dates
        (until exclusive). The window used is in the frame's ``window`` column.
        """
        import polars as pl

        from runaudit.report.data import build_report_data, resolve_window

        if week is not None and week.lower() == "all":
            lo, hi = self.store.rows("SELECT min(ts)::DATE, max(ts)::DATE FROM audit_runs")[0]
            if lo is not None:
                since, until, week = lo, hi + dt.timedelta(days=1), None
        win = resolve_window(self.store, week, _date(since), _date(until))
        data = build_report_data(self.store, self.config, win)
        return data.topics.with_columns(pl.lit(win.label).alias("window"))

    def review_queue(self, status: str = "open", include_degraded: bool = False) -> pl.DataFrame:
        """Review items, one per idempotency key."""
        from runaudit.review import review_queue

        return review_queue(self.store, status, include_degraded)

    def diff(self) -> pl.DataFrame:
        """Runs whose outcome changed between the last two rulesets."""
        from runaudit.audit import ruleset_diff

        return ruleset_diff(self.store)[2]

    def quarantine(self) -> pl.DataFrame:
        """Lines that could not be read as runs, with file, line, byte offset and reason."""
        return self.store.query("SELECT * FROM quarantine ORDER BY source_file, source_line")

    def sql(self, query: str, params: list[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Any SQL over the database (tables ``runs``, ``classifications``, ``reviews``, view ``audit_runs``)."""
        return self.store.query(query, params)

    def report(self, out_dir: str | Path = "report", week: str | None = None) -> ReportResult:
        """Write the weekly report (the only method that imports matplotlib)."""
        from runaudit.report import write_report

        return write_report(self.store, self.config, out_dir, week)

    # -- lifetime --------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database."""
        self.store.close()

    def __enter__(self) -> Audit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<runaudit.Audit {self.store.path!r}>"


def open(path: str | os.PathLike[str] | None = None, *, config: str | os.PathLike[str] | Config | None = None,
         read_only: bool = False) -> Audit:  # noqa: A001 - the obvious name, as in sqlite3/duckdb
    """Open (creating if needed) a runaudit database and return an :class:`Audit`.

    Args:
        path: the DuckDB file (default ``$RUNAUDIT_DB`` or ``./runaudit.duckdb``); ``":memory:"`` for a scratch one.
        config: a path to ``runaudit.toml``, a :class:`~runaudit.config.Config`, or None: ``./runaudit.toml``,
            else ``runaudit.toml`` beside the database, else the config remembered in the database.
        read_only: open without taking the write lock.
    """
    store = Store.open(path, read_only=read_only)
    try:
        cfg = config if isinstance(config, Config) else config_for(store, config, store.path)
    except BaseException:
        store.close()
        raise
    return Audit(store, cfg)
