"""The review queue: declined runs handed to a person, folded by idempotency key, with stored verdicts.

The key of a run is the first 16 hex characters of ``sha256(f"{task_id}\\n{prompt}")`` where ``prompt`` is the
run's prompt text as stored (see docs/schema.md for how it is derived from a provider request; a run with no
prompt uses the empty string). Every run with the same key is one queue item. A verdict (``confirmed`` or
``false-positive``) is stored in the ``reviews`` table by key, so it survives re-ingest and reclassification
and applies to future runs with the same key. ``false-positive`` moves those runs out of ``declined`` in the
audit numbers and reports (``audit_runs.overridden``), keeping the rule's evidence.

runaudit never rewords or resends a declined request: this module only reads runs and writes verdicts and
files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runaudit.audit import require_classified
from runaudit.errors import ReviewStateError, UsageError, writing_to
from runaudit.outputs import write_atomic
from runaudit.redact import mask_secrets
from runaudit.store import Store

if TYPE_CHECKING:
    import polars as pl

VERDICTS = ("confirmed", "false-positive")
STATUSES = ("open", "confirmed", "false-positive", "all")
KEY_RE = re.compile(r"^[0-9a-f]{16}$")

QUEUE_SQL = """
WITH items AS (
    SELECT idem_key, any_value(task_id) AS task_id, count(*) AS occurrences,
           min(ts) AS first_seen, max(ts) AS last_seen,
           list(DISTINCT signal ORDER BY signal) AS signals,
           list(coalesce(run_id, 'rid:' || rid::VARCHAR) ORDER BY ts, rid) AS run_ids,
           list({'run_id': run_id, 'ts': ts, 'source': source_file || ':' || source_line::VARCHAR,
                 'rule_code': rule_code} ORDER BY ts, rid) AS runs,
           -- the item shows its newest run that has something to read (a reply, a refusal, an error, a tool call)
           arg_max(rid, [CASE WHEN coalesce(trim(response_text), '') <> '' OR refusal_text IS NOT NULL
                                   OR error_message IS NOT NULL OR tool_payload IS NOT NULL THEN 1 ELSE 0 END,
                         epoch_us(ts), rid]) AS latest_rid,
           max(refusal_score) AS max_refusal_score
    FROM audit_runs
    WHERE rule_outcome IN (SELECT unnest($outcomes::VARCHAR[])) AND idem_key IS NOT NULL
    GROUP BY idem_key
)
SELECT i.idem_key AS key, i.task_id, a.rule_outcome AS outcome, a.signal, a.sub_reason, a.rule_code,
       i.signals, i.occurrences, i.first_seen, i.last_seen, i.run_ids, i.runs, i.max_refusal_score,
       a.prompt, a.response_text, a.refusal_text, a.error_type, a.error_message, a.tool_payload,
       a.stop_reason, a.stop_reason_raw, a.refusal_category, a.refusal_score, a.refusal_kind,
       a.source_file || ':' || a.source_line::VARCHAR AS source,
       coalesce(v.verdict, 'open') AS status, v.note, v.reviewer, v.decided_at
FROM items i
JOIN audit_runs a ON a.rid = i.latest_rid
LEFT JOIN reviews v ON v.idem_key = i.idem_key
WHERE $status = 'all' OR coalesce(v.verdict, 'open') = $status
ORDER BY i.last_seen DESC, i.idem_key
"""


def _outcomes(include_degraded: bool) -> list[str]:
    return ["declined", "degraded"] if include_degraded else ["declined"]


def review_queue(store: Store, status: str = "open", include_degraded: bool = False) -> pl.DataFrame:
    """Queue items (one per idempotency key) with their status, newest first."""
    if status not in STATUSES:
        raise UsageError(f"--status must be one of {', '.join(STATUSES)}, not {status!r}")
    require_classified(store)
    return store.query(QUEUE_SQL, {"outcomes": _outcomes(include_degraded), "status": status})


STATUS_COUNTS_SQL = """
SELECT coalesce(v.verdict, 'open') AS status, count(*) AS items
FROM (SELECT DISTINCT idem_key FROM audit_runs
      WHERE rule_outcome IN (SELECT unnest($outcomes::VARCHAR[])) AND idem_key IS NOT NULL) i
LEFT JOIN reviews v ON v.idem_key = i.idem_key
GROUP BY ALL
"""


def status_counts(store: Store) -> dict[str, int]:
    """How many declined queue items are open, confirmed and false-positive.

    The items are those of ``review_queue(store, "all")`` (one per key), counted without building them.
    """
    require_classified(store)
    counts = {"open": 0, "confirmed": 0, "false-positive": 0}
    for status, n in store.rows(STATUS_COUNTS_SQL, {"outcomes": _outcomes(False)}):
        counts[status] = counts.get(status, 0) + int(n)
    return counts


def _resolve_key(store: Store, key: str) -> str:
    k = key.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,16}", k):
        raise UsageError(f"{key!r} is not a review key (16 hex characters, or a unique prefix of 4 or more)")
    rows = store.rows("SELECT DISTINCT idem_key FROM audit_runs WHERE idem_key LIKE ? || '%' "
                      "AND rule_outcome IN ('declined', 'degraded')", [k])
    if not rows:
        raise ReviewStateError(f"no queued run has key {k}", hint="see `runaudit review list --status all`")
    if len(rows) > 1:
        raise ReviewStateError(f"key prefix {k} matches {len(rows)} items; give more characters")
    return str(rows[0][0])


def resolve(store: Store, key: str, verdict: str, note: str | None = None, reviewer: str | None = None) -> str:
    """Store a person's verdict for ``key`` (``confirmed``, ``false-positive``, or ``open`` to clear it)."""
    if verdict not in (*VERDICTS, "open"):
        raise UsageError(f"verdict must be confirmed, false-positive or open, not {verdict!r}")
    require_classified(store)
    full = _resolve_key(store, key)
    with store.transaction():
        if verdict == "open":
            store.run("DELETE FROM reviews WHERE idem_key = ?", [full])
        else:
            store.run("INSERT OR REPLACE INTO reviews VALUES (?, ?, ?, ?, now()::TIMESTAMP)",
                      [full, verdict, note, reviewer or os.environ.get("USER")])
    return full


@dataclass
class ExportResult:
    """What ``review export`` wrote."""

    directory: str
    items: int
    written: int
    updated: int
    unchanged: int
    stale: list[str]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _payload(text: str | None) -> Any:
    """The tool payload as JSON (secrets masked in its text first); the masked text if it does not parse."""
    if text is None:
        return None
    masked = mask_secrets(text)
    try:
        return json.loads(masked)
    except ValueError:
        return masked


def _item_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": row["key"],
        "task_id": mask_secrets(row["task_id"]),
        "outcome": row["outcome"],
        "signal": row["signal"],
        "signals": row["signals"],
        "sub_reason": row["sub_reason"],
        "rule_code": row["rule_code"],
        "refusal_category": row["refusal_category"],
        "max_refusal_score": row["max_refusal_score"],
        "prompt": mask_secrets(row["prompt"]),
        "response_text": mask_secrets(row["response_text"]),
        "refusal_text": mask_secrets(row["refusal_text"]),
        "error": None if row["error_type"] is None and row["error_message"] is None else {
            "type": mask_secrets(row["error_type"]), "message": mask_secrets(row["error_message"])},
        "tool_payload": _payload(row["tool_payload"]),
        "shown_run": mask_secrets(row["source"]),
        "stop_reason": row["stop_reason_raw"] if row["stop_reason_raw"] is not None else row["stop_reason"],
        "first_seen": row["first_seen"].isoformat() if row["first_seen"] else None,
        "last_seen": row["last_seen"].isoformat() if row["last_seen"] else None,
        "occurrences": row["occurrences"],
        "run_ids": [mask_secrets(r) for r in row["run_ids"]],
        "runs": [{"run_id": mask_secrets(r["run_id"]), "ts": r["ts"].isoformat() if r["ts"] else None,
                  "source": mask_secrets(r["source"]), "rule_code": r["rule_code"]} for r in row["runs"]],
        "verdict": None if row["status"] == "open" else {
            "status": row["status"], "note": mask_secrets(row["note"]), "reviewer": row["reviewer"],
            "decided_at": row["decided_at"].isoformat() if row["decided_at"] else None},
        "how_to_resolve": f"runaudit review resolve {row['key']} --verdict confirmed|false-positive",
    }


def _safe_target(directory: Path, key: str) -> Path:
    if not KEY_RE.match(key):  # keys are sha256 hex from SQL; anything else is refused
        raise ReviewStateError(f"refusing to write a review file for malformed key {key!r}")
    target = (directory / f"{key}.json").resolve()
    if target.parent != directory.resolve():
        raise ReviewStateError(f"refusing to write outside {directory}")
    return target


def export_queue(store: Store, directory: str | Path = "review_queue", include_degraded: bool = False,
                 prune: bool = False) -> ExportResult:
    """Write one ``<key>.json`` per queue item into ``directory``; re-running updates files in place.

    File names are the key only (16 hex characters), whatever the task names contain, so nothing is ever
    written outside ``directory``. Files are replaced atomically. With ``prune``, ``<key>.json`` files whose key
    is no longer queued are removed (other files are never touched).
    """
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise UsageError(f"{d} exists and is not a directory")
    df = review_queue(store, "all", include_degraded)
    with writing_to(d):
        return _write_items(d, df, prune)


def _write_items(d: Path, df: pl.DataFrame, prune: bool) -> ExportResult:
    d.mkdir(parents=True, exist_ok=True)
    written = updated = unchanged = 0
    keys = set()
    for row in df.iter_rows(named=True):
        target = _safe_target(d, row["key"])
        keys.add(row["key"])
        data = json.dumps(_item_json(row), indent=2, ensure_ascii=False, default=str) + "\n"
        if target.exists():
            if target.read_text(encoding="utf-8") == data:
                unchanged += 1
                continue
            updated += 1
        else:
            written += 1
        write_atomic(target, data)
    stale = sorted(p.name for p in d.iterdir()
                   if p.is_file() and KEY_RE.match(p.stem) and p.suffix == ".json" and p.stem not in keys)
    if prune:
        for name in stale:
            (d / name).unlink()
    return ExportResult(str(d), df.height, written, updated, unchanged, stale)
