"""Report charts as PNG files (matplotlib, Agg backend, imported only when a chart is drawn)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runaudit.outputs import write_atomic
from runaudit.redact import label

if TYPE_CHECKING:
    from runaudit.report.data import ReportData

COLORS = {"ok": "#2e7d32", "infra_error": "#f9a825", "declined": "#c62828", "degraded": "#6a1b9a",
          "reported": "#1565c0", "true": "#2e7d32"}


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getvalue())


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _weekly_rows(data: ReportData) -> list[dict[str, Any]]:
    by = {r["week"]: r for r in data.weekly.iter_rows(named=True)}
    zero = {"runs": 0, "ok": 0, "infra_error": 0, "declined": 0, "degraded": 0, "reported_success": 0,
            "infra_429": 0, "infra_529": 0, "infra_5xx": 0, "infra_timeout": 0}
    return [{**zero, **by.get(w, {}), "week": w} for w in data.weeks]


def _stacked(ax: Any, weeks: list[str], series: dict[str, list[int]], colors: list[str], title: str) -> None:
    bottom = [0] * len(weeks)
    for (k, vals), c in zip(series.items(), colors, strict=True):
        ax.bar(weeks, vals, bottom=bottom, color=c, label=k)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("runs")
    ax.set_title(title)
    ax.set_ylim(0, max(bottom + [1]) * 1.3)  # headroom for the legend
    ax.legend(fontsize=8, ncol=len(series), loc="upper left")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.grid(axis="y", alpha=0.3)


def success_rate_chart(data: ReportData, path: Path) -> Path:
    """Weekly reported vs true success rate (lines)."""
    plt = _plt()
    rows = _weekly_rows(data)
    weeks = [r["week"] for r in rows]
    rep = [r["reported_success"] / r["runs"] * 100 if r["runs"] else None for r in rows]
    true = [r["ok"] / r["runs"] * 100 if r["runs"] else None for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    x = list(range(len(weeks)))
    ax.plot(x, [v if v is not None else float("nan") for v in rep], marker="o", color=COLORS["reported"],
            label="reported by the pipeline")
    ax.plot(x, [v if v is not None else float("nan") for v in true], marker="o", color=COLORS["true"],
            label="true (outcome ok)")
    ax.set_xticks(x, weeks)
    ax.set_xlim(-0.5, len(weeks) - 0.5)
    # a week without runs has no rate: a gap, never a drop to 0%
    has = [v is not None for v in rep]
    ax.fill_between(range(len(weeks)), [v or 0 for v in true], [v or 0 for v in rep], where=has, color="#ef9a9a",
                    alpha=0.35, label="falsely marked success")
    for i, h in enumerate(has):
        if not h:
            ax.text(i, 50, "no runs", ha="center", va="center", fontsize=7, color="#777", rotation=90)
    ax.set_ylim(-6, 112)
    ax.set_ylabel("success rate (%)")
    ax.set_title("Success rate per week: reported vs true")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def outcome_mix_chart(data: ReportData, path: Path) -> Path:
    """Stacked bars of outcomes per week."""
    plt = _plt()
    rows = _weekly_rows(data)
    weeks = [r["week"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    kinds = ("ok", "degraded", "declined", "infra_error")
    _stacked(ax, weeks, {k: [r[k] for r in rows] for k in kinds}, [COLORS[k] for k in kinds],
             "Outcome mix per week")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def infra_chart(data: ReportData, path: Path) -> Path:
    """Infra errors per week: 429 / 529 / 5xx / timeout / other."""
    plt = _plt()
    rows = _weekly_rows(data)
    weeks = [r["week"] for r in rows]
    series = {
        "429": [r["infra_429"] for r in rows],
        "529": [r["infra_529"] for r in rows],
        "5xx": [r["infra_5xx"] for r in rows],
        "timeout": [r["infra_timeout"] for r in rows],
    }
    series["other"] = [r["infra_error"] - sum(series[k][i] for k in ("429", "529", "5xx", "timeout"))
                       for i, r in enumerate(rows)]
    colors = ["#fbc02d", "#ef6c00", "#d84315", "#8d6e63", "#9e9e9e"]
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    _stacked(ax, weeks, series, colors, "Infrastructure errors per week")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def task_chart(data: ReportData, path: Path, top: int = 12) -> Path:
    """Reported vs true success rate per task in the report window (grouped bars)."""
    plt = _plt()
    rows = data.tasks.head(top).to_dicts()
    names = [label(r["task_id"]) for r in rows]
    rep = [r["reported_success"] / r["runs"] * 100 if r["runs"] else 0 for r in rows]
    true = [r["ok"] / r["runs"] * 100 if r["runs"] else 0 for r in rows]
    fig, ax = plt.subplots(figsize=(8, max(2.8, 0.42 * len(rows) + 1.6)), dpi=100)
    y = list(range(len(rows)))
    ax.barh([v + 0.2 for v in y], rep, height=0.4, color=COLORS["reported"], label="reported")
    ax.barh([v - 0.2 for v in y], true, height=0.4, color=COLORS["true"], label="true")
    # every bar gets its value written at its end, so a 0% bar is still seen (as "0%")
    for v, r, tr in zip(y, rep, true, strict=True):
        ax.text(r + 1, v + 0.2, f"{r:.0f}%", va="center", fontsize=7)
        ax.text(tr + 1, v - 0.2, f"{tr:.0f}%", va="center", fontsize=7)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 112)
    ax.set_xlabel("success rate (%)")
    ax.set_title(f"Success rate per task, {data.window.label}")
    # below the axes: inside, it would cover a bar
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.5 / fig.get_figheight()),
              frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def topic_chart(data: ReportData, path: Path, top: int = 6) -> Path:
    """Decline rate per topic per week (lines), for the topics with the most declines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=100)
    names = data.topics.head(top)["topic"].to_list() if data.topics.height else []
    for name in names:
        sub = {r["week"]: r for r in data.topic_weeks.filter(data.topic_weeks["topic"] == name).iter_rows(named=True)}
        # topics at the same rate (often 100%) would hide each other: each line is drawn a little apart
        dodge = (names.index(name) - (len(names) - 1) / 2) * 3.0
        vals = [sub[w]["declined"] / sub[w]["runs"] * 100 + dodge if w in sub and sub[w]["runs"] else float("nan")
                for w in data.weeks]
        ax.plot(data.weeks, vals, marker="osD^v<>"[names.index(name) % 7], markersize=7 - names.index(name) % 3,
                label=label(name, 24))
    ax.axhline(data.config["hand_threshold"] * 100, color="#c62828", linestyle="--", linewidth=1,
               label="hand-over threshold")
    ax.set_ylim(-6, 112)
    ax.set_ylabel("decline rate (%)")
    ax.set_title("Decline rate per topic per week (lines drawn slightly apart so equal rates stay visible)",
                 fontsize=9)
    # below the axes: lines may sit anywhere, including on top of each other at 100%
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


CHARTS = {
    "success_rate.png": success_rate_chart,
    "outcomes.png": outcome_mix_chart,
    "infra_errors.png": infra_chart,
    "tasks.png": task_chart,
    "decline_topics.png": topic_chart,
}


def draw_all(data: ReportData, out_dir: Path) -> dict[str, Path]:
    """Draw every chart into ``out_dir``; returns name -> path."""
    return {name: fn(data, out_dir / name) for name, fn in CHARTS.items()}
