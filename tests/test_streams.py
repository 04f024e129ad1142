"""Logged Anthropic streams (one event payload per line) become one run per stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runaudit.ingest.reader as reader
from runaudit.classify import classify
from runaudit.config import Config
from runaudit.ingest import ingest
from runaudit.store import Store
from tests.conftest import age, flat


def start(msg_id: str, input_tokens: int = 18) -> dict[str, Any]:
    return {"type": "message_start", "message": {"id": msg_id, "type": "message", "role": "assistant",
                                                  "content": [], "model": "claude-sonnet-4-5", "stop_reason": None,
                                                  "stop_sequence": None,
                                                  "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}


def text_block(*parts: str, index: int = 0) -> list[dict[str, Any]]:
    return ([{"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}]
            + [{"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}}
               for p in parts]
            + [{"type": "content_block_stop", "index": index}])


def end(stop_reason: str, output_tokens: int, **delta: Any) -> list[dict[str, Any]]:
    return [{"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None, **delta},
             "usage": {"output_tokens": output_tokens}},
            {"type": "message_stop"}]


REFUSAL = [start("msg_refusal"), {"type": "ping"}, *text_block("Sure, the"),
           *end("refusal", 4, stop_details={"type": "refusal", "category": "cyber", "explanation": None})]
OK = [start("msg_ok", 10), *text_block("## Summary\nRevenue grew ", "4% week over week."), *end("end_turn", 12)]
ERRORED = [start("msg_err"), *text_block("Partial")[:2],
           {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]
TOOL = [start("msg_tool"), {"type": "content_block_start", "index": 0,
                            "content_block": {"type": "tool_use", "id": "tu_1", "name": "search", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_stop", "index": 0}, *end("tool_use", 9)]
CUT = [start("msg_cut"), *text_block("The report is")[:2]]  # the process died: no message_delta, no stop


def write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return age(path)


def outcomes(store: Store) -> list[tuple[Any, ...]]:
    return store.rows("SELECT r.run_id, r.source_line, r.shape, c.outcome, c.rule_code, r.response_text, "
                      "r.refusal_category, r.input_tokens, r.output_tokens, r.tool_calls "
                      "FROM runs r JOIN classifications c USING (rid) ORDER BY r.source_file, r.source_line")


def test_streams_are_assembled_and_classified(store: Store, tmp_path: Path) -> None:
    events = REFUSAL + OK + TOOL + ERRORED + CUT
    res = ingest(store, [write(tmp_path / "s.jsonl", events)])
    assert (res.lines, res.ingested, res.runs_added, res.duplicates, res.quarantined) == (len(events), len(events),
                                                                                         5, 0, 0)
    classify(store, Config())
    got = {r[0]: r[1:] for r in outcomes(store)}
    # a refusal after partial text is declined, whatever text came first; its category is kept
    assert got["msg_refusal"] == (1, "anthropic_stream", "declined", "DE01", "Sure, the", "cyber", 18, 4, 0)
    assert got["msg_ok"][2:5] == ("ok", "OK00", "## Summary\nRevenue grew 4% week over week.")
    assert got["msg_ok"][6:8] == (10, 12)  # input tokens from message_start, output from the last message_delta
    assert got["msg_tool"][2:4] == ("ok", "OK00") and got["msg_tool"][8] == 1
    # an error event after a 200: infrastructure, and one run (the error line is part of its stream)
    assert got["msg_err"][2:4] == ("infra_error", "IN02")
    # cut off before message_delta: the stream never finished, an infrastructure error, not a degraded answer
    assert got["msg_cut"][2:4] == ("infra_error", "IN07")
    raw = json.loads(store.scalar("SELECT raw FROM runs WHERE run_id = 'msg_refusal'"))
    assert raw["_stream"] == {"events": len(REFUSAL), "first_line": 1, "last_line": len(REFUSAL)}
    assert "assembled_from_stream" in store.scalar("SELECT notes FROM runs WHERE run_id = 'msg_ok'")


@pytest.mark.parametrize("window", [120, 400, 900, 1500])
def test_streams_across_window_boundaries(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          window: int) -> None:
    """Windows cut streams anywhere (even a window smaller than one stream): the runs are the same."""
    events = [flat(run_id="before")] + REFUSAL + OK + [flat(run_id="between")] + ERRORED + TOOL + CUT
    log = write(tmp_path / "s.jsonl", events)
    monkeypatch.setattr(reader, "WINDOW_BYTES", window)
    res = ingest(store, [log])
    classify(store, Config())
    assert (res.lines, res.ingested, res.runs_added, res.quarantined) == (len(events), len(events), 7, 0)
    assert [(r[0], r[3], r[4]) for r in outcomes(store)] == [
        ("before", "ok", "OK00"), ("msg_refusal", "declined", "DE01"), ("msg_ok", "ok", "OK00"),
        ("between", "ok", "OK00"), ("msg_err", "infra_error", "IN02"), ("msg_tool", "ok", "OK00"),
        ("msg_cut", "infra_error", "IN07")]


def test_reingest_append_and_orphan_events(store: Store, tmp_path: Path) -> None:
    log = write(tmp_path / "s.jsonl", REFUSAL + OK)
    ingest(store, [log])
    again = ingest(store, [log])
    assert (again.ingested, again.duplicates, again.runs_added) == (0, len(REFUSAL + OK), 0)
    with log.open("a", encoding="utf-8") as f:  # the nightly job appends one more stream
        f.write("".join(json.dumps(e) + "\n" for e in TOOL))
    grown = ingest(store, [log])
    assert (grown.ingested, grown.runs_added, grown.duplicates) == (len(TOOL), 1, len(REFUSAL + OK))
    # a file that starts mid-stream: the events without their message_start are quarantined, named as such;
    # an error event after a finished stream is a run of its own
    orphan = write(tmp_path / "o.jsonl", OK[3:] + [{"type": "error", "error": {"type": "api_error",
                                                                               "message": "Internal"}}])
    res = ingest(store, [orphan])
    assert (res.quarantined, res.runs_added) == (len(OK) - 3, 1)
    detail = store.scalar("SELECT detail FROM quarantine WHERE source_file = ? ORDER BY source_line LIMIT 1",
                          [str(orphan)])
    assert "no message_start or response.created before it" in detail



def chunk(cid: str, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": cid, "object": "chat.completion.chunk", "created": 1781000000, "model": "gpt-4.1",
            "choices": choices, **extra}


CHAT_OK = [chunk("c-ok", {"role": "assistant", "content": ""}), chunk("c-ok", {"content": "Revenue grew "}),
           chunk("c-ok", {"content": "4%."}), chunk("c-ok", {}, "stop"),
           chunk("c-ok", None, usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})]
CHAT_REFUSAL = [chunk("c-ref", {"role": "assistant", "content": None, "refusal": ""}),
                chunk("c-ref", {"refusal": "I can't help with that."}), chunk("c-ref", {}, "stop")]
CHAT_FILTER = [chunk("c-flt", {"role": "assistant", "content": "Here is"}), chunk("c-flt", {}, "content_filter")]
CHAT_TOOL = [chunk("c-tool", {"role": "assistant", "tool_calls": [
                 {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
             chunk("c-tool", {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
             chunk("c-tool", {}, "tool_calls")]
CHAT_CUT = [chunk("c-cut", {"role": "assistant", "content": "The"}), chunk("c-cut", {"content": " report"})]


def responses(rid: str, status: str | None, text: str = "", **terminal: Any) -> list[dict[str, Any]]:
    shell = {"id": rid, "object": "response", "model": "gpt-5", "created_at": 1781000000}
    out = [{"type": "response.created", "sequence_number": 0, "response": {**shell, "status": "in_progress",
                                                                              "output": []}},
           {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "m", "output_index": 0,
            "content_index": 0, "delta": text}]
    if status:
        out.append({"type": f"response.{status}", "sequence_number": 2, "response": {
            **shell, "status": status, "output": [{"type": "message", "content": [
                {"type": "output_text", "text": text}]}], **terminal}})
    return out


RESP_OK = responses("r-ok", "completed", "Hello there.")
RESP_TRUNC = responses("r-trunc", "incomplete", "Cut", incomplete_details={"reason": "max_output_tokens"})
RESP_CUT = responses("r-cut", None, "Half")
RESP_ERR = responses("r-err", None, "Hal") + [{"type": "error", "sequence_number": 2, "code": "rate_limit_exceeded",
                                              "message": "Rate limit reached", "param": None}]


def test_openai_streams_are_assembled(store: Store, tmp_path: Path) -> None:
    """Chat chunks (grouped by id) and Responses stream events become one run per call, not one per line."""
    events = (CHAT_OK + RESP_OK + CHAT_REFUSAL + CHAT_FILTER + RESP_TRUNC + CHAT_TOOL + CHAT_CUT + RESP_ERR
              + RESP_CUT)
    res = ingest(store, [write(tmp_path / "o.jsonl", events)])
    assert (res.lines, res.ingested, res.runs_added, res.quarantined) == (len(events), len(events), 9, 0)
    classify(store, Config())
    got = {r[0]: r for r in store.rows(
        "SELECT r.run_id, r.shape, c.outcome, c.rule_code, r.response_text, r.input_tokens, r.output_tokens, "
        "r.tool_calls, r.ts FROM runs r JOIN classifications c USING (rid)")}
    assert got["c-ok"][1:7] == ("openai_chat_stream", "ok", "OK00", "Revenue grew 4%.", 7, 3)
    assert str(got["c-ok"][8]).startswith("2026-06-09")  # "created" of the chunks is the run's time
    assert got["c-ref"][2:4] == ("declined", "DE02")  # the refusal field, though finish_reason is "stop"
    assert got["c-flt"][2:4] == ("declined", "DE03")
    assert got["c-tool"][2:4] == ("ok", "OK00") and got["c-tool"][7] == 1
    assert got["c-cut"][2:4] == ("infra_error", "IN07")  # no finish_reason: the stream never ended
    assert got["r-ok"][1:5] == ("openai_responses_stream", "ok", "OK00", "Hello there.")
    assert got["r-trunc"][2:4] == ("degraded", "DG01")
    assert got["r-cut"][2:4] == ("infra_error", "IN07")  # only response.created: still in progress
    assert got["r-err"][2:4] == ("infra_error", "IN01")  # an error event mid-stream, classified by its code


@pytest.mark.parametrize("window", [150, 500, 1300])
def test_openai_streams_across_window_boundaries(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 window: int) -> None:
    events = CHAT_OK + RESP_OK + [flat(run_id="between")] + CHAT_REFUSAL + RESP_TRUNC + CHAT_CUT
    monkeypatch.setattr(reader, "WINDOW_BYTES", window)
    res = ingest(store, [write(tmp_path / "o.jsonl", events)])
    classify(store, Config())
    assert (res.lines, res.runs_added, res.quarantined) == (len(events), 6, 0)
    assert sorted(store.rows("SELECT r.run_id, c.rule_code FROM runs r JOIN classifications c USING (rid)")) == [
        ("between", "OK00"), ("c-cut", "IN07"), ("c-ok", "OK00"), ("c-ref", "DE02"), ("r-ok", "OK00"),
        ("r-trunc", "DG01")]



@pytest.mark.parametrize("window", [None, 150, 700])
@pytest.mark.parametrize("name", ["anthropic", "openai_chat", "openai_responses"])
def test_a_stream_ending_on_an_unterminated_last_line_is_one_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, window: int | None) -> None:
    """A log whose last line has no newline (a writer that does not end the file with one) holds the last event
    of its last stream there. The stream is one run, as with the newline: that line used to be read as a window
    of its own, which ended the stream one event early (two runs, the first without its stop reason)."""
    events = {"anthropic": [flat(run_id="before")] + REFUSAL + OK,
              "openai_chat": [flat(run_id="before")] + CHAT_REFUSAL + CHAT_OK[:4],
              "openai_responses": [flat(run_id="before")] + RESP_TRUNC + RESP_OK}[name]
    if window:
        monkeypatch.setattr(reader, "WINDOW_BYTES", window)
    got = []
    for tail in ("\n", ""):
        log = tmp_path / f"s{len(got)}.jsonl"
        log.write_text("\n".join(json.dumps(e) for e in events) + tail, encoding="utf-8")
        with Store.open(":memory:") as store:
            res = ingest(store, [age(log)])
            classify(store, Config())
            assert (res.lines, res.ingested, res.quarantined, res.held) == (len(events), len(events), 0, 0)
            got.append((res.runs_added, store.rows(
                "SELECT r.run_id, r.source_line, r.response_text, r.stop_reason, c.rule_code "
                "FROM runs r JOIN classifications c USING (rid) ORDER BY r.source_line")))
    assert got[0] == got[1] and got[0][0] == 3


def test_raw_sse_text_is_read(store: Store, tmp_path: Path) -> None:
    """Raw SSE as captured from the wire: data lines are the events, framing lines count as blank."""
    sse = tmp_path / "stream.jsonl"
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in REFUSAL)
    body += ": keep-alive comment\n" + "".join(f"data: {json.dumps(c)}\n\n" for c in CHAT_OK) + "data: [DONE]\n\n"
    body += "data: {not json\n"
    sse.write_text(body, encoding="utf-8")
    res = ingest(store, [sse])
    data_lines = len(REFUSAL) + len(CHAT_OK)
    assert (res.runs_added, res.ingested, res.quarantined) == (2, data_lines, 1)
    assert res.lines == res.ingested + res.blank + res.quarantined == body.count("\n")
    classify(store, Config())
    assert sorted(store.rows("SELECT r.run_id, c.rule_code FROM runs r JOIN classifications c USING (rid)")) == [
        ("c-ok", "OK00"), ("msg_refusal", "DE01")]
    assert store.scalar("SELECT raw FROM quarantine") == "data: {not json"  # kept as written
    # framing-like lines in a log with no SSE data line are not framing: they stay visible in the quarantine
    plain = tmp_path / "plain.jsonl"
    plain.write_text("event: deploy\n" + json.dumps(flat(run_id="p")) + "\n", encoding="utf-8")
    res = ingest(store, [plain])
    assert (res.blank, res.quarantined, res.runs_added) == (0, 1, 1)


EVENT_TYPES = ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
               "message_stop", "ping", "error", "response.created", "response.output_text.delta",
               "response.completed"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES)},
    optional={k: st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                              lambda c: st.lists(c, max_size=2) | st.dictionaries(
                                  st.sampled_from(["id", "text", "type", "stop_reason", "usage", "input_tokens"]),
                                  c, max_size=3), max_leaves=6)
              for k in ("message", "delta", "content_block", "usage", "error", "choices", "response")}
    | {"object": st.just("chat.completion.chunk"), "id": st.sampled_from(["a", "b", 7])}), min_size=1, max_size=40),
       window=st.sampled_from([64, 300, 1 << 20]))
def test_any_event_sequence_is_accounted_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             events: list[dict[str, Any]], window: int) -> None:
    monkeypatch.setattr(reader, "WINDOW_BYTES", window)
    log = write(tmp_path / "fz.jsonl", events)
    db = tmp_path / "fz.duckdb"
    db.unlink(missing_ok=True)
    with Store.open(db) as s:
        res = ingest(s, [log])
        classify(s, Config())
        assert res.lines == len(events) == res.ingested + res.duplicates + res.blank + res.quarantined
        assert s.scalar("SELECT count(*) FROM runs") == res.runs_added
        assert s.scalar("SELECT count(*) FROM quarantine") == res.quarantined
