"""Lossless, incremental ingest of JSONL logs into the ``runs`` table.

Every physical line read lands in exactly one bucket: ``ingested`` (a new run), ``duplicates`` (already in
the store: same content seen before, or a region of a file already read), ``blank`` or ``quarantined`` (kept
in the ``quarantine`` table with file, line, byte offset, reason and the first 64 KiB). One file is one
transaction: a killed ingest leaves the file's previous state, and the next run redoes it exactly.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import stat
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runaudit.config import Config
from runaudit.errors import InputFormatError
from runaudit.ingest import document, llm_db, reader
from runaudit.ingest.reader import (
    ReadAhead,
    file_fingerprint,
    open_log,
    prefix_digest,
)
from runaudit.ingest.small_files import GroupParser, Parsed
from runaudit.ingest.window import (
    OCC_APPEND_SQL,
    OCC_INIT_SQL,
    UNSTORED_COUNTS_SQL,
    compile_insert_sql,
    parse_window,
    process_window,
)
from runaudit.store import Store

LOG_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
LOG_NAMES = ("logs.db",)  # simonw/llm's database, read where a folder holds one
ProgressFn = Callable[[int, str], None]


@dataclass
class FileResult:
    """What one file contributed."""

    path: str
    mode: str  # new | appended | rewritten | unchanged | error
    lines: int = 0
    ingested: int = 0
    runs_added: int = 0
    duplicates: int = 0
    blank: int = 0
    quarantined: int = 0
    held: int = 0  # lines not read yet: the file is still being written (see ``settle_seconds``)
    not_calls: int = 0  # valid lines of a known format that record no model call
    spans_other: int = 0  # OTel spans that are not GenAI inference calls (HTTP, tools, agents), counted only
    error: str | None = None


@dataclass
class IngestResult:
    """Totals of one ``ingest`` call (the ``--json`` output)."""

    files: int = 0
    lines: int = 0
    ingested: int = 0  # lines that became (part of) a new run
    duplicates: int = 0
    blank: int = 0
    quarantined: int = 0
    runs_added: int = 0  # new runs: equal to ingested, except that a logged stream's event lines make one run
    held: int = 0  # lines held back, not counted in ``lines``: a last line or a stream still being written
    not_calls: int = 0  # valid lines that record no model call (an OTLP line of HTTP spans, a session's trailer)
    spans_other: int = 0  # OTel spans that are not GenAI inference calls: counted, not stored
    bytes: int = 0
    seconds: float = 0.0
    files_new: int = 0
    files_appended: int = 0
    files_unchanged: int = 0
    files_rewritten: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    per_file: list[FileResult] = field(default_factory=list)

    def as_dict(self, per_file: bool = False) -> dict[str, Any]:
        """The JSON-ready summary."""
        d = asdict(self)
        if not per_file:
            d.pop("per_file")
        d["seconds"] = round(self.seconds, 3)
        return d


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Expand files and folders (recursively: ``*.jsonl``, ``*.ndjson``, ``*.json``, their ``.gz``, and llm's
    ``logs.db``) to file paths.

    Folders are walked without following symlinked folders, so a symlink loop cannot recurse. Explicit file
    arguments are taken whatever their suffix. Raises :class:`InputFormatError` for a path that does not exist.
    """
    out: list[str] = []
    seen: set[str] = set()
    for raw in paths:
        p = Path(raw)
        if not p.exists() and not p.is_symlink():
            raise InputFormatError(f"input path {p} does not exist")
        if p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=False):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(LOG_SUFFIXES) or name in LOG_NAMES:
                        fp = os.path.join(root, name)
                        key = os.path.realpath(fp)
                        if key not in seen:
                            seen.add(key)
                            out.append(os.path.abspath(fp))
        else:
            key = os.path.realpath(p)
            if key not in seen:
                seen.add(key)
                out.append(os.path.abspath(p))
    return out


def log_files(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The log files under ``paths`` (see :func:`discover`); raises :class:`InputFormatError`, naming the paths,
    when a path does not exist or none holds a log file. Callers check their inputs with it before they create
    a database, so that a bad path leaves no empty database behind."""
    paths = list(paths)
    files = discover(paths)
    if not files:
        raise InputFormatError(f"no log files under {', '.join(str(p) for p in paths) or '(no path given)'}",
                               hint="runaudit reads *.jsonl, *.ndjson, *.json, their .gz and llm's logs.db "
                                    "(name a file to read any suffix)")
    return files


def _check_encoding(path: str, head: bytes) -> None:
    """Refuse, with a clear error, files that are not UTF-8 JSON lines as a whole: UTF-16 or UTF-32 text (with or
    without a byte-order mark: ASCII JSON there has NUL bytes in a fixed pattern) and CR-only line endings (every
    record would merge into one line). A few odd bytes are left to the quarantine, line by line."""
    h = head[:4096]

    def share(lane: bytes) -> float:  # the share of NUL bytes in a lane
        return lane.count(0) / max(len(lane), 1)

    # ASCII text in a wide encoding: some lanes all NUL, the character lane almost never NUL
    lanes4 = [share(h[i::4]) for i in range(4)]
    # A BOM decides only with text after it that looks like UTF-32 or UTF-16: ASCII JSON leaves the lanes of the
    # high bytes NUL (the NULs anywhere were counted before, and a stray BOM with a few NULs was called UTF-16).
    after4 = [share(h[4 + i::4]) for i in range(4)]
    utf32 = (len(h) >= 12 and ((h[:4] == b"\xff\xfe\x00\x00" and min(after4[1:]) >= 0.5)
                               or (h[:4] == b"\x00\x00\xfe\xff" and min(after4[:3]) >= 0.5))) or (len(h) >= 16 and (
        (min(lanes4[1:]) >= 0.9 and lanes4[0] <= 0.1) or (max(lanes4[:3]) >= 0.9 and min(lanes4[:3]) >= 0.9
                                                         and lanes4[3] <= 0.1)))
    if utf32:
        raise InputFormatError(f"{path} is UTF-32 encoded; runaudit reads UTF-8 JSON lines",
                               hint=f"convert it: iconv -f UTF-32 -t UTF-8 {path} > {path}.utf8.jsonl")
    even, odd = share(h[0::2]), share(h[1::2])
    utf16 = (len(h) >= 8 and ((h[:2] == b"\xfe\xff" and share(h[2::2]) >= 0.5)
                              or (h[:2] == b"\xff\xfe" and share(h[3::2]) >= 0.5))) or (
        len(h) >= 16 and ((even >= 0.9 and odd <= 0.1) or (odd >= 0.9 and even <= 0.1)))
    if utf16:
        raise InputFormatError(f"{path} is UTF-16 encoded; runaudit reads UTF-8 JSON lines",
                               hint=f"convert it: iconv -f UTF-16 -t UTF-8 {path} > {path}.utf8.jsonl")
    if b"\n" not in head and head.count(b"\r") >= 2:
        raise InputFormatError(f"{path} ends its lines with CR only (old Mac style); runaudit reads LF or CR LF",
                               hint=f"convert it: tr '\\r' '\\n' < {path} > {path}.lf.jsonl")


def _settled(st: os.stat_result, cfg: Config) -> bool:
    """Whether the file has not been written for ``settle_seconds``: what is at its end is final."""
    return time.time() - st.st_mtime >= cfg.settle_seconds


# One row per file. ``prefix_sha256`` digests every byte read so far (``bytes_done``): any edit of that region,
# same size or not, makes the file "rewritten". ``ctime_ns`` (which no user can set back) and ``size``
# unchanged skip the digest: nothing was written. ``tail_open``: the last line read had no newline yet.
FILES_UPSERT_SQL = """
INSERT OR REPLACE INTO files (path, size, mtime, compressed, head_hash, tail_hash, bytes_done, lines_done,
                              ingested, duplicates, blank, quarantined, last_ingest, ctime_ns, prefix_sha256, tail_open)
VALUES ($path, $size, $mtime, $compressed, '', '', $done, $lines,
        coalesce((SELECT ingested FROM files WHERE path = $path), 0) + $ingested,
        coalesce((SELECT duplicates FROM files WHERE path = $path), 0) + $duplicates, $blank,
        coalesce((SELECT quarantined FROM files WHERE path = $path), 0) + $quarantined, $ingest_id,
        $ctime_ns, $prefix, $tail_open)
"""


def _unchanged(res: FileResult, prev: tuple[Any, ...], progress: ProgressFn | None, size: int) -> FileResult:
    lines_done, blank_done = prev[5], prev[6]
    res.mode = "unchanged"
    res.lines = lines_done
    res.blank = blank_done or 0
    res.duplicates = lines_done - res.blank
    if progress:
        progress(size, res.path)
    return res


def _ingest_file(store: Store, path: str, cfg: Config, ingest_id: int, progress: ProgressFn | None,
                 final_sql: tuple[str, str, str], map_params: list[Any], pre: Parsed | None = None) -> FileResult:
    try:
        st = os.stat(path)
    except OSError as e:
        raise InputFormatError(f"cannot read {path}: {e.strerror}") from e
    if not stat.S_ISREG(st.st_mode):
        raise InputFormatError(f"{path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise InputFormatError(f"cannot read {path}: permission denied")
    compressed = path.endswith(".gz")
    settled = compressed or _settled(st, cfg)
    prev = store.rows("SELECT size, mtime, head_hash, tail_hash, bytes_done, lines_done, blank, ctime_ns, "
                      "prefix_sha256, tail_open FROM files WHERE path = ?", [path])
    res = FileResult(path=path, mode="new")
    start_off, start_line = 0, 0
    carried_dupes = carried_blank = 0
    try:
        if prev:
            size, mtime, head, tail, done, lines_done, blank_done, ctime_ns, prefix, tail_open = prev[0]
            untouched = ctime_ns == st.st_ctime_ns and size == st.st_size
            if compressed:
                if untouched or (st.st_size == size and st.st_mtime == mtime and ctime_ns is None):
                    return _unchanged(res, prev[0], None, st.st_size)
                res.mode = "rewritten"  # decompressed again in full; runs and quarantine dedupe by identity
            elif untouched and st.st_size == done:
                return _unchanged(res, prev[0], progress, st.st_size)
            elif st.st_size >= done > 0 and (prefix_digest(path, done) == prefix if prefix
                                             else file_fingerprint(path, done) == (head, tail)):
                if st.st_size == done:
                    return _unchanged(res, prev[0], progress, st.st_size)
                res.mode = "appended"
                start_off, start_line = done, lines_done
                carried_blank = blank_done or 0
                carried_dupes = lines_done - carried_blank
                if tail_open:
                    # the last line read had no newline: the newline that completes it is not a new line
                    with open(path, "rb") as fh:
                        fh.seek(done)
                        nxt = fh.read(2)
                    start_off += 2 if nxt == b"\r\n" else 1 if nxt[:1] == b"\n" else 0
            else:
                res.mode = "rewritten"
        f = open_log(path)
    except OSError as e:
        raise InputFormatError(f"cannot read {path}: {e.strerror or e}") from e
    ctx: dict[str, Any] = {
        "file": path, "ingest_id": ingest_id, "max_line": cfg.max_line_bytes,
        "next_rid": int(store.scalar("SELECT coalesce(max(rid), 0) FROM runs")),
        "mtime_ts": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(st.st_mtime)), "line0": start_line,
    }
    end_off, lines = start_off, start_line
    counts = {"lines": 0, "ingested": 0, "runs_added": 0, "duplicates": 0, "blank": 0, "quarantined": 0, "held": 0,
              "not_calls": 0, "spans_other": 0}
    rewind: list[tuple[int, int, bool]] = []
    held_tail: dict[str, int] = {}
    unterminated = False
    with f, store.transaction():
        store.run(OCC_INIT_SQL)
        if res.mode == "appended":
            store.run(OCC_APPEND_SQL, {"file": path})
        else:
            store.run("DELETE FROM line_counts WHERE path = ?", [path])  # counts of the file's former content
        try:
            if start_off:
                f.seek(start_off)
            head = f.read(65536) if start_off == 0 else b""
            _check_encoding(path, head)
            f.seek(start_off)
            doc = None
            if start_off == 0 and document.looks_like_document(head):
                data = f.read(document.DOC_LIMIT + 1)
                if len(data) > document.DOC_LIMIT:
                    raise InputFormatError(f"{path} is one JSON document larger than {document.DOC_LIMIT >> 20} MiB",
                                           hint="write it as JSON lines (jq -c '.[]')")
                doc = document.document_window(store.con, data)
                f.seek(0)
            # The reader's thread also parses each window it reads (parse_window), on a second connection, while
            # this one inserts the window before: DuckDB plans one statement while it runs the other. Only for a
            # file of more than one window: with nothing to overlap, the second connection is a cost (36 small
            # files: 15.2 s against 11.6 s).
            ahead = doc is None and (compressed or st.st_size - start_off > reader.WINDOW_BYTES)
            side = store.side() if ahead else contextlib.nullcontext(None)

            def parse_ahead(w: Any) -> Any:
                return parse_window(side_store, w, final_sql, map_params)

            # a small new file was parsed with others before (small_files: one statement for many files)
            prepare = pre.take if pre is not None else parse_ahead if ahead else None
            with side as side_store, (contextlib.nullcontext([doc]) if doc is not None else ReadAhead(
                    f, offset=start_off, line_no=start_line, max_line=cfg.max_line_bytes, rewind=rewind,
                    held=None if settled else held_tail, prepare=prepare)) as wins:
                for win in wins:
                    ctx["line0"] = lines
                    if not ahead and doc is None and win.prepared is None:
                        # parsed here, through the plan the store keeps for the ingest: a file of one window
                        # does not plan the statement again
                        win.prepared = parse_window(store, win, final_sql, map_params)
                    c = process_window(store, win, ctx, final_sql, map_params, hold_open=not settled)
                    store.run(UNSTORED_COUNTS_SQL, {"file": path})
                    for k in counts:
                        counts[k] += c[k]
                    if c["defer"]:
                        # a stream goes on in the next window: read it again from its message_start
                        rewind.append((c["defer"][0], c["defer"][1] - 1, c["defer"][2]))
                    if progress:
                        progress(c["end_offset"] - end_off if not compressed else 0, path)
                    end_off, lines = c["end_offset"], lines + c["lines"]
                    unterminated = win.unterminated_last and c["held"] == 0
                    if c["held"]:
                        break  # a stream still being written: the rest of the file waits for the next ingest
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise InputFormatError(f"{path}: cannot decompress or read ({e}); nothing from this file was stored",
                                   hint="check the file with `gzip -t` or re-copy it") from e
        if held_tail:
            counts["held"] += 1
        store.run(FILES_UPSERT_SQL, {
            "path": path, "size": st.st_size, "mtime": st.st_mtime, "compressed": compressed,
            "done": end_off if not compressed else st.st_size, "lines": lines,
            "ingested": counts["ingested"], "duplicates": counts["duplicates"],
            "blank": carried_blank + counts["blank"], "quarantined": counts["quarantined"], "ingest_id": ingest_id,
            "ctime_ns": st.st_ctime_ns, "prefix": prefix_digest(path, end_off) if not compressed else None,
            "tail_open": unterminated and not compressed})
    res.lines = counts["lines"] + start_line
    res.ingested = counts["ingested"]
    res.runs_added = counts["runs_added"]
    res.duplicates = counts["duplicates"] + carried_dupes
    res.blank = counts["blank"] + carried_blank
    res.quarantined = counts["quarantined"]
    res.held = counts["held"]
    res.not_calls = counts["not_calls"]
    res.spans_other = counts["spans_other"]
    return res


def _ingest_sqlite(store: Store, path: str, ingest_id: int, final_sql: tuple[str, str, str],
                   map_params: list[Any]) -> FileResult:
    """An llm ``logs.db``: the rows after the stored cursor, in one transaction."""
    st = os.stat(path)
    prev = store.rows("SELECT cursor, lines_done, blank FROM files WHERE path = ?", [path])
    cursor = json.loads(prev[0][0]) if prev and prev[0][0] else {}
    done = int(prev[0][1] or 0) if prev else 0
    res = FileResult(path=path, mode="appended" if prev else "new")
    ctx: dict[str, Any] = {
        "file": path, "ingest_id": ingest_id, "max_line": 0, "line0": 0,
        "next_rid": int(store.scalar("SELECT coalesce(max(rid), 0) FROM runs")),
        "mtime_ts": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(st.st_mtime)),
    }
    counts = dict.fromkeys(("lines", "ingested", "runs_added", "duplicates", "blank", "quarantined", "not_calls",
                            "spans_other"), 0)
    with store.transaction():
        store.run(OCC_INIT_SQL)  # rows carry their own ids: identity alone dedupes a row read twice
        for win, cur in llm_db.iter_windows(path, cursor):
            c = process_window(store, win, ctx, (final_sql[2],) * 3, map_params)
            for k in counts:
                counts[k] += c[k]
            cursor = cur
        store.run(FILES_UPSERT_SQL, {
            "path": path, "size": st.st_size, "mtime": st.st_mtime, "compressed": False, "done": st.st_size,
            "lines": done + counts["lines"], "ingested": counts["ingested"], "duplicates": counts["duplicates"],
            "blank": 0, "quarantined": counts["quarantined"], "ingest_id": ingest_id, "ctime_ns": st.st_ctime_ns,
            "prefix": None, "tail_open": False})
        store.run("UPDATE files SET cursor = ? WHERE path = ?", [json.dumps(cursor), path])
    if prev and not counts["lines"]:
        res.mode = "unchanged"
    res.lines = done + counts["lines"]
    res.duplicates = done + counts["duplicates"]
    for k in ("ingested", "runs_added", "quarantined", "not_calls"):
        setattr(res, k, counts[k])
    return res


def ingest(store: Store, paths: Iterable[str | os.PathLike[str]], cfg: Config | None = None,
           progress: ProgressFn | None = None) -> IngestResult:
    """Ingest log files or folders into ``store``.

    Errors confined to one file (unreadable, corrupt gzip, UTF-16) are collected in ``result.errors`` and the
    other files still ingest; the caller decides the exit code.
    """
    cfg = cfg or Config()
    files = log_files(paths)
    t0 = time.perf_counter()
    result = IngestResult(files=len(files))
    ingest_id = int(store.scalar("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingests"))
    final_sql, map_params = compile_insert_sql(cfg)
    groups = GroupParser(store, files, final_sql, map_params, cfg.max_line_bytes)
    try:
        _ingest_files(store, files, cfg, ingest_id, progress, final_sql, map_params, groups, result)
    finally:
        store.drop_plans()  # the parse statements planned for this ingest (parse_planned)
    result.seconds = time.perf_counter() - t0
    store.execute("INSERT INTO ingests VALUES (?, now()::TIMESTAMP - to_microseconds(?::BIGINT), now()::TIMESTAMP, "
                  "?, ?, ?, ?, ?, ?)",
                  [ingest_id, int(result.seconds * 1e6), result.files, result.lines, result.ingested,
                   result.duplicates, result.blank, result.quarantined])
    return result


def _ingest_files(store: Store, files: list[str], cfg: Config, ingest_id: int, progress: ProgressFn | None,
                  final_sql: tuple[str, str, str], map_params: list[Any], groups: GroupParser,
                  result: IngestResult) -> None:
    """Ingest each of ``files`` (in its own transaction), adding what it did to ``result``."""
    for path in files:
        try:
            if llm_db.is_sqlite(path):
                fr = _ingest_sqlite(store, path, ingest_id, final_sql, map_params)
            else:
                fr = _ingest_file(store, path, cfg, ingest_id, progress, final_sql, map_params, groups.take(path))
        except InputFormatError as e:
            fr = FileResult(path=path, mode="error", error=e.message)
            result.errors.append({"file": path, "error": e.message})
        result.per_file.append(fr)
        result.lines += fr.lines
        result.ingested += fr.ingested
        result.runs_added += fr.runs_added
        result.duplicates += fr.duplicates
        result.blank += fr.blank
        result.quarantined += fr.quarantined
        result.held += fr.held
        result.not_calls += fr.not_calls
        result.spans_other += fr.spans_other
        if fr.mode == "new":
            result.files_new += 1
        elif fr.mode == "appended":
            result.files_appended += 1
        elif fr.mode == "unchanged":
            result.files_unchanged += 1
        elif fr.mode == "rewritten":
            result.files_rewritten += 1
        if fr.mode != "error":
            try:
                result.bytes += os.path.getsize(path)
            except OSError:
                pass
