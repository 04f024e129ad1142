"""simonw/llm's ``logs.db``, read directly with Python's ``sqlite3`` (DuckDB's sqlite extension is downloaded at
run time, so it is unavailable offline), read-only and incrementally.

Each row of the ``responses`` table (and of ``turns``, the newer message store, whose rows the legacy table does
not repeat) becomes one record shaped like an ``llm logs --json`` entry (shape ``llm_log``); the SQL mapping
then reads it as it reads that output. The record's line number is the row's ``rowid`` (``part`` 0 for
``responses``, 1 for ``turns``). SQLite gives rows written later a higher rowid, so ``files.cursor`` keeps the
highest rowid read per table and the next ingest reads only the rows after it.

llm logs a call only when it succeeded: a database shows ok, declined and degraded runs, never an infrastructure
error. That is a limit of the source, not a 0% error rate.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runaudit.errors import InputFormatError
from runaudit.ingest.reader import Window, records_window

MAGIC = b"SQLite format 3\x00"
BATCH = 50_000
_FIELDS = ("id", "model", "resolved_model", "prompt", "system", "prompt_json", "options_json", "response",
           "reasoning", "response_json", "conversation_id", "duration_ms", "datetime_utc", "input_tokens",
           "output_tokens", "token_details", "schema_id")


def is_sqlite(path: str) -> bool:
    """Whether the file is a SQLite database, by its 100-byte header: the magic string and the fields the file
    format fixes (https://www.sqlite.org/fileformat.html#the_database_header). A text log whose first bytes happen
    to be the magic string is read as a log, its lines accounted for; a database whose header is whole but whose
    body is damaged is still a clear error."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError:
        return False
    if len(head) < 100 or head[:16] != MAGIC:
        return False
    page = int.from_bytes(head[16:18], "big")
    return ((page == 1 or (512 <= page <= 32768 and page & (page - 1) == 0))
            and head[18] in (1, 2) and head[19] in (1, 2) and head[21:24] == bytes((64, 32, 32)))


def _connect(path: str) -> sqlite3.Connection:
    uri = "file:" + quote(str(Path(path).resolve())) + "?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=30)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as e:
        raise InputFormatError(f"cannot read the SQLite database {path}: {e}") from e
    return con


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}  # table is one of two constants


def iter_windows(path: str, cursor: dict[str, int]) -> Iterator[tuple[Window, dict[str, int]]]:
    """Windows of records for the rows after ``cursor`` ({"responses": rowid, "turns": rowid}), each with the
    cursor after it."""
    con = _connect(path)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "responses" not in tables:
            raise InputFormatError(f"{path} is a SQLite database but not an llm logs database (no responses table)",
                                   hint="runaudit reads simonw/llm's logs.db (`llm logs path`)")
        cur = dict(cursor)
        yield from _legacy(con, path, cur, tables)
        if "turns" in tables:
            yield from _turns(con, cur)
    except sqlite3.Error as e:
        raise InputFormatError(f"cannot read the SQLite database {path}: {e}") from e
    finally:
        con.close()


def _legacy(con: sqlite3.Connection, path: str, cur: dict[str, int],
            tables: set[str]) -> Iterator[tuple[Window, dict[str, int]]]:
    cols = _columns(con, "responses")
    sel = ", ".join(f"r.{c}" if c in cols else f"NULL AS {c}" for c in _FIELDS)
    conv = ("c.name, c.model" if "conversations" in tables else "NULL, NULL")
    join = "LEFT JOIN conversations c ON c.id = r.conversation_id" if "conversations" in tables else ""
    skip = "AND r.id NOT IN (SELECT id FROM turns)" if "turns" in tables else ""
    q = (f"SELECT r.rowid, {sel}, {conv} FROM responses r {join} WHERE r.rowid > ? {skip} "
         f"ORDER BY r.rowid LIMIT {BATCH}")
    while True:
        rows = con.execute(q, [cur.get("responses", 0)]).fetchall()
        if not rows:
            return
        recs = []
        for row in rows:
            d: dict[str, Any] = dict(zip(_FIELDS, row[1:len(_FIELDS) + 1], strict=True))
            d["conversation_name"], d["conversation_model"] = row[-2], row[-1]
            recs.append((row[0], 0, d))
        cur["responses"] = rows[-1][0]
        yield _window(recs), dict(cur)


def _turns(con: sqlite3.Connection, cur: dict[str, int]) -> Iterator[tuple[Window, dict[str, int]]]:
    cols = _columns(con, "turns")
    need = {"id", "parent_message_hash", "tip_message_hash", "datetime_utc"}
    if not need <= cols:
        return
    opt = [c for c in ("model", "resolved_model", "options_json", "input_tokens", "output_tokens", "token_details",
                       "duration_ms", "response_json", "thread_id", "schema_id") if c in cols]
    sel = ", ".join(f"t.{c}" for c in opt)
    text = ("(SELECT group_concat(p.text, '') FROM (SELECT text FROM parts WHERE message_hash = {h} "
            "AND type = 'text' ORDER BY position) p)")
    q = (f"SELECT t.rowid, t.id, t.datetime_utc, {text.format(h='t.parent_message_hash')}, "
         f"{text.format(h='t.tip_message_hash')}{', ' + sel if sel else ''} FROM turns t WHERE t.rowid > ? "
         f"ORDER BY t.rowid LIMIT {BATCH}")
    while True:
        rows = con.execute(q, [cur.get("turns", 0)]).fetchall()
        if not rows:
            return
        recs = []
        for row in rows:
            d = {"id": row[1], "datetime_utc": row[2], "prompt": row[3], "response": row[4]}
            d.update(zip(opt, row[5:], strict=True))
            d["conversation_id"] = d.pop("thread_id", None) or d["id"]
            d.setdefault("response_json", None)
            recs.append((row[0], 1, d))
        cur["turns"] = rows[-1][0]
        yield _window(recs), dict(cur)


def _window(recs: list[tuple[int, int, dict[str, Any]]]) -> Window:
    lines = [json.dumps(d, ensure_ascii=False, default=str) for _, _, d in recs]
    return records_window([r[0] for r in recs], lines, 0, parts=[r[1] for r in recs])
