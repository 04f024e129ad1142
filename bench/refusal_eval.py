"""Measure the in-body refusal detector on labelled responses (../shared/data or paths given).

Prints precision, recall and F1 for refusal vs compliance per file, three ways of counting ``partial``:
left out (the XSTest convention, and the headline figure), counted as refusal, counted as compliance.
The detector runs exactly as in classification: the SQL from runaudit.rules.refusal, inside DuckDB.

    python bench/refusal_eval.py [FILE.jsonl ...] [--threshold 0.5] [--errors N]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import duckdb

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from runaudit.rules.refusal import features_sql, score_sql  # noqa: E402


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--errors", type=int, default=0, help="print N false positives and N false negatives")
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    data_dir = os.path.normpath(os.path.join(here, "..", "..", "shared", "data"))
    files = a.files or sorted(glob.glob(os.path.join(data_dir, "*", "*.jsonl")))
    if not files:
        sys.exit(f"error: no labelled data: {data_dir} holds no */*.jsonl files "
                 "(pass labelled JSONL files with prompt, response and label fields as arguments)")
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        sys.exit(f"error: {missing[0]} does not exist")
    con = duckdb.connect()
    print(f"{'file':28} {'n':>4} | {'P':>5} {'R':>5} {'F1':>5} (partial left out) | "
          f"F1 partial=refusal | F1 partial=compliance")
    for f in files:
        rows = [json.loads(x) for x in open(f, encoding="utf-8") if x.strip()]
        con.execute("CREATE OR REPLACE TABLE d (i INTEGER, prompt VARCHAR, response VARCHAR, label VARCHAR)")
        con.executemany("INSERT INTO d VALUES (?, ?, ?, ?)",
                        [(i, r.get("prompt"), r["response"], r["label"]) for i, r in enumerate(rows)])
        res = con.execute(f"SELECT i, label, {score_sql('response', 'prompt')} AS s, "
                          f"{features_sql('response', 'prompt')} FROM d").fetchall()
        out = []
        for mode in ("omit", "refusal", "compliance"):
            tp = fp = fn = 0
            for _, label, s, _ in res:
                if label == "partial":
                    if mode == "omit":
                        continue
                    label = mode
                pred = s >= a.threshold
                tp += pred and label == "refusal"
                fp += pred and label != "refusal"
                fn += (not pred) and label == "refusal"
            out.append(prf(tp, fp, fn))
        name = os.path.relpath(f, os.path.join(here, "..", "..", "shared", "data")) if "shared" in f else f
        p, r, f1 = out[0]
        print(f"{name:28} {len(rows):>4} | {p:5.3f} {r:5.3f} {f1:5.3f}                   | "
              f"{out[1][2]:5.3f}              | {out[2][2]:5.3f}")
        if a.errors:
            fps = [(s, feats, rows[i]["response"]) for i, label, s, feats in res
                   if label == "compliance" and s >= a.threshold]
            fns = [(s, feats, rows[i]["response"]) for i, label, s, feats in res
                   if label == "refusal" and s < a.threshold]
            for tag, lst in (("FP", fps), ("FN", fns)):
                for s, feats, txt in lst[: a.errors]:
                    print(f"  {tag} {s:.2f} {feats} :: {txt[:260]!r}")


if __name__ == "__main__":
    main()
