"""Mask secrets seen in logs (API keys, bearer tokens) before anything leaves runaudit.

Used for report pages, review files and the judge's requests. The first characters of a key are kept so a
person can tell which key leaked; the rest is replaced.
"""

from __future__ import annotations

import re

_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"),                 # Anthropic
    re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"),  # OpenAI
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}"),       # Authorization: Bearer …
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),                          # AWS access key id
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),                     # Google API key
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),                  # GitHub tokens
    re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),              # Slack tokens
    re.compile(r"(?i)\b(?:x-api-key|api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|password)"
               r"(\"?\s*[:=]\s*\"?)([^\s\"',;]{8,})"),
)
MASK = "[MASKED]"


def _mask(m: re.Match[str]) -> str:
    s = m.group(0)
    if m.re is _PATTERNS[-1]:
        return s[: m.start(2) - m.start(0)] + MASK
    keep = 7 if s.startswith("sk-ant-") else (7 if s.lower().startswith("bearer") else 4)
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
