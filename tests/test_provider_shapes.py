"""Real provider shapes (issue 13): one run per call for Gemini and Azure streams, Responses error events inside
their stream, identity that never merges two calls, and the tool payload kept for a reviewer.

Fixtures are written by hand from the shapes in shared/LOG_FORMATS_FULL.md (sections 4.4, 4.5, 5, 5.1, 12.2).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import runaudit.ingest.reader as reader
from runaudit.classify import classify
from runaudit.config import Config
from runaudit.ingest import ingest
from runaudit.store import Store
from tests.conftest import age, flat


def write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return age(path)


def runs(store: Store) -> list[dict[str, Any]]:
    return store.query("SELECT r.run_id, r.shape, r.source_line, r.response_text, r.stop_reason_raw, r.output_tokens, "
                       "r.tool_payload, r.notes, c.outcome, c.rule_code, c.sub_reason FROM runs r "
                       "JOIN classifications c USING (rid) ORDER BY r.source_file, r.source_line").to_dicts()


def gchunk(rid: str, text: str | None = None, finish: str | None = None, out_tokens: int = 0,
           thought: bool = False, **extra: Any) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text, **({"thought": True} if thought
                                                                                      else {})}]
                                        if text is not None else []}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    return {"candidates": [cand], "modelVersion": "gemini-2.5-flash", "responseId": rid,
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": out_tokens}, **extra}


GEMINI_OK = [gchunk("g-ok", "thinking about it", thought=True), gchunk("g-ok", "The capital ", out_tokens=3),
             gchunk("g-ok", "of France is Paris.", out_tokens=8), gchunk("g-ok", "", "STOP", out_tokens=8)]
GEMINI_SAFETY = [gchunk("g-safe", "Step one: obtain", out_tokens=4),
                 {"candidates": [{"content": {}, "finishReason": "SAFETY", "index": 0,
                                  "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                                                     "probability": "HIGH", "blocked": True}]}],
                  "responseId": "g-safe", "modelVersion": "gemini-2.5-flash"}]
GEMINI_REFUSAL = [gchunk("g-ref", "I'm sorry, but I can't help with ", out_tokens=6),
                  gchunk("g-ref", "making weapons.", "STOP", out_tokens=9)]
GEMINI_CUT = [gchunk("g-cut", "Once upon a time", out_tokens=4), gchunk("g-cut", " there was", out_tokens=6)]
GEMINI_LONE = gchunk("g-lone", "A lone, non-streamed answer.", "STOP", out_tokens=6)


@pytest.mark.parametrize("window", [0, 300, 700, 1500])
def test_gemini_stream_chunks_per_line_are_one_run_each(store: Store, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, window: int) -> None:
    lines = GEMINI_OK + [flat(run_id="between")] + GEMINI_SAFETY + GEMINI_REFUSAL + [GEMINI_LONE] + GEMINI_CUT
    if window:
        monkeypatch.setattr(reader, "WINDOW_BYTES", window)
    res = ingest(store, [write(tmp_path / "g.jsonl", lines)])
    classify(store, Config())
    assert (res.lines, res.ingested, res.runs_added, res.quarantined) == (len(lines), len(lines), 6, 0)
    got = [(r["shape"], r["outcome"], r["rule_code"]) for r in runs(store)]
    assert got == [("gemini_stream", "ok", "OK00"), ("flat", "ok", "OK00"), ("gemini_stream", "declined", "DE03"),
                   ("gemini_stream", "declined", "DE10"), ("gemini", "ok", "OK00"),
                   ("gemini_stream", "infra_error", "IN07")]
    ok = runs(store)[0]
    assert ok["response_text"] == "The capital of France is Paris."  # the thought part is not the deliverable
    assert ok["output_tokens"] == 8  # cumulative usage: the last chunk's, not a sum
    assert runs(store)[2]["sub_reason"] == "harm_category_dangerous_content"


def test_gemini_stream_as_sse_and_as_one_json_array(store: Store, tmp_path: Path) -> None:
    sse = tmp_path / "g.sse.jsonl"
    sse.write_text("".join(f"data: {json.dumps(c)}\r\n\r\n" for c in GEMINI_REFUSAL), encoding="utf-8")
    arr = tmp_path / "g.array.jsonl"
    # streamGenerateContent without alt=sse: the body is one JSON array; one call per line
    blocked = [{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 5}}]
    errored = [gchunk("g-e", "partial", out_tokens=1),
               {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}]
    write(arr, [json.dumps(GEMINI_OK), json.dumps(blocked), json.dumps(errored)])
    res = ingest(store, [sse, arr])
    classify(store, Config())
    assert res.quarantined == 0 and res.runs_added == 4
    got = [(r["outcome"], r["rule_code"]) for r in runs(store)]
    assert sorted(got) == sorted([("declined", "DE10"), ("ok", "OK00"), ("declined", "DE04"),
                                  ("infra_error", "IN02")])
    by_text = {r["response_text"]: r for r in runs(store)}
    assert "assembled_from_stream_array" in by_text["The capital of France is Paris."]["notes"]


def azure_chunk(cid: str, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    choice.update(extra)
    return {"id": cid, "object": "chat.completion.chunk" if cid else "", "created": 1767225600 if cid else 0,
            "model": "gpt-4o-2024-11-20" if cid else "", "choices": [choice]}


PROMPT_ANNOT = {"id": "", "object": "", "created": 0, "model": "", "choices": [],
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                    "hate": {"filtered": False, "severity": "safe"},
                    "jailbreak": {"filtered": False, "detected": False}}}]}


def test_azure_streams_keep_their_annotation_chunks(store: Store, tmp_path: Path) -> None:
    filtered = {"violence": {"filtered": True, "severity": "high"}, "hate": {"filtered": False, "severity": "safe"}}
    ok = [PROMPT_ANNOT, azure_chunk("chatcmpl-A1", {"role": "assistant", "content": "Revenue grew "}),
          azure_chunk("chatcmpl-A1", {"content": "4% this quarter."}), azure_chunk("chatcmpl-A1", {}, "stop")]
    blocked = [PROMPT_ANNOT, azure_chunk("chatcmpl-A2", {"role": "assistant", "content": "Step one is"}),
               azure_chunk("chatcmpl-A2", {}, "content_filter", content_filter_results=filtered)]
    # asynchronous-filter mode: the chunk that ends the blocked stream has an empty id too
    async_blocked = [PROMPT_ANNOT, azure_chunk("chatcmpl-A3", {"role": "assistant", "content": "def copy():"}),
                     azure_chunk("", {}, "content_filter", content_filter_results={
                         "protected_material_code": {"filtered": True, "detected": True}},
                         content_filter_offsets={"check_offset": 0, "start_offset": 0, "end_offset": 11})]
    res = ingest(store, [write(tmp_path / "az.jsonl", ok + blocked + async_blocked)])
    classify(store, Config())
    assert (res.runs_added, res.quarantined) == (3, 0), res.as_dict()
    got = [(r["run_id"], r["outcome"], r["rule_code"], r["sub_reason"]) for r in runs(store)]
    assert got == [("chatcmpl-A1", "ok", "OK00", None), ("chatcmpl-A2", "declined", "DE03", "violence"),
                   ("chatcmpl-A3", "declined", "DE03", "protected_material_code")]


def test_responses_error_events_stay_inside_their_stream(store: Store, tmp_path: Path) -> None:
    resp = {"id": "resp_q", "object": "response", "status": "in_progress", "output": [], "model": "gpt-5"}
    nested = [{"type": "response.created", "sequence_number": 0, "response": resp},
              {"type": "response.in_progress", "sequence_number": 1, "response": resp},
              # the recorded shape nests the error; the SDK type puts code/message at the top
              {"type": "error", "sequence_number": 2, "error": {"type": "insufficient_quota",
                                                               "code": "insufficient_quota",
                                                               "message": "You exceeded your current quota.",
                                                               "param": None}}]
    top = [{"type": "response.created", "sequence_number": 0, "response": {**resp, "id": "resp_r"}},
           {"type": "error", "sequence_number": 1, "code": "server_error", "message": "The server had an error.",
            "param": None}]
    res = ingest(store, [write(tmp_path / "r.jsonl", nested + top)])
    classify(store, Config())
    assert (res.runs_added, res.quarantined) == (2, 0), res.as_dict()
    got = [(r["run_id"], r["outcome"], r["rule_code"], r["sub_reason"]) for r in runs(store)]
    assert got == [("resp_q", "infra_error", "CL01", "quota"), ("resp_r", "infra_error", "IN04", "server_error")]


def test_identical_lines_at_two_places_are_two_calls(store: Store, tmp_path: Path) -> None:
    err = {"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "code": "rate_limit_exceeded"}}
    log = write(tmp_path / "a.jsonl", [err, flat(run_id="x"), err])
    res = ingest(store, [log])
    assert (res.ingested, res.duplicates) == (3, 0)
    # the same region read again, a copy under another name, and the file appended: only new lines are new
    assert ingest(store, [log]).duplicates == 3
    shutil.copy(log, tmp_path / "copy.jsonl")
    assert ingest(store, [tmp_path / "copy.jsonl"]).duplicates == 3
    with log.open("a", encoding="utf-8") as f:
        f.write(json.dumps(err) + "\n")
    again = ingest(store, [log])
    assert (again.ingested, again.duplicates) == (1, 3)
    assert store.scalar("SELECT count(*) FROM runs") == 4
    assert sorted(r[0] for r in store.rows("SELECT record_occ FROM runs WHERE run_id IS NULL")) == [1, 2, 3]


def test_lines_that_collide_under_a_64_bit_hash_are_both_kept(store: Store, tmp_path: Path) -> None:
    """These two lines have the same DuckDB hash() and length: the old identity merged them."""
    a = ('{"run_id":"r000094","task_id":"t","ts":"2026-07-01T10:00:00Z","prompt":"p","text":"answer 0001",'
         '"status":"success"}')
    b = a.replace("r000094", "r087994").replace("answer 0001", "answer 0009")
    assert store.scalar("SELECT hash(?) = hash(?) AND strlen(?) = strlen(?)", [a, b, a, b])  # the cause
    res = ingest(store, [write(tmp_path / "c.jsonl", [a, b])])
    assert (res.ingested, res.duplicates) == (2, 0)
    assert sorted(r[0] for r in store.rows("SELECT run_id FROM runs")) == ["r000094", "r087994"]


def test_the_tool_payload_is_kept_for_a_reviewer(store: Store, tmp_path: Path) -> None:
    args = {"answer": "I'm sorry, but I can't provide that.", "confidence": 0}
    msg = {"id": "chatcmpl-T", "object": "chat.completion", "created": 1767225600, "model": "gpt-4o",
           "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
               "role": "assistant", "content": None,
               "tool_calls": [{"id": "call_1", "type": "function",
                               "function": {"name": "record_answer", "arguments": json.dumps(args)}}]}}]}
    ingest(store, [write(tmp_path / "t.jsonl", [msg])])
    classify(store, Config())
    payload = json.loads(store.scalar("SELECT tool_payload FROM audit_runs"))
    assert payload == [{"name": "record_answer", "input": args}]  # the JSON-encoded arguments, decoded
    assert store.scalar("SELECT outcome FROM audit_runs") == "declined"


def test_review_export_holds_the_evidence(store: Store, tmp_path: Path) -> None:
    """A forced tool call's refusal, an OpenAI refusal field and a policy 400: the review file shows each."""
    from runaudit.review import export_queue

    tool = {"id": "msg_x", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "stop_reason": "tool_use", "content": [{"type": "tool_use", "id": "t1", "name": "grade",
                                                    "input": {"comment": "I won't grade an essay that "
                                                              "argues for violence against a group.",
                                                              "grade": 0}}]}
    refusal = {"task_id": "r", "prompt": "p1", "response": {
        "id": "chatcmpl-R", "object": "chat.completion", "created": 1767225600, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": None, "refusal": "I'm sorry, I can't assist with that."}}]}}
    policy = {"task_id": "pol", "prompt": "p2", "http_status": 400, "error": {
        "message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error",
        "code": "content_policy_violation"}}
    log = write(tmp_path / "ev.jsonl", [tool, refusal, policy])
    ingest(store, [log])
    classify(store, Config())
    export_queue(store, tmp_path / "q")
    items = [json.loads(p.read_text()) for p in sorted((tmp_path / "q").glob("*.json"))]
    assert len(items) == 3
    by_rule = {i["rule_code"]: i for i in items}
    assert by_rule["DE10"]["tool_payload"] == [{"name": "grade", "input": tool["content"][0]["input"]}]
    assert by_rule["DE02"]["refusal_text"] == "I'm sorry, I can't assist with that."
    assert by_rule["DE06"]["error"]["type"] == "content_policy_violation"
    for i in items:
        assert i["runs"] and i["runs"][0]["source"].startswith(str(log) + ":")
        assert i["shown_run"] == i["runs"][0]["source"]


def test_streamed_tool_call_arguments_are_joined_and_scored(store: Store, tmp_path: Path) -> None:
    """Tool inputs stream in pieces (Anthropic input_json_delta, OpenAI argument fragments): joined, then scored."""
    refusal = json.dumps({"answer": "I'm sorry, but I can't help with building that weapon.", "score": 0})
    cut = [refusal[:20], refusal[20:45], refusal[45:]]
    anthropic = ([{"type": "message_start", "message": {"id": "msg_tool", "type": "message", "role": "assistant",
                                                        "content": [], "model": "claude-sonnet-4-5",
                                                        "stop_reason": None, "usage": {"input_tokens": 9}}},
                  {"type": "content_block_start", "index": 0,
                   "content_block": {"type": "tool_use", "id": "toolu_1", "name": "answer", "input": {}}}]
                 + [{"type": "content_block_delta", "index": 0,
                     "delta": {"type": "input_json_delta", "partial_json": p}} for p in cut]
                 + [{"type": "content_block_stop", "index": 0},
                    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}},
                    {"type": "message_stop"}])

    def oa(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-TS", "object": "chat.completion.chunk", "created": 1767225600, "model": "gpt-4o",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    openai = ([oa({"role": "assistant", "content": None, "tool_calls": [
                  {"index": 0, "id": "call_1", "type": "function", "function": {"name": "answer", "arguments": ""}}]})]
              + [oa({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in cut]
              + [oa({}, "tool_calls")])
    ingest(store, [write(tmp_path / "ts.jsonl", anthropic + openai)])
    classify(store, Config())
    got = runs(store)
    assert [(r["run_id"], r["outcome"], r["rule_code"]) for r in got] == [
        ("msg_tool", "declined", "DE10"), ("chatcmpl-TS", "declined", "DE10")]
    for r in got:
        assert json.loads(r["tool_payload"]) == [{"name": "answer", "input": json.loads(refusal)}]


def test_bedrock_converse_streams_and_client_errors(store: Store, tmp_path: Path) -> None:
    def stream(text: str, stop: str | None, *, tool: dict[str, Any] | None = None,
               metadata: bool = True) -> list[dict[str, Any]]:
        ev: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
        if text:
            ev += [{"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": text[:9]}}},
                   {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": text[9:]}}},
                   {"contentBlockStop": {"contentBlockIndex": 0}}]
        if tool:
            raw = json.dumps(tool)
            ev += [{"contentBlockStart": {"contentBlockIndex": 1,
                                          "start": {"toolUse": {"toolUseId": "tu_1", "name": "reply"}}}},
                   {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": raw[:15]}}}},
                   {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": raw[15:]}}}},
                   {"contentBlockStop": {"contentBlockIndex": 1}}]
        if stop:
            ev.append({"messageStop": {"stopReason": stop}})
        if metadata:
            ev.append({"metadata": {"usage": {"inputTokens": 22, "outputTokens": 55, "totalTokens": 77},
                                    "metrics": {"latencyMs": 2040}}})
        return ev

    throttled = [{"messageStart": {"role": "assistant"}},
                 {"throttlingException": {"message": "Too many requests, please wait before trying again."}}]
    client_error = {"Error": {"Code": "ValidationException", "Message": "Malformed input request"},
                    "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": "req-1"}}
    lines = (stream("The invoice total is 42 EUR.", "end_turn")
             + stream("Sorry, the model cannot answer this question.", "guardrail_intervened")
             + stream("", "tool_use", tool={"text": "I'm sorry, but I can't help with making a weapon."})
             + throttled + [client_error]
             + stream("Once upon a time", None, metadata=False))
    res = ingest(store, [write(tmp_path / "br.jsonl", lines)])
    classify(store, Config())
    assert (res.quarantined, res.runs_added) == (0, 6), res.as_dict()
    got = [(r["shape"], r["outcome"], r["rule_code"]) for r in runs(store)]
    assert got == [("bedrock_stream", "ok", "OK00"), ("bedrock_stream", "declined", "DE04"),
                   ("bedrock_stream", "declined", "DE10"), ("bedrock_stream", "infra_error", "IN01"),
                   ("bedrock_error", "infra_error", "CL01"), ("bedrock_stream", "infra_error", "IN07")]
    first = runs(store)[0]
    assert first["response_text"] == "The invoice total is 42 EUR." and first["output_tokens"] == 55


# Provider bodies a pipeline keeps under one of its own keys (LOG_FORMATS_FULL.md section 11: response, result,
# body, raw, output, data), as an object or as the body's JSON text.
_ANTHROPIC_REFUSAL = {"id": "msg_w1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                      "content": [{"type": "text", "text": "Step one"}], "stop_reason": "refusal",
                      "usage": {"input_tokens": 12, "output_tokens": 2}}
_OPENAI_FILTER = {"id": "chatcmpl-w2", "object": "chat.completion", "created": 1_780_000_000, "model": "gpt-4o",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": None},
                               "finish_reason": "content_filter"}]}
_GEMINI_OK = {"candidates": [{"content": {"role": "model", "parts": [{"text": "The capital of France is Paris."}]},
                              "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 7}}
_BEDROCK_CUT = {"output": {"message": {"role": "assistant", "content": [{"text": "Once upon a"}]}},
                "stopReason": "max_tokens", "usage": {"inputTokens": 5, "outputTokens": 3}}
_WRAPPED_BODIES = [(_ANTHROPIC_REFUSAL, "anthropic", "declined"), (_OPENAI_FILTER, "openai", "declined"),
                   (_GEMINI_OK, "gemini", "ok"), (_BEDROCK_CUT, "bedrock", "degraded")]


def _wrapped_lines() -> list[tuple[dict[str, Any], str, str]]:
    out = []
    for key in ("response", "result", "body", "raw", "output", "data"):
        for body, provider, outcome in _WRAPPED_BODIES:
            for as_text in (False, True):
                rec = {"task_id": f"{key}-{provider}-{as_text}", "ts": "2026-07-06T02:00:00Z",
                       key: json.dumps(body) if as_text else body}
                out.append((rec, provider, outcome))
    return out


def test_a_provider_body_under_a_pipelines_own_key_is_read_as_that_body(store: Store, tmp_path: Path) -> None:
    cases = _wrapped_lines()
    # a pipeline's own fields under the same keys are not provider bodies: they stay the flat record's
    plain = [flat(task_id="own-output", text=None, output={"title": "Q3", "summary": "Revenue rose."}),
             flat(task_id="own-json-text", text=None, response=json.dumps({"title": "Q3", "summary": "Rose."})),
             flat(task_id="own-data", data=[{"object": "embedding", "index": 0}]),
             flat(task_id="own-result", result="{not json at all"),
             flat(task_id="own-error-field", output={"error": {"field": "total", "why": "missing"}})]
    ingest(store, [write(tmp_path / "w.jsonl", [c[0] for c in cases] + plain)])
    classify(store, Config())
    got = {r["task_id"]: r for r in store.query(
        "SELECT r.task_id, r.shape, r.provider, r.response_text, c.outcome FROM runs r JOIN classifications c "
        "USING (rid)").to_dicts()}
    assert len(got) == len(cases) + len(plain)
    for rec, provider, outcome in cases:
        r = got[rec["task_id"]]
        assert (r["shape"], r["provider"], r["outcome"]) == ("wrapped", provider, outcome), rec["task_id"]
    assert got["result-gemini-True"]["response_text"] == "The capital of France is Paris."
    assert [got[t]["shape"] for t in ("own-output", "own-json-text", "own-data", "own-result",
                                      "own-error-field")] == ["flat"] * 5
    assert got["own-json-text"]["response_text"] == json.dumps({"title": "Q3", "summary": "Rose."})


def test_a_provider_body_under_a_pipelines_own_key_gets_the_audits_verdict_inline() -> None:
    import runaudit

    for rec, provider, outcome in _wrapped_lines()[::3]:
        v = runaudit.check_record(rec)
        assert (v.run["shape"], v.run["provider"], v.outcome) == ("wrapped", provider, outcome), rec["task_id"]


# A body of no provider LOG_FORMATS_FULL.md lists (Anthropic's legacy Text Completions, another vendor's API)
# under ``response``: read for its text and stop fields, as a flat record is.
UNLISTED_BODIES = [
    ({"type": "completion", "id": "compl_1", "model": "claude-2.1", "stop_reason": "stop_sequence",
      "completion": " I'm sorry, but I can't help with writing that."}, "declined", "DE10"),
    ({"type": "completion", "id": "compl_2", "model": "claude-2.1", "stop_reason": "stop_sequence",
      "completion": " The report covers three incidents, all resolved."}, "ok", "OK00"),
    ({"type": "completion", "id": "compl_3", "model": "claude-2.1", "stop_reason": "max_tokens",
      "completion": " The report covers"}, "degraded", "DG01"),
    ({"response_id": "r-1", "generation_id": "g-1", "text": "Here is the summary you asked for."}, "ok", "OK00"),
    ({"vendor_field": 1}, "degraded", "DG02"),
]


def test_an_unlisted_providers_body_is_read_for_its_text_fields(store: Store, tmp_path: Path) -> None:
    lines = [{"task_id": f"u{i}", "ts": "2026-07-06T02:00:00Z", "response": body}
             for i, (body, _, _) in enumerate(UNLISTED_BODIES)]
    ingest(store, [write(tmp_path / "u.jsonl", lines)])
    classify(store, Config())
    got = store.rows("SELECT r.shape, c.outcome, c.rule_code FROM runs r JOIN classifications c USING (rid) "
                     "ORDER BY r.source_line")
    assert got == [("wrapped", outcome, code) for _, outcome, code in UNLISTED_BODIES]
