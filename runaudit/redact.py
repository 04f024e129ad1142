"""One place every string from a log passes through before it leaves runaudit.

* :func:`mask_secrets`: API keys, tokens, passwords, private keys and URL credentials are masked (the first
  characters of a key are kept so a person can tell which key leaked). Used by every output: terminal, JSON,
  CSV, Markdown/HTML reports, chart labels, review files and the judge's requests.
* :func:`for_terminal`: masked, and control characters (escape sequences that set window titles, clear the
  screen or hide hyperlinks; C1 controls; bidirectional overrides) shown as visible ``\\xNN`` text.
* :func:`for_csv`: masked, and a cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab,
  CR) is prefixed with ``'``.
* :func:`mask_obj`: :func:`mask_secrets` over every string of a JSON-ready value.
"""

from __future__ import annotations

import re
from typing import Any

_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),  # PEM / GCP
    re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"),                 # Anthropic
    re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"),  # OpenAI
    re.compile(r"(?i)\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"),   # Authorization: Bearer/Basic …
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # a JWT
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),                 # AWS access key id
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),                     # Google API key
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),                  # GitHub tokens
    re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),              # Slack tokens
    re.compile(r"(?i)\b[a-z][a-z0-9+.\-]{1,20}://[^\s/:@\"'<>]{1,256}:([^\s@/\"'<>]{1,256})@"),  # user:pw@host
    # key = value, key: value, "key": "value", and the same JSON-escaped (\"key\":\"value\")
    re.compile(r"(?i)(?:x-api-key|api[_-]?key|secret[_-]?(?:access[_-]?)?key|access[_-]?token|auth[_-]?token|"
               r"client[_-]?secret|private[_-]?key(?:[_-]?id)?|password|passwd|pwd)"
               r"((?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?)([^\s\"'\\,;]{8,})"),
)
MASK = "[MASKED]"
_URL_CRED = _PATTERNS[-2]
_KEY_VALUE = _PATTERNS[-1]


def _mask(m: re.Match[str]) -> str:
    s = m.group(0)
    if m.re is _KEY_VALUE:
        return s[: m.start(2) - m.start(0)] + MASK
    if m.re is _URL_CRED:
        return s[: m.start(1) - m.start(0)] + MASK + "@"
    if s.startswith("-----BEGIN"):
        return "-----BEGIN PRIVATE KEY-----" + MASK
    keep = 7 if s.startswith("sk-ant-") or s.lower().startswith("bearer") else 6 if s.lower().startswith("basic") \
        else 4
    return s[:keep] + MASK


def mask_secrets(text: str | None) -> str | None:
    """Replace API keys and tokens in ``text`` with a masked form (None stays None)."""
    if not text:
        return text
    for pat in _PATTERNS:
        text = pat.sub(_mask, text)
    return text


def contains_secret(text: str | None) -> bool:
    """True when ``text`` holds something that looks like a key or token."""
    return bool(text) and any(p.search(text) for p in _PATTERNS)  # type: ignore[arg-type]


# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides/isolates
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(m: re.Match[str]) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def for_terminal(value: Any, one_line: bool = True) -> str:
    """``value`` as inert text for a terminal: secrets masked, control characters shown as ``\\xNN``."""
    s = mask_secrets(str(value)) or ""
    s = _CONTROL.sub(_visible, s)
    return " ".join(s.split()) if one_line else s


def inert(value: Any) -> str:
    """``value`` masked, with control characters shown as ``\\xNN`` (newlines and tabs kept)."""
    return _CONTROL.sub(_visible, mask_secrets(str(value)) or "")


def label(value: Any, limit: int = 28) -> str:
    """A chart label from a log: inert, cut to ``limit``, and no ``$`` (matplotlib reads $…$ as math)."""
    s = " ".join(inert(value).split())[:limit]
    return s.replace("$", "\\$")


def for_csv(value: Any) -> Any:
    """A CSV cell: secrets masked; text a spreadsheet would evaluate as a formula is prefixed with ``'``."""
    if not isinstance(value, str):
        return value
    s = mask_secrets(value) or ""
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


def mask_obj(obj: Any) -> Any:
    """:func:`mask_secrets` applied to every string inside a JSON-ready value (dicts, lists, tuples)."""
    if isinstance(obj, str):
        return mask_secrets(obj)
    if isinstance(obj, dict):
        return {k: mask_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [mask_obj(v) for v in obj]
    return obj
