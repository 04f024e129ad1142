"""The one-line prepared statement (runaudit.one_line) gives exactly what the ingest window and the classifier give.

Every comparison is against the general path of the same engine (Engine.load_lines: the window's statements on
tables, then classify) or against the audit of a real file; the database is a real DuckDB throughout.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import runaudit
from runaudit.classify import classify
from runaudit.config import Config, load_config, parse_config
from runaudit.engine import RESULT_SQL, Engine
from runaudit.errors import UsageError
from runaudit.ingest import discover, ingest
from runaudit.one_line import (
    _CASE_WORD,
    _REGEX_CALL,
    _TOKEN,
    _case_parts,
    compile_one_line_sql,
    inline_params,
    lazy_branches,
    lazy_regexes,
    literal,
)
from runaudit.store import Store, arrow_table

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"
MTIME = 1_780_000_000.0


def _general(eng: Engine, line: str) -> tuple[list[dict[str, Any]], Any]:
    _, ruleset = eng.load_lines([line], mtime=MTIME)
    tbl = arrow_table(eng.store.con.sql(RESULT_SQL, params={"ruleset": ruleset}).arrow())
    return tbl.to_pylist(), tbl.schema


def _assert_same(eng: Engine, line: str) -> bool:
    """The one-line result equals the window's, row for row and type for type; True if the one-line path ran."""
    one = eng._run_one(line, "<inline>", MTIME)
    if one is None:
        return False
    rows, schema = _general(eng, line)
    assert one.runs.schema == schema, line[:200]
    assert one.runs.to_pylist() == rows, line[:200]
    return True


def _sample_lines() -> list[str]:
    out = []
    for p in discover([SAMPLE]):
        if p.endswith(".jsonl"):
            out += [x for x in Path(p).read_text(encoding="utf-8").split("\n") if x.strip()]
    return out


def test_the_one_line_statement_gives_the_windows_rows_on_sample_lines() -> None:
    eng = Engine(load_config(SAMPLE / "runaudit.toml"))
    lines = _sample_lines()
    taken = sum(_assert_same(eng, line) for line in lines[::2])
    assert eng._one is True
    # stream events and OTLP exports go the general way; everything else takes the one-line statement
    assert taken >= 0.85 * len(lines[::2])


def _body(ts: Any) -> str:
    rec: dict[str, Any] = {"run_id": "r1", "task_id": "t", "prompt": "p",
                           "response": {"type": "message", "role": "assistant", "stop_reason": "end_turn",
                                        "content": [{"type": "text", "text": "Done: the report is attached."}]}}
    if ts is not None:
        rec["ts"] = ts
    return json.dumps(rec)


@pytest.mark.parametrize("ts", [None, "2026-03-04T05:06:07Z", "2026-03-04T05:06:07.123456+02:00",
                                "2026-03-04 05:06:07", "2026-03-04", "Tue, 03 Mar 2026 05:06:07 GMT",
                                1_772_600_000, 1_772_600_000_123, 1_772_600_000_123_456, 1_772_600_000_123_456_789,
                                "1772600000.5", "yesterday", "9999-01-01T00:00:00Z", "1969-12-31T00:00:00Z", "",
                                " 2026-03-04T05:06:07Z "])
def test_a_logged_time_is_read_as_the_window_reads_it(ts: Any) -> None:
    eng = Engine()
    assert _assert_same(eng, _body(ts))


def _cases() -> list[tuple[str, dict[str, Any], str]]:
    out = []
    for f in sorted((ROOT / "tests" / "rules" / "cases").glob("*.yml")):
        for name, case in yaml.safe_load(f.read_text(encoding="utf-8")).items():
            for i, r in enumerate(case["records"]):
                out.append((f"{f.stem}::{name}::{i}", case, r if isinstance(r, str) else json.dumps(r)))
    return out


@pytest.mark.parametrize("case, line", [(c, x) for _, c, x in _cases()], ids=[n for n, _, _ in _cases()])
def test_each_rule_case_record_alone_gets_the_audits_verdict(case: dict[str, Any], line: str,
                                                             tmp_path: Path) -> None:
    """Under the case's own config (done-conditions, field maps, thresholds): check_record of the record equals
    the audit of a file holding only that record, and the one-line path equals the window's."""
    cfg = parse_config(tomllib.loads(case["config"])) if "config" in case else Config()
    log = tmp_path / "one.jsonl"
    log.write_text(line + "\n", encoding="utf-8")
    with Store.open(":memory:") as store:
        ingest(store, [log], cfg)
        classify(store, cfg)
        audited = store.query("SELECT c.outcome, c.rule_code, c.sub_reason, c.refusal_score, c.done_failures, "
                              "c.idem_key AS review_key FROM runs r JOIN classifications c USING (rid)").to_dicts()
    eng = Engine(cfg)
    _assert_same(eng, line)
    if len(audited) != 1:
        return  # a stream event alone or a line the audit quarantines: no verdict of its own
    v = runaudit.check_record(line, config=cfg)
    assert {k: getattr(v, k) for k in audited[0]} == audited[0]


def test_lines_the_window_does_more_for_go_the_general_way() -> None:
    eng = Engine()
    start = json.dumps({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                                                            "content": [], "model": "claude"}})
    otlp = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "chat", "attributes": []}]}]}]})
    for line in (start, otlp, "not json", "[1, 2]", "{}", ""):
        assert eng._run_one(line, "<inline>", MTIME) is None, line
    with pytest.raises(UsageError):
        runaudit.check_record("not json")


def test_parameters_are_written_as_literals_outside_strings_and_comments() -> None:
    sql = "SELECT $a, ?, '$a ?', \"$a\" -- $b ?\n, $keep, 'it''s $a'"
    out = inline_params(sql, {"a": "it's"}, [[1, 2]], keep={"keep": "$1"})
    assert out == "SELECT 'it''s', [1, 2], '$a ?', \"$a\" -- $b ?\n, $1, 'it''s $a'"
    with pytest.raises(KeyError):
        inline_params("SELECT $missing", {})
    with pytest.raises(KeyError):
        inline_params("SELECT ?, ?", {}, [1])
    assert literal(["a", "b'"]) == "['a', 'b''']::VARCHAR[]"
    assert literal(None) == "NULL" and literal(True) == "true" and literal(1.5) == "1.5::DOUBLE"
    with pytest.raises(ValueError):
        literal("a\x00b")


def test_regex_calls_are_put_in_lambdas_and_nothing_else_is_touched() -> None:
    sql = ("SELECT regexp_matches(a, 'x(y)') AS q, 'regexp_matches(q, p)' -- regexp_extract(z, 'w')\n"
           ", REGEXP_REPLACE(regexp_replace(b, '\"(', '', 'g'), '[(]', ')', 'g'), my_regexp_matches(c, 'd'), "
           "regexp_escape(e), \"regexp_matches(\", regexp_extract(f(g, h), ',', 1)")
    assert lazy_regexes(sql) == (
        "SELECT list_transform([a], lambda ra_rx1: regexp_matches(ra_rx1, 'x(y)'))[1] AS q, 'regexp_matches(q, p)' "
        "-- regexp_extract(z, 'w')\n, list_transform([list_transform([b], lambda ra_rx2: "
        "regexp_replace(ra_rx2, '\"(', '', 'g'))[1]], lambda ra_rx3: REGEXP_REPLACE(ra_rx3, '[(]', ')', 'g'))[1], "
        "my_regexp_matches(c, 'd'), regexp_escape(e), \"regexp_matches(\", "
        "list_transform([f(g, h)], lambda ra_rx4: regexp_extract(ra_rx4, ',', 1))[1]")
    with pytest.raises(ValueError):
        lazy_regexes("SELECT regexp_matches(a, 'b'")


def _rewritten_values(exprs: list[str], texts: list[str | None], rewrite: Any) -> str:
    """``rewrite`` of a SELECT of ``exprs`` over ``texts`` (as ``t``) gives the same values and types, row for row;
    returns the rewritten SQL."""
    import duckdb

    sql = "SELECT " + ", ".join(f"{e} AS e{i}" for i, e in enumerate(exprs)) + " FROM (SELECT unnest($texts) AS t)"
    con = duckdb.connect()
    want = con.execute(sql, {"texts": texts})
    want_types, want_rows = [d[1] for d in want.description], want.fetchall()
    out = rewrite(sql)
    got = con.execute(out, {"texts": texts})
    assert [d[1] for d in got.description] == want_types
    assert got.fetchall() == want_rows
    return out


def test_regex_calls_in_lambdas_give_the_same_values() -> None:
    """Every regex function, nested, inside a CASE, inside a lambda of its own, over NULL, empty, multi-byte,
    quoted and multi-line text: the same values and types, row for row."""
    exprs = ["regexp_matches(t, 'a.b')", "regexp_matches(t, '(?i)^\\W*i can.?t')", "regexp_matches(t, 'X', 'i')",
             "regexp_full_match(t, '.*b.*')", "regexp_replace(t, '[aeiou]', '_', 'g')",
             "regexp_replace(regexp_replace(t, '\"[^\"]*\"', ''), '\\s+', ' ', 'g')",
             "regexp_extract(t, '(\\w+) (\\w+)', 2)", "regexp_extract(t, '(?P<w>\\w+)', ['w'])",
             "regexp_extract_all(lower(t), '[a-z]{2,}')", "list_transform([t, t || 'ab'], lambda v: "
             "regexp_matches(v, 'a') AND regexp_matches(left(v, 3), 'b'))",
             "CASE WHEN t IS NULL THEN 'none' WHEN regexp_matches(t, '^I') THEN regexp_extract(t, '^(\\S+)', 1) "
             "ELSE regexp_replace(t, '.', '', 'g') END"]
    texts = [None, "", "I can't help with that.", "a\nb ab AXB", "“quoted” \"said\" ’", "日本語 ab", "x" * 5000]
    assert _rewritten_values(exprs, texts, lazy_regexes).count("lambda ra_rx") == 15


def test_the_one_line_statement_sets_up_no_regex_outside_a_lambda() -> None:
    """The statement's every regex call searches a lambda's own variable (so DuckDB sets it up only where a row
    reaches it), and it still gives the window's rows (the tests above)."""
    eng = Engine()
    sql = compile_one_line_sql(eng.store, eng.cfg, eng.ruleset)
    # literals and comments left out (a pattern's text may name a function); quoted names kept empty
    bare = _TOKEN.sub(lambda m: "''" if m.group(0)[0] in "'\"" else "" if m.group(0)[0] == "-" else m.group(0), sql)
    calls = 0
    for m in _REGEX_CALL.finditer(bare):
        assert re.match(r"ra_rx\d+,", bare[m.end():]), bare[m.start():m.start() + 120]
        calls += 1
    assert calls > 100


def test_case_results_are_put_in_lambdas_and_nothing_else_is_touched() -> None:
    sql = ("SELECT CASE WHEN a THEN lower(b) WHEN c THEN 'x' ELSE CASE d WHEN 1 THEN upper(e) END END AS end_at, "
           "'CASE WHEN p THEN f(q) END' -- CASE WHEN r THEN f(s) END\n, case_id, x.end, \"case\", "
           "CASE WHEN g THEN count(h) ELSE sum(i) END, CASE WHEN j THEN (SELECT max(k) FROM t) ELSE row_number() "
           "OVER () END, CASE WHEN l THEN m END FROM t")
    def squeeze(x: str) -> str:  # the rewrite's spacing is not its meaning
        return " ".join(x.replace("( ", "(").replace(" )", ")").split())

    assert squeeze(lazy_branches(sql, frozenset({"count", "sum", "max"}))) == squeeze(
        "SELECT CASE WHEN a THEN  list_transform([0], lambda ra_cs1: ( lower(b) ))[1]  WHEN c THEN  'x'  "
        "ELSE  list_transform([0], lambda ra_cs2: ( CASE d WHEN 1 THEN upper(e) END ))[1]  END AS end_at, "
        "'CASE WHEN p THEN f(q) END' -- CASE WHEN r THEN f(s) END\n, "
        "case_id, x.end, \"case\", CASE WHEN g THEN  count(h)  ELSE  sum(i)  END, CASE WHEN j THEN  (SELECT "
        "max(k) FROM t)  ELSE  row_number() OVER ()  END, CASE WHEN l THEN  m  END FROM t")
    with pytest.raises(ValueError):
        lazy_branches("SELECT CASE WHEN a THEN f(b) FROM t")


def test_case_results_in_lambdas_give_the_same_values() -> None:
    """Searched and simple CASEs, nested, without ELSE, with NULL, struct, list and text results, inside a lambda
    of their own and over a lambda's variable: the same values and types, row for row."""
    exprs = ["CASE WHEN t IS NULL THEN 'none' WHEN length(t) > 3 THEN upper(t) ELSE lower(t) END",
             "CASE WHEN t LIKE 'I%' THEN {'w': split(t, ' ')[1], 'n': length(t)} END",
             "CASE length(coalesce(t, '')) WHEN 0 THEN [] ELSE string_split(t, ' ') END",
             "CASE WHEN t IS NOT NULL THEN CASE WHEN t = '' THEN NULL::VARCHAR ELSE reverse(t) END END",
             "list_transform(string_split(coalesce(t, ''), ' '), lambda w: CASE WHEN length(w) > 2 "
             "THEN upper(w) ELSE concat(w, '!') END)",
             "CASE WHEN t IS NULL THEN NULL ELSE strlen(t) * 2 END"]
    texts = [None, "", "I can't help with that.", "ab", "日本語 ab", "x" * 5000]
    assert _rewritten_values(exprs, texts, lazy_branches).count("lambda ra_cs") == 8


def test_the_one_line_statements_case_results_are_set_up_only_where_a_row_takes_them() -> None:
    """Every CASE result of the statement that calls a function is a lambda's body or inside one, but for the
    results a lambda cannot hold (a subquery, a window, an aggregate); no such lambda is inside another (nested,
    they made the prepared statement hold ~560 MB); the statement still gives the window's rows (above)."""
    eng = Engine()
    sql = compile_one_line_sql(eng.store, eng.cfg, eng.ruleset)
    # literals and comments left out (a pattern's text may hold CASE or a parenthesis); quoted names kept empty
    bare = _TOKEN.sub(lambda m: "''" if m.group(0)[0] in "'\"" else " " if m.group(0)[0] == "-" else m.group(0), sql)
    lambdas = []  # (start, end) of each CASE-result lambda's text
    for m in re.finditer(r"list_transform\(\[0\], lambda ra_cs\d+:", bare):
        depth = 0
        for i in range(m.start() + len("list_transform"), len(bare)):
            depth += bare[i] == "("
            depth -= bare[i] == ")"
            if depth == 0:
                lambdas.append((m.start(), i))
                break
    assert not [a for a in lambdas for b in lambdas if b[0] < a[0] < b[1]], "a CASE-result lambda inside another"
    results = wrapped = inside = 0
    for m in _CASE_WORD.finditer(bare):
        if m.group(1).upper() != "CASE":
            continue
        if any(a < m.start() < b for a, b in lambdas):
            inside += 1
            continue
        for kw, text in _case_parts(bare, m.end())[0]:
            if kw not in ("THEN", "ELSE") or "(" not in text:
                continue
            results += 1
            if text.strip().startswith("list_transform([0], lambda ra_cs"):
                wrapped += 1
            else:
                assert re.search(r"\b(SELECT|OVER|count|sum|max|min|first|list|bool_or|any_value|arg_max|arg_min|"
                                 r"string_agg|avg|array_agg)\s*\(", text, re.I), text[:200]
    assert wrapped > 100 and wrapped >= 0.9 * results and inside > 20


def test_a_lone_surrogate_is_read_as_the_audit_reads_it(tmp_path: Path) -> None:
    """Text no UTF-8 file can hold: check() logs it escaped (as json.dumps does by default) and gives the
    verdict the audit of that log gives; a line given with one is read with U+FFFD, never a database error."""
    body = {"type": "message", "role": "assistant", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "I can\u2019t help with that \ud800 request."}]}
    v = runaudit.check(body, task_id="t", prompt="p", run_id="r1", ts="2026-03-04T05:06:07Z")
    assert "\\ud800" in v.line
    log = tmp_path / "calls.jsonl"
    runaudit.log_call(log, v)
    with Store.open(":memory:") as store:
        ingest(store, [log], Config())
        classify(store, Config())
        a = store.query("SELECT c.outcome, c.rule_code, c.refusal_score, c.idem_key AS review_key FROM runs r "
                        "JOIN classifications c USING (rid)").to_dicts()
    assert [{k: getattr(v, k) for k in a[0]}] == a
    w = runaudit.check_record('{"run_id": "r2", "response": "fine \ud800 text"}')
    assert w.outcome == "ok" and "invalid_utf8_replaced" in w.run["notes"]


def test_a_line_the_reader_would_not_parse_is_quarantined_by_the_check_too(tmp_path: Path) -> None:
    """Longer than [ingest] max_line_bytes, or holding more '[' and '{' than the reader parses: the audit
    quarantines it (line_too_long, too_complex), and check_record refuses it with the same reason."""
    from runaudit.ingest.reader import MAX_CONTAINERS

    short = parse_config({"ingest": {"max_line_bytes": 2000}})
    long_line = json.dumps({"run_id": "r1", "response": "x" * 3000})
    deep = json.dumps({"run_id": "r2", "response": "[" * (MAX_CONTAINERS + 1)})
    for line, reason, cfg in ((long_line, "line_too_long", short), (deep, "too_complex", Config())):
        log = tmp_path / f"{reason}.jsonl"
        log.write_text(line + "\n", encoding="utf-8")
        with Store.open(":memory:") as store:
            ingest(store, [log], cfg)
            assert store.rows("SELECT reason FROM quarantine") == [(reason,)]
            assert store.scalar("SELECT count(*) FROM runs") == 0
        with pytest.raises(UsageError, match=reason):
            runaudit.check_record(line, config=cfg)


def test_a_line_with_whitespace_at_its_edges_is_trimmed_as_the_reader_trims_it(tmp_path: Path) -> None:
    """Spaces, a byte-order mark, Unicode spaces or a tab around a record: the check trims what the reader trims,
    so the raw text, the record hash and the review key (no prompt, no run id: the key comes from the record)
    match the audit of a file holding that line."""
    body = '{"task_id":"t","text":"I cannot help with that."}'
    lines = ["  " + body, body + "\t ", "\ufeff" + body, body + "\u00a0", " \u3000" + body + "  \u2003", body]
    # raw OpenAI bodies, as a gateway logs them: a chat completion whose reply declines, a Responses API refusal
    chat = json.dumps({"id": "chatcmpl-9", "object": "chat.completion", "created": 1780000000, "model": "gpt-5",
                       "choices": [{"index": 0, "finish_reason": "stop", "message": {
                           "role": "assistant", "content": "I'm sorry, but I can't help with that request."}}]})
    responses = json.dumps({"id": "resp_9", "object": "response", "created_at": 1780000000, "status": "completed",
                            "model": "gpt-5", "output": [{"type": "message", "id": "msg_9", "role": "assistant",
                                                          "content": [{"type": "refusal",
                                                                       "refusal": "I can't assist with that."}]}]})
    openai_lines = [" " + chat + "\u00a0", "\ufeff" + responses, "\t" + chat, responses + "\u2003 "]
    raws = set()
    for i, line in enumerate(lines + openai_lines):
        log = tmp_path / f"padded-{i}.jsonl"
        log.write_bytes(line.encode("utf-8") + b"\n")
        with Store.open(":memory:") as store:
            ingest(store, [log], Config())
            classify(store, Config())
            a = store.query("SELECT r.raw, r.record_hash, r.record_bytes, c.outcome, c.rule_code, c.refusal_score, "
                            "c.idem_key AS review_key FROM runs r JOIN classifications c USING (rid)").to_dicts()
        v = runaudit.check_record(line)
        assert len(a) == 1 and {k: (v.run[k] if k in v.run else getattr(v, k)) for k in a[0]} == a[0], repr(line)
        assert v.outcome == "declined"
        raws.add(v.run["raw"])
    assert body in raws and chat in raws and responses in raws
    assert len(raws) < len(lines) + len(openai_lines)  # most paddings are trimmed away


def test_provider_bodies_under_a_pipelines_own_key_give_the_windows_rows() -> None:
    from tests.test_provider_shapes import UNLISTED_BODIES, _wrapped_lines

    eng = Engine(Config())
    lines = [json.dumps(rec) for rec, _, _ in _wrapped_lines()]
    lines += [json.dumps({"task_id": "u", "response": body}) for body, _, _ in UNLISTED_BODIES]
    assert all(_assert_same(eng, line) for line in lines)
