"""Audit numbers over the classified runs: the summary, false successes, and ruleset diffs.

Everything reads the ``audit_runs`` view (runs + current classification + review verdicts), so the CLI,
the reports and the Python API agree on every number.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from runaudit.errors import StateError
from runaudit.store import Store

if TYPE_CHECKING:
    import polars as pl

OUTCOMES = ("ok", "infra_error", "declined", "degraded")


def window_where(since: dt.date | None, until: dt.date | None, task: str | None = None) -> tuple[str, list[Any]]:
    """A WHERE clause (with bound parameters) for a time window [since, until) and a task glob."""
    clauses, params = ["true"], []
    if since is not None:
        clauses.append("ts >= ?")
        params.append(dt.datetime.combine(since, dt.time()))
    if until is not None:
        clauses.append("ts < ?")
        params.append(dt.datetime.combine(until, dt.time()))
    if task:
        clauses.append("task_id GLOB ?")
        params.append(task)
    return " AND ".join(clauses), params


def require_classified(store: Store) -> str:
    """The current ruleset, or a clear error when nothing was classified yet."""
    rs = store.get_meta("current_ruleset")
    if not rs:
        raise StateError(f"{store.path} has no classification yet", hint="run `runaudit audit` first")
    return rs


# The outcome counts every view of the numbers shares (audit summary, weekly report, Python API), so they agree
# by construction.
OUTCOME_COUNTS = """count(*) AS runs,
       count(*) FILTER (WHERE outcome = 'ok') AS ok,
       count(*) FILTER (WHERE outcome = 'infra_error') AS infra_error,
       count(*) FILTER (WHERE outcome = 'declined') AS declined,
       count(*) FILTER (WHERE outcome = 'degraded') AS degraded,
       count(*) FILTER (WHERE false_success) AS false_success,
       count(*) FILTER (WHERE reported_success) AS reported_success"""

SUMMARY_SQL = f"""
SELECT {OUTCOME_COUNTS},
       count(*) FILTER (WHERE overridden) AS overridden,
       count(*) FILTER (WHERE outcome <> 'ok' AND retryable) AS retryable,
       count(*) FILTER (WHERE rule_outcome = 'declined' AND review_verdict IS NULL) AS awaiting_review,
       count(DISTINCT idem_key) FILTER (WHERE rule_outcome = 'declined' AND review_verdict IS NULL)
           AS awaiting_review_items
FROM audit_runs WHERE {{where}}
"""


def summary(store: Store, since: dt.date | None = None, until: dt.date | None = None,
            task: str | None = None) -> dict[str, Any]:
    """The audit summary (the ``audit --json`` object) over an optional window."""
    rs = require_classified(store)
    where, params = window_where(since, until, task)
    row = store.rows(SUMMARY_SQL.format(where=where), params)[0]
    runs, ok, infra, declined, degraded, false_success, reported, overridden, retryable, awaiting, items = row
    signals = dict(store.rows(f"SELECT signal, count(*) FROM audit_runs WHERE {where} AND outcome <> 'ok' "
                              "GROUP BY 1 ORDER BY 2 DESC", params))
    sub = dict(store.rows(f"SELECT sub_reason, count(*) FROM audit_runs WHERE {where} AND outcome = 'infra_error' "
                          "GROUP BY 1 ORDER BY 2 DESC", params))
    qwhere = "true"
    qparams: list[Any] = []
    quarantined = int(store.scalar(f"SELECT count(*) FROM quarantine WHERE {qwhere}", qparams) or 0)
    return {
        "runs": runs,
        "outcomes": {"ok": ok, "infra_error": infra, "declined": declined, "degraded": degraded},
        "false_success": false_success,
        "reported_success": reported,
        "reported_success_rate": round(reported / runs, 4) if runs else None,
        "true_success_rate": round(ok / runs, 4) if runs else None,
        "overridden_by_review": overridden,
        "awaiting_review": awaiting,  # runs; the review queue folds them into items (one per input)
        "awaiting_review_items": items,
        "retryable": retryable,
        "signals": signals,
        "infra_breakdown": sub,
        "quarantined": quarantined,
        "ruleset": rs,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }


FLAGS_SQL = """
SELECT run_id, task_id, ts, reported_status, outcome, sub_reason, signal, rule_code, refusal_score,
       source_file, source_line, rid, reported_source, http_status,
       -- what came back, for a glance: the refusal, the reply, the error or the tool payload
       left(coalesce(nullif(trim(refusal_text), ''), nullif(trim(response_text), ''), error_message,
                     nullif(tool_payload, '[]')), 200) AS returned
FROM audit_runs WHERE false_success AND {where}
ORDER BY ts, rid
"""


def false_successes(store: Store, since: dt.date | None = None, until: dt.date | None = None,
                    task: str | None = None, limit: int | None = None) -> pl.DataFrame:
    """Runs the pipeline logged as success whose outcome is not ok, with the evidence."""
    require_classified(store)
    where, params = window_where(since, until, task)
    sql = FLAGS_SQL.format(where=where)
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return store.query(sql, params)


BORDERLINE_SQL = """
SELECT run_id, task_id, ts, reported_status, outcome, rule_code, signal, refusal_score,
       left(response_text, 200) AS response_start, source_file, source_line, rid
FROM audit_runs WHERE refusal_score BETWEEN ? AND ? AND {where}
ORDER BY refusal_score DESC, ts, rid
"""


def borderline(store: Store, low: float, high: float, task: str | None = None,
               limit: int | None = None) -> pl.DataFrame:
    """Runs whose in-body refusal score lies in [low, high]: the detector's uncertain cases."""
    require_classified(store)
    where, params = window_where(None, None, task)
    sql = BORDERLINE_SQL.format(where=where)
    all_params: list[Any] = [low, high, *params]
    if limit is not None:
        sql += " LIMIT ?"
        all_params.append(int(limit))
    return store.query(sql, all_params)


DIFF_SQL = """
SELECT r.rid, r.run_id, r.task_id, r.ts,
       o.outcome AS old_outcome, o.rule_code AS old_rule, n.outcome AS new_outcome, n.rule_code AS new_rule,
       o.sub_reason AS old_sub_reason, n.sub_reason AS new_sub_reason, o.refusal_score AS old_score,
       n.refusal_score AS new_score, o.done_failures AS old_done_failures, n.done_failures AS new_done_failures
FROM classifications n
JOIN classifications o ON o.rid = n.rid AND o.ruleset = ?
JOIN runs r ON r.rid = n.rid
WHERE n.ruleset = ? AND (n.outcome <> o.outcome OR n.rule_code <> o.rule_code)
ORDER BY r.ts, r.rid
"""


def ruleset_diff(store: Store) -> tuple[str, str, pl.DataFrame]:
    """Runs whose outcome or deciding rule changed between the last two rulesets."""
    rows = store.rows("SELECT ruleset FROM rulesets ORDER BY seq DESC LIMIT 2")
    if len(rows) < 2:
        raise StateError("only one ruleset has been used so far: nothing to compare",
                         hint="change runaudit.toml (or upgrade runaudit) and run `runaudit audit` again")
    new, old = rows[0][0], rows[1][0]
    return old, new, store.query(DIFF_SQL, [old, new])
