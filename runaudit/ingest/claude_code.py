"""Claude Code / Claude Agent SDK headless output and session transcripts, folded into runs.

Three ways the same sessions reach a log:

* ``claude -p --output-format json``: one ``result`` object per invocation (a line of its own: shape
  ``claude_code``); with ``--verbose`` a JSON array of every message, the result last (read as one session).
* ``--output-format stream-json`` (what the SDKs read): one message per line — ``system``/``init``,
  ``assistant`` (one line per content block), ``user`` (tool results), ``result`` (one per turn), and
  informational types. Lines are grouped by ``session_id``; each ``result`` closes one run with the lines of
  its session since the previous result. Sessions interleaved in one file are told apart by their id.
* Interactive transcripts (``~/.claude/projects/…/<session>.jsonl``, camelCase ``sessionId``/``parentUuid``):
  no result line; one run per session, its ending read from the last main-chain assistant entry.

:func:`session_sql` is the one fold, used for stream-json and transcript lines (``streams.ASSEMBLE_SQL``) and
for a ``--verbose`` JSON array (the parse stage). It returns the result object (or a stand-in when there is none:
``subtype`` ``no_result`` for a session cut off before its result, ``transcript`` for a transcript) with a
``_session`` object the record mapping reads: the prompt, the model, the last assistant message's stop reason
and text, an API error written by the CLI into a synthetic assistant message, a refusal reported by a
``model_refusal_no_fallback`` line, retries, and the number of distinct API calls.
"""

from __future__ import annotations

import json

# The stream-json line types (``type``), and transcript entry types; any other type with a session id is read
# as informational, as the SDKs skip unknown types.
STREAM_TYPES = ("system", "assistant", "user", "result", "stream_event", "rate_limit_event", "conversation_reset",
                "tool_progress", "auth_status", "keep_alive", "control_request", "control_response")

# What the record mapping reads from a result object (wire keys; the Python SDK's dataclass dumps use the same
# names except ``model_usage``).
RESULT_SPEC = json.dumps({
    "subtype": "VARCHAR", "is_error": "BOOLEAN", "result": "VARCHAR", "structured_output": "JSON",
    "stop_reason": "VARCHAR", "terminal_reason": "VARCHAR", "api_error_status": "VARCHAR", "errors": "JSON",
    "startup_failure_reason": "VARCHAR", "num_turns": "BIGINT", "total_cost_usd": "DOUBLE",
    "session_id": "VARCHAR", "uuid": "VARCHAR", "result_index": "VARCHAR", "permission_denials": "JSON",
    "modelUsage": "JSON", "model_usage": "JSON",
    "usage": {"input_tokens": "BIGINT", "output_tokens": "BIGINT"},
    "_session": {"source": "VARCHAR", "prompt": "VARCHAR", "model": "VARCHAR", "last_stop": "VARCHAR",
                 "last_text": "VARCHAR", "api_error": "VARCHAR", "api_error_text": "VARCHAR",
                 "refusal_no_fallback": "BOOLEAN", "refusal_category": "VARCHAR", "refusal_explanation": "VARCHAR",
                 "refusal_fallback": "BOOLEAN", "api_retries": "BIGINT", "aborted": "BOOLEAN",
                 "api_calls": "BIGINT", "ts": "VARCHAR", "last_is_tool_use": "BOOLEAN"},
})


def _is_result(c: str) -> str:
    return (f"(({c})->>'$.type' = 'result' OR (({c})->>'$.type' IS NULL AND json_exists({c}, '$.num_turns') "
            f"AND json_exists({c}, '$.is_error') AND json_exists({c}, '$.subtype')))")


def _textish(x: str) -> str:
    return (f"(CASE json_type({x}) WHEN 'VARCHAR' THEN ({x})->>'$' WHEN 'ARRAY' THEN "
            f"array_to_string(json_extract_string({x}, '$[*].text'), chr(10)) END)")


CONTENT = "c->'$.message.content'"


def session_sql(cs: str) -> str:
    """SQL for the folded session (JSON) from ``cs``, a list of the session's lines (JSON) in file order."""
    main = (f"list_filter({cs}, lambda c: c->>'$.type' = 'assistant' AND coalesce(c->>'$.parent_tool_use_id', '') = '' "
            f"AND coalesce(c->>'$.isSidechain', 'false') <> 'true')")
    # the lines of the last main-chain assistant message (stream-json writes one line per content block)
    last = (f"list_filter({main}, lambda c: coalesce(c->>'$.message.id', '') = "
            f"coalesce(({main})[-1]->>'$.message.id', '') AND (({main})[-1]->>'$.message.id' IS NOT NULL "
            f"OR c = ({main})[-1]))")
    last_text = (f"array_to_string(flatten(list_transform({last}, lambda c: list_transform(list_filter("
                 f"json_extract(c, '$.message.content[*]'), lambda b: b->>'$.type' = 'text'), "
                 f"lambda b: b->>'$.text'))), '')")
    last_stop = (f"list_filter(list_transform({last}, lambda c: c->>'$.message.stop_reason'), "
                 f"lambda s: s IS NOT NULL)[-1]")
    last_tool = (f"len(list_filter(json_extract(({last})[-1], '$.message.content[*]'), "
                 f"lambda b: b->>'$.type' = 'tool_use')) > 0")
    last_main = f"({main})[-1]"
    api_error = (f"CASE WHEN {last_main}->>'$.isApiErrorMessage' = 'true' OR {last_main}->>'$.error' IS NOT NULL "
                 f"OR {last_main}->>'$.message.model' = '<synthetic>' "
                 f"THEN coalesce({last_main}->>'$.error', 'api_error_message') END")
    sysline = f"list_filter({cs}, lambda c: c->>'$.type' = 'system' AND c->>'$.subtype' = '{{st}}')"
    nofb = sysline.format(st="model_refusal_no_fallback")
    prompt = (f"list_filter(list_transform(list_filter({cs}, lambda c: c->>'$.type' = 'user' "
              f"AND coalesce(c->>'$.parent_tool_use_id', '') = '' AND coalesce(c->>'$.isMeta', 'false') <> 'true' "
              f"AND coalesce(c->>'$.isSidechain', 'false') <> 'true'), "
              f"lambda c: {_textish(CONTENT)}), "
              f"lambda s: s IS NOT NULL AND trim(s) <> '')[1]")
    init = f"({sysline.format(st='init')})[1]"
    results = f"list_filter({cs}, lambda c: {_is_result('c')})"
    sid = (f"coalesce(list_filter(list_transform({cs}, lambda c: coalesce(c->>'$.session_id', c->>'$.sessionId')), "
           f"lambda s: s IS NOT NULL)[1], '')")
    transcript = f"len(list_filter({cs}, lambda c: json_exists(c, '$.sessionId'))) > 0"
    model = (f"coalesce({init}->>'$.model', list_filter(list_transform({main}, lambda c: c->>'$.message.model'), "
             f"lambda m: m IS NOT NULL AND m <> '<synthetic>')[-1])")
    ts = (f"coalesce(list_filter(list_transform({cs}, lambda c: c->>'$.timestamp'), lambda t: t IS NOT NULL)[1], "
          f"({results})[-1]->>'$.timestamp')")
    session = f"""json_object(
        'source', CASE WHEN {transcript} THEN 'transcript' ELSE 'stream' END,
        'lines', len({cs}), 'prompt', {prompt}, 'model', {model},
        'last_stop', {last_stop}, 'last_text', {last_text}, 'last_is_tool_use', {last_tool},
        'api_error', {api_error},
        'api_error_text', CASE WHEN ({api_error}) IS NOT NULL THEN {last_text} END,
        'refusal_no_fallback', len({nofb}) > 0,
        'refusal_category', coalesce(({nofb})[-1]->>'$.api_refusal_category',
            ({sysline.format(st='model_refusal_fallback')})[-1]->>'$.api_refusal_category'),
        'refusal_explanation', ({nofb})[-1]->>'$.api_refusal_explanation',
        'refusal_fallback', len({sysline.format(st='model_refusal_fallback')}) > 0,
        'api_retries', len({sysline.format(st='api_retry')}),
        'aborted', {last_main}->>'$.aborted' = 'true',
        'api_calls', len(list_distinct(list_filter(list_transform({main}, lambda c: c->>'$.message.id'),
                                                   lambda i: i IS NOT NULL))),
        'ts', {ts})"""
    stand_in = (f"json_object('type', 'result', 'subtype', CASE WHEN {transcript} THEN 'transcript' "
                f"ELSE 'no_result' END, 'session_id', {sid})")
    return (f"json_merge_patch(coalesce(({results})[-1], {stand_in}), "
            f"json_object('type', 'result', '_session', {session}))")


# A line holding the whole ``--verbose`` JSON array of one session (the result last).
ARRAY_TEST = ("(starts_with(ltrim(left(line, 64), chr(32) || chr(9)), '[') AND json_type(line) = 'ARRAY' "
              "AND list_filter(json_extract(line, '$[*]'), lambda c: c->>'$.type' = 'result' "
              "AND json_exists(c, '$.session_id'))[1] IS NOT NULL)")
