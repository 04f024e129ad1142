"""The engine-neutral core: normalise log lines into runs and classify them, in a DuckDB of its own.

The local store, the inline check (:mod:`runaudit.inline`) and each Spark task run the same two steps with the same
SQL: the ingest window (:func:`runaudit.ingest.window.process_window`: parse, detect the shape, assemble streams,
quarantine, insert runs) and :func:`runaudit.classify.classify` (the compiled rules, the refusal score and the
done-conditions in one scan). An :class:`Engine` holds an in-memory runaudit database, migrated once, through which
lines given in memory pass; what comes out is Arrow, so any engine can take it. There is no second
implementation of a rule: the store, the check and Spark differ only in where the lines come from and where
the rows go.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runaudit.classify import classify, ruleset_hash
from runaudit.config import Config
from runaudit.store import Store, arrow_table

if TYPE_CHECKING:
    import pyarrow as pa

# What a check or a task reads back: the run as normalised and its classification under the ruleset.
RESULT_SQL = """
SELECT r.*, c.ruleset, c.outcome, c.sub_reason, c.signal, c.rule_code, c.retryable, c.refusal_score,
       c.done_failures, c.reported_success, c.idem_key AS review_key, c.refusal_kind
FROM runs r JOIN classifications c ON c.rid = r.rid AND c.ruleset = $ruleset
ORDER BY r.rid
"""


@dataclass
class Batch:
    """Runs and quarantined lines from one batch of lines, as Arrow tables, with the ingest counts."""

    runs: pa.Table  # the runs columns and their classification (RESULT_SQL)
    quarantine: pa.Table
    counts: dict[str, int]
    ruleset: str


class Engine:
    """An in-memory runaudit database for lines that are not in a store: the inline check and Spark tasks.

    Thread-safe: calls are serialised on one connection (a DuckDB connection runs one statement at a time).
    """

    def __init__(self, cfg: Config | None = None) -> None:
        from runaudit.ingest.window import compile_insert_sql

        self.cfg = cfg or Config()
        self.ruleset = ruleset_hash(self.cfg)
        self.store = Store.open(":memory:")
        # one thread: a one-call statement runs faster without DuckDB's worker handoff
        self.store.run("SET threads = 1")
        self._final_sql, self._map_params = compile_insert_sql(self.cfg)
        self._lock = threading.RLock()
        # the one-line statement (runaudit.one_line): None until prepared on first use, False if it could not be
        self._one: bool | None = None
        self._no_quarantine: pa.Table | None = None
        self._ts_sql = ""
        self._result_schema: pa.Schema | None = None
        self._run_cols = ""

    def close(self) -> None:
        """Close the in-memory database."""
        self.store.close()

    @contextlib.contextmanager
    def locked(self) -> Iterator[Store]:
        """The engine's database, held for one caller (to read more than :meth:`run_lines` returns)."""
        with self._lock:
            yield self.store

    def run_lines(self, lines: list[str], *, source: str = "<inline>", mtime: float | None = None) -> Batch:
        """Normalise ``lines`` (one record each, as a log line; stream events in order make one run) and
        classify the runs, exactly as ``runaudit audit`` would for a file holding those lines.

        ``source`` is stored as the runs' ``source_file`` and ``mtime`` (default: now) gives a run without a
        logged time its time, as a file's modification time does.
        """
        with self._lock:
            if len(lines) == 1:
                one = self._run_one(lines[0], source, mtime)
                if one is not None:
                    return one
            counts, ruleset = self.load_lines(lines, source=source, mtime=mtime)
            # read each result whole before the next statement (DuckDB 2.x streams .arrow())
            runs = arrow_table(self.store.con.sql(RESULT_SQL, params={"ruleset": ruleset}).arrow())
            quarantine = arrow_table(self.store.con.sql("SELECT * FROM quarantine ORDER BY source_line").arrow())
            return Batch(runs=runs, quarantine=quarantine, counts=counts, ruleset=ruleset)

    def _run_one(self, line: str, source: str, mtime: float | None) -> Batch | None:
        """One line through the prepared one-line statement, or None where the general path must run it (a
        stream event, an OTLP export, a line the window would quarantine, a NUL character, a lone
        surrogate, a line with whitespace at an edge, which the window trims as the reader does)."""
        import duckdb

        from runaudit.ingest.reader import is_padded, too_long
        from runaudit.one_line import compile_one_line_sql, compile_ts_parse_sql, guess_ts_text, literal

        if self._one is False or "\x00" in line or "\x00" in source or is_padded(line):
            return None
        try:
            nbytes = len(line.encode("utf-8"))
            source.encode("utf-8")
        except UnicodeEncodeError:
            return None  # a lone surrogate: the general path replaces it, as the reader does
        if too_long([line], [nbytes], self.cfg.max_line_bytes)[0]:
            return None  # quarantined by the general path, as the reader would
        con = self.store.con
        if self._one is None:
            try:
                con.execute("PREPARE ra_one AS " + compile_one_line_sql(self.store, self.cfg, self.ruleset))
            except (duckdb.Error, KeyError, AssertionError, TypeError, ValueError):
                self._one = False
                return None
            self._ts_sql = compile_ts_parse_sql()
            self._no_quarantine = arrow_table(con.sql("SELECT * FROM quarantine LIMIT 0").arrow())
            self._one = True
        # values of the types the statements were prepared with (see runaudit.one_line)
        head = f"{literal(line)}::VARCHAR, TIMESTAMP {literal(_mtime_ts(mtime))}, {literal(source)}::VARCHAR"
        # The statement is given the run's time, parsed from a guess at the logged time text, and says which text
        # the window read; a wrong guess is parsed again from that text and the statement run again.
        text = guess_ts_text(line)
        # a long line needs the window's parse headroom (Store.parse_headroom); most lines are far below it
        with self.store.parse_headroom(nbytes):
            tbl = self._execute_one(head, text)
        if tbl is None or tbl.num_rows != 1 or tbl["_special"][0].as_py() or tbl["rid"][0].as_py() is None:
            return None
        assert self._no_quarantine is not None
        counts = {"lines": 1, "end_offset": len(line) + 1, "held": 0, "ingested": 1, "runs_added": 1,
                  "duplicates": 0, "blank": 0, "quarantined": 0, "not_calls": 0, "spans_other": 0}
        return Batch(runs=tbl.drop_columns(["_special", "_ts_raw"]), quarantine=self._no_quarantine, counts=counts,
                     ruleset=self.ruleset)

    def _execute_one(self, head: str, text: str | None) -> pa.Table | None:
        """The one-line statement's result for the line in ``head``, given a guess at its logged time text; None
        when the guess was wrong twice."""
        con = self.store.con
        for _ in range(2):
            ts = "NULL::TIMESTAMP"
            if text is not None:
                parsed = con.execute(self._ts_sql, [text]).fetchall()[0][0]
                if parsed is not None:
                    ts = f"TIMESTAMP '{parsed.isoformat(sep=' ')}'"
            tbl = arrow_table(con.sql(f"EXECUTE ra_one({head}, {ts})").arrow())
            read = tbl["_ts_raw"][0].as_py() if tbl.num_rows == 1 else None
            if read == text:
                return tbl
            text = read
        return None

    def _clear(self) -> None:
        """Empty the engine's runs, classifications and quarantine (each call works on its own lines)."""
        for t in ("runs", "classifications", "quarantine"):
            self.store.run(f"DELETE FROM {t}")

    def queue_item(self, run: dict[str, Any]) -> dict[str, Any] | None:
        """The review-queue row (``review_queue`` with degraded runs) of one run as :meth:`run_lines` returned it,
        from the queue's own SQL over that run alone (its stored row and classification), without normalising or
        classifying it again; None when the run is not queued."""
        import pyarrow as pa

        from runaudit.review import review_queue

        with self._lock:
            s = self.store
            if self._result_schema is None:
                self._result_schema = arrow_table(s.con.sql(RESULT_SQL + " LIMIT 0",
                                                            params={"ruleset": ""}).arrow()).schema
                self._run_cols = ", ".join(f'"{c}"' for c in s.con.sql("SELECT * FROM runs LIMIT 0").columns)
            row = pa.Table.from_pylist([run], schema=self._result_schema)
            self._clear()
            s.con.register("_held_row", row)
            try:
                with s.transaction():
                    s.run(f"INSERT INTO runs ({self._run_cols}) SELECT {self._run_cols} FROM _held_row")
                    s.run("INSERT INTO classifications BY NAME SELECT rid, ruleset, outcome, sub_reason, signal, "
                          "rule_code, retryable, refusal_score, done_failures, reported_success, "
                          "review_key AS idem_key, refusal_kind FROM _held_row")
                    s.set_meta("current_ruleset", str(run["ruleset"]))
            finally:
                s.con.unregister("_held_row")
            df = review_queue(s, "all", include_degraded=True)
        rows = [r for r in df.iter_rows(named=True) if r["key"] == run["review_key"]]
        return rows[0] if rows else None

    def load_lines(self, lines: list[str], *, source: str = "<inline>",
                   mtime: float | None = None) -> tuple[dict[str, int], str]:
        """Replace the engine's runs with those of ``lines``, classified; the caller holds :meth:`locked`.
        Returns the ingest counts and the ruleset."""
        from runaudit.ingest.reader import records_window
        from runaudit.ingest.window import OCC_INIT_SQL, process_window

        s = self.store
        self._clear()
        win = records_window(list(range(1, len(lines) + 1)), lines, sum(len(x) + 1 for x in lines),
                             max_line=self.cfg.max_line_bytes)
        ctx: dict[str, Any] = {
            "file": source, "ingest_id": 1, "max_line": self.cfg.max_line_bytes, "next_rid": 0, "line0": 0,
            "mtime_ts": _mtime_ts(mtime),
        }
        with s.transaction():
            s.run(OCC_INIT_SQL)
            counts = process_window(s, win, ctx, self._final_sql, self._map_params)
        res = classify(s, self.cfg)
        return {k: int(v) for k, v in counts.items() if isinstance(v, int)}, res.ruleset


def _mtime_ts(mtime: float | None) -> str:
    """The time a run without a logged time takes (as a file's modification time), default now, in UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() if mtime is None else mtime))


# The engines of the configurations used last, newest at the end. Each holds its own in-memory database and the
# prepared one-line statement (~180 MB once prepared): a process that checks under many configurations keeps only
# the last few; one dropped is closed when its last caller lets it go.
ENGINES_KEPT = 4
_ENGINES: OrderedDict[str, Engine] = OrderedDict()
_ENGINES_LOCK = threading.Lock()


def engine_for(cfg: Config) -> Engine:
    """The process-wide engine for a configuration (one per ruleset), created on first use; the
    :data:`ENGINES_KEPT` used last are kept."""
    key = ruleset_hash(cfg) + "|" + repr(cfg.field_map) + "|" + str(cfg.max_line_bytes)
    with _ENGINES_LOCK:
        eng = _ENGINES.get(key)
        if eng is None:
            eng = _ENGINES[key] = Engine(cfg)
            while len(_ENGINES) > ENGINES_KEPT:
                _ENGINES.popitem(last=False)
        else:
            _ENGINES.move_to_end(key)
        return eng


@dataclass
class FileAudit:
    """One log file audited on its own: what a Spark task returns (Arrow tables and the ingest counts)."""

    runs: pa.Table  # runs columns + the classification (RESULT_SQL), source_file as given
    quarantine: pa.Table
    counts: dict[str, Any]
    ruleset: str


def audit_file(path: str, cfg: Config, *, source: str | None = None) -> FileAudit:
    """Ingest and classify one local file in a database of its own (the ingest and classify of the local store,
    unchanged), returning its runs, quarantine and counts; ``source`` (default ``path``) is the name recorded as
    each run's ``source_file`` (the file's own path in object storage when ``path`` is a local copy)."""
    from runaudit.ingest import ingest

    with Store.open(":memory:") as s:
        res = ingest(s, [path], cfg)
        fr = res.per_file[0]
        if fr.error:
            counts: dict[str, Any] = {"error": fr.error}
        else:
            counts = {k: getattr(fr, k) for k in ("mode", "lines", "ingested", "runs_added", "duplicates", "blank",
                                                  "quarantined", "held", "not_calls", "spans_other")}
        c = classify(s, cfg)
        name = source or path
        runs = arrow_table(s.con.sql(RESULT_SQL.replace("SELECT r.*", "SELECT r.* REPLACE ($source AS source_file)"),
                                params={"ruleset": c.ruleset, "source": name}).arrow())
        quarantine = arrow_table(s.con.sql("SELECT * REPLACE ($source AS source_file) FROM quarantine "
                                      "ORDER BY source_line", params={"source": name}).arrow())
        return FileAudit(runs=runs, quarantine=quarantine, counts=counts, ruleset=c.ruleset)
