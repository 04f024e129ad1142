"""OpenTelemetry GenAI spans from OTLP JSON (the collector's file exporter: one ``resourceSpans`` object per line).

One line holds many spans. Each span is unfolded into a record of its own (shape ``otel_span``): the span with its
attributes flattened into an object (``{"gen_ai.operation.name": "chat", ...}``, OTLP's typed ``AnyValue``
decoded), its events likewise, and the resource's attributes and the scope. Ids written as base64 by protobuf-JSON
exporters are turned into hex. Every GenAI inference span (``gen_ai.operation.name`` ``chat``,
``generate_content``, ``text_completion``, or an older span with only ``gen_ai.system`` and a model) is a run, a
part of its line (``part`` = its place in the line, from 1); other spans (HTTP, tools, agents, embeddings) are
counted, not stored. A line with no inference span is a valid record that holds no model call.
"""

from __future__ import annotations

import json

from runaudit.ingest.batches import batches_sql

# OTLP AnyValue -> JSON: strings, ints (int64 as strings in OTLP JSON), doubles, booleans, arrays of scalars;
# a kvlist is kept as it is.
_VALUE = ("(CASE WHEN json_exists({v}, '$.stringValue') THEN ({v})->'$.stringValue' "
          "WHEN json_exists({v}, '$.intValue') THEN to_json(try_cast(({v})->>'$.intValue' AS HUGEINT)) "
          "WHEN json_exists({v}, '$.doubleValue') THEN to_json(try_cast(({v})->>'$.doubleValue' AS DOUBLE)) "
          "WHEN json_exists({v}, '$.boolValue') THEN ({v})->'$.boolValue' "
          "WHEN json_exists({v}, '$.arrayValue') THEN to_json(list_transform("
          "json_extract({v}, '$.arrayValue.values[*]'), lambda e: coalesce(e->'$.stringValue', "
          "to_json(try_cast(e->>'$.intValue' AS HUGEINT)), e->'$.doubleValue', e->'$.boolValue', e))) "
          "WHEN json_exists({v}, '$.kvlistValue') THEN ({v})->'$.kvlistValue' ELSE {v} END)")


def attrs_sql(a: str) -> str:
    """An OTLP attribute list (``[{key, value: AnyValue}]``) as one JSON object; a repeated key keeps its first."""
    kv = f"list_filter(json_extract(coalesce({a}, '[]'), '$[*]'), lambda kv: kv->>'$.key' IS NOT NULL)"
    keys = f"list_transform({kv}, lambda kv: kv->>'$.key')"
    val = _VALUE.format(v="kv->'$.value'")
    return (f"to_json(map_from_entries(list_transform(list_filter({kv}, lambda kv, i: "
            f"list_position({keys}, kv->>'$.key') = i), lambda kv: {{'k': kv->>'$.key', 'v': {val}}})))")


def _hex_id(x: str) -> str:
    """A span or trace id: hex as it is, base64 (protobuf-JSON exporters) decoded to hex."""
    return (f"(CASE WHEN regexp_full_match(coalesce({x}, ''), '[0-9a-fA-F]*') THEN lower({x}) "
            f"ELSE coalesce(try(lower(hex(from_base64({x})))), {x}) END)")


# OTLP lines are unfolded about this many bytes of lines at a time (runaudit.ingest.batches: 64 exports of 880 KB
# with content, unfolded at once, failed their file at 1 GB).
BATCH_BYTES = 4 << 20
BATCHES_SQL = batches_sql("_obatch", "SELECT line_no AS key, nbytes AS b, line_no AS first FROM _final "
                                     "WHERE shape = 'otlp'")

# The spans of the OTLP lines of batch ``$batch`` of the window, each with its resource and scope, numbered within
# its line.
SPANS_SELECT = f"""
WITH r AS (
  -- one row per resource, then per scope, then per span: a line of 512 spans with their content, built as one
  -- list per line, took more than DuckDB's 4 GB limit to parse (2048 rows at a time, each the whole line)
  SELECT line_no, byte_offset, nbytes,
         unnest(list_transform(json_extract(line, '$.resourceSpans[*]'), lambda x, i: {{'i': i, 'x': x}})) AS e
  FROM _final WHERE shape = 'otlp' AND line_no IN (SELECT key FROM _obatch WHERE batch = $batch)
), sc AS (
  SELECT line_no, byte_offset, nbytes, e.i AS ri, e.x AS r,
         unnest(list_transform(json_extract(e.x, '$.scopeSpans[*]'), lambda x, i: {{'i': i, 'x': x}})) AS e
  FROM r
), sr AS (
  -- as one JSON object and back, as the spans were read before: a missing field is JSON null. Built here, not
  -- beside the unnest below: a JSON function next to an unnest is run again for each chunk of the unnest's
  -- output and DuckDB keeps its 16 MB buffers until the next input chunk (12 exports of 150 spans took 1 GB)
  SELECT line_no, byte_offset, nbytes, ri, e.i AS si, e.x AS x,
         json_object('resource', r->'$.resource.attributes', 'scope', e.x->'$.scope') AS rs
  FROM sc
), u AS (
  SELECT line_no, byte_offset, nbytes, ri, si, rs,
         unnest(list_transform(json_extract(x, '$.spans[*]'), lambda x, i: {{'i': i, 'x': x}})) AS e
  FROM sr
), s0 AS (
  SELECT line_no, byte_offset, nbytes, row_number() OVER (PARTITION BY line_no ORDER BY ri, si, e.i) AS part,
         json_object('span', e.x)->'$.span' AS sp, rs->'$.resource' AS res, rs->'$.scope' AS scope
  FROM u
), s AS (
  SELECT *, {attrs_sql("sp->'$.attributes'")} AS attrs FROM s0
)
SELECT line_no, byte_offset, nbytes, part,
  coalesce(attrs->>'$."gen_ai.operation.name"' IN ('chat', 'generate_content', 'text_completion', 'completion'),
           attrs->>'$."gen_ai.operation.name"' IS NULL
           AND coalesce(attrs->>'$."gen_ai.system"', attrs->>'$."gen_ai.provider.name"') IS NOT NULL
           AND coalesce(attrs->>'$."gen_ai.request.model"', attrs->>'$."gen_ai.response.model"') IS NOT NULL
           AND coalesce(attrs->>'$."llm.request.type"', 'chat') IN ('chat', 'completion'), false) AS is_call,
  json_object('otel_span', json_object(
      'trace_id', {_hex_id("sp->>'$.traceId'")}, 'span_id', {_hex_id("sp->>'$.spanId'")},
      'parent_span_id', {_hex_id("sp->>'$.parentSpanId'")}, 'name', sp->'$.name', 'kind', sp->'$.kind',
      'start_time_unix_nano', sp->>'$.startTimeUnixNano', 'end_time_unix_nano', sp->>'$.endTimeUnixNano',
      'status', sp->'$.status', 'attributes', attrs,
      'events', to_json(list_transform(json_extract(sp, '$.events[*]'), lambda ev: json_object(
          'name', ev->'$.name', 'time_unix_nano', ev->>'$.timeUnixNano',
          'attributes', {attrs_sql("ev->'$.attributes'")})))),
    'resource', {attrs_sql('res')}, 'scope', scope)::VARCHAR AS line
FROM s
"""

# The span records to parse, in line order. They are parsed from Arrow record batches of about SPAN_BATCH_BYTES of
# text: DuckDB reads a table 2048 rows at a time, and parsing 2048 spans with their content takes over 1 GB (each
# JSON function holds what it parsed for a whole chunk: about 0.6 MB per span of 2.4 KB).
CALLS_SQL = ("SELECT line_no, part, byte_offset, line, nbytes AS orig_len FROM _otel WHERE is_call "
             "ORDER BY line_no, part")
SPAN_BATCH_BYTES = 256 << 10


# What the record mapping reads from a span (the ``otel_span`` object).
SPAN_SPEC = json.dumps({"trace_id": "VARCHAR", "span_id": "VARCHAR", "name": "VARCHAR",
                        "start_time_unix_nano": "VARCHAR", "end_time_unix_nano": "VARCHAR",
                        "status": {"code": "VARCHAR", "message": "VARCHAR"}, "attributes": "JSON", "events": "JSON"})
