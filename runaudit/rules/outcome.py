"""The outcome rules (``IN``, ``CL``, ``DE``, ``DG``, ``OK``), in priority order.

Precedence: infrastructure failures first, then explicit decline signals from the provider, then client
errors, then the in-body refusal detector, then degraded results (truncated, empty, done-conditions), then ok.

Columns of the scan: ``has_err`` (any error evidence: an error type or message, a non-2xx status, a batch
result), ``blank_text`` (no deliverable text), ``hs`` (HTTP status), ``et``/``em`` (lowercased error type and
message), ``stop_reason`` (normalised), ``stop_reason_raw``, ``refusal_text``, ``refusal_category``,
``block_reason``, ``batch_result``, ``shape``, ``provider``, ``response_text``, ``tool_calls``, ``refusal_score``,
``done_failures``, ``judge``.
"""

from __future__ import annotations

from runaudit.config import Config
from runaudit.rules.base import Compiled, Rule, RuleSet

RULES = RuleSet()

_QUOTA = "(et LIKE '%insufficient_quota%' OR et LIKE '%billing%' OR em LIKE '%insufficient_quota%' " \
         "OR em LIKE '%credit balance%' OR em LIKE '%quota%perday%' OR em LIKE '%freetier%' " \
         "OR regexp_matches(em, 'hit your (usage |session |weekly )?limit'))"


@RULES.register
class IN01RateLimited(Rule):
    """Rate limited: HTTP 429 or a rate-limit error type (not a quota or billing limit).

    **Matches**: ``http_status: 429``; ``error.type: rate_limit_error``; Bedrock ``ThrottlingException``;
    Gemini ``RESOURCE_EXHAUSTED`` per-minute quota.
    **Does not match**: 429 ``insufficient_quota`` (billing, see CL01).
    """

    code, name, outcome, signal, retryable = "IN01", "rate_limited", "infra_error", "http_429", True
    sub_reason_sql = "'rate_limited'"
    groups = ("all", "infra")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled(f"""has_err AND ((hs = 429 OR et IN ('rate_limit_error', 'rate_limit_exceeded', 'ratelimiterror',
            'throttlingexception', 'resource_exhausted', 'too_many_requests', 'modelnotreadyexception',
            'tokens', 'requests') OR regexp_matches(et || ' ' || em, 'rate.?limit|throttl|too many requests'))
            AND NOT {_QUOTA})""")  # noqa: E501 (the SQL is part of the ruleset hash: keep it byte-stable)


@RULES.register
class IN02Overloaded(Rule):
    """Provider overloaded: HTTP 529/503 or an overloaded/unavailable error, including a mid-stream error event.

    **Matches**: ``http_status: 529``; ``error.type: overloaded_error`` (even under HTTP 200, a stream error);
    Gemini ``UNAVAILABLE``; Bedrock ``ServiceUnavailableException``; an Anthropic batch line ``errored`` with
    ``overloaded_error``.
    **Does not match**: HTTP 500 (IN04).
    """

    code, name, outcome, signal, retryable = "IN02", "overloaded", "infra_error", "overloaded", True
    sub_reason_sql = "'overloaded'"
    groups = ("all", "infra")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("""has_err AND (hs IN (529, 503) OR et IN ('overloaded_error', 'serviceunavailableexception',
            'unavailable', 'serviceunavailableerror', 'service_unavailable') OR em LIKE '%overloaded%')""")


@RULES.register
class IN03Timeout(Rule):
    """Timed out: HTTP 408/504, a timeout error type, or an error text saying the call timed out.

    **Matches**: ``http_status: null, error: {"type": "timeout"}``; ``"error": "ReadTimeout"``;
    ``timeout_error`` (504); Bedrock ``ModelTimeoutException``; Gemini ``DEADLINE_EXCEEDED``.
    **Does not match**: a 200 response whose text mentions a timeout.
    """

    code, name, outcome, signal, retryable = "IN03", "timeout", "infra_error", "timeout", True
    sub_reason_sql = "'timeout'"
    groups = ("all", "infra")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("""has_err AND (hs IN (408, 504) OR regexp_matches(et, 'time[_ ]?d?[_ ]?out|deadline')
            OR (hs IS NULL AND regexp_matches(em, 'timed? ?out|deadline exceeded')))""")


@RULES.register
class IN04ServerError(Rule):
    """Server error: HTTP 5xx or 409, or a server-side error type.

    **Matches**: ``http_status: 500``; ``error.type: api_error``; OpenAI ``server_error``; Bedrock
    ``InternalServerException`` / ``ModelErrorException``; a batch line ``errored`` with ``api_error``.
    **Does not match**: 529/503 (IN02), 504 (IN03).
    """

    code, name, outcome, signal, retryable = "IN04", "server_error", "infra_error", "http_5xx", True
    sub_reason_sql = "'server_error'"
    groups = ("all", "infra")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("""has_err AND (hs >= 500 OR hs = 409 OR et IN ('api_error', 'server_error', 'internal',
            'internalservererror', 'internalserverexception', 'modelerrorexception', 'modelstreamerrorexception',
            'internal_server_error', 'bad_gateway', 'badgatewayerror', 'apierror', 'vector_store_timeout'))""")


@RULES.register
class IN05Connection(Rule):
    """No response because the connection failed (reset, refused, DNS, TLS).

    **Matches**: ``http_status: null, error: "ConnectionError"``; ``APIConnectionError``;
    ``EndpointConnectionError``; ``"connection reset by peer"``.
    **Does not match**: an error with an HTTP status (the status decides).
    """

    code, name, outcome, signal, retryable = "IN05", "connection", "infra_error", "no_response", True
    sub_reason_sql = "'connection'"
    groups = ("all", "infra")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled(f"""has_err AND (hs IS NULL AND regexp_matches(et || ' ' || em,
            'connect|connection|reset|dns|refused|unreachable|network|broken ?pipe|ssl|eof|socket|name resolution')
            AND NOT {_QUOTA})""")


@RULES.register
class IN06BatchNotRun(Rule):
    """A batch request that never ran: Anthropic ``expired``/``canceled``, OpenAI batch line errors.

    **Matches**: ``{"custom_id": …, "result": {"type": "expired"}}``; ``"result": {"type": "canceled"}``;
    OpenAI batch ``"response": null, "error": {"code": "batch_expired"}``.
    **Does not match**: a batch line ``succeeded`` (its message is classified like any other response).
    Canceled is filed here (retryable) because it is not the model's ending: the request was never run.
    """

    code, name, outcome, signal, retryable = "IN06", "batch_not_run", "infra_error", "batch", True
    sub_reason_sql = ("CASE WHEN batch_result = 'expired' THEN 'batch_expired' WHEN batch_result = 'canceled' "
                      "THEN 'batch_canceled' ELSE 'batch_' || replace(batch_result, 'error:', '') END")
    groups = ("all", "infra")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(batch_result IN ('expired', 'canceled') OR batch_result LIKE 'error:%')")


@RULES.register
class IN07Incomplete(Rule):
    """The response never finished: a Responses API ``in_progress``/``queued``/``cancelled``/``failed`` status,
    or an Anthropic message or OpenAI chat completion with no stop/finish reason (a stream cut off before its
    final event, or a proxy that passed on an unfinished response); a Claude Code session with no result line
    (killed or timed out); an agent run the caller aborted (``aborted_streaming``/``aborted_tools``, sub-reason
    ``aborted``); an OTel span whose finish reason is ``error`` (the instrumentation got none).

    **Matches**: ``{"object": "response", "status": "in_progress"}``; an Anthropic message with
    ``stop_reason: null``; a logged stream with ``message_start`` but no ``message_delta``; a chat completion
    whose ``finish_reason`` is null.
    **Does not match**: the pipeline's flat record without a stop reason (many pipelines do not log one); a
    failed response that carries an error code (classified by that code).
    """

    code, name, outcome, signal, retryable = "IN07", "incomplete", "infra_error", "stream_incomplete", True
    sub_reason_sql = ("CASE WHEN stop_reason = 'aborted' THEN 'aborted' WHEN lower(stop_reason_raw) = 'no_result' "
                      "THEN 'no_result' ELSE 'incomplete' END")
    groups = ("all", "infra")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("""((stop_reason IN ('incomplete', 'aborted') AND et = '' AND em = '')
            OR (stop_reason_raw IS NULL AND et = '' AND em = ''
            AND ((shape IN ('anthropic', 'anthropic_stream', 'wrapped', 'anthropic_batch') AND provider = 'anthropic')
                 OR (shape IN ('openai_chat', 'openai_chat_stream', 'wrapped', 'openai_batch')
                     AND provider = 'openai')
                 OR (shape = 'gemini_stream' AND provider = 'gemini' AND block_reason IS NULL)
                 OR (shape = 'bedrock_stream' AND provider = 'bedrock'))
            AND coalesce(batch_result, 'succeeded') IN ('succeeded', 'response')
            AND (hs IS NULL OR hs BETWEEN 200 AND 299)))""")


@RULES.register
class IN08NoResponse(Rule):
    """An error with no HTTP status that no more specific rule recognised: the call got no answer.

    **Matches**: ``http_status: null, error: "SomethingFailed"``.
    **Does not match**: an error that carries a 4xx status (CL01) or a known type (IN01–IN05).
    """

    code, name, outcome, signal, retryable = "IN08", "no_response", "infra_error", "no_response", True
    # an agent harness (Claude Code ``error_during_execution``) failed without an API error behind it
    sub_reason_sql = "CASE WHEN et = 'error_during_execution' THEN 'harness' ELSE 'no_response' END"
    groups = ("all", "infra")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled(f"""has_err AND NOT {_QUOTA} AND (hs IS NULL AND (et <> '' OR em <> '')
            AND NOT regexp_matches(et,
            'invalid|authentication|permission|not_?found|billing|quota|too_large|validation|accessdenied|'
            || 'badrequest|policy|content_filter|guardrail|refus|unprocessable|context_length|context_?window|'
            || 'startup_failure'))""")


@RULES.register
class DE01RefusalStop(Rule):
    """The model declined: Anthropic ``stop_reason: "refusal"`` (with ``stop_details.category`` kept).

    **Matches**: ``"stop_reason": "refusal"``, even with partial text streamed before it.
    **Does not match**: a text refusal under ``end_turn`` (DE10), a provider content filter (DE03).
    """

    code, name, outcome, signal = "DE01", "refusal_stop_reason", "declined", "refusal"
    sub_reason_sql = "coalesce(refusal_category, 'refusal')"
    groups = ("all", "declined")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(stop_reason = 'refusal')")


@RULES.register
class DE02ModelRefusalField(Rule):
    """The model declined through the API's refusal field: OpenAI ``message.refusal`` or a Responses
    ``refusal`` content part (``finish_reason`` stays ``stop``).

    **Matches**: ``"message": {"content": null, "refusal": "I'm sorry, I can't assist with that."}``.
    **Does not match**: ``"refusal": null``.
    """

    code, name, outcome, signal = "DE02", "model_refusal_field", "declined", "model_refusal"
    sub_reason_sql = "'model_refusal'"
    groups = ("all", "declined")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(refusal_text IS NOT NULL AND trim(refusal_text) <> '')")


@RULES.register
class DE03ContentFilter(Rule):
    """A provider content filter stopped the output (kept apart from a model refusal).

    **Matches**: OpenAI ``finish_reason: "content_filter"``; Responses ``incomplete_details.reason:
    "content_filter"``; Gemini ``SAFETY``, ``PROHIBITED_CONTENT``, ``BLOCKLIST``, ``SPII``, ``IMAGE_SAFETY``;
    Bedrock ``content_filtered``.
    **Does not match**: Anthropic ``refusal`` (DE01); Gemini ``RECITATION`` (DE05).
    """

    code, name, outcome, signal = "DE03", "content_filter", "declined", "content_filter"
    sub_reason_sql = "coalesce(lower(refusal_category), lower(stop_reason_raw))"
    groups = ("all", "declined")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(stop_reason = 'content_filter')")


@RULES.register
class DE04Guardrail(Rule):
    """A guardrail or prompt block intervened: Bedrock ``guardrail_intervened``, Gemini
    ``promptFeedback.blockReason``.

    **Matches**: ``"stopReason": "guardrail_intervened"``; ``"promptFeedback": {"blockReason": "SAFETY"}``.
    **Does not match**: a content filter on the output (DE03).
    """

    code, name, outcome, signal = "DE04", "guardrail", "declined", "guardrail"
    sub_reason_sql = "coalesce(lower(block_reason), lower(stop_reason_raw), 'guardrail')"
    groups = ("all", "declined")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(stop_reason = 'guardrail' OR block_reason IS NOT NULL OR et LIKE '%guardrail%')")


@RULES.register
class DE05Recitation(Rule):
    """A recitation (copyright) block: Gemini ``RECITATION``. Declined by default; set
    ``[classify] recitation = "degraded"`` to treat it as a failed deliverable instead.

    **Matches**: ``"finishReason": "RECITATION"``.
    **Does not match**: ``SAFETY`` (DE03).
    """

    code, name, outcome, signal = "DE05", "recitation", "declined", "recitation"
    sub_reason_sql = "'recitation'"
    groups = ("all", "declined")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(stop_reason = 'recitation')")

    def outcome_for(self, cfg: Config) -> str:
        return cfg.recitation_outcome


@RULES.register
class DE06PolicyBlock(Rule):
    """The request was rejected by a content policy: a 4xx whose error code or message names a policy block.

    **Matches**: OpenAI 400 ``code: content_policy_violation``; Azure 400 ``code: content_filter`` /
    ``ResponsibleAIPolicyViolation``; Responses error ``bio_policy``; LiteLLM ``ContentPolicyViolationError``;
    a 400 whose message says the input was blocked by a usage policy.
    **Does not match**: a 400 ``invalid_request_error`` about a missing field (CL01).
    """

    code, name, outcome, signal = "DE06", "policy_block", "declined", "policy_block"
    sub_reason_sql = "'policy_4xx'"
    groups = ("all", "declined")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("""has_err AND (et IN ('content_policy_violation', 'content_filter', 'contentpolicyviolationerror',
            'bio_policy', 'image_content_policy_violation', 'responsibleaipolicyviolation', 'safety')
            OR ((hs BETWEEN 400 AND 499 OR et <> '') AND regexp_matches(em,
            'content (management )?polic|content filter|usage polic|safety (system|filter)|responsibleai|flagged as|'
            || 'blocked (by|due to|under)|violat\\w* .{0,40}polic')))""")  # noqa: E501 (SQL hashed into the ruleset)


@RULES.register
class CL01ClientError(Rule):
    """A non-retryable client error (400/401/402/403/404/413/422, quota or billing exhaustion).

    Filed as ``infra_error`` with ``retryable = false`` and sub-reason ``client_error``/``auth``/``billing``/
    ``quota``/``not_found``/``too_large``: the call failed below the model (no answer was produced), but
    retrying as is will fail again — it needs a person to fix the request, key or account.
    **Matches**: ``http_status: 401``; ``error.type: invalid_request_error``; 429 ``insufficient_quota``;
    Bedrock ``ValidationException``.
    **Does not match**: a 400 policy block (DE06); 408/409/429 (IN rules).
    """

    code, name, outcome, signal, retryable = "CL01", "client_error", "infra_error", "http_4xx", False
    sub_reason_sql = """CASE WHEN hs IN (401, 403) OR regexp_matches(et, 'auth|permission|accessdenied')
        THEN 'auth' WHEN hs = 402 OR regexp_matches(et || em, 'billing|credit balance') THEN 'billing'
        WHEN regexp_matches(et || em, 'quota') OR regexp_matches(em, 'hit your (usage |session |weekly )?limit')
        THEN 'quota' WHEN hs = 404 OR regexp_matches(et, 'not_?found') THEN 'not_found'
        WHEN hs = 413 OR et LIKE '%too_large%' THEN 'too_large' WHEN starts_with(et, 'startup_failure') THEN 'config'
        ELSE 'client_error' END"""
    groups = ("all", "infra")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled(f"""has_err AND ((hs BETWEEN 400 AND 499) OR {_QUOTA} OR regexp_matches(et,
            'invalid_request|authentication|permission|not_?found|billing|too_large|validation|accessdenied|'
            || 'badrequest|unprocessable|invalid_argument|failed_precondition|context_length|context_?window|'
            || 'invalid_prompt|startup_failure'))""")


@RULES.register
class DE11JudgeRefusal(Rule):
    """The optional LLM judge (``runaudit judge``) read the run and called it a refusal or a partial refusal.

    Comes after explicit API signals and infrastructure errors, before the text detector: a judge verdict is
    more specific than the detector's score, which stays stored as evidence.
    **Matches**: a stored judge verdict ``refusal`` (sub-reason ``judge_refusal``) or ``partial``
    (``judge_partial``) for this run's prompt and response.
    **Does not match**: ``compliance`` or ``undecided`` verdicts; runs never judged.
    """

    code, name, outcome, signal = "DE11", "judge_refusal", "declined", "judge"
    sub_reason_sql = "'judge_' || judge"
    groups = ("all", "declined", "judge")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(judge IN ('refusal', 'partial'))")


@RULES.register
class DG06CapabilityLimit(Rule):
    """The model declined for want of a capability, not for safety: "I can't browse the internet", "I don't have
    real-time data", "I can't open attachments". Filed as ``degraded`` (sub-reason ``capability``): the job asked
    for something the model cannot do, so the deliverable is missing and retrying will not help, but no safety
    decision needs a person. Read where the in-body score says declined (at or above the threshold).
    **Matches**: "I'm sorry, but I can't browse the web or access real-time data."
    **Does not match**: "I'm sorry, I can't help with that." (DE10); a capability caveat followed by a full answer.
    """

    code, name, outcome, signal = "DG06", "capability_limit", "degraded", "capability"
    sub_reason_sql = "'capability'"
    groups = ("all", "degraded", "detector")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(refusal_score >= $? AND refusal_kind = 'capability' AND judge IS NULL)",
                        (cfg.refusal_threshold,))


@RULES.register
class DE10BodyRefusal(Rule):
    """A refusal written in a normal-looking 200 body, found by the in-body detector's evidence score.

    The score (0..1) weighs decline openers and verbs, policy framing, redirection, topic changes and
    non-English declines against delivered content; see ``runaudit/rules/refusal.py``. Runs at or above
    ``[classify] refusal_threshold`` (default 0.5) are declined, unless the LLM judge read the run and called
    it compliance.
    **Matches**: "I can't help with that, but here is a safer alternative"; "申し訳ありませんが、お手伝いできません";
    a polite deflection to a professional that never answers.
    **Does not match**: "I'm sorry to hear your parcel was late…" followed by help; a story whose character says
    "I can't help you"; a caveat before a full answer.
    """

    code, name, outcome, signal = "DE10", "body_refusal", "declined", "body_refusal"
    sub_reason_sql = "'text_refusal'"
    groups = ("all", "declined", "detector")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(refusal_score >= $? AND judge IS DISTINCT FROM 'compliance')", (cfg.refusal_threshold,))


@RULES.register
class DG01Truncated(Rule):
    """Cut off: ``max_tokens`` / ``length`` / ``MAX_TOKENS`` / Responses ``max_output_tokens`` / context window.

    **Matches**: ``"stop_reason": "max_tokens"``; ``"finish_reason": "length"``;
    ``model_context_window_exceeded``.
    **Does not match**: ``end_turn``.
    """

    code, name, outcome, signal = "DG01", "truncated", "degraded", "truncated"
    sub_reason_sql = "CASE WHEN stop_reason = 'context_window' THEN 'context_window' ELSE 'max_tokens' END"
    groups = ("all", "degraded")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(stop_reason IN ('max_tokens', 'context_window'))")


@RULES.register
class DG03Paused(Rule):
    """A paused turn logged as final: Anthropic ``pause_turn`` (the pipeline should have continued); an agent run
    its own harness stopped or paused (Claude Code ``tool_deferred``, ``stop_hook_prevented``, ``hook_stopped``);
    a Claude Code transcript whose last entry is a tool call with no answer after it.

    **Matches**: ``"stop_reason": "pause_turn"``; ``"terminal_reason": "hook_stopped"``.
    **Does not match**: ``end_turn``.
    """

    code, name, outcome, signal = "DG03", "paused", "degraded", "paused"
    sub_reason_sql = "CASE WHEN stop_reason = 'pause_turn' THEN 'pause_turn' ELSE lower(stop_reason_raw) END"
    groups = ("all", "degraded")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(stop_reason IN ('pause_turn', 'paused'))")


@RULES.register
class DG07AgentLimit(Rule):
    """An agent run cut off by the caller's own limit: Claude Code ``error_max_turns`` (sub-reason ``max_turns``)
    or ``error_max_budget_usd`` (``budget``). Not an infrastructure error (an unchanged retry ends the same way) and
    not a decline (no policy signal): the deliverable is missing.

    **Matches**: ``{"type": "result", "subtype": "error_max_turns", "is_error": true}``.
    **Does not match**: ``"subtype": "success"``.
    """

    code, name, outcome, signal = "DG07", "agent_limit", "degraded", "agent_limit"
    sub_reason_sql = "stop_reason"
    groups = ("all", "degraded")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(stop_reason IN ('max_turns', 'budget'))")


@RULES.register
class DG04Malformed(Rule):
    """The generation ended abnormally: malformed tool call or output, ``OTHER``, or an unknown stop reason.

    **Matches**: Gemini ``MALFORMED_FUNCTION_CALL`` / ``OTHER``; Bedrock ``malformed_model_output``; a stop
    reason runaudit does not know (kept verbatim in ``stop_reason_raw``, never assumed ok); a Gemini response
    whose candidate has no ``finishReason`` (``unknown:missing``).
    **Does not match**: ``stop``, ``end_turn``, ``tool_use``.
    """

    code, name, outcome, signal = "DG04", "abnormal_stop", "degraded", "abnormal_stop"
    sub_reason_sql = "coalesce(stop_reason || ':' || lower(stop_reason_raw), 'unknown:missing')"
    groups = ("all", "degraded")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("""(stop_reason IN ('malformed', 'other', 'unknown')
            OR (provider = 'gemini' AND shape IN ('gemini', 'wrapped') AND stop_reason_raw IS NULL
                AND block_reason IS NULL AND et = '' AND em = '' AND (hs IS NULL OR hs BETWEEN 200 AND 299)))""")


@RULES.register
class DG02Empty(Rule):
    """An answer came back but the deliverable text is empty (and no tool was called).

    **Matches**: HTTP 200 with ``text: ""``; an Anthropic message holding only ``thinking`` blocks.
    **Does not match**: an agent step that called a tool (``tool_use``) with no text.
    """

    code, name, outcome, signal = "DG02", "empty", "degraded", "empty"
    sub_reason_sql = "'empty'"
    groups = ("all", "degraded")

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("(blank_text AND coalesce(tool_calls, 0) = 0 AND stop_reason IS DISTINCT FROM 'tool_use')")


@RULES.register
class DG05ToolUseFinal(Rule):
    """A tool call logged as the final turn, when ``[classify] tool_use_final = "degraded"`` (default: ok).

    **Matches**: ``"stop_reason": "tool_use"`` with the setting on.
    **Does not match**: anything when the setting is ``ok``.
    """

    code, name, outcome, signal = "DG05", "tool_use_final", "degraded", "tool_use_final"
    sub_reason_sql = "'tool_use_final'"
    groups = ("all", "degraded")

    def predicate(self, cfg: Config) -> Compiled | None:
        return Compiled("(stop_reason = 'tool_use')") if cfg.tool_use_final == "degraded" else None


@RULES.register
class DN00DoneCondition(Rule):
    """A done-condition from the config failed (min_chars, min_headings, required_json_keys, json_schema,
    must_match, must_not_match); the failing DN codes are listed in ``done_failures``.

    **Matches**: ``[done.tasks."extract-*"] required_json_keys = ["id"]`` and a reply without an ``id`` key.
    **Does not match**: tasks no done-condition applies to.
    """

    code, name, outcome, signal = "DN00", "done_condition", "degraded", "done_condition"
    sub_reason_sql = "array_to_string(done_failures, ',')"
    groups = ("all", "degraded", "done")

    def predicate(self, cfg: Config) -> Compiled | None:
        return Compiled("(len(done_failures) > 0)") if cfg.done else None


@RULES.register
class OK00Ok(Rule):
    """Everything else: an answer with a normal ending that passes every done-condition.

    **Matches**: HTTP 200, ``end_turn``/``stop``/``STOP``, non-empty text, no refusal evidence.
    **Does not match**: anything an earlier rule matched.
    """

    code, name, outcome, signal = "OK00", "ok", "ok", "none"
    sub_reason_sql = "NULL"
    groups = ("all",)

    def predicate(self, cfg: Config) -> Compiled:
        return Compiled("true")
