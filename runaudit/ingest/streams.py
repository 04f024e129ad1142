"""Assemble logged Anthropic streams (one event payload per line) into one run per stream.

A logged stream is ``message_start``, ``content_block_*``, ``message_delta``, ``message_stop`` (and ``ping``)
lines, as loggers write the ``data`` payloads of the SSE stream. The events of one stream carry no shared id, so
a stream is the run of event lines from one ``message_start`` to the next: streams written one after another
are told apart; streams interleaved in one file (concurrent calls logging to the same file) are not.

Each stream becomes one Anthropic ``Message`` (shape ``anthropic_stream``) built the way the SDK accumulates a
stream: the text deltas concatenated in order, the last ``message_delta``'s ``stop_reason``, ``stop_details``
and cumulative ``output_tokens``, ``input_tokens`` from ``message_start``, and the non-text blocks (tool calls)
from ``content_block_start``. An ``error`` event inside a stream makes the run that error (the status was 200,
the call still failed). A stream with no ``message_delta`` keeps ``stop_reason`` null: the stream was cut off,
an infrastructure error (IN07), never a degraded answer. The assembled message is stored as the run's ``raw``
with ``_stream`` (event count, first and last line); the run's source line is the ``message_start`` line.

Counting: every event line of a stream is ``ingested`` when its stream became a new run, else ``duplicates``.
An event line before any ``message_start`` (a file that starts mid-stream) is quarantined with a reason.
"""

from __future__ import annotations

from typing import Any

from runaudit.store import Store

# Event lines grouped into streams (``sid``); an error event after its stream's message_stop stands alone.
EVENTS_SQL = """
CREATE OR REPLACE TEMP TABLE _ev AS
WITH e AS (
  SELECT line_no, byte_offset, nbytes, ev_type, line,
         sum(CASE WHEN ev_type = 'message_start' THEN 1 ELSE 0 END) OVER (ORDER BY line_no) AS sid
  FROM _final WHERE ev_type IS NOT NULL AND (shape IS NULL OR ev_type = 'error')
), s AS (
  SELECT sid, min(line_no) FILTER (WHERE ev_type = 'message_stop') AS stop_line FROM e GROUP BY sid
)
SELECT e.* FROM e JOIN s USING (sid)
WHERE e.sid > 0 AND NOT (e.ev_type = 'error' AND s.stop_line IS NOT NULL AND e.line_no > s.stop_line)
"""

# The last stream of the window, and whether it has ended (message_stop or an error event).
LAST_STREAM_SQL = """
SELECT min(line_no), min(byte_offset), bool_or(ev_type IN ('message_stop', 'error'))
FROM _ev WHERE sid = (SELECT max(sid) FROM _ev)
"""

# One assembled Message (or error body) per stream, as a line for the normal parse.
ASSEMBLE_SQL = """
CREATE OR REPLACE TEMP TABLE _streams AS
WITH x AS (
  SELECT sid, line_no, byte_offset, nbytes, ev_type, line,
         CASE WHEN ev_type = 'content_block_delta' THEN json_extract_string(line, '$.delta.type') END AS dtype,
         CASE WHEN ev_type = 'content_block_start' THEN json_extract_string(line, '$.content_block.type') END
             AS btype
  FROM _ev
), g AS (
  SELECT sid, min(line_no) AS line_no, min(byte_offset) AS byte_offset, sum(nbytes) AS nbytes,
    count(*) AS events, max(line_no) AS last_line,
    any_value(json_extract(line, '$.message')) FILTER (WHERE ev_type = 'message_start') AS msg,
    string_agg(json_extract_string(line, '$.delta.text'), '' ORDER BY line_no) FILTER (WHERE dtype = 'text_delta')
        AS text,
    arg_max(json_extract(line, '$.delta'), line_no) FILTER (WHERE ev_type = 'message_delta') AS delta,
    arg_max(json_extract(line, '$.usage.output_tokens'), line_no) FILTER (WHERE ev_type = 'message_delta')
        AS out_tok,
    list(json_extract(line, '$.content_block') ORDER BY line_no)
        FILTER (WHERE btype IS NOT NULL AND btype <> 'text') AS blocks,
    arg_min(json_extract(line, '$.error'), line_no) FILTER (WHERE ev_type = 'error') AS err
  FROM x GROUP BY sid
)
SELECT sid, line_no, byte_offset, nbytes, events,
  (CASE WHEN err IS NOT NULL THEN
     json_object('type', 'error', 'error', err, 'id', msg->>'$.id', 'model', msg->>'$.model',
                 '_stream', json_object('events', events, 'first_line', line_no, 'last_line', last_line))
   ELSE
     json_object('type', 'message', 'role', 'assistant', 'id', msg->>'$.id', 'model', msg->>'$.model',
                 'content', to_json(list_concat(coalesce(blocks, []),
                                                [json_object('type', 'text', 'text', coalesce(text, ''))])),
                 'stop_reason', delta->>'$.stop_reason', 'stop_sequence', delta->>'$.stop_sequence',
                 'stop_details', delta->'$.stop_details',
                 'usage', json_object('input_tokens', msg->'$.usage.input_tokens', 'output_tokens',
                                      coalesce(out_tok, msg->'$.usage.output_tokens')),
                 '_stream', json_object('events', events, 'first_line', line_no, 'last_line', last_line))
   END)::VARCHAR AS line
FROM g
"""

CHUNK_SQL = """
CREATE OR REPLACE TEMP TABLE _chunk AS
SELECT line_no, byte_offset, line, false AS bad_utf8, false AS too_long, nbytes AS orig_len, false AS padded
FROM _streams
"""

MERGE_SQL = """
DELETE FROM _final WHERE line_no IN (SELECT line_no FROM _ev);
INSERT INTO _final BY NAME
SELECT * REPLACE (CASE WHEN shape = 'anthropic' THEN 'anthropic_stream' ELSE shape END AS shape,
                  list_append(notes, 'assembled_from_stream') AS notes)
FROM _final_streams;
DROP TABLE _final_streams;
DROP TABLE _chunk;
"""

# Event lines (beyond the one that stands for the stream) whose stream became a new run in this window.
PARTS_INGESTED_SQL = """
SELECT coalesce(sum(s.events - 1), 0) FROM _streams s
JOIN runs r ON r.source_file = $file AND r.ingest_id = $ingest_id AND r.source_line = s.line_no
"""


def has_stream_events(store: Store) -> bool:
    """Whether the window parsed in ``_final`` holds stream event lines (other than bare error bodies)."""
    return bool(store.scalar("SELECT count(*) FROM _final WHERE ev_type IS NOT NULL AND ev_type <> 'error' "
                             "AND shape IS NULL"))


def assemble(store: Store, final_sql: str, map_params: list[Any], *, first_line: int, last_window: bool,
             can_grow: bool) -> tuple[int, tuple[int, int, bool] | None]:
    """Replace the stream event lines of ``_final`` by one assembled run per stream.

    Returns the number of event lines folded into streams beyond one per stream, and, when the window's last
    stream goes on past the window, ``(byte_offset, line_no, grow)`` of its ``message_start``: the caller drops
    the lines from there and reads them again with the next window — a bigger one (``grow``) when the stream
    began on this window's first line. A stream that outgrows the largest window is assembled in parts (the
    later parts are quarantined as events without a start).
    """
    store.run(EVENTS_SQL)
    if not store.scalar("SELECT count(*) FROM _ev"):
        return 0, None
    defer: tuple[int, int, bool] | None = None
    if not last_window:
        start_line, start_off, ended = store.rows(LAST_STREAM_SQL)[0]
        if not ended and (start_line > first_line or can_grow):
            defer = (int(start_off), int(start_line), start_line == first_line)
            store.run("DELETE FROM _final WHERE line_no >= ?", [start_line])
            store.run("DELETE FROM _ev WHERE line_no >= ?", [start_line])
            if not store.scalar("SELECT count(*) FROM _ev"):
                return 0, defer
    store.run(ASSEMBLE_SQL)
    parts = int(store.scalar("SELECT coalesce(sum(events - 1), 0) FROM _streams") or 0)
    store.run(CHUNK_SQL)
    store.run("ALTER TABLE _final RENAME TO _final_main")
    store.run(final_sql, map_params)
    store.run("ALTER TABLE _final RENAME TO _final_streams")
    store.run("ALTER TABLE _final_main RENAME TO _final")
    for stmt in MERGE_SQL.split(";"):
        if stmt.strip():
            store.run(stmt)
    return parts, defer
