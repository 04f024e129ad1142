"""Speed and memory of ingest and reclassification, as ratios to a bare polars scan of the same file.

    python bench/ingest_bench.py --runs 1000000 [--dir /tmp/runaudit-bench] [--generator module:function]

Generates N flat runs (~2 KB each, a realistic mix of outcomes) once, then times each stage in a fresh
subprocess (so peak RSS is per stage):

* baseline A: ``polars.scan_ndjson(f, ignore_errors=True).select(pl.len()).collect()`` — the count-only scan
  the issue names;
  polars answers it without parsing the records;
* baseline B: ``polars.scan_ndjson(f, ignore_errors=True).collect().height`` — a scan that parses every record;
* runaudit ingest of the first quarter of the file (peak memory must not grow with the input) and of the
  whole file into a new DuckDB file, re-ingest of the unchanged file, first classification,
  reclassification after a rule change, the weekly report for the last week, and ``audit PATH``
  (ingest + classify) on fresh logs.

The baselines are the median of three runs (they vary by 2x between runs on a shared 2-core machine).

``--generator`` takes ``module:function(path, n)`` to benchmark another generator's logs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.realistic import infra_failure  # noqa: E402

WORDS = ("the pipeline summary report data analysis customer order shipment weekly metrics growth revenue "
         "incident server latency refund account invoice billing release deploy migration cache queue").split()


def generate(path: str, n: int, seed: int = 7) -> None:
    """N flat records, ~2 KB each: 80% ok, 5% 529, 2% 429, 1% timeout, 3% refusal stop, 4% text refusal,
    2% truncated, 2% empty. Every line is valid JSON: polars' NDJSON reader fails on any bad line, even with
    ignore_errors, so the baseline could not read a file holding some (the quarantine path is in the tests)."""
    rng = random.Random(seed)
    paras = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(110, 150))) for _ in range(400)]
    refusals = ["I'm sorry, but I can't help with that request.",
                "I can't provide that, but here is a safer alternative: contact your administrator.",
                "It's not appropriate for me to write that. Please consult a professional instead."]
    tasks = ["nightly-summary", "support-reply", "extract-invoice", "translate", "classify-ticket", "digest"]
    t0 = 1_780_000_000
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            r = rng.random()
            rec = {"run_id": f"r-{i}", "task_id": tasks[i % len(tasks)],
                   "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + i * 30)),
                   "model": "claude-sonnet-5", "prompt": "Summarise: " + paras[i % 400][:800],
                   "http_status": 200, "stop_reason": "end_turn",
                   "text": "## Summary\n" + paras[(i * 7) % 400] + "\n\n## Details\n" + paras[(i * 13) % 400][:300],
                   "status": "success", "latency_ms": rng.randint(300, 9000),
                   "usage": {"input_tokens": rng.randint(200, 900), "output_tokens": rng.randint(50, 800)},
                   "error": None}
            if infra_failure(rec, r):
                pass
            elif r < 0.11:
                rec.update(stop_reason="refusal", text="")
            elif r < 0.15:
                rec.update(text=refusals[i % 3])
            elif r < 0.17:
                rec.update(stop_reason="max_tokens", text=rec["text"][:300])
            elif r < 0.19:
                rec.update(text="")
            f.write(json.dumps(rec) + "\n")


STAGE = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
stage, path, db = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
out = {{}}
if stage == "polars_count":
    import polars as pl
    out["n"] = pl.scan_ndjson(path, ignore_errors=True).select(pl.len()).collect().item()
elif stage == "polars_parse":
    import polars as pl
    out["n"] = pl.scan_ndjson(path, ignore_errors=True).collect().height
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
        out["result"] = write_report(s, Config(), tempfile.mkdtemp(), week="last").__dict__
    elif stage == "audit_fresh":
        from runaudit.ingest import ingest
        from runaudit.classify import classify
        ingest(s, [path]); out["result"] = classify(s, Config()).__dict__
    s.close()
out["seconds"] = time.perf_counter() - t
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out, default=str))
"""


def run_stage(stage: str, path: str, db: str) -> dict:
    code = STAGE.format(root=str(HERE.parent))
    res = subprocess.run([sys.executable, "-c", code, stage, path, db], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200_000)
    ap.add_argument("--dir", default="/tmp/runaudit-bench")
    ap.add_argument("--generator", default=None, help="module:function(path, n) to generate the log")
    a = ap.parse_args()
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    log = d / f"runs-{a.runs}.jsonl"
    if not log.exists():
        gen = generate
        if a.generator:
            mod, fn = a.generator.split(":")
            gen = getattr(importlib.import_module(mod), fn)
        t = time.perf_counter()
        gen(str(log), a.runs)
        print(f"generated {log} ({log.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f}s")
    size_gb = log.stat().st_size / 1e9
    # warm the page cache so that every stage reads from memory, like the baseline
    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)
    db = str(d / "bench.duckdb")
    db2 = str(d / "bench-fresh.duckdb")
    for p in (db, db + ".wal", db2, db2 + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    r: dict[str, dict] = {}
    # the baselines are noisy on a small shared machine: median of three
    for k in ("polars_count", "polars_parse"):
        runs = sorted((run_stage(k, str(log), db) for _ in range(3)), key=lambda x: x["seconds"])
        r[k] = runs[1]
    # the first quarter of the same file, to show that peak memory does not grow with the input
    quarter = d / f"runs-{a.runs}-quarter.jsonl"
    if not quarter.exists():
        with open(log, "rb") as src, open(quarter, "wb") as dst:
            head = src.read(log.stat().st_size // 4)
            dst.write(head[: head.rfind(b"\n") + 1])
    db4 = str(d / "bench-quarter.duckdb")
    for p in (db4, db4 + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    r["ingest_quarter"] = run_stage("ingest", str(quarter), db4)
    r["ingest"] = run_stage("ingest", str(log), db)
    r["reingest"] = run_stage("reingest", str(log), db)
    r["classify"] = run_stage("classify", str(log), db)
    r["reclassify"] = run_stage("reclassify", str(log), db)
    r["report"] = run_stage("report", str(log), db)
    r["audit_fresh"] = run_stage("audit_fresh", str(log), db2)
    a_s, b_s = r["polars_count"]["seconds"], r["polars_parse"]["seconds"]
    print(f"\nruns: {a.runs:,}   file: {size_gb:.2f} GB   cores: {os.cpu_count()}")
    print(f"{'stage':<28}{'seconds':>9}{'peak RSS MB':>13}{'x count-scan':>14}{'x parse-scan':>14}")
    for k, label in (("polars_count", "polars scan+count (A)"), ("polars_parse", "polars scan+parse (B)"),
                     ("ingest_quarter", "ingest, first 1/4 of file"),
                     ("ingest", "runaudit ingest"), ("reingest", "re-ingest unchanged"),
                     ("classify", "first classification"), ("reclassify", "reclassify (rule change)"),
                     ("report", "weekly report (last week)"),
                     ("audit_fresh", "audit PATH (fresh db)")):
        s = r[k]["seconds"]
        print(f"{label:<28}{s:>9.2f}{r[k]['peak_rss_mb']:>13.0f}{s / a_s:>14.2f}{s / b_s:>14.2f}")
    print(f"\nre-ingest / first ingest: {r['reingest']['seconds'] / r['ingest']['seconds'] * 100:.2f}%")
    print(f"ingest peak RSS, whole file / first quarter: "
          f"{r['ingest']['peak_rss_mb'] / r['ingest_quarter']['peak_rss_mb']:.2f}x (1.00x = flat)")
    ing = r["ingest"]["result"]
    print(f"ingest counts: lines {ing['lines']:,} ingested {ing['ingested']:,} quarantined {ing['quarantined']:,}"
          f" duplicates {ing['duplicates']:,} blank {ing['blank']:,}")
    print("targets: ingest <= 2.5x, reclassify <= 0.5x, audit PATH <= 2.5x, re-ingest <= 2%, peak RSS <= 2048 MB, "
          "weekly report <= 3 s")


if __name__ == "__main__":
    main()
