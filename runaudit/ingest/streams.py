"""Assemble logged streams (one event payload per line) into one run per stream.

Loggers write the ``data`` payloads of an SSE stream one per line. Three families are read:

* Anthropic: ``message_start``, ``content_block_*``, ``message_delta``, ``message_stop`` (and ``ping``). The
  events carry no shared id, so a stream runs from one ``message_start`` to the next. It becomes one
  ``Message`` (shape ``anthropic_stream``) built the way the SDK accumulates it: text deltas joined in order, the
  last ``message_delta``'s ``stop_reason``, ``stop_details`` and cumulative ``output_tokens``, ``input_tokens``
  from ``message_start``, non-text blocks (tool calls) from ``content_block_start`` with their ``input`` joined from
  the ``input_json_delta`` pieces. An ``error`` event inside
  the stream makes the run that error (the status was 200, the call still failed); one after the stream's
  ``message_stop`` is a run of its own.
* OpenAI chat chunks (``object: chat.completion.chunk``), grouped by their shared ``id``: one
  ``chat.completion`` (shape ``openai_chat_stream``) with content and refusal deltas joined apart, the last
  ``finish_reason``, the usage chunk, the tool calls (argument fragments joined per call index); an ``error``
  object in a chunk makes it an error body. Azure's empty-id annotation chunks join the stream by position.
* Gemini ``streamGenerateContent`` chunks (complete responses sharing a ``responseId``): merged like the SDK does
  (shape ``gemini_stream``); a lone response with an id stays as it is.
* OpenAI Responses stream events (``type: response.*``), from one ``response.created`` to the next: the last
  full ``response`` object they carry (the terminal ``response.completed`` / ``incomplete`` / ``failed`` holds
  the whole response), shape ``openai_responses_stream``; an ``error`` event (top-level ``code``/``message``)
  before any terminal event makes it a failed response with that error.

A stream that never reached its end keeps no stop reason (or an ``in_progress`` status): cut off, an
infrastructure error (IN07), never a degraded answer. Streams interleaved in one file (concurrent calls logging
to the same file) are only told apart for chat chunks. The assembled response is the run's ``raw``, with
``_stream`` (event count, first and last line); the run's source line is the stream's first line.

Counting: every event line of a stream is ``ingested`` when its stream became a new run, else ``duplicates``.
An event line before any start of its stream (a file that starts mid-stream) is quarantined with a reason.
"""

from __future__ import annotations

from typing import Any

from runaudit.ingest.batches import batches_sql, parse_aside, run_in_batches
from runaudit.ingest.claude_code import session_sql
from runaudit.ingest.normalize import gemini_merge_sql
from runaudit.store import Store

# Event lines grouped into streams (``sid``) by family: Anthropic events from one message_start to the next,
# OpenAI chat chunks by their shared ``id``, Responses stream events from one ``response.created`` to the next.
# An Anthropic error event after its stream's message_stop stands alone (a run of its own).
EVENTS_SQL = """
CREATE OR REPLACE TEMP TABLE _ev AS
WITH e AS (
  SELECT line_no, byte_offset, nbytes, ev_type, line,
         CASE WHEN ev_type = 'chunk' THEN 'openai' WHEN starts_with(ev_type, 'response.') THEN 'responses'
              WHEN ev_type = 'gemini_chunk' THEN 'gemini' WHEN starts_with(ev_type, 'bedrock.') THEN 'bedrock'
              WHEN starts_with(ev_type, 'claude.') THEN 'claude' WHEN ev_type = 'transcript' THEN 'transcript'
              ELSE 'anthropic' END AS fam,
         CASE WHEN ev_type = 'chunk' THEN nullif(json_extract_string(line, '$.id'), '') END AS cid,
         CASE WHEN starts_with(ev_type, 'claude.') THEN json_extract_string(line, '$.session_id')
              WHEN ev_type = 'transcript' THEN json_extract_string(line, '$.sessionId') END AS csid,
         gemini_rid
  FROM _final
  WHERE ev_type IS NOT NULL AND (shape IS NULL OR ev_type IN ('error', 'chunk', 'gemini_chunk', 'claude.result')
                                 OR starts_with(ev_type, 'response.'))
), n AS (
  SELECT *, sum(CASE WHEN ev_type IN ('message_start', 'response.created', 'bedrock.messageStart') THEN 1 ELSE 0 END)
                OVER (PARTITION BY fam ORDER BY line_no) AS n,
         -- a Claude Code session's turn: its lines since its previous result
         coalesce(sum(CASE WHEN ev_type = 'claude.result' THEN 1 ELSE 0 END)
                  OVER (PARTITION BY fam, csid ORDER BY line_no ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
             AS seg,
         -- Azure chunks with an empty id belong to a stream by position: the prompt-annotation chunk (no choices)
         -- to the stream after it, asynchronous-filter chunks (the one ending a blocked stream too) to the one before
         last_value(cid IGNORE NULLS) OVER (PARTITION BY fam ORDER BY line_no
                                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS prev_cid,
         first_value(cid IGNORE NULLS) OVER (PARTITION BY fam ORDER BY line_no
                                             ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS next_cid
  FROM e
), g AS (
  SELECT *, CASE WHEN fam = 'openai' THEN 'o:' || coalesce(cid,
                      CASE WHEN coalesce(json_array_length(line, '$.choices'), 0) = 0 THEN next_cid END,
                      prev_cid, next_cid, '')
                 WHEN fam = 'gemini' THEN 'g:' || gemini_rid
                 WHEN fam = 'claude' THEN 'c:' || csid || ':' || seg
                 WHEN fam = 'transcript' THEN 't:' || csid
                 WHEN fam IN ('anthropic', 'responses', 'bedrock') AND n > 0 THEN fam || ':' || n END AS sid
  FROM n
), s AS (
  SELECT sid, min(line_no) FILTER (WHERE ev_type = 'message_stop') AS stop_line, count(*) AS events
  FROM g GROUP BY sid
)
SELECT g.* EXCLUDE (n, cid, prev_cid, next_cid, gemini_rid, csid, seg) FROM g JOIN s USING (sid)
WHERE g.sid IS NOT NULL AND NOT (g.ev_type = 'error' AND s.stop_line IS NOT NULL AND g.line_no > s.stop_line)
"""
# A lone Gemini response (not streamed, or a stream of one chunk) stays as it is: dropped from the events once
# the window's open streams are known.
LONE_GEMINI_SQL = """
DELETE FROM _ev WHERE fam IN ('gemini', 'claude') AND sid IN (
  SELECT sid FROM _ev WHERE fam IN ('gemini', 'claude') GROUP BY sid
  HAVING count(*) = 1 AND (any_value(fam) = 'gemini' OR any_value(ev_type) = 'claude.result'))
"""

# Claude Code lines that belong to no turn (informational lines after a session's last result, a transcript's
# metadata without any message): valid records that hold no model call.
_TURN = ("(ev_type IN ('claude.assistant', 'claude.user', 'claude.stream_event', 'claude.result') "
         "OR (ev_type = 'claude.system' AND json_extract_string(line, '$.subtype') = 'init') "
         "OR (ev_type = 'transcript' AND json_extract_string(line, '$.type') IN ('user', 'assistant')))")
NO_TURN_SQL = f"""
CREATE OR REPLACE TEMP TABLE _noturn AS
SELECT line_no FROM _ev WHERE sid IN (
  SELECT sid FROM _ev WHERE fam IN ('claude', 'transcript') GROUP BY sid HAVING NOT bool_or({_TURN}));
UPDATE _final SET shape = '_none' WHERE line_no IN (SELECT line_no FROM _noturn);
DELETE FROM _ev WHERE line_no IN (SELECT line_no FROM _noturn);
DROP TABLE _noturn
"""

# Streams that may go on past the window: the last Anthropic and the last Responses stream when they have no
# terminal event, and the chat-chunk stream holding the window's last line (a usage chunk can follow the end).
OPEN_STREAMS_SQL = """
SELECT min(start_line), min(start_off) FROM (
  SELECT sid, fam, min(line_no) AS start_line, min(byte_offset) AS start_off, max(line_no) AS end_line,
         bool_or(ev_type IN ('message_stop', 'error', 'response.completed', 'response.incomplete',
                             'response.failed', 'response.error', 'bedrock.metadata', 'bedrock.exception',
                             'claude.result')) OR __TX_ENDED__ AS ended,
         max(CASE WHEN fam IN ('anthropic', 'responses', 'bedrock') THEN start_line END) OVER (PARTITION BY fam)
             AS last_start
  FROM (SELECT *, min(line_no) OVER (PARTITION BY sid) AS start_line FROM _ev)
  GROUP BY sid, fam, start_line
)
WHERE (fam IN ('anthropic', 'responses', 'bedrock') AND start_line = last_start AND NOT ended)
   OR (fam IN ('openai', 'gemini') AND end_line = $last_line)
   -- a Claude Code turn without its result yet, or a transcript, active near the window's end
   OR (fam IN ('claude', 'transcript') AND NOT ended AND end_line > $last_line - $recent)
"""

# A transcript has no end line: it is taken as finished when its last assistant entry ends a reply (a final stop
# reason, as Claude Code's own reader decides); a session resumed later adds a run for the added part.
_TX_ENDED = ("coalesce(arg_max(json_extract_string(line, '$.message.stop_reason'), line_no) FILTER (WHERE fam = "
             "'transcript' AND json_extract_string(line, '$.type') = 'assistant') IN ('end_turn', 'stop_sequence', "
             "'refusal', 'max_tokens'), false)")
OPEN_STREAMS_SQL = OPEN_STREAMS_SQL.replace("__TX_ENDED__", _TX_ENDED)

# At the end of a file that may still be written: streams that have not ended and were active near the end of
# the file (their last event within the last HOLD_RECENT lines) are held back until they end or the file is
# quiet. A stream that stopped long before the end (its process died) is assembled as it is (IN07).
HOLD_RECENT = 1000
HELD_STREAMS_SQL = """
SELECT min(start_line), min(start_off) FROM (
  SELECT sid, min(line_no) AS start_line, min(byte_offset) AS start_off, max(line_no) AS end_line,
    bool_or(ev_type IN ('message_stop', 'error', 'response.completed', 'response.incomplete', 'response.failed',
                        'response.error', 'bedrock.metadata', 'bedrock.exception', 'claude.result')
            OR (fam = 'bedrock' AND json_exists(line, '$.messageStop'))
            OR (fam = 'openai' AND (json_extract_string(line, '$.choices[0].finish_reason') IS NOT NULL
                                    OR json_type(line, '$.error') = 'OBJECT'))
            OR (fam = 'gemini' AND (coalesce(json_extract_string(line, '$.candidates[0].finishReason'),
                                             json_extract_string(line, '$.candidates[0].finish_reason')) IS NOT NULL
                                    OR json_exists(line, '$.promptFeedback') OR json_exists(line, '$.prompt_feedback')
                                    OR json_exists(line, '$.error')))) OR __TX_ENDED__ AS ended
  FROM _ev GROUP BY sid
)
WHERE NOT ended AND end_line > $last_line - $recent
""".replace("__TX_ENDED__", _TX_ENDED)

# One assembled response per stream, as a line for the normal parse.
# Streams are assembled about this many bytes of events at a time, and the records they make are parsed from Arrow
# record batches of about RECORD_BATCH_BYTES (runaudit.ingest.batches: 873 streams of 40 KB assembled at once took
# 1.5 GB, ~1.6 MB each, and 64 MB windows of OpenAI chunks failed on the 1 GB limit).
BATCH_BYTES = 8 << 20
RECORD_BATCH_BYTES = 1 << 20

# The batch of each stream of ``_ev``: streams in line order, cut every BATCH_BYTES of events.
BATCHES_SQL = batches_sql("_sbatch", "SELECT sid AS key, sum(nbytes) AS b, min(line_no) AS first FROM _ev GROUP BY sid")

# One record per stream of batch ``$batch`` (the head, CREATE ... AS or INSERT INTO _streams, is the caller's).
ASSEMBLE_SELECT = """
WITH x AS (
  SELECT sid, fam, line_no, byte_offset, nbytes, ev_type, line,
         CASE WHEN ev_type = 'content_block_delta' THEN json_extract_string(line, '$.delta.type') END AS dtype,
         CASE WHEN ev_type = 'content_block_start' THEN json_extract_string(line, '$.content_block.type') END
             AS btype,
         CASE WHEN fam = 'openai' THEN json_extract(line, '$.choices[0]') END AS ch
  FROM _ev WHERE sid IN (SELECT key FROM _sbatch WHERE batch = $batch)
), g AS (
  SELECT sid, any_value(fam) AS fam, min(line_no) AS line_no, min(byte_offset) AS byte_offset,
    sum(nbytes) AS nbytes, count(*) AS events, max(line_no) AS last_line,
    -- Anthropic
    any_value(json_extract(line, '$.message')) FILTER (WHERE ev_type = 'message_start') AS msg,
    string_agg(json_extract_string(line, '$.delta.text'), '' ORDER BY line_no) FILTER (WHERE dtype = 'text_delta')
        AS text,
    arg_max(json_extract(line, '$.delta'), line_no) FILTER (WHERE ev_type = 'message_delta') AS delta,
    arg_max(json_extract(line, '$.usage.output_tokens'), line_no) FILTER (WHERE ev_type = 'message_delta')
        AS out_tok,
    arg_min(json_extract(line, '$.error'), line_no) FILTER (WHERE ev_type = 'error') AS err,
    -- OpenAI chat chunks: content and refusal deltas joined apart, the last finish_reason, usage, tool calls
    any_value(nullif(json_extract_string(line, '$.id'), '')) FILTER (WHERE fam = 'openai') AS cid,
    any_value(nullif(json_extract_string(line, '$.model'), '')) FILTER (WHERE fam = 'openai') AS cmodel,
    min(json_extract(line, '$.created')) FILTER (WHERE fam = 'openai' AND json_extract_string(line, '$.created') <> '0')
        AS created,
    string_agg(json_extract_string(ch, '$.delta.content'), '' ORDER BY line_no) AS content,
    string_agg(json_extract_string(ch, '$.delta.refusal'), '' ORDER BY line_no) AS refusal,
    arg_max(json_extract_string(ch, '$.finish_reason'), line_no)
        FILTER (WHERE json_extract_string(ch, '$.finish_reason') IS NOT NULL) AS finish,
    arg_max(json_extract(ch, '$.content_filter_results'), line_no)
        FILTER (WHERE json_extract_string(ch, '$.finish_reason') IS NOT NULL
                AND json_type(ch, '$.content_filter_results') = 'OBJECT') AS cfr,
    arg_min(coalesce(json_extract(line, '$.prompt_filter_results'), json_extract(line, '$.prompt_annotations')),
            line_no) FILTER (WHERE fam = 'openai' AND coalesce(json_extract(line, '$.prompt_filter_results'),
                                                               json_extract(line, '$.prompt_annotations')) IS NOT NULL)
        AS pfr,
    arg_max(json_extract(line, '$.usage'), line_no) FILTER (WHERE json_type(line, '$.usage') = 'OBJECT') AS cusage,
    arg_min(json_extract(line, '$.error'), line_no)
        FILTER (WHERE fam = 'openai' AND json_type(line, '$.error') = 'OBJECT') AS cerr,
    -- Responses: the last full response object (the terminal event carries the whole response)
    arg_max(json_extract(line, '$.response'), line_no)
        FILTER (WHERE fam = 'responses' AND json_type(line, '$.response') = 'OBJECT') AS resp,
    arg_min(json_object('code', coalesce(json_extract(line, '$.code'), json_extract(line, '$.error.code'),
                                         json_extract(line, '$.error.type')),
                        'message', coalesce(json_extract(line, '$.message'), json_extract(line, '$.error.message'))),
            line_no) FILTER (WHERE ev_type = 'response.error') AS rerr,
    -- Bedrock ConverseStream: text deltas joined, the messageStop's stopReason, metadata's usage, an exception
    string_agg(json_extract_string(line, '$.contentBlockDelta.delta.text'), '' ORDER BY line_no)
        FILTER (WHERE fam = 'bedrock') AS btext,
    arg_max(json_extract_string(line, '$.messageStop.stopReason'), line_no)
        FILTER (WHERE fam = 'bedrock' AND json_exists(line, '$.messageStop')) AS bstop,
    arg_max(json_extract(line, '$.metadata.usage'), line_no) FILTER (WHERE ev_type = 'bedrock.metadata') AS busage,
    arg_max(json_extract(line, '$.metadata.metrics'), line_no) FILTER (WHERE ev_type = 'bedrock.metadata')
        AS bmetrics,
    arg_min(json_object('Code', json_keys(line)[1], 'Message', json_extract(line, '$.*.message')[1]), line_no)
        FILTER (WHERE ev_type = 'bedrock.exception') AS bexc,
    -- Gemini: the chunks of one responseId, merged
    list(json(line) ORDER BY line_no) FILTER (WHERE fam = 'gemini') AS gchunks,
    -- Claude Code: a session's turn (or a transcript), folded
    list(json(line) ORDER BY line_no) FILTER (WHERE fam IN ('claude', 'transcript')) AS clines
  FROM x GROUP BY sid
), oc AS (
  -- OpenAI tool calls arrive in fragments: the id and name first, then pieces of the arguments, by index
  SELECT sid, line_no, unnest(json_extract(ch, '$.delta.tool_calls[*]')) AS tc FROM x
  WHERE fam = 'openai' AND json_type(ch, '$.delta.tool_calls') = 'ARRAY'
), ocalls AS (
  SELECT sid, list(c ORDER BY idx) AS calls FROM (
    SELECT sid, coalesce(try_cast(tc->>'$.index' AS INTEGER), 0) AS idx,
           json_object('id', min(tc->>'$.id'), 'type', 'function',
                       'function', json_object('name', min(tc->>'$.function.name'),
                                               'arguments', string_agg(tc->>'$.function.arguments', ''
                                                                       ORDER BY line_no))) AS c
    FROM oc GROUP BY sid, idx)
  GROUP BY sid
), ab AS (
  -- Anthropic tool_use input arrives as input_json_delta pieces of one JSON text per block index
  SELECT sid, try_cast(line->>'$.index' AS INTEGER) AS idx,
         string_agg(line->>'$.delta.partial_json', '' ORDER BY line_no) AS pj
  FROM x WHERE dtype = 'input_json_delta' GROUP BY sid, idx
), btools AS (
  -- Bedrock tool calls: contentBlockStart names the tool, contentBlockDelta.delta.toolUse.input pieces its input
  SELECT sid, list(json_object('toolUse', json_object('toolUseId', tid, 'name', tname, 'input',
                   CASE WHEN json_valid(tin) AND tin <> '' THEN json(tin) ELSE to_json(tin) END)) ORDER BY idx)
             AS btools
  FROM (SELECT sid, try_cast(coalesce(line->>'$.contentBlockStart.contentBlockIndex',
                                      line->>'$.contentBlockDelta.contentBlockIndex') AS INTEGER) AS idx,
               min(line->>'$.contentBlockStart.start.toolUse.toolUseId') AS tid,
               min(line->>'$.contentBlockStart.start.toolUse.name') AS tname,
               string_agg(line->>'$.contentBlockDelta.delta.toolUse.input', '' ORDER BY line_no) AS tin
        FROM x WHERE fam = 'bedrock' AND (json_exists(line, '$.contentBlockStart.start.toolUse')
                                          OR json_exists(line, '$.contentBlockDelta.delta.toolUse'))
        GROUP BY sid, idx)
  GROUP BY sid
), ablocks AS (
  SELECT b.sid, list(CASE WHEN coalesce(ab.pj, '') = '' THEN b.block
                          ELSE json_merge_patch(b.block, json_object('input', CASE WHEN json_valid(ab.pj)
                                                THEN json(ab.pj) ELSE to_json(ab.pj) END)) END
                     ORDER BY b.line_no) AS blocks
  FROM (SELECT sid, line_no, try_cast(line->>'$.index' AS INTEGER) AS idx,
               json_extract(line, '$.content_block') AS block
        FROM x WHERE btype IS NOT NULL AND btype <> 'text') b
  LEFT JOIN ab ON ab.sid = b.sid AND ab.idx IS NOT DISTINCT FROM b.idx
  GROUP BY b.sid
)
SELECT sid, line_no, byte_offset, nbytes, events,
  (CASE
   WHEN fam = 'bedrock' AND bexc IS NOT NULL THEN
     json_object('Error', bexc, '_stream', json_object('events', events, 'first_line', line_no, 'last_line', last_line))
   WHEN fam = 'bedrock' THEN
     json_object('output', json_object('message', json_object('role', 'assistant', 'content',
                     to_json(list_concat([json_object('text', coalesce(btext, ''))], coalesce(btools, []))))),
                 'stopReason', bstop, 'usage', busage, 'metrics', bmetrics,
                 '_stream', json_object('events', events, 'first_line', line_no, 'last_line', last_line))
   WHEN fam IN ('claude', 'transcript') THEN
     json_merge_patch(__CLAUDE_FOLD__, json_object('_stream', json_object('events', events, 'first_line', line_no,
                                                                            'last_line', last_line)))
   WHEN fam = 'gemini' THEN
     json_merge_patch(__GEMINI_MERGE__, json_object('_stream', json_object('events', events, 'first_line', line_no,
                                                                            'last_line', last_line)))
   WHEN fam = 'responses' THEN
     json_merge_patch(coalesce(resp, json_object('object', 'response', 'status', 'in_progress')),
                      CASE WHEN rerr IS NOT NULL AND coalesce(resp->>'$.status', 'in_progress')
                                NOT IN ('completed', 'incomplete', 'failed')
                           THEN json_object('status', 'failed', 'error', rerr) ELSE '{}'::JSON END,
                      json_object('_stream', json_object('events', events, 'first_line', line_no,
                                                         'last_line', last_line)))
   WHEN fam = 'openai' AND cerr IS NOT NULL THEN
     json_object('error', cerr, 'id', cid, 'model', cmodel,
                 '_stream', json_object('events', events, 'first_line', line_no, 'last_line', last_line))
   WHEN fam = 'openai' THEN
     json_object('id', cid, 'object', 'chat.completion', 'created', created, 'model', cmodel,
                 'choices', to_json([json_object('index', 0, 'finish_reason', finish, 'content_filter_results', cfr,
                     'message', json_object('role', 'assistant', 'content', content, 'refusal', refusal,
                                            'tool_calls', CASE WHEN calls IS NOT NULL THEN to_json(calls) END))]),
                 'usage', cusage, 'prompt_filter_results', pfr,
                 '_stream', json_object('events', events, 'first_line', line_no, 'last_line', last_line))
   WHEN err IS NOT NULL THEN
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
FROM g LEFT JOIN ocalls USING (sid) LEFT JOIN ablocks USING (sid) LEFT JOIN btools USING (sid)
""".replace("__GEMINI_MERGE__", gemini_merge_sql("gchunks")).replace("__CLAUDE_FOLD__", session_sql("clines"))

# The assembled records to parse, in line order (one part each).
RECORDS_SQL = "SELECT line_no, 0::BIGINT AS part, byte_offset, line, nbytes AS orig_len FROM _streams ORDER BY line_no"

MERGE_SQL = """
DELETE FROM _final WHERE line_no IN (SELECT line_no FROM _ev);
INSERT INTO _final BY NAME
SELECT * REPLACE (CASE shape WHEN 'anthropic' THEN 'anthropic_stream' WHEN 'openai_chat' THEN 'openai_chat_stream'
                             WHEN 'openai_error' THEN 'openai_chat_stream' WHEN 'gemini' THEN 'gemini_stream'
                             WHEN 'bedrock' THEN 'bedrock_stream' WHEN 'bedrock_error' THEN 'bedrock_stream'
                             WHEN 'openai_responses' THEN 'openai_responses_stream' ELSE shape END AS shape,
                  list_append(notes, 'assembled_from_stream') AS notes)
FROM _final_streams;
DROP TABLE _final_streams;
DROP TABLE _sbatch;
"""

# Event lines (beyond the one that stands for the stream) whose stream became a new run in this window.
PARTS_INGESTED_SQL = """
SELECT coalesce(sum(s.events - 1), 0) FROM _streams s
JOIN runs r ON r.source_file = $file AND r.ingest_id = $ingest_id AND r.source_line = s.line_no
"""


# A parsed row that is a stream event line (a bare error body is a record of its own).
STREAM_EVENT = "(ev_type IS NOT NULL AND ev_type <> 'error')"


def has_stream_events(store: Store) -> bool:
    """Whether the window parsed in ``_final`` holds stream event lines (other than bare error bodies)."""
    return bool(store.scalar(f"SELECT count(*) FROM _final WHERE {STREAM_EVENT}"))


def assemble(store: Store, final_sql: str, map_params: list[Any], *, first_line: int, last_line: int,
             last_window: bool, can_grow: bool,
             bufs: dict[str, Any], hold_open: bool = False) -> tuple[int, tuple[int, int, bool] | None, int | None]:
    """Replace the stream event lines of ``_final`` by one assembled run per stream.

    Returns the number of event lines folded into streams beyond one per stream, and, when the window's last
    stream goes on past the window, ``(byte_offset, line_no, grow)`` of its first line: the caller drops
    the lines from there and reads them again with the next window — a bigger one (``grow``) when the stream
    began on this window's first line. A stream that outgrows the largest window is assembled in parts (the
    later parts are quarantined as events without a start). Third, with ``hold_open`` on the last window of a
    file still being written: the byte offset from which lines are held back (a stream not ended yet), else None.
    ``bufs`` (the file's context) keeps the buffer the assembled records live in from window to window.
    """
    store.run(EVENTS_SQL)
    if not store.scalar("SELECT count(*) FROM _ev"):
        return 0, None, None
    if store.scalar("SELECT count(*) FROM _ev WHERE fam IN ('claude', 'transcript')"):
        for stmt in NO_TURN_SQL.split(";"):
            if stmt.strip():
                store.run(stmt)
    defer: tuple[int, int, bool] | None = None
    if last_window and hold_open:
        start_line, start_off = store.rows(HELD_STREAMS_SQL, {"last_line": last_line, "recent": HOLD_RECENT})[0]
        if start_line is not None:
            store.run("DELETE FROM _final WHERE line_no >= ?", [start_line])
            store.run("DELETE FROM _ev WHERE line_no >= ?", [start_line])
            parts, _, _ = _assemble_rest(store, final_sql, map_params, bufs)
            return parts, (int(start_off), int(start_line), False), int(start_off)
    if not last_window:
        start_line, start_off = store.rows(OPEN_STREAMS_SQL, {"last_line": last_line, "recent": HOLD_RECENT})[0]
        if start_line is not None and (start_line > first_line or can_grow):
            defer = (int(start_off), int(start_line), start_line == first_line)
            store.run("DELETE FROM _final WHERE line_no >= ?", [start_line])
            store.run("DELETE FROM _ev WHERE line_no >= ?", [start_line])
    parts, _, _ = _assemble_rest(store, final_sql, map_params, bufs)
    return parts, defer, None


def _assemble_rest(store: Store, final_sql: str, map_params: list[Any], bufs: dict[str, Any]) -> tuple[int, None, None]:
    if not store.scalar("SELECT count(*) FROM _ev"):
        return 0, None, None
    store.run(LONE_GEMINI_SQL)
    if not store.scalar("SELECT count(*) FROM _ev"):
        return 0, None, None
    store.run(BATCHES_SQL, {"budget": BATCH_BYTES})
    run_in_batches(store, "_sbatch", "_streams", ASSEMBLE_SELECT)
    parts = int(store.scalar("SELECT coalesce(sum(events - 1), 0) FROM _streams") or 0)
    parse_aside(store, RECORDS_SQL, "_final_streams", final_sql, map_params, bufs, "stream_buf", RECORD_BATCH_BYTES)
    for stmt in MERGE_SQL.split(";"):
        if stmt.strip():
            store.run(stmt)
    return parts, None, None
