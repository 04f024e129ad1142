"""SQL that maps each log line (any supported shape) to the canonical ``runs`` columns.

One ``json_transform`` parses a line into a struct that is the union of every shape's fields; wrapped and
batch records are parsed a second time for their inner provider payload. Everything is set-based SQL over a
chunk of lines, so a million lines never pass through a Python loop.

Shapes (the ``shape`` column): ``flat`` (the pipeline's own record), ``wrapped`` (pipeline metadata with a
raw ``response`` object, or a provider body, or its JSON text, under one of :data:`WRAP_KEYS`),
``anthropic`` / ``openai_chat`` / ``openai_responses`` / ``gemini`` / ``bedrock`` (a bare provider body),
``openai_error`` (a bare OpenAI/Google error body), ``anthropic_batch``, ``openai_batch``, and ``custom`` (read
through ``[ingest.map]``). ``provider`` names the API the payload came from (``anthropic``, ``openai``,
``gemini``, ``bedrock`` or ``unknown``).
"""

from __future__ import annotations

import json

from runaudit.ingest import claude_code, otel

# The union struct.  VARCHAR on an object yields its JSON text, on a string the string itself, so odd types
# never fail the parse; containers whose shape differs between providers are kept as JSON and parsed later.
_STRUCT = {
    # pipeline metadata
    "run_id": "VARCHAR", "id": "VARCHAR", "custom_id": "VARCHAR", "request_id": "VARCHAR",
    "task_id": "VARCHAR", "task": "VARCHAR", "job": "VARCHAR", "task_name": "VARCHAR", "job_name": "VARCHAR",
    "ts": "VARCHAR", "timestamp": "VARCHAR", "time": "VARCHAR", "created_at": "VARCHAR", "started_at": "VARCHAR",
    "datetime_utc": "VARCHAR", "startTime": "VARCHAR", "created": "VARCHAR", "createTime": "VARCHAR",
    "prompt": "VARCHAR", "input": "VARCHAR", "messages": "JSON", "system": "JSON", "instructions": "VARCHAR",
    "text": "VARCHAR", "output": "JSON", "response_text": "VARCHAR", "completion": "VARCHAR",
    "output_text": "VARCHAR", "answer": "VARCHAR",
    "http_status": "VARCHAR", "status_code": "VARCHAR", "status": "VARCHAR", "ok": "VARCHAR", "success": "VARCHAR",
    "stop_reason": "VARCHAR", "finish_reason": "VARCHAR", "stopReason": "VARCHAR",
    "model": "VARCHAR", "modelVersion": "VARCHAR",
    "error": "JSON", "error_type": "VARCHAR",
    "latency_ms": "VARCHAR", "duration_ms": "VARCHAR",
    "usage": {"input_tokens": "BIGINT", "output_tokens": "BIGINT", "prompt_tokens": "BIGINT",
              "completion_tokens": "BIGINT", "inputTokens": "BIGINT", "outputTokens": "BIGINT"},
    "request": "JSON", "response": "JSON", "result": "JSON", "body": "JSON", "raw": "JSON", "data": "JSON",
    "type": "VARCHAR", "role": "VARCHAR", "object": "VARCHAR", "topic": "VARCHAR",
    # Anthropic Messages
    "content": [{"type": "VARCHAR", "text": "VARCHAR", "name": "VARCHAR", "input": "JSON"}],
    "stop_details": {"type": "VARCHAR", "category": "VARCHAR", "explanation": "VARCHAR"},
    # OpenAI Chat Completions
    "choices": [{"message": {"content": "VARCHAR", "refusal": "VARCHAR", "tool_calls": "JSON",
                             "function_call": "JSON"},
                 "finish_reason": "VARCHAR", "text": "VARCHAR",
                 "content_filter_results": "JSON"}],
    # OpenAI Responses
    "incomplete_details": {"reason": "VARCHAR"},
    # Gemini
    "candidates": [{"content": {"parts": [{"text": "VARCHAR", "thought": "BOOLEAN", "functionCall": "JSON",
                                           "function_call": "JSON"}]},
                    "finishReason": "VARCHAR", "finish_reason": "VARCHAR", "finishMessage": "VARCHAR",
                    "safetyRatings": [{"category": "VARCHAR", "blocked": "BOOLEAN"}]}],
    "promptFeedback": {"blockReason": "VARCHAR", "blockReasonMessage": "VARCHAR"},
    "prompt_feedback": {"block_reason": "VARCHAR", "block_reason_message": "VARCHAR"},
    "usageMetadata": {"promptTokenCount": "BIGINT", "candidatesTokenCount": "BIGINT"},
    "usage_metadata": {"prompt_token_count": "BIGINT", "candidates_token_count": "BIGINT"},
    # Bedrock Converse
    "ResponseMetadata": {"HTTPStatusCode": "VARCHAR", "RequestId": "VARCHAR"},
    "metrics": {"latencyMs": "VARCHAR"},
    "metadata": {"task_id": "VARCHAR", "task": "VARCHAR", "run_id": "VARCHAR"},
    # Anthropic stream events, one per line (message_start ... message_stop): assembled into one run
    "message": "JSON", "delta": "JSON", "content_block": "JSON",
    # Responses stream error events carry a sequence number (Anthropic error events do not); Gemini and Azure ids
    "sequence_number": "VARCHAR", "responseId": "VARCHAR", "response_id": "VARCHAR",
    "prompt_filter_results": "JSON", "prompt_annotations": "JSON",
    # Bedrock ConverseStream events, one per line (one key each), and its in-stream exceptions
    "messageStart": "JSON", "contentBlockStart": "JSON", "contentBlockDelta": "JSON", "contentBlockStop": "JSON",
    "messageStop": "JSON", "internalServerException": "JSON", "modelStreamErrorException": "JSON",
    "validationException": "JSON", "throttlingException": "JSON", "serviceUnavailableException": "JSON",
    # OTLP JSON (a line of spans) and one unfolded span; Claude Code stream-json / results and transcripts
    "resourceSpans": "JSON", "otel_span": "JSON",
    "session_id": "VARCHAR", "sessionId": "VARCHAR", "uuid": "VARCHAR", "leafUuid": "VARCHAR", "subtype": "VARCHAR",
    "is_error": "VARCHAR", "num_turns": "VARCHAR",
    # LiteLLM StandardLoggingPayload (bare, or under the callback's key); simonw/llm log records
    "standard_logging_object": "JSON", "call_type": "VARCHAR", "conversation_id": "VARCHAR", "response_json": "JSON",
}
# The event types of a logged Anthropic stream (an ``error`` event inside a stream is added when assembling).
STREAM_EVENTS = ("message_start", "content_block_start", "content_block_delta", "content_block_stop",
                 "message_delta", "message_stop", "ping")
STRUCT_SPEC = json.dumps(_STRUCT, separators=(",", ":"))

_RESP_OUTPUT = json.dumps([{"type": "VARCHAR", "phase": "VARCHAR", "name": "VARCHAR", "arguments": "VARCHAR",
                            "input": "VARCHAR",
                            "content": [{"type": "VARCHAR", "text": "VARCHAR", "refusal": "VARCHAR"}]}])
_BEDROCK_OUTPUT = json.dumps({"message": {"content": [{"text": "VARCHAR", "toolUse": "JSON"}]}})
_ERROR = json.dumps({"type": "VARCHAR", "code": "VARCHAR", "message": "VARCHAR", "status": "VARCHAR",
                     "param": "VARCHAR",
                     "error": {"type": "VARCHAR", "message": "VARCHAR", "code": "VARCHAR"},
                     "innererror": {"code": "VARCHAR"}, "inner_error": {"code": "VARCHAR"}})
_RESULT = json.dumps({"type": "VARCHAR", "message": "JSON", "error": "JSON"})
_BATCH_RESPONSE = json.dumps({"status_code": "VARCHAR", "request_id": "VARCHAR", "body": "JSON"})

# A pipeline record keeps the provider's body under one of these keys (LOG_FORMATS_FULL.md section 11), as an
# object or as its JSON text. ``response`` holding any object is the wrapped shape (as before); under the others,
# and as JSON text under any, the value must look like a provider body: these are a bare body's own tests.
WRAP_KEYS = ("response", "result", "body", "raw", "output", "data")
_BODY_SNIFF = json.dumps({"type": "VARCHAR", "role": "VARCHAR", "object": "VARCHAR", "stopReason": "VARCHAR",
                          "error": "JSON", "candidates": "JSON", "promptFeedback": "JSON", "prompt_feedback": "JSON",
                          "usageMetadata": "JSON"})
# (an error body, Anthropic's or OpenAI's, is an ``error`` object with a ``message``)
_BODY_LIKE = """(b.type = 'message' AND b.role = 'assistant')
         OR b.object IN ('chat.completion', 'text_completion', 'response') OR b.stopReason IS NOT NULL
         OR coalesce(b.candidates, b.promptFeedback, b.prompt_feedback, b.usageMetadata) IS NOT NULL
         OR (json_type(b.error) = 'OBJECT' AND json_type(b.error, '$.message') = 'VARCHAR')"""


def _wrapped_body_sql() -> str:
    """The first value under :data:`WRAP_KEYS` that is a provider body (an object, or a string holding one's
    JSON), as JSON; else NULL."""
    def as_object(k: str) -> str:
        return (f"CASE WHEN json_type(u.{k}) = 'OBJECT' THEN u.{k} "
                f"WHEN json_type(u.{k}) = 'VARCHAR' AND starts_with(ltrim(u.{k}->>'$'), '{{') "
                f"AND json_valid(u.{k}->>'$') THEN json(u.{k}->>'$') END")
    cands = ", ".join(as_object(k) for k in WRAP_KEYS)
    return (f"list_filter([{cands}], lambda j: j IS NOT NULL AND list_transform([json_transform(j, '{_BODY_SNIFF}')],"
            f" lambda b: {_BODY_LIKE})[1])[1]")


_REQUEST = json.dumps({
    "system": "JSON", "messages": [{"role": "VARCHAR", "content": "JSON"}], "prompt": "VARCHAR",
    "input": "JSON", "instructions": "VARCHAR",
    "contents": [{"parts": [{"text": "VARCHAR"}]}], "systemInstruction": {"parts": [{"text": "VARCHAR"}]},
    "model": "VARCHAR", "max_tokens": "BIGINT",
})

# Text of a JSON value that is either a string or a list of content blocks/parts with "text".
_TEXTISH = """CASE json_type({x}) WHEN 'VARCHAR' THEN {x}->>'$'
    WHEN 'ARRAY' THEN array_to_string(list_filter(
        json_extract_string({x}, '$[*].text'), lambda s: s IS NOT NULL), chr(10))
    WHEN 'OBJECT' THEN coalesce({x}->>'$.text', array_to_string(json_extract_string({x}, '$.parts[*].text'), chr(10)))
    END"""


def _textish(x: str) -> str:
    return "(" + _TEXTISH.format(x=x) + ")"


# A prompt from a request object: system text, then each message's text, joined by blank lines.
_PROMPT_FROM_REQUEST = f"""nullif(array_to_string(list_filter([
        {_textish("rq.system")},
        rq.instructions,
        array_to_string(list_transform(rq.systemInstruction.parts, lambda p: p.text), chr(10)),
        rq.prompt,
        {_textish("rq.input")},
        array_to_string(list_filter(list_transform(rq.messages, lambda m: {_textish("m.content")}),
                                    lambda s: s IS NOT NULL AND s <> ''), chr(10) || chr(10)),
        array_to_string(list_transform(rq.contents,
            lambda c: array_to_string(list_transform(c.parts, lambda p: p.text), chr(10))), chr(10) || chr(10))
    ], lambda s: s IS NOT NULL AND s <> ''), chr(10) || chr(10)), '')"""

def _last(cs: str, path: str, first: bool = False) -> str:
    """The last (or first) non-null value at ``path`` (a JSON path, or several joined by |) among chunks ``cs``."""
    alts = [f"c->'{p}'" for p in path.split("|")]
    val = alts[0] if len(alts) == 1 else "coalesce(" + ", ".join(alts) + ")"
    return (f"list_filter(list_transform({cs}, lambda c: {val}), "
            f"lambda x: x IS NOT NULL AND json_type(x) <> 'NULL')[{1 if first else -1}]")


# A Gemini streamGenerateContent answer is a series of complete GenerateContentResponse chunks (a JSON array
# written by a raw-body logger, or one chunk per line / SSE event). They merge into one response the way the SDK
# reads them: non-thought text joined in order, function-call parts kept, the last finishReason, safety ratings
# and usage (usage is cumulative), the first prompt feedback and the first error element. ``cs`` is a list of
# JSON chunks; camelCase (REST) and snake_case (SDK dumps) are both read.
def gemini_merge_sql(cs: str) -> str:
    """SQL for one merged Gemini response (JSON) from the list of chunks ``cs``."""
    parts = "coalesce(c->'$.candidates[0].content.parts', '[]')"
    text = (f"array_to_string(flatten(list_transform({cs}, lambda c: list_transform(list_filter("
            f"json_transform({parts}, '[{{\"text\":\"VARCHAR\",\"thought\":\"BOOLEAN\"}}]'), "
            f"lambda x: coalesce(x.thought, false) = false AND x.text IS NOT NULL), lambda x: x.text))), '')")
    calls = (f"flatten(list_transform({cs}, lambda c: list_filter(json_extract({parts}, '$[*]'), "
             f"lambda x: json_exists(x, '$.functionCall') OR json_exists(x, '$.function_call'))))")
    cand = (f"json_object('content', json_object('role', 'model', 'parts', "
            f"to_json(list_concat([json_object('text', {text})], {calls}))), "
            f"'finishReason', {_last(cs, '$.candidates[0].finishReason|$.candidates[0].finish_reason')}, "
            f"'safetyRatings', {_last(cs, '$.candidates[0].safetyRatings|$.candidates[0].safety_ratings')}, "
            f"'finishMessage', {_last(cs, '$.candidates[0].finishMessage|$.candidates[0].finish_message')})")
    has_cand = f"len(list_filter({cs}, lambda c: json_array_length(c, '$.candidates') > 0)) > 0"
    return (f"json_object('candidates', CASE WHEN {has_cand} THEN to_json([{cand}]) END, "
            f"'promptFeedback', {_last(cs, '$.promptFeedback', True)}, "
            f"'prompt_feedback', {_last(cs, '$.prompt_feedback', True)}, "
            f"'usageMetadata', {_last(cs, '$.usageMetadata')}, 'usage_metadata', {_last(cs, '$.usage_metadata')}, "
            f"'modelVersion', {_last(cs, '$.modelVersion|$.model_version', True)}, "
            f"'responseId', {_last(cs, '$.responseId|$.response_id', True)}, "
            f"'createTime', {_last(cs, '$.createTime|$.create_time', True)}, "
            f"'error', {_last(cs, '$.error', True)})")


# A line holding a whole Gemini stream as one JSON array (streamGenerateContent without alt=sse).
_GEMINI_ARRAY = ("(starts_with(ltrim(left(line, 64), chr(32) || chr(9)), '[') AND json_type(line) = 'ARRAY' "
                 "AND (json_exists(line, '$[0].candidates') OR json_exists(line, '$[0].usageMetadata') "
                 "OR json_exists(line, '$[0].usage_metadata') OR json_exists(line, '$[0].promptFeedback') "
                 "OR json_exists(line, '$[0].prompt_feedback') OR json_exists(line, '$[0].error')))")

# Stage 1: split blank / invalid / non-object / over-long lines from records and parse the records.
# The reader left each line's terminator out and flagged the few lines with whitespace at an edge (a BOM, stray
# spaces), so only those are trimmed: the stored raw line is the trimmed line, without a copy of every line.
_PARSE_SELECT = f"""
SELECT line_no, part, byte_offset, nbytes, line, bad_utf8, too_long,
       CASE WHEN kind IN ('garray', 'carray') THEN 'object' ELSE kind END AS kind, repaired, kind = 'garray' AS garray,
       -- the reader's digest of the line it read, while the record is still that line (not trimmed, repaired,
       -- folded or taken out of an SSE frame): equal strings, equal SHA-256
       CASE WHEN line = line0 THEN dg_h END AS dg_h, CASE WHEN line = line0 THEN dg_h2 END AS dg_h2,
       CASE WHEN kind IN ('object', 'carray') THEN json_transform(line, '{STRUCT_SPEC}')
            WHEN kind = 'garray' THEN json_transform(list_transform([json_extract(line, '$[*]')],
                                                     lambda cs: __GEMINI_MERGE__)[1], '{STRUCT_SPEC}') END AS u
FROM (
  -- a Claude Code --verbose JSON array (one session) is read as its folded session
  SELECT * REPLACE (CASE WHEN kind = 'carray' THEN (__CLAUDE_FOLD__)::VARCHAR ELSE line END AS line)
  FROM (
    SELECT line_no, __PART__ AS part, byte_offset, nbytes, bad_utf8, too_long, line0, dg_h, dg_h2,
           CASE WHEN repaired THEN fixed ELSE line END AS line, repaired,
           CASE WHEN too_long THEN 'too_long'
                WHEN blank THEN 'blank'
                WHEN ok1 OR repaired THEN (CASE
                    WHEN starts_with(ltrim(left(line, 64), chr(32) || chr(9) || chr(10) || chr(13)), '{{')
                    THEN 'object' WHEN __GEMINI_ARRAY__ THEN 'garray' WHEN __CLAUDE_ARRAY__ THEN 'carray'
                    ELSE 'not_object' END)
                ELSE 'invalid' END AS kind
    FROM (
        SELECT *, coalesce(fixed IS NOT NULL AND json_valid(fixed), false) AS repaired
        FROM (
            -- DuckDB rejects lone UTF-16 surrogate escapes (backslash-u D800..DFFF) that Python writes;
            -- only for lines that fail, retry with every surrogate escape replaced by U+FFFD.
            SELECT *, CASE WHEN NOT ok1 AND NOT too_long AND NOT blank
                                AND regexp_matches(line, '\\\\u[dD][89a-fA-F][0-9a-fA-F]{{2}}')
                           THEN regexp_replace(line, '\\\\u[dD][89a-fA-F][0-9a-fA-F]{{2}}', '\\\\ufffd', 'g')
                      END AS fixed
            FROM (
__LINES__
            )
        )
    )
  )
)
"""

# The lines of the window. The reader left each line's terminator out and flagged lines with whitespace at an
# edge; a BOM (U+FEFF) that starts a line mid-file, where files were concatenated, goes too.
_LINES_PLAIN = """
                SELECT *, orig_len AS nbytes, line = '' AS blank, NOT too_long AND json_valid(line) AS ok1
                FROM (SELECT * REPLACE (CASE WHEN padded THEN trim(ltrim(trim(line), chr(65279))) ELSE line END
                                        AS line), line AS line0 FROM _chunk)"""
# Raw SSE text (only for windows where the reader saw a line starting "data:"): a "data: {...}" line is read as
# its JSON; the framing lines (event:, id:, retry:, ": comment", "data: [DONE]") count as blank.
_LINES_SSE = """
                SELECT *, orig_len AS nbytes, line = '' OR sse_meta AS blank,
                       NOT too_long AND NOT sse_meta AND json_valid(line) AS ok1
                FROM (
                    SELECT * REPLACE (CASE WHEN sse_data AND json_valid(trim(substr(line, 6)))
                                           THEN trim(substr(line, 6)) ELSE line END AS line),
                           (sse_data AND trim(substr(line, 6)) = '[DONE]')
                           OR (NOT too_long AND (starts_with(line, 'event:') OR starts_with(line, ':')
                                                 OR starts_with(line, 'id:') OR starts_with(line, 'retry:')))
                               AS sse_meta
                    FROM (
                        SELECT *, NOT too_long AND starts_with(line, 'data:') AS sse_data
                        FROM (SELECT * REPLACE (CASE WHEN padded THEN trim(ltrim(trim(line), chr(65279)))
                                                ELSE line END AS line), line AS line0 FROM _chunk)
                    )
                )"""


def parse_select(sse: bool = False, parts: bool = False) -> str:
    """Stage 1 for a window; ``sse`` when the window holds raw SSE text, ``parts`` when its records are parts of
    lines (OTLP spans: the chunk has a ``part`` column; a line's own record is part 0)."""
    return (_PARSE_SELECT.replace("__LINES__", _LINES_SSE if sse else _LINES_PLAIN)
            .replace("__PART__", "part" if parts else "0")
            .replace("__CLAUDE_ARRAY__", claude_code.ARRAY_TEST)
            .replace("__CLAUDE_FOLD__", claude_code.session_sql("json_extract(line, '$[*]')"))
            .replace("__GEMINI_ARRAY__", _GEMINI_ARRAY).replace("__GEMINI_MERGE__", gemini_merge_sql("cs")))


# Stage 2: shape detection and the payload to parse a second time.
SHAPE_SQL = """
WITH s AS (
    SELECT *,
      json_transform(u.result, '__RESULT__') AS res,
      json_transform(CASE WHEN json_type(u.response) = 'OBJECT' THEN u.response END, '__BATCH__') AS bresp,
      json_transform(CASE WHEN json_type(u.error) = 'OBJECT' THEN u.error END, '__ERROR__') AS err,
      CASE WHEN kind = 'object' THEN line END AS oline,
      -- an object's top-level keys, read once: the tests below for a key and the duplicate-key note use them
      -- (a json_exists over the whole line parses it again each time)
      json_keys(CASE WHEN kind = 'object' THEN line END) AS okeys,
      CASE WHEN kind = 'object' AND coalesce(__WRAP_VALUES__) IS NOT NULL THEN __WRAPPED_BODY__ END AS wbody
    FROM _stage
), d AS (
    SELECT *,
      CASE
        WHEN u.resourceSpans IS NOT NULL THEN 'otlp'
        WHEN u.otel_span IS NOT NULL THEN 'otel_span'
        -- Claude Code: a result (the json output, or the end of a stream-json turn; the Python SDK's dataclass
        -- dump has no type), stream-json lines of a session, transcript entries; '_none': valid, no model call
        WHEN u.session_id IS NOT NULL AND (u.type = 'result' OR (u.type IS NULL AND u.subtype IS NOT NULL
             AND u.is_error IS NOT NULL AND u.num_turns IS NOT NULL)) THEN 'claude_code'
        WHEN u.session_id IS NOT NULL AND (u.type IN __CLAUDE_TYPES__ OR (u.type IS NOT NULL AND u.uuid IS NOT NULL))
             THEN NULL
        WHEN u.sessionId IS NOT NULL AND (u.uuid IS NOT NULL OR u.type IS NOT NULL
             OR list_contains(okeys, 'parentUuid')) THEN NULL
        WHEN u.leafUuid IS NOT NULL AND coalesce(u.type, 'summary') = 'summary' THEN '_none'
        -- transcript bookkeeping lines without a session id, and OTLP logs or metrics (no spans): no model call
        WHEN u.type IN ('summary', 'file-history-snapshot', 'custom-title', 'ai-title', 'tag', 'continued-in',
                        'last-prompt', 'queue-operation') AND u.sessionId IS NULL AND u.session_id IS NULL
             AND u.task_id IS NULL THEN '_none'
        WHEN list_contains(okeys, 'resourceLogs') OR list_contains(okeys, 'resourceMetrics') THEN '_none'
        WHEN u.standard_logging_object IS NOT NULL OR (u.call_type IS NOT NULL AND u.status IN ('success', 'failure')
             AND (list_contains(okeys, 'model_map_information') OR list_contains(okeys, 'status_fields')
                  OR list_contains(okeys, 'error_information') OR list_contains(okeys, 'hidden_params')))
             THEN 'litellm'
        WHEN u.conversation_id IS NOT NULL AND u.datetime_utc IS NOT NULL AND list_contains(okeys, 'response_json')
             THEN 'llm_log'
        WHEN u.custom_id IS NOT NULL AND res.type IS NOT NULL THEN 'anthropic_batch'
        WHEN u.custom_id IS NOT NULL AND (bresp.status_code IS NOT NULL OR (u.error IS NOT NULL AND u.response IS NULL)
             OR starts_with(coalesce(u.id, ''), 'batch_req')) THEN 'openai_batch'
        WHEN u.type = 'message' AND u.role = 'assistant' THEN 'anthropic'
        WHEN u.type = 'error' AND err.type IS NOT NULL AND u.sequence_number IS NULL THEN 'anthropic'
        WHEN u.type = 'error' AND u.sequence_number IS NOT NULL THEN NULL
        -- Azure's prompt-annotation and asynchronous-filter chunks: empty id and object, read with their stream
        WHEN coalesce(u.object, '') = '' AND coalesce(u.id, '') = '' AND u.choices IS NOT NULL
             AND (u.prompt_filter_results IS NOT NULL OR u.prompt_annotations IS NOT NULL
                  OR len(u.choices) > 0) AND u.task_id IS NULL THEN NULL
        WHEN u.object IN ('chat.completion', 'text_completion') THEN 'openai_chat'
        WHEN u.object = 'response' THEN 'openai_responses'
        WHEN u.candidates IS NOT NULL OR u.promptFeedback IS NOT NULL OR u.prompt_feedback IS NOT NULL
             OR u.usageMetadata IS NOT NULL THEN 'gemini'
        WHEN u.stopReason IS NOT NULL OR json_type(u.output, '$.message') = 'OBJECT' THEN 'bedrock'
        WHEN json_type(u.response) = 'OBJECT' OR wbody IS NOT NULL THEN 'wrapped'
        WHEN err.message IS NOT NULL AND coalesce(u.task_id, u.task, u.job, u.prompt, u.text, u.status,
             u.http_status, u.ts) IS NULL THEN 'openai_error'
        WHEN coalesce(u.task_id, u.task, u.job, u.task_name, u.job_name, u.run_id, u.prompt, u.text,
             u.response_text, u.completion, u.output_text, u.http_status, u.status, u.stop_reason,
             u.finish_reason, u.ts, u.timestamp, u.created_at, u.model, u.answer,
             u.metadata.task_id) IS NOT NULL
             OR u.error IS NOT NULL OR u.response IS NOT NULL THEN 'flat'
        -- botocore's ClientError response: {"Error": {"Code", "Message"}, "ResponseMetadata": {...}}
        WHEN json_exists(CASE WHEN kind = 'object' THEN line END, '$.Error.Code') THEN 'bedrock_error'
      END AS shape
    FROM s
)
SELECT *,
  CASE shape
    WHEN 'anthropic_batch' THEN CASE WHEN json_type(res.message) = 'OBJECT' THEN res.message END
    WHEN 'openai_batch' THEN CASE WHEN json_type(bresp.body) = 'OBJECT' THEN bresp.body END
    WHEN 'wrapped' THEN coalesce(wbody, u.response)
    WHEN 'litellm' THEN coalesce(CASE WHEN json_type(u.standard_logging_object, '$.response') = 'OBJECT'
                                      THEN u.standard_logging_object->'$.response' END,
                                 CASE WHEN json_type(u.response) = 'OBJECT' THEN u.response END)
    WHEN 'llm_log' THEN CASE WHEN json_type(u.response_json) = 'OBJECT' THEN u.response_json
                             WHEN json_type(u.response_json) = 'VARCHAR' AND json_valid(u.response_json->>'$')
                                  AND starts_with(ltrim(u.response_json->>'$'), '{') THEN json(u.response_json->>'$')
                        END
  END AS payload
FROM d
"""

# Stage 3: one row per record with canonical columns (before the optional [ingest.map] overrides).
RECORD_SQL = """
WITH p0 AS (
    SELECT *,
      CASE WHEN payload IS NOT NULL THEN json_transform(payload, '__STRUCT__') ELSE u END AS p,
      json_transform(CASE WHEN json_type(u.request) = 'OBJECT' THEN u.request END, '__REQUEST__') AS rq,
      CASE WHEN shape = 'claude_code' THEN json_transform(line, '__CLAUDE__') END AS cc,
      CASE WHEN shape = 'otel_span' THEN json_transform(u.otel_span, '__OTEL__') END AS ot,
      CASE WHEN shape = 'litellm' THEN json_transform(coalesce(u.standard_logging_object, line::JSON), '__LITELLM__')
           END AS ll
    FROM _shaped
), p1 AS (
    SELECT *,
      -- OTel: the output and input messages (a JSON string on spans, or structured), from the span or its event
      CASE WHEN shape = 'otel_span' THEN __JSONISH__(coalesce(ot.attributes->'$."gen_ai.output.messages"',
           list_filter(json_extract(ot.events, '$[*]'), lambda e: json_exists(e,
                       '$.attributes."gen_ai.output.messages"'))[1]
               ->'$.attributes."gen_ai.output.messages"')) END AS oom,
      CASE WHEN shape = 'otel_span' THEN __JSONISH__(coalesce(ot.attributes->'$."gen_ai.input.messages"',
           list_filter(json_extract(ot.events, '$[*]'), lambda e: json_exists(e,
                       '$.attributes."gen_ai.input.messages"'))[1]
               ->'$.attributes."gen_ai.input.messages"')) END AS oim,
      -- LiteLLM: the provider's own response when it was kept (its finish reason is not folded)
      CASE WHEN shape = 'litellm' THEN __JSONISH__(ll.hidden_params->'$.original_response') END AS llo,
      json_transform(CASE WHEN json_type(p.error) = 'OBJECT' THEN p.error END, '__ERROR__') AS perr,
      json_transform(CASE WHEN json_type(p.output) = 'ARRAY' THEN p.output END, '__RESP_OUTPUT__') AS rout,
      json_transform(CASE WHEN json_type(p.output, '$.message') = 'OBJECT' THEN p.output END, '__BEDROCK__') AS bout,
      json_transform(CASE WHEN json_type(res.error) = 'OBJECT' THEN res.error END, '__ERROR__') AS berr,
      CASE
        WHEN shape IN ('anthropic_batch', 'openai_batch', 'wrapped', 'litellm', 'llm_log') AND payload IS NOT NULL THEN
          CASE WHEN p.type = 'message' OR (p.type = 'error' AND p.error IS NOT NULL) THEN 'anthropic'
               WHEN p.object IN ('chat.completion', 'text_completion') THEN 'openai_chat'
               WHEN p.object = 'response' THEN 'openai_responses'
               WHEN p.candidates IS NOT NULL OR p.promptFeedback IS NOT NULL OR p.prompt_feedback IS NOT NULL
                    THEN 'gemini'
               WHEN p.stopReason IS NOT NULL THEN 'bedrock'
               WHEN json_type(p.error) = 'OBJECT' THEN 'openai_error'
               ELSE 'unknown' END
        WHEN shape = 'anthropic_batch' THEN 'anthropic'
        WHEN shape = 'openai_batch' THEN 'openai_chat'
        ELSE shape
      END AS ptype
    FROM p0
), p2 AS (
    SELECT *,
      -- deliverable text
      CASE
        WHEN ptype = 'anthropic' THEN array_to_string(list_transform(
             list_filter(p.content, lambda b: b.type = 'text'), lambda b: b.text), '')
        WHEN ptype = 'openai_chat' THEN coalesce(p.choices[1].message.content, p.choices[1].text)
        WHEN ptype = 'openai_responses' THEN coalesce(nullif(array_to_string(flatten(list_transform(rout,
             lambda o: list_transform(list_filter(o.content, lambda c: c.type = 'output_text'), lambda c: c.text))),
             ''), ''), p.output_text)
        WHEN ptype = 'gemini' THEN array_to_string(list_transform(list_filter(p.candidates[1].content.parts,
             lambda x: coalesce(x.thought, false) = false AND x.text IS NOT NULL), lambda x: x.text), '')
        WHEN ptype = 'bedrock' THEN array_to_string(list_transform(list_filter(bout.message.content,
             lambda c: c.text IS NOT NULL), lambda c: c.text), '')
        WHEN ptype IN ('flat', 'custom') THEN coalesce(u.text, u.response_text, u.completion, u.output_text, u.answer,
             CASE WHEN json_type(u.output) = 'VARCHAR' THEN u.output->>'$' END,
             CASE WHEN json_type(u.response) = 'VARCHAR' THEN u.response->>'$' END)
        -- a wrapped body of no provider this page knows (an older API, another vendor): its text fields, as a
        -- flat record's, rather than no deliverable at all
        WHEN ptype = 'unknown' AND shape = 'wrapped' THEN coalesce(p.text, p.response_text, p.completion,
             p.output_text, p.answer, CASE WHEN json_type(p.output) = 'VARCHAR' THEN p.output->>'$' END,
             CASE WHEN json_type(p.response) = 'VARCHAR' THEN p.response->>'$' END)
      END AS x_text0,
      -- what the model sent to its tools (name + input), as JSON: a forced tool call is the deliverable
      nullif(CASE
        WHEN ptype = 'anthropic' THEN to_json(list_transform(
             list_filter(p.content, lambda b: b.type IN ('tool_use', 'server_tool_use')),
             lambda b: {'name': b.name, 'input': b.input}))
        WHEN ptype = 'openai_chat' THEN to_json(list_concat(list_transform(
             json_transform(CASE WHEN json_type(p.choices[1].message.tool_calls) = 'ARRAY'
                                 THEN p.choices[1].message.tool_calls END,
                            '[{"function":{"name":"VARCHAR","arguments":"VARCHAR"}}]'),
             lambda t: {'name': t.function.name, 'input': __ARGS__(t.function.arguments)}),
             CASE WHEN json_type(p.choices[1].message.function_call) = 'OBJECT' THEN
               [{'name': p.choices[1].message.function_call->>'$.name',
                 'input': __ARGS__(p.choices[1].message.function_call->>'$.arguments')}] END))
        WHEN ptype = 'openai_responses' THEN to_json(list_transform(
             list_filter(rout, lambda o: o.type IN ('function_call', 'custom_tool_call', 'mcp_call')),
             lambda o: {'name': o.name, 'input': __ARGS__(coalesce(o.arguments, o.input))}))
        WHEN ptype = 'gemini' THEN to_json(list_transform(
             list_filter(p.candidates[1].content.parts,
                         lambda x: coalesce(x.functionCall, x.function_call) IS NOT NULL),
             lambda x: {'name': coalesce(x.functionCall, x.function_call)->>'$.name',
                        'input': coalesce(x.functionCall, x.function_call)->'$.args'}))
        WHEN ptype = 'bedrock' THEN to_json(list_transform(list_filter(bout.message.content,
             lambda c: c.toolUse IS NOT NULL), lambda c: {'name': c.toolUse->>'$.name', 'input': c.toolUse->'$.input'}))
        WHEN shape = 'otel_span' THEN to_json(list_transform(list_filter(json_extract(oom, '$[*].parts[*]'),
             lambda x: x->>'$.type' = 'tool_call'), lambda x: {'name': x->>'$.name', 'input': x->'$.arguments'}))
      END::VARCHAR, '[]') AS x_tool_payload,
      CASE
        WHEN ptype = 'anthropic' THEN len(list_filter(p.content, lambda b: b.type IN ('tool_use', 'server_tool_use')))
        WHEN ptype = 'openai_chat' THEN coalesce(json_array_length(p.choices[1].message.tool_calls), 0)
             + CASE WHEN json_type(p.choices[1].message.function_call) = 'OBJECT' THEN 1 ELSE 0 END
        WHEN ptype = 'openai_responses' THEN len(list_filter(rout, lambda o: o.type LIKE '%call'))
        WHEN ptype = 'gemini' THEN len(list_filter(p.candidates[1].content.parts,
             lambda x: coalesce(x.functionCall, x.function_call) IS NOT NULL))
        WHEN ptype = 'bedrock' THEN len(list_filter(bout.message.content, lambda c: c.toolUse IS NOT NULL))
        WHEN shape = 'otel_span' THEN len(list_filter(json_extract(oom, '$[*].parts[*]'),
                                                      lambda x: x->>'$.type' = 'tool_call'))
        ELSE 0
      END AS x_tool_calls,
      CASE
        WHEN ptype = 'anthropic' THEN p.stop_reason
        WHEN ptype = 'openai_chat' THEN p.choices[1].finish_reason
        WHEN ptype = 'openai_responses' THEN CASE WHEN p.status = 'incomplete'
             THEN 'incomplete:' || coalesce(p.incomplete_details.reason, 'unknown') ELSE p.status END
        WHEN ptype = 'gemini'
             THEN __GEMINI_FINISH__(coalesce(p.candidates[1].finishReason, p.candidates[1].finish_reason))
        WHEN ptype = 'bedrock' THEN p.stopReason
        WHEN ptype IN ('flat', 'custom') THEN coalesce(u.stop_reason, u.finish_reason, u.stopReason)
        WHEN ptype = 'unknown' AND shape = 'wrapped' THEN coalesce(p.stop_reason, p.finish_reason)
      END AS x_stop0,
      CASE
        WHEN ptype = 'openai_chat' THEN p.choices[1].message.refusal
        WHEN ptype = 'openai_responses' THEN nullif(array_to_string(flatten(list_transform(rout,
             lambda o: list_transform(list_filter(o.content, lambda c: c.type = 'refusal'), lambda c: c.refusal))),
             chr(10)), '')
      END AS x_refusal_text,
      coalesce(p.stop_details.category,
               list_filter(p.candidates[1].safetyRatings, lambda r: r.blocked)[1].category,
               -- Azure: the output category whose filter fired
               CASE WHEN json_type(p.choices[1].content_filter_results) = 'OBJECT' THEN
                 list_filter(json_keys(p.choices[1].content_filter_results), lambda k: json_extract_string(
                   p.choices[1].content_filter_results, '$."' || k || '".filtered') = 'true')[1] END)
          AS x_refusal_category,
      __GEMINI_BLOCK__(coalesce(p.promptFeedback.blockReason, p.prompt_feedback.block_reason)) AS x_block_reason,
      list_filter([
        CASE WHEN json_exists(p.choices[1].content_filter_results, '$.error') THEN 'content_filter_unavailable' END,
        CASE WHEN ptype = 'anthropic' AND len(list_filter(p.content, lambda b: b.type = 'redacted_thinking')) > 0
             THEN 'reasoning_redacted' END,
        CASE WHEN ptype = 'gemini' AND regexp_full_match(coalesce(p.candidates[1].finishReason,
             p.candidates[1].finish_reason, ''), '[0-9]+') THEN 'finish_reason_integer:'
             || coalesce(p.candidates[1].finishReason, p.candidates[1].finish_reason) END,
        CASE WHEN garray THEN 'assembled_from_stream_array' END
      ], lambda x: x IS NOT NULL) AS x_notes0
    FROM p1
), p3 AS (
    -- the formats that carry their ending, errors and metadata in fields of their own
    SELECT *,
      CASE
        WHEN shape = 'claude_code' THEN CASE
             WHEN json_type(cc.structured_output) IN ('OBJECT', 'ARRAY') THEN cc.structured_output::VARCHAR
             WHEN __CC_API_ERROR__ THEN NULL
             ELSE coalesce(cc.result, cc._session.last_text) END
        WHEN shape = 'otel_span' THEN coalesce(
             CASE WHEN oom IS NOT NULL THEN array_to_string(list_transform(list_filter(
                  json_extract(oom, '$[*].parts[*]'), lambda x: x->>'$.type' = 'text'), lambda x: x->>'$.content'), '')
             END,
             ot.attributes->>'$."gen_ai.completion.0.content"', ot.attributes->>'$."gen_ai.completion"')
        WHEN shape = 'llm_log' THEN coalesce(u.response->>'$', x_text0)
        ELSE x_text0
      END AS x_text,
      CASE
        WHEN shape = 'claude_code' THEN CASE
             WHEN cc._session.refusal_no_fallback THEN 'refusal'
             WHEN cc._session.api_error = 'max_output_tokens' THEN 'max_tokens'
             WHEN __CC_API_ERROR__ THEN NULL
             WHEN cc.subtype = 'no_result' THEN 'no_result'
             WHEN cc.subtype = 'transcript' THEN CASE WHEN cc._session.last_is_tool_use
                  AND coalesce(cc._session.last_stop, 'tool_use') = 'tool_use' THEN 'unfinished_tool_use'
                  ELSE cc._session.last_stop END
             WHEN cc.subtype = 'error_during_execution' THEN NULL
             WHEN coalesce(cc.terminal_reason, 'completed') NOT IN ('completed', 'api_error') THEN cc.terminal_reason
             WHEN coalesce(cc.subtype, 'success') <> 'success' THEN cc.subtype
             ELSE coalesce(cc.stop_reason, cc._session.last_stop) END
        WHEN shape = 'otel_span' THEN coalesce(ot.attributes->>'$."gen_ai.response.finish_reasons"[0]',
             oom->>'$[0].finish_reason', ot.attributes->>'$."gen_ai.completion.0.finish_reason"')
        WHEN shape = 'litellm' THEN CASE
             WHEN ll.status_fields.guardrail_status = 'guardrail_intervened' THEN 'guardrail_intervened'
             ELSE coalesce(llo->>'$.stop_reason', llo->>'$.candidates[0].finishReason', llo->>'$.stopReason',
                           x_stop0) END
        WHEN shape = 'llm_log' THEN coalesce(x_stop0, payload->>'$.finish_reason', payload->>'$.stop_reason',
                                             payload->>'$.done_reason')
        ELSE x_stop0
      END AS x_stop_raw,
      CASE
        WHEN shape = 'claude_code' AND (__CC_API_ERROR__ OR cc.subtype = 'error_during_execution')
             THEN coalesce(cc.api_error_status, nullif(regexp_extract(coalesce(cc.result,
             cc._session.api_error_text, array_to_string(json_extract_string(cc.errors, '$[*]'), ' '), ''),
             'API Error: ([0-9]{3})', 1), ''))
        WHEN shape = 'otel_span' THEN coalesce(
             CASE WHEN regexp_full_match(coalesce(ot.attributes->>'$."error.type"', ''), '[1-5][0-9][0-9]')
                  THEN ot.attributes->>'$."error.type"' END,
             CASE WHEN ot.attributes->>'$."error.type"' IS NOT NULL
                  THEN ot.attributes->>'$."http.response.status_code"' END)
        WHEN shape = 'litellm' AND ll.status = 'failure'
             AND regexp_full_match(coalesce(ll.error_information.error_code, ''), '[1-5][0-9][0-9]')
             THEN ll.error_information.error_code
      END AS x_http,
      CASE
        WHEN shape = 'claude_code' AND __CC_API_ERROR__ THEN coalesce(nullif(regexp_extract(coalesce(cc.result,
             cc._session.api_error_text, ''), '"error":\\s*\\{\\s*"type":\\s*"([A-Za-z_]+)"', 1), ''),
             nullif(cc._session.api_error, 'api_error_message'), 'api_error')
        WHEN shape = 'claude_code' AND cc.subtype = 'error_during_execution'
             THEN coalesce('startup_failure:' || cc.startup_failure_reason, 'error_during_execution')
        WHEN shape = 'otel_span' THEN coalesce(ot.attributes->>'$."error.type"',
             CASE WHEN ot.status.code IN ('2', 'STATUS_CODE_ERROR') THEN 'span_status_error' END)
        WHEN shape = 'litellm' AND ll.status = 'failure' THEN coalesce(nullif(ll.error_information.error_class, ''),
             nullif(regexp_extract(coalesce(ll.error_str, ''), 'litellm\\.([A-Za-z]*(Error|Timeout))', 1), ''),
             'litellm_failure')
      END AS x_err_type,
      CASE
        WHEN shape = 'claude_code' AND __CC_API_ERROR__ THEN coalesce(cc.result, cc._session.api_error_text)
        WHEN shape = 'claude_code' AND cc.subtype = 'error_during_execution'
             THEN coalesce(nullif(array_to_string(json_extract_string(cc.errors, '$[*]'), '; '), ''),
                           cc.startup_failure_reason)
        WHEN shape = 'otel_span' AND (ot.attributes->>'$."error.type"' IS NOT NULL
             OR ot.status.code IN ('2', 'STATUS_CODE_ERROR')) THEN coalesce(nullif(ot.status.message, ''),
             list_filter(json_extract(ot.events, '$[*]'), lambda e: e->>'$.name' = 'exception')[1]
                 ->>'$.attributes."exception.message"')
        WHEN shape = 'litellm' AND ll.status = 'failure' THEN coalesce(ll.error_information.error_message,
             ll.error_str)
      END AS x_err_msg,
      list_concat(x_notes0, list_filter([
        CASE WHEN shape = 'claude_code' AND cc._session.source = 'transcript' THEN 'claude_code_transcript' END,
        CASE WHEN shape = 'claude_code' AND cc.subtype = 'no_result' THEN 'session_without_result' END,
        CASE WHEN shape = 'claude_code' AND cc._session.aborted THEN 'aborted' END,
        CASE WHEN shape = 'claude_code' AND cc._session.refusal_fallback THEN 'refusal_fallback' END,
        CASE WHEN shape = 'claude_code' AND cc._session.api_retries > 0
             THEN 'api_retries:' || cc._session.api_retries END,
        CASE WHEN shape = 'claude_code' AND coalesce(json_array_length(cc.permission_denials), 0) > 0
             THEN 'permission_denials:' || json_array_length(cc.permission_denials) END,
        CASE WHEN shape = 'claude_code' AND cc._session.api_calls > 0
             THEN 'api_calls:' || cc._session.api_calls END,
        CASE WHEN shape = 'otel_span' THEN 'otel_span' END,
        CASE WHEN shape = 'otel_span' AND oom IS NULL AND ot.attributes->>'$."gen_ai.completion.0.content"' IS NULL
             AND ot.attributes->>'$."gen_ai.completion"' IS NULL THEN 'content_not_captured' END,
        CASE WHEN shape = 'litellm' AND llo IS NULL AND lower(coalesce(x_stop0, '')) IN ('content_filter', 'stop')
             THEN 'finish_reason_folded_by_litellm' END
      ], lambda x: x IS NOT NULL)) AS x_notes
    FROM p2
)
SELECT
  line_no, part, byte_offset, nbytes, line, okeys, bad_utf8, too_long, kind, repaired, dg_h, dg_h2,
  x_notes AS fmt_notes,
  CASE WHEN shape IN ('anthropic', 'openai_chat', 'openai_responses', 'gemini', 'bedrock', 'openai_error',
                     'bedrock_error')
       THEN 'bare' ELSE shape END AS shape_kind,
  shape,
  CASE WHEN shape = 'claude_code' THEN 'anthropic'
       WHEN shape IN ('otel_span', 'litellm') THEN CASE
         WHEN regexp_matches(__PROV__, 'anthropic') THEN 'anthropic'
         WHEN regexp_matches(__PROV__, 'openai|azure') THEN 'openai'
         WHEN regexp_matches(__PROV__, 'gemini|vertex|gcp|google') THEN 'gemini'
         WHEN regexp_matches(__PROV__, 'bedrock') THEN 'bedrock'
         ELSE coalesce(nullif(__PROV__, ''), 'unknown') END
       WHEN ptype IN ('anthropic') THEN 'anthropic'
       WHEN ptype IN ('openai_chat', 'openai_responses', 'openai_error') THEN 'openai'
       WHEN ptype = 'gemini' THEN 'gemini' WHEN ptype IN ('bedrock', 'bedrock_error') THEN 'bedrock'
       WHEN shape = 'openai_batch' THEN 'openai' WHEN shape = 'anthropic_batch' THEN 'anthropic'
       ELSE coalesce(
         CASE WHEN lower(coalesce(u.model, '')) LIKE '%claude%' THEN 'anthropic'
              WHEN regexp_matches(lower(coalesce(u.model, '')), '^(gpt|o[1-9]|chatgpt|text-)') THEN 'openai'
              WHEN lower(coalesce(u.model, '')) LIKE '%gemini%' THEN 'gemini' END, 'unknown')
  END AS provider,
  coalesce(CASE shape WHEN 'claude_code' THEN cc.session_id || coalesce('#' || coalesce(cc.result_index, cc.uuid), '')
                      WHEN 'otel_span' THEN ot.span_id WHEN 'litellm' THEN ll.id END,
           u.run_id, u.metadata.run_id, u.custom_id, CASE WHEN shape <> 'flat' THEN u.id END,
           CASE WHEN shape = 'flat' THEN u.id END, p.id) AS run_id,
  u.custom_id AS custom_id,
  CASE shape WHEN 'claude_code' THEN cc.session_id
             WHEN 'otel_span' THEN coalesce(ot.attributes->>'$."gen_ai.conversation.id"', ot.trace_id)
             WHEN 'litellm' THEN ll.trace_id WHEN 'llm_log' THEN u.conversation_id
             ELSE coalesce(u.session_id, u.sessionId) END AS session_id,
  CASE shape WHEN 'claude_code' THEN cc.total_cost_usd WHEN 'litellm' THEN ll.response_cost END AS cost_usd,
  CASE WHEN shape = 'claude_code' THEN cc.num_turns END AS turns,
  coalesce(CASE WHEN shape = 'otel_span' THEN line->>'$.resource."service.name"'
                WHEN shape = 'litellm' THEN coalesce(ll.metadata->>'$.task_id', ll.request_tags->>'$[0]') END,
    u.task_id, u.task, u.job, u.task_name, u.job_name, u.metadata.task_id, u.metadata.task,
    CASE WHEN u.custom_id IS NOT NULL THEN coalesce(
      nullif(regexp_extract(u.custom_id, '^(.*?)[-_:/.]?\\d{4}-?\\d{2}-?\\d{2}', 1), ''),
      nullif(regexp_replace(u.custom_id, '[-_:/.]?\\d+$', ''), ''), u.custom_id) END) AS task_id,
  coalesce(CASE shape WHEN 'claude_code' THEN cc._session.ts WHEN 'otel_span' THEN ot.start_time_unix_nano
                      WHEN 'litellm' THEN ll.startTime END,
           u.ts, u.timestamp, u.time, u.created_at, u.started_at, u.datetime_utc, u.startTime, u.createTime,
           p.created, u.created,
           CASE WHEN u.custom_id IS NOT NULL THEN
             nullif(regexp_extract(u.custom_id, '(\\d{4}-\\d{2}-\\d{2}(T[0-9:]+Z?)?)', 1), '') END) AS ts_raw,
  coalesce(CASE shape WHEN 'claude_code' THEN coalesce(cc._session.model,
                                                       json_keys(coalesce(cc.modelUsage, cc.model_usage))[1])
                      WHEN 'otel_span' THEN coalesce(ot.attributes->>'$."gen_ai.response.model"',
                                                     ot.attributes->>'$."gen_ai.request.model"')
                      WHEN 'litellm' THEN ll.model END,
           u.model, p.model, p.modelVersion, rq.model) AS model,
  coalesce(
    CASE shape WHEN 'claude_code' THEN cc._session.prompt
      WHEN 'otel_span' THEN coalesce(
        nullif(array_to_string(list_transform(list_filter(json_extract(oim, '$[*].parts[*]'),
               lambda x: x->>'$.type' = 'text'), lambda x: x->>'$.content'), chr(10) || chr(10)), ''),
        nullif(array_to_string(list_transform(list_filter(json_keys(ot.attributes), lambda k: regexp_full_match(k,
               'gen_ai\\.prompt\\.[0-9]+\\.content')), lambda k: json_extract_string(ot.attributes, '$."' || k || '"')),
               chr(10) || chr(10)), ''),
        ot.attributes->>'$."gen_ai.prompt"')
      WHEN 'litellm' THEN nullif(array_to_string(list_filter(list_transform(
        json_transform(CASE WHEN json_type(ll.messages) = 'ARRAY' THEN ll.messages END, '[{"content":"JSON"}]'),
        lambda m: __TEXTISH_M__), lambda s: s IS NOT NULL AND s <> ''), chr(10) || chr(10)), '')
      WHEN 'llm_log' THEN nullif(concat_ws(chr(10) || chr(10), nullif(u.system->>'$', ''), u.prompt), '')
    END,
    CASE WHEN starts_with(ltrim(u.prompt), '[') AND json_valid(u.prompt) THEN
      nullif(array_to_string(list_filter(list_transform(
        json_transform(u.prompt, '[{"content":"JSON"}]'), lambda m: __TEXTISH_M__),
        lambda s: s IS NOT NULL AND s <> ''), chr(10) || chr(10)), '') ELSE u.prompt END,
    __PROMPT_FROM_REQUEST__,
    CASE WHEN json_type(u.messages) = 'ARRAY' THEN nullif(array_to_string(list_filter(list_transform(
        json_transform(u.messages, '[{"content":"JSON"}]'), lambda m: __TEXTISH_M__),
        lambda s: s IS NOT NULL AND s <> ''), chr(10) || chr(10)), '') END,
    u.input) AS prompt,
  x_text AS response_text,
  x_tool_calls AS tool_calls,
  x_tool_payload AS tool_payload,
  x_stop_raw AS stop_reason_raw,
  x_refusal_text AS refusal_text,
  coalesce(CASE WHEN shape = 'claude_code' THEN cc._session.refusal_category END, x_refusal_category)
      AS refusal_category,
  x_block_reason AS block_reason,
  coalesce(x_http, u.http_status, u.status_code, bresp.status_code, u.ResponseMetadata.HTTPStatusCode,
           p.ResponseMetadata.HTTPStatusCode,
           -- an error body that names its status: Google's {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}
           CASE WHEN regexp_full_match(coalesce(perr.code, ''), '[1-5][0-9][0-9]') THEN perr.code
                WHEN regexp_full_match(coalesce(err.code, ''), '[1-5][0-9][0-9]') THEN err.code
                WHEN regexp_full_match(coalesce(perr.status, ''), '[1-5][0-9][0-9]') THEN perr.status
                WHEN regexp_full_match(coalesce(err.status, ''), '[1-5][0-9][0-9]') THEN err.status END,
           CASE upper(coalesce(perr.status, err.status, ''))
                WHEN 'RESOURCE_EXHAUSTED' THEN '429' WHEN 'UNAVAILABLE' THEN '503' WHEN 'INTERNAL' THEN '500'
                WHEN 'UNKNOWN' THEN '500' WHEN 'DATA_LOSS' THEN '500' WHEN 'DEADLINE_EXCEEDED' THEN '504'
                WHEN 'INVALID_ARGUMENT' THEN '400' WHEN 'FAILED_PRECONDITION' THEN '400' WHEN 'OUT_OF_RANGE' THEN '400'
                WHEN 'UNAUTHENTICATED' THEN '401' WHEN 'PERMISSION_DENIED' THEN '403' WHEN 'NOT_FOUND' THEN '404'
                WHEN 'ABORTED' THEN '409' WHEN 'ALREADY_EXISTS' THEN '409' WHEN 'UNIMPLEMENTED' THEN '501' END
  ) AS http_raw,
  -- error type: provider envelopes first, then the pipeline's own error field
  coalesce(x_err_type,
    CASE WHEN shape = 'bedrock_error' THEN line->>'$.Error.Code' END,
    CASE WHEN shape = 'anthropic_batch' THEN coalesce(berr.error.type, berr.type) END,
    CASE WHEN ptype = 'anthropic' AND p.type = 'error' THEN perr.type END,
    CASE WHEN ptype IN ('openai_error', 'openai_chat', 'openai_responses', 'gemini')
         THEN coalesce(perr.code, perr.status, perr.type) END,
    err.error.type, err.code, err.status, err.type,
    CASE WHEN json_type(u.error) = 'VARCHAR' THEN u.error->>'$' END,
    u.error_type,
    -- Azure's inner code names the policy when the outer code is null
    perr.innererror.code, err.innererror.code, perr.inner_error.code, err.inner_error.code) AS error_type,
  coalesce(x_err_msg,
    CASE WHEN shape = 'bedrock_error' THEN coalesce(line->>'$.Error.Message', line->>'$.message') END,
    CASE WHEN shape = 'anthropic_batch' THEN coalesce(berr.error.message, berr.message) END,
    perr.message, err.error.message, err.message,
    CASE WHEN json_type(u.error) = 'VARCHAR' THEN u.error->>'$' END) AS error_message,
  coalesce(perr.innererror.code, err.innererror.code, perr.inner_error.code, err.inner_error.code) AS error_inner,
  CASE WHEN shape = 'anthropic_batch' THEN res.type
       WHEN shape = 'openai_batch' THEN CASE WHEN u.error IS NOT NULL AND json_type(u.error) = 'OBJECT'
            THEN 'error:' || coalesce(err.code, 'unknown') ELSE 'response' END END AS batch_result,
  CASE WHEN shape IN ('flat', 'wrapped') OR shape IS NULL THEN coalesce(u.status, u.ok, u.success)
       WHEN shape = 'claude_code' AND cc.is_error IS NOT NULL THEN CASE WHEN cc.is_error THEN 'error' ELSE 'success' END
       WHEN shape = 'litellm' THEN ll.status
       WHEN shape = 'otel_span' THEN CASE WHEN ot.status.code IN ('2', 'STATUS_CODE_ERROR') THEN 'error' ELSE 'ok' END
       WHEN shape = 'llm_log' THEN 'success' END AS status_raw,
  CASE WHEN shape = 'claude_code' AND cc.is_error IS NOT NULL THEN 'is_error'
       WHEN shape = 'litellm' THEN 'status' WHEN shape = 'otel_span' THEN 'span_status'
       WHEN shape = 'llm_log' THEN 'logged'
       WHEN shape NOT IN ('flat', 'wrapped') THEN NULL
       WHEN u.status IS NOT NULL THEN 'status' WHEN u.ok IS NOT NULL THEN 'ok'
       WHEN u.success IS NOT NULL THEN 'success' END AS status_field,
  coalesce(CASE shape WHEN 'claude_code' THEN cc.usage.input_tokens
           WHEN 'otel_span' THEN try_cast(coalesce(ot.attributes->>'$."gen_ai.usage.input_tokens"',
                                                   ot.attributes->>'$."gen_ai.usage.prompt_tokens"') AS BIGINT)
           WHEN 'litellm' THEN ll.prompt_tokens
           WHEN 'llm_log' THEN try_cast(line->>'$.input_tokens' AS BIGINT) END,
           u.usage.input_tokens, u.usage.prompt_tokens, u.usage.inputTokens,
           p.usage.input_tokens, p.usage.prompt_tokens, p.usage.inputTokens,
           p.usageMetadata.promptTokenCount, p.usage_metadata.prompt_token_count) AS input_tokens,
  coalesce(CASE shape WHEN 'claude_code' THEN cc.usage.output_tokens
           WHEN 'otel_span' THEN try_cast(coalesce(ot.attributes->>'$."gen_ai.usage.output_tokens"',
                                                   ot.attributes->>'$."gen_ai.usage.completion_tokens"') AS BIGINT)
           WHEN 'litellm' THEN ll.completion_tokens
           WHEN 'llm_log' THEN try_cast(line->>'$.output_tokens' AS BIGINT) END,
           u.usage.output_tokens, u.usage.completion_tokens, u.usage.outputTokens,
           p.usage.output_tokens, p.usage.completion_tokens, p.usage.outputTokens,
           p.usageMetadata.candidatesTokenCount, p.usage_metadata.candidates_token_count) AS output_tokens,
  coalesce(CASE shape WHEN 'otel_span' THEN (try_cast(ot.end_time_unix_nano AS HUGEINT)
                                              - try_cast(ot.start_time_unix_nano AS HUGEINT)) / 1e6
                      WHEN 'litellm' THEN coalesce(ll.response_time * 1000,
                           (try_cast(ll.endTime AS DOUBLE) - try_cast(ll.startTime AS DOUBLE)) * 1000) END,
           try_cast(u.latency_ms AS DOUBLE), try_cast(u.duration_ms AS DOUBLE),
           try_cast(p.metrics.latencyMs AS DOUBLE)) AS latency_ms,
  u.topic AS topic,
  p.type = 'error' AS is_error_body,
  CASE WHEN shape IS NULL AND u.session_id IS NOT NULL AND u.type IS NOT NULL THEN 'claude.' || u.type
       WHEN shape = 'claude_code' AND u.type = 'result' THEN 'claude.result'
       WHEN shape IS NULL AND u.sessionId IS NOT NULL THEN 'transcript'
       WHEN shape IS NULL AND u.type IN __STREAM_EVENTS__ THEN u.type
       -- a Responses stream's error event: {"type": "error", "code", "message", "sequence_number"}, or with the
       -- error nested as {"error": {...}} (both are recorded)
       WHEN shape IS NULL AND u.type = 'error' AND u.sequence_number IS NOT NULL THEN 'response.error'
       WHEN shape = 'anthropic' AND u.type = 'error' THEN 'error'
       WHEN u.object = 'chat.completion.chunk' THEN 'chunk'
       WHEN shape IS NULL AND coalesce(u.object, '') = '' AND coalesce(u.id, '') = '' AND u.choices IS NOT NULL
            THEN 'chunk'
       WHEN starts_with(u.type, 'response.') THEN u.type
       WHEN shape IS NULL AND u.messageStart IS NOT NULL THEN 'bedrock.messageStart'
       WHEN shape IS NULL AND coalesce(u.contentBlockStart, u.contentBlockDelta, u.contentBlockStop, u.messageStop)
            IS NOT NULL THEN 'bedrock.event'
       WHEN shape IS NULL AND coalesce(u.internalServerException, u.modelStreamErrorException, u.validationException,
            u.throttlingException, u.serviceUnavailableException) IS NOT NULL THEN 'bedrock.exception'
       WHEN shape IS NULL AND json_exists(CASE WHEN kind = 'object' THEN line END, '$.metadata.usage')
            THEN 'bedrock.metadata'
       -- Gemini stream chunks share a responseId (a lone response with an id is left as it is when assembling)
       WHEN shape = 'gemini' AND NOT garray AND coalesce(u.responseId, u.response_id) IS NOT NULL
            THEN 'gemini_chunk' END AS ev_type,
  coalesce(u.responseId, u.response_id) AS gemini_rid
FROM p3
"""

# Map raw stop/finish reasons (any provider, any case) to runaudit's normalised vocabulary.
STOP_REASON_CASE = """CASE
  WHEN {x} IS NULL THEN NULL
  WHEN lower({x}) IN ('end_turn', 'stop_sequence', 'stop', 'completed', 'eos', 'finish_reason_stop') THEN 'end_turn'
  WHEN lower({x}) IN ('tool_use', 'tool_calls', 'function_call', 'tool_call') THEN 'tool_use'
  WHEN lower({x}) IN ('max_tokens', 'length', 'incomplete:max_output_tokens', 'max_output_tokens')
       THEN 'max_tokens'
  WHEN lower({x}) IN ('model_context_window_exceeded', 'context_window_exceeded', 'prompt_too_long')
       THEN 'context_window'
  WHEN lower({x}) = 'refusal' THEN 'refusal'
  WHEN lower({x}) IN ('content_filter', 'content_filtered', 'incomplete:content_filter', 'safety',
       'prohibited_content', 'blocklist', 'spii', 'image_safety', 'image_prohibited_content') THEN 'content_filter'
  WHEN lower({x}) IN ('guardrail_intervened', 'guardrail', 'model_armor') THEN 'guardrail'
  WHEN lower({x}) IN ('recitation', 'image_recitation') THEN 'recitation'
  WHEN lower({x}) = 'pause_turn' THEN 'pause_turn'
  WHEN lower({x}) IN ('malformed_function_call', 'unexpected_tool_call', 'too_many_tool_calls',
       'malformed_model_output', 'malformed_tool_use', 'error_max_structured_output_retries',
       'structured_output_retry_exhausted', 'malformed_tool_use_exhausted') THEN 'malformed'
  -- "error": an OTel span whose call never got a finish reason; no_result: a Claude Code session with no result
  WHEN lower({x}) IN ('in_progress', 'queued', 'cancelled', 'failed', 'error', 'no_result') THEN 'incomplete'
  -- agent endings (Claude Code result subtypes and terminal reasons)
  WHEN lower({x}) IN ('error_max_turns', 'max_turns') THEN 'max_turns'
  WHEN lower({x}) IN ('error_max_budget_usd', 'budget_exhausted') THEN 'budget'
  WHEN lower({x}) IN ('aborted_streaming', 'aborted_tools') THEN 'aborted'
  WHEN lower({x}) IN ('tool_deferred', 'tool_deferred_unavailable', 'stop_hook_prevented', 'hook_stopped',
       'unfinished_tool_use') THEN 'paused'
  WHEN lower({x}) IN ('other', 'language', 'no_image', 'image_other', 'finish_reason_unspecified',
       'unspecified', 'incomplete:unknown') THEN 'other'
  ELSE 'unknown'
END"""


# Function-like templates expanded in the SQL text (``__NAME__(expr)``), so that no connection needs macros.
# Tool arguments: OpenAI sends them as a JSON-encoded string; decode an object, else keep the string itself.
_ARGS = ("(CASE WHEN starts_with(ltrim({x}), '{{') AND json_valid({x}) THEN json({x}) "
         "WHEN {x} IS NOT NULL THEN to_json({x}) END)")
# Gemini enums as integers (proto-plus ``to_dict()`` writes them). Vertex and the Gemini API number them
# differently from 6 on; 6-10 are read with Vertex's numbering (the clients that write integers are mostly
# Vertex's), 11-17 exist only in the Gemini API. An unknown integer stays as it is (an unknown stop reason).
_GEMINI_FINISH = ("(CASE trim({x}) WHEN '0' THEN 'FINISH_REASON_UNSPECIFIED' WHEN '1' THEN 'STOP' "
                  "WHEN '2' THEN 'MAX_TOKENS' WHEN '3' THEN 'SAFETY' WHEN '4' THEN 'RECITATION' WHEN '5' THEN 'OTHER' "
                  "WHEN '6' THEN 'BLOCKLIST' WHEN '7' THEN 'PROHIBITED_CONTENT' WHEN '8' THEN 'SPII' "
                  "WHEN '9' THEN 'MALFORMED_FUNCTION_CALL' WHEN '10' THEN 'MODEL_ARMOR' WHEN '11' THEN 'IMAGE_SAFETY' "
                  "WHEN '12' THEN 'UNEXPECTED_TOOL_CALL' WHEN '13' THEN 'TOO_MANY_TOOL_CALLS' "
                  "WHEN '14' THEN 'IMAGE_PROHIBITED_CONTENT' WHEN '15' THEN 'IMAGE_OTHER' WHEN '16' THEN 'NO_IMAGE' "
                  "WHEN '17' THEN 'IMAGE_RECITATION' ELSE {x} END)")
# promptFeedback.blockReason: the *_UNSPECIFIED value (0) is no block; 5 is MODEL_ARMOR on Vertex.
_GEMINI_BLOCK = ("(CASE WHEN {x} IS NULL OR upper(trim({x})) IN ('0', 'BLOCK_REASON_UNSPECIFIED', "
                 "'BLOCKED_REASON_UNSPECIFIED', '') THEN NULL WHEN trim({x}) = '1' THEN 'SAFETY' "
                 "WHEN trim({x}) = '2' THEN 'OTHER' WHEN trim({x}) = '3' THEN 'BLOCKLIST' "
                 "WHEN trim({x}) = '4' THEN 'PROHIBITED_CONTENT' WHEN trim({x}) = '5' THEN 'MODEL_ARMOR' "
                 "WHEN trim({x}) = '6' THEN 'JAILBREAK' ELSE {x} END)")


# A JSON value that may be JSON text in a string (OTel message attributes, LiteLLM's original response).
_JSONISH = ("(CASE WHEN json_type({x}) = 'VARCHAR' AND json_valid({x}->>'$') THEN json({x}->>'$') "
            "WHEN json_type({x}) IN ('OBJECT', 'ARRAY') THEN {x} END)")
# A Claude Code run that ended on an API error (the CLI writes the error prose as the result, is_error true, or as
# a synthetic assistant message); an "error" that says the output hit max_tokens is a truncation instead.
_CC_API_ERROR = ("(((coalesce(cc.is_error, false) AND coalesce(cc.subtype, 'success') = 'success') "
                 "OR (cc.subtype IN ('transcript', 'no_result') AND cc._session.api_error IS NOT NULL)) "
                 "AND coalesce(cc._session.api_error, '') <> 'max_output_tokens')")
_LITELLM = json.dumps({
    "id": "VARCHAR", "trace_id": "VARCHAR", "call_type": "VARCHAR", "status": "VARCHAR",
    "status_fields": {"llm_api_status": "VARCHAR", "guardrail_status": "VARCHAR"}, "error_str": "VARCHAR",
    "error_information": {"error_code": "VARCHAR", "error_class": "VARCHAR", "llm_provider": "VARCHAR",
                          "error_message": "VARCHAR"},
    "model": "VARCHAR", "custom_llm_provider": "VARCHAR", "startTime": "VARCHAR", "endTime": "VARCHAR",
    "response_time": "DOUBLE", "prompt_tokens": "BIGINT", "completion_tokens": "BIGINT", "response_cost": "DOUBLE",
    "messages": "JSON", "hidden_params": "JSON", "request_tags": "JSON", "metadata": "JSON"})


def expand(sql: str, name: str, template: str) -> str:
    """Replace every ``name(arg)`` in ``sql`` (balanced parentheses) by ``template`` with ``{x}`` = arg."""
    out, i = [], 0
    while True:
        j = sql.find(name + "(", i)
        if j < 0:
            out.append(sql[i:])
            return "".join(out)
        k, depth = j + len(name), 0
        while True:
            ch = sql[k]
            depth += ch == "("
            depth -= ch == ")"
            k += 1
            if depth == 0:
                break
        out.append(sql[i:j])
        out.append(template.format(x="(" + sql[j + len(name) + 1:k - 1] + ")"))
        i = k


def build_record_sql() -> str:
    """The stage-3 SELECT with its JSON specs inlined (they are constants, not user input)."""
    textish_m = _textish("m.content")
    sql = RECORD_SQL
    for name, tpl in (("__ARGS__", _ARGS), ("__GEMINI_FINISH__", _GEMINI_FINISH), ("__GEMINI_BLOCK__", _GEMINI_BLOCK),
                      ("__JSONISH__", _JSONISH)):
        sql = expand(sql, name, tpl)
    return (sql
            .replace("__CC_API_ERROR__", _CC_API_ERROR)
            .replace("__PROV__", "lower(coalesce(ot.attributes->>'$.\"gen_ai.provider.name\"', "
                                 "ot.attributes->>'$.\"gen_ai.system\"', ll.custom_llm_provider, "
                                 "ll.error_information.llm_provider, ''))")
            .replace("__CLAUDE__", claude_code.RESULT_SPEC)
            .replace("__OTEL__", otel.SPAN_SPEC)
            .replace("__LITELLM__", _LITELLM)
            .replace("__STRUCT__", STRUCT_SPEC)
            .replace("__REQUEST__", _REQUEST)
            .replace("__ERROR__", _ERROR)
            .replace("__RESP_OUTPUT__", _RESP_OUTPUT)
            .replace("__BEDROCK__", _BEDROCK_OUTPUT)
            .replace("__TEXTISH_M__", textish_m)
            .replace("__PROMPT_FROM_REQUEST__", _PROMPT_FROM_REQUEST)
            .replace("__STREAM_EVENTS__", "(" + ", ".join(f"'{e}'" for e in STREAM_EVENTS) + ")"))


def build_shape_sql() -> str:
    """The stage-2 SELECT with its JSON specs inlined."""
    return (SHAPE_SQL.replace("__RESULT__", _RESULT).replace("__BATCH__", _BATCH_RESPONSE)
            .replace("__ERROR__", _ERROR).replace("__WRAPPED_BODY__", _wrapped_body_sql())
            .replace("__WRAP_VALUES__", ", ".join(f"u.{k}" for k in WRAP_KEYS))
            .replace("__CLAUDE_TYPES__", "(" + ", ".join(f"'{t}'" for t in claude_code.STREAM_TYPES) + ")"))
