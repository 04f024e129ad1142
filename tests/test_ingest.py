"""Ingest: shapes, accounting of every line, quarantine, idempotence, incremental append, odd input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from runaudit.config import parse_config
from runaudit.errors import InputFormatError
from runaudit.ingest import ingest
from runaudit.store import Store
from tests.conftest import flat, write_jsonl


def _buckets(res) -> int:  # type: ignore[no-untyped-def]
    return res.ingested + res.duplicates + res.blank + res.quarantined


def test_every_line_is_counted_once(store: Store, tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "a.jsonl", [flat(run_id="1"), flat(run_id="2"), "", "not json", "[1, 2]",
                                             '{"foo": 1}', '{"task_id": "t", "text": "trunc', flat(run_id="1")])
    res = ingest(store, [log])
    # the same bytes at two places of a log are two calls; reading the file again makes them duplicates
    assert (res.lines, res.ingested, res.duplicates, res.blank, res.quarantined) == (8, 3, 0, 1, 4)
    assert _buckets(res) == res.lines
    q = store.query("SELECT source_line, reason, raw FROM quarantine ORDER BY source_line").to_dicts()
    assert [(r["source_line"], r["reason"]) for r in q] == [
        (4, "not_json"), (5, "not_an_object"), (6, "unrecognised"), (7, "not_json")]
    assert q[0]["raw"] == "not json"


def test_quarantine_keeps_file_line_and_byte_offset(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "b.jsonl"
    first = json.dumps(flat())
    log.write_bytes(first.encode() + b"\n" + b"garbage line\n")
    ingest(store, [log])
    row = store.rows("SELECT source_file, source_line, source_offset, raw_bytes FROM quarantine")[0]
    assert row[0] == str(log.resolve()) and row[1] == 2 and row[2] == len(first) + 1


def test_reingest_adds_nothing_and_append_reads_only_new_lines(store: Store, tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "night.jsonl", [flat(run_id=str(i)) for i in range(5)] + ["", "oops"])
    first = ingest(store, [log])
    assert (first.ingested, first.blank, first.quarantined) == (5, 1, 1)
    again = ingest(store, [log])
    assert again.ingested == 0 and again.quarantined == 0 and _buckets(again) == again.lines == 7
    assert again.files_unchanged == 1
    with log.open("a", encoding="utf-8") as f:
        f.write(json.dumps(flat(run_id="new")) + "\n")
    grown = ingest(store, [log])
    assert grown.files_appended == 1 and grown.ingested == 1 and grown.lines == 8 and _buckets(grown) == 8
    assert store.scalar("SELECT count(*) FROM runs") == 6
    assert store.scalar("SELECT count(*) FROM quarantine") == 1
    assert store.scalar("SELECT max(source_line) FROM runs") == 8


def test_same_content_in_another_file_is_a_duplicate(store: Store, tmp_path: Path) -> None:
    recs = [flat(run_id=str(i)) for i in range(3)]
    ingest(store, [write_jsonl(tmp_path / "a.jsonl", recs)])
    res = ingest(store, [write_jsonl(tmp_path / "copy.jsonl", recs)])
    assert res.ingested == 0 and res.duplicates == 3


def test_rewritten_file_is_reread_with_dedupe(store: Store, tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "a.jsonl", [flat(run_id="1"), flat(run_id="2")])
    ingest(store, [log])
    write_jsonl(log, [flat(run_id="0"), flat(run_id="1"), flat(run_id="2")])
    res = ingest(store, [log])
    assert res.files_rewritten == 1 and res.ingested == 1 and res.duplicates == 2


def test_odd_but_readable_values(store: Store, tmp_path: Path) -> None:
    big = "x" * (5 * 1024 * 1024)
    raw = b"\xef\xbb\xbf" + json.dumps(flat(run_id="bom")).encode() + b"\r\n"
    raw += json.dumps(flat(run_id="str-status", http_status="200")).encode() + b"\r\n"
    raw += json.dumps(flat(run_id="badts", ts="last tuesday")).encode() + b"\n"
    raw += json.dumps(flat(run_id="epoch-ms", ts=1751680813000)).encode() + b"\n"
    raw += b'{"run_id": "utf8", "task_id": "t", "text": "caf\xe9 bad byte", "status": "success"}\n'
    raw += json.dumps(flat(run_id="big", text=big)).encode() + b"\n"
    log = tmp_path / "odd.jsonl"
    log.write_bytes(raw)
    res = ingest(store, [log])
    assert res.ingested == 6 and res.quarantined == 0, res.as_dict()
    rows = {r["run_id"]: r for r in store.query("SELECT run_id, http_status, ts, notes, length(response_text) AS n, "
                                                 "response_text FROM runs").to_dicts()}
    assert rows["bom"]["http_status"] == 200
    assert rows["str-status"]["http_status"] == 200
    assert "ts_unparsed" in rows["badts"]["notes"]
    assert str(rows["epoch-ms"]["ts"]).startswith("2025-07-05 02:00:13")
    assert "invalid_utf8_replaced" in rows["utf8"]["notes"] and "\ufffd" in rows["utf8"]["response_text"]
    assert rows["big"]["n"] == len(big)


def test_line_endings_and_edge_whitespace_do_not_change_the_record(store: Store, tmp_path: Path) -> None:
    """LF, CR LF, stray spaces, a BOM (at the start, or mid-file where two files were concatenated) or a missing
    final newline: the same record is one run, stored as written."""
    rec = json.dumps(flat(run_id="same"))
    other = json.dumps(flat(run_id="tabbed"))
    raw = (b"\xef\xbb\xbf" + rec.encode() + b"\r\n" + rec.encode() + b"\n" + b"  " + rec.encode() + b" \r\n"
           + b"\r\n" + b"   \n" + b"\t" + other.encode() + b"\t\n" + b"\xef\xbb\xbf" + rec.encode() + b"\n"
           + rec.encode())
    log = tmp_path / "endings.jsonl"
    log.write_bytes(raw)
    res = ingest(store, [log])
    # five places of the log hold the record: five calls, however each line was terminated or padded
    assert (res.lines, res.ingested, res.duplicates, res.blank, res.quarantined) == (8, 6, 0, 2, 0), res.as_dict()
    raws = store.rows("SELECT run_id, raw FROM runs ORDER BY source_line")
    assert [r[1] for r in raws if r[0] == "same"] == [rec] * 5  # no terminator, BOM or edge space kept
    assert [r[1] for r in raws if r[0] == "tabbed"] == ["\t" + other + "\t"]  # tabs are not what trim() strips
    offsets = [r[0] for r in store.rows("SELECT source_offset FROM runs ORDER BY source_line")]
    assert offsets[0] == 0 and offsets[3] == len(rec) + 3 + 2 + len(rec) + 1 + len(rec) + 5 + 2 + 4
    # the same records written plainly (LF, no padding) are the same records: all duplicates
    plain = tmp_path / "plain.jsonl"
    plain.write_text((rec + "\n") * 5 + "\t" + other + "\t\n")
    again = ingest(store, [plain])
    assert (again.lines, again.ingested, again.duplicates) == (6, 0, 6), again.as_dict()


def test_corrupt_gzip_is_named_and_other_files_still_ingest(store: Store, tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [flat(run_id="g")])
    bad = tmp_path / "bad.jsonl.gz"
    payload = gzip.compress(("\n".join(json.dumps(flat(run_id=str(i))) for i in range(50)) + "\n").encode())
    bad.write_bytes(payload[: len(payload) // 2])
    res = ingest(store, [tmp_path])
    assert res.ingested == 1
    assert len(res.errors) == 1 and "bad.jsonl.gz" in res.errors[0]["file"]
    assert store.scalar("SELECT count(*) FROM runs WHERE source_file LIKE '%bad.jsonl.gz'") == 0
    assert store.scalar("SELECT source_file FROM runs") == str(good)


def test_gzip_and_ndjson_are_discovered_recursively(store: Store, tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    write_jsonl(tmp_path / "sub" / "a.ndjson", [flat(run_id="a")])
    with gzip.open(tmp_path / "sub" / "deeper" / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps(flat(run_id="b")) + "\n")
    (tmp_path / "notes.txt").write_text("ignored")
    res = ingest(store, [tmp_path])
    assert res.files == 2 and res.ingested == 2


def test_missing_path_is_an_input_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="does not exist"):
        ingest(store, [tmp_path / "nope"])


def test_utf16_file_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "u16.jsonl"
    log.write_bytes((json.dumps(flat()) + "\n").encode("utf-16"))
    res = ingest(store, [log])
    assert res.errors and "UTF-16" in res.errors[0]["error"]


def test_field_map_reads_a_custom_shape(store: Store, tmp_path: Path) -> None:
    cfg = parse_config({"ingest": {"map": {"text": "out.content", "task_id": "j.name", "ts": "when",
                                           "status": "verdict"}}})
    log = write_jsonl(tmp_path / "c.jsonl", [
        {"j": {"name": "nightly"}, "when": "2026-07-01T00:00:00Z", "out": {"content": "All good."},
         "verdict": "ok"}])
    res = ingest(store, [log], cfg)
    assert res.ingested == 1
    row = store.query("SELECT shape, task_id, response_text, reported_status FROM runs").to_dicts()[0]
    assert row == {"shape": "custom", "task_id": "nightly", "response_text": "All good.", "reported_status": "ok"}


def test_wrapped_request_gives_the_prompt(store: Store, tmp_path: Path) -> None:
    rec = {"task_id": "w", "ts": "2026-07-01T00:00:00Z", "status": "success",
           "request": {"system": "Be brief.", "messages": [
               {"role": "user", "content": "First question"},
               {"role": "assistant", "content": [{"type": "text", "text": "An answer"}]},
               {"role": "user", "content": [{"type": "text", "text": "Second question"}]}]},
           "response": {"id": "m", "type": "message", "role": "assistant", "model": "claude-x",
                        "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn"}}
    ingest(store, [write_jsonl(tmp_path / "w.jsonl", [rec])])
    prompt = store.scalar("SELECT prompt FROM runs")
    assert prompt == "Be brief.\n\nFirst question\n\nAn answer\n\nSecond question"


def test_long_line_over_the_limit_is_quarantined_not_held(store: Store, tmp_path: Path) -> None:
    cfg = parse_config({"ingest": {"max_line_bytes": 64 * 1024}})
    log = tmp_path / "long.jsonl"
    log.write_text(json.dumps(flat(run_id="a")) + "\n" + json.dumps(flat(text="y" * 200_000)) + "\n"
                   + json.dumps(flat(run_id="c")) + "\n")
    res = ingest(store, [log], cfg)
    assert (res.ingested, res.quarantined, res.lines) == (2, 1, 3)
    assert store.rows("SELECT reason, source_line FROM quarantine") == [("line_too_long", 2)]


def test_windows_reuse_one_string_buffer(tmp_path: Path) -> None:
    """DuckDB keeps each window's Arrow data alive until the file's transaction ends, so every window's strings
    must live in one reused buffer: otherwise memory grows with the size of the file."""
    from runaudit.ingest.reader import iter_windows

    log = tmp_path / "w.jsonl"
    log.write_bytes(b"".join(json.dumps(flat(run_id=str(i))).encode() + (b"\r\n" if i % 2 else b"\n")
                             for i in range(400)))
    addresses, lines = set(), []
    with open(log, "rb", buffering=0) as f:
        for win in iter_windows(f, window=8192):
            col = win.table.column("line")
            addresses.add(col.chunks[0].buffers()[2].address)
            lines.extend(col.to_pylist())
    assert len(addresses) == 1
    assert [json.loads(x)["run_id"] for x in lines] == [str(i) for i in range(400)]



def test_a_window_is_raw_sse_text_when_one_of_its_lines_starts_data(tmp_path: Path) -> None:
    """The SSE flag is read from the bytes after each newline; it must say what a search of the window's bytes for
    a line starting "data:" says, at the first line, the last line (with or without its newline), a line cut
    short ("data" alone) and "data:" inside a line."""
    import random

    from runaudit.ingest.reader import iter_windows

    rng = random.Random(7)
    pieces = [b'{"a": 1}', b"data: {}", b"data:", b"data", b"dat", b'{"x": "\\ndata: y"}', b"", b"  data: {}",
              b"event: x", b"d"]
    for case in range(300):
        body = b"".join(rng.choice(pieces) + rng.choice([b"\n", b"\r\n"]) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.3:
            body = body.rstrip(b"\r\n")
        if not body:
            continue
        log = tmp_path / f"{case}.jsonl"
        log.write_bytes(body)
        with open(log, "rb", buffering=0) as f:
            start = 0
            for win in iter_windows(f):  # an unterminated last line is a window of its own
                text = body[start:win.end_offset]
                assert win.sse == (text.startswith(b"data:") or text.find(b"\ndata:") >= 0), text
                start = win.end_offset
        assert start == len(body)

@pytest.mark.parametrize("encoding, name", [("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-16", "UTF-16"),
                                            ("utf-32-le", "UTF-32"), ("utf-32", "UTF-32")])
def test_wide_encodings_are_a_clear_error_with_or_without_a_bom(store: Store, tmp_path: Path, encoding: str,
                                                                name: str) -> None:
    log = tmp_path / f"{encoding}.jsonl"
    log.write_bytes("".join(json.dumps(flat(run_id=str(i))) + "\n" for i in range(3)).encode(encoding))
    res = ingest(store, [log])
    assert res.errors and f"is {name} encoded" in res.errors[0]["error"]
    assert store.scalar("SELECT count(*) FROM quarantine") == 0


@pytest.mark.parametrize("head", [b"\xfe\xff\x00\x00", b"\xff\xfe\x00", b"\xff\xfe\x00\x00\x00\x00\x01\x02",
                                  b"\x00\x00\xfe\xff\x00\x00\x00\x00"])
def test_a_stray_bom_with_a_few_nuls_is_a_bad_line_not_a_wide_encoding(store: Store, tmp_path: Path,
                                                                       head: bytes) -> None:
    """A BOM-like first line with NUL bytes, then JSON lines (found by the hypothesis test): the text after the BOM
    is not UTF-16 or UTF-32 (its high-byte lanes are not NUL), so the file is read and the odd line quarantined."""
    log = tmp_path / "stray.jsonl"
    log.write_bytes(head + b"\n" + json.dumps(flat(run_id="a")).encode() + b"\n{}\n")
    res = ingest(store, [log])
    assert not res.errors
    assert (res.lines, res.ingested) == (3, 1)
    assert res.ingested + res.duplicates + res.blank + res.quarantined + res.not_calls == res.lines


def test_cr_only_line_endings_are_a_clear_error(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "mac.jsonl"
    log.write_bytes("".join(json.dumps(flat(run_id=str(i))) + "\r" for i in range(3)).encode())
    res = ingest(store, [log])
    assert res.errors and "CR only" in res.errors[0]["error"]


def test_duplicate_keys_read_the_first_value_and_say_so(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "dup.jsonl"
    log.write_text('{"task_id": "t", "status": "success", "text": "ok", "status": "error"}\n')
    ingest(store, [log])
    status, notes = store.rows("SELECT reported_status, notes FROM runs")[0]
    assert status == "success" and "duplicate_keys_first_wins" in notes


@pytest.mark.parametrize("raw", [b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\xff\xfe", b"\x00\x00\xfe\xff\n{}\n"])
def test_a_stray_bom_like_group_is_a_bad_line_not_an_encoding_error(store: Store, tmp_path: Path,
                                                                    raw: bytes) -> None:
    log = tmp_path / "odd.jsonl"
    log.write_bytes(raw)
    res = ingest(store, [log])
    assert not res.errors and res.lines == raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1) - res.held


def test_only_lines_holding_more_brackets_than_the_limit_are_flagged_too_complex(tmp_path: Path) -> None:
    """A line is too complex to parse when it holds more '[' and '{' than MAX_CONTAINERS (inside strings too); the
    count must be exact at the limit, mix both brackets and not leak into the lines around."""
    from runaudit.ingest.reader import MAX_CONTAINERS, iter_windows

    m = MAX_CONTAINERS
    lines = [
        json.dumps({"t": "[" * (m + 1)}),                        # over: flagged
        json.dumps({"t": "{" * (m - 1)}),                        # the record's own '{' makes it exactly m: kept
        json.dumps({"t": "[" * (m // 2) + "{" * (m // 2)}),     # m + 1 with the record's '{': flagged
        json.dumps({"t": "x" * (3 * m)}),                        # long, no brackets: kept
        json.dumps({"t": "[" * 10}),
        "",
        json.dumps({"t": "{" * m}),                              # m + 1: flagged, after a blank line
    ]
    log = tmp_path / "deep.jsonl"
    log.write_text("\n".join(lines) + "\n")
    flags = {}
    with open(log, "rb", buffering=0) as f:
        for win in iter_windows(f, max_line=64 << 20):
            flags.update(zip(win.table.column("line_no").to_pylist(), win.table.column("too_long").to_pylist(),
                             strict=True))
    expected = {i + 1: s.count("[") + s.count("{") > m for i, s in enumerate(lines) if s}
    assert flags == expected
    assert list(expected.values()) == [True, False, True, False, False, True]


def test_records_made_in_sql_keep_their_text_and_nulls_in_the_reused_buffer() -> None:
    """Assembled streams and OTLP spans are parsed from record batches over one reused buffer: each record's text is
    kept exactly, a record without text stays NULL (the parse reads it as an invalid record, as it did from a
    table), and an input that starts mid-buffer (a slice) is read from its own first string."""
    import pyarrow as pa

    from runaudit.ingest.reader import records_table

    lines = ["zz", '{"a": 1}', None, "é" * 3000, "", '{"b": [1, 2]}'] * 200
    full = pa.table({"line_no": pa.array(range(len(lines)), pa.int64()), "part": pa.array([0] * len(lines), pa.int64()),
                     "byte_offset": pa.array([0] * len(lines), pa.int64()), "line": pa.array(lines, pa.string()),
                     "orig_len": pa.array([len((x or "").encode()) for x in lines], pa.int64())})
    tbl = full.slice(1)
    out = bytearray(16)
    chunk, out = records_table(tbl, out, budget=4096)
    assert chunk.column("line").to_pylist() == lines[1:]
    assert chunk.num_rows == len(lines) - 1 and chunk.column("line").null_count == 200
    assert len(chunk.to_batches()) > 100  # cut into batches of about 4 KB of text
    addresses = {b.column(3).buffers()[2].address for b in chunk.to_batches() if b.column(3).buffers()[2]}
    start = pa.py_buffer(memoryview(out)).address
    assert all(start <= a < start + len(out) for a in addresses)
    again, out2 = records_table(tbl.slice(0, 50), out, budget=4096)
    assert out2 is out and again.column("line").to_pylist() == lines[1:51]
