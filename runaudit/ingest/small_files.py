"""Small new files parsed together, in one statement.

Planning a window's parse statement (~80k characters of SQL) costs ~0.23 s whatever the window holds: a folder of
small files paid it once per file (``sample_logs/``, 36 files of a few lines: 8.5 s of a 13.4 s ingest). The parse
is row by row (each output row is made from its own line alone: no join, window or aggregate across lines), so the
lines of several files can go through one statement and be split after. Each file is still ingested on its own, in
its own transaction: when its window is read, the rows parsed here are used only if that window is the very one
parsed here (the same lines, offsets and digests), else the file is parsed as usual.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from runaudit.ingest import document, llm_db, reader
from runaudit.ingest.window import has_big_line, parse_planned
from runaudit.store import Store

SMALL_FILE_BYTES = 4 << 20  # a new plain file up to this size is parsed with others
GROUP_FILES = 64  # at most this many files per statement
# a file's lines are told apart by adding its index in the group, shifted this far, to their line numbers
_SHIFT = 40


@dataclass
class Parsed:
    """A file's windows as read here (one, or two when it holds more lines than a window may:
    ``reader.MAX_WINDOW_LINES``), each with its parsed rows and their DuckDB types (``Window.prepared``)."""

    windows: list[tuple[pa.Table, tuple[pa.Table, list[str]]]]

    def take(self, win: reader.Window) -> tuple[pa.Table, list[str]] | None:
        """The parsed rows of ``win``, if it is a window parsed here (ReadAhead's ``prepare``)."""
        for i, (table, prepared) in enumerate(self.windows):
            if not win.sse and win.table.equals(table):
                del self.windows[i]
                return prepared
        return None  # the file changed since (or is still being written): this window is parsed on its own


def candidate_size(path: str, known: set[str]) -> int | None:
    """The size of a file this module may parse ahead (plain: not compressed, not llm's SQLite; new; small; not
    empty), else None. Compressed and SQLite are told as ingest tells them (by the name, and by the header)."""
    if path in known or path.endswith(".gz"):
        return None
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    return size if 0 < size <= SMALL_FILE_BYTES and not llm_db.is_sqlite(path) else None


def _windows(path: str, max_line: int) -> list[reader.Window]:
    """The file's windows as ingest reads them from offset 0 (at most two: the reader's two buffers hold them);
    none when it is not plain lines of JSON."""
    try:
        with open(path, "rb") as f:
            if document.looks_like_document(f.read(65536)):
                return []
            f.seek(0)
            got = list(itertools.islice(reader.iter_windows(f, max_line=max_line), 3))
    except Exception:  # noqa: BLE001 - met again, and reported, when the file is ingested
        return []
    if len(got) > 2 or any(w.sse for w in got):
        return []
    if any(has_big_line(w.table) for w in got):
        return []  # parsed alone, with the headroom
    return [w for w in got if w.table.num_rows]


def parse_group(store: Store, paths: list[str], final_sql: tuple[str, str, str], map_params: list[Any],
                max_line: int) -> dict[str, Parsed]:
    """Parse the windows of ``paths`` in one statement; the files that could not be read as one plain window are
    left out. Any failure leaves them all out: each file then meets it on its own."""
    wins = [(p, w) for p in paths for w in _windows(p, max_line)]
    if len({p for p, _ in wins}) < 2:
        return {}
    schema = wins[0][1].table.schema
    wins = [(p, w) for p, w in wins if w.table.schema == schema]
    i = schema.get_field_index("line_no")
    tables = [w.table.set_column(i, "line_no", pc.add(w.table["line_no"], k << _SHIFT))
              for k, (_, w) in enumerate(wins)]
    try:
        # through the plan the store keeps for the ingest: each group runs it, none plans it again
        rows, types = parse_planned(store, pa.concat_tables(tables), final_sql[0], map_params)
    except Exception:  # noqa: BLE001 - each file is then parsed on its own, and meets the error there
        return {}
    group = pc.shift_right(rows["line_no"], _SHIFT)
    j = rows.schema.get_field_index("line_no")
    out: dict[str, Parsed] = {}
    for k, (p, w) in enumerate(wins):
        sub = rows.filter(pc.equal(group, k))
        sub = sub.set_column(j, "line_no", pc.subtract(sub["line_no"], k << _SHIFT))
        out.setdefault(p, Parsed([])).windows.append((w.table, (sub, types)))
    return out


class GroupParser:
    """Parses the next small new files in groups as :func:`runaudit.ingest.files.ingest` reaches them."""

    def __init__(self, store: Store, paths: list[str], final_sql: tuple[str, str, str], map_params: list[Any],
                 max_line: int) -> None:
        self._store, self._final_sql, self._map_params, self._max_line = store, final_sql, map_params, max_line
        known = {r[0] for r in store.rows("SELECT path FROM files")}
        self._paths = paths
        # the small files not parsed yet, with their sizes
        self._small = {p: n for p in paths if (n := candidate_size(p, known)) is not None}
        self._ready: dict[str, Parsed] = {}

    def take(self, path: str) -> Parsed | None:
        """What was parsed ahead for ``path`` (parsing it with the next small files first), or None."""
        if path in self._ready:
            return self._ready.pop(path)
        if path not in self._small:
            return None
        group, size = [], 0
        for p in self._paths[self._paths.index(path):]:
            if p not in self._small:
                continue
            if len(group) == GROUP_FILES or size >= reader.WINDOW_BYTES:
                break
            group.append(p)
            size += self._small[p]
        for p in group:
            del self._small[p]
        self._ready = parse_group(self._store, group, self._final_sql, self._map_params, self._max_line)
        return self._ready.pop(path, None)
