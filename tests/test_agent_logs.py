"""Agent and gateway logs (issue 15): Claude Code / Agent SDK output and transcripts, OpenTelemetry GenAI spans
(OTLP JSON), LiteLLM's StandardLoggingPayload, simonw/llm's logs.db and ``llm logs --json``.

Fixtures are written by hand from the shapes in shared/LOG_FORMATS_FULL.md (sections 7, 8, 9.1, 9.3); each test
names the cause it checks: one run per session result or inference span, the right outcome for every ending,
nothing valid quarantined.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import runaudit.ingest.reader as reader
from runaudit.classify import classify
from runaudit.config import Config
from runaudit.ingest import ingest
from runaudit.store import Store
from tests.conftest import age, flat

SID = "5f0c9a7e-2b1d-4c43-9a51-0d3e7f6b2a10"


def write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return age(path)


def audit(store: Store, path: Path, cfg: Config | None = None) -> tuple[Any, list[dict[str, Any]]]:
    res = ingest(store, [path], cfg or Config())
    classify(store, cfg or Config())
    rows = store.query(
        "SELECT r.run_id, r.shape, r.provider, r.source_line, r.prompt, r.response_text, r.stop_reason_raw,"
        " r.http_status, r.error_type, r.model, r.session_id, r.cost_usd, r.turns, r.input_tokens, r.output_tokens,"
        " r.refusal_category, r.reported_status, r.notes, r.task_id, r.ts, r.latency_ms, c.outcome, c.rule_code,"
        " c.sub_reason, c.reported_success FROM runs r JOIN classifications c USING (rid)"
        " ORDER BY r.source_file, r.source_line, r.rid").to_dicts()
    return res, rows


def accounted(res: Any) -> None:
    assert res.lines == res.ingested + res.duplicates + res.blank + res.quarantined + res.not_calls, res


# --- Claude Code / Agent SDK (9.3) ---------------------------------------------------------------------------

def init(sid: str = SID, model: str = "claude-sonnet-4-5-20250929") -> dict[str, Any]:
    return {"type": "system", "subtype": "init", "session_id": sid, "uuid": f"i-{sid}", "model": model,
            "cwd": "/srv/nightly", "tools": ["Bash", "Read"], "mcp_servers": [], "permissionMode": "dontAsk",
            "apiKeySource": "ANTHROPIC_API_KEY", "claude_code_version": "2.1.240"}


def user(text: Any, sid: str = SID) -> dict[str, Any]:
    return {"type": "user", "session_id": sid, "uuid": "u", "parent_tool_use_id": None,
            "message": {"role": "user", "content": text}}


def assistant(blocks: list[dict[str, Any]], sid: str = SID, mid: str = "msg_1", model: str = "claude-sonnet-4-5",
              **extra: Any) -> dict[str, Any]:
    return {"type": "assistant", "session_id": sid, "uuid": f"a-{mid}", "parent_tool_use_id": None,
            "message": {"id": mid, "type": "message", "role": "assistant", "model": model, "content": blocks,
                        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 9}},
            **extra}


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def tool_use(name: str = "Bash", inp: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": "toolu_1", "name": name, "input": inp or {"command": "make check"}}


def result(sid: str = SID, subtype: str = "success", is_error: bool = False, res: str | None = "Done.",
           stop: str | None = "end_turn", **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "result", "subtype": subtype, "is_error": is_error, "duration_ms": 48211,
                         "duration_api_ms": 39120, "num_turns": 2, "stop_reason": stop, "session_id": sid,
                         "total_cost_usd": 0.0412, "usage": {"input_tokens": 6, "output_tokens": 97},
                         "modelUsage": {"claude-sonnet-4-5-20250929": {"inputTokens": 6, "outputTokens": 97}},
                         "permission_denials": [], "uuid": f"r-{sid}-{subtype}", **extra}
    if res is not None:
        d["result"] = res
    return d


def session(sid: str = SID, final: str = "All 14 checks passed; report written.", **res: Any) -> list[dict[str, Any]]:
    return [init(sid), user("Run the nightly checks and write the report.", sid),
            assistant([tool_use()], sid, "msg_1"),
            user([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "14 passed", "is_error": False}], sid),
            assistant([text(final)], sid, "msg_2"),
            result(sid, res=final, terminal_reason="completed", result_index=0, **res)]


def test_claude_stream_json_session_is_one_run_with_its_facts(store: Store, tmp_path: Path) -> None:
    res, rows = audit(store, write(tmp_path / "session.jsonl", session()))
    accounted(res)
    assert (res.quarantined, res.runs_added, res.ingested) == (0, 1, 6)
    r = rows[0]
    assert (r["shape"], r["provider"], r["outcome"], r["rule_code"]) == ("claude_code", "anthropic", "ok", "OK00")
    assert r["prompt"] == "Run the nightly checks and write the report."
    assert r["response_text"] == "All 14 checks passed; report written."
    assert (r["session_id"], r["cost_usd"], r["turns"], r["model"]) == (SID, 0.0412, 2, "claude-sonnet-4-5-20250929")
    assert (r["input_tokens"], r["output_tokens"], r["stop_reason_raw"]) == (6, 97, "end_turn")
    assert "api_calls:2" in r["notes"] and r["source_line"] == 1 and r["reported_success"]


def test_claude_sessions_interleaved_in_one_file_are_told_apart(store: Store, tmp_path: Path) -> None:
    a, b = session("sess-a", final="Report A written."), session("sess-b", final="Report B written.")
    lines = [x for pair in zip(a, b, strict=True) for x in pair]
    res, rows = audit(store, write(tmp_path / "two.jsonl", lines))
    accounted(res)
    assert res.quarantined == 0 and [r["session_id"] for r in rows] == ["sess-a", "sess-b"]
    assert [r["response_text"] for r in rows] == ["Report A written.", "Report B written."]


@pytest.mark.parametrize("window", [0, 400, 1100])
def test_claude_streaming_input_mode_one_run_per_result(store: Store, tmp_path: Path, monkeypatch: Any,
                                                        window: int) -> None:
    if window:
        monkeypatch.setattr(reader, "WINDOW_BYTES", window)
    turn2 = [init(), user("Now summarise the failures."), assistant([text("There were none.")], mid="msg_9"),
             result(res="There were none.", result_index=1, total_cost_usd=0.06)]
    res, rows = audit(store, write(tmp_path / "multi.jsonl", session() + turn2))
    accounted(res)
    assert [r["response_text"] for r in rows] == ["All 14 checks passed; report written.", "There were none."]
    assert rows[1]["prompt"] == "Now summarise the failures." and res.quarantined == 0


def test_claude_json_result_alone_and_verbose_array(store: Store, tmp_path: Path) -> None:
    lone = result(res="Summary: nothing to do.", terminal_reason="completed")
    arr = json.dumps(session("sess-arr", final="From the array."))
    res, rows = audit(store, write(tmp_path / "json.jsonl", [lone, arr]))
    accounted(res)
    assert res.quarantined == 0 and [r["outcome"] for r in rows] == ["ok", "ok"]
    assert rows[1]["response_text"] == "From the array." and rows[1]["session_id"] == "sess-arr"
    assert rows[1]["prompt"] == "Run the nightly checks and write the report."


@pytest.mark.parametrize(("res_kw", "extra_lines", "outcome", "code", "sub"), [
    ({"subtype": "error_max_turns", "is_error": True, "res": None, "stop": "tool_use", "terminal_reason": "max_turns",
      "errors": ["Reached maximum number of turns (10)"]}, [], "degraded", "DG07", "max_turns"),
    ({"subtype": "error_max_budget_usd", "is_error": True, "res": None}, [], "degraded", "DG07", "budget"),
    ({"subtype": "error_max_structured_output_retries", "is_error": True, "res": None}, [], "degraded", "DG04",
     None),
    ({"terminal_reason": "prompt_too_long", "res": "", "stop": None}, [], "degraded", "DG01", "context_window"),
    ({"terminal_reason": "hook_stopped"}, [], "degraded", "DG03", "hook_stopped"),
    ({"terminal_reason": "blocking_limit"}, [], "degraded", "DG04", "unknown:blocking_limit"),
    ({"terminal_reason": "aborted_streaming"}, [], "infra_error", "IN07", "aborted"),
    ({"stop": "max_tokens", "res": "The report is"}, [], "degraded", "DG01", "max_tokens"),
    ({"stop": "refusal", "res": "I started to"}, [], "declined", "DE01", "refusal"),
    ({"res": ""}, [], "degraded", "DG02", "empty"),
    ({"res": "I'm sorry, but I can't help with writing that exploit."}, [], "declined", "DE10", "text_refusal"),
    ({"subtype": "success", "is_error": True, "api_error_status": 529, "terminal_reason": "api_error", "stop": None,
      "res": 'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'},
     [{"type": "assistant", "session_id": SID, "uuid": "syn", "parent_tool_use_id": None, "error": "overloaded",
       "message": {"role": "assistant", "model": "<synthetic>", "content": [text(
           'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')],
                   "stop_reason": None}}], "infra_error", "IN02", "overloaded"),
    ({"subtype": "success", "is_error": True, "stop": None, "res": "API Error: 429 rate limited"}, [],
     "infra_error", "IN01", "rate_limited"),
    ({"subtype": "success", "is_error": True, "stop": None, "res": "You've hit your limit · resets 3pm (UTC)"},
     [{"type": "assistant", "session_id": SID, "uuid": "syn2", "parent_tool_use_id": None, "error": "rate_limit",
       "message": {"role": "assistant", "model": "<synthetic>", "content": [text(
           "You've hit your limit · resets 3pm (UTC)")], "stop_reason": None}}], "infra_error", "CL01", "quota"),
    ({"subtype": "error_during_execution", "is_error": True, "res": None, "startup_failure_reason":
      "config_file_invalid"}, [], "infra_error", "CL01", "config"),
    ({"subtype": "error_during_execution", "is_error": True, "res": None, "errors": ["tool runner crashed"]}, [],
     "infra_error", "IN08", "harness"),
    ({}, [{"type": "system", "subtype": "model_refusal_no_fallback", "session_id": SID, "uuid": "nf",
           "original_model": "claude-opus-4", "request_id": "req_1", "api_refusal_category": "cyber",
           "api_refusal_explanation": "policy", "content": ""}], "declined", "DE01", "cyber"),
])
def test_claude_every_ending(store: Store, tmp_path: Path, res_kw: dict[str, Any], extra_lines: list[Any],
                             outcome: str, code: str, sub: str | None) -> None:
    kw = dict(res_kw)
    args = {k: kw.pop(k) for k in ("subtype", "is_error", "res", "stop") if k in kw}
    lines = [init(), user("Write the nightly report."), assistant([text("Working on it.")]), *extra_lines,
             result(**args, **kw)]
    res, rows = audit(store, write(tmp_path / "end.jsonl", lines))
    accounted(res)
    assert res.quarantined == 0 and len(rows) == 1
    r = rows[0]
    assert (r["outcome"], r["rule_code"]) == (outcome, code), r
    if sub is not None:
        assert r["sub_reason"] == sub, r


def test_claude_killed_session_without_result_is_infra(store: Store, tmp_path: Path) -> None:
    lines = [init(), user("Write the report."), assistant([tool_use()], aborted=True)]
    res, rows = audit(store, write(tmp_path / "killed.jsonl", lines))
    accounted(res)
    assert [(r["outcome"], r["rule_code"], r["sub_reason"]) for r in rows] == [("infra_error", "IN07", "no_result")]
    assert "session_without_result" in rows[0]["notes"] and "aborted" in rows[0]["notes"]


def test_claude_refusal_in_structured_output_and_flags(store: Store, tmp_path: Path) -> None:
    r1 = result(res="", structured_output={"answer": "I'm sorry, but I can't help with that request.",
                                           "confidence": 0},
                permission_denials=[{"tool_name": "Bash", "tool_use_id": "t", "tool_input": {"command": "rm"}}])
    lines = [init(), user("Extract the fields."),
             {"type": "system", "subtype": "api_retry", "session_id": SID, "attempt": 1, "max_retries": 10,
              "retry_delay_ms": 500, "error_status": 529, "error": "overloaded"},
             {"type": "system", "subtype": "model_refusal_fallback", "session_id": SID, "uuid": "fb",
              "original_model": "claude-opus-4", "fallback_model": "claude-sonnet-4-5"},
             assistant([text("{}")]), r1]
    res, rows = audit(store, write(tmp_path / "so.jsonl", lines))
    r = rows[0]
    assert (r["outcome"], r["rule_code"]) == ("declined", "DE10"), r
    assert json.loads(r["response_text"])["confidence"] == 0
    assert {"permission_denials:1", "api_retries:1", "refusal_fallback"} <= set(r["notes"])
    assert r["reported_success"]  # the harness said success: a false success


def test_claude_trailing_informational_lines_are_counted_not_quarantined(store: Store, tmp_path: Path) -> None:
    lines = [*session(), {"type": "rate_limit_event", "session_id": SID, "uuid": "rl",
                          "rate_limit_info": {"status": "allowed_warning", "resetsAt": 1767225600}},
             {"type": "system", "subtype": "status", "session_id": SID, "uuid": "st", "status": "idle"},
             {"type": "some_future_type", "session_id": SID, "uuid": "fx"}]
    res, rows = audit(store, write(tmp_path / "trail.jsonl", lines))
    accounted(res)
    assert (res.quarantined, res.not_calls, len(rows)) == (0, 3, 1)


def test_claude_python_sdk_result_dump_without_type(store: Store, tmp_path: Path) -> None:
    dump = {k: v for k, v in result(res="Fine.").items() if k != "type"}
    res, rows = audit(store, write(tmp_path / "sdk.jsonl", [dump]))
    assert res.quarantined == 0 and rows[0]["shape"] == "claude_code" and rows[0]["outcome"] == "ok"


def tx(kind: str, uuid: str, parent: str | None, content: Any, sid: str = "tx-1", **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": kind, "content": content}
    if kind == "assistant":
        msg.update({"id": f"m-{uuid}", "type": "message", "model": "claude-sonnet-4-5"})
    return {"type": kind, "uuid": uuid, "parentUuid": parent, "sessionId": sid, "isSidechain": False,
            "timestamp": "2026-11-20T03:00:00.000Z", "cwd": "/srv", "message": msg, **extra}


@pytest.mark.parametrize(("last", "outcome", "code"), [
    (lambda: tx("assistant", "a2", "u2", [text("Done: 3 files fixed.")], message_stop="end_turn"), "ok", "OK00"),
    (lambda: tx("assistant", "a2", "u2", [text('API Error: 500 {"type":"error","error":{"type":"api_error"}}')],
                isApiErrorMessage=True), "infra_error", "IN04"),
    (lambda: tx("assistant", "a2", "u2", [tool_use()]), "degraded", "DG03"),
])
def test_claude_transcript_one_run_per_session(store: Store, tmp_path: Path, last: Any, outcome: str,
                                               code: str) -> None:
    end = last()
    stop = end.pop("message_stop", None)
    end["message"]["stop_reason"] = stop if stop else ("tool_use" if end["message"]["content"][0]["type"] ==
                                                        "tool_use" else None)
    lines = [{"type": "summary", "summary": "Nightly fixes", "leafUuid": "a2"},
             tx("user", "u1", None, "Fix the lint errors."),
             tx("assistant", "a1", "u1", [tool_use()]) | {},
             tx("user", "u2", "a1", [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]), end]
    lines[2]["message"]["stop_reason"] = "tool_use"
    res, rows = audit(store, write(tmp_path / "tx-1.jsonl", lines))
    accounted(res)
    assert (res.quarantined, res.not_calls, len(rows)) == (0, 1, 1)
    r = rows[0]
    assert (r["outcome"], r["rule_code"], r["session_id"]) == (outcome, code, "tx-1"), r
    assert r["prompt"] == "Fix the lint errors." and "claude_code_transcript" in r["notes"]
    assert str(r["ts"]).startswith("2026-11-20")


# --- OpenTelemetry GenAI, OTLP JSON (7) ------------------------------------------------------------------------

def sv(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [sv(x) for x in v]}}
    return {"stringValue": v}


def span(name: str, attrs: dict[str, Any], span_id: str = "EEE19B7EC3C1B174", status: dict[str, Any] | None = None,
         events: list[dict[str, Any]] | None = None, trace: str = "5B8EFFF798038103D269B633813FC60C") -> dict[str, Any]:
    return {"traceId": trace, "spanId": span_id, "parentSpanId": "", "name": name, "kind": 3,
            "startTimeUnixNano": "1763607600000000000", "endTimeUnixNano": "1763607601250000000",
            "attributes": [{"key": k, "value": sv(v)} for k, v in attrs.items()],
            "events": events or [], "status": status or {"code": 0}}


def otlp(*spans: dict[str, Any], service: str = "nightly-pipeline") -> dict[str, Any]:
    return {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": sv(service)}]},
                               "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2",
                                                         "version": "2.1b0"}, "spans": list(spans)}]}]}


def chat(finish: str | None = "stop", span_id: str = "EEE19B7EC3C1B174", provider: str = "openai",
         output: str | None = None, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                             "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                             "gen_ai.usage.input_tokens": 812, "gen_ai.usage.output_tokens": 64}
    if finish is not None:
        attrs["gen_ai.response.finish_reasons"] = [finish]
    if output is not None:
        attrs["gen_ai.output.messages"] = json.dumps([{"role": "assistant", "parts": [{"type": "text",
                                                                                      "content": output}],
                                                       "finish_reason": finish or "stop"}])
        attrs["gen_ai.input.messages"] = json.dumps([{"role": "user", "parts": [{"type": "text",
                                                                                 "content": "Summarise the log."}]}])
    attrs.update(extra.pop("attrs", {}))
    return span("chat gpt-4o-mini", attrs, span_id=span_id, **extra)


HTTP = span("GET /v1/models", {"http.request.method": "GET", "http.response.status_code": 200},
            span_id="AAAAAAAAAAAAAAAA")


def test_otel_each_inference_span_is_a_run_other_spans_counted(store: Store, tmp_path: Path) -> None:
    lines = [otlp(chat("length", span_id="0000000000000001"), HTTP,
                  chat("stop", span_id="0000000000000002", output="Three errors, all fixed.")),
             otlp(HTTP), otlp(span("execute_tool lookup", {"gen_ai.operation.name": "execute_tool"}))]
    res, rows = audit(store, write(tmp_path / "traces.jsonl", lines))
    accounted(res)
    assert (res.quarantined, res.not_calls, res.runs_added, res.spans_other) == (0, 2, 2, 3)
    assert [r["source_line"] for r in rows] == [1, 1]
    assert [(r["outcome"], r["rule_code"]) for r in rows] == [("degraded", "DG01"), ("ok", "OK00")]
    r = rows[1]
    assert (r["shape"], r["provider"], r["model"], r["task_id"]) == ("otel_span", "openai", "gpt-4o-mini-2024-07-18",
                                                                     "nightly-pipeline")
    assert (r["response_text"], r["prompt"], r["input_tokens"], r["latency_ms"]) == (
        "Three errors, all fixed.", "Summarise the log.", 812, 1250.0)
    assert r["session_id"] == "5b8efff798038103d269b633813fc60c" and r["run_id"] == "0000000000000002"
    again = ingest(store, [tmp_path / "traces.jsonl"])
    assert again.runs_added == 0


def test_otel_spans_are_numbered_across_resources_and_scopes(store: Store, tmp_path: Path) -> None:
    """A line's spans are parts 1, 2, ... in the order of resources, then scopes, then spans (the part is half of
    a run's identity in its file); a resource with no attributes, a scope with no spans and a line with no list of
    resources change nothing around them."""
    ids = [f"{i:016X}" for i in range(1, 6)]
    line = {"resourceSpans": [
        {"scopeSpans": [{"spans": [chat(span_id=ids[0]), HTTP]}, {"scope": {"name": "empty"}, "spans": []}]},
        {"resource": {"attributes": [{"key": "service.name", "value": sv("second")}]},
         "scopeSpans": [{"scope": {"name": "a"}, "spans": [chat(span_id=ids[1])]},
                        {"scope": {"name": "b"}, "spans": [chat(span_id=ids[2]), chat(span_id=ids[3])]}]}]}
    res, rows = audit(store, write(tmp_path / "t.jsonl", [line, {"resourceSpans": {"not": "a list"}},
                                                          otlp(chat(span_id=ids[4]))]))
    accounted(res)
    assert res.runs_added == 5 and res.spans_other == 1
    got = store.rows("SELECT run_id, source_line, record_occ, raw FROM runs ORDER BY source_line, rid")
    assert [(g[0], g[1]) for g in got] == [(i.lower(), 1) for i in ids[:4]] + [(ids[4].lower(), 3)]
    first = json.loads(got[0][3])
    assert first["resource"] == {} and first["scope"] is None  # neither was logged
    assert json.loads(got[1][3])["resource"] == {"service.name": "second"}
    assert [json.loads(g[3])["scope"]["name"] for g in got[1:4]] == ["a", "b", "b"]
    assert {r["task_id"] for r in rows if r["run_id"] != ids[0].lower()} >= {"second"}


@pytest.mark.parametrize(("sp", "outcome", "code"), [
    (chat(None, attrs={"error.type": "RateLimitError"}, status={"code": 2, "message": "Error code: 429 - slow down"}),
     "infra_error", "IN01"),
    (chat(None, attrs={"error.type": "APITimeoutError"}, status={"code": 2}), "infra_error", "IN03"),
    (chat(None, attrs={"error.type": "NotFoundError"}, status={"code": 2, "message": "model not found"}),
     "infra_error", "CL01"),
    (chat(None, attrs={"error.type": "ContentPolicyViolationError"}, status={"code": "STATUS_CODE_ERROR"}),
     "declined", "DE06"),
    (chat(None, status={"code": 2, "message": "boom"}), "infra_error", "IN08"),
    (chat("error"), "infra_error", "IN07"),
    (chat("content_filter"), "declined", "DE03"),
    (chat("safety", provider="gcp.gemini"), "declined", "DE03"),
    (chat("stop"), "ok", "OK00"),  # content capture off: not an empty answer
    (chat("stop", output=""), "degraded", "DG02"),
    (chat("stop", output="I'm sorry, but I can't help with that request."), "declined", "DE10"),
    (span("chat claude", {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-haiku",
                          "gen_ai.completion.0.content": "Here is the summary you asked for: all good.",
                          "gen_ai.completion.0.finish_reason": "end_turn", "gen_ai.prompt.0.content": "Summarise"}),
     "ok", "OK00"),
])
def test_otel_span_outcomes(store: Store, tmp_path: Path, sp: dict[str, Any], outcome: str, code: str) -> None:
    res, rows = audit(store, write(tmp_path / "t.jsonl", [otlp(sp)]))
    assert res.quarantined == 0 and len(rows) == 1
    assert (rows[0]["outcome"], rows[0]["rule_code"]) == (outcome, code), rows[0]


def test_otel_base64_ids_and_content_event(store: Store, tmp_path: Path) -> None:
    ev = {"timeUnixNano": "1763607601000000000", "name": "gen_ai.client.inference.operation.details",
          "attributes": [{"key": "gen_ai.output.messages", "value": sv(json.dumps(
              [{"role": "assistant", "parts": [{"type": "text", "content": "Report ready."}],
                "finish_reason": "stop"}]))}]}
    sp = chat("stop", span_id="7uGbfsPBsXQ=", trace="W47/95gDgQPSabYzgT/GDA==", events=[ev])
    _, rows = audit(store, write(tmp_path / "b64.jsonl", [otlp(sp)]))
    assert rows[0]["run_id"] == "eee19b7ec3c1b174" and rows[0]["session_id"] == "5b8efff798038103d269b633813fc60c"
    assert rows[0]["response_text"] == "Report ready."


# --- LiteLLM StandardLoggingPayload (9.1) ----------------------------------------------------------------------

def litellm(status: str = "success", content: str | None = "Done: report attached.", finish: str = "stop",
            **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": "chatcmpl-ll1", "trace_id": "tr-1", "call_type": "acompletion", "stream": False, "status": status,
        "status_fields": {"llm_api_status": status, "guardrail_status": "not_run"},
        "model": "claude-sonnet-4-5", "model_group": "claude", "custom_llm_provider": "anthropic",
        "startTime": 1763607600.25, "endTime": 1763607602.75, "prompt_tokens": 120, "completion_tokens": 33,
        "response_cost": 0.0021, "messages": [{"role": "user", "content": "Write the nightly summary."}],
        "model_map_information": {}, "metadata": {}, "request_tags": ["nightly-summary"],
        "error_str": None, "error_information": None, "hidden_params": {},
        "response": {"id": "chatcmpl-ll1", "object": "chat.completion", "model": "claude-sonnet-4-5",
                     "choices": [{"index": 0, "finish_reason": finish,
                                  "message": {"role": "assistant", "content": content}}]} if content is not None
        else None}
    d.update(extra)
    return d


@pytest.mark.parametrize(("rec", "outcome", "code"), [
    (litellm(), "ok", "OK00"),
    (litellm("failure", None, error_str="litellm.RateLimitError: AnthropicException - rate limited",
             error_information={"error_code": "429", "error_class": "RateLimitError", "llm_provider": "anthropic",
                                "error_message": "rate limited"}), "infra_error", "IN01"),
    (litellm("failure", None, error_information={"error_class": "ContextWindowExceededError",
                                                 "error_message": "prompt is too long"}), "infra_error", "CL01"),
    (litellm("failure", None, error_information={"error_class": "ContentPolicyViolationError",
                                                 "error_message": "blocked"}), "declined", "DE06"),
    (litellm("failure", None, error_information={"error_class": "ServiceUnavailableError"}), "infra_error", "IN02"),
    (litellm(status_fields={"llm_api_status": "success", "guardrail_status": "guardrail_intervened"},
             guardrail_information=[{"guardrail_name": "pii-guard", "guardrail_status": "guardrail_intervened"}]),
     "declined", "DE04"),
    (litellm(content="", finish="content_filter",
             hidden_params={"original_response": json.dumps({"type": "message", "role": "assistant",
                                                              "content": [], "stop_reason": "refusal"})}),
     "declined", "DE01"),
    (litellm(content="", finish="content_filter"), "declined", "DE03"),
    (litellm(content="The summary is", finish="length"), "degraded", "DG01"),
    ({"standard_logging_object": litellm(content="I can't help with that.")}, "declined", "DE10"),
])
def test_litellm_payload_outcomes(store: Store, tmp_path: Path, rec: dict[str, Any], outcome: str,
                                  code: str) -> None:
    res, rows = audit(store, write(tmp_path / "ll.jsonl", [rec]))
    assert res.quarantined == 0 and len(rows) == 1
    r = rows[0]
    assert (r["shape"], r["outcome"], r["rule_code"]) == ("litellm", outcome, code), r
    assert (r["task_id"], r["session_id"], r["provider"]) == ("nightly-summary", "tr-1", "anthropic")
    assert r["latency_ms"] == 2500.0 and r["prompt"] == "Write the nightly summary."


def test_litellm_folded_finish_reason_is_noted(store: Store, tmp_path: Path) -> None:
    _, rows = audit(store, write(tmp_path / "ll.jsonl", [litellm(content="", finish="content_filter")]))
    assert "finish_reason_folded_by_litellm" in rows[0]["notes"]
    assert rows[0]["reported_status"] == "success" and rows[0]["reported_success"]


# --- simonw/llm (8) --------------------------------------------------------------------------------------------

def llm_entry(i: int, response: str, response_json: Any = None, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"id": f"01jm8ec74wxsdatyn5pq1fp0s{i}", "model": model, "resolved_model": None, "prompt": "Summarise",
            "system": "Be brief.", "prompt_json": None, "options_json": "{}", "response": response,
            "reasoning": None, "response_json": response_json, "conversation_id": "01jm8ec74taftdgj2t4zra9z0j",
            "duration_ms": 560, "datetime_utc": "2025-02-16T22:34:30.374882+00:00", "input_tokens": 8,
            "output_tokens": 12, "token_details": None, "conversation_name": "hi",
            "conversation_model": model, "attachments": []}


LLM_ENTRIES = [
    llm_entry(1, "All good.", {"content": "All good.", "role": "assistant", "finish_reason": "stop",
                              "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}),
    llm_entry(2, "The answer is", {"id": "chatcmpl-2", "object": "chat.completion", "model": "gpt-4o-mini",
                                   "choices": [{"index": 0, "finish_reason": "length",
                                                "message": {"role": "assistant", "content": "The answer is"}}]}),
    llm_entry(3, "", {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                      "stop_reason": "refusal"}, model="anthropic/claude-3-haiku-20240307"),
    llm_entry(4, "I'm sorry, but I can't help with that."),
]


def test_llm_logs_json_array_indented(store: Store, tmp_path: Path) -> None:
    p = tmp_path / "llm-logs.json"
    p.write_text(json.dumps(LLM_ENTRIES, indent=2), encoding="utf-8")
    res, rows = audit(store, age(p))
    accounted(res)
    assert (res.lines, res.quarantined) == (4, 0)
    assert [(r["shape"], r["rule_code"]) for r in rows] == [("llm_log", "OK00"), ("llm_log", "DG01"),
                                                            ("llm_log", "DE01"), ("llm_log", "DE10")]
    assert rows[0]["prompt"] == "Be brief.\n\nSummarise" and rows[0]["session_id"] == "01jm8ec74taftdgj2t4zra9z0j"


def make_llm_db(path: Path, entries: list[dict[str, Any]]) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, name TEXT, model TEXT)")
    con.execute("CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, model TEXT, resolved_model TEXT, "
                "prompt TEXT, system TEXT, prompt_json TEXT, options_json TEXT, response TEXT, reasoning TEXT, "
                "response_json TEXT, conversation_id TEXT REFERENCES conversations(id), duration_ms INTEGER, "
                "datetime_utc TEXT, input_tokens INTEGER, output_tokens INTEGER, token_details TEXT, schema_id TEXT)")
    con.execute("INSERT OR IGNORE INTO conversations VALUES ('01jm8ec74taftdgj2t4zra9z0j', 'hi', 'gpt-4o-mini')")
    for e in entries:
        con.execute("INSERT INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [e["id"], e["model"], None, e["prompt"], e["system"], None, "{}", e["response"], None,
                     json.dumps(e["response_json"]) if e["response_json"] is not None else None,
                     e["conversation_id"], 560, e["datetime_utc"], 8, 12, None, None])
    con.commit()
    con.close()


def test_llm_logs_db_read_directly_and_incrementally(store: Store, tmp_path: Path) -> None:
    db = tmp_path / "io.datasette.llm" / "logs.db"
    db.parent.mkdir()
    make_llm_db(db, LLM_ENTRIES[:3])
    res, rows = audit(store, db.parent)  # a folder holding logs.db
    accounted(res)
    assert (res.lines, res.runs_added) == (3, 3)
    assert [r["rule_code"] for r in rows] == ["OK00", "DG01", "DE01"] and rows[0]["source_line"] == 1
    make_llm_db(db, LLM_ENTRIES[3:])
    res2 = ingest(store, [db])
    assert (res2.runs_added, res2.lines, res2.duplicates) == (1, 4, 3)
    res3 = ingest(store, [db])
    assert (res3.runs_added, res3.per_file[0].mode) == (0, "unchanged")


def test_sqlite_that_is_not_llm_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    res = ingest(store, [db])
    assert res.errors and "not an llm logs database" in res.errors[0]["error"]


def test_otel_span_without_content_fails_no_done_condition(store: Store, tmp_path: Path) -> None:
    from runaudit.config import parse_config

    cfg = parse_config({"done": {"min_chars": 40}})
    _, rows = audit(store, write(tmp_path / "t.jsonl", [otlp(chat("stop"), chat("stop", span_id="2" * 16,
                                                                                 output="Too short."))]), cfg)
    assert [(r["rule_code"], "content_not_captured" in r["notes"]) for r in rows] == [("OK00", True),
                                                                                      ("DN00", False)]


def test_valid_records_without_calls_are_not_quarantined(store: Store, tmp_path: Path) -> None:
    lines = [{"type": "file-history-snapshot", "messageId": "m1", "snapshot": {}, "isSnapshotUpdate": False},
             {"type": "summary", "summary": "Fixes", "leafUuid": "x"},
             {"resourceLogs": [{"resource": {}, "scopeLogs": []}]},
             {"resourceMetrics": [{"resource": {}, "scopeMetrics": []}]}]
    res, rows = audit(store, write(tmp_path / "misc.jsonl", lines))
    accounted(res)
    assert (res.quarantined, res.not_calls, rows) == (0, 4, [])


def test_litellm_failure_class_from_error_str(store: Store, tmp_path: Path) -> None:
    rec = litellm("failure", None, error_str="litellm.Timeout: Connection timed out after 600.0 seconds.")
    _, rows = audit(store, write(tmp_path / "ll.jsonl", [rec]))
    assert (rows[0]["error_type"], rows[0]["rule_code"]) == ("Timeout", "IN03")


def test_transcript_being_written_is_held_until_its_reply_ends(store: Store, tmp_path: Path) -> None:
    p = tmp_path / "live.jsonl"
    head = [tx("user", "u1", None, "Fix the lint errors."), tx("assistant", "a1", "u1", [tool_use()])]
    head[1]["message"]["stop_reason"] = "tool_use"
    p.write_text("".join(json.dumps(x) + "\n" for x in head), encoding="utf-8")  # fresh: still being written
    res = ingest(store, [p])
    assert (res.runs_added, res.held) == (0, 2)
    done = tx("assistant", "a2", "a1", [text("Fixed 3 files.")])
    done["message"]["stop_reason"] = "end_turn"
    with p.open("a", encoding="utf-8") as f:
        f.write(json.dumps(done) + "\n")
    res = ingest(store, [p])
    assert (res.runs_added, res.held, res.quarantined) == (1, 0, 0)
    assert store.scalar("SELECT response_text FROM runs") == "Fixed 3 files."


def test_a_log_that_starts_like_sqlite_is_read_as_lines(store: Store, tmp_path: Path) -> None:
    """Only a whole SQLite header makes a file a database: a log whose first bytes are the magic string (and
    nothing a database header holds after it) is read line by line, each line accounted for."""
    import shutil

    from runaudit.ingest.llm_db import is_sqlite

    log = tmp_path / "odd.jsonl"
    log.write_bytes(b"SQLite format 3\x00" + b"\n" + json.dumps(flat(run_id="a")).encode() + b"\n")
    res = ingest(store, [age(log)])
    accounted(res)
    assert not res.errors and (res.lines, res.runs_added, res.quarantined) == (2, 1, 1)
    short = tmp_path / "short.jsonl"
    short.write_bytes(b"SQLite format 3\x00")  # the magic alone, no newline
    res = ingest(store, [age(short)])
    # the same bytes as the first line of odd.jsonl, already quarantined: a duplicate
    assert not res.errors and (res.lines, res.duplicates) == (1, 1)
    # a real database, and one whose header is whole but whose body is cut off
    db = tmp_path / "logs.db"
    make_llm_db(db, LLM_ENTRIES[:1])
    assert is_sqlite(str(db))
    cut = tmp_path / "cut.db"
    shutil.copy(db, cut)
    with cut.open("r+b") as f:
        f.truncate(100)
    assert is_sqlite(str(cut))
    res = ingest(store, [cut])
    assert res.errors and res.lines == 0
