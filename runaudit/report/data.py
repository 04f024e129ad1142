"""The numbers of the weekly report, as polars frames and dicts (no rendering here).

Every figure comes from the ``audit_runs`` view through the same functions ``audit`` uses, so the report and
``runaudit audit --json --week …`` agree exactly.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runaudit.audit import OUTCOME_COUNTS, require_classified, summary
from runaudit.config import Config
from runaudit.errors import StateError, UsageError
from runaudit.store import Store

if TYPE_CHECKING:
    import polars as pl

_WEEK_RE = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.IGNORECASE)

TERM_SAMPLE = 40_000  # prompts read to find distinguishing terms

STOPWORDS = frozenset("""a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have having he
her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now
of off on once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves please also get use using make made
want need like tell give write draft reply customer asks ask says one two new see may might must shall let""".split())


@dataclass(frozen=True)
class Window:
    """The report's time window: [start, end), and the ISO week label when it is a week."""

    start: dt.date
    end: dt.date
    label: str

    @property
    def previous(self) -> Window:
        span = self.end - self.start
        return Window(self.start - span, self.start, f"before {self.label}")


# Times outside these years are not log times (ingest keeps them as unparsed and uses the file's time).
MIN_YEAR, MAX_YEAR = 1970, 2200


def week_window(year: int, week: int) -> Window:
    """The window of ISO week ``year``-W``week`` (Monday to Monday)."""
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise UsageError(f"{year}-W{week:02d} is outside the years runaudit reports on ({MIN_YEAR}-{MAX_YEAR})")
    try:
        monday = dt.date.fromisocalendar(year, week, 1)
    except ValueError as e:
        raise UsageError(f"{year}-W{week:02d} is not an ISO week") from e
    return Window(monday, monday + dt.timedelta(days=7), f"{year}-W{week:02d}")


def resolve_window(store: Store, week: str | None = None, since: dt.date | None = None,
                   until: dt.date | None = None) -> Window:
    """Turn ``--week 2026-W27 | last`` or ``--since/--until`` into a window (default: the last week with runs)."""
    if week and (since or until):
        raise UsageError("give either --week or --since/--until, not both")
    if since or until:
        if not (since and until):
            raise UsageError("--since and --until go together")
        if until <= since:
            raise UsageError("--until must be after --since")
        if since.year < MIN_YEAR or until.year > MAX_YEAR:
            raise UsageError(f"--since/--until must lie between {MIN_YEAR} and {MAX_YEAR}")
        return Window(since, until, f"{since.isoformat()} to {until.isoformat()}")
    if week and week.lower() != "last":
        m = _WEEK_RE.match(week.strip())
        if not m:
            raise UsageError(f"--week {week!r} is not like 2026-W27 or 'last'")
        return week_window(int(m.group(1)), int(m.group(2)))
    latest = store.scalar("SELECT max(ts) FROM audit_runs")
    if latest is None:
        raise StateError("no classified runs with a time: nothing to report",
                         hint="run `runaudit audit PATH` first")
    y, w, _ = latest.date().isocalendar()
    return week_window(y, w)


WEEKLY_SQL = f"""
SELECT date_trunc('week', ts)::DATE AS week_start, strftime(ts, '%G-W%V') AS week,
       {OUTCOME_COUNTS},
       count(*) FILTER (WHERE outcome = 'infra_error' AND http_status = 429) AS infra_429,
       count(*) FILTER (WHERE outcome = 'infra_error' AND http_status = 529) AS infra_529,
       count(*) FILTER (WHERE outcome = 'infra_error' AND http_status BETWEEN 500 AND 599 AND http_status <> 529)
           AS infra_5xx,
       count(*) FILTER (WHERE outcome = 'infra_error' AND sub_reason = 'timeout'
                        AND coalesce(http_status, 0) NOT IN (429, 529)
                        AND NOT coalesce(http_status BETWEEN 500 AND 599, false))
           AS infra_timeout
FROM audit_runs WHERE ts >= ? AND ts < ?
GROUP BY ALL ORDER BY week_start
"""

TASK_SQL = """
SELECT task_id, count(*) AS runs,
       count(*) FILTER (WHERE reported_success) AS reported_success,
       count(*) FILTER (WHERE outcome = 'ok') AS ok,
       count(*) FILTER (WHERE outcome = 'declined') AS declined,
       count(*) FILTER (WHERE outcome = 'degraded') AS degraded,
       count(*) FILTER (WHERE outcome = 'infra_error') AS infra_error,
       count(*) FILTER (WHERE false_success) AS false_success
FROM audit_runs WHERE ts >= ? AND ts < ?
GROUP BY task_id ORDER BY runs DESC, task_id
"""

TASK_WEEK_SQL = """
SELECT task_id, strftime(ts, '%G-W%V') AS week, count(*) AS runs,
       count(*) FILTER (WHERE outcome = 'declined') AS declined,
       count(*) FILTER (WHERE outcome = 'ok') AS ok,
       count(*) FILTER (WHERE reported_success) AS reported_success
FROM audit_runs WHERE ts >= ? AND ts < ?
GROUP BY ALL ORDER BY task_id, week
"""

FALSE_BY_TASK_SQL = """
SELECT task_id, count(*) AS false_success,
       count(*) FILTER (WHERE outcome = 'declined') AS declined,
       count(*) FILTER (WHERE outcome = 'degraded') AS degraded,
       count(*) FILTER (WHERE outcome = 'infra_error') AS infra_error
FROM audit_runs WHERE false_success AND ts >= ? AND ts < ?
GROUP BY task_id ORDER BY false_success DESC, task_id
"""

WORST_SQL = """
SELECT run_id, task_id, ts, reported_status, outcome, sub_reason, signal, rule_code, refusal_score,
       left(prompt, 300) AS prompt, left(response_text, 300) AS response_text, source_file, source_line
FROM audit_runs WHERE false_success AND ts >= ? AND ts < ?
ORDER BY CASE outcome WHEN 'declined' THEN 0 WHEN 'degraded' THEN 1 ELSE 2 END,
         CASE WHEN signal = 'body_refusal' THEN 1 ELSE 0 END, ts DESC, rid
LIMIT ?
"""

DECLINE_BY_SIGNAL_SQL = """
SELECT task_id, signal, count(*) AS declined
FROM audit_runs WHERE outcome = 'declined' AND ts >= ? AND ts < ?
GROUP BY ALL ORDER BY declined DESC, task_id, signal
"""

CATEGORY_SQL = """
SELECT coalesce(refusal_category, sub_reason) AS category, count(*) AS declined
FROM audit_runs
WHERE outcome = 'declined' AND ts >= ? AND ts < ? AND signal IN ('refusal', 'content_filter', 'guardrail')
GROUP BY ALL ORDER BY declined DESC
"""


JUDGE_TOPICS_SQL = """
SELECT jv.topic, count(*) AS runs, count(*) FILTER (WHERE a.outcome = 'declined') AS declined
FROM audit_runs a
JOIN judge_runs jr ON jr.rid = a.rid
JOIN (SELECT content_hash, arg_max(topic, judged_at) AS topic FROM judge_verdicts
      WHERE topic IS NOT NULL GROUP BY content_hash) jv ON jv.content_hash = jr.content_hash
WHERE a.ts >= ? AND a.ts < ?
GROUP BY ALL ORDER BY declined DESC, runs DESC, jv.topic
"""


@dataclass
class ReportData:
    """Everything the renderers need."""

    window: Window
    weeks: list[str]
    headline: dict[str, Any]
    previous: dict[str, Any]
    weekly: pl.DataFrame
    tasks: pl.DataFrame
    task_weeks: pl.DataFrame
    false_by_task: pl.DataFrame
    worst: pl.DataFrame
    decline_by_signal: pl.DataFrame
    categories: pl.DataFrame
    topics: pl.DataFrame
    topic_weeks: pl.DataFrame
    topic_method: str
    hand: pl.DataFrame
    review: dict[str, int] | None
    judge_topics: pl.DataFrame | None = None
    config: dict[str, Any] = field(default_factory=dict)


def _topic_sql(cfg: Config) -> tuple[str, list[Any]] | None:
    """SQL for a list of configured topic names matched by a run's prompt (keywords or regex:)."""
    if not cfg.topics:
        return None
    items, params = [], []
    for name, kws in cfg.topics.items():
        conds = []
        for k in kws:
            if k.startswith("regex:"):
                conds.append("regexp_matches(coalesce(prompt, ''), ?)")
                params.append("(?i)" + k[6:])
            else:
                conds.append("contains(lower(coalesce(prompt, '')), ?)")
                params.append(k.lower())
        items.append(f"CASE WHEN {' OR '.join(conds)} THEN ? END")
        params.append(name)
    return "list_filter([" + ", ".join(items) + "], lambda x: x IS NOT NULL)", params


def _topics_from_config(store: Store, cfg: Config, start: dt.date, end: dt.date) -> tuple[pl.DataFrame, str]:
    expr, params = _topic_sql(cfg)  # type: ignore[misc]
    sql = f"""
    WITH t AS (SELECT strftime(ts, '%G-W%V') AS week, outcome, unnest({expr}) AS topic
               FROM audit_runs WHERE ts >= ? AND ts < ?)
    SELECT topic, week, count(*) AS runs, count(*) FILTER (WHERE outcome = 'declined') AS declined
    FROM t GROUP BY ALL ORDER BY topic, week"""
    df = store.query(sql, [*params, start, end])
    method = ("Topics come from the [topics] table of the config: a run belongs to every topic whose keywords "
              "(case-insensitive substrings) or regex: patterns match its prompt. Decline rate = declined runs / "
              "runs of the topic.")
    return df, method


def _topics_from_terms(store: Store, start: dt.date, end: dt.date, top: int = 12) -> tuple[pl.DataFrame, str]:
    """Terms that most distinguish declined prompts from accepted ones (log-odds with an informative prior)."""
    import polars as pl

    # A sample that is the same on every run (the runs with the smallest hash of their rid), so a report
    # rendered twice names the same topics; polars tokenises it (its regex engine is ~3x DuckDB's here).
    docs = store.query(f"""
        SELECT rid, outcome, strftime(ts, '%G-W%V') AS week, left(prompt, 2000) AS prompt
        FROM audit_runs WHERE ts >= ? AND ts < ? AND outcome IN ('declined', 'ok') AND prompt IS NOT NULL
        ORDER BY hash(rid) LIMIT {TERM_SAMPLE}""", [start, end])
    docs = docs.with_columns(
        pl.col("prompt").str.to_lowercase().str.extract_all(r"[a-z][a-z0-9-]{2,}").list.unique().alias("terms"),
    ).drop("prompt")
    method = ("Topics are the prompt terms that most distinguish declined runs from ok runs: for each term, the "
              "log-odds ratio of its presence in declined vs ok prompts, with an informative prior in the spirit of "
              "Monroe, Colaresi & Quinn (2008, 'Fightin' Words'): a Beta prior worth 10 prompts centred on the "
              "term's overall rate (so rare terms are shrunk towards 'no difference'), ranked by the ratio's "
              "z-score; only terms with z > 1.96 are shown. Terms in fewer than 3 declined prompts and common "
              "English words are left out; at most 40,000 prompts are sampled (the same ones on every run). "
              "Decline rate = declined runs "
              "whose prompt contains the term / runs whose prompt contains the term. Add a [topics] table to "
              "the config to name topics yourself.")
    empty = pl.DataFrame(schema={"topic": pl.String, "week": pl.String, "runs": pl.Int64, "declined": pl.Int64,
                                 "z": pl.Float64})
    if docs.height == 0:
        return empty, method
    ex = docs.explode("terms").filter(pl.col("terms").is_not_null() & ~pl.col("terms").is_in(list(STOPWORDS)))
    n_d = int((docs["outcome"] == "declined").sum())
    n_a = int((docs["outcome"] == "ok").sum())
    if n_d == 0 or n_a == 0:
        return empty, method
    counts = ex.group_by("terms").agg(
        (pl.col("outcome") == "declined").sum().alias("yd"), (pl.col("outcome") == "ok").sum().alias("ya"))
    counts = counts.filter(pl.col("yd") >= 3)
    if counts.height == 0:
        return empty, method
    total = n_d + n_a
    rows = []
    alpha = 10.0  # prior strength, in documents
    for term, yd, ya in counts.iter_rows():
        # log-odds ratio of the term's presence in declined vs ok prompts; a Beta prior centred on the term's
        # overall rate shrinks rare terms, and +0.5 on every cell keeps all four cells positive.
        pi = (yd + ya) / total
        a, b = yd + alpha * pi + 0.5, n_d - yd + alpha * (1 - pi) + 0.5
        c, d = ya + alpha * pi + 0.5, n_a - ya + alpha * (1 - pi) + 0.5
        delta = math.log(a / b) - math.log(c / d)
        rows.append((term, delta / math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)))
    rows.sort(key=lambda r: (-r[1], r[0]))
    chosen = [r for r in rows if r[1] > 1.96][:top]
    if not chosen:
        return empty, method
    z = dict(chosen)
    per_week = (ex.filter(pl.col("terms").is_in(list(z)))
                .group_by("terms", "week")
                .agg(pl.len().alias("runs"), (pl.col("outcome") == "declined").sum().alias("declined"))
                .rename({"terms": "topic"})
                .with_columns(pl.col("topic").replace_strict(z, return_dtype=pl.Float64).alias("z"))
                .with_columns(pl.col("runs").cast(pl.Int64), pl.col("declined").cast(pl.Int64))
                .sort(["z", "topic", "week"], descending=[True, False, False]))
    return per_week, method


def _hand(task_weeks: pl.DataFrame, topic_weeks: pl.DataFrame, weeks: list[str], cfg: Config) -> pl.DataFrame:
    """Tasks and topics whose decline rate stayed at or above the threshold in each of the last hand_weeks."""
    import polars as pl

    # the last weeks that have runs: a window ending on a week with no runs yet (a natural month ending on a
    # Monday) must not hide what the weeks before it show
    active = set(task_weeks["week"].to_list()) if task_weeks.height else set()
    recent = [w for w in weeks if w in active][-cfg.hand_weeks:]
    out = []
    for kind, df, key in (("task", task_weeks, "task_id"), ("topic", topic_weeks, "topic")):
        if df.height == 0:
            continue
        for name, grp in df.filter(pl.col("week").is_in(recent)).group_by(key):
            by_week = {r["week"]: r for r in grp.iter_rows(named=True)}
            if len(by_week) < len(recent):
                continue
            rates = []
            for w in recent:
                r = by_week[w]
                if r["runs"] < cfg.hand_min_runs:
                    break
                rates.append(r["declined"] / r["runs"])
            if len(rates) == len(recent) and min(rates) >= cfg.hand_threshold:
                out.append({"kind": kind, "name": str(name[0] if isinstance(name, tuple) else name),
                            "weeks": len(recent), "min_decline_rate": round(min(rates), 4),
                            "mean_decline_rate": round(sum(rates) / len(rates), 4),
                            "runs": int(sum(by_week[w]["runs"] for w in recent)),
                            "declined": int(sum(by_week[w]["declined"] for w in recent))})
    schema = {"kind": pl.String, "name": pl.String, "weeks": pl.Int64, "min_decline_rate": pl.Float64,
              "mean_decline_rate": pl.Float64, "runs": pl.Int64, "declined": pl.Int64}
    return pl.DataFrame(out, schema=schema).sort(["mean_decline_rate", "name"], descending=[True, False])


def build_report_data(store: Store, cfg: Config, window: Window, weeks: int | None = None,
                      worst: int = 10) -> ReportData:
    """Collect every number of the report for ``window`` (trends over the ``weeks`` before it, inclusive)."""
    require_classified(store)
    n_weeks = weeks or cfg.report_weeks
    trend_start = window.start - dt.timedelta(days=7 * (n_weeks - 1))
    trend_start = trend_start - dt.timedelta(days=trend_start.weekday())
    head = summary(store, window.start, window.end)
    prev = summary(store, window.previous.start, window.previous.end)
    weekly = store.query(WEEKLY_SQL, [trend_start, window.end])
    week_labels = []
    d = trend_start
    while d < window.end:
        y, w, _ = d.isocalendar()
        week_labels.append(f"{y}-W{w:02d}")
        d += dt.timedelta(days=7)
    # the trend starts at the first week that has runs (no empty columns before the data begins)
    have = set(weekly["week"].to_list())
    while len(week_labels) > 1 and week_labels[0] not in have:
        week_labels.pop(0)
    tasks = store.query(TASK_SQL, [window.start, window.end])
    task_weeks = store.query(TASK_WEEK_SQL, [trend_start, window.end])
    if cfg.topics:
        topic_weeks, method = _topics_from_config(store, cfg, trend_start, window.end)
    else:
        topic_weeks, method = _topics_from_terms(store, trend_start, window.end)
    import polars as pl

    in_window = []
    d = window.start - dt.timedelta(days=window.start.weekday())
    while d < window.end:
        y, w, _ = d.isocalendar()
        in_window.append(f"{y}-W{w:02d}")
        d += dt.timedelta(days=7)
    if topic_weeks.height:
        topics = (topic_weeks.filter(pl.col("week").is_in(in_window))
                  .group_by("topic").agg(pl.col("runs").sum(), pl.col("declined").sum())
                  .with_columns((pl.col("declined") / pl.col("runs")).round(4).alias("decline_rate"))
                  .sort(["declined", "topic"], descending=[True, False]))
    else:
        topics = pl.DataFrame(schema={"topic": pl.String, "runs": pl.Int64, "declined": pl.Int64,
                                      "decline_rate": pl.Float64})
    try:
        from runaudit.review import status_counts

        review = status_counts(store)
    except Exception:  # noqa: BLE001 - the queue is optional in a report
        review = None
    return ReportData(
        window=window, weeks=week_labels, headline=head, previous=prev, weekly=weekly, tasks=tasks,
        task_weeks=task_weeks,
        false_by_task=store.query(FALSE_BY_TASK_SQL, [window.start, window.end]),
        worst=store.query(WORST_SQL, [window.start, window.end, worst]),
        decline_by_signal=store.query(DECLINE_BY_SIGNAL_SQL, [window.start, window.end]),
        categories=store.query(CATEGORY_SQL, [window.start, window.end]),
        topics=topics, topic_weeks=topic_weeks, topic_method=method,
        hand=_hand(task_weeks, topic_weeks, week_labels, cfg), review=review,
        judge_topics=store.query(JUDGE_TOPICS_SQL, [window.start, window.end]),
        config={"hand_threshold": cfg.hand_threshold, "hand_weeks": cfg.hand_weeks,
                "hand_min_runs": cfg.hand_min_runs, "weeks": n_weeks},
    )
