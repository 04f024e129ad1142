"""Work on records made in SQL (assembled streams, unfolded OTLP spans) a batch at a time, beside the window.

DuckDB runs a statement's expressions on 2048 rows at a time, and each JSON function holds what it made or parsed
for the whole chunk: 873 streams of 40 KB assembled in one statement took 1.5 GB, 2048 spans of 2.4 KB parsed from
a table over 1 GB. So such statements run on batches of rows cut by bytes (:func:`batches_sql`,
:func:`run_in_batches`), and their records are parsed from small Arrow record batches (:func:`parse_aside`).
"""

from __future__ import annotations

from typing import Any

from runaudit.ingest.reader import records_table
from runaudit.store import Store


def batches_sql(table: str, source: str) -> str:
    """Create the temp table ``table`` (``key``, ``batch``) from ``source``'s rows (``key``, ``b`` bytes, ``first``
    their order): in order, a row is in batch (bytes before it) // ``$budget``, as the reader cuts a window into
    record batches: about ``$budget`` bytes a batch, a longer row with the rows before it in its span."""
    return (f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT key, "
            f"(sum(b) OVER (ORDER BY first ROWS UNBOUNDED PRECEDING) - b) // $budget AS batch FROM ({source})")


def run_in_batches(store: Store, batches: str, into: str, select_sql: str) -> None:
    """Make the temp table ``into`` from ``select_sql`` run once per batch of ``batches`` (its ``$batch``)."""
    for i, (b,) in enumerate(store.rows(f"SELECT DISTINCT batch FROM {batches} ORDER BY batch")):
        head = f"CREATE OR REPLACE TEMP TABLE {into} AS " if i == 0 else f"INSERT INTO {into} "
        store.run(head + select_sql, {"batch": b})


def parse_aside(store: Store, records_sql: str, into: str, final_sql: str, map_params: list[Any],
                bufs: dict[str, Any], buf_key: str, budget: int) -> None:
    """Parse the records ``records_sql`` makes (``line_no``, ``part``, ``byte_offset``, ``line``, ``orig_len``) with
    the window's parse ``final_sql`` into the temp table ``into``, leaving the window's ``_final`` as it is. They are
    read from Arrow record batches of about ``budget`` bytes over the buffer ``bufs[buf_key]``, reused from window
    to window (see :func:`runaudit.ingest.reader.records_table`)."""
    chunk, bufs[buf_key] = records_table(store.arrow(records_sql), bufs.get(buf_key, bytearray()), budget)
    store.run("ALTER TABLE _final RENAME TO _final_main")
    with store.registered("_chunk", chunk):
        store.run(final_sql, map_params)  # parses _chunk into _final
    store.run(f"ALTER TABLE _final RENAME TO {into}")
    store.run("ALTER TABLE _final_main RENAME TO _final")
