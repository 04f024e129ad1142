"""The audit on realistic reply text, against two baselines measured in the same run (issue 17).

    python bench/audit_bench.py --runs 200000 1000000 [--dir /tmp/runaudit-audit-bench]

Logs come from ``bench/realistic.py``: compliant replies of many kinds, many using "sorry", "can't", "policy",
"safety" in ordinary ways, declines at a few percent. Every stage runs in a fresh subprocess (peak RSS is the
stage's own); the baselines are the median of three runs, interleaved with nothing else:

* polars: ``scan_ndjson`` of the columns a classifier needs + a 4-way classify with one refusal regex
  (``infra_error`` / ``declined`` / ``degraded`` / ``ok``) and the outcome counts;
* DuckDB floor: ``read_ndjson`` of the same narrow columns into a table of a DuckDB file (none of runaudit's
  guarantees: no raw line kept, no identity, no quarantine, no streams).

Then runaudit: ``audit PATH`` on a fresh database (ingest + first classification), re-ingest of the unchanged
file, reclassification after a rule change, and the weekly report. Each stage's time includes closing the store
(DuckDB's checkpoint: work can move there, as with 128 MB ingest windows), and the database file's size is
printed. Targets at 1M runs: first audit <= 10x the polars baseline, ingest <= 1.5x the DuckDB floor, reclassify
<= 2x polars, weekly report <= 3 s, re-ingest <= 2% of the first, peak RSS <= 2 GiB and flat from 200k to 1M.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench.realistic import generate  # noqa: E402

STAGE = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
stage, path, db = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
out = {{}}
COLS = {{"run_id": "VARCHAR", "task_id": "VARCHAR", "ts": "VARCHAR", "prompt": "VARCHAR", "text": "VARCHAR",
        "http_status": "INTEGER", "stop_reason": "VARCHAR", "status": "VARCHAR", "error": "VARCHAR"}}
if stage == "polars":
    import polars as pl
    schema = {{k: (pl.Int64 if v == "INTEGER" else pl.String) for k, v in COLS.items()}}
    refusal = (r"(?i)^\W*(i'?m sorry|i apologi[sz]e|sorry,|i can'?t|i cannot|i won'?t|i'?m not able|i am unable|"
               r"i must decline|as an ai|lo siento)")
    df = (pl.scan_ndjson(path, schema=schema)
          .with_columns(pl.when(pl.col("http_status").is_null() | (pl.col("http_status") >= 300)
                                | pl.col("error").is_not_null())
                        .then(pl.lit("infra_error"))
                        .when((pl.col("stop_reason") == "refusal") | pl.col("text").str.contains(refusal))
                        .then(pl.lit("declined"))
                        .when((pl.col("stop_reason") == "max_tokens")
                              | (pl.col("text").fill_null("").str.strip_chars() == ""))
                        .then(pl.lit("degraded")).otherwise(pl.lit("ok")).alias("outcome"))
          .group_by("outcome").len().collect())
    out["counts"] = dict(zip(df["outcome"].to_list(), df["len"].to_list()))
elif stage == "duckdb_floor":
    import duckdb
    con = duckdb.connect(db)
    cols = json.dumps(COLS).replace('"', "'")
    con.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM read_ndjson(?, columns = " + cols + ")", [path])
    out["rows"] = con.execute("SELECT count(*) FROM t").fetchone()[0]
    con.close()
else:
    from runaudit.store import Store
    from runaudit.config import Config, parse_config
    s = Store.open(db)
    if stage in ("ingest", "reingest"):
        from runaudit.ingest import ingest
        out["result"] = ingest(s, [path]).as_dict()
    elif stage == "classify":
        from runaudit.classify import classify
        out["result"] = classify(s, Config()).__dict__
    elif stage == "reclassify":
        from runaudit.classify import classify
        out["result"] = classify(s, parse_config({{"done": {{"min_chars": 5}}}})).__dict__
    elif stage == "report":
        import tempfile
        from runaudit.report import write_report
        out["result"] = str(write_report(s, Config(), tempfile.mkdtemp(), week="last").__dict__)[:200]
    elif stage == "outcomes":
        out["counts"] = dict(s.rows("SELECT outcome, count(*) FROM audit_runs GROUP BY 1"))
    s.close()
out["seconds"] = time.perf_counter() - t
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out, default=str))
"""


def stage(name: str, path: Path, db: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", STAGE.format(root=str(ROOT)), name, str(path), str(db)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"stage {name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _fresh(db: Path) -> Path:
    for p in (db, Path(str(db) + ".wal")):
        if p.exists():
            p.unlink()
    return db


def bench(n: int, d: Path) -> dict[str, dict]:
    log = d / f"realistic-{n}.jsonl"
    if not log.exists():
        t = time.perf_counter()
        generate(str(log), n)
        print(f"generated {log} ({log.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s", flush=True)
    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)  # page cache, like every stage
    r: dict[str, dict] = {}
    for k in ("polars", "duckdb_floor"):
        runs = sorted((stage(k, log, _fresh(d / "floor.duckdb")) for _ in range(3)), key=lambda x: x["seconds"])
        r[k] = runs[1]
    db = _fresh(d / f"audit-{n}.duckdb")
    r["ingest"] = stage("ingest", log, db)
    r["ingest"]["db_mb"] = db.stat().st_size / 1e6  # the stage closed the store: its checkpoint is counted
    r["ingest"]["log_mb"] = log.stat().st_size / 1e6
    r["classify"] = stage("classify", log, db)
    r["audit"] = {"seconds": r["ingest"]["seconds"] + r["classify"]["seconds"],
                  "peak_rss_mb": max(r["ingest"]["peak_rss_mb"], r["classify"]["peak_rss_mb"])}
    r["reingest"] = stage("reingest", log, db)
    r["reclassify"] = stage("reclassify", log, db)
    r["report"] = stage("report", log, db)
    r["outcomes"] = stage("outcomes", log, db)
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, nargs="+", default=[200_000])
    ap.add_argument("--dir", default="/tmp/runaudit-audit-bench")
    a = ap.parse_args()
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    results = {n: bench(n, d) for n in a.runs}
    print(f"\ncores: {os.cpu_count()}")
    for n, r in results.items():
        p, f = r["polars"]["seconds"], r["duckdb_floor"]["seconds"]
        print(f"\nruns: {n:,}   polars scan + 4-way classify: {p:.2f} s   DuckDB read_ndjson floor: {f:.2f} s")
        print(f"{'stage':<34}{'seconds':>9}{'peak RSS MB':>13}{'x polars':>10}{'x floor':>9}")
        for k, label in (("polars", "polars baseline"), ("duckdb_floor", "DuckDB read_ndjson floor"),
                         ("audit", "first audit (ingest + classify)"), ("ingest", "  of which ingest"),
                         ("classify", "  of which classification"), ("reingest", "re-ingest unchanged"),
                         ("reclassify", "reclassify (rule change)"), ("report", "weekly report")):
            s = r[k]["seconds"]
            print(f"{label:<34}{s:>9.2f}{r[k]['peak_rss_mb']:>13.0f}{s / p:>10.2f}{s / f:>9.2f}")
        print(f"re-ingest / first ingest: {r['reingest']['seconds'] / r['ingest']['seconds'] * 100:.2f}%")
        print(f"database file after ingest: {r['ingest']['db_mb']:.0f} MB "
              f"(log: {r['ingest']['log_mb']:.0f} MB)")
        print(f"polars outcomes:   {r['polars']['counts']}")
        print(f"runaudit outcomes: {r['outcomes']['counts']}")
    if len(results) > 1:
        lo, hi = min(results), max(results)
        print(f"\npeak RSS, ingest at {hi:,} / at {lo:,}: "
              f"{results[hi]['ingest']['peak_rss_mb'] / results[lo]['ingest']['peak_rss_mb']:.2f}x (1.00x = flat)")
    print("targets at 1M: first audit <= 10x polars; ingest <= 1.5x floor; reclassify <= 2x polars; report <= 3 s; "
          "re-ingest <= 2%; peak RSS <= 2048 MB and flat")


if __name__ == "__main__":
    main()
