"""Small new files are parsed together, in one statement (``ingest.small_files``), and then each is ingested on
its own: what is stored is what ingesting them one by one stores, and a file that changed since its group was
parsed is parsed again on its own. The reader sizes its buffers to a small file (``reader._size_left``) and reads
the same windows as with buffers of a whole window."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import pytest

import runaudit.ingest.reader as reader
import runaudit.ingest.small_files as small_files
from runaudit.ingest import document, ingest
from runaudit.store import Store
from tests.conftest import flat
from tests.test_ingest import _read_all
from tests.test_parse_ahead import ingested, mixed_lines


def folder(tmp_path: Path) -> Path:
    """Files of every kind: mixed records (streams, OTLP, invalid, duplicates), one record, an empty file, a JSON
    document, raw SSE text, a compressed file, and a file larger than a group's share."""
    d = tmp_path / "logs"
    d.mkdir()
    lines = mixed_lines()
    rng = random.Random(5)
    for i in range(12):
        part = lines[: rng.randint(1, len(lines))] + [json.dumps(flat(run_id=f"u{i}-{j}")) for j in range(4)]
        rng.shuffle(part)
        (d / f"m{i:02}.jsonl").write_text("\n".join(part) + ("\n" if i % 3 else ""), encoding="utf-8")
    (d / "one.jsonl").write_text(json.dumps(flat(run_id="solo")) + "\n", encoding="utf-8")
    (d / "empty.jsonl").write_text("", encoding="utf-8")
    (d / "doc.json").write_text(json.dumps([flat(run_id="d1"), flat(run_id="d2")], indent=2), encoding="utf-8")
    (d / "sse.jsonl").write_text('data: {"type": "message_start", "message": {"id": "m", "model": "x"}}\n\n',
                                 encoding="utf-8")
    (d / "z.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return d


def test_a_folder_of_small_files_stores_what_file_by_file_stores(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    d = folder(tmp_path)
    groups: list[list[str]] = []
    parse_group = small_files.parse_group

    def spy(store: Store, paths: list[str], *a: Any) -> Any:
        out = parse_group(store, paths, *a)
        groups.append(sorted(Path(p).name for p in out))
        return out

    monkeypatch.setattr(small_files, "parse_group", spy)
    monkeypatch.setattr(small_files, "GROUP_FILES", 5)  # several groups
    got_result, got = ingested(tmp_path / "group.duckdb", [str(d)])
    first_groups = len(groups)
    with Store.open(tmp_path / "group.duckdb") as s:
        ingest(s, [str(d)])
    assert len(groups) == first_groups  # files already ingested are not parsed ahead again
    parsed = [n for g in groups for n in g]
    # the mixed files (but one whose first line opens a JSON document: read as one) and one.jsonl, 5 at most a group
    lines_files = {p.name for p in d.glob("m*.jsonl") if not document.looks_like_document(p.read_bytes())}
    assert len(lines_files) >= 10 and sorted(parsed) == sorted(lines_files | {"one.jsonl"})
    assert len(groups) == 3
    assert not {"empty.jsonl", "doc.json", "sse.jsonl", "z.jsonl.gz"} & set(parsed)
    monkeypatch.setattr(small_files.GroupParser, "take", lambda self, path: None)
    want_result, want = ingested(tmp_path / "alone.duckdb", [str(d)])
    assert got_result == want_result
    assert got == want
    assert len(got[0]) > 80 and got[1] and got_result["duplicates"] > 100  # lines repeat across files


def test_a_file_that_changed_after_its_group_was_parsed_is_parsed_again(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    for i in range(3):
        (d / f"f{i}.jsonl").write_text(json.dumps(flat(run_id=f"r{i}")) + "\n", encoding="utf-8")
    parse_group = small_files.parse_group
    taken: list[bool] = []

    def then_append(*a: Any) -> Any:
        out = parse_group(*a)
        with (d / "f2.jsonl").open("a", encoding="utf-8") as f:  # written to after the group was parsed
            f.write(json.dumps(flat(run_id="late", text="I can't help with that.")) + "\n")
        return out

    take_orig = small_files.Parsed.take

    def take(parsed: small_files.Parsed, win: Any) -> Any:
        out = take_orig(parsed, win)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(small_files, "parse_group", then_append)
    monkeypatch.setattr(small_files.Parsed, "take", take)
    with Store.open(tmp_path / "s.duckdb") as s:
        ingest(s, [str(d)])
        runs = s.rows("SELECT run_id, response_text FROM runs ORDER BY run_id")
    assert taken == [True, True, False]  # f0 and f1 used the group's rows, f2 was parsed again
    assert [r[0] for r in runs] == ["late", "r0", "r1", "r2"]
    assert runs[0][1] == "I can't help with that."


@pytest.mark.parametrize("seed", range(4))
def test_a_small_files_buffers_read_the_windows_a_full_buffer_reads(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    seed: int) -> None:
    """Buffers sized to the file (and grown to a window when the file turns out longer than its size said) give
    the windows buffers of a whole window give: lines, offsets, flags, a held last line."""
    rng = random.Random(seed)
    body = b"".join(json.dumps(flat(run_id=str(i), response_text="t" * rng.randint(0, 3000))).encode()
                    + rng.choice([b"\n", b"\r\n"]) for i in range(rng.randint(1, 300)))
    if seed % 2:
        body += b'{"run_id": "unfinished", "text": "still be'
    log = tmp_path / "w.jsonl"
    log.write_bytes(body)
    kw: dict[str, Any] = {"window": 1 << 22, "max_line": 1 << 20}
    real = reader._size_left
    sizes: list[int | None] = []

    def spy(f: Any, offset: int) -> int | None:
        sizes.append(real(f, offset))
        return sizes[-1]

    monkeypatch.setattr(reader, "_size_left", spy)
    runs = {}
    for name, hint in (("sized", None), ("lied", lambda f, o: 10), ("whole", lambda f, o: None)):
        if hint is not None:
            monkeypatch.setattr(reader, "_size_left", hint)
        for ahead in (False, True):
            held: dict[str, int] = {}
            runs[name, ahead] = (_read_all(log, ahead, held=held, **kw), held)
    assert sizes and sizes[0] == len(body)  # the file's size was read, and used
    assert len({repr(v) for v in runs.values()}) == 1
    assert bool(runs["whole", False][1]) == bool(seed % 2)


def test_sqlite_and_compressed_files_are_told_as_ingest_tells_them(tmp_path: Path) -> None:
    """A SQLite database is left out by its header, whatever its name; a log named .db is a log; .gz is left out."""
    import sqlite3

    db = tmp_path / "logs.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    log_db = tmp_path / "run.db"
    log_db.write_text(json.dumps(flat(run_id="a")) + "\n")
    gz = tmp_path / "x.jsonl.gz"
    gz.write_bytes(gzip.compress(log_db.read_bytes()))
    sizes = {p.name: small_files.candidate_size(str(p), set()) for p in (db, log_db, gz)}
    assert sizes == {"logs.sqlite": None, "run.db": log_db.stat().st_size, "x.jsonl.gz": None}
