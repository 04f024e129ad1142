"""The DuckDB file: opening it safely, migrations, and queries that return polars frames.

Only this package catches ``duckdb.Error``; everything above it sees :class:`StoreError`.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from runaudit.errors import StoreBusyError, StoreError
from runaudit.store.schema import MIGRATIONS, SCHEMA_VERSION

# Store.arrow_typed reads a DB-API result as Arrow on purpose (a relation binds its statement twice): DuckDB warns
# of the copy that costs. Only that warning, only from this module.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning, module=__name__)

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

DEFAULT_DB = "runaudit.duckdb"
MEMORY_LIMIT = "1GB"  # DuckDB's memory limit unless RUNAUDIT_MEMORY_LIMIT sets one
# ... and while a window holding a line longer than BIG_LINE_BYTES is processed (see Store.parse_headroom)
PARSE_MEMORY_LIMIT = "4GB"
BIG_LINE_BYTES = 1 << 20


def arrow_table(x: Any) -> pa.Table:
    """A DuckDB result's ``.arrow()`` read whole: DuckDB 2.x returns a RecordBatchReader (read it before the next
    statement), older versions a Table."""
    import pyarrow as pa

    return x if isinstance(x, pa.Table) else x.read_all()


def default_db_path() -> str:
    """The database path used when ``--db`` is not given: ``$RUNAUDIT_DB`` or ``./runaudit.duckdb``."""
    return os.environ.get("RUNAUDIT_DB") or DEFAULT_DB


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (the only way identifiers enter SQL text)."""
    return '"' + name.replace('"', '""') + '"'


def _short(sql: str) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) < 300 else sql[:297] + "..."


def _open_error(path: str, msg: str) -> StoreError:
    """Why a database cannot be opened, said so that nobody throws away a file holding review verdicts."""
    first = msg.splitlines()[0] if msg else "unknown error"
    low = msg.lower()
    if "read-only file system" in low or "permission denied" in low or "readonly" in low:
        return StoreError(f"cannot open database {path} for writing: {first}",
                          hint="the file or its folder is read-only: pass --db on a writable disk, or fix the "
                               "permissions (reading commands such as report and flags open it read-only)")
    return StoreError(f"cannot open database {path}: {first}",
                      hint="the file is damaged or not a DuckDB database; keep a copy (it holds review verdicts), "
                           "then pass another --db to start a new one")


class ArrowSlot:
    """An Arrow table that can be swapped under a view registered once (:meth:`Store.slot`). DuckDB keeps every
    object registered during a transaction alive until the transaction ends, even once unregistered: a fresh table
    registered for each window of a file would all stay in memory until the file's commit (1M runs: RSS growing
    by ~100 MB a second, to 2.9 GB). The slot is registered once, and each scan reads the table it holds then."""

    def __init__(self, table: pa.Table) -> None:
        self.schema = table.schema
        self.table: pa.Table | None = table

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        if self.table is None:
            raise ValueError("the Arrow slot is empty")
        return self.table.__arrow_c_stream__(requested_schema)


def _prepare_over(con: duckdb.DuckDBPyConnection, name: str, sql: str, _chunk: ArrowSlot) -> None:
    """``PREPARE name AS sql``, where ``sql`` reads the local ``_chunk`` (a replacement scan: see
    :meth:`Store.arrow_over`)."""
    con.execute(f"PREPARE {name} AS {sql}")


def _session(con: duckdb.DuckDBPyConnection) -> None:
    """The settings every connection of a store runs with."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    # On a loaded machine DuckDB's progress bar printed into stdout and corrupted --json output. Inside
    # Jupyter without ipywidgets DuckDB refuses to change the setting at all; printing is what matters.
    for setting in ("enable_progress_bar", "enable_progress_bar_print"):
        with contextlib.suppress(duckdb.Error):
            con.execute(f"SET {setting} = false")


def _check_is_duckdb(fp: Path) -> None:
    """Refuse an existing file that is not a DuckDB database (a log passed as --db) before DuckDB reads it."""
    try:
        if not fp.is_file() or fp.stat().st_size == 0:
            return
        with open(fp, "rb") as f:
            head = f.read(12)
    except OSError:
        return  # DuckDB reports what is wrong with it
    if head[8:12] != b"DUCK":
        log = fp.name.lower().endswith((".jsonl", ".ndjson", ".json", ".gz", ".db"))
        raise StoreError(f"{fp} is not a DuckDB database" + (": it looks like a log file" if log else ""),
                         hint=f"pass logs as paths (runaudit audit {fp}) and --db for the database file"
                         if log else "pass another --db path")


class Store:
    """An open runaudit database.

    Use :meth:`Store.open`; the store is a context manager that closes the connection.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str, read_only: bool) -> None:
        self.con = con
        self.path = path
        self.read_only = read_only
        self._limit_fixed = bool(os.environ.get("RUNAUDIT_MEMORY_LIMIT"))
        self.memory_limit = os.environ.get("RUNAUDIT_MEMORY_LIMIT") or MEMORY_LIMIT
        # settings to restore once the transaction is rolled back (see setting)
        self._after_rollback: list[tuple[str, str]] = []
        self._slots: dict[str, ArrowSlot] = {}
        # statements planned once (arrow_over): by SQL and the schema of the lines they read
        self._plans: dict[tuple[str, pa.Schema], tuple[str, ArrowSlot]] = {}
        self._planned = 0
        # statements arrow_over could not keep a plan of: run over a registered view without trying again
        self._unplannable: set[tuple[str, pa.Schema]] = set()

    @contextlib.contextmanager
    def setting(self, name: str, value: str, restore: str) -> Iterator[None]:
        """DuckDB's ``name`` set to ``value`` for the block and to ``restore`` after it. A statement that failed in
        the block leaves the transaction aborted, where no SET runs: the setting is then restored by
        :meth:`transaction` when it rolls back."""
        self.con.execute(f"SET {name} = ?", [value])
        try:
            yield
        finally:
            try:
                self.con.execute(f"SET {name} = ?", [restore])
            except duckdb.Error:
                self._after_rollback.append((name, restore))

    @contextlib.contextmanager
    def parse_headroom(self, longest: int) -> Iterator[None]:
        """A higher memory limit while a window of lines, the longest ``longest`` bytes, is processed, when that is
        over ``BIG_LINE_BYTES`` and RUNAUDIT_MEMORY_LIMIT does not fix a limit.

        DuckDB counts against its limit the blocks its JSON functions reserve, not the memory they touch: one
        12 MB line holding a base64 image took 450 MB of RSS but failed under a 1 GB limit, and with it the whole
        file. A line is at most ``[ingest] max_line_bytes`` (32 MB), and the worst of those measured parse in
        under 1 GB of RSS with a 3 GB limit (an OTLP export of 5,000 spans, 15 MB, failed as well). The limit is
        set back after the window; what the file's transaction holds beyond it is spilled to disk. Windows of
        ordinary lines keep the lower limit: under the higher one the transaction's data grew past it, and with
        a spill after every window ingest was slower (1M realistic runs: peak RSS 1.22 -> 1.73 GB, 36 -> 42 s).
        """
        if longest <= BIG_LINE_BYTES or self._limit_fixed:
            yield
            return
        with self.setting("memory_limit", PARSE_MEMORY_LIMIT, self.memory_limit):
            yield

    # -- opening ---------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, read_only: bool = False,
             wait: float = 0.0, create: bool = True,
             on_wait: Callable[[str], None] | None = None) -> Store:
        """Open (and migrate) a database file.

        Args:
            path: the DuckDB file; ``:memory:`` for a throwaway store; default :func:`default_db_path`.
            read_only: open without the write lock (report, flags, review list).
            wait: seconds to keep retrying while another process holds the lock.
            create: create the file if it does not exist (write mode only).
            on_wait: called once with a sentence when the database is busy and the call starts waiting.
        """
        p = str(path) if path is not None else default_db_path()
        if p != ":memory:":
            fp = Path(p)
            if fp.is_dir():
                raise StoreError(f"database path {p} is a directory", hint="pass a file path with --db")
            if not fp.exists() and (read_only or not create):
                raise StoreError(f"no runaudit database at {p}",
                                 hint="run `runaudit ingest PATH` or `runaudit audit PATH` first, or pass --db")
            if not fp.exists() and not fp.absolute().parent.is_dir():
                raise StoreError(f"cannot create database {p}: folder {fp.absolute().parent} does not exist",
                                 hint="create the folder first, or pass another --db path")
            _check_is_duckdb(fp)
        deadline = time.monotonic() + max(wait, 0.0)
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(p, read_only=read_only)
                break
            except duckdb.Error as e:
                msg = str(e)
                if "Could not set lock" in msg or "Conflicting lock" in msg:
                    if time.monotonic() < deadline:
                        if on_wait is not None and delay == 0.05:
                            on_wait(f"waiting up to {wait:.0f} s for {p}: in use by another runaudit process")
                        time.sleep(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    holder = re.search(r"PID (\d+)", msg)
                    who = f" (process {holder.group(1)})" if holder else ""
                    raise StoreBusyError(
                        f"database {p} is in use by another runaudit process{who}",
                        hint="wait for the other ingest/audit to finish, or pass --wait SECONDS",
                    ) from e
                raise _open_error(p, msg) from e
        store = cls(con, p, read_only)
        try:
            _session(con)
            # Bounded memory whatever the input size: DuckDB spills to disk beyond this.
            con.execute("SET memory_limit = ?", [store.memory_limit])
            store._check_and_migrate()
        except duckdb.Error as e:
            con.close()
            raise _open_error(p, str(e)) from e
        except BaseException:
            con.close()
            raise
        return store

    def _check_and_migrate(self) -> None:
        tables = {r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
        applied: list[str] = []
        if "_runaudit_migrations" in tables:
            applied = [r[0] for r in self.con.execute(
                "SELECT name FROM _runaudit_migrations ORDER BY seq").fetchall()]
        elif tables:
            raise StoreError(f"{self.path} is a DuckDB file but not a runaudit database",
                             hint="pass another --db path")
        known = [name for name, _ in MIGRATIONS]
        unknown = [a for a in applied if a not in known]
        if unknown or len(applied) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer runaudit (schema migration "
                f"{unknown[-1] if unknown else len(applied)}"
                f" is unknown to this version, which knows {SCHEMA_VERSION})",
                hint="upgrade runaudit (pip install -U runaudit)",
            )
        pending = [(n, fn) for n, fn in MIGRATIONS if n not in applied]
        if not pending:
            return
        if self.read_only:
            raise StoreError(f"{self.path} needs a schema upgrade", hint="run `runaudit audit` once to migrate it")
        try:
            self.con.execute("BEGIN")
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS _runaudit_migrations (seq INTEGER, name VARCHAR PRIMARY KEY, "
                "applied_at TIMESTAMP)")
            for name, fn in pending:
                fn(self.con)
                self.con.execute(
                    "INSERT INTO _runaudit_migrations VALUES ((SELECT count(*) FROM _runaudit_migrations) + 1, ?, "
                    "now()::TIMESTAMP)", [name])
            self.con.execute("COMMIT")
        except duckdb.Error as e:
            self.con.execute("ROLLBACK")
            raise StoreError(f"migrating {self.path} failed: {e}") from e

    # -- queries ---------------------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
        """Run one statement with bound parameters, translating DuckDB errors."""
        try:
            return self.con.execute(sql, params) if params is not None else self.con.execute(sql)
        except duckdb.Error as e:
            raise StoreError(f"query failed: {str(e).splitlines()[0]}\n  in: {_short(sql)}") from e

    def run(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> None:
        """Run a statement and consume its result (DuckDB wants results finished before new work)."""
        self.execute(sql, params).fetchall()

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query and return its rows as tuples."""
        return self.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        """Run a query and return the first column of its first row (or None)."""
        # fetchall, not fetchone: DuckDB refuses new work on a connection with a partly-read result.
        r = self.execute(sql, params).fetchall()
        return r[0][0] if r else None

    @contextlib.contextmanager
    def registered(self, name: str, obj: Any) -> Iterator[None]:
        """``obj`` (an Arrow table) readable as the view ``name`` over a block."""
        self.con.register(name, obj)
        try:
            yield
        finally:
            # after a failed statement the transaction is aborted and unregister would raise over the real error
            with contextlib.suppress(Exception):
                self.con.unregister(name)

    def arrow(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run a query and return its result whole, as an Arrow table."""
        try:
            rel = self.con.sql(sql, params=params) if params is not None else self.con.sql(sql)
            return arrow_table(rel.arrow())
        except duckdb.Error as e:
            raise StoreError(f"query failed: {str(e).splitlines()[0]}\n  in: {_short(sql)}") from e

    def arrow_typed(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
                    ) -> tuple[pa.Table, list[str]]:
        """:meth:`arrow`, with each column's DuckDB type (Arrow has none for some, e.g. HUGEINT comes back as a
        DECIMAL): cast to them, the table reads back as the query's result. Through ``execute``, not a relation:
        ``con.sql`` binds the statement when made and again when run (ingest's ~80k-character parse statement:
        0.51-0.55 s a window against 0.61-0.70 s)."""
        try:
            cur = self.con.execute(sql, params) if params is not None else self.con.execute(sql)
            types = [str(d[1]) for d in cur.description]
            return arrow_table(cur.to_arrow_table()), types
        except duckdb.Error as e:
            raise StoreError(f"query failed: {str(e).splitlines()[0]}\n  in: {_short(sql)}") from e

    def arrow_over(self, table: pa.Table, sql: str) -> tuple[pa.Table, list[str]]:
        """:meth:`arrow_typed` of ``sql``, a statement without parameters that reads ``table`` as ``_chunk``,
        planned once on this connection for each SQL text and schema and then only run.

        DuckDB plans a statement again at every ``EXECUTE`` of a ``PREPARE`` when it reads a view or a table (a
        registered Arrow table is a view): ingest's parse statement spent ~0.19 s of ~0.55 s a window in binding and
        optimising. Here ``_chunk`` is not in the catalog: DuckDB finds it among the locals of the frame that
        prepares (:func:`_prepare_over`) and makes it a scan of an :class:`ArrowSlot`, a table function in the
        plan; each run reads the table put in the slot for it. Should DuckDB plan the statement again all the
        same, it no longer finds ``_chunk``: the statement then runs over a registered view, as before, and so do
        its later runs (one plan each, not a failed one first)."""
        key = (sql, table.schema)
        if key in self._unplannable:
            return self._arrow_registered(table, sql)
        plan = self._plans.get(key)
        if plan is None:
            slot = ArrowSlot(table)
            self._planned += 1
            name = f"_over{self._planned}"
            try:
                _prepare_over(self.con, name, sql, slot)
            except duckdb.Error:
                self._unplannable.add(key)
                return self._arrow_registered(table, sql)
            slot.table = None
            plan = self._plans[key] = (name, slot)
        name, slot = plan
        slot.table = table
        try:
            cur = self.con.execute(f"EXECUTE {name}")
            types = [str(d[1]) for d in cur.description]
            return arrow_table(cur.to_arrow_table()), types
        except duckdb.CatalogException:
            del self._plans[key]
            self._unplannable.add(key)
            with contextlib.suppress(duckdb.Error):
                self.con.execute(f"DEALLOCATE {name}")
            return self._arrow_registered(table, sql)
        except duckdb.Error as e:
            raise StoreError(f"query failed: {str(e).splitlines()[0]}\n  in: {_short(sql)}") from e
        finally:
            slot.table = None

    def drop_plans(self) -> None:
        """Forget the statements :meth:`arrow_over` planned (each holds ~20-27 MB)."""
        for name, _ in self._plans.values():
            with contextlib.suppress(duckdb.Error):
                self.con.execute(f"DEALLOCATE {name}")
        self._plans.clear()
        self._unplannable.clear()

    def _arrow_registered(self, table: pa.Table, sql: str) -> tuple[pa.Table, list[str]]:
        with self.registered("_chunk", table):
            return self.arrow_typed(sql)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Run a query and return a polars DataFrame (through Arrow: no row passes through Python)."""
        import polars as pl

        try:
            # A relation converts to polars via Arrow in one step; a DB-API cursor has no .pl() in DuckDB 2.x and
            # its Arrow output copies every row once more.
            rel = self.con.sql(sql, params=params) if params is not None else self.con.sql(sql)
            if rel is None:  # a statement that returns nothing
                return pl.DataFrame()
            return rel.pl()
        except duckdb.Error as e:
            raise StoreError(f"query failed: {str(e).splitlines()[0]}\n  in: {_short(sql)}") from e
        except (pl.exceptions.PolarsError, ValueError, TypeError):
            # A type polars cannot take from Arrow (e.g. an INTERVAL column): build the frame from Python rows.
            cur = self.execute(sql, params)
            cols = [d[0] for d in cur.description or []]
            return pl.DataFrame(cur.fetchall(), schema=cols, orient="row")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """A transaction that commits on success and rolls back on any error."""
        self.execute("BEGIN TRANSACTION")
        try:
            yield self
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            for name, value in self._after_rollback:
                with contextlib.suppress(duckdb.Error):
                    self.con.execute(f"SET {name} = ?", [value])
            self._after_rollback.clear()
            raise
        else:
            self.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        """Read a value from the meta table."""
        return self.scalar("SELECT value FROM meta WHERE key = ?", [key])

    def set_meta(self, key: str, value: str) -> None:
        """Write a value to the meta table."""
        self.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    @contextlib.contextmanager
    def slot(self, name: str, table: pa.Table) -> Iterator[None]:
        """``table`` readable as the view ``name`` over a block, through an :class:`ArrowSlot` registered once per
        schema: unlike :meth:`registered`, the tables put in the slot one after another in a transaction do not
        all stay in memory until it ends."""
        slot = self._slots.get(name)
        if slot is None or slot.schema != table.schema:
            slot = self._slots[name] = ArrowSlot(table)
            self.con.register(name, slot)
        slot.table = table
        try:
            yield
        finally:
            slot.table = None

    @contextlib.contextmanager
    def side(self) -> Iterator[Store]:
        """A second connection to the same database for the block, with this one's session settings, for work in
        another thread that reads only what it registers (ingest parses the next window in the reader's thread:
        :func:`runaudit.ingest.window.parse_window`). DuckDB runs the two connections' statements at once on its
        one pool of threads; the side connection sees none of this one's uncommitted work or temp tables."""
        try:
            cur = self.con.cursor()
            _session(cur)
        except duckdb.Error as e:
            raise StoreError(f"cannot open a second connection to {self.path}: {str(e).splitlines()[0]}") from e
        side = Store(cur, self.path, self.read_only)
        try:
            yield side
        finally:
            side.close()

    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        with contextlib.suppress(duckdb.Error):
            self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Store", "StoreError", "StoreBusyError", "default_db_path", "quote_ident", "SCHEMA_VERSION"]
