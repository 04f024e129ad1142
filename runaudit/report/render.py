"""Render the weekly report as Markdown and self-contained HTML from one document model.

Everything taken from logs (task names, prompts, responses, run ids) passes through :func:`cell` /
:func:`para`, which mask secrets and escape for the target format: HTML-escaped in HTML, and in Markdown every
character that could start markup (links, images, emphasis, raw HTML) is backslash-escaped or turned into an
entity. The HTML carries a Content-Security-Policy that allows no scripts and no external requests; charts
are embedded as data: URIs.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runaudit.outputs import write_atomic
from runaudit.redact import inert, mask_obj
from runaudit.report.data import ReportData

# Characters that can start Markdown markup inline (links/images need [ ] ( ), emphasis * _ ~, code `,
# tables |, autolinks and raw HTML < > — the latter two become entities).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()#!|~])")


def md_escape(text: str) -> str:
    """Escape text for Markdown: entities for &, <, >; backslashes before markup characters; no newlines."""
    t = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    t = _MD_SPECIAL.sub(r"\\\1", t)
    return " ".join(t.split())


@dataclass
class Text:
    """A run of text: ``trusted`` text is runaudit's own; untrusted text comes from logs."""

    value: str
    trusted: bool = False
    code: bool = False


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Text]]


@dataclass
class Image:
    file: str
    alt: str


@dataclass
class Para:
    parts: list[Text]


@dataclass
class Section:
    title: str
    blocks: list[Any] = field(default_factory=list)


def cell(value: Any, limit: int | None = 160) -> Text:
    """Untrusted text from logs (masked for secrets, cut to ``limit`` characters)."""
    if value is None:
        return Text("—", trusted=True)
    if value == "":
        return Text("(empty)", trusted=True)
    s = inert(value)
    if limit and len(s) > limit:
        s = s[:limit] + "…"
    return Text(s)


def num(value: Any) -> Text:
    return Text("—" if value is None else f"{value:,}" if isinstance(value, int) else str(value), trusted=True)


def pct(x: float | None) -> Text:
    return Text("—" if x is None else f"{x * 100:.1f}%", trusted=True)


def t(s: str) -> Text:
    return Text(s, trusted=True)


def _rate(a: int, b: int) -> float | None:
    return a / b if b else None


def _delta(cur: float | None, prev: float | None) -> Text:
    if cur is None or prev is None:
        return t("—")
    d = (cur - prev) * 100
    return t(f"{d:+.1f} pts")


def build_document(data: ReportData) -> tuple[str, list[str], list[Section]]:
    """The report as a title, meta lines and sections (shared by both renderers)."""
    h, p = data.headline, data.previous
    w = data.window
    title = f"runaudit weekly report — {w.label}"
    meta = [f"Window {w.start.isoformat()} to {(w.end - dt.timedelta(days=1)).isoformat()} (UTC, end inclusive)",
            f"ruleset {h['ruleset']} · generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}"]
    sections: list[Section] = []

    s1 = Section("1. Headline")
    o, po = h["outcomes"], p["outcomes"]
    s1.blocks.append(Table(["", "this window", "previous window", "change"], [
        [t("runs"), num(h["runs"]), num(p["runs"]), t(f"{h['runs'] - p['runs']:+,}")],
        [t("reported success rate"), pct(h["reported_success_rate"]), pct(p["reported_success_rate"]),
         _delta(h["reported_success_rate"], p["reported_success_rate"])],
        [t("true success rate"), pct(h["true_success_rate"]), pct(p["true_success_rate"]),
         _delta(h["true_success_rate"], p["true_success_rate"])],
        [t("falsely marked success"), num(h["false_success"]), num(p["false_success"]),
         t(f"{h['false_success'] - p['false_success']:+,}")],
        [t("ok / infra_error / declined / degraded"),
         t(f"{o['ok']:,} / {o['infra_error']:,} / {o['declined']:,} / {o['degraded']:,}"),
         t(f"{po['ok']:,} / {po['infra_error']:,} / {po['declined']:,} / {po['degraded']:,}"), t("")],
        [t("overridden by a reviewer (false-positive)"), num(h["overridden_by_review"]),
         num(p["overridden_by_review"]), t("")],
    ]))
    if h["runs"]:
        gap = (h["reported_success_rate"] or 0) - (h["true_success_rate"] or 0)
        s1.blocks.append(Para([t(f"The pipeline reported {h['reported_success_rate'] * 100:.1f}% success; "
                                 f"{h['true_success_rate'] * 100:.1f}% of runs really succeeded "
                                 f"({gap * 100:.1f} points apart). {h['outcomes']['declined']:,} run(s) were "
                                 f"declined and need a person, not a retry.")]))
    sections.append(s1)

    s2 = Section("2. Success rate per week and per task")
    s2.blocks.append(Image("success_rate.png", "Weekly reported vs true success rate"))
    rows = []
    by = {r["week"]: r for r in data.weekly.iter_rows(named=True)}
    for wk in data.weeks:
        r = by.get(wk)
        if not r:
            rows.append([t(wk), num(0), t("—"), t("—"), num(0)])
            continue
        rows.append([t(wk), num(r["runs"]), pct(_rate(r["reported_success"], r["runs"])),
                     pct(_rate(r["ok"], r["runs"])), num(r["false_success"])])
    s2.blocks.append(Table(["week", "runs", "reported", "true", "falsely marked success"], rows))
    s2.blocks.append(Image("tasks.png", "Reported vs true success rate per task"))
    s2.blocks.append(Table(["task", "runs", "reported", "true", "declined", "degraded", "infra_error"], [
        [cell(r["task_id"], 60), num(r["runs"]), pct(_rate(r["reported_success"], r["runs"])),
         pct(_rate(r["ok"], r["runs"])), num(r["declined"]), num(r["degraded"]), num(r["infra_error"])]
        for r in data.tasks.iter_rows(named=True)]))
    sections.append(s2)

    s3 = Section("3. Outcome mix and infrastructure errors")
    s3.blocks.append(Image("outcomes.png", "Outcome mix per week"))
    s3.blocks.append(Image("infra_errors.png", "Infrastructure errors per week"))
    infra_rows = []
    for wk in data.weeks:
        r = by.get(wk)
        if not r:
            continue
        other = r["infra_error"] - r["infra_429"] - r["infra_529"] - r["infra_5xx"] - r["infra_timeout"]
        infra_rows.append([t(wk), num(r["ok"]), num(r["infra_error"]), num(r["declined"]), num(r["degraded"]),
                           num(r["infra_429"]), num(r["infra_529"]), num(r["infra_5xx"]), num(r["infra_timeout"]),
                           num(other)])
    s3.blocks.append(Table(["week", "ok", "infra_error", "declined", "degraded", "429", "529", "5xx", "timeout",
                            "other"], infra_rows))
    sections.append(s3)

    s4 = Section("4. Falsely marked success")
    s4.blocks.append(Para([t(f"{h['false_success']:,} run(s) in this window were logged as success but are not ok.")]))
    if data.false_by_task.height:
        s4.blocks.append(Table(["task", "falsely marked success", "declined", "degraded", "infra_error"], [
            [cell(r["task_id"], 60), num(r["false_success"]), num(r["declined"]), num(r["degraded"]),
             num(r["infra_error"])] for r in data.false_by_task.iter_rows(named=True)]))
        s4.blocks.append(Para([t("Worst examples (declines first):")]))
        s4.blocks.append(Table(["time", "task", "reported", "outcome", "rule / signal", "prompt", "response"], [
            [t(str(r["ts"])[:16]), cell(r["task_id"], 40), cell(r["reported_status"], 20),
             cell(f"{r['outcome']} ({r['sub_reason'] or ''})", 80), t(f"{r['rule_code']} {r['signal']}"),
             cell(r["prompt"], 120), cell(r["response_text"], 120)] for r in data.worst.iter_rows(named=True)]))
    sections.append(s4)

    s5 = Section("5. Decline topics")
    if data.decline_by_signal.height:
        s5.blocks.append(Para([t("Declines by task and signal:")]))
        s5.blocks.append(Table(["task", "signal", "declined"], [
            [cell(r["task_id"], 60), t(str(r["signal"])), num(r["declined"])]
            for r in data.decline_by_signal.iter_rows(named=True)]))
    if data.categories.height:
        s5.blocks.append(Para([t("Provider-reported categories (Anthropic stop_details.category, filter and "
                                 "guardrail reasons):")]))
        s5.blocks.append(Table(["category", "declined"], [[cell(r["category"], 40), num(r["declined"])]
                                                          for r in data.categories.iter_rows(named=True)]))
    s5.blocks.append(Image("decline_topics.png", "Decline rate per topic per week"))
    if data.topics.height:
        trend_rows = []
        for r in data.topics.iter_rows(named=True):
            sub = {x["week"]: x for x in data.topic_weeks.filter(data.topic_weeks["topic"] == r["topic"])
                   .iter_rows(named=True)}
            trend = " → ".join(f"{sub[wk]['declined'] / sub[wk]['runs'] * 100:.0f}%" if wk in sub and sub[wk]["runs"]
                               else "·" for wk in data.weeks[-6:])
            trend_rows.append([cell(r["topic"], 40), num(r["runs"]), num(r["declined"]), pct(r["decline_rate"]),
                               t(trend)])
        s5.blocks.append(Table(["topic", "runs", "declined", "decline rate", f"trend ({', '.join(data.weeks[-6:][:1])}"
                                f" … {data.weeks[-1]})"], trend_rows))
    else:
        s5.blocks.append(Para([t("No topic stands out in this window.")]))
    s5.blocks.append(Para([t("Method: " + data.topic_method)]))
    if data.judge_topics is not None and data.judge_topics.height:
        s5.blocks.append(Para([t("Topics named by the LLM judge (runaudit judge) for the runs it read:")]))
        s5.blocks.append(Table(["judge topic", "runs judged", "declined"], [
            [cell(r["topic"], 60), num(r["runs"]), num(r["declined"])]
            for r in data.judge_topics.iter_rows(named=True)]))
    sections.append(s5)

    s6 = Section("6. Handle by hand")
    c = data.config
    s6.blocks.append(Para([t(f"Tasks and topics whose decline rate stayed at or above {c['hand_threshold'] * 100:.0f}% "
                             f"in each of the last {c['hand_weeks']} week(s) (with at least {c['hand_min_runs']} "
                             "runs a week). Take these out of unattended operation: declines are not retried, "
                             "they need a person.")]))
    if data.hand.height:
        s6.blocks.append(Table(["kind", "name", "weeks", "lowest weekly decline rate", "mean", "runs", "declined"], [
            [t(r["kind"]), cell(r["name"], 60), num(r["weeks"]), pct(r["min_decline_rate"]),
             pct(r["mean_decline_rate"]), num(r["runs"]), num(r["declined"])]
            for r in data.hand.iter_rows(named=True)]))
    else:
        s6.blocks.append(Para([t("Nothing crossed the threshold.")]))
    sections.append(s6)

    s7 = Section("7. Review queue")
    if data.review is not None:
        rv = data.review
        s7.blocks.append(Table(["open", "confirmed", "false-positive"],
                               [[num(rv.get("open", 0)), num(rv.get("confirmed", 0)),
                                 num(rv.get("false-positive", 0))]]))
        s7.blocks.append(Para([t("Queue items fold repeats of the same input (task + prompt) into one. List them "
                                 "with "), Text("runaudit review list", trusted=True, code=True),
                               t("; a false-positive verdict moves those runs out of declined in every number "
                                 "above. To read and judge them in a browser, run "),
                               Text("runaudit review serve", trusted=True, code=True),
                               t(" and open http://127.0.0.1:8765/ (each item is at /item/KEY).")]))
    sections.append(s7)
    return title, meta, sections


def _md_text(x: Text) -> str:
    if x.code:
        return f"`{x.value}`"
    return x.value.replace("|", "\\|") if x.trusted else md_escape(x.value)


def render_markdown(data: ReportData) -> str:
    title, meta, sections = build_document(data)
    out = [f"# {md_escape(title)}", "", *[f"_{md_escape(m)}_  " for m in meta], ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, Para):
                out += ["".join(_md_text(x) for x in b.parts), ""]
            elif isinstance(b, Image):
                out += [f"![{b.alt}]({b.file})", ""]
            elif isinstance(b, Table):
                out.append("| " + " | ".join(b.headers) + " |")
                out.append("|" + "|".join("---" for _ in b.headers) + "|")
                for row in b.rows:
                    out.append("| " + " | ".join(_md_text(x) for x in row) + " |")
                out.append("")
    return "\n".join(out)


_CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.meta{color:#666;margin:0}table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;max-width:420px;overflow-wrap:break-word}
th{background:#f5f5f5}tr:nth-child(even) td{background:#fafafa}img{max-width:100%;margin:.4em 0;display:block}
code{background:#f2f2f2;padding:1px 4px;border-radius:3px}
"""


def _html_text(x: Text) -> str:
    v = html.escape(x.value, quote=True)
    return f"<code>{v}</code>" if x.code else v


def render_html(data: ReportData, images: dict[str, Path]) -> str:
    title, meta, sections = build_document(data)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
           "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">",
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>", *[f'<p class="meta">{html.escape(m)}</p>' for m in meta]]
    for s in sections:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        for b in s.blocks:
            if isinstance(b, Para):
                out.append("<p>" + "".join(_html_text(x) for x in b.parts) + "</p>")
            elif isinstance(b, Image):
                path = images.get(b.file)
                if path and path.exists():
                    data64 = base64.b64encode(path.read_bytes()).decode()
                    out.append(f'<img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data64}">')
            elif isinstance(b, Table):
                out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(hh)}</th>" for hh in b.headers)
                           + "</tr></thead><tbody>")
                for row in b.rows:
                    out.append("<tr>" + "".join(f"<td>{_html_text(x)}</td>" for x in row) + "</tr>")
                out.append("</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out)


def report_json(data: ReportData) -> dict[str, Any]:
    """The report's numbers (for golden tests and for cross-checking with ``audit --json``)."""
    return mask_obj({
        "window": {"start": data.window.start.isoformat(), "end": data.window.end.isoformat(),
                   "label": data.window.label},
        "headline": data.headline,
        "previous": data.previous,
        "weeks": data.weeks,
        "weekly": data.weekly.to_dicts(),
        "tasks": data.tasks.to_dicts(),
        "false_by_task": data.false_by_task.to_dicts(),
        "decline_by_signal": data.decline_by_signal.to_dicts(),
        "topics": data.topics.to_dicts(),
        "hand": data.hand.to_dicts(),
        "review": data.review,
        "judge_topics": data.judge_topics.to_dicts() if data.judge_topics is not None else [],
    })


def write_json(data: ReportData, path: Path) -> None:
    write_atomic(path, json.dumps(report_json(data), indent=2, default=str, ensure_ascii=False) + "\n")
