"""One week's report files: the data, the charts and the Markdown and HTML pages, each written atomically."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from runaudit.config import Config
from runaudit.errors import UsageError, writing_to
from runaudit.outputs import write_atomic
from runaudit.store import Store

FORMATS = ("md", "html")


@dataclass
class ReportResult:
    """Files written by :func:`write_report`."""

    out_dir: str
    window: str
    files: list[str]
    seconds: float


def write_report(store: Store, cfg: Config, out_dir: str | Path = "report", week: str | None = None,
                 since: dt.date | None = None, until: dt.date | None = None,
                 formats: tuple[str, ...] = FORMATS) -> ReportResult:
    """Write report.md / report.html / report.json and the chart PNGs into ``out_dir``."""
    from runaudit.report.charts import draw_all
    from runaudit.report.data import build_report_data, resolve_window
    from runaudit.report.render import render_html, render_markdown, write_json

    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"--format {bad[0]!r} is not one of: {', '.join(FORMATS)}")
    t0 = time.perf_counter()
    window = resolve_window(store, week, since, until)
    data = build_report_data(store, cfg, window)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    with writing_to(out):
        out.mkdir(parents=True, exist_ok=True)
        images = draw_all(data, out)
        files = [str(p) for p in images.values()]
        if "md" in formats:
            write_atomic(out / "report.md", render_markdown(data))
            files.append(str(out / "report.md"))
        if "html" in formats:
            write_atomic(out / "report.html", render_html(data, images))
            files.append(str(out / "report.html"))
        write_json(data, out / "report.json")
        files.append(str(out / "report.json"))
    return ReportResult(str(out), window.label, files, time.perf_counter() - t0)
