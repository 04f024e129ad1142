"""The store: schema pinned, migrations recorded, corrupt/newer files refused clearly."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from runaudit.errors import StoreError
from runaudit.store import SCHEMA_VERSION, Store

EXPECTED_RUNS = [
    "rid", "run_id", "record_hash", "record_bytes", "shape", "provider", "task_id", "ts", "ts_source", "model",
    "prompt", "response_text", "http_status", "stop_reason", "stop_reason_raw", "error_type", "error_message",
    "refusal_text", "refusal_category", "block_reason", "reported_status", "reported_source", "input_tokens",
    "output_tokens", "latency_ms", "tool_calls", "batch_result", "custom_id", "topic", "source_file",
    "source_line", "source_offset", "ingest_id", "notes", "raw", "idem_key", "text_chars", "text_blank",
    "tool_payload", "record_hash2", "record_occ", "session_id", "cost_usd", "turns",
]


def test_runs_schema_is_pinned(store: Store) -> None:
    cols = [r[0] for r in store.rows("SELECT column_name FROM information_schema.columns "
                                     "WHERE table_name = 'runs' ORDER BY ordinal_position")]
    assert cols == EXPECTED_RUNS


def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    p = tmp_path / "a.duckdb"
    Store.open(p).close()
    with Store.open(p) as s:
        assert s.scalar("SELECT count(*) FROM _runaudit_migrations") == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "a.duckdb"
    Store.open(p).close()
    con = duckdb.connect(str(p))
    con.execute("INSERT INTO _runaudit_migrations VALUES (99, 'm099_future', now()::TIMESTAMP)")
    con.close()
    with pytest.raises(StoreError, match="newer runaudit"):
        Store.open(p)


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.duckdb"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=str(p)):
        Store.open(p)


def test_foreign_duckdb_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "other.duckdb"
    con = duckdb.connect(str(p))
    con.execute("CREATE TABLE x (a INT)")
    con.close()
    with pytest.raises(StoreError, match="not a runaudit database"):
        Store.open(p)


def test_read_only_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no runaudit database"):
        Store.open(tmp_path / "missing.duckdb", read_only=True)



def test_a_setting_changed_for_a_block_is_restored_even_after_a_failed_statement(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Store.setting restores DuckDB's setting after the block; when a statement in it failed, the aborted
    transaction refuses every SET, so the setting is restored when the transaction rolls back."""
    monkeypatch.delenv("RUNAUDIT_MEMORY_LIMIT", raising=False)
    with Store.open(":memory:") as s:
        before = s.scalar("SELECT current_setting('threads')")
        with s.setting("threads", "1", str(before)):
            assert s.scalar("SELECT current_setting('threads')") == 1
        assert s.scalar("SELECT current_setting('threads')") == before
        with pytest.raises(StoreError), s.transaction(), s.setting("memory_limit", "3GB", s.memory_limit):
            s.run("SELECT 'x'::INTEGER")
        assert s.scalar("SELECT current_setting('memory_limit')") == "953.6 MiB"  # 1GB, as DuckDB prints it
        # the headroom for a long line, only for a long line
        with s.parse_headroom(2 << 20):
            assert s.scalar("SELECT current_setting('memory_limit')") == "3.7 GiB"  # 4GB
        with s.parse_headroom(100):
            assert s.scalar("SELECT current_setting('memory_limit')") == "953.6 MiB"
