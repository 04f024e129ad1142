"""DDL for the runaudit DuckDB file, as ordered, recorded migrations.

Each migration is a function registered with ``@migration``; ``migrate()`` applies the ones not yet recorded in
``_runaudit_migrations``. ``SCHEMA_VERSION`` is the number of migrations; a file written by a newer runaudit
(more migrations than this code knows) is refused rather than misread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MIGRATIONS: list[tuple[str, Callable[[Any], None]]] = []


def migration(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    """Register a migration; the order of definition is the order of application."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_initial(con: Any) -> None:
    """Files, runs, quarantine, classifications, rulesets, reviews, judge verdicts."""
    con.execute(
        """
        CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
        CREATE TABLE ingests (
            ingest_id INTEGER PRIMARY KEY, started_at TIMESTAMP, finished_at TIMESTAMP,
            files INTEGER, lines BIGINT, ingested BIGINT, duplicates BIGINT, blank BIGINT, quarantined BIGINT
        );
        CREATE TABLE files (
            path VARCHAR PRIMARY KEY, size BIGINT, mtime DOUBLE, compressed BOOLEAN,
            head_hash VARCHAR, tail_hash VARCHAR, bytes_done BIGINT, lines_done BIGINT,
            ingested BIGINT, duplicates BIGINT, blank BIGINT, quarantined BIGINT, last_ingest INTEGER
        );
        CREATE TABLE runs (
            rid BIGINT NOT NULL,
            run_id VARCHAR,
            record_hash UBIGINT NOT NULL,
            record_bytes INTEGER NOT NULL,
            shape VARCHAR, provider VARCHAR,
            task_id VARCHAR, ts TIMESTAMP, ts_source VARCHAR, model VARCHAR,
            prompt VARCHAR USING COMPRESSION zstd,
            response_text VARCHAR USING COMPRESSION zstd,
            http_status INTEGER, stop_reason VARCHAR, stop_reason_raw VARCHAR,
            error_type VARCHAR, error_message VARCHAR,
            refusal_text VARCHAR, refusal_category VARCHAR, block_reason VARCHAR,
            reported_status VARCHAR, reported_source VARCHAR,
            input_tokens BIGINT, output_tokens BIGINT, latency_ms DOUBLE, tool_calls INTEGER,
            batch_result VARCHAR, custom_id VARCHAR, topic VARCHAR,
            source_file VARCHAR, source_line BIGINT, source_offset BIGINT, ingest_id INTEGER,
            notes VARCHAR[],
            raw VARCHAR USING COMPRESSION zstd
        );
        CREATE TABLE quarantine (
            source_file VARCHAR, source_line BIGINT, source_offset BIGINT, reason VARCHAR, detail VARCHAR,
            raw VARCHAR, raw_bytes BIGINT, ingest_id INTEGER
        );
        CREATE TABLE rulesets (
            ruleset VARCHAR PRIMARY KEY, created_at TIMESTAMP, config JSON, runs BIGINT, seq INTEGER
        );
        CREATE TABLE classifications (
            rid BIGINT NOT NULL, ruleset VARCHAR NOT NULL,
            outcome VARCHAR, sub_reason VARCHAR, signal VARCHAR, rule_code VARCHAR, retryable BOOLEAN,
            refusal_score DOUBLE, done_failures VARCHAR[], reported_success BOOLEAN, idem_key VARCHAR
        );
        CREATE TABLE reviews (
            idem_key VARCHAR PRIMARY KEY, verdict VARCHAR NOT NULL, note VARCHAR, reviewer VARCHAR,
            decided_at TIMESTAMP
        );
        CREATE TABLE judge_verdicts (
            content_hash VARCHAR, prompt_version VARCHAR, model VARCHAR, verdict VARCHAR, topic VARCHAR,
            confidence DOUBLE, rationale VARCHAR, raw_response VARCHAR, judged_at TIMESTAMP,
            PRIMARY KEY (content_hash, prompt_version, model)
        );
        CREATE TABLE judge_runs (rid BIGINT PRIMARY KEY, content_hash VARCHAR NOT NULL);
        """
    )


_AUDIT_VIEW_V1 = """
CREATE OR REPLACE VIEW audit_runs AS
SELECT r.rid, r.run_id, r.task_id, r.ts, r.shape, r.provider, r.model, r.prompt, r.response_text,
       r.http_status, r.stop_reason, r.stop_reason_raw, r.error_type, r.error_message, r.refusal_text,
       r.refusal_category, r.block_reason, r.reported_status, r.reported_source, r.input_tokens, r.output_tokens,
       r.latency_ms, r.topic, r.source_file, r.source_line, r.notes,
       c.outcome AS rule_outcome, c.sub_reason, c.signal, c.rule_code, c.retryable, c.refusal_score,
       c.done_failures, c.reported_success, c.idem_key, v.verdict AS review_verdict,
       CASE WHEN v.verdict = 'false-positive' THEN 'ok' ELSE c.outcome END AS outcome,
       coalesce(v.verdict = 'false-positive', false) AS overridden,
       c.reported_success AND (CASE WHEN v.verdict = 'false-positive' THEN 'ok' ELSE c.outcome END) <> 'ok'
           AS false_success,
       c.ruleset
FROM runs r
JOIN classifications c ON c.rid = r.rid AND c.ruleset = (SELECT value FROM meta WHERE key = 'current_ruleset')
LEFT JOIN reviews v ON v.idem_key = c.idem_key
"""


@migration
def m002_audit_view(con: Any) -> None:
    """The audit_runs view: runs + current classification + review verdicts (a verdict wins)."""
    con.execute(_AUDIT_VIEW_V1)


# Per-run facts derived from the stored text at ingest, so that reclassification after a rule change need not
# read (and decompress) the prompt and response columns: the review key, the reply's length, whether it is blank.
# The key is the first 16 hex of sha256(f"{task_id}\n{prompt}"). A run with no prompt logged (a bare provider
# response, a batch result line) cannot be recognised as a repeat of anything: it gets a key of its own, from
# the run's id (or its record hash), so one verdict never silently covers other prompt-less runs of the task.
IDEM_KEY_SQL = ("CASE WHEN nullif({prompt}, '') IS NULL "
                "THEN left(sha256(coalesce({task}, '') || chr(10) || chr(10) || 'run:' || {run}), 16) "
                "ELSE left(sha256(coalesce({task}, '') || chr(10) || {prompt}), 16) END")
_M003_IDEM_KEY_SQL = "left(sha256(coalesce({task}, '') || chr(10) || coalesce({prompt}, '')), 16)"
TEXT_CHARS_SQL = "length({text})"
TEXT_BLANK_SQL = "({text} IS NULL OR (strlen({text}) < 256 AND trim({text}) = ''))"


@migration
def m003_run_facts(con: Any) -> None:
    """runs.idem_key, runs.text_chars, runs.text_blank: derived at ingest (backfilled here)."""
    con.execute("ALTER TABLE runs ADD COLUMN idem_key VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN text_chars BIGINT")
    con.execute("ALTER TABLE runs ADD COLUMN text_blank BOOLEAN")
    con.execute(f"UPDATE runs SET idem_key = {_M003_IDEM_KEY_SQL.format(task='task_id', prompt='prompt')}, "
                f"text_chars = {TEXT_CHARS_SQL.format(text='response_text')}, "
                f"text_blank = {TEXT_BLANK_SQL.format(text='response_text')}")



@migration
def m004_own_key_without_prompt(con: Any) -> None:
    """Runs with no prompt get a review key of their own (they used to share sha256(task + "\n")).

    A verdict given to the old shared key is copied to the new key of every run that had it, so what a person
    decided still holds for those runs; later prompt-less runs are no longer covered by it.
    """
    new_key = IDEM_KEY_SQL.format(task="task_id", prompt="prompt", run="coalesce(run_id, record_hash::VARCHAR)")
    con.execute(f"CREATE TEMP TABLE _m004 AS SELECT rid, idem_key AS old_key, {new_key} AS new_key FROM runs "
                "WHERE nullif(prompt, '') IS NULL")
    con.execute("INSERT OR IGNORE INTO reviews SELECT DISTINCT ON (m.new_key) m.new_key, v.* EXCLUDE (idem_key) "
                "FROM _m004 m JOIN reviews v ON v.idem_key = m.old_key")
    con.execute("DELETE FROM reviews WHERE idem_key IN (SELECT old_key FROM _m004) "
                "AND idem_key NOT IN (SELECT new_key FROM _m004)")
    con.execute("UPDATE runs SET idem_key = m.new_key FROM _m004 m WHERE runs.rid = m.rid")
    con.execute("UPDATE classifications SET idem_key = m.new_key FROM _m004 m "
                "WHERE classifications.rid = m.rid AND classifications.idem_key IS NOT NULL")
    con.execute("DROP TABLE _m004")


AUDIT_VIEW_SQL = (_AUDIT_VIEW_V1
                  .replace("r.latency_ms, r.topic,", "r.latency_ms, r.tool_calls, r.tool_payload, r.topic,")
                  .replace("c.refusal_score,", "c.refusal_score, c.refusal_kind,"))

# The first and second 64 bits of the SHA-256 of a stored line (see ingest.KEYS_SQL).
DIGEST_HI_SQL = "('0x' || left(sha256({x}), 16))::UBIGINT"
DIGEST_LO_SQL = "('0x' || substr(sha256({x}), 17, 16))::UBIGINT"


@migration
def m005_identity_and_tool_payload(con: Any) -> None:
    """Runs get a collision-proof identity and the tool payload.

    ``record_hash`` was DuckDB's 64-bit ``hash()``, which merged different lines; it becomes the first 64 bits of
    the line's SHA-256, with the next 64 in ``record_hash2``, and ``record_occ`` numbers identical lines within a
    file (so two identical lines are two calls). ``classifications.refusal_kind`` marks a capability decline.
    ``tool_payload`` holds what the model sent to its tools (runs
    ingested before it are NULL there: re-ingest a file to fill it). Review keys already stored do not change.
    """
    con.execute("ALTER TABLE runs ADD COLUMN tool_payload VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN record_hash2 UBIGINT")
    con.execute("ALTER TABLE runs ADD COLUMN record_occ INTEGER")
    con.execute("ALTER TABLE classifications ADD COLUMN refusal_kind VARCHAR")
    con.execute(f"UPDATE runs SET record_hash = {DIGEST_HI_SQL.format(x='raw')}, "
                f"record_hash2 = {DIGEST_LO_SQL.format(x='raw')} WHERE raw IS NOT NULL")
    con.execute("UPDATE runs SET record_occ = o.occ FROM (SELECT rid, row_number() OVER (PARTITION BY source_file, "
                "record_hash, record_hash2 ORDER BY source_line) AS occ FROM runs) o WHERE runs.rid = o.rid")
    con.execute(AUDIT_VIEW_SQL)


@migration
def m006_change_detection(con: Any) -> None:
    """Exact change detection and deduplicated quarantine.

    ``files.prefix_sha256`` digests every byte read so far (the old head/tail fingerprints missed a same-size
    edit in the middle of a file), ``files.ctime_ns`` skips the digest when nothing was written, and
    ``files.tail_open`` remembers a last line read before its newline. Quarantined lines get the runs' identity
    (digest + occurrence in the file), backfilled from the kept bytes, so reading a file again adds none twice.
    """
    con.execute("ALTER TABLE files ADD COLUMN ctime_ns BIGINT")
    con.execute("ALTER TABLE files ADD COLUMN prefix_sha256 VARCHAR")
    con.execute("ALTER TABLE files ADD COLUMN tail_open BOOLEAN")
    con.execute("ALTER TABLE quarantine ADD COLUMN line_hash UBIGINT")
    con.execute("ALTER TABLE quarantine ADD COLUMN line_hash2 UBIGINT")
    con.execute("ALTER TABLE quarantine ADD COLUMN line_occ INTEGER")
    con.execute(f"UPDATE quarantine SET line_hash = {DIGEST_HI_SQL.format(x='raw')}, "
                f"line_hash2 = {DIGEST_LO_SQL.format(x='raw')} WHERE raw IS NOT NULL")
    con.execute("UPDATE quarantine SET line_occ = o.occ FROM (SELECT rowid AS r, row_number() OVER (PARTITION BY "
                "source_file, line_hash, line_hash2 ORDER BY source_line) AS occ FROM quarantine) o "
                "WHERE quarantine.rowid = o.r")


AUDIT_VIEW_SQL_V7 = AUDIT_VIEW_SQL.replace("r.source_file, r.source_line, r.notes,",
                                           "r.source_file, r.source_line, r.notes, r.session_id, r.cost_usd, r.turns,")


@migration
def m007_sessions(con: Any) -> None:
    """Agent and gateway logs: the session a run belongs to (Claude Code session, OTel trace or conversation,
    LiteLLM trace, llm conversation), its reported cost and its number of agent turns; ``files.cursor`` keeps
    how far a database read as a log (simonw/llm ``logs.db``) has been read."""
    con.execute("ALTER TABLE runs ADD COLUMN session_id VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN cost_usd DOUBLE")
    con.execute("ALTER TABLE runs ADD COLUMN turns INTEGER")
    con.execute("ALTER TABLE files ADD COLUMN cursor VARCHAR")
    con.execute(AUDIT_VIEW_SQL_V7)


@migration
def m008_line_counts(con: Any) -> None:
    """``line_counts``: how many times a line occurred in a file (its digest, as ``runs.record_hash`` and
    ``record_hash2``) where the file stored no run of it: duplicates of runs of other files, quarantined lines,
    lines that hold no model call. With the file's own runs they let an appended file go on counting identical
    lines where it stopped (``ingest.window.OCC_APPEND_SQL``). Empty for files ingested before it."""
    con.execute("CREATE TABLE line_counts (path VARCHAR NOT NULL, h UBIGINT NOT NULL, h2 UBIGINT NOT NULL, "
                "n BIGINT NOT NULL)")


SCHEMA_VERSION = len(MIGRATIONS)
