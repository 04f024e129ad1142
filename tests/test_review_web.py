"""The local review page: a real database, a real server, and headless Chromium driving it with the keyboard."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runaudit.classify import classify
from runaudit.config import load_config
from runaudit.ingest import ingest
from runaudit.store import Store
from tests.conftest import SAMPLE_LOGS, age, flat, write_jsonl

flask = pytest.importorskip("flask")

HOSTILE_PROMPT = 'Write <script>window.__pwned=1;alert(1)</script> and "><img src=x onerror="window.__pwned=2">'
HOSTILE_REPLY = "I can't help with that. </pre><script>window.__pwned=3</script><b>bold</b> sk-ant-api03-" + "A" * 40


@pytest.fixture
def db(tmp_path: Path) -> str:
    logs = tmp_path / "logs"
    shutil.copytree(SAMPLE_LOGS, logs)
    age(write_jsonl(logs / "hostile.jsonl", [flat(task_id="<b>evil-task</b>", prompt=HOSTILE_PROMPT,
                                                  text=HOSTILE_REPLY, run_id="hostile-1")]))
    path = str(tmp_path / "r.duckdb")
    cfg = load_config(logs / "runaudit.toml")
    with Store.open(path) as s:
        ingest(s, [logs], cfg)
        classify(s, cfg)
    return path


def _hostile_key(db: str) -> str:
    with Store.open(db, read_only=True) as s:
        return str(s.scalar("SELECT idem_key FROM audit_runs WHERE run_id = 'hostile-1'"))


@pytest.fixture
def client(db: str) -> Any:
    from runaudit.review_web import create_app

    app = create_app(db, wait=0.2, token="test-token")
    return app.test_client()


def test_queue_and_item_show_everything_escaped(client: Any, db: str) -> None:
    q = client.get("/", base_url="http://127.0.0.1:8765")
    assert q.status_code == 200
    html = q.get_data(as_text=True)
    assert "default-src 'none'" in q.headers["Content-Security-Policy"]
    assert "&lt;b&gt;evil-task&lt;/b&gt;" in html and "<b>evil-task</b>" not in html
    key = _hostile_key(db)
    it = client.get(f"/item/{key}", base_url="http://127.0.0.1:8765").get_data(as_text=True)
    assert "&lt;script&gt;window.__pwned=1" in it and "<script>window.__pwned" not in it
    assert "onerror=&#34;" in it or "onerror=&quot;" in it
    assert "sk-ant-api03-" + "A" * 40 not in it  # secrets masked as in every other output
    assert "<b>bold</b>" not in it
    assert 'src="http' not in it and "href=\"http" not in it  # no external resources


def test_writes_need_the_token_the_origin_and_the_host(client: Any, db: str) -> None:
    key = _hostile_key(db)
    base = "http://127.0.0.1:8765"
    good = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
    form = {"verdict": "false-positive", "token": "test-token"}
    assert client.post(f"/item/{key}/verdict", data={**form, "token": "wrong"}, headers=good,
                       base_url=base).status_code == 403
    assert client.post(f"/item/{key}/verdict", data=form, headers={"Origin": "http://evil.example"},
                       base_url=base).status_code == 403
    assert client.post(f"/item/{key}/verdict", data=form, headers={**good, "Sec-Fetch-Site": "cross-site"},
                       base_url=base).status_code == 403
    assert client.post(f"/item/{key}/verdict", data=form, base_url=base).status_code == 403  # no origin at all
    assert client.get("/", base_url="http://rebound.example:8765").status_code == 400  # DNS rebinding
    assert client.get("/item/..%2F..%2Fetc%2Fpasswd", base_url=base).status_code == 404
    assert client.get("/item/0123456789abcdef", base_url=base).status_code == 404
    with Store.open(db, read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM reviews") == 0
    r = client.post(f"/item/{key}/verdict", data={**form, "note": "a test prompt"}, headers=good, base_url=base)
    assert r.status_code == 303
    with Store.open(db, read_only=True) as s:
        assert s.rows("SELECT verdict, note FROM reviews WHERE idem_key = ?", [key]) == [("false-positive",
                                                                                           "a test prompt")]


def test_a_locked_database_is_said_and_retried(client: Any, db: str) -> None:
    with Store.open(db):  # another process's ingest holds the write lock (same effect within one process)
        pass
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(30)", db], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        r = client.get("/", base_url="http://127.0.0.1:8765")
        assert r.status_code == 503 and r.headers["Retry-After"] == "3"
        assert "in use by another runaudit process" in r.get_data(as_text=True)
    finally:
        holder.kill()
        holder.wait()
    assert client.get("/", base_url="http://127.0.0.1:8765").status_code == 200


# -- in a real browser ------------------------------------------------------------------------------------------

@pytest.fixture
def server(db: str) -> Iterator[str]:
    from werkzeug.serving import make_server

    from runaudit.review_web import create_app

    srv = make_server("127.0.0.1", 0, create_app(db, wait=2.0), threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.fixture
def browser() -> Iterator[Any]:
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"),
                              args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                    "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.mark.slow
def test_review_in_the_browser_with_the_keyboard(server: str, browser: Any, db: str, invoke: Any) -> None:
    before = json.loads(invoke(["audit", "--db", db, "--json"]).stdout)
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server + "/")
    assert "evil-task" in page.inner_text("main")
    key = _hostile_key(db)
    page.goto(f"{server}/item/{key}")
    assert HOSTILE_PROMPT in page.inner_text("#prompt")  # shown whole, as text
    assert page.evaluate("window.__pwned") is None and not dialogs
    assert page.locator("main img").count() == 0 and page.locator("main b").count() == 0
    page.keyboard.press("n")
    page.keyboard.type("the prompt is a test of the filter")
    page.keyboard.press("Escape")
    with page.expect_navigation():
        page.keyboard.press("f")
    assert "Verdict saved" in page.inner_text("main") or "No open item left" in page.inner_text("main")
    after = json.loads(invoke(["audit", "--db", db, "--json"]).stdout)
    assert after["overridden_by_review"] == before["overridden_by_review"] + 1
    assert after["outcomes"]["declined"] == before["outcomes"]["declined"] - 1
    with Store.open(db, read_only=True) as s:
        assert s.rows("SELECT verdict, note, reviewer FROM reviews WHERE idem_key = ?", [key]) == [
            ("false-positive", "the prompt is a test of the filter", "review page")]
    # the queue with the keyboard: j moves, Enter opens
    page.goto(server + "/")
    first = page.locator("tr.item").nth(1).get_attribute("data-href")
    page.keyboard.press("j")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(first)


@pytest.mark.slow
def test_a_request_from_another_origin_is_refused(server: str, browser: Any, db: str, tmp_path: Path) -> None:
    """A page on another origin (another local port) that posts a verdict form to the review page gets 403."""
    key = _hostile_key(db)
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "index.html").write_text(
        f'<form id="f" method="post" action="{server}/item/{key}/verdict">'
        '<input name="verdict" value="false-positive"><input name="token" value="guessed"></form>'
        '<script>document.getElementById("f").submit()</script>', encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(evil), **kw)

        def log_message(self, *a: Any) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        page = browser.new_page()
        with page.expect_response(lambda r: "/verdict" in r.url) as resp:
            page.goto(f"http://127.0.0.1:{other.server_port}/index.html")
        assert resp.value.status == 403
    finally:
        other.shutdown()
    with Store.open(db, read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM reviews") == 0
