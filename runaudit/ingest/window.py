"""One window of lines into runs: the SQL that parses, shapes, keys and inserts a window's records, and
the steps that run it (:func:`process_window`). The local store, the inline check and each Spark task call it the
same way; :mod:`runaudit.ingest.files` reads files into windows and keeps each file's state."""

from __future__ import annotations

import contextlib
from typing import Any

from runaudit.config import Config
from runaudit.ingest import otel, streams
from runaudit.ingest.batches import parse_aside, run_in_batches
from runaudit.ingest.normalize import STOP_REASON_CASE, build_record_sql, build_shape_sql, parse_select
from runaudit.ingest.reader import MAX_CONTAINERS, QUARANTINE_CAP
from runaudit.rules.deliverable import delivered_sql
from runaudit.store import Store
from runaudit.store.database import BIG_LINE_BYTES, quote_ident
from runaudit.store.schema import IDEM_KEY_SQL, TEXT_BLANK_SQL, TEXT_CHARS_SQL


def _map_exprs(cfg: Config) -> tuple[dict[str, str], list[str]]:
    """SQL overrides for ``[ingest.map]`` fields, with the JSON paths as bound parameters."""
    exprs: dict[str, str] = {}
    params: list[str] = []
    for fld, path in cfg.field_map.items():
        exprs[fld] = "(CASE WHEN kind = 'object' THEN json_extract_string(line, ?) END)"
        params.append(path)
    return exprs, params


RUN_COLUMNS = ("rid, run_id, record_hash, record_bytes, shape, provider, task_id, ts, ts_source, model, prompt, "
            "response_text, http_status, stop_reason, stop_reason_raw, error_type, error_message, refusal_text, "
            "refusal_category, block_reason, reported_status, reported_source, input_tokens, output_tokens, "
            "latency_ms, tool_calls, tool_payload, batch_result, custom_id, topic, source_file, source_line, "
            "source_offset, ingest_id, notes, raw, idem_key, text_chars, text_blank, session_id, cost_usd, turns")

_TS_PARSE = """CASE
  WHEN {x} IS NULL THEN NULL
  WHEN regexp_full_match(trim({x}), '-?[0-9]+(\\.[0-9]+)?') THEN try(CASE
       WHEN abs(try_cast({x} AS DOUBLE)) >= 1e17 THEN make_timestamp((try_cast({x} AS DOUBLE) / 1000)::BIGINT)
       WHEN abs(try_cast({x} AS DOUBLE)) >= 1e14 THEN make_timestamp(try_cast({x} AS DOUBLE)::BIGINT)
       WHEN abs(try_cast({x} AS DOUBLE)) >= 1e11 THEN make_timestamp((try_cast({x} AS DOUBLE) * 1000)::BIGINT)
       ELSE make_timestamp((try_cast({x} AS DOUBLE) * 1000000)::BIGINT) END)
  ELSE try(make_timestamp(epoch_us(try_cast(trim({x}) AS TIMESTAMPTZ))))
END"""
# A date-time text becomes the UTC instant's microseconds (every connection runs with TimeZone UTC, in which a
# text without an offset is read), not timezone('UTC', ...): a statement calling timezone() is planned again at
# every EXECUTE of its PREPARE (see Store.arrow_over). The two agreed on 200,035 texts (offsets, zone names,
# none, out of range: tests/test_ingest.py holds the edge cases).
# A parsed time outside 1970-2200 (``infinity``, year 9999, 294247) is no log time: kept as unparsed (the run takes
# the file's time, note ``ts_unparsed``), so that no report is asked to draw it.
_TS_PARSE = ("list_transform([" + _TS_PARSE + "], lambda v: CASE WHEN v BETWEEN TIMESTAMP '1970-01-01' "
             "AND TIMESTAMP '2200-01-01' THEN v END)[1]")


def ts_parse_sql(x: str) -> str:
    """How a logged time ``x`` (SQL, VARCHAR) becomes the run's time: epoch seconds, ms, us or ns, or a date-time
    text with or without an offset, read as UTC; NULL when it is none of these or lies outside 1970-2200."""
    return _TS_PARSE.format(x=x)


FINAL_PREFIX = "CREATE OR REPLACE TEMP TABLE _final AS"


def insert_sql(cfg: Config, sse: bool = False, parts: bool = False,
                ts_expr: str | None = None) -> tuple[str, list[Any]]:
    """The window's parse-and-normalise statement; ``ts_expr`` replaces ``ts_parse_sql('ts_raw')`` by an
    expression that holds its value (the one-line statement computes it apart, see :mod:`runaudit.one_line`)."""
    m, mparams = _map_exprs(cfg)

    def ov(fld: str, expr: str) -> str:
        return f"coalesce({m[fld]}, {expr})" if fld in m else expr

    # The order of the parameters follows the order in which ov() emits them in the SELECT below.
    order: list[str] = []

    def ovp(fld: str, expr: str) -> str:
        if fld in m:
            order.append(fld)
        return ov(fld, expr)

    sel = f"""
    SELECT line_no, part, byte_offset, nbytes, line, okeys, bad_utf8, too_long, kind, repaired, dg_h, dg_h2,
      shape AS shape0,
      session_id, cost_usd, turns,
      {ovp('run_id', 'run_id')} AS run_id,
      {ovp('task_id', 'task_id')} AS task_id,
      {ovp('ts', 'ts_raw')} AS ts_raw,
      {ovp('prompt', 'prompt')} AS prompt,
      {ovp('text', 'response_text')} AS response_text,
      {ovp('http_status', 'http_raw')} AS http_raw,
      {ovp('stop_reason', 'stop_reason_raw')} AS stop_reason_raw,
      {ovp('status', 'status_raw')} AS status_raw,
      {ovp('model', 'model')} AS model,
      {ovp('error', 'error_type')} AS error_type,
      {ovp('latency_ms', 'latency_ms::VARCHAR')} AS latency_raw,
      {ovp('input_tokens', 'input_tokens::VARCHAR')} AS in_tok_raw,
      {ovp('output_tokens', 'output_tokens::VARCHAR')} AS out_tok_raw,
      {ovp('topic', 'topic')} AS topic,
      shape_kind, provider, custom_id, tool_calls, tool_payload, fmt_notes, gemini_rid, refusal_text,
      refusal_category, block_reason,
      error_message, error_inner, batch_result, status_field, is_error_body, ev_type,
      {"(" + " OR ".join(f"{m[f]} IS NOT NULL" for f in m) + ")" if m else "false"} AS map_hit
    FROM _records"""
    map_params = [cfg.field_map[f] for f in order]
    # the map_hit expression repeats every mapped path once more
    map_params += list(mparams) if m else []
    sql = f"""
    {FINAL_PREFIX}
    WITH _stage AS ({parse_select(sse, parts)}),
    _shaped AS ({build_shape_sql()}),
    _records AS ({build_record_sql()}),
    m AS ({sel}),
    c AS (
      SELECT *,
        CASE WHEN kind <> 'object' THEN NULL WHEN shape0 IS NOT NULL THEN shape0 WHEN map_hit THEN 'custom' END
            AS shape,
        {ts_expr or ts_parse_sql('ts_raw')} AS ts_parsed,
        try_cast(try_cast(trim(http_raw) AS DOUBLE) AS INTEGER) AS http0,
        regexp_extract(coalesce(error_message, error_type, ''), '^Error code: ([0-9]{{3}})', 1) AS http_from_msg
      FROM m
    )
    SELECT * EXCLUDE (okeys),
      coalesce(http0, try_cast(nullif(http_from_msg, '') AS INTEGER)) AS http_status,
      {STOP_REASON_CASE.format(x='stop_reason_raw')} AS stop_reason,
      coalesce(status_raw, CASE WHEN shape = 'anthropic_batch' THEN batch_result END) AS reported_status,
      CASE WHEN status_raw IS NOT NULL THEN status_field
           WHEN shape = 'anthropic_batch' THEN 'batch_result' ELSE 'http' END AS reported_source,
      list_concat(fmt_notes, list_filter([
        CASE WHEN bad_utf8 THEN 'invalid_utf8_replaced' END,
        -- a key twice ("status": "success", ..., "status": "error"): the first value is read (as DuckDB reads JSON)
        CASE WHEN len(okeys) <> len(list_distinct(okeys)) THEN 'duplicate_keys_first_wins' END,
        CASE WHEN repaired THEN 'invalid_escape_replaced' END,
        CASE WHEN http_raw IS NOT NULL AND http0 IS NULL THEN 'http_status_unparsed' END,
        CASE WHEN ts_raw IS NOT NULL AND ts_parsed IS NULL THEN 'ts_unparsed' END,
        CASE WHEN ts_parsed IS NULL THEN 'ts_from_file_mtime' END,
        CASE WHEN stop_reason_raw IS NOT NULL
             AND ({STOP_REASON_CASE.format(x='stop_reason_raw')}) = 'unknown' THEN 'unknown_stop_reason' END
      ], lambda x: x IS NOT NULL)) AS notes
    FROM c
    """
    return sql, map_params


# A record's identity is its content and its place among identical lines of its file: the SHA-256 of the line
# (128 bits kept, as two UBIGINTs) and ``occ``, the n-th time those bytes occur in the file. Two identical lines
# of one log (two bare error bodies) are two calls; the same region read again (an appended, rewritten, renamed
# or copied file) is a duplicate. ``_occ`` carries the counts from one window of a file to the next.
KEYS_SQL = """
CREATE OR REPLACE TEMP TABLE _keys AS
WITH k AS (
  -- the reader's digest where it has one (ingest.reader._digests, the same value), SHA-256 in SQL otherwise
  SELECT line_no, part, coalesce(dg_h, ('0x' || left(d, 16))::UBIGINT) AS h,
         coalesce(dg_h2, ('0x' || substr(d, 17, 16))::UBIGINT) AS h2, blen
  FROM (SELECT line_no, part, dg_h, dg_h2, CASE WHEN dg_h IS NULL OR dg_h2 IS NULL THEN sha256(line) END AS d,
               strlen(line) AS blen FROM _final WHERE kind <> 'blank')
), dup AS (
  -- identical lines are rare: number them (a window sort) only where a digest repeats in the window
  SELECT h, h2 FROM k GROUP BY h, h2 HAVING count(*) > 1
), kd AS (
  SELECT k.line_no, k.part, row_number() OVER (PARTITION BY k.h, k.h2 ORDER BY k.line_no, k.part) AS r
  FROM k SEMI JOIN dup ON dup.h = k.h AND dup.h2 = k.h2
), seen AS (
  -- the counts of earlier windows, for the digests of this one only (a hash semi join, not an index)
  SELECT o.h, o.h2, max(o.n) AS n FROM _occ o SEMI JOIN k ON k.h = o.h AND k.h2 = o.h2 GROUP BY ALL
)
SELECT k.line_no, k.part, k.h, k.h2, k.blen, coalesce(kd.r, 1) + coalesce(o.n, 0) AS occ
FROM k LEFT JOIN kd ON kd.line_no = k.line_no AND kd.part = k.part LEFT JOIN seen o ON o.h = k.h AND o.h2 = k.h2
"""
# ``_occ`` is appended to, one row per digest and window; the highest ``n`` of a digest is its count so far (counts
# only grow). With a primary key, INSERT OR REPLACE kept an index over every digest of the file: 1M distinct
# lines cost ~1.8 s of index upkeep and a 48 MB index held until the file was done.
OCC_INIT_SQL = "CREATE OR REPLACE TEMP TABLE _occ (h UBIGINT, h2 UBIGINT, n BIGINT)"
# An appended file goes on counting from its earlier part: the runs it made, and the lines of which it stored no
# run (UNSTORED_COUNTS_SQL). From its runs alone, a file whose earlier part was all duplicates of another file
# counted again from 1, and the appended second occurrence of a line was taken for a duplicate of the first.
OCC_APPEND_SQL = """
INSERT INTO _occ SELECT h, h2, max(n) FROM (
  SELECT record_hash AS h, record_hash2 AS h2, record_occ AS n FROM runs
  WHERE source_file = $file AND record_hash2 IS NOT NULL
  UNION ALL
  SELECT h, h2, n FROM line_counts WHERE path = $file
) GROUP BY ALL
"""
# After a window of a file is stored: the counts of its lines that are not runs of this file (a duplicate, a
# quarantined line, a line with no model call), kept in ``line_counts`` for the file's next append.
UNSTORED_COUNTS_SQL = """
INSERT INTO line_counts
SELECT $file, k.h, k.h2, max(k.occ) FROM _keys k ANTI JOIN _fresh f ON f.line_no = k.line_no AND f.part = k.part
GROUP BY ALL
"""
OCC_UPDATE_SQL = "INSERT INTO _occ SELECT h, h2, max(occ) FROM _keys GROUP BY ALL"

# The window's records that are not stored yet, with their new rids. A statement of its own: the INSERT below then
# joins the window's parsed rows to this narrow table, and probes with the parsed rows (see INSERT_PLAN).
# Only runs stored before this pass over the file ($rid0: the highest rid when it began) can hold one of them: the
# runs it added itself are other lines, or other occurrences of the same line (``_occ``), never the same record.
# Without that bound each window read every run of the file so far, a cost growing with the square of the file
# (measured alone: a 40k-record window against 1M stored runs 11.8 ms, against none 2.9 ms).
FRESH_SQL = """
CREATE OR REPLACE TEMP TABLE _fresh AS
SELECT f.line_no, f.part, f.h, f.h2, f.blen, f.occ, $next_rid + row_number() OVER (ORDER BY f.line_no, f.part) AS rid
FROM _keys f SEMI JOIN _final x ON x.line_no = f.line_no AND x.part = f.part AND x.shape NOT IN ('_none', 'otlp')
ANTI JOIN runs r ON r.rid <= $rid0
  AND r.record_hash = f.h AND r.record_hash2 = f.h2 AND r.record_bytes = f.blen AND r.record_occ = f.occ
"""
INSERT_RUNS_SQL = f"""
INSERT INTO runs ({RUN_COLUMNS}, record_hash2, record_occ)
SELECT n.rid, run_id, n.h, n.blen, shape, provider,
       coalesce(task_id, 'unknown'), coalesce(ts_parsed, $mtime::TIMESTAMP),
       CASE WHEN ts_parsed IS NULL THEN 'file_mtime' ELSE 'log' END, model, prompt, response_text, http_status,
       stop_reason, stop_reason_raw, error_type, error_message, refusal_text, refusal_category, block_reason,
       reported_status, reported_source,
       try_cast(try_cast(in_tok_raw AS DOUBLE) AS BIGINT), try_cast(try_cast(out_tok_raw AS DOUBLE) AS BIGINT),
       try_cast(latency_raw AS DOUBLE), tool_calls, tool_payload, batch_result, custom_id, topic,
       $file, x.line_no, byte_offset, $ingest_id, notes, line,
       {IDEM_KEY_SQL.format(task="coalesce(task_id, 'unknown')", prompt="prompt",
                            run="coalesce(run_id, n.h::VARCHAR)")},
       {TEXT_CHARS_SQL.format(text="response_text")},
       -- a span logged without its content (OTel content capture off) is not an empty answer: unknown
       CASE WHEN NOT list_contains(notes, 'content_not_captured')
            THEN {TEXT_BLANK_SQL.format(text=delivered_sql("response_text"))} END,
       session_id, try_cast(cost_usd AS DOUBLE), try_cast(turns AS INTEGER),
       n.h2, n.occ
FROM _final x JOIN _fresh n ON n.line_no = x.line_no AND n.part = x.part
"""
# How INSERT_RUNS_SQL is planned. A window parsed ahead is a view over Arrow rows, of which DuckDB knows no row
# count (it estimates 1), so it built the join's hash table on those rows: every parsed column, raw line, prompt
# and reply copied into it (200k realistic runs: ~0.4 s of ~2.2 s of inserts). With the build side left as
# written (the right side, ``_fresh``), the parsed rows stream through as the probe side.
INSERT_PLAN = ("disabled_optimizers", "build_side_probe_side")

# A quarantined line has the same identity as a run (digest + occurrence in its file): read again (a rewritten,
# renamed or recompressed file), it is a duplicate, not a second quarantine row.
QUARANTINE_WHERE = "kind IN ('invalid', 'not_object', 'too_long') OR (kind = 'object' AND shape IS NULL)"
QUARANTINE_SQL = """
INSERT INTO quarantine
SELECT $file, q.line_no, byte_offset, reason, detail, left(line, $cap), nbytes, $ingest_id, k.h, k.h2, k.occ FROM (
  SELECT line_no, byte_offset, nbytes, line,
    CASE WHEN too_long AND nbytes <= $max_line THEN 'too_complex'
         WHEN too_long THEN 'line_too_long'
         WHEN kind = 'invalid' THEN 'not_json'
         WHEN kind = 'not_object' THEN 'not_an_object'
         ELSE 'unrecognised' END AS reason,
    CASE WHEN too_long AND nbytes <= $max_line THEN 'more than ' || $max_containers || ' JSON arrays and objects in '
              || 'one line: too complex to parse within the memory limit; first bytes kept'
         WHEN too_long THEN 'line longer than the limit of ' || $max_line || ' bytes; first bytes kept'
         WHEN kind = 'invalid' AND line_no = $last_line AND $unterminated
              THEN 'invalid JSON; the last line has no newline: likely truncated'
         WHEN kind = 'invalid' THEN 'invalid JSON' || CASE WHEN bad_utf8 THEN ' (and invalid UTF-8)' ELSE '' END
         WHEN kind = 'not_object' THEN 'valid JSON but a ' || lower(json_type(line)) || ', not an object'
         WHEN ev_type IS NOT NULL THEN 'a stream event (' || ev_type || ') with no message_start or '
              || 'response.created before it in this file: the start of its stream is missing'
         ELSE 'JSON object with no recognisable fields (keys: ' ||
              coalesce(array_to_string(json_keys(line)[1:12], ', '), '') || ')' END AS detail
  FROM _final WHERE __QUARANTINE_WHERE__
) q JOIN _keys k ON k.line_no = q.line_no AND k.part = 0
ANTI JOIN quarantine x ON x.line_hash = k.h AND x.line_hash2 = k.h2 AND x.line_occ = k.occ
""".replace("__QUARANTINE_WHERE__", QUARANTINE_WHERE)


def compile_insert_sql(cfg: Config) -> tuple[tuple[str, str, str], list[Any]]:
    """The parse-and-normalise statement of a window under ``cfg`` (plain lines, raw SSE text, OTel span parts)
    and its ``[ingest.map]`` parameters: what :func:`process_window` runs."""
    plain_sql, map_params = insert_sql(cfg)
    return (plain_sql, insert_sql(cfg, sse=True)[0], insert_sql(cfg, parts=True)[0]), map_params


def _blank_before(win: Any, defer: tuple[int, int, bool] | None, first_line: int) -> int:
    """Empty lines the reader left out of the window, counting only those before a deferred stream's start
    (the lines from there are read again with the next window)."""
    if defer is None or not win.blank_skipped:
        return int(win.blank_skipped)
    import pyarrow.compute as pc

    kept = int(pc.sum(pc.less(win.table["line_no"], defer[1])).as_py() or 0)
    return (defer[1] - first_line) - kept


def has_big_line(table: Any) -> bool:
    """Whether a window's lines include one over ``BIG_LINE_BYTES``: such a window is parsed by
    :func:`process_window` alone, with the headroom, not ahead of time."""
    import pyarrow.compute as pc

    return int(pc.max(table["orig_len"]).as_py() or 0) > BIG_LINE_BYTES


def _rows_sql(sql: str) -> str:
    """The query of the parse statement ``sql`` (one of ``final_sql``): its rows, without making ``_final``."""
    sql = sql.strip()
    if not sql.startswith(FINAL_PREFIX):  # pragma: no cover - guarded by insert_sql
        raise AssertionError("the parse statement does not create _final")
    return sql[len(FINAL_PREFIX):]


def parse_rows(store: Store, table: Any, sql: str, map_params: list[Any]) -> Any:
    """Run the parse statement ``sql`` (one of ``final_sql``) over the lines ``table`` and return ``_final``'s rows
    as Arrow, with their DuckDB types, instead of making the table."""
    with store.registered("_chunk", table):
        return store.arrow_typed(_rows_sql(sql), map_params)


def parse_window(side: Store, win: Any, final_sql: tuple[str, str, str], map_params: list[Any]) -> Any:
    """The window's parse (:func:`parse_planned`) run on ``side``: a second connection (:meth:`Store.side`), in the
    reader's thread while the store's own connection inserts the window before (ReadAhead's ``prepare``), or the
    store itself for a file of one window. The same statement as :func:`process_window` runs, so the same rows.
    None for an empty window or one with a big line (:func:`has_big_line`)."""
    if not win.table.num_rows or has_big_line(win.table):
        return None
    return parse_planned(side, win.table, final_sql[1] if win.sse else final_sql[0], map_params)


def parse_planned(store: Store, table: Any, sql: str, map_params: list[Any]) -> Any:
    """:func:`parse_rows`, through a plan ``store`` keeps for the statement (:meth:`Store.arrow_over`): planned
    once, then only run for each table of lines."""
    if map_params:
        # DuckDB plans a statement with parameters again at every run: the [ingest.map] paths are written into
        # it as literals, as the one-line statement writes them
        from runaudit.one_line import inline_params

        sql = inline_params(sql, {}, map_params)
    return store.arrow_over(table, _rows_sql(sql))


def process_window(store: Store, win: Any, ctx: dict[str, Any], final_sql: tuple[str, str, str],
                   map_params: list[Any], hold_open: bool = False) -> dict[str, Any]:
    """Parse, quarantine and insert one window; ``final_sql`` is (plain, raw-SSE, span) variants of the parse.
    A window holding a long line runs with the parse headroom (:meth:`Store.parse_headroom`)."""
    import pyarrow.compute as pc

    longest = int(pc.max(win.table["orig_len"]).as_py() or 0) if win.table.num_rows else 0
    with store.parse_headroom(longest):
        return _process_window(store, win, ctx, final_sql, map_params, hold_open)


def _process_window(store: Store, win: Any, ctx: dict[str, Any], final_sql: tuple[str, str, str],
                    map_params: list[Any], hold_open: bool) -> dict[str, Any]:
    if getattr(win, "prepared", None) is None:
        # Several record batches let DuckDB scan the window on every core.
        with store.registered("_chunk", win.table):
            store.run(final_sql[1] if win.sse else final_sql[0], map_params)
        return _after_parse(store, win, ctx, final_sql, map_params, hold_open)
    # parsed in the reader's thread (parse_window): the rows as the statement made them, read where they are
    rows, types = win.prepared
    win.prepared = None
    cols = ", ".join(f"CAST({quote_ident(c)} AS {t}) AS {quote_ident(c)}"
                     for c, t in zip(rows.column_names, types, strict=True))
    with store.slot("_parsed", rows):
        if store.scalar(f"SELECT count(*) FROM _parsed WHERE {REWRITES_FINAL}"):
            # stream events and OTLP spans are replaced in _final by what they assemble to: a table
            store.run(f"{FINAL_PREFIX} SELECT {cols} FROM _parsed")
            view = False
        else:
            store.run("DROP TABLE IF EXISTS _final")
            store.run(f"CREATE TEMP VIEW _final AS SELECT {cols} FROM _parsed")
            view = True
        try:
            # a view holds no stream event and no OTLP line (counted above): nothing to assemble or unfold
            return _after_parse(store, win, ctx, final_sql, map_params, hold_open, plain=view)
        finally:
            if view:
                # after a failed statement the transaction is aborted, and rolling it back drops the view
                with contextlib.suppress(Exception):
                    store.run("DROP VIEW _final")


# A window's lines by what they hold (blank, no model call, records), the records the quarantine may take (a
# quarantined line is not a duplicate) and the rows QUARANTINE_SQL reads.
WINDOW_COUNTS_SQL = """
SELECT count(DISTINCT line_no) FILTER (WHERE kind = 'blank'),
       count(DISTINCT line_no) FILTER (WHERE kind IS DISTINCT FROM 'blank' AND shape = '_none'),
       count(DISTINCT line_no) FILTER (WHERE kind IS DISTINCT FROM 'blank' AND shape <> '_none'),
       count(*) FILTER (WHERE kind <> 'blank' AND shape IS NULL),
       count(*) FILTER (WHERE __QUARANTINE_WHERE__)
FROM _final
""".replace("__QUARANTINE_WHERE__", QUARANTINE_WHERE)

# Rows of a window after which ``_final`` is rewritten (stream events assembled, OTLP spans unfolded), so must be a
# table; other windows read their parsed rows where they are.
REWRITES_FINAL = f"{streams.STREAM_EVENT} OR shape = 'otlp'"


def _after_parse(store: Store, win: Any, ctx: dict[str, Any], final_sql: tuple[str, str, str],
                 map_params: list[Any], hold_open: bool, plain: bool = False) -> dict[str, Any]:
    """Assemble, quarantine and insert the parsed window in ``_final``; ``plain``: it is known to hold no stream
    event and no OTLP line."""
    first_line = ctx["line0"] + 1
    parts, defer, held_off = 0, None, None
    if not plain and streams.has_stream_events(store):
        parts, defer, held_off = streams.assemble(store, final_sql[0], map_params, first_line=first_line,
                                                  last_line=first_line + win.lines - 1, last_window=win.eof,
                                                  can_grow=win.can_grow, hold_open=hold_open, bufs=ctx)
    params = {"file": ctx["file"], "ingest_id": ctx["ingest_id"], "cap": QUARANTINE_CAP,
              "max_containers": MAX_CONTAINERS,
              "max_line": ctx["max_line"], "last_line": ctx["line0"] + win.lines,
              "unterminated": win.unterminated_last}
    spans_other = spans = 0
    if not plain and store.scalar("SELECT count(*) FROM _final WHERE shape = 'otlp'"):
        spans, spans_other = _unfold_spans(store, final_sql[2], map_params, ctx)
    store.run(KEYS_SQL)
    # lines, not records (the spans of one OTLP line are records of one line); quarantinable: records;
    # candidates: the rows QUARANTINE_SQL reads (most windows have none, and its joins then cost for nothing)
    blank, not_calls, records, quarantinable, candidates = (int(v) for v in store.rows(WINDOW_COUNTS_SQL)[0])
    quarantined = int(store.rows(QUARANTINE_SQL, params)[0][0]) if candidates else 0
    before = ctx["next_rid"]
    ctx.setdefault("rid0", before)  # the first window of the pass: the runs stored before it (FRESH_SQL)
    store.run(FRESH_SQL, {"next_rid": before, "rid0": ctx["rid0"]})
    if "plan0" not in ctx:  # the setting as the pass found it, restored after each insert
        ctx["plan0"] = str(store.scalar(f"SELECT current_setting('{INSERT_PLAN[0]}')"))
    with store.setting(*INSERT_PLAN, ctx["plan0"]):
        inserted = int(store.rows(INSERT_RUNS_SQL, {"mtime": ctx["mtime_ts"], "file": ctx["file"],
                                                    "ingest_id": ctx["ingest_id"]})[0][0])
    ctx["next_rid"] = before + inserted
    store.run(OCC_UPDATE_SQL)
    parts_new = int(store.scalar(streams.PARTS_INGESTED_SQL, {"file": ctx["file"], "ingest_id": ctx["ingest_id"]})
                    ) if parts else 0
    lines_new = inserted
    if spans and inserted:
        lines_new = int(store.scalar("SELECT count(DISTINCT source_line) FROM runs WHERE rid > $before",
                                     {"before": before}))
    lines = win.lines if defer is None else defer[1] - first_line
    return {"lines": lines, "end_offset": win.end_offset if defer is None else defer[0],
            "defer": None if held_off is not None else defer, "held": win.lines - lines if held_off is not None else 0,
            "ingested": lines_new + parts_new, "runs_added": inserted,
            "duplicates": records - lines_new + parts - parts_new + quarantinable - quarantined,
            "blank": blank + _blank_before(win, defer, first_line), "quarantined": quarantined,
            "not_calls": not_calls, "spans_other": spans_other}


def _unfold_spans(store: Store, span_sql: str, map_params: list[Any], ctx: dict[str, Any]) -> tuple[int, int]:
    """Replace each OTLP line of ``_final`` by one record per GenAI inference span (``part`` 1, 2, ...); a line
    without one holds no model call. Returns (inference spans, other spans)."""
    store.run(otel.BATCHES_SQL, {"budget": otel.BATCH_BYTES})
    # one thread: each holds a chunk of 2048 spans with their content, parsed (a line of 5,000 spans, 15 MB: peak
    # RSS 2.36 GB on 2 threads, 1.72 GB on one, and faster)
    with store.setting("threads", "1", str(store.scalar("SELECT current_setting('threads')"))):
        run_in_batches(store, "_obatch", "_otel", otel.SPANS_SELECT)
    calls, other = store.rows("SELECT count(*) FILTER (WHERE is_call), count(*) FILTER (WHERE NOT is_call) "
                              "FROM _otel")[0]
    store.run("UPDATE _final SET shape = '_none' WHERE shape = 'otlp' "
              "AND line_no NOT IN (SELECT line_no FROM _otel WHERE is_call)")
    if calls:
        # the span records, in small record batches (see otel.CALLS_SQL)
        parse_aside(store, otel.CALLS_SQL, "_final_spans", span_sql, map_params, ctx, "span_buf",
                    otel.SPAN_BATCH_BYTES)
        store.run("DELETE FROM _final WHERE shape = 'otlp'")
        store.run("INSERT INTO _final BY NAME SELECT * FROM _final_spans")
        store.run("DROP TABLE _final_spans")
    store.run("DROP TABLE _otel")
    store.run("DROP TABLE _obatch")
    return int(calls), int(other)
