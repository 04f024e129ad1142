"""Stream a log file as Arrow windows of whole lines, with exact line numbers and byte offsets.

The file is read with ``readinto`` into one reusable buffer; line boundaries are found with numpy, and each
window becomes an Arrow string array over the lines packed into one of two buffers used in turn; the only per-line
Python work on the fast path is each line's SHA-256 (its identity, see :func:`_digests`). :class:`ReadAhead`
reads the next window in a thread while the caller works.
Each line's string leaves out its terminator (LF or CR LF); a byte-order mark becomes spaces, and lines with
whitespace at an edge are flagged ``padded`` so SQL trims just those. Lines longer than ``max_line`` are
streamed past (never held whole) and reported with their first bytes so the caller can quarantine them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

QUARANTINE_CAP = 64 * 1024  # bytes of a bad line kept in the quarantine table
# A line holding more JSON arrays and objects than this ({"messages": [[], [], ...]} by the million) would exhaust
# DuckDB's memory when parsed: it is flagged like an over-long line and quarantined as too complex. LLM call
# records hold a few thousand at most; 500,000 parse in about 300 MB.
MAX_CONTAINERS = 250_000
_BOM = b"\xef\xbb\xbf"
# The columns of a window's digests (see _digests): a record's identity is the SHA-256 of its line, 128 bits kept as
# two UBIGINTs (runaudit.ingest.window.KEYS_SQL). NULL where the reader did not compute it (SQL does).
DIGEST_COLUMNS = ("dg_h", "dg_h2")


def _digests(packed: np.ndarray, noffs: np.ndarray, bad: np.ndarray | None) -> dict[str, pa.Array]:
    """The first 128 bits of each line's SHA-256, as the two big-endian UBIGINTs SQL reads from ``sha256(line)``
    (``('0x' || left(d, 16))::UBIGINT``, then the next 16 hex digits). Computed here, in the reader's thread, while
    DuckDB works on the window before: SHA-256 in SQL was ~0.1 s of every 32 MB window on both cores, OpenSSL's
    here ~0.04 s on one. ``bad`` (None: no line) flags the lines whose bytes are not their strings' UTF-8 (invalid
    bytes, replaced in the string): they get NULL."""
    view = memoryview(packed)
    bounds = noffs.tolist()
    sha = hashlib.sha256
    raw = b"".join([sha(view[a:b]).digest()[:16] for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    both = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)
    return {c: pa.array(both[:, i], pa.uint64(), mask=bad) for i, c in enumerate(DIGEST_COLUMNS)}


def no_digests(n: int) -> dict[str, pa.Array]:
    """NULL digest columns for ``n`` records that did not come from the reader (SQL hashes them)."""
    return {c: pa.nulls(n, pa.uint64()) for c in DIGEST_COLUMNS}


@dataclass
class Window:
    """A batch of complete lines."""

    table: pa.Table  # line_no, byte_offset, line, bad_utf8, too_long, orig_len, padded, dg_h, dg_h2
    end_offset: int  # byte offset just past the last line of the window
    lines: int
    unterminated_last: bool  # the last line had no newline (end of file)
    eof: bool = False  # no line of the file comes after this window
    can_grow: bool = False  # a rewind with grow=True would read a bigger window
    sse: bool = False  # a line starts "data:": raw SSE text, parsed by its own SQL
    blank_skipped: int = 0  # empty lines counted here and left out of ``table`` (``lines`` counts them)
    prepared: Any = None  # what ReadAhead's ``prepare`` made of the window in its thread (None: nothing)


# Bytes of lines per window (tests shrink it to cross window boundaries). Each window cost a fixed ~0.3 s, most of
# it DuckDB planning the parse statement again (~0.2 s of binding and optimising); it is now planned once per file
# read ahead, and once per ingest for the files the caller parses (window.parse_planned). Bigger windows were
# measured with the checkpoint at Store.close() counted (2026-12-07, 1M realistic runs, interleaved): 128 MB windows
# made ingest() 22.7 s against 30 s, but the close then took 4.5 s instead of 0.1 s and the database file was 489
# MB against 262 MB (an insert of more than a row group writes row groups to the file at once, and the checkpoint
# rewrites them); capped below a row group of lines, they saved ~0.5 s for +380 MB of RSS. Windows of stream events
# also hold ~20-30 times their bytes (files of streams at 128 MB windows peaked at 1.9-2.2 GB). So: 32 MB.
WINDOW_BYTES = 32 << 20
# At most this many lines per window, so that per-line arrays stay small whatever the input (32 MB of newlines
# would otherwise be 32 million rows).
MAX_WINDOW_LINES = 1 << 20
BATCH_BYTES = 1 << 20  # line text per record batch of a window (see _batched)
GROW_LIMIT = 8  # a window grows to at most this many times WINDOW_BYTES to hold one logged stream whole


def open_log(path: str) -> IO[bytes]:
    """Open a plain or gzip-compressed log for binary reading."""
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb", buffering=0)


def file_fingerprint(path: str, upto: int) -> tuple[str, str]:
    """Hashes of the first 64 KiB and of the 64 KiB before ``upto`` (the region already ingested)."""
    with open_log(path) as f:
        head = f.read(min(upto, 65536))
        if upto <= 65536:
            tail = head
        else:
            f.seek(upto - 65536)
            tail = f.read(65536)
    return hashlib.sha256(head).hexdigest()[:32], hashlib.sha256(tail).hexdigest()[:32]


def prefix_digest(path: str, upto: int) -> str:
    """SHA-256 of the file's first ``upto`` bytes: any edit of the region already read changes it."""
    h = hashlib.sha256()
    left = upto
    with open(path, "rb") as f:
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def complete_json(line: bytes) -> bool:
    """Whether an unterminated last line is already a whole JSON value (a record whose newline is still to come,
    or a writer that never ends its last line), rather than a line still being written."""
    s = line.strip()
    if s.startswith(b"data:"):
        s = s[5:].strip()
    if not s:
        return True
    try:
        json.loads(s)
    except ValueError:
        return False
    return True


def _fill(f: IO[bytes], buf: bytearray, start: int) -> int:
    """Read into ``buf[start:]`` until it is full or the file ends; return the new fill level."""
    mv = memoryview(buf)
    fill = start
    try:
        while fill < len(buf):
            n = f.readinto(mv[fill:])  # type: ignore[attr-defined]
            if not n:
                break
            fill += n
    finally:
        mv.release()
    return fill


def _limit_lines(buf: bytearray, cut: int, limit: int) -> int:
    """``cut``, or the end of the ``limit``-th line before it when the window holds more lines than that."""
    arr = np.frombuffer(buf, dtype=np.uint8, count=cut)
    seen, step = 0, 4 << 20
    for start in range(0, cut, step):
        eq = arr[start:start + step] == 10
        c = int(np.count_nonzero(eq))
        if seen + c >= limit:
            return start + int(np.flatnonzero(eq)[limit - seen - 1]) + 1
        seen += c
    return cut


def _lines_table(buf: bytearray, cut: int, line0: int, base: int, bom: bool,
                 max_line: int, out: bytearray) -> tuple[pa.Table, int, int, bool]:
    """The window's lines as an Arrow table whose strings live in ``out`` (one of two, reused in turn), the
    number of lines and of blank lines, and whether a line starts ``data:`` (raw SSE text).

    DuckDB keeps what it read from a registered Arrow table alive until the transaction ends (a file is one
    transaction), so the windows' strings must live in buffers reused in turn, or memory grows with the file.
    """
    arr = np.frombuffer(buf, dtype=np.uint8, count=cut)
    nl = np.flatnonzero(arr == 10)
    if bom:
        arr[0:3] = 32  # JSON allows leading whitespace; the flag below has the line trimmed
    # a line starting "data:": the first line, or one after a newline (the bytes after each newline, gathered:
    # a search of the window's bytes took 20 ms per 32 MB)
    after = nl[nl + 6 <= cut]
    for k, b in enumerate(b"data:", start=1):
        after = after[arr[after + k] == b]
    sse = bytes(arr[:5]) == b"data:" or len(after) > 0
    ends = nl + 1
    if len(ends) == 0 or ends[-1] != cut:
        ends = np.append(ends, cut)
    n = len(ends)
    offs = np.empty(n + 1, dtype=np.int64)
    offs[0] = 0
    offs[1:] = ends
    orig_len = np.diff(offs)
    # The line terminator (LF, or CR LF) is left out of each line's string: the bytes of the window are packed
    # without them, so a line is stored exactly as written and needs no trimmed copy.
    term = np.zeros(n, dtype=np.int64)
    if len(nl):
        crlf = nl[(nl > 0)]
        crlf = crlf[arr[crlf - 1] == 13]
        # nl[i] ends line i (the window is cut after a newline, except an unterminated last line)
        term[: len(nl)] = 1
        term[np.searchsorted(nl, crlf)] += 1
        # A JSON line holds no raw LF, so every LF (and the CR just before one) is a terminator: bytes.replace
        # packs the window at memcpy speed.
        raw = bytes(memoryview(buf)[:cut])
        if len(crlf):
            raw = raw.replace(b"\r\n", b"")
        raw = raw.replace(b"\n", b"")
        out[:len(raw)] = raw
        packed = np.frombuffer(out, dtype=np.uint8, count=len(raw))
        del raw
    else:
        # one line without a newline: the file's last, so the reader does not refill ``buf`` after it (unless the
        # caller rewinds, which it does before asking for the next window: ReadAhead reads ahead safely)
        packed = arr
    lens = orig_len - term
    noffs = np.empty(n + 1, dtype=np.int32)
    noffs[0] = 0
    np.cumsum(lens, out=noffs[1:])
    # padded: the first or last byte could be whitespace that SQL trim() removes (it strips spaces and Unicode
    # spaces; every byte <= 32 or >= 128 is flagged, a superset), so only those lines are trimmed.
    nonempty = lens > 0
    first = np.zeros(n, dtype=np.uint8)
    last = np.zeros(n, dtype=np.uint8)
    if len(packed):
        first[nonempty] = packed[noffs[:-1][nonempty]]
        last[nonempty] = packed[noffs[1:][nonempty] - 1]
    padded = nonempty & ((first <= 32) | (first >= 128) | (last <= 32) | (last >= 128))
    # '[' and '{' per line (inside strings too: an upper bound). Each is one byte, so only a line longer than
    # MAX_CONTAINERS bytes can hold more; just those are counted (scanning every window cost 23 ms per 32 MB).
    complex_ = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(lens > MAX_CONTAINERS).tolist():
        seg = packed[noffs[i]:noffs[i + 1]]
        complex_[i] = int(np.count_nonzero(seg == 91)) + int(np.count_nonzero(seg == 123)) > MAX_CONTAINERS
    line_nos = np.arange(line0 + 1, line0 + 1 + n, dtype=np.int64)
    starts = base + offs[:-1]
    keep = lens > 0
    blank = n - int(np.count_nonzero(keep))
    if blank:
        # Empty lines hold no bytes: dropping their offsets leaves the packed data valid as it is (no copy).
        noffs = np.append(noffs[:-1][keep], noffs[-1]).astype(np.int32)
        line_nos, starts, orig_len = line_nos[keep], starts[keep], orig_len[keep]
        padded, complex_ = padded[keep], complex_[keep]
    rows = n - blank
    data = pa.py_buffer(memoryview(packed))
    assert len(packed) == int(noffs[-1])
    strings = pa.StringArray.from_buffers(rows, pa.py_buffer(noffs), data)
    bad = None
    try:
        strings.validate(full=True)
    except pa.ArrowInvalid:
        # Slow path, only for windows holding invalid UTF-8: decode line by line, replacing bad bytes.
        raw = packed.tobytes()
        texts: list[str] = []
        flags: list[bool] = []
        for i in range(rows):
            seg = raw[noffs[i]:noffs[i + 1]]
            try:
                texts.append(seg.decode("utf-8"))
                flags.append(False)
            except UnicodeDecodeError:
                texts.append(seg.decode("utf-8", errors="replace"))
                flags.append(True)
        strings = pa.array(texts, type=pa.string())
        bad = pa.array(flags, type=pa.bool_())
    table = pa.table({
        "line_no": pa.array(line_nos),
        "byte_offset": pa.array(starts),
        "line": strings,
        "bad_utf8": bad if bad is not None else pa.nulls(rows, pa.bool_()).fill_null(False),
        "too_long": pa.array((orig_len > max_line) | complex_),
        "orig_len": pa.array(orig_len),
        "padded": pa.array(padded),
        **_digests(packed, noffs, None if bad is None else np.asarray(flags, dtype=bool)),
    })
    return _batched(table, np.diff(noffs)), n, blank, sse


def _batched(table: pa.Table, lens: np.ndarray, budget: int = BATCH_BYTES) -> pa.Table:
    """``table`` as record batches of at most 2048 lines and about ``budget`` bytes of line text each (a longer line
    is a batch with the lines that start before it in the same span of bytes). Several batches let DuckDB scan a
    window on every core; DuckDB parses one batch at a time, and parsing a record takes tens of times its size in
    memory (each step of the normaliser holds its own copy of the nested fields), so a window of 2 MB records is
    parsed a few at a time instead of 2048 at once."""
    rows = table.num_rows
    if rows == 0:
        return table
    starts = np.concatenate(([0], np.cumsum(lens[:-1], dtype=np.int64)))
    bucket = starts // budget
    first = np.flatnonzero(np.diff(bucket)) + 1  # a line that starts a new span of bytes starts a batch
    cuts: list[int] = []
    prev = 0
    for c in [*first.tolist(), rows]:
        cuts.extend(range(prev + 2048, c, 2048))
        cuts.append(c)
        prev = c
    batches, lo = [], 0
    for hi in cuts:
        batches.extend(table.slice(lo, hi - lo).to_batches())
        lo = hi
    return pa.Table.from_batches(batches, schema=table.schema)


def records_table(table: pa.Table, out: bytearray, budget: int) -> tuple[pa.Table, bytearray]:
    """``table`` (records made in SQL: ``line_no``, ``part``, ``byte_offset``, ``line``, ``orig_len``) as a window's
    chunk, in record batches of about ``budget`` bytes of text, with its strings copied into ``out`` (grown when too
    small, and returned): DuckDB keeps what it read from a registered Arrow table alive until the transaction
    ends, so records made window after window must live in one reused buffer, as the reader's lines do. A record
    without text (NULL) stays NULL."""
    col = table.column("line").combine_chunks()
    n = len(col)
    offs = np.frombuffer(col.buffers()[1], dtype=np.int32, count=col.offset + n + 1)[col.offset:]
    lo, hi = int(offs[0]), int(offs[-1])
    if len(out) < hi - lo:
        out = bytearray(max(hi - lo, 2 * len(out)))
    data = col.buffers()[2]
    out[:hi - lo] = memoryview(data)[lo:hi] if data is not None else b""
    # the validity as a fresh bitmap (the column's own may start at a bit offset)
    valid = pc.is_valid(col).buffers()[1] if col.null_count else None
    lines = pa.StringArray.from_buffers(n, pa.py_buffer((offs - lo).astype(np.int32)),
                                        pa.py_buffer(memoryview(out)[:hi - lo]), valid, col.null_count)
    false = pa.nulls(n, pa.bool_()).fill_null(False)
    chunk = pa.table({"line_no": table.column("line_no"), "part": table.column("part"),
                      "byte_offset": table.column("byte_offset"), "line": lines, "bad_utf8": false,
                      "too_long": false, "orig_len": table.column("orig_len"), "padded": false, **no_digests(n)})
    return _batched(chunk, np.diff(offs), budget), out


def _too_long_table(first: bytes, line_no: int, offset: int, length: int) -> pa.Table:
    return pa.table({
        "line_no": pa.array([line_no], pa.int64()),
        "byte_offset": pa.array([offset], pa.int64()),
        "line": pa.array([first.decode("utf-8", errors="replace")], pa.string()),
        "bad_utf8": pa.array([False]),
        "too_long": pa.array([True]),
        "orig_len": pa.array([length], pa.int64()),
        "padded": pa.array([True]),
        **no_digests(1),
    })


def iter_windows(f: IO[bytes], *, offset: int = 0, line_no: int = 0, window: int | None = None,
                 max_line: int = 32 << 20, rewind: list[tuple[int, int, bool]] | None = None,
                 held: dict[str, int] | None = None) -> Iterator[Window]:
    """Yield windows of complete lines from ``f`` (positioned at ``offset``).

    The table of a window is only valid until the next window is requested: it points into a reused buffer.
    A consumer that could not use the end of a window (a stream that goes on in the next one) puts
    ``(byte_offset, line_no, grow)`` of the first line it wants again into ``rewind``; the next window starts
    there (``line_no`` is the number of lines before that one), twice as big when ``grow`` (a stream longer than
    a window; only while ``Window.can_grow``).

    With ``held`` (a dict), a last line without its newline that is not yet a whole JSON value is not read: the
    file is still being written. Its offset and length are put in ``held`` and the last window ends before it.

    :class:`ReadAhead` yields the same windows, reading the next one in a thread while the caller works.
    """
    rewind = rewind if rewind is not None else []
    for step in _windows(f, offset, line_no, window or WINDOW_BYTES, max_line, rewind, held):
        if step is None:
            if rewind:
                continue  # the end of the file, but the caller wants lines again
            return
        yield step[0]


class ReadAhead:
    """:func:`iter_windows`, one window ahead: a thread reads and packs the next window while the caller works on
    this one (the caller's time is mostly in DuckDB, which releases the GIL).

    The same windows, the same ``rewind`` and ``held`` protocol and the same validity rule: a window's table is
    valid until the next one is requested (windows alternate between two buffers, and the thread fills one only
    after the window it held was given up). The read ahead is done as if no rewind were coming; when the caller
    puts one in ``rewind``, that window is dropped and the reader starts again where asked, with the buffer size
    it had at the window the caller got (so the windows are the ones :func:`iter_windows` reads). A read error is
    raised when the caller asks for the window it stopped; one the caller never asks for (it stopped first) is not
    raised. ``held`` is updated as the caller gets each window. Use it as a context manager (or call
    :meth:`close`) so the thread stops before ``f`` is closed.

    ``prepare`` (optional) runs in the thread on each window read, and its result is the window's ``prepared``
    (dropped with the window on a rewind). If it raises, ``prepared`` stays None: the caller does the work itself,
    and meets the error there.
    """

    def __init__(self, f: IO[bytes], *, offset: int = 0, line_no: int = 0, window: int | None = None,
                 max_line: int = 32 << 20, rewind: list[tuple[int, int, bool]] | None = None,
                 held: dict[str, int] | None = None, prepare: Callable[[Window], Any] | None = None) -> None:
        self._prepare = prepare
        self._rewind = rewind if rewind is not None else []
        self._held = held
        self._own_rewind: list[tuple[int, ...]] = []
        self._own_held: dict[str, int] | None = {} if held is not None else None
        self._got_held: dict[str, int] = {}  # the reader's ``held`` as of the last window given to the caller
        self._bufsize = window or WINDOW_BYTES
        self._gen = _windows(f, offset, line_no, window or WINDOW_BYTES, max_line, self._own_rewind,
                             self._own_held)
        self._go = threading.Semaphore(0)
        self.ready = threading.Event()  # the thread has read the next window (tests wait on it)
        self._result: tuple[str, Any, dict[str, int]] = ("end", None, {})
        self._closed = self._done = False
        self._thread = threading.Thread(target=self._work, name="runaudit-reader", daemon=True)
        self._thread.start()
        self._go.release()

    def _work(self) -> None:
        while True:
            self._go.acquire()
            if self._closed:
                return
            try:
                step = next(self._gen)
                kind = "end" if step is None else "window"
            except StopIteration:
                kind, step = "end", None
            except BaseException as e:  # given to the caller, raised in its thread
                kind, step = "error", e
            if kind == "window" and self._prepare is not None and not self._closed:
                try:
                    step[0].prepared = self._prepare(step[0])
                except Exception:  # the caller does the work itself and meets the error there
                    step[0].prepared = None
            self._result = (kind, step, dict(self._own_held or {}))
            self.ready.set()
            if kind == "error":
                return

    def __iter__(self) -> ReadAhead:
        return self

    def __next__(self) -> Window:
        if self._done:
            raise StopIteration
        while True:
            self.ready.wait()
            self.ready.clear()
            kind, step, held = self._result
            if self._rewind and kind != "error":
                # read from where the caller asks, as the plain reader would have after the window it gave
                pos, line_no, grow = self._rewind.pop()
                self._rewind.clear()
                self._own_rewind.append((pos, line_no, grow, self._bufsize))
                if self._own_held is not None:
                    self._own_held.clear()
                    self._own_held.update(self._got_held)
                self._go.release()
                continue
            if self._held is not None:
                self._got_held = held
                self._held.clear()
                self._held.update(held)
            if kind == "window":
                win, self._bufsize = step
                self._go.release()  # read the next one while the caller works on this one
                return win
            self._done = True
            if kind == "error":
                raise step
            raise StopIteration

    @property
    def reading(self) -> bool:
        """Whether the reader's thread is still running (False once :meth:`close` returned)."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop the thread (after the read it is doing, if any)."""
        self._done = self._closed = True
        self._go.release()
        self._thread.join()
        self._gen.close()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _size_left(f: IO[bytes], offset: int) -> int | None:
    """Bytes of a plain file after ``offset``, as its size says now (None for a compressed or in-memory one)."""
    if not isinstance(f, (io.FileIO, io.BufferedReader)):
        return None
    try:
        st = os.fstat(f.fileno())
    except (OSError, ValueError):
        return None
    return max(st.st_size - offset, 0) if stat.S_ISREG(st.st_mode) else None


def _windows(f: IO[bytes], offset: int, line_no: int, window: int, max_line: int,
             rewind: list[tuple[int, ...]], held: dict[str, int] | None) -> Iterator[tuple[Window, int] | None]:
    """The reader behind :func:`iter_windows`: each window with the read buffer's size, and None at the end of
    the file; asked again after the end, it goes on only if ``rewind`` holds a place to read from (an entry may
    carry a fourth item, the buffer size to read with)."""
    grow_cap = window * GROW_LIMIT
    # A file smaller than a window gets buffers of its size: zeroing three of 32 MB cost ~60 ms a file, most of the
    # time of a small one. If it was longer than its size said, the buffer grows to the window (below).
    left = _size_left(f, offset)
    buf = bytearray(window if left is None else min(window, max(left + 1, 1 << 16)))
    # the packed lines of a window (see _lines_table), two in turn: ReadAhead packs the next window while the
    # caller still reads the one before (made at the size of the buffer when first used)
    outs = [bytearray(0), bytearray(0)]
    turn = 0
    fill = 0
    pos = offset  # file offset of buf[0]
    eof = False
    first = offset == 0
    while True:
        if rewind:
            pos, line_no, grow, *size = rewind.pop()
            rewind.clear()
            f.seek(pos)
            fill, eof = 0, False
            if size and len(buf) != size[0]:
                buf = bytearray(size[0])
            if grow and len(buf) < grow_cap:
                buf = bytearray(min(len(buf) * 2, grow_cap))
        if not eof:
            new_fill = _fill(f, buf, fill)
            eof = new_fill < len(buf)
            fill = new_fill
            if not eof and len(buf) < window:  # the file is longer than its size said: read a whole window
                bigger = bytearray(window)
                bigger[:fill] = buf[:fill]
                buf = bigger
                continue
        if fill == 0:
            yield None
            if not rewind:
                return
            continue
        bom = first and bytes(buf[:3]) == _BOM
        first = False
        cut = buf.rfind(b"\n", 0, fill) + 1
        if cut == 0 and not eof:
            # No newline in a full buffer: grow it, or stream past an over-long line.
            if len(buf) < max_line:
                bigger = bytearray(min(len(buf) * 2, max_line))
                bigger[:fill] = buf[:fill]
                buf = bigger
                continue
            first_bytes = bytes(buf[:QUARANTINE_CAP])
            skipped = fill
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    rest = b""
                    eof = True
                    break
                i = chunk.find(b"\n")
                if i >= 0:
                    skipped += i + 1
                    rest = chunk[i + 1:]
                    break
                skipped += len(chunk)
            line_no += 1
            yield Window(_too_long_table(first_bytes, line_no, pos, skipped), pos + skipped, 1, False,
                         eof and not rest), len(buf)
            pos += skipped
            buf[:len(rest)] = rest
            fill = len(rest)
            continue
        if eof and held is not None and cut < fill and not complete_json(bytes(buf[cut:fill])):
            held["offset"], held["bytes"] = pos + cut, fill - cut
            if cut == 0:
                yield None
                if not rewind:
                    return
                continue
            fill = cut  # the window ends before the line still being written
        if eof and cut < fill:
            # the file's last line, without a newline, is read with the lines before it: a window of its own
            # ended a stream whose last event it holds (one stream made two runs) and cost a parse of its own
            cut = fill
        if cut > 1:
            cut = _limit_lines(buf, cut, MAX_WINDOW_LINES)
        unterminated = cut == fill and buf[cut - 1] != 10
        turn ^= 1
        if len(outs[turn]) < len(buf):
            outs[turn] = bytearray(len(buf))
        table, n, blank, sse = _lines_table(buf, cut, line_no, pos, bom, max_line, outs[turn])
        yield Window(table, pos + cut, n, unterminated, eof and cut == fill, len(buf) < grow_cap, sse, blank), len(buf)
        del table
        line_no += n
        pos += cut
        rem = fill - cut
        if rem:
            buf[:rem] = buf[cut:fill]
        fill = rem
        if eof and fill == 0 and not rewind:
            yield None
            if not rewind:
                return


def too_long(lines: list[str], nbytes: list[int], max_line: int) -> list[bool]:
    """The reader's ``too_long`` flag for lines given as text (``nbytes``: each one's length in UTF-8): longer than
    ``max_line`` bytes, or holding more than ``MAX_CONTAINERS`` '[' and '{' (inside strings too), as
    :func:`_lines_table` counts them per line."""
    return [n > max_line or s.count("[") + s.count("{") > MAX_CONTAINERS for s, n in zip(lines, nbytes, strict=True)]


def records_window(line_nos: list[int], lines: list[str], end_offset: int,
                   parts: list[int] | None = None, max_line: int | None = None) -> Window:
    """A window of records that did not come from reading lines (a JSON document's elements, a database's
    rows, lines given in memory): complete, numbered by the caller; ``parts`` numbers records that share a line
    number. A text that is not valid UTF-8 (a lone surrogate) has it replaced by U+FFFD and is flagged
    ``bad_utf8``, as the reader does with invalid bytes. With ``max_line``, a record the reader would not parse
    (too long, too many containers) is flagged ``too_long`` as the reader flags it, and is quarantined."""
    n = len(lines)
    texts: list[str] = []
    bad: list[bool] = []
    nbytes: list[int] = []
    for s in lines:
        try:
            nbytes.append(len(s.encode("utf-8")))
            bad.append(False)
        except UnicodeEncodeError:
            s = s.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
            nbytes.append(len(s.encode("utf-8")))
            bad.append(True)
        texts.append(s)
    cols: dict[str, pa.Array] = {"line_no": pa.array(line_nos, pa.int64())}
    if parts is not None:
        cols["part"] = pa.array(parts, pa.int64())
    cols.update({
        "byte_offset": pa.array([0] * n, pa.int64()),
        "line": pa.array(texts, pa.string()),
        "bad_utf8": pa.array(bad),
        "too_long": pa.array(too_long(texts, nbytes, max_line) if max_line is not None else [False] * n),
        "orig_len": pa.array(nbytes, pa.int64()),
        "padded": pa.array([is_padded(t) for t in texts]),
        **no_digests(n),
    })
    return Window(table=pa.table(cols), end_offset=end_offset, lines=n, unterminated_last=False, eof=True)


def is_padded(line: str) -> bool:
    """The reader's ``padded`` flag for a line given as text: its first or last character could be whitespace
    that SQL trims (every character below 33 or above 127 counts, as every such byte does in a file)."""
    return bool(line) and not (32 < ord(line[0]) < 128 and 32 < ord(line[-1]) < 128)
