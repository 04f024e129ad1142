"""The inline check: the same verdict as the audit, field for field, for the same call logged later.

Real DuckDB everywhere; the ``anthropic`` and ``openai`` SDKs are real, with only their HTTP transport faked.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

try:  # the SDKs moved from httpx to httpx2; fake whichever transport they use
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

import runaudit
from runaudit.classify import classify
from runaudit.config import Config, load_config, parse_config
from runaudit.ingest import discover, ingest
from runaudit.inline import CallInfraError, DoneConditionError, Held, check, check_lines, handle, log_call
from runaudit.review import export_queue
from runaudit.store import Store

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"
FIELDS = ("outcome", "sub_reason", "rule_code", "signal", "retryable", "refusal_score", "done_failures",
          "review_key", "refusal_kind", "reported_success", "ruleset")
AUDIT_SQL = """
SELECT source_file, source_line, c.outcome, c.sub_reason, c.signal, c.rule_code, c.retryable, c.refusal_score,
       c.done_failures, c.idem_key AS review_key, c.refusal_kind, c.reported_success, c.ruleset, r.raw
FROM runs r JOIN classifications c
  ON c.rid = r.rid AND c.ruleset = (SELECT value FROM meta WHERE key = 'current_ruleset')
ORDER BY source_file, source_line, r.rid
"""


def _audit(paths: list[Path], cfg: Config) -> list[dict[str, Any]]:
    with Store.open(":memory:") as store:
        ingest(store, paths, cfg)
        classify(store, cfg)
        return store.query(AUDIT_SQL).to_dicts()


def _fields(d: Any) -> dict[str, Any]:
    return {k: (d[k] if isinstance(d, dict) else getattr(d, k)) for k in FIELDS}


def _jsonl_files() -> list[Path]:
    # JSON-lines logs only: a whole-file JSON document and llm's logs.db have readers of their own
    return [Path(p) for p in discover([SAMPLE]) if p.endswith(".jsonl")]


def test_check_equals_the_audit_on_every_sample_run() -> None:
    cfg = load_config(SAMPLE / "runaudit.toml")
    files = _jsonl_files()
    audited = _audit(files, cfg)
    by_place = {(a["source_file"], a["source_line"]): a for a in audited}
    compared = 0
    for f in files:
        lines = f.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for v in check_lines(lines, config=cfg, source=str(f)):
            a = by_place[(str(f), v.run["source_line"])]
            assert _fields(v) == _fields(a), f"{f.name}:{v.run['source_line']}"
            compared += 1
    assert compared == len(audited) > 250


def test_check_of_one_record_equals_the_audit_of_its_line() -> None:
    """Each record on its own (not a stream's events): the line the audit stored, checked by itself."""
    cfg = load_config(SAMPLE / "runaudit.toml")
    audited = [a for a in _audit(_jsonl_files(), cfg) if "_stream" not in a["raw"]]
    for a in audited[::3]:
        v = runaudit.check_record(a["raw"], config=cfg)
        assert _fields(v) == _fields(a), a["raw"][:200]


def _cases() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in sorted((ROOT / "tests" / "rules" / "cases").glob("*.yml")):
        for name, case in yaml.safe_load(f.read_text(encoding="utf-8")).items():
            out.append((f"{f.stem}::{name}", case))
    return out


@pytest.mark.parametrize("case", [c for _, c in _cases()], ids=[n for n, _ in _cases()])
def test_check_equals_the_audit_on_rule_cases(case: dict[str, Any], tmp_path: Path) -> None:
    import tomllib

    cfg = parse_config(tomllib.loads(case["config"])) if "config" in case else Config()
    lines = [r if isinstance(r, str) else json.dumps(r) for r in case["records"]]
    log = tmp_path / "case.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    audited = _audit([log], cfg)
    got = check_lines(lines, config=cfg, source=str(log))
    assert [_fields(v) for v in got] == [_fields(a) for a in audited]


# -- SDK objects, through the real SDKs with a faked transport ------------------------------------------

def _anthropic(handler: Any) -> Any:
    import anthropic

    return anthropic.Anthropic(api_key="sk-ant-test", max_retries=0,
                               http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def _message(text: str, stop: str = "end_turn") -> dict[str, Any]:
    return {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": text}] if text else [], "stop_reason": stop,
            "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 30}}


def _sdk_call(client: Any, prompt: str) -> Any:
    return client.messages.create(model="claude-sonnet-4-5", max_tokens=256,
                                  messages=[{"role": "user", "content": prompt}])


@pytest.mark.parametrize("body, outcome", [
    (_message("Here is the weekly summary: revenue rose 4% and churn fell."), "ok"),
    (_message("I can't help with creating that. It could be used to hurt people."), "declined"),
    (_message("", stop="refusal"), "declined"),
    (_message("The summary begins with the first quarter and", stop="max_tokens"), "degraded"),
])
def test_an_anthropic_message_gets_the_audits_verdict(body: dict[str, Any], outcome: str, tmp_path: Path) -> None:
    client = _anthropic(lambda req: httpx.Response(200, json=body))
    msg = _sdk_call(client, "Summarise the weekly numbers for the board.")
    v = check(msg, task_id="weekly-summary", prompt="Summarise the weekly numbers for the board.")
    assert v.outcome == outcome
    log = tmp_path / "calls.jsonl"
    log_call(log, v)
    (a,) = _audit([log], Config())
    assert _fields(v) == _fields(a)


def test_anthropic_errors_are_infra_with_retry_after(tmp_path: Path) -> None:
    import anthropic

    def rate_limited(req: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "17"},
                              json={"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}})

    client = _anthropic(rate_limited)
    with pytest.raises(anthropic.RateLimitError) as ei:
        _sdk_call(client, "hello")
    log = tmp_path / "calls.jsonl"
    with pytest.raises(CallInfraError) as caught:
        handle(ei.value, task_id="digest", prompt="hello", log=log)
    err = caught.value
    assert err.retryable and err.retry_after == 17.0
    assert err.verdict.outcome == "infra_error" and err.verdict.rule_code == "IN01"
    (a,) = _audit([log], Config())
    assert _fields(err.verdict) == _fields(a)

    def overloaded(req: httpx.Request) -> httpx.Response:
        return httpx.Response(529, json={"type": "error", "error": {"type": "overloaded_error", "message": "x"}})

    with pytest.raises(anthropic.APIStatusError) as ei2:
        _sdk_call(_anthropic(overloaded), "hello")
    assert check(ei2.value, task_id="digest").rule_code == "IN02"

    def timeout(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=req)

    with pytest.raises(anthropic.APITimeoutError) as ei3:
        _sdk_call(_anthropic(timeout), "hello")
    v = check(ei3.value, task_id="digest")
    assert v.outcome == "infra_error" and v.retryable


def test_openai_objects_and_errors_get_the_audits_verdict(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1780000000, "model": "gpt-5",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": None,
                                     "refusal": "I'm sorry, I can't assist with that."}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}}
    client = openai.OpenAI(api_key="sk-test", max_retries=0,
                           http_client=httpx.Client(transport=httpx.MockTransport(
                               lambda req: httpx.Response(200, json=body))))
    comp = client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])
    log = tmp_path / "calls.jsonl"
    held = handle(comp, task_id="support-reply", prompt="x", log=log, review_dir=tmp_path / "queue")
    assert isinstance(held, Held) and held.verdict.rule_code == "DE02"
    (a,) = _audit([log], Config())
    assert _fields(held.verdict) == _fields(a)

    def bad(req: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "Your request was rejected by the safety system.",
                                                   "type": "invalid_request_error",
                                                   "code": "content_policy_violation"}})

    bad_client = openai.OpenAI(api_key="sk-test", max_retries=0,
                               http_client=httpx.Client(transport=httpx.MockTransport(bad)))
    with pytest.raises(openai.BadRequestError) as ei:
        bad_client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])
    v = check(ei.value, task_id="support-reply", prompt="x")
    assert v.outcome == "declined" and v.rule_code == "DE06"


def _logged_verdict(v: Any, tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / f"{v.record['run_id']}.jsonl"
    log_call(log, v)
    (a,) = _audit([log], Config())
    return _fields(a)


def test_http_responses_are_checked_with_their_status_body_and_retry_after(tmp_path: Path) -> None:
    """A custom HTTP client's response: a 2xx is its JSON body, any other status a failed call carrying the status,
    the provider's error object (or the body's text) and retry-after; each verdict is the audit's of its line."""
    import requests

    def client(status: int, **kw: Any) -> Any:
        return httpx.Client(transport=httpx.MockTransport(lambda req: httpx.Response(status, **kw)))

    ok = client(200, json=_message("I can't help with creating that. It could be used to hurt people.")).post(
        "https://llm.internal/v1/messages", json={})
    v = check(ok, task_id="digest", prompt="p")
    assert v.outcome == "declined" and v.record["response"]["id"] == "msg_01" and "http_status" not in v.record
    assert _fields(v) == _logged_verdict(v, tmp_path)

    limited = client(429, headers={"retry-after": "9"},
                     json={"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}).post(
        "https://llm.internal/v1/messages", json={})
    with pytest.raises(CallInfraError) as caught:
        handle(limited, task_id="digest", prompt="p")
    assert caught.value.retry_after == 9.0 and caught.value.verdict.rule_code == "IN01"
    assert caught.value.verdict.record["error"] == {"type": "rate_limit_error", "message": "Slow down"}

    gateway = client(502, text="<html><body>502 Bad Gateway</body></html>").post("https://llm.internal/v1", json={})
    v = check(gateway, task_id="digest", prompt="p")
    assert v.outcome == "infra_error" and v.retryable and v.record["http_status"] == 502
    assert v.record["error"] == {"type": "http_error", "message": "<html><body>502 Bad Gateway</body></html>"}
    assert _fields(v) == _logged_verdict(v, tmp_path)

    r = requests.Response()  # the real class, filled as requests fills it from a socket
    r.status_code, r._content, r.encoding = 500, b'{"error": {"message": "boom", "type": "server_error"}}', "utf-8"
    r.headers["Retry-After"] = "4"
    v = check(r, task_id="digest", prompt="p")
    assert (v.outcome, v.record["http_status"], v.retry_after) == ("infra_error", 500, 4.0)
    assert v.record["error"] == {"message": "boom", "type": "server_error"}
    assert _fields(v) == _logged_verdict(v, tmp_path)

    with pytest.raises(runaudit.RunauditError, match="HTTP 200 response's body is not a JSON object"):
        check(client(200, text="data: {}\n\n").get("https://llm.internal/v1"), task_id="digest")


def test_an_sdks_raw_response_is_checked_as_its_parsed_object(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    body = _message("I won't write that for you.")
    raw = _anthropic(lambda req: httpx.Response(200, json=body)).messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": "x"}])
    same = {"task_id": "t", "prompt": "x", "run_id": "r1", "ts": "2026-12-01T00:00:00Z"}
    v = check(raw, **same)
    assert v.outcome == "declined" and _fields(v) == _fields(check(raw.parse(), **same))
    assert _fields(v) == _logged_verdict(v, tmp_path)

    comp = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1780000000, "model": "gpt-5",
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": "The first quarter opened with"}}]}
    oraw = openai.OpenAI(api_key="sk-test", max_retries=0, http_client=httpx.Client(
        transport=httpx.MockTransport(lambda req: httpx.Response(200, json=comp)))).chat.completions.with_raw_response
    ov = check(oraw.create(model="gpt-5", messages=[{"role": "user", "content": "x"}]), task_id="t", prompt="x")
    assert (ov.outcome, ov.rule_code) == ("degraded", "DG01")


def test_a_parsed_completion_is_checked_without_a_serializer_warning() -> None:
    """``chat.completions.parse`` returns the caller's own model in ``parsed``; dumping it must not print a pydantic
    warning into the pipeline's output (or fail under -W error)."""
    import warnings

    openai = pytest.importorskip("openai")
    from pydantic import BaseModel

    class Invoice(BaseModel):
        number: str

    comp = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1780000000, "model": "gpt-5",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps({"number": "INV-1"})}}]}
    client = openai.OpenAI(api_key="sk-test", max_retries=0, http_client=httpx.Client(
        transport=httpx.MockTransport(lambda req: httpx.Response(200, json=comp))))
    parsed = client.chat.completions.parse(model="gpt-5", messages=[{"role": "user", "content": "x"}],
                                           response_format=Invoice)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = check(parsed, task_id="invoices", prompt="x")
    assert v.outcome == "ok"
    assert v.record["response"]["choices"][0]["message"]["parsed"] == {"number": "INV-1"}


# -- handle ---------------------------------------------------------------------------------------------

def test_handle_returns_the_deliverable_raises_or_holds(tmp_path: Path) -> None:
    q = tmp_path / "queue"
    assert handle(_message("Revenue rose 4%."), task_id="t", prompt="p", review_dir=q) == "Revenue rose 4%."
    with pytest.raises(DoneConditionError) as de:
        handle(_message("Revenue rose", stop="max_tokens"), task_id="t", prompt="p", review_dir=q)
    assert de.value.failed == ["max_tokens"] and "max_tokens" in str(de.value)
    cfg = parse_config({"done": {"min_chars": 40}})
    with pytest.raises(DoneConditionError) as de2:
        handle(_message("Too short."), task_id="t", prompt="p", config=cfg, review_dir=q)
    assert de2.value.failed and de2.value.verdict.rule_code == "DN00"
    assert not q.exists()  # nothing held so far


def test_a_held_decline_is_the_review_file_the_export_writes(tmp_path: Path) -> None:
    """The file handle() writes for a declined call is the file `review export` writes for the audited log,
    and a second hold of the same input adds the run to the same item."""
    q, log = tmp_path / "queue", tmp_path / "calls.jsonl"
    refusal = _message("I won't write that. It would help someone break into an account they don't own.")
    held = handle(refusal, task_id="email-draft", prompt="Get me into my ex's email", log=log, review_dir=q,
                  run_id="run-1", ts="2026-06-01T10:00:00Z")
    assert isinstance(held, Held) and held.review_file == q / f"{held.review_key}.json"
    first = json.loads(held.review_file.read_text())
    assert first["occurrences"] == 1 and first["prompt"] == "Get me into my ex's email"
    handle(refusal, task_id="email-draft", prompt="Get me into my ex's email", log=log, review_dir=q,
           run_id="run-2", ts="2026-06-02T10:00:00Z")
    held_item = json.loads(held.review_file.read_text())
    assert held_item["occurrences"] == 2 and [r["run_id"] for r in held_item["runs"]] == ["run-1", "run-2"]

    exported = tmp_path / "exported"
    with Store.open(":memory:") as store:
        ingest(store, [log], Config())
        classify(store, Config())
        export_queue(store, exported)
    ex_item = json.loads((exported / held.review_file.name).read_text())
    # the same item, except where each run came from (the export names the log file and line)
    for k in ("key", "task_id", "outcome", "signal", "rule_code", "prompt", "response_text", "occurrences",
              "run_ids", "first_seen", "last_seen", "stop_reason"):
        assert held_item[k] == ex_item[k], k
    assert sorted(held_item) == sorted(ex_item)


def _openai_chat(content: str | None, *, refusal: str | None = None, tools: list[dict[str, Any]] | None = None,
                 finish: str = "stop") -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if tools:
        msg["tool_calls"] = tools
    return {"id": "chatcmpl-7", "object": "chat.completion", "created": 1780000000, "model": "gpt-5",
            "choices": [{"index": 0, "finish_reason": "tool_calls" if tools else finish, "message": msg}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}}


def test_the_held_item_is_the_queue_row_of_the_run_as_the_window_gives_it() -> None:
    """hold() builds its item from the checked run itself (the queue's SQL over its stored row); it equals the
    queue row of the same line normalised and classified again by the window, field for field."""
    from runaudit.engine import engine_for
    from runaudit.review import review_queue

    tool_decline = {"type": "message", "role": "assistant", "stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "t1", "name": "answer",
         "input": {"answer": "I can't help with creating malware or anything designed to damage systems."}}]}
    verdicts = [check(_message("I'm sorry, but I can't help with that request."), task_id="t", prompt="p",
                      run_id="a", ts="2026-06-01T10:00:00Z"),
                check(_message("", stop="refusal"), task_id="t", prompt="q", ts="2026-06-01T11:00:00Z"),
                check(tool_decline, task_id="tools", prompt="write ransomware"),
                check(_message("Half of the answ", stop="max_tokens"), task_id="t", prompt="r"),
                runaudit.check_record('{"task_id": "x", "text": "I cannot assist with that.", "status": "ok", '
                                      '"ts": "2026-06-03T01:02:03Z"}'),
                # OpenAI shapes: the refusal field, a tool call whose arguments decline, a Responses API refusal,
                # an answer cut off at the token limit
                check(_openai_chat(None, refusal="I'm sorry, I can't assist with that."), task_id="oa", prompt="a"),
                check(_openai_chat(None, tools=[{"id": "call_1", "type": "function", "function": {
                    "name": "answer", "arguments": json.dumps({"answer": "I can't help with making weapons."})}}]),
                      task_id="oa-tools", prompt="b"),
                check({"id": "resp_1", "object": "response", "created_at": 1780000000, "status": "completed",
                       "model": "gpt-5", "output": [{"type": "message", "id": "m1", "role": "assistant", "content": [
                           {"type": "refusal", "refusal": "I can't help with that."}]}]}, task_id="oa", prompt="c"),
                check(_openai_chat("The first three steps are", finish="length"), task_id="oa", prompt="d")]
    eng = engine_for(Config())
    for v in verdicts:
        assert v.outcome in ("declined", "degraded") and v.review_key
        row = eng.queue_item(v.run)
        with eng.locked() as store:
            eng.load_lines([v.line], source=str(v.run["source_file"]))
            again = [r for r in review_queue(store, "all", include_degraded=True).iter_rows(named=True)
                     if r["key"] == v.review_key]
        assert row is not None and [row] == again, v.line[:120]
    assert eng.queue_item(check(_message("Revenue rose 4%."), task_id="t", prompt="p").run) is None
    # a record with no time of its own takes the check's time, and the held item keeps it (normalising the line
    # again would give it the time of the second pass)
    v = runaudit.check_record('{"task_id": "x", "text": "I cannot assist with that."}')
    row = eng.queue_item(v.run)
    assert row is not None and row["first_seen"] == row["last_seen"] == v.run["ts"]


def test_log_call_is_safe_for_concurrent_writers(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    big = "x" * 200_000  # larger than any pipe buffer: one write must still land whole

    def writer(k: int) -> None:
        for i in range(40):
            log_call(log, {"run_id": f"{k}-{i}", "task_id": "t", "text": big if i % 10 == 0 else "ok"})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    procs = [multiprocessing.get_context("spawn").Process(target=_proc_writer, args=(str(log), k))
             for k in range(2)]
    for t in threads:
        t.start()
    for p in procs:
        p.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    lines = log.read_text(encoding="utf-8").splitlines()
    ids = {json.loads(line)["run_id"] for line in lines}  # every line parses: none interleaved
    assert len(lines) == len(ids) == 6 * 40 + 2 * 40
    with Store.open(":memory:") as store:
        res = ingest(store, [log], Config())
    assert res.ingested == len(lines) and res.quarantined == 0


def _proc_writer(path: str, k: int) -> None:
    for i in range(40):
        log_call(path, {"run_id": f"p{k}-{i}", "task_id": "t", "text": "y" * (i * 1000)})


def test_import_runaudit_does_not_load_typer_or_matplotlib() -> None:
    import subprocess
    import sys

    code = ("import sys, runaudit; v = runaudit.check({'type': 'message', 'role': 'assistant', 'content': "
            "[{'type': 'text', 'text': 'fine'}], 'stop_reason': 'end_turn'}, task_id='t'); "
            "print(v.outcome, 'typer' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["ok", "False", "False"]


def test_check_many_gives_each_calls_own_verdict() -> None:
    calls = [{"response": _message("Here is the digest."), "task_id": "digest", "prompt": "p1", "run_id": "a"},
             {"response": _message("I can't help with making that weapon."), "task_id": "digest", "prompt": "p2",
              "run_id": "b"},
             {"response": _message("The digest", stop="max_tokens"), "task_id": "digest", "prompt": "p3",
              "run_id": "c"}]
    many = runaudit.check_many(calls)
    one = [check(c["response"], task_id=c["task_id"], prompt=c["prompt"], run_id=c["run_id"]) for c in calls]
    assert [v.outcome for v in many] == ["ok", "declined", "degraded"]
    assert [_fields(v) for v in many] == [_fields(v) for v in one]


def test_a_whole_record_passed_as_a_response_is_read_as_that_record(tmp_path: Path) -> None:
    msg = _message("I can't help with making that weapon.")
    records = [
        ({"custom_id": "job-7", "result": {"type": "succeeded", "message": msg}}, "anthropic_batch", "declined"),
        ({"id": "batch_req_1", "custom_id": "r1", "error": None,
          "response": {"status_code": 200, "request_id": "q", "body": _openai_chat(None, finish="content_filter")}},
         "openai_batch", "declined"),
        ({"type": "result", "subtype": "success", "is_error": False, "num_turns": 2, "session_id": "s-1",
          "result": "The digest is written."}, "claude_code", "ok"),
        # an older or unlisted API's body, read for its text fields: a decline is not lost as "empty"
        ({"type": "completion", "completion": " I'm sorry, but I can't help with that.",
          "stop_reason": "stop_sequence", "model": "claude-2.1"}, "flat", "declined"),
    ]
    for i, (rec, shape, outcome) in enumerate(records):
        v = check(rec, task_id="nightly", prompt=f"p{i}")
        assert (v.run["shape"], v.outcome, v.run["task_id"]) == (shape, outcome, "nightly"), rec
        assert v.record == rec | {"task_id": "nightly", "prompt": f"p{i}"}
        log = tmp_path / f"{i}.jsonl"
        log_call(log, v)
        (a,) = _audit([log], Config())
        assert _fields(a) == _fields(v)
    many = runaudit.check_many([{"response": rec, "task_id": "nightly", "prompt": f"p{i}"}
                                for i, (rec, _, _) in enumerate(records)])
    assert [(v.run["shape"], v.outcome) for v in many] == [(s, o) for _, s, o in records]


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(runaudit.RunauditError, match="not JSON"):
        check("I'm sorry", task_id="t")
    with pytest.raises(runaudit.RunauditError, match="cannot read a object"):
        check(object(), task_id="t")
    with pytest.raises(runaudit.RunauditError, match="not a record runaudit can read: unrecognised"):
        runaudit.check_record({"something": "else"})


def test_the_check_holds_little_memory_in_the_pipelines_process() -> None:
    """A pipeline's first check prepares the one-line statement: it held ~1 GB when the CASE results' lambdas were
    nested (each binds its own copy of what it captures). Checks under ten configurations keep only the engines of
    the last few (runaudit.engine.ENGINES_KEPT): each prepared engine holds ~90 MB more."""
    import subprocess
    import sys

    from tests.conftest import PEAK_RSS_KB

    code = ("import json, resource, sys\nfrom runaudit import check\nfrom runaudit.config import parse_config\n"
            "body = {'type': 'message', 'role': 'assistant', 'content': [{'type': 'text', "
            "'text': \"I can't help with that.\"}], 'stop_reason': 'end_turn'}\n"
            "out = [check(body, task_id='t', prompt='p').outcome]\none = " + PEAK_RSS_KB + "\n"
            "out += [check(body, task_id='t', prompt='p', config=parse_config({'done': {'min_chars': n}})).outcome "
            "for n in range(1, 11)]\n"
            "print(json.dumps({'out': out, 'one': one, 'ten': " + PEAK_RSS_KB + "}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout)
    assert got["out"] == ["declined"] * 11
    assert got["one"] < 512 * 1024  # KB: 296 MB measured, 1,035 MB with nested lambdas
    assert got["ten"] < 1024 * 1024  # 566 MB measured with 4 engines kept, 5,683 MB with all ten (and nested lambdas)
