"""Weekly report: files, numbers that agree with audit, inert markup, masked secrets, a real browser render."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from runaudit.audit import summary
from runaudit.config import Config, load_config
from runaudit.report import write_report
from runaudit.report.data import resolve_window
from runaudit.store import Store
from tests.conftest import REPO, SAMPLE_LOGS, flat, write_jsonl

SECRET = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
OPENAI_KEY = "sk-proj-ZYXWVUTSRQPONMLKJIHGFEDCBA987654"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature"


def test_report_files_and_numbers_agree_with_audit(sample_store: Store, tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    cfg = load_config(REPO / "sample_logs" / "runaudit.toml")
    res = write_report(sample_store, cfg, tmp_path / "r", week="2026-W25")
    names = {Path(f).name for f in res.files}
    assert {"report.md", "report.html", "report.json", "success_rate.png", "outcomes.png", "infra_errors.png",
            "tasks.png", "decline_topics.png"} <= names
    for png in (tmp_path / "r").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    win = resolve_window(sample_store, "2026-W25")
    direct = summary(sample_store, win.start, win.end)
    assert data["headline"]["outcomes"] == direct["outcomes"]
    assert data["headline"]["false_success"] == direct["false_success"]
    assert data["headline"]["reported_success_rate"] == direct["reported_success_rate"]
    # and the CLI's audit --json over the same week prints the same numbers
    db = tmp_path / "cli.duckdb"
    invoke(["audit", SAMPLE_LOGS, "--db", db, "--config", REPO / "sample_logs" / "runaudit.toml"])
    out = json.loads(invoke(["audit", "--db", db, "--config", REPO / "sample_logs" / "runaudit.toml", "--json",
                             "--week", "2026-W25"]).stdout)
    for k in ("runs", "outcomes", "false_success", "reported_success_rate", "true_success_rate"):
        assert out[k] == data["headline"][k], k
    md = (tmp_path / "r" / "report.md").read_text()
    for heading in ("1. Headline", "2. Success rate", "3. Outcome mix", "4. Falsely marked success",
                    "5. Decline topics", "6. Handle by hand", "7. Review queue"):
        assert heading in md


def _hostile_store(tmp_path: Path) -> Store:
    from runaudit.classify import classify
    from runaudit.ingest import ingest

    recs = [
        flat(task_id="<script>alert('task')</script>", prompt=f"Use key {SECRET} and <img src=x onerror=alert(1)>",
             text="I'm sorry, but I can't help with that. [click](javascript:alert(1)) <script>alert(2)</script>",
             ts="2026-07-07T02:00:00Z"),
        flat(task_id="t2", prompt=f"Authorization: {BEARER} api_key={OPENAI_KEY}", stop_reason="refusal", text="",
             ts="2026-07-08T02:00:00Z"),
        flat(task_id="t2", prompt="a normal request", ts="2026-07-08T03:00:00Z"),
    ]
    s = Store.open(tmp_path / "h.duckdb")
    ingest(s, [write_jsonl(tmp_path / "h.jsonl", recs)])
    classify(s, Config())
    return s


def test_markup_from_logs_is_inert_and_secrets_are_masked(tmp_path: Path) -> None:
    with _hostile_store(tmp_path) as s:
        write_report(s, Config(), tmp_path / "r")
    html_text = (tmp_path / "r" / "report.html").read_text()
    md = (tmp_path / "r" / "report.md").read_text()
    # no executable markup: no script element, no tag with an event handler, no link or URL attribute at all
    assert "<script" not in html_text.lower()
    assert re.search(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", html_text) is None
    assert re.search(r"\s(href|action|formaction)\s*=", html_text, re.IGNORECASE) is None
    assert "&lt;script&gt;" in html_text and "&lt;img src=x onerror" in html_text
    assert "](javascript:" not in md and "\\]\\(javascript:" in md
    assert "<script" not in md and "<img" not in md
    for out in (html_text, md, (tmp_path / "r" / "report.json").read_text()):
        assert SECRET not in out and OPENAI_KEY not in out and "eyJhbGciOiJIUzI1NiJ9.payload" not in out


def _png_size(b: bytes) -> tuple[int, int]:
    assert b[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", b[16:24])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_html_report_renders_in_a_real_browser(tmp_path: Path) -> None:
    with _hostile_store(tmp_path) as s:
        write_report(s, Config(), tmp_path / "r")
    page = (tmp_path / "r" / "report.html").resolve().as_uri()
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'prof1'}", "--dump-dom", page],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln or "Refused" in ln]
    assert console == [], console
    assert "<script" not in dom.stdout.lower()
    imgs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom.stdout)
    assert len(imgs) == 5
    for b64 in imgs:
        w, h = _png_size(base64.b64decode(b64))
        assert w >= 400 and h >= 200
    shot = tmp_path / "shot.png"
    r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'prof2'}", "--window-size=1200,2400",
                        f"--screenshot={shot}", page], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.exists() and _png_size(shot.read_bytes()) == (1200, 2400)
    assert shot.stat().st_size > 50_000  # a rendered page with charts, not a blank one


def test_bad_week_is_a_usage_error(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "a.duckdb"
    invoke(["audit", SAMPLE_LOGS, "--db", db])
    invoke(["report", "--db", db, "--week", "2026-W99", "--out", tmp_path / "r"], code=2, stderr_has="ISO week")
    invoke(["report", "--db", db, "--week", "soon", "--out", tmp_path / "r"], code=2, stderr_has="--week")
    invoke(["report", "--db", db, "--since", "2026-06-01", "--out", tmp_path / "r"], code=2, stderr_has="together")
    invoke(["report", "--db", db, "--format", "pdf", "--out", tmp_path / "r"], code=2, stderr_has="pdf")
    invoke(["report", "--db", db, "--week", "2026-W24", "--out", tmp_path / "r"], stdout_has="2026-W24")


def test_topics_without_config_use_distinguishing_terms(tmp_path: Path) -> None:
    from runaudit.classify import classify
    from runaudit.ingest import ingest
    from runaudit.report.data import build_report_data

    recs = []
    for i in range(12):  # "explosives" appears in every declined prompt and in no accepted one
        recs.append(flat(run_id=f"d{i}", prompt=f"safety question about explosives, case {i}", stop_reason="refusal",
                         text="", ts=f"2026-07-{6 + i % 5:02d}T02:00:00Z"))
        recs.append(flat(run_id=f"o{i}", prompt=f"safety question about revenue, case {i}",
                         ts=f"2026-07-{6 + i % 5:02d}T03:00:00Z"))
    with Store.open(tmp_path / "t.duckdb") as s:
        ingest(s, [write_jsonl(tmp_path / "t.jsonl", recs)])
        classify(s, Config())
        data = build_report_data(s, Config(), resolve_window(s, "2026-W28"))
    top = data.topics.to_dicts()
    assert top[0]["topic"] == "explosives" and top[0]["decline_rate"] == 1.0
    assert "revenue" not in [t["topic"] for t in top]
    assert "log-odds" in data.topic_method


def test_term_sample_is_the_same_on_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the sample size the topics come from a fixed subset of prompts, so two renders agree."""
    import runaudit.report.data as rdata
    from runaudit.classify import classify
    from runaudit.ingest import ingest

    recs = []
    for i in range(60):
        word = ("explosives", "lockpicking", "poison")[i % 3]
        recs.append(flat(run_id=f"d{i}", prompt=f"question {i} about {word}", stop_reason="refusal", text="",
                         ts=f"2026-07-{6 + i % 5:02d}T02:00:00Z"))
        recs.append(flat(run_id=f"o{i}", prompt=f"question {i} about revenue", ts=f"2026-07-{6 + i % 5:02d}T03:00:00Z"))
    monkeypatch.setattr(rdata, "TERM_SAMPLE", 50)
    with Store.open(tmp_path / "t.duckdb") as s:
        ingest(s, [write_jsonl(tmp_path / "t.jsonl", recs)])
        classify(s, Config())
        first = rdata.build_report_data(s, Config(), resolve_window(s, "2026-W28")).topics
        second = rdata.build_report_data(s, Config(), resolve_window(s, "2026-W28")).topics
    assert first.height > 0 and first.equals(second)
    # 50 of the 120 prompts were read: every count comes from the sample
    assert int(first["runs"].sum()) <= 50


def test_natural_month_does_not_hide_handle_by_hand(sample_store: Store, tmp_path: Path) -> None:
    import datetime as dt

    from runaudit.report.data import build_report_data

    cfg = load_config(REPO / "sample_logs" / "runaudit.toml")
    # June 2026 ends in ISO week 27, which has no runs: the last two weeks *with runs* decide
    win = resolve_window(sample_store, None, dt.date(2026, 6, 1), dt.date(2026, 7, 1))
    data = build_report_data(sample_store, cfg, win)
    assert data.hand.height > 0 and "support-reply" in data.hand["name"].to_list()
