"""Logs still being written and files that change (issue 14: items 1, 4, 13).

Each test reproduces its cause with real files: a last line without its newline, a stream whose last events are
not written yet, a same-size edit in the middle of a large file, a renamed/rewritten/recompressed file.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

from runaudit.classify import classify
from runaudit.config import Config
from runaudit.ingest import ingest
from runaudit.store import Store
from tests.conftest import age, flat
from tests.test_streams import end, start, text_block


def test_an_unterminated_last_line_is_held_until_completed(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "live.jsonl"
    lines = [json.dumps(flat(run_id=str(i))) for i in range(4)]
    log.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25], encoding="utf-8")  # the writer is mid-line
    first = ingest(store, [log])
    assert (first.lines, first.ingested, first.quarantined, first.held) == (3, 3, 0, 1)
    with log.open("a", encoding="utf-8") as f:
        f.write(lines[3][25:] + "\n")
    second = ingest(store, [log])
    assert (second.lines, second.ingested, second.quarantined, second.held) == (4, 1, 0, 0)
    assert store.scalar("SELECT count(*) FROM runs") == 4
    assert store.scalar("SELECT count(*) FROM quarantine") == 0


def test_a_complete_last_line_whose_newline_comes_later_is_counted_once(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "live.jsonl"
    log.write_text(json.dumps(flat(run_id="a")) + "\n" + json.dumps(flat(run_id="b")), encoding="utf-8")
    first = ingest(store, [log])
    assert (first.lines, first.ingested, first.held) == (2, 2, 0)  # valid JSON: a record, newline or not
    with log.open("a", encoding="utf-8") as f:
        f.write("\n" + json.dumps(flat(run_id="c")) + "\n")
    second = ingest(store, [log])
    assert (second.lines, second.ingested, second.blank, second.duplicates) == (3, 1, 0, 2)


def test_a_truncated_last_line_of_a_quiet_file_is_quarantined(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "old.jsonl"
    log.write_text(json.dumps(flat(run_id="a")) + "\n" + '{"task_id": "t", "text": "cut off', encoding="utf-8")
    age(log)
    res = ingest(store, [log])
    assert (res.lines, res.ingested, res.quarantined, res.held) == (2, 1, 1, 0)
    assert "truncated" in store.scalar("SELECT detail FROM quarantine")


def test_a_stream_still_open_at_the_end_of_a_file_is_held(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "stream.jsonl"
    head = [flat(run_id="before"), start("msg_live")] + text_block("I'm sorry, but I can't")
    log.write_text("".join(json.dumps(e) + "\n" for e in head), encoding="utf-8")
    first = ingest(store, [log])
    assert (first.lines, first.ingested, first.held) == (1, 1, len(head) - 1)
    with log.open("a", encoding="utf-8") as f:
        for e in end("refusal", 9, stop_details={"type": "refusal", "category": "cyber"}):
            f.write(json.dumps(e) + "\n")
    second = ingest(store, [log])
    classify(store, Config())
    assert second.quarantined == 0 and second.runs_added == 1
    assert store.rows("SELECT run_id, outcome, rule_code FROM audit_runs ORDER BY source_line") == [
        ("before", "ok", "OK00"), ("msg_live", "declined", "DE01")]


def test_a_stream_cut_off_in_a_quiet_file_is_an_incomplete_run(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "stream.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in [start("msg_cut")] + text_block("Once")),
                   encoding="utf-8")
    age(log)
    res = ingest(store, [log])
    classify(store, Config())
    assert res.held == 0
    assert store.scalar("SELECT rule_code FROM audit_runs") == "IN07"


def test_a_same_size_edit_in_the_middle_of_a_large_file_is_seen(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "big.jsonl"
    recs = [json.dumps(flat(run_id=f"r{i:05d}", text=f"answer number {i:05d} " * 4)) for i in range(3000)]
    log.write_text("\n".join(recs) + "\n", encoding="utf-8")
    assert log.stat().st_size > 300 * 1024
    ingest(store, [log])
    mtime = log.stat().st_mtime
    data = log.read_bytes()
    i = data.index(b"answer number 01500")
    log.write_bytes(data[:i] + b"answer NUMBER 01500" + data[i + 19:])  # same size, middle of the file
    os.utime(log, (mtime, mtime))  # even with the modification time put back
    res = ingest(store, [log])
    assert res.files_rewritten == 1 and res.ingested == 1 and res.duplicates == 2999


def test_renamed_rewritten_and_recompressed_files_add_nothing_twice(store: Store, tmp_path: Path) -> None:
    lines = [json.dumps(flat(run_id="a")), "not json", json.dumps(flat(run_id="b")), "[1]"]
    log = tmp_path / "a.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    first = ingest(store, [log])
    assert (first.ingested, first.quarantined) == (2, 2)
    shutil.move(log, tmp_path / "renamed.jsonl")
    moved = ingest(store, [tmp_path / "renamed.jsonl"])
    assert (moved.ingested, moved.quarantined, moved.duplicates) == (0, 0, 4)
    (tmp_path / "renamed.jsonl").write_text("\n".join(lines + [json.dumps(flat(run_id="c"))]) + "\n")
    gz = tmp_path / "b.jsonl.gz"
    gz.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    res = ingest(store, [tmp_path / "renamed.jsonl", gz])
    assert (res.ingested, res.quarantined, res.duplicates) == (1, 0, 8)
    gz.write_bytes(gzip.compress(("\n".join(lines + ["{bad"]) + "\n").encode()))
    res = ingest(store, [gz])
    assert (res.ingested, res.quarantined, res.duplicates) == (0, 1, 4)
    assert store.scalar("SELECT count(*) FROM quarantine") == 3


def test_duckdb_progress_bar_is_off(store: Store) -> None:
    """On a loaded machine DuckDB's progress bar printed into stdout and corrupted --json."""
    assert store.scalar("SELECT current_setting('enable_progress_bar')") is False


def test_the_cli_says_what_was_held_back(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "live.jsonl"
    log.write_text(json.dumps(flat(run_id="a")) + "\n" + '{"task_id": "t", "te', encoding="utf-8")
    invoke(["audit", log, "--db", tmp_path / "x.duckdb"], stdout_has="held back: 1 line(s)")
    out = invoke(["ingest", log, "--db", tmp_path / "x.duckdb", "--json"]).stdout
    assert json.loads(out)["held"] == 1
