"""Lossless, incremental ingest of JSONL logs into the ``runs`` table.

:mod:`runaudit.ingest.files` reads files (and llm's ``logs.db``) into windows and keeps each file's state;
:mod:`runaudit.ingest.window` turns one window of lines into runs, the step the inline check and Spark share;
``reader``, ``normalize``, ``streams``, ``otel``, ``batches``, ``document``, ``llm_db`` and ``claude_code`` own
the pieces those two call.
"""

from runaudit.ingest.files import (
    LOG_NAMES,
    LOG_SUFFIXES,
    FileResult,
    IngestResult,
    ProgressFn,
    discover,
    ingest,
    log_files,
)

__all__ = ["ingest", "discover", "log_files", "IngestResult", "FileResult", "ProgressFn", "LOG_NAMES", "LOG_SUFFIXES"]
