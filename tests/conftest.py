"""Shared fixtures: a real DuckDB store, log-file writers, and a CLI invoker that checks streams separately."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runaudit.config import Config
from runaudit.store import Store

REPO = Path(__file__).resolve().parent.parent
SAMPLE_LOGS = REPO / "sample_logs"

# A child's peak RSS in KB, in the child: on Linux VmHWM, the peak of the process's own memory (ru_maxrss also keeps
# the peak of the forked copy of the parent, the test run itself, from before the exec)
PEAK_RSS_KB = ("(int(next(x for x in open('/proc/self/status') if x.startswith('VmHWM')).split()[1]) "
               "if sys.platform == 'linux' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open(":memory:")
    yield s
    s.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.duckdb"


def write_jsonl(path: Path, records: list[Any], *, raw_lines: list[str] | None = None) -> Path:
    """Write records (dicts are JSON-encoded, strings written verbatim) as JSONL."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    if raw_lines:
        lines += raw_lines
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return age(path)


def age(path: Path, seconds: float = 3600) -> Path:
    """Make a log look finished (not written for an hour), as most logs are when audited; tests of files still
    being written leave their mtime fresh."""
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


@pytest.fixture
def sample_store(tmp_path: Path) -> Iterator[Store]:
    from runaudit.classify import classify
    from runaudit.config import load_config
    from runaudit.ingest import ingest

    s = Store.open(tmp_path / "sample.duckdb")
    cfg = load_config(REPO / "sample_logs" / "runaudit.toml")
    ingest(s, [SAMPLE_LOGS], cfg)
    classify(s, cfg)
    yield s
    s.close()


def flat(**kw: Any) -> dict[str, Any]:
    """A flat pipeline record with sensible defaults."""
    rec: dict[str, Any] = {"task_id": "t", "ts": "2026-07-06T02:00:00Z", "prompt": "Summarise the report.",
                           "http_status": 200, "stop_reason": "end_turn",
                           "text": "## Summary\nThe report covers three incidents, all resolved.", "status": "success"}
    rec.update(kw)
    return rec


class Invoker:
    def __init__(self) -> None:
        from runaudit.cli import app, commands, judge_cmd, report_cmd, review_cmd, spark_cmd  # noqa: F401

        self.app = app
        self.runner = CliRunner()

    def __call__(self, args: list[str], code: int = 0, stdout_has: str | None = None,
                 stderr_has: str | None = None) -> Any:
        res = self.runner.invoke(self.app, [str(a) for a in args], catch_exceptions=False)
        assert res.exit_code == code, f"exit {res.exit_code} != {code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
        if stdout_has is not None:
            assert stdout_has in res.stdout, res.stdout
        if stderr_has is not None:
            assert stderr_has in res.stderr, res.stderr
        assert "Traceback" not in res.stdout + res.stderr
        return res


@pytest.fixture
def invoke() -> Invoker:
    return Invoker()


@pytest.fixture
def cfg() -> Config:
    return Config()
