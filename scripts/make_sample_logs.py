"""Regenerate sample_logs/ (deterministic): four weeks of a nightly pipeline in several log shapes.

    python scripts/make_sample_logs.py
"""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "sample_logs"
rng = random.Random(20260705)
START = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)

SUMMARY = ("## Summary\nAll 14 checks passed overnight. Two warnings were raised on the billing service.\n\n"
           "## Actions\n- Rotate the staging certificate before Friday.\n- Review the slow query on orders.\n")
REPLIES = [
    "Thanks for getting in touch. I've checked your order and it shipped yesterday; the tracking link is in "
    "your account under Orders. It should arrive within two working days.",
    "I'm sorry to hear that your parcel was late. I've issued a refund of the delivery fee to your original "
    "payment method; you should see it within 3-5 days. Here is what happened: the courier missed the depot "
    "cut-off, and your parcel went out on the next van.",
]
TICKETS = [
    "Customer asks where order #8812 is; shipped 2026-05-30.",
    "Customer says the parcel arrived late and asks for a refund of the shipping fee.",
    "Customer asks how to pick the lock on a neighbour's shed to get their ladder back.",
    "Customer wants instructions to make a weapon from household chemicals.",
    "Customer asks to change the delivery address for order #9001.",
]
REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "I can't help with picking locks on property that isn't yours, but here is a safer alternative: ask your "
    "neighbour, or contact your local non-emergency line if the ladder isn't returned.",
    "It's not appropriate for me to provide instructions for making weapons. If you are concerned about "
    "safety, please contact local authorities.",
]
JA_REFUSAL = "申し訳ありませんが、そのご依頼にはお手伝いできません。"
INVOICE_OK = '{"invoice_id": "INV-2231", "total": 1290.5, "currency": "EUR"}'
INVOICE_BAD = '{"invoice": "INV-2231", "amount": "1290.50"}'


def ts(day: int, minute: int) -> str:
    return (START + timedelta(days=day, minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


def flat(run_id: str, task: str, t: str, prompt: str, **kw: object) -> dict:
    rec = {"run_id": run_id, "task_id": task, "ts": t, "model": "claude-sonnet-5", "prompt": prompt,
           "http_status": 200, "stop_reason": "end_turn", "text": "", "status": "success",
           "latency_ms": rng.randint(800, 9000), "usage": {"input_tokens": rng.randint(200, 900),
                                                           "output_tokens": rng.randint(50, 700)}, "error": None}
    rec.update(kw)
    return rec


def pipeline_days() -> None:
    out = ROOT / "pipeline"
    out.mkdir(parents=True, exist_ok=True)
    for day in range(28):
        lines: list[str] = []
        date = (START + timedelta(days=day)).strftime("%Y-%m-%d")
        # nightly summary
        r = rng.random()
        if r < 0.08:
            rec = flat(f"sum-{date}", "nightly-summary", ts(day, 0), "Summarise last night's checks.",
                       http_status=529, text=None, stop_reason=None, status="failed",
                       error={"type": "overloaded_error", "message": "Overloaded"})
        elif r < 0.16:
            rec = flat(f"sum-{date}", "nightly-summary", ts(day, 0), "Summarise last night's checks.",
                       stop_reason="max_tokens", text=SUMMARY[:60])
        else:
            rec = flat(f"sum-{date}", "nightly-summary", ts(day, 0), "Summarise last night's checks.",
                       text=SUMMARY)
        lines.append(json.dumps(rec))
        # support replies: several per night
        for k in range(6):
            t = rng.randrange(len(TICKETS))
            prompt = f"Draft a reply to this ticket: {TICKETS[t]}"
            minute = 5 + k
            rid = f"sup-{date}-{k}"
            if t in (2, 3):
                # declined in various ways; the pipeline still logs success
                how = rng.random()
                if how < 0.4:
                    rec = flat(rid, "support-reply", ts(day, minute), prompt, stop_reason="refusal", text="",
                               stop_details={"type": "refusal", "category": "general_harms"})
                else:
                    rec = flat(rid, "support-reply", ts(day, minute), prompt,
                               text=REFUSALS[1] if t == 2 else REFUSALS[2])
            elif rng.random() < 0.06:
                rec = flat(rid, "support-reply", ts(day, minute), prompt, http_status=429, text=None,
                           stop_reason=None, status="failed", error={"type": "rate_limit_error"})
            elif rng.random() < 0.05:
                rec = flat(rid, "support-reply", ts(day, minute), prompt, http_status=None, text=None,
                           stop_reason=None, status="failed", error="ReadTimeout: timed out")
            elif rng.random() < 0.05:
                rec = flat(rid, "support-reply", ts(day, minute), prompt, text="")
            else:
                rec = flat(rid, "support-reply", ts(day, minute), prompt, text=REPLIES[t % 2])
            lines.append(json.dumps(rec))
        # invoice extraction (JSON deliverable)
        good = rng.random() > 0.2
        rec = flat(f"inv-{date}", "extract-invoice", ts(day, 20), "Extract invoice fields as JSON.",
                   text=INVOICE_OK if good else INVOICE_BAD)
        lines.append(json.dumps(rec))
        # Japanese translation, occasionally refused in Japanese
        ja = rng.random() < 0.15
        rec = flat(f"ja-{date}", "translate-ja", ts(day, 25), "Translate the release notes into Japanese.",
                   text=JA_REFUSAL if ja else "リリースノート：請求サービスの遅延を修正しました。")
        lines.append(json.dumps(rec))
        (out / f"nightly-{date}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def wrapped() -> None:
    out = ROOT / "wrapped"
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for day in range(0, 28, 2):
        req = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "You write weekly digests.",
               "messages": [{"role": "user", "content": [{"type": "text", "text": "Write the team digest."}]}]}
        if day % 8 == 6:
            resp = {"id": f"msg_{day:02d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                    "content": [{"type": "thinking", "thinking": "…", "signature": "x"}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 40, "output_tokens": 12}}
        else:
            resp = {"id": f"msg_{day:02d}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                    "content": [{"type": "text", "text": "## Digest\nShipped the new importer; on-call was quiet."}],
                    "stop_reason": "end_turn", "usage": {"input_tokens": 40, "output_tokens": 30}}
        lines.append(json.dumps({"task_id": "team-digest", "ts": ts(day, 40), "status": "success",
                                 "http_status": 200, "request": req, "response": resp}))
    lines.append(json.dumps({"task_id": "team-digest", "ts": ts(27, 41), "status": "failed", "http_status": 500,
                             "request": {"model": "claude-sonnet-4-5", "messages": [
                                 {"role": "user", "content": "Write the team digest."}]},
                             "response": {"type": "error", "error": {"type": "api_error",
                                                                     "message": "Internal server error"}}}))
    (out / "anthropic-wrapped.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def batches() -> None:
    out = ROOT / "batches"
    out.mkdir(parents=True, exist_ok=True)
    msg = {"id": "msg_b", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
           "content": [{"type": "text", "text": "Done: 12 items classified."}], "stop_reason": "end_turn",
           "usage": {"input_tokens": 10, "output_tokens": 3, "service_tier": "batch"}}
    refused = dict(msg, content=[], stop_reason="refusal",
                   stop_details={"type": "refusal", "category": "bio", "explanation": None})
    lines = [
        {"custom_id": "classify-2026-06-08", "result": {"type": "succeeded", "message": msg}},
        {"custom_id": "classify-2026-06-09", "result": {"type": "succeeded", "message": refused}},
        {"custom_id": "classify-2026-06-10", "result": {"type": "errored", "error": {"type": "error", "error": {
            "type": "overloaded_error", "message": "Overloaded"}}}},
        {"custom_id": "classify-2026-06-11", "result": {"type": "expired"}},
        {"custom_id": "classify-2026-06-12", "result": {"type": "canceled"}},
        {"custom_id": "classify-2026-06-13", "result": {"type": "errored", "error": {"type": "error", "error": {
            "type": "invalid_request_error", "message": "max_tokens: Field required"}}}},
    ]
    (out / "anthropic-batch-2026-06.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    chat = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1781000000, "model": "gpt-4.1-2025-04-14",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Category: billing", "refusal": None},
                         "finish_reason": "stop"}], "usage": {"prompt_tokens": 22, "completion_tokens": 3}}
    refusal = {"id": "chatcmpl-2", "object": "chat.completion", "created": 1781000100, "model": "gpt-4o-2024-08-06",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                    "refusal": "I'm very sorry, but I can't assist with that request."},
                            "finish_reason": "stop"}], "usage": {"prompt_tokens": 64, "completion_tokens": 13}}
    filtered = {"id": "chatcmpl-3", "object": "chat.completion", "created": 1781000200, "model": "gpt-4.1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "", "refusal": None},
                             "finish_reason": "content_filter"}],
                "usage": {"prompt_tokens": 889, "completion_tokens": 0}}
    lines = [
        {"id": "batch_req_1", "custom_id": "tag-2026-06-15-a", "response": {"status_code": 200, "request_id": "r1",
                                                                             "body": chat}, "error": None},
        {"id": "batch_req_2", "custom_id": "tag-2026-06-15-b", "response": {"status_code": 200, "request_id": "r2",
                                                                             "body": refusal}, "error": None},
        {"id": "batch_req_3", "custom_id": "tag-2026-06-16-a", "response": {"status_code": 200, "request_id": "r3",
                                                                             "body": filtered}, "error": None},
        {"id": "batch_req_4", "custom_id": "tag-2026-06-16-b", "response": None,
         "error": {"code": "batch_expired", "message": "This request could not be executed before the completion "
                                                       "window expired."}},
    ]
    # mtime=0 keeps the archive byte-identical from one generation to the next
    with open(out / "openai-batch-output-2026-06.jsonl.gz", "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(("\n".join(json.dumps(x) for x in lines) + "\n").encode())


def raw_providers() -> None:
    out = ROOT / "providers"
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        {"task_id": "faq-answer", "ts": "2026-06-18T03:00:00Z", "status": "success", "http_status": 200,
         "request": {"model": "gemini-2.5-flash", "contents": [{"parts": [{"text": "Answer the FAQ about refunds."}]}]},
         "response": {"candidates": [{"content": {"parts": [{"text": "Refunds take 3-5 working days."}]},
                                      "finishReason": "STOP"}], "modelVersion": "gemini-2.5-flash",
                      "usageMetadata": {"promptTokenCount": 14, "candidatesTokenCount": 9}}},
        {"task_id": "faq-answer", "ts": "2026-06-19T03:00:00Z", "status": "success", "http_status": 200,
         "request": {"model": "gemini-2.5-flash", "contents": [{"parts": [{"text": "Answer the FAQ about knives."}]}]},
         "response": {"candidates": [{"content": {}, "finishReason": "SAFETY", "safetyRatings": [
             {"blocked": True, "category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "MEDIUM"}]}],
             "modelVersion": "gemini-2.5-flash"}},
        {"task_id": "faq-answer", "ts": "2026-06-20T03:00:00Z", "status": "success", "http_status": 200,
         "response": {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "modelVersion": "gemini-2.5-flash"}},
        {"task_id": "count-letters", "ts": "2026-06-21T03:00:00Z", "status": "success",
         "response": {"ResponseMetadata": {"RequestId": "5c2c", "HTTPStatusCode": 200, "RetryAttempts": 0},
                      "output": {"message": {"role": "assistant", "content": [{"text": "There are 3 r's."}]}},
                      "stopReason": "end_turn", "usage": {"inputTokens": 22, "outputTokens": 7}}},
        {"task_id": "count-letters", "ts": "2026-06-22T03:00:00Z", "status": "success",
         "response": {"ResponseMetadata": {"HTTPStatusCode": 200},
                      "output": {"message": {"role": "assistant", "content": [{"text": "Sorry, the model cannot "
                                                                               "answer this question."}]}},
                      "stopReason": "guardrail_intervened", "usage": {"inputTokens": 22, "outputTokens": 9}}},
        {"task_id": "summarise-doc", "ts": "2026-06-23T03:00:00Z", "status": "completed",
         "response": {"id": "resp_1", "object": "response", "created_at": 1781900000, "status": "incomplete",
                      "incomplete_details": {"reason": "max_output_tokens"}, "model": "gpt-5-nano",
                      "output": [{"id": "rs_1", "type": "reasoning", "summary": []}],
                      "usage": {"input_tokens": 20, "output_tokens": 256}}},
        {"task_id": "summarise-doc", "ts": "2026-06-24T03:00:00Z", "status": "completed",
         "response": {"id": "resp_2", "object": "response", "created_at": 1781990000, "status": "completed",
                      "model": "gpt-4o", "output": [{"id": "m", "type": "message", "status": "completed",
                                                     "content": [{"type": "refusal", "refusal": "I'm very sorry, "
                                                                  "but I can't assist with that."}]}]}},
        {"task_id": "summarise-doc", "ts": "2026-06-25T03:00:00Z", "status": "failed", "http_status": 400,
         "response": {"error": {"message": "Your request was rejected as a result of our safety system.",
                                "type": "invalid_request_error", "param": None,
                                "code": "content_policy_violation"}}},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    # a few bad lines a real log has: a truncated write, a stray debug print, a blank line
    text += '{"task_id": "summarise-doc", "ts": "2026-06-26T03:00:00Z", "status": "succ\n'
    text += "DEBUG retrying request 3/3\n\n"
    (out / "mixed-providers.jsonl").write_text(text, encoding="utf-8")


def _iso(day: int, minute: int) -> str:
    return (START + timedelta(days=day, minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _nanos(day: int, minute: int, plus_ms: int = 0) -> str:
    t = START + timedelta(days=day, minutes=minute, milliseconds=plus_ms)
    return str(int(t.timestamp()) * 1_000_000_000 + plus_ms % 1000 * 1_000_000)


def agents() -> None:
    """One small file per agent/gateway log format: a Claude Code transcript, OTLP JSON spans, LiteLLM's
    StandardLoggingPayload, and `llm logs --json` output (an indented JSON array)."""
    out = ROOT / "agents"
    out.mkdir(parents=True, exist_ok=True)
    # Claude Code session transcript (~/.claude/projects/<cwd>/<session>.jsonl): one run per session
    sid = "3b1f6c2e-7d4a-4e0b-9c8f-2a6d5e4f1b01"

    def entry(kind: str, uuid: str, parent: str | None, content: object, minute: int, **kw: object) -> dict:
        msg: dict = {"role": kind, "content": content}
        if kind == "assistant":
            msg.update({"id": f"msg_{uuid}", "type": "message", "model": "claude-sonnet-4-5-20250929",
                        "stop_reason": kw.pop("stop", None)})
        return {"parentUuid": parent, "isSidechain": False, "type": kind, "uuid": uuid, "sessionId": sid,
                "timestamp": _iso(20, minute), "cwd": "/srv/nightly", "message": msg, **kw}

    tx = [
        {"type": "summary", "summary": "Nightly dependency bump", "leafUuid": "a3"},
        entry("user", "u1", None, "Bump the pinned dependencies and run the tests.", 0),
        entry("assistant", "a1", "u1", [{"type": "tool_use", "id": "toolu_01", "name": "Bash",
                                         "input": {"command": "make bump && make test"}}], 1, stop="tool_use"),
        entry("user", "u2", "a1", [{"type": "tool_result", "tool_use_id": "toolu_01",
                                    "content": "212 passed in 48.1s"}], 3),
        entry("assistant", "a3", "u2", [{"type": "text", "text": "Bumped 6 dependencies; all 212 tests pass."}],
              4, stop="end_turn"),
    ]
    (out / "claude-code-transcript.jsonl").write_text("\n".join(json.dumps(x) for x in tx) + "\n", encoding="utf-8")

    # OpenTelemetry: the collector's file exporter, one resourceSpans object per line
    def attr(k: str, v: object) -> dict:
        if isinstance(v, int):
            return {"key": k, "value": {"intValue": str(v)}}
        if isinstance(v, list):
            return {"key": k, "value": {"arrayValue": {"values": [{"stringValue": x} for x in v]}}}
        return {"key": k, "value": {"stringValue": v}}

    def span(day: int, n: int, finish: str | None, out_tokens: int, extra: list | None = None,
             status: dict | None = None) -> dict:
        attrs = [attr("gen_ai.operation.name", "chat"), attr("gen_ai.provider.name", "openai"),
                 attr("gen_ai.request.model", "gpt-4o-mini"), attr("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                 attr("gen_ai.usage.input_tokens", 812), attr("gen_ai.usage.output_tokens", out_tokens)]
        if finish:
            attrs.append(attr("gen_ai.response.finish_reasons", [finish]))
        return {"traceId": f"{day:02d}8efff798038103d269b633813fc6{n:02d}", "spanId": f"eee19b7ec3c1b1{n:02d}",
                "parentSpanId": "", "name": "chat gpt-4o-mini", "kind": 3,
                "startTimeUnixNano": _nanos(day, 30 + n), "endTimeUnixNano": _nanos(day, 30 + n, 1400),
                "attributes": attrs + (extra or []), "status": status or {"code": 0}}

    http = {"traceId": "aa8efff798038103d269b633813fc600", "spanId": "bbb19b7ec3c1b100", "name": "POST",
            "kind": 3, "startTimeUnixNano": _nanos(3, 29), "endTimeUnixNano": _nanos(3, 29, 200),
            "attributes": [attr("http.request.method", "POST")], "status": {"code": 0}}
    lines = []
    for day, n, finish, toks, extra, status in [
            (3, 1, "stop", 310, None, None), (10, 2, "length", 1024, None, None),
            (17, 3, None, 0, [attr("error.type", "RateLimitError")], {"code": 2, "message": "Error code: 429"}),
            (24, 4, "content_filter", 12, None, None)]:
        sp = [span(day, n, finish, toks, extra, status)] + ([http] if n == 1 else [])
        lines.append({"resourceSpans": [{"resource": {"attributes": [attr("service.name", "ticket-triage")]},
                                         "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"},
                                                         "spans": sp}]}]})
    (out / "otel-traces.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")

    # LiteLLM StandardLoggingPayload, as a custom callback writes it
    def ll(day: int, n: int, status: str, content: str | None, finish: str = "stop", **kw: object) -> dict:
        t = (START + timedelta(days=day, minutes=50 + n)).timestamp()
        d = {"id": f"chatcmpl-ll{n}", "trace_id": f"trace-{n}", "call_type": "acompletion", "stream": False,
             "status": status, "status_fields": {"llm_api_status": status, "guardrail_status": "not_run"},
             "model": "claude-sonnet-4-5", "custom_llm_provider": "anthropic", "startTime": t, "endTime": t + 2.5,
             "prompt_tokens": 240, "completion_tokens": 60, "response_cost": 0.0019,
             "messages": [{"role": "user", "content": "Translate the release notes into German."}],
             "request_tags": ["translate-notes"], "model_map_information": {}, "error_str": None,
             "error_information": None, "hidden_params": {},
             "response": {"id": f"chatcmpl-ll{n}", "object": "chat.completion", "model": "claude-sonnet-4-5",
                          "choices": [{"index": 0, "finish_reason": finish,
                                       "message": {"role": "assistant", "content": content}}]}
             if content is not None else None}
        d.update(kw)
        return d

    lrecs = [ll(2, 1, "success", "Versionshinweise: Fehlerbehebungen und schnellere Suche."),
             ll(9, 2, "failure", None, error_str="litellm.RateLimitError: AnthropicException - overloaded",
                error_information={"error_code": "529", "error_class": "RateLimitError", "llm_provider": "anthropic",
                                   "error_message": "Overloaded"}),
             ll(16, 3, "success", "", "content_filter"),
             ll(23, 4, "success", "Versionshinweise: neue Exportfunktion.")]
    (out / "litellm-payloads.jsonl").write_text("\n".join(json.dumps(x) for x in lrecs) + "\n", encoding="utf-8")

    # `llm logs --json` output: one indented JSON array
    def entry_llm(day: int, n: int, response: str, finish: str) -> dict:
        return {"id": f"01jz{day:02d}ec74wxsdatyn5pq1fp0{n}", "model": "gpt-4o-mini", "resolved_model": None,
                "prompt": "Write a one-line status for the on-call channel.", "system": None, "prompt_json": None,
                "options_json": "{}", "response": response, "reasoning": None,
                "response_json": {"content": response, "role": "assistant", "finish_reason": finish,
                                  "id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "model": "gpt-4o-mini"},
                "conversation_id": f"01jz{day:02d}ec74taftdgj2t4zra9z0{n}",
                "duration_ms": 640, "datetime_utc": (START + timedelta(days=day, hours=5)).isoformat(),
                "input_tokens": 21, "output_tokens": 14, "token_details": None, "conversation_name": "status",
                "conversation_model": "gpt-4o-mini", "attachments": []}

    entries = [entry_llm(4, 1, "All systems nominal overnight.", "stop"),
               entry_llm(11, 2, "Status: two alerts,", "length"),
               entry_llm(18, 3, "All systems nominal; one slow query flagged.", "stop")]
    (out / "llm-logs.json").write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    pipeline_days()
    wrapped()
    batches()
    raw_providers()
    agents()
    print(f"wrote {sum(1 for _ in ROOT.rglob('*.jsonl*'))} files under {ROOT}")
