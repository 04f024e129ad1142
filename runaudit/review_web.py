"""The review queue as a local web page: ``runaudit review serve``.

A small Flask app over the same library functions as the CLI (:func:`runaudit.review.review_queue`,
:func:`runaudit.review.resolve`), bound to 127.0.0.1 only. Safe by construction:

* every string from a log is escaped (Jinja2 autoescape) and secrets are masked as in every other output;
* no external resources: a Content-Security-Policy allows only this page's own inline script and style (by nonce);
* writes need the per-session token embedded in the page, a same-origin ``Origin``/``Referer`` and ``Sec-Fetch-Site``,
  and a ``Host`` of this server (no DNS rebinding);
* no request input reaches the file system: keys are 16 hex characters, checked, and only used as SQL parameters;
* the database is opened per request and closed at once, so an ingest can run while the page is open; a request
  that meets a running ingest waits up to ``wait`` seconds, then says so and retries by itself.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from pathlib import Path
from typing import Any

from runaudit.errors import StoreBusyError
from runaudit.redact import mask_secrets

KEY = re.compile(r"^[0-9a-f]{16}$")
WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
STATUSES = ("open", "confirmed", "false-positive", "all")




_QUEUE_JS = """
const rows = Array.from(document.querySelectorAll('tr.item')); let i = 0;
function sel(n){ if(!rows.length) return; rows[i].classList.remove('sel'); i = Math.max(0, Math.min(rows.length-1, n));
  rows[i].classList.add('sel'); rows[i].scrollIntoView({block:'nearest'}); }
sel(0);
document.addEventListener('keydown', e => { if (e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT') return;
  if (e.key === 'j') sel(i+1); else if (e.key === 'k') sel(i-1);
  else if (e.key === 'Enter' && rows.length) location.href = rows[i].dataset.href; });
"""

_ITEM_JS = """
const f = document.getElementById('verdict');
function send(v){ const b = document.createElement('input'); b.type='hidden'; b.name='verdict'; b.value=v;
  f.appendChild(b); f.submit(); }
document.addEventListener('keydown', e => { if (e.target.tagName === 'INPUT') { if (e.key === 'Escape') e.target.blur();
    return; }
  if (e.key === 'c') send('confirmed'); else if (e.key === 'f') send('false-positive');
  else if (e.key === 'o') send('open');
  else if (e.key === 's') location.href = document.getElementById('skip').getAttribute('href');
  else if (e.key === 'n') { e.preventDefault(); document.getElementById('note').focus(); } });
"""


def _week_range(week: str) -> tuple[dt.datetime, dt.datetime] | None:
    m = WEEK.match(week or "")
    if not m:
        return None
    try:
        start = dt.datetime.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError:
        return None
    return start, start + dt.timedelta(days=7)


def _s(v: Any) -> str:
    return "" if v is None else mask_secrets(str(v))


def _fmt_ts(v: Any) -> str:
    return v.strftime("%Y-%m-%d %H:%M") if isinstance(v, dt.datetime) else _s(v)


def create_app(db: str, *, wait: float = 5.0, token: str | None = None) -> Any:
    """The Flask app for the review queue of the database at ``db`` (opened per request)."""
    from flask import Flask, abort, make_response, redirect, render_template, render_template_string, request

    from runaudit.review import _outcomes, resolve, review_queue
    from runaudit.store import Store

    app = Flask("runaudit.review_web", template_folder=str(Path(__file__).parent / "templates" / "review"))
    app.config["TOKEN"] = token or secrets.token_urlsafe(24)

    def page(title: str, body_tpl: str, script: str = "", status: int = 200, refresh: int | None = None,
             **ctx: Any) -> Any:
        nonce = secrets.token_urlsafe(16)
        # .html templates: Jinja2 autoescape escapes every {{ }}; only the rendered body is marked safe
        body = render_template(body_tpl, **ctx) if body_tpl.endswith(".html") else \
            render_template_string(body_tpl, **ctx)
        html = render_template("base.html", title=title, body=body, script=script, nonce=nonce, db=db,
                               refresh=refresh)
        resp = make_response(html, status)
        resp.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'none'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["Cache-Control"] = "no-store"
        if refresh:
            resp.headers["Retry-After"] = str(refresh)
        return resp

    def busy(e: Exception) -> Any:
        return page("database busy", "<p class='msg warn'>{{ m }}</p><p>This page tries again every 3 seconds.</p>",
                    status=503, refresh=3,
                    m=f"The database is in use by another runaudit process (an ingest or audit): {e}")

    @app.before_request
    def check_host() -> None:
        # only this server's own address: a DNS name rebound to 127.0.0.1 is refused
        host = (request.host or "").lower()
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if name not in ("127.0.0.1", "localhost", "[::1]"):
            abort(400)

    def same_origin() -> bool:
        own = request.host_url.rstrip("/")
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") != own:
            return False
        if origin is None:
            ref = request.headers.get("Referer", "")
            if not ref.startswith(own + "/"):
                return False
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")

    def load(status: str) -> Any:
        with Store.open(db, read_only=True, wait=wait) as store:
            return review_queue(store, status, include_degraded=False)

    TOPICS_SQL = ("SELECT idem_key, any_value(coalesce(topic, '')) FROM audit_runs "
                  "WHERE rule_outcome IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1")

    @app.get("/")
    def queue() -> Any:
        f = {"task": request.args.get("task", ""), "rule": request.args.get("rule", ""),
             "status": request.args.get("status", "open"), "week": request.args.get("week", "")}
        if f["status"] not in STATUSES:
            f["status"] = "open"
        try:
            # one open of the database for the queue and its topics
            with Store.open(db, read_only=True, wait=wait) as store:
                df = review_queue(store, f["status"], include_degraded=False)
                topics = dict(store.rows(TOPICS_SQL, [_outcomes(False)]))
        except StoreBusyError as e:
            return busy(e)
        rows = df.to_dicts()
        tasks = sorted({_s(r["task_id"]) for r in rows})
        rules = sorted({r["rule_code"] for r in rows})
        wr = _week_range(f["week"])
        keep = [r for r in rows if (not f["task"] or _s(r["task_id"]) == f["task"])
                and (not f["rule"] or r["rule_code"] == f["rule"])
                and (wr is None or (r["last_seen"] is not None and wr[0] <= r["last_seen"] < wr[1]))]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in keep:
            snippet = next((x for x in (r["refusal_text"], r["response_text"], r["error_message"], r["tool_payload"])
                            if x and str(x).strip()), "")
            item = {"key": r["key"], "status": r["status"], "rule_code": r["rule_code"], "signal": r["signal"],
                    "occurrences": r["occurrences"], "first_seen": _fmt_ts(r["first_seen"]),
                    "last_seen": _fmt_ts(r["last_seen"]), "snippet": _s(snippet)[:160]}
            groups.setdefault((_s(r["task_id"]), _s(topics.get(r["key"])) or "—"), []).append(item)
        out = [{"task": t, "topic": tp, "rows": items} for (t, tp), items in sorted(groups.items())]
        message = {"saved": "Verdict saved.", "done": "No open item left in this view."}.get(request.args.get("m", ""))
        return page("queue", "queue.html", _QUEUE_JS, groups=out, tasks=tasks, rules=rules, statuses=STATUSES, f=f,
                    n=len(keep), runs=sum(r["occurrences"] for r in keep), message=message)

    @app.get("/item/<key>")
    def item(key: str) -> Any:
        if not KEY.match(key):
            abort(404)
        try:
            df = load("all")
        except StoreBusyError as e:
            return busy(e)
        every = df.to_dicts()
        # the open items, in the queue's order: read off the same frame, not a second query
        open_keys = [r["key"] for r in every if r["status"] == "open"]
        rows = [r for r in every if r["key"] == key]
        if not rows:
            abort(404)
        r = rows[0]
        after = [k for k in open_keys if k != key]
        nxt = open_keys[(open_keys.index(key) + 1) % len(open_keys)] if key in open_keys and len(open_keys) > 1 \
            else (after[0] if after else "")
        err = None
        if r["error_type"] is not None or r["error_message"] is not None:
            err = f"{_s(r['error_type'])}: {_s(r['error_message'])}"
        it = {"key": key, "task_id": _s(r["task_id"]), "status": r["status"], "rule_code": r["rule_code"],
              "signal": r["signal"], "sub_reason": _s(r["sub_reason"]),
              "stop_reason": _s(r["stop_reason_raw"] if r["stop_reason_raw"] is not None else r["stop_reason"]),
              "score": "" if r["max_refusal_score"] is None else f"{r['max_refusal_score']:.2f}",
              "occurrences": r["occurrences"], "first_seen": _fmt_ts(r["first_seen"]),
              "last_seen": _fmt_ts(r["last_seen"]), "prompt": _s(r["prompt"]), "response_text": _s(r["response_text"]),
              "refusal_text": _s(r["refusal_text"]),
              "tool_payload": "" if r["tool_payload"] in (None, "[]") else _s(r["tool_payload"]), "error": err,
              "note": _s(r["note"]), "reviewer": _s(r["reviewer"]), "decided_at": _fmt_ts(r["decided_at"]),
              "runs": [{"run_id": _s(x["run_id"]), "ts": _fmt_ts(x["ts"]), "source": _s(x["source"]),
                        "rule_code": x["rule_code"]} for x in r["runs"]]}
        message = "Verdict saved." if request.args.get("m") == "saved" else None
        return page(it["task_id"] or key, "item.html", _ITEM_JS, it=it, token=app.config["TOKEN"], next_key=nxt,
                    skip_href=f"/item/{nxt}" if nxt else "/", message=message)

    @app.post("/item/<key>/verdict")
    def verdict(key: str) -> Any:
        if not KEY.match(key):
            abort(404)
        if not same_origin() or not secrets.compare_digest(request.form.get("token", ""), app.config["TOKEN"]):
            abort(403)
        v = request.form.get("verdict", "")
        if v not in ("confirmed", "false-positive", "open"):
            abort(400)
        note = (request.form.get("note") or "").strip()[:2000] or None
        try:
            with Store.open(db, wait=wait) as store:
                resolve(store, key, v, note=note, reviewer="review page")
        except StoreBusyError as e:
            return busy(e)
        nxt = request.form.get("next", "")
        if KEY.match(nxt):
            return redirect(f"/item/{nxt}?m=saved", code=303)
        return redirect("/?m=done", code=303)

    @app.errorhandler(403)
    def forbidden(_e: Any) -> Any:
        return page("refused", "<p class='msg warn'>Refused: this request did not come from the review page "
                    "itself (token or origin missing).</p>", status=403)

    return app


def serve(db: str, port: int = 8765, *, wait: float = 5.0, on_ready: Any = None) -> None:
    """Serve the review page on 127.0.0.1:``port`` until interrupted."""
    from werkzeug.serving import make_server

    app = create_app(db, wait=wait)
    srv = make_server("127.0.0.1", port, app, threaded=True)
    if on_ready is not None:
        on_ready(f"http://127.0.0.1:{srv.server_port}/")
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
