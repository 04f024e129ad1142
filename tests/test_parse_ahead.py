"""The reader's thread parses the next window on a second connection while the store inserts the one before
(``window.parse_window``, ReadAhead's ``prepare``): the stored runs, quarantine and counts are those of the
parse in the caller's thread, and the parsed tables do not pile up in memory until the file's commit."""

from __future__ import annotations

import gc
import gzip
import json
import threading
import weakref
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import runaudit.ingest.files as files
import runaudit.ingest.reader as reader
from runaudit.ingest import ingest
from runaudit.ingest.window import parse_window
from runaudit.store import Store
from tests.conftest import flat
from tests.test_agent_logs import HTTP, chat, otlp
from tests.test_streams import CHAT_OK, OK, REFUSAL


def mixed_lines() -> list[str]:
    """Every kind of window content: records of several shapes and time formats, streams (Anthropic, OpenAI),
    an OTLP export, identical lines, blank, invalid, non-object, a lone surrogate escape, a Gemini array."""
    recs: list[Any] = [flat(run_id="a", ts="2026-03-01 10:00:00"), flat(run_id="b", ts=1772359200123),
                       flat(run_id="c", text="I'm sorry, but I can't help with that.", ts="2026-03-01T10:00:00+02:00")]
    recs += REFUSAL + [flat(run_id="mid")] + CHAT_OK + OK
    recs += [otlp(chat(), HTTP), {"choices": [], "object": "chat.completion", "id": "x", "model": "m"}]
    lines = [json.dumps(r) for r in recs]
    lines += [lines[0], lines[0], "", "{not json", "[1, 2]", '{"task_id": "s", "text": "bad \\ud800 escape"}',
              json.dumps([{"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}]}]),
              json.dumps({"zzz": 1})]
    return lines * 3


def ingested(db: Path, paths: list[str]) -> tuple[dict[str, Any], tuple[list[Any], ...]]:
    """Ingest ``paths`` into a new database: the result (less its time) and the runs, quarantine and files stored
    (less the ingest's id and time), to compare two ways of ingesting the same files."""
    with Store.open(db) as s:
        result = ingest(s, paths).as_dict()
        result.pop("seconds")
        return result, (
            s.rows("SELECT * EXCLUDE (ingest_id) FROM runs ORDER BY source_file, source_line, rid"),
            s.rows("SELECT * EXCLUDE (ingest_id) FROM quarantine ORDER BY source_file, source_line"),
            s.rows("SELECT * EXCLUDE (last_ingest) FROM files ORDER BY path"))


@pytest.mark.parametrize(("window", "gz"), [(0, False), (700, False), (2500, False), (0, True), (700, True)])
def test_parse_ahead_stores_what_the_callers_parse_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          window: int, gz: bool) -> None:
    text = ("\n".join(mixed_lines()) + "\n").encode()
    log = tmp_path / ("mixed.jsonl.gz" if gz else "mixed.jsonl")
    log.write_bytes(gzip.compress(text) if gz else text)
    if window:
        monkeypatch.setattr(reader, "WINDOW_BYTES", window)
    used = []

    def counted(*a: Any) -> Any:
        out = parse_window(*a)
        used.append((out is not None, threading.current_thread() is threading.main_thread()))
        return out

    monkeypatch.setattr(files, "parse_window", counted)
    ahead, got = ingested(tmp_path / "ahead.duckdb", [str(log)])
    # a file read in more than one window (or compressed: its size is unknown) is parsed in the reader's thread;
    # a plain file of one window is parsed by the caller (a second connection would only cost), through the
    # plan the store keeps for the ingest
    assert any(done and not caller for done, caller in used) == (gz or window > 0)
    assert any(done and caller for done, caller in used) == (not gz and window == 0)
    monkeypatch.setattr(files, "parse_window", lambda *a: None)
    inline, want = ingested(tmp_path / "inline.duckdb", [str(log)])
    assert ahead == inline
    assert got == want
    assert len(got[0]) > 30 and got[1]  # runs and quarantined lines were both there to compare


def test_a_window_with_a_long_line_is_parsed_by_the_caller(tmp_path: Path) -> None:
    from runaudit.store.database import BIG_LINE_BYTES

    table = pa.table({"line": ["{}"], "orig_len": [BIG_LINE_BYTES + 1]})
    win = reader.Window(table=table, end_offset=0, lines=1, unterminated_last=False)
    with Store.open(":memory:") as s, s.side() as side:
        assert parse_window(side, win, ("", "", ""), []) is None


def test_a_failed_prepare_leaves_the_work_to_the_caller(tmp_path: Path) -> None:
    log = tmp_path / "x.jsonl"
    log.write_text("\n".join(json.dumps(flat(run_id=str(i))) for i in range(50)) + "\n", encoding="utf-8")

    def boom(win: Any) -> Any:
        raise RuntimeError("parse failed")

    with log.open("rb") as f, reader.ReadAhead(f, window=600, prepare=boom) as wins:
        got = list(wins)
    assert len(got) > 2 and all(w.prepared is None for w in got[:-1])


def test_tables_put_in_a_slot_in_a_transaction_are_let_go(tmp_path: Path) -> None:
    """DuckDB holds an object registered in a transaction until the transaction ends; the slot is registered
    once, so each window's parsed table is freed when the next one takes its place."""
    with Store.open(tmp_path / "s.duckdb") as s, s.transaction():
        refs = []
        for i in range(4):
            t = pa.table({"x": pa.array(range(i, i + 1000))})
            refs.append(weakref.ref(t))
            with s.slot("_parsed", t):
                assert s.scalar("SELECT min(x) FROM _parsed") == i
            del t
        gc.collect()
        assert [r() is None for r in refs] == [True] * 4
        # a table of another schema gets a slot of its own, read the same way
        with s.slot("_parsed", pa.table({"y": ["a", "b"]})):
            assert s.scalar("SELECT count(*) FROM _parsed WHERE y = 'b'") == 1


def test_the_side_connection_has_the_store_session_settings(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.duckdb") as s:
        s.run("SET TimeZone = 'America/New_York'")
        with s.side() as side:
            assert side.scalar("SELECT current_setting('TimeZone')") == "UTC"
            assert side.scalar("SELECT current_setting('enable_progress_bar')") is False


def _has(node: dict[str, Any], name: str) -> bool:
    """Whether the plan ``node`` or one below it is an operator ``name`` or scans a table of that name."""
    table = str(node.get("extra_info", {}).get("Table", ""))
    return name in node["name"] or table.endswith(name) or any(_has(c, name) for c in node.get("children", []))


def test_the_insert_streams_the_parsed_rows_through_its_join(tmp_path: Path) -> None:
    """A window parsed ahead is a view over Arrow rows whose count DuckDB does not know (it estimates 1): left to
    the optimizer, the insert's join built its hash table on those rows, a copy of every parsed column. Planned
    as the window plans it (``INSERT_PLAN``), the parsed rows are the probe side and the narrow ``_fresh`` the
    build side; the runs stored are checked against the caller's parse by the test above."""
    from runaudit.config import Config
    from runaudit.ingest import window as w

    log = tmp_path / "a.jsonl"
    log.write_text("\n".join(json.dumps(flat(run_id=str(i))) for i in range(50)) + "\n")
    with Store.open(str(tmp_path / "x.duckdb")) as store:
        sqls, params = w.compile_insert_sql(Config())
        win = next(reader.iter_windows(reader.open_log(str(log))))
        rows, types = w.parse_rows(store, win.table, sqls[0], params)
        cols = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in zip(rows.column_names, types, strict=True))
        with store.slot("_parsed", rows):
            store.run(f"CREATE TEMP VIEW _final AS SELECT {cols} FROM _parsed")
            store.run(w.OCC_INIT_SQL)
            store.run(w.KEYS_SQL)
            store.run(w.FRESH_SQL, {"next_rid": 0, "rid0": 0})
            args = {"mtime": "2026-01-01", "file": str(log), "ingest_id": 1}
            with store.setting(*w.INSERT_PLAN, ""):
                plan = json.loads(store.rows("EXPLAIN (FORMAT json) " + w.INSERT_RUNS_SQL, args)[0][1])
                assert store.rows(w.INSERT_RUNS_SQL, args)[0][0] == 50
        assert store.scalar("SELECT count(DISTINCT run_id) FROM runs") == 50

    def joins(node: dict[str, Any]) -> list[dict[str, Any]]:
        own = [node] if node["name"] == "HASH_JOIN" else []
        return own + [j for c in node.get("children", []) for j in joins(c)]

    (join,) = joins(plan[0])
    probe, build = join["children"]
    assert _has(probe, "ARROW_SCAN") and not _has(build, "ARROW_SCAN")
    assert _has(build, "_fresh") and not _has(probe, "_fresh")


@pytest.mark.parametrize("mapped", [False, True])
def test_the_parse_is_planned_once_for_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              mapped: bool) -> None:
    """The reader's thread plans the parse statement once per file and runs that plan for every window
    (``Store.arrow_over``), with ``[ingest.map]`` paths too (written into it as literals). Were DuckDB to plan it
    again at a run, it would not find ``_chunk`` and the window would be parsed over a registered view instead:
    none is. The runs stored are those of the caller's parse."""
    import runaudit.store.database as database
    from runaudit.config import parse_config

    cfg = parse_config({"ingest": {"map": {"text": "out.content", "task_id": "j.name", "ts": "when"}}}
                       if mapped else {})

    def rec(i: int) -> dict[str, Any]:
        when = f"2026-03-01T10:00:{i % 60:02d}+02:00"
        if mapped and i % 2:  # a custom shape, read through the map only
            return {"j": {"name": f"it's {i % 3}"}, "when": when, "out": {"content": f"Answer {i}."}}
        return flat(run_id=str(i), ts=when)

    log = tmp_path / "a.jsonl"
    log.write_text("\n".join(json.dumps(rec(i)) for i in range(200)) + "\n")
    monkeypatch.setattr(reader, "WINDOW_BYTES", 3000)
    calls = {"prepare": 0, "over": 0, "registered": 0}
    prepare, over, registered = database._prepare_over, Store.arrow_over, Store._arrow_registered

    def count(name: str, fn: Any) -> Any:
        def counted(*a: Any) -> Any:
            calls[name] += 1
            return fn(*a)
        return counted

    monkeypatch.setattr(database, "_prepare_over", count("prepare", prepare))
    monkeypatch.setattr(Store, "arrow_over", count("over", over))
    monkeypatch.setattr(Store, "_arrow_registered", count("registered", registered))
    with Store.open(tmp_path / "x.duckdb") as s:
        assert ingest(s, [str(log)], cfg).as_dict()["ingested"] == 200
        assert s.scalar("SELECT count(*) FROM runs WHERE ts = TIMESTAMP '2026-03-01 08:00:59'") > 0
        if mapped:
            assert s.scalar("SELECT count(*) FROM runs WHERE shape = 'custom' AND task_id = 'it''s 1' "
                            "AND response_text LIKE 'Answer %'") > 0
        got = s.rows("SELECT * EXCLUDE (ingest_id) FROM runs ORDER BY rid")
    assert calls["over"] > 5
    assert calls == {"prepare": 1, "over": calls["over"], "registered": 0}
    monkeypatch.setattr(files, "parse_window", lambda *a: None)
    with Store.open(tmp_path / "caller.duckdb") as s:
        ingest(s, [str(log)], cfg)
        assert s.rows("SELECT * EXCLUDE (ingest_id) FROM runs ORDER BY rid") == got


def test_a_statement_run_over_tables_reads_the_one_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runaudit.store.database as database

    registered, prepared = [], []
    view, prepare = Store._arrow_registered, database._prepare_over
    monkeypatch.setattr(Store, "_arrow_registered", lambda self, *a: registered.append(1) or view(self, *a))
    monkeypatch.setattr(database, "_prepare_over", lambda *a: prepared.append(1) or prepare(*a))
    with Store.open(tmp_path / "s.duckdb") as s:
        sql = "SELECT sum(x) AS total, count(*) AS n FROM _chunk"
        for i in range(3):
            got, types = s.arrow_over(pa.table({"x": pa.array(range(i * 10, i * 10 + 5), pa.int64())}), sql)
            assert got.to_pylist() == [{"total": sum(range(i * 10, i * 10 + 5)), "n": 5}]
            assert types == ["HUGEINT", "BIGINT"]
        # another schema: a plan of its own
        got, _ = s.arrow_over(pa.table({"x": pa.array([1.5, 2.0])}), sql)
        assert got.to_pylist() == [{"total": 3.5, "n": 2}]
        assert not registered
        # a statement DuckDB plans again at each run (timezone() does) is run over a registered view instead
        tz = "SELECT timezone('UTC', max(x)::TIMESTAMPTZ)::VARCHAR AS t FROM _chunk"
        for day in (1, 2):
            got, _ = s.arrow_over(pa.table({"x": [f"2026-01-0{day} 10:00:00+01:00"]}), tz)
            assert got.to_pylist() == [{"t": f"2026-01-0{day} 09:00:00"}]
        assert len(registered) == 2
        # its second run went to the view at once: no plan made again to be thrown away
        assert len(prepared) == 3
        # the plans kept before are still the ones run
        got, _ = s.arrow_over(pa.table({"x": pa.array([7], pa.int64())}), sql)
        assert got.to_pylist() == [{"total": 7, "n": 1}] and len(registered) == 2


def test_files_of_one_window_share_one_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of one window are parsed by the caller through the plan the store keeps for the ingest: planned once
    for all of them, the same runs as parsing each with its own statement, and forgotten when the ingest ends."""
    import runaudit.ingest.small_files as small_files
    import runaudit.store.database as database

    logs = []
    for k in range(4):
        log = tmp_path / f"d{k}.jsonl"
        log.write_text("\n".join(json.dumps(flat(run_id=f"{k}-{i}", ts=f"2026-03-0{k + 1}T10:00:00+02:00"))
                                 for i in range(30)) + f"\n{{oops {k}\n")
        logs.append(str(log))
    monkeypatch.setattr(small_files, "SMALL_FILE_BYTES", 0)  # each file on its own, not parsed in a group
    prepared = []
    prepare = database._prepare_over
    monkeypatch.setattr(database, "_prepare_over", lambda *a: prepared.append(1) or prepare(*a))
    with Store.open(tmp_path / "x.duckdb") as s:
        res = ingest(s, logs).as_dict()
        assert res["ingested"] == 120 and res["quarantined"] == 4
        assert s.scalar("SELECT count(*) FROM duckdb_prepared_statements()") == 0
        got = s.rows("SELECT * EXCLUDE (ingest_id) FROM runs ORDER BY rid")
    assert len(prepared) == 1
    monkeypatch.setattr(files, "parse_window", lambda *a: None)
    with Store.open(tmp_path / "caller.duckdb") as s:
        ingest(s, logs)
        assert s.rows("SELECT * EXCLUDE (ingest_id) FROM runs ORDER BY rid") == got
