"""Every string from a log is untrusted in every output (issue 14: items 6-9, 12, 14).

Hostile log lines go through the real CLI and the real report (matplotlib, files on disk): no secret, no
escape sequence, no formula and no markup comes out live, and no log content crashes an output.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from runaudit.redact import for_csv, for_terminal, mask_secrets
from tests.conftest import flat, write_jsonl

SECRETS = {
    "aws": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "gcp": ('"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n'
            '-----END PRIVATE KEY-----\\n"'),
    "basic": "Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "dsn": "postgres://admin:Tr0ub4dor3@db.internal:5432/prod",
    "escaped": '{\\"api_key\\":\\"ZXhhbXBsZWtleTEyMzQ1\\"}',
    "anthropic": "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
}
LEAKS = ["wJalrXUtnFEMI", "MIIEvQIBADAN", "dXNlcjpwYXNzd29yZDEyMw", "SflKxwRJSMeKKF2QT4fw", "Tr0ub4dor3",
         "ZXhhbXBsZWtleTEyMzQ1", "AAAAAAAAAAAAAAAAAAAA", "AKIAIOSFODNN7EXAMPLE"]


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_every_kind_of_secret_is_masked(name: str) -> None:
    out = mask_secrets(f"before {SECRETS[name]} after")
    assert not any(leak in out for leak in LEAKS), out
    assert out.startswith("before ")


def test_terminal_and_csv_neutralise_log_strings() -> None:
    assert "\x1b" not in for_terminal("a\x1b]0;owned\x07b\x1b[2Jc\x9b31m")
    assert "\\x1b" in for_terminal("\x1b[2J")
    assert "\u202e" not in for_terminal("abc\u202edef")
    assert for_csv("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert for_csv("=cmd|' /C calc'!A0").startswith("'")
    assert for_csv("@SUM(1)").startswith("'") and for_csv("plain") == "plain" and for_csv(3) == 3


def _hostile_log(tmp_path: Path) -> Path:
    evil_task = "AKIAIOSFODNN7EXAMPLE \x1b]0;owned\x07 $x^$"
    return write_jsonl(tmp_path / "evil.jsonl", [
        flat(run_id="a", task_id=evil_task, text="I'm sorry, but I can't help with that. " + SECRETS["aws"],
             status="=HYPERLINK(\"http://evil.invalid\",\"ok\")"),
        flat(run_id="b", task_id="$x^$", ts="infinity", text="fine answer " + SECRETS["jwt"]),
        flat(run_id="c", task_id="t", ts="9999-12-31T00:00:00Z", text="fine"),
        flat(run_id="d", task_id="t", ts="294247-01-10T04:00:54Z", text="fine"),
        {"id": "msg_x", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
         "stop_reason": "refusal", "stop_details": {
             "type": "refusal", "category": "[x](javascript:alert(1)) <img src=http://evil.invalid/p.png> "
                                           + SECRETS["anthropic"] + " \x1b[2J"}},
    ])


def test_hostile_log_strings_are_inert_in_every_output(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = _hostile_log(tmp_path)
    db = tmp_path / "e.duckdb"
    invoke(["audit", log, "--db", db])
    outputs = {
        "flags": invoke(["flags", "--db", db]).stdout,
        "flags_json": invoke(["flags", "--db", db, "--json"]).stdout,
        "flags_csv": invoke(["flags", "--db", db, "--csv"]).stdout,
        "borderline": invoke(["flags", "--db", db, "--borderline"]).stdout,
        "review_list": invoke(["review", "list", "--db", db]).stdout,
        "review_json": invoke(["review", "list", "--db", db, "--json"]).stdout,
    }
    out = tmp_path / "rep"
    invoke(["report", "--db", db, "--out", out, "--since", "2020-01-01", "--until", "2100-01-01"])
    for f in ("report.md", "report.html", "report.json"):
        outputs[f] = (out / f).read_text(encoding="utf-8")
    for name, text in outputs.items():
        assert "\x1b" not in text and "\x07" not in text, name
        assert not any(leak in text for leak in LEAKS), (name, [x for x in LEAKS if x in text])
    assert "](javascript:" not in outputs["report.md"] and "<img" not in outputs["report.md"]
    rows = list(csv.reader(io.StringIO(outputs["flags_csv"])))
    assert all(not c.startswith(("=", "+", "@")) for r in rows for c in r)
    assert json.loads(outputs["flags_json"])  # still valid JSON
    assert (out / "tasks.png").stat().st_size > 0  # "$x^$" drawn as text, not parsed as math


def test_outputs_never_follow_a_planted_symlink(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = write_jsonl(tmp_path / "a.jsonl", [flat(run_id="a", text="I'm sorry, but I can't help with that.")])
    db = tmp_path / "s.duckdb"
    invoke(["audit", log, "--db", db])
    out = tmp_path / "rep"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "report.md").symlink_to(victim)
    res = invoke(["report", "--db", db, "--out", out], code=6, stderr_has="symbolic link")
    assert "Traceback" not in res.stderr
    assert victim.read_text() == "precious"
    q = tmp_path / "q"
    invoke(["review", "export", "--db", db, "--dir", q])
    assert [p.name for p in q.iterdir() if p.name.startswith(".tmp-")] == []
    invoke(["report", "--db", db, "--out", tmp_path / "rep2"])
    assert [p.name for p in (tmp_path / "rep2").iterdir() if p.name.startswith(".tmp-")] == []


def test_dates_outside_any_log_are_usage_errors(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = write_jsonl(tmp_path / "a.jsonl", [flat(run_id="a")])
    db = tmp_path / "s.duckdb"
    invoke(["audit", log, "--db", db])
    invoke(["report", "--db", db, "--out", tmp_path / "r", "--since", "0001-01-01", "--until", "2026-01-01"],
           code=2, stderr_has="between")
    invoke(["report", "--db", db, "--out", tmp_path / "r", "--week", "9999-W52"], code=2, stderr_has="outside")
