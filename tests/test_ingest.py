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

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.mark.parametrize("window", [None, 300])
def test_a_copy_read_in_the_same_ingest_is_a_duplicate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       window: int | None) -> None:
    """Each pass over a file looks for its records among the runs stored before the pass began (those it adds
    itself cannot be one of them): a copy read right after its original, in the same call and over many windows,
    is all duplicates. A file holding six of those records twice: the first six are duplicates, the second six
    are calls of their own (two identical lines of one log are two calls), whichever window they fall in."""
    from runaudit.ingest import reader

    if window:
        monkeypatch.setattr(reader, "WINDOW_BYTES", window)
    recs = [flat(run_id=str(i)) for i in range(12)]
    a = write_jsonl(tmp_path / "a.jsonl", recs)
    copy = write_jsonl(tmp_path / "b.jsonl", recs)
    twice = write_jsonl(tmp_path / "c.jsonl", recs[:6] + recs[:6])
    with Store.open(str(tmp_path / "x.duckdb")) as store:
        res = ingest(store, [a, copy, twice])
        assert (res.ingested, res.duplicates) == (18, 18)
        assert store.rows("SELECT source_file, count(*), min(record_occ), max(record_occ) FROM runs "
                          "GROUP BY ALL ORDER BY 1") == [(str(a.resolve()), 12, 1, 1), (str(twice.resolve()), 6, 2, 2)]


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


@pytest.mark.parametrize(("text", "want"), [
    ("2024-01-02T03:04:05Z", "2024-01-02 03:04:05"),
    ("2024-01-02 03:04:05.123456+05:30", "2024-01-01 21:34:05.123456"),
    ("2024-01-02T03:04:05.1234567-08:00", "2024-01-02 11:04:05.123456"),
    (" 2024-06-01T12:00:00+02 ", "2024-06-01 10:00:00"),
    ("2024-06-01T12:00:00 America/New_York", "2024-06-01 16:00:00"),
    ("2024-06-01 12:00:00 CET", "2024-06-01 10:00:00"),
    ("2024-03-10T02:30:00", "2024-03-10 02:30:00"),  # no offset: UTC (no daylight-saving gap)
    ("2024-01-02", "2024-01-02 00:00:00"),
    ("2200-01-01T00:00:00+01:00", "2199-12-31 23:00:00"),
    ("2200-01-01T00:00:00-01:00", None), ("1969-12-31T23:59:59Z", None), ("infinity", None), ("-infinity", None),
    ("294247-01-01", None), ("1000-01-01 BC", None), ("2024-02-30", None), ("last tuesday", None),
])
def test_a_logged_date_time_is_its_instant_in_utc(store: Store, text: str, want: str | None) -> None:
    """The time parse reads a date-time text as its instant in UTC (a text without an offset is UTC), as
    ``timezone('UTC', text::TIMESTAMPTZ)`` does, inside 1970-2200; outside, or unreadable, no time."""
    from runaudit.ingest.window import ts_parse_sql

    got, same = store.rows(f"SELECT ({ts_parse_sql('x')})::VARCHAR, ({ts_parse_sql('x')}) IS NOT DISTINCT FROM "
                           "list_filter([try(timezone('UTC', try_cast(trim(x) AS TIMESTAMPTZ)))], lambda v: "
                           "v BETWEEN TIMESTAMP '1970-01-01' AND TIMESTAMP '2200-01-01')[1] FROM (SELECT ? AS x)",
                           [text])[0]
    assert got == want and same


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


@pytest.mark.parametrize("ahead", [False, True])
def test_windows_reuse_two_string_buffers(tmp_path: Path, ahead: bool) -> None:
    """DuckDB keeps each window's Arrow data alive until the file's transaction ends, so the windows' strings must
    live in buffers reused in turn (two: the read ahead packs one while the caller reads the other): otherwise
    memory grows with the size of the file."""
    from runaudit.ingest.reader import ReadAhead, iter_windows

    log = tmp_path / "w.jsonl"
    log.write_bytes(b"".join(json.dumps(flat(run_id=str(i))).encode() + (b"\r\n" if i % 2 else b"\n")
                             for i in range(400)))
    addresses, lines, windows = set(), [], 0
    with open(log, "rb", buffering=0) as f:
        reader = ReadAhead(f, window=8192) if ahead else iter_windows(f, window=8192)
        for win in reader:
            col = win.table.column("line")
            addresses.add(col.chunks[0].buffers()[2].address)
            lines.extend(col.to_pylist())
            windows += 1
        if ahead:
            reader.close()
    assert windows > 10
    assert len(addresses) == 2
    assert [json.loads(x)["run_id"] for x in lines] == [str(i) for i in range(400)]


def _read_all(path: Path, ahead: bool, *, window: int, max_line: int, held: dict[str, int] | None,
              rewind_at: set[int] = frozenset(), stop_after: int | None = None,
              grow: bool = True) -> tuple[list[tuple], str | None]:
    """The windows of ``path`` copied out as they are given, to a caller that asks to read again from the last
    line of the windows numbered in ``rewind_at`` (growing the window when it can, with ``grow``), as the ingest
    does for a stream that goes on, and stops after ``stop_after`` windows (as the ingest does at a stream still
    being written); and the read error, if one ended it. With ``ahead``, each window is read only after the
    thread has packed the next one, so a buffer reused too early shows."""
    from runaudit.ingest.reader import ReadAhead, iter_windows

    got: list[tuple] = []
    rewind: list[tuple[int, int, bool]] = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        kw = {"window": window, "max_line": max_line, "rewind": rewind, "held": held}
        reader = ReadAhead(f, **kw) if ahead else iter_windows(f, **kw)
        try:
            for win in reader:
                if ahead:
                    reader.ready.wait()
                t = win.table
                got.append((win.end_offset, win.lines, win.unterminated_last, win.eof, win.can_grow, win.sse,
                            win.blank_skipped, dict(held or {}),
                            *(t.column(c).to_pylist() for c in t.column_names)))
                if len(got) == stop_after:
                    break
                if len(got) - 1 in rewind_at and t.num_rows > 1:
                    last = t.num_rows - 1
                    rewind.append((t.column("byte_offset")[last].as_py(), t.column("line_no")[last].as_py() - 1,
                                   grow and win.can_grow))
        except (OSError, EOFError) as e:
            return got, type(e).__name__
        finally:
            if ahead:
                reader.close()
                assert not reader.reading
    return got, None


@pytest.mark.parametrize("seed", range(12))
def test_the_read_ahead_gives_the_windows_the_plain_reader_gives(tmp_path: Path, seed: int) -> None:
    """ReadAhead reads the next window in a thread as if no rewind were coming: it must give exactly the windows of
    iter_windows (lines, numbers, offsets, flags, ends, ``held``) for a caller that rewinds and grows windows, over
    files with lines longer than a window, lines over the limit, blank lines, CR LF, bad UTF-8, a byte-order mark,
    and an unfinished last line held back."""
    import random

    rng = random.Random(seed)
    parts = [b"\xef\xbb\xbf"] if seed % 3 == 0 else []
    for i in range(rng.randint(20, 400)):
        kind = rng.random()
        if kind < 0.05:
            body = b""
        elif kind < 0.1:
            body = json.dumps({"run_id": str(i), "blob": "x" * rng.randint(3000, 9000)}).encode()  # > a window
        elif kind < 0.12:
            body = b'{"big": "' + b"y" * 20000 + b'"}'  # over max_line
        elif kind < 0.14:
            body = b'{"bad": "\xff\xfe"}'
        else:
            body = json.dumps(flat(run_id=str(i), response_text="t" * rng.randint(0, 300))).encode()
        parts.append(body + rng.choice([b"\n", b"\r\n"]))
    data = b"".join(parts)
    if seed % 2:
        data += b'{"run_id": "unfinished", "text": "still be'  # a last line still being written
    log = tmp_path / ("w.jsonl.gz" if seed % 4 == 1 else "w.jsonl")
    log.write_bytes(gzip.compress(data) if log.suffix == ".gz" else data)
    window = rng.choice([2048, 4096, 8192])
    kw = {"window": window, "max_line": 16384}
    whole_held: dict[str, int] = {}
    whole = _read_all(log, False, held=whole_held, **kw)[0]
    assert len(whole) >= 3
    some = {i for i in range(len(whole)) if rng.random() < 0.3}
    # the whole file, with and without rewinds; and a caller that rewinds at one window and stops at the next (the
    # read ahead had gone on, to the end of the file and its held line when that window was the second last)
    for rewind_at, stop_after in [(set(), None), (some, None),
                                  *(({k - 1}, k) for k in range(1, len(whole) + 1))]:
        held_plain: dict[str, int] = {}
        held_ahead: dict[str, int] = {}
        plain = _read_all(log, False, held=held_plain, rewind_at=rewind_at, stop_after=stop_after, **kw)
        ahead = _read_all(log, True, held=held_ahead, rewind_at=rewind_at, stop_after=stop_after, **kw)
        assert plain[1] is None
        assert ahead == plain
        assert held_ahead == held_plain
    assert bool(whole_held) == bool(seed % 2)


def test_the_read_ahead_forgets_the_held_line_it_read_before_a_rewind(tmp_path: Path) -> None:
    """Lines of 100 bytes in 4 KB windows: each window holds 40 lines. The read ahead reads the last window, which
    holds the unfinished line back, while the caller still has the one before; the caller rewinds to that one's
    last line and stops after the next window, which (41 lines, more than a window holds) does not reach the end.
    The plain reader never got to the end: ``held`` must be empty for the read ahead too."""
    line = json.dumps({"run_id": "r", "pad": ""}).encode()
    line = line[:-2] + b"x" * (99 - len(line)) + b'"}'
    assert len(line) == 99
    log = tmp_path / "w.jsonl"
    log.write_bytes((line + b"\n") * 200 + b'{"run_id": "unfinished", "text": "still bei')
    kw = {"window": 4096, "max_line": 16384}
    whole_held: dict[str, int] = {}
    whole = _read_all(log, False, held=whole_held, **kw)[0]
    assert [w[1] for w in whole] == [40] * 5 and whole_held
    held_plain: dict[str, int] = {}
    held_ahead: dict[str, int] = {}
    plain = _read_all(log, False, held=held_plain, rewind_at={3}, stop_after=5, grow=False, **kw)
    ahead = _read_all(log, True, held=held_ahead, rewind_at={3}, stop_after=5, grow=False, **kw)
    assert plain[0][4][1] == 40 and not plain[0][4][3]  # the window after the rewind is not the last
    assert ahead == plain
    assert held_plain == held_ahead == {}


def test_the_read_ahead_raises_a_read_error_where_the_plain_reader_does(tmp_path: Path) -> None:
    """A gzip file cut short: both readers give the same windows, then the same error (never a window less or
    more, never a hang)."""
    body = b"".join(json.dumps(flat(run_id=str(i), response_text="w" * 200)).encode() + b"\n" for i in range(3000))
    log = tmp_path / "cut.jsonl.gz"
    log.write_bytes(gzip.compress(body)[:-4000])
    plain = _read_all(log, False, window=16384, max_line=1 << 20, held=None)
    ahead = _read_all(log, True, window=16384, max_line=1 << 20, held=None)
    assert plain[1] == "EOFError"
    assert len(plain[0]) > 10
    assert ahead == plain


def test_the_read_ahead_stops_its_thread_when_the_caller_stops_early(tmp_path: Path) -> None:
    from runaudit.ingest.reader import ReadAhead

    log = tmp_path / "w.jsonl"
    log.write_bytes(b"".join(json.dumps(flat(run_id=str(i))).encode() + b"\n" for i in range(2000)))
    with open(log, "rb") as f, ReadAhead(f, window=4096) as reader:
        first = next(reader)
        assert first.lines > 0 and reader.reading
        reader.ready.wait()  # the thread has read the second window and waits
    assert not reader.reading
    assert f.closed


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


def _odd_lines_log(path: Path) -> Path:
    """Lines the parse changes before their identity is taken (trimmed, repaired, SSE-framed, BOM-led), lines it
    keeps, identical lines, invalid UTF-8, invalid JSON, CR LF, blank lines: each with a record of its own."""
    rec = json.dumps(flat(run_id="plain", text="A reply with “quotes” and ünïcödé."), ensure_ascii=False).encode()
    lines = [
        b"\xef\xbb\xbf" + json.dumps(flat(run_id="bom")).encode(),
        rec, rec,  # two identical lines: two calls
        b"  \t" + json.dumps(flat(run_id="padded")).encode() + b"   ",
        json.dumps(flat(run_id="crlf")).encode() + b"\r",
        b'{"task_id": "t", "status": "success", "text": "lone \\ud800 surrogate", "run_id": "repaired"}',
        b'{"task_id": "t", "status": "success", "text": "bad \xff byte", "run_id": "badutf8"}',
        b"",
        b"not json at all",
        b"[1, 2, 3]",
        b"data: " + json.dumps(flat(run_id="sse")).encode(),
        json.dumps(flat(run_id="last")).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _identities(store: Store) -> tuple[list[tuple], list[tuple]]:  # type: ignore[type-arg]
    runs = store.rows("SELECT source_file, source_line, record_hash, record_hash2, record_bytes, record_occ "
                      "FROM runs ORDER BY ALL")
    quarantine = store.rows("SELECT source_file, source_line, line_hash, line_hash2, line_occ FROM quarantine "
                            "ORDER BY ALL")
    return runs, quarantine


def test_the_readers_digests_are_the_identities_sql_gave(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader computes each line's SHA-256 (ingest.reader._digests) and the keys statement takes it where the
    record is still the line read; everywhere else SQL hashes the record. Every run and quarantined line must get
    exactly the identity SQL alone gave (stores made before keep recognising their files), over the sample logs
    (streams, spans, batches, agent logs) and lines the parse changes, in small windows."""
    import shutil

    import duckdb
    import pyarrow as pa

    from runaudit.ingest import reader

    logs = tmp_path / "logs"
    shutil.copytree(ROOT / "sample_logs", logs)
    _odd_lines_log(logs / "odd.jsonl")
    monkeypatch.setattr(reader, "WINDOW_BYTES", 4096)
    made = []
    with Store.open(":memory:") as store:
        ingest(store, [logs])
        with_digests = _identities(store)
        # each run's identity is the SHA-256 of its stored record, as SQL computes it
        assert store.scalar("SELECT count(*) FROM runs WHERE record_hash <> ('0x' || left(sha256(raw), 16))::UBIGINT "
                            "OR record_hash2 <> ('0x' || substr(sha256(raw), 17, 16))::UBIGINT") == 0
    orig = reader._digests

    def spy(packed, noffs, bad):  # type: ignore[no-untyped-def]
        cols = orig(packed, noffs, bad)
        made.append(len(cols["dg_h"]) - cols["dg_h"].null_count)
        return {k: pa.nulls(len(v), pa.uint64()) for k, v in cols.items()}

    monkeypatch.setattr(reader, "_digests", spy)
    with Store.open(":memory:") as store:
        ingest(store, [logs])
        sql_only = _identities(store)
    assert sum(made) > 300  # the reader did hash the lines it read (the first pass used those digests)
    assert with_digests == sql_only
    assert len(with_digests[0]) > 300 and len(with_digests[1]) >= 3
    # the reader's digest of a line is SQL's sha256 of the line's string; NULL only where the bytes are not it
    monkeypatch.setattr(reader, "_digests", orig)
    con = duckdb.connect()
    with open(logs / "odd.jsonl", "rb") as f:
        for win in reader.iter_windows(f, window=256):
            t = win.table  # noqa: F841 - read by the query below
            rows = con.execute("SELECT bad_utf8, dg_h IS NULL, dg_h = ('0x' || left(sha256(line), 16))::UBIGINT "
                               "AND dg_h2 = ('0x' || substr(sha256(line), 17, 16))::UBIGINT FROM t").fetchall()
            for bad, null, same in rows:
                assert null == bad and (null or same)


def test_a_top_level_key_is_found_as_json_exists_finds_it(store: Store, tmp_path: Path) -> None:
    """Shape detection reads an object's top-level keys once (json_keys) instead of a json_exists per key: a key
    written with escapes, a key whose value is null and a repeated key count, a nested one does not."""
    rec = json.dumps(flat(run_id="nested", text="fine"))[:-1] + ', "meta": {"resourceLogs": [], "hidden_params": {}}}'
    lines = ['{"resource\\u004cogs": []}', '{"resourceMetrics": null}', '{"resourceLogs": [], "resourceLogs": []}',
             rec, '{"call_type": "completion", "status": "success", "model": "m", "status_fields": null}']
    res = ingest(store, [write_jsonl(tmp_path / "k.jsonl", [], raw_lines=lines)])
    assert (res.not_calls, res.ingested) == (3, 2)
    got = dict(store.rows("SELECT source_line, shape FROM runs ORDER BY 1"))
    assert got == {4: "flat", 5: "litellm"}
    notes = store.scalar("SELECT notes FROM runs WHERE source_line = 4")
    assert "duplicate_keys_first_wins" not in notes


def test_identical_lines_are_counted_across_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An identical line (no run id: a bare error body) that recurs within a window and across many windows gets
    occurrences 1, 2, 3 ... in file order, whatever the window size; after an append the count goes on, and
    reading the file again adds nothing. The count of each line carries from window to window (``_occ``)."""
    from runaudit.ingest import reader

    same = json.dumps({"error": {"type": "overloaded_error", "message": "Overloaded"}})
    other = json.dumps({"error": {"type": "rate_limit_error", "message": "slow down"}})
    lines = []
    for i in range(30):
        lines += [same] * (1 + i % 3) + [json.dumps(flat(run_id=f"r{i}"))] + ([other] if i % 4 == 0 else [])
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n")

    def occurrences(store: Store) -> dict[str, list[int]]:
        got: dict[str, list[int]] = {}
        for raw, occ in store.rows("SELECT raw, record_occ FROM runs WHERE run_id IS NULL ORDER BY source_line"):
            got.setdefault(raw, []).append(occ)
        return got

    n_same, n_other = lines.count(same), lines.count(other)
    with Store.open(":memory:") as whole:
        ingest(whole, [log])
        expected = _identities(whole)
        assert occurrences(whole) == {same: list(range(1, n_same + 1)), other: list(range(1, n_other + 1))}
    monkeypatch.setattr(reader, "WINDOW_BYTES", 700)  # a few lines a window: ~40 windows
    with Store.open(str(tmp_path / "w.duckdb")) as store:
        ingest(store, [log])
        assert _identities(store) == expected
        with log.open("a") as f:
            f.write("\n".join([same, json.dumps(flat(run_id="late")), same, other]) + "\n")
        ingest(store, [log])
        assert occurrences(store) == {same: list(range(1, n_same + 3)), other: list(range(1, n_other + 2))}
        before = store.scalar("SELECT count(*) FROM runs")
        copy = tmp_path / "copy.jsonl"  # the same lines read again, under another name: duplicates
        copy.write_bytes(log.read_bytes())
        assert ingest(store, [copy]).as_dict()["duplicates"] == len(lines) + 4
        assert store.scalar("SELECT count(*) FROM runs") == before


@pytest.mark.parametrize("window", [None, 200])
def test_an_append_counts_on_from_lines_the_file_did_not_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              window: int | None) -> None:
    """A file whose first part stored no run of some lines (duplicates of another file's runs, a quarantined line,
    a line with no model call) goes on counting them when it grows: the appended second occurrence of a line is a
    call of its own, as when the whole file is read at once. Counted from its own runs only, it was taken for a
    duplicate of the other file's first occurrence, and the call was lost."""
    from runaudit.ingest import reader

    if window:
        monkeypatch.setattr(reader, "WINDOW_BYTES", window)
    err = json.dumps({"error": {"type": "overloaded_error", "message": "Overloaded"}})
    none = json.dumps({"type": "summary", "summary": "a session title", "leafUuid": "u1"})
    first = [json.dumps(flat(run_id="r1")), err, "garbage", none, json.dumps(flat(run_id="r2"))]
    later = [err, "garbage", none, json.dumps(flat(run_id="r3")), err]
    a = write_jsonl(tmp_path / "a.jsonl", first)
    b = write_jsonl(tmp_path / "b.jsonl", first)
    with Store.open(str(tmp_path / "grown.duckdb")) as grown:
        ingest(grown, [a, b])
        with b.open("a") as f:
            f.write("\n".join(later) + "\n")
        res = ingest(grown, [b])
        assert res.files_appended == 1
        assert (res.ingested, res.quarantined) == (3, 1), res.as_dict()
        got = _identities(grown)
    with Store.open(str(tmp_path / "whole.duckdb")) as whole:
        ingest(whole, [a, b])
        assert _identities(whole) == got
