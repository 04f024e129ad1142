"""Logs that are one JSON document rather than JSON lines: ``llm logs --json`` (an indented array), a
pretty-printed response body saved with ``jq .``, a Gemini ``streamGenerateContent`` array as the REST API returns
it, a Claude Code ``--output-format json --verbose`` array printed over several lines.

A file is read as a document when its first line starts an object or array but is not valid JSON on its own, and
the whole file is one valid JSON value. Each element of a top-level array is one record (its "line number" is its
place in the array, from 1); a top-level object is one record. A file that is not valid as a whole is read line by
line as usual (its lines are quarantined with their reasons).
"""

from __future__ import annotations

import json
from typing import Any

from runaudit.ingest.reader import Window, records_window

DOC_LIMIT = 1 << 30  # bytes: a larger single document is refused (split it, or write JSON lines)

SPLIT_SQL = """
SELECT CASE WHEN NOT json_valid($d) THEN NULL
            WHEN json_type($d) = 'ARRAY' THEN list_transform(json_extract($d, '$[*]'), lambda e: e::VARCHAR)
            ELSE [json($d)::VARCHAR] END
"""


def looks_like_document(head: bytes) -> bool:
    """Whether the file's first line opens a JSON value that goes on past that line."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] not in (b"[", b"{") or b"\n" not in text:
        return False
    first = text.split(b"\n", 1)[0].strip()
    try:
        json.loads(first)
    except ValueError:
        return True
    return False


def document_window(con: Any, data: bytes) -> Window | None:
    """The records of a whole-file JSON document as one window, or None if the file is not one valid value."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    elems = con.execute(SPLIT_SQL, {"d": text}).fetchall()[0][0]
    if elems is None:
        return None
    return records_window(list(range(1, len(elems) + 1)), elems, len(data))
