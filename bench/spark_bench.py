"""The Spark path's throughput at 2 and 4 local cores against the local path, in one run (issue 19).

    python bench/spark_bench.py [--files 20] [--runs-per-file 2000] [--dir /tmp/runaudit-spark-bench]

Generates realistic logs (bench/realistic.py) split into files, then in fresh subprocesses: the local audit
(ingest + classify into a new DuckDB file), and ``runaudit.spark.audit`` on ``local[2]`` and ``local[4]``
into a new output folder (the session start is timed apart). Prints seconds, runs per second and the ratio to
the local path, and checks that every path found the same outcome counts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.realistic import generate  # noqa: E402

LOCAL = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from runaudit.classify import classify
from runaudit.config import Config
from runaudit.ingest import ingest
from runaudit.store import Store
t = time.perf_counter()
with Store.open(sys.argv[2]) as s:
    ingest(s, [sys.argv[1]], Config()); classify(s, Config())
    counts = dict(s.rows("SELECT outcome, count(*) FROM audit_runs GROUP BY 1"))
print(json.dumps({{"seconds": time.perf_counter() - t, "counts": counts}}))
"""

SPARK = r"""
import json, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master(sys.argv[3]).config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "8").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
start = time.perf_counter() - t0
import duckdb
from runaudit import spark as ra_spark
from runaudit.config import Config
t = time.perf_counter()
res = ra_spark.audit(spark, [sys.argv[1]], sys.argv[2], config=Config())
sec = time.perf_counter() - t
counts = dict(duckdb.sql(f"SELECT outcome, count(*) FROM read_parquet('{{sys.argv[2]}}/classifications/**/*.parquet') "
                         "GROUP BY 1").fetchall())
print(json.dumps({{"seconds": sec, "session_start": start, "counts": counts, "runs": res.runs_added}}))
"""


def _run(code: str, *args: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code.format(root=str(ROOT)), *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--runs-per-file", type=int, default=2000)
    ap.add_argument("--dir", default="/tmp/runaudit-spark-bench")
    a = ap.parse_args()
    d = Path(a.dir)
    logs = d / f"logs-{a.files}x{a.runs_per_file}"
    if not logs.exists():
        logs.mkdir(parents=True)
        big = d / "all.jsonl"
        generate(str(big), a.files * a.runs_per_file)
        lines = big.read_text(encoding="utf-8").splitlines(keepends=True)
        for i in range(a.files):
            (logs / f"part-{i:03d}.jsonl").write_text("".join(lines[i * a.runs_per_file:(i + 1) * a.runs_per_file]),
                                                      encoding="utf-8")
        big.unlink()
    n = a.files * a.runs_per_file
    db = d / "local.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    r = {"local": _run(LOCAL, str(logs), str(db))}
    for cores in (2, 4):
        out = d / f"out-{cores}"
        shutil.rmtree(out, ignore_errors=True)
        r[f"spark local[{cores}]"] = _run(SPARK, str(logs), str(out), f"local[{cores}]")
    base = r["local"]["seconds"]
    print(f"\n{n:,} runs in {a.files} files; machine cores: {__import__('os').cpu_count()}")
    print(f"{'path':<18}{'seconds':>9}{'runs/s':>10}{'x local':>9}{'session start s':>17}")
    for k, v in r.items():
        print(f"{k:<18}{v['seconds']:>9.1f}{n / v['seconds']:>10.0f}{v['seconds'] / base:>9.2f}"
              f"{v.get('session_start', 0):>17.1f}")
    same = all(v["counts"] == r["local"]["counts"] for v in r.values())
    print(f"outcome counts identical on every path: {same}  {r['local']['counts']}")


if __name__ == "__main__":
    main()
