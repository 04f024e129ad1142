"""The Python API returns polars frames and uses the same numbers as the CLI."""

from __future__ import annotations

from pathlib import Path

import polars as pl

import runaudit
from runaudit.audit import summary
from tests.conftest import REPO, SAMPLE_LOGS


def test_open_ingest_classify_and_frames(tmp_path: Path) -> None:
    with runaudit.open(tmp_path / "a.duckdb", config=REPO / "sample_logs" / "runaudit.toml") as a:
        a.ingest(SAMPLE_LOGS)
        a.classify()
        counts = a.outcome_counts()
        assert isinstance(counts, pl.DataFrame)
        assert dict(zip(counts["outcome"], counts["runs"], strict=True)) == summary(a.store)["outcomes"]
        assert a.runs(outcome="declined").height == summary(a.store)["outcomes"]["declined"]
        assert a.false_successes().height == summary(a.store)["false_success"]
        w = a.weekly()
        assert w["runs"].sum() == summary(a.store)["runs"] and {"reported_rate", "true_rate"} <= set(w.columns)
        assert a.review_queue().height > 0
        assert a.decline_topics().height > 0
        assert a.sql("SELECT count(*) AS n FROM audit_runs WHERE task_id GLOB ?", ["support-*"])["n"][0] > 0
        assert a.quarantine().height >= 2
