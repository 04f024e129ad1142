"""The audit on Apache Spark: the same rules, evaluated by DuckDB inside each task.

``audit(spark, paths, out)`` reads log files from any Hadoop path (local, ``s3a://``, ``abfss://``, ``gs://``) with
Spark's ``binaryFile`` source, one file whole per row, so that a logged stream is never split. Each task writes
its file to a local temporary copy (same name and modification time) and runs :func:`runaudit.engine.audit_file`:
the local store's own ingest and classification on an in-memory DuckDB. No rule is translated to Spark SQL:
Spark only moves bytes and rows, and deduplicates runs by their identity (SHA-256 of the line and its occurrence
in the file) in the file order the local audit uses. Results are Parquet under ``out``:

* ``runs/ingest_id=N/`` the runs (every column of the local ``runs`` table; ``rid`` is ``file_id << 32 | n``,
  stable across runs of the job), ``classifications/ingest_id=N/`` their classification under the ruleset,
  ``quarantine/ingest_id=N/`` the lines that are not runs;
* ``manifest/ingest_id=N/`` one row per file read (path, size, modification time, file id, counts), so a second
  ``audit`` reads only new or changed files.

``load(out, store)`` brings those results into a runaudit database, after which ``audit``, ``flags``, ``report``,
``review`` and ``diff`` work on them as on a local audit. ``python -m runaudit.spark`` is the ``spark-submit``
entry (see docs/spark.md).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runaudit.config import Config, load_config
from runaudit.errors import InputFormatError, RunauditError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from runaudit.store import Store

_HASH_COLS = ("record_hash", "record_hash2")  # UBIGINT in DuckDB: Spark has no unsigned 64-bit type
_QHASH_COLS = ("line_hash", "line_hash2")
_CLASS_COLS = ("ruleset", "outcome", "sub_reason", "signal", "rule_code", "retryable", "refusal_score",
               "done_failures", "reported_success", "review_key", "refusal_kind")
_FILE_BITS = 32


@dataclass
class SparkAuditResult:
    """What one ``audit`` on Spark did."""

    out: str
    ingest_id: int
    ruleset: str
    files: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    lines: int = 0
    runs_added: int = 0
    duplicates: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


def _config(config: str | os.PathLike[str] | Config | None) -> Config:
    if isinstance(config, Config):
        return config
    return load_config(config)


# -- listing files -----------------------------------------------------------------------------------------

def _hadoop_fs(spark: Any, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    hp = jvm.org.apache.hadoop.fs.Path(path)
    return hp.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hp


def list_files(spark: Any, paths: list[str]) -> list[tuple[str, int, int]]:
    """Log files under ``paths`` as (qualified path, size, modification time in ms), in the order the local
    audit reads them: each folder's files by name, then its sub-folders by name (``runaudit.ingest.files.discover``)."""
    from runaudit.ingest import LOG_NAMES, LOG_SUFFIXES

    out: list[tuple[str, int, int]] = []
    seen: set[str] = set()

    def walk(fs: Any, status: Any) -> None:
        entries = sorted(fs.listStatus(status.getPath()), key=lambda s: s.getPath().getName())
        for s in entries:
            name = s.getPath().getName()
            if s.isFile() and (name.lower().endswith(LOG_SUFFIXES) or name in LOG_NAMES):
                add(s)
        for s in entries:
            if s.isDirectory():
                walk(fs, s)

    def add(s: Any) -> None:
        p = s.getPath().toString()
        if p not in seen:
            seen.add(p)
            out.append((p, int(s.getLen()), int(s.getModificationTime())))

    for raw in paths:
        fs, hp = _hadoop_fs(spark, raw)
        if not fs.exists(hp):
            raise InputFormatError(f"input path {raw} does not exist")
        st = fs.getFileStatus(hp)
        if st.isDirectory():
            walk(fs, st)
        else:
            add(st)
    if not out:
        raise InputFormatError(f"no log files under {', '.join(paths)}",
                               hint="runaudit reads *.jsonl, *.ndjson, *.json, their .gz and llm's logs.db")
    return out


# -- the task ----------------------------------------------------------------------------------------------

def _schemas(cfg: Config) -> tuple[pa.Schema, pa.Schema]:
    """The Arrow schemas of a task's runs and quarantine, read off the engine itself (an empty file)."""
    from runaudit.engine import audit_file

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "empty.jsonl"
        p.write_bytes(b"")
        fa = audit_file(str(p), cfg)
    return _spark_safe(fa.runs).schema, _spark_safe(fa.quarantine).schema


def _spark_safe(t: pa.Table) -> pa.Table:
    """Unsigned 64-bit digests as DECIMAL(20, 0) (exact; Spark has no unsigned type)."""
    import pyarrow as pa

    for name in (*_HASH_COLS, *_QHASH_COLS):
        if name in t.column_names:
            i = t.column_names.index(name)
            t = t.set_column(i, name, t.column(name).cast(pa.decimal128(20, 0)))
    return t


def _combined(runs: pa.Schema, quarantine: pa.Schema) -> pa.Schema:
    import pyarrow as pa

    fields = [pa.field("kind", pa.string()), pa.field("file_id", pa.int64()), pa.field("file_order", pa.int64())]
    fields += [pa.field(f.name, f.type) for f in runs]
    fields += [pa.field("q_" + f.name, f.type) for f in quarantine]
    fields += [pa.field("f_counts", pa.string())]
    return pa.schema(fields)


def _task(cfg: Config, schema: pa.Schema, order: dict[str, tuple[int, int]]) -> Any:
    """The function each Spark task runs over its batches of whole files."""

    def run(batches: Any) -> Any:
        import pyarrow as pa

        from runaudit.engine import audit_file

        for batch in batches:
            for row in batch.to_pylist():
                path, content, mtime = row["path"], row["content"], row["modificationTime"]
                file_id, file_order = order[path]
                name = path.rsplit("/", 1)[-1] or "log.jsonl"
                with tempfile.TemporaryDirectory(prefix="runaudit-") as d:
                    local = os.path.join(d, name)
                    with open(local, "wb") as f:
                        f.write(content)
                    ts = mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime) / 1000.0
                    os.utime(local, (ts, ts))
                    fa = audit_file(local, cfg, source=path)
                n = {"runs": fa.runs.num_rows, "quarantine": fa.quarantine.num_rows}
                cols: dict[str, Any] = {}
                runs, quarantine = _spark_safe(fa.runs), _spark_safe(fa.quarantine)
                total = n["runs"] + n["quarantine"] + 1
                kinds = ["run"] * n["runs"] + ["quarantine"] * n["quarantine"] + ["file"]
                for fld in schema:
                    if fld.name == "kind":
                        cols[fld.name] = pa.array(kinds, pa.string())
                    elif fld.name == "file_id":
                        cols[fld.name] = pa.array([file_id] * total, pa.int64())
                    elif fld.name == "file_order":
                        cols[fld.name] = pa.array([file_order] * total, pa.int64())
                    elif fld.name == "f_counts":
                        cols[fld.name] = pa.array([None] * (total - 1)
                                                  + [json.dumps({**fa.counts, "ruleset": fa.ruleset})], pa.string())
                    elif fld.name.startswith("q_") and fld.name[2:] in quarantine.column_names:
                        c = quarantine.column(fld.name[2:]).combine_chunks()
                        cols[fld.name] = pa.concat_arrays([pa.nulls(n["runs"], fld.type), c.cast(fld.type),
                                                           pa.nulls(1, fld.type)])
                    elif fld.name in runs.column_names:
                        c = runs.column(fld.name).combine_chunks()
                        cols[fld.name] = pa.concat_arrays([c.cast(fld.type), pa.nulls(n["quarantine"] + 1, fld.type)])
                    else:
                        cols[fld.name] = pa.nulls(total, fld.type)
                yield pa.RecordBatch.from_arrays([cols[f.name] for f in schema], schema=schema)

    return run


# -- the job -----------------------------------------------------------------------------------------------

def _exists(spark: Any, path: str) -> bool:
    fs, hp = _hadoop_fs(spark, path)
    return bool(fs.exists(hp))


def audit(spark: Any, paths: list[str] | str, out: str, *,
          config: str | os.PathLike[str] | Config | None = None) -> SparkAuditResult:
    """Audit log files on ``spark`` into Parquet under ``out`` (incremental: files already read, unchanged, are
    skipped; runs already stored are duplicates). Raises :class:`UsageError` when ``out`` holds an audit made
    under another ruleset (use a new ``out``, or load both into a database and reclassify there)."""
    import pyarrow as pa
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from runaudit.classify import ruleset_hash

    t0 = time.perf_counter()
    cfg = _config(config)
    rs = ruleset_hash(cfg)
    paths = [paths] if isinstance(paths, str) else list(paths)
    files = list_files(spark, paths)
    out = out.rstrip("/")
    prev: dict[str, dict[str, Any]] = {}
    ingest_id = 1
    if _exists(spark, f"{out}/manifest"):
        for r in spark.read.parquet(f"{out}/manifest").collect():
            d = r.asDict()
            if d["ruleset"] != rs:
                raise UsageError(f"{out} holds an audit under ruleset {d['ruleset']}, not {rs} (the config changed)",
                                 hint="write to a new --out, or `runaudit spark-load` both and run `runaudit audit`")
            prev[d["path"]] = d  # the latest row per path wins (ingest ids grow)
            ingest_id = max(ingest_id, int(d["ingest_id"]) + 1)
    next_id = max((int(d["file_id"]) for d in prev.values()), default=0) + 1
    order: dict[str, tuple[int, int]] = {}
    todo: list[str] = []
    res = SparkAuditResult(out=out, ingest_id=ingest_id, ruleset=rs, files=len(files))
    for i, (p, size, mtime) in enumerate(files):
        old = prev.get(p)
        if old is not None and int(old["size"]) == size and int(old["mtime_ms"]) == mtime:
            res.files_unchanged += 1
            continue
        fid = int(old["file_id"]) if old is not None else next_id
        if old is None:
            next_id += 1
        order[p] = (fid, i)
        todo.append(p)
    if not todo:
        res.seconds = time.perf_counter() - t0
        return res
    runs_schema, q_schema = _schemas(cfg)
    combined = _combined(runs_schema, q_schema)
    spark_schema = from_arrow_schema(combined, prefer_timestamp_ntz=True)
    src = (spark.read.format("binaryFile").load(todo)
           .repartitionByRange(len(todo), F.col("path")))
    # each file is audited once: every later step reads the materialised rows, never the tasks again
    rows = src.mapInArrow(_task(cfg, combined, order), spark_schema).localCheckpoint(eager=True)
    try:
        run_cols = [f.name for f in runs_schema if f.name not in _CLASS_COLS]
        q_cols = [f.name for f in q_schema]
        ident = [*_HASH_COLS, "record_bytes", "record_occ"]
        runs = (rows.filter(F.col("kind") == "run")
                .withColumn("rid", (F.col("file_id") * F.lit(1 << _FILE_BITS)) + F.col("rid")))
        # the first copy in the local audit's file order wins; a run stored by an earlier ingest is a duplicate
        w = Window.partitionBy(*ident).orderBy("file_order", "source_line", "rid")
        runs = runs.withColumn("_n", F.row_number().over(w)).filter(F.col("_n") == 1).drop("_n")
        if _exists(spark, f"{out}/runs"):
            runs = runs.join(spark.read.parquet(f"{out}/runs").select(*ident), on=ident, how="left_anti")
        # materialised before anything is written: recomputed after the write, the anti-join against the stored
        # runs would find the new runs themselves and drop them (and their classification)
        runs = runs.withColumn("ingest_id", F.lit(ingest_id)).localCheckpoint(eager=True)
        quar = rows.filter(F.col("kind") == "quarantine").select(
            "file_order", *[F.col("q_" + c).alias(c) for c in q_cols])
        qident = [*_QHASH_COLS, "line_occ"]
        wq = Window.partitionBy(*qident).orderBy("file_order", "source_line")
        quar = quar.withColumn("_n", F.row_number().over(wq)).filter(F.col("_n") == 1).drop("_n", "file_order")
        if _exists(spark, f"{out}/quarantine"):
            quar = quar.join(spark.read.parquet(f"{out}/quarantine").select(*qident), on=qident, how="left_anti")
        quar = quar.withColumn("ingest_id", F.lit(ingest_id)).localCheckpoint(eager=True)
        runs.select(*run_cols).write.mode("append").partitionBy("ingest_id").parquet(f"{out}/runs")
        runs.select("rid", *_CLASS_COLS, "ingest_id").write.mode("append").partitionBy("ingest_id").parquet(
            f"{out}/classifications")
        quar.write.mode("append").partitionBy("ingest_id").parquet(f"{out}/quarantine")
        res.runs_added = runs.count()
        res.quarantined = quar.count()
        task_runs = rows.filter(F.col("kind") == "run").count()
        manifest = []
        by_id = {fid: p for p, (fid, _) in order.items()}
        size_of = {p: (s, m) for p, s, m in files}
        for r in rows.filter(F.col("kind") == "file").select("file_id", "f_counts").collect():
            p = by_id[int(r["file_id"])]
            counts = json.loads(r["f_counts"])
            if "error" in counts:
                res.errors.append({"file": p, "error": counts["error"]})
            res.lines += int(counts.get("lines", 0))
            res.duplicates += int(counts.get("duplicates", 0))
            manifest.append({"path": p, "size": size_of[p][0], "mtime_ms": size_of[p][1],
                             "file_id": int(r["file_id"]), "ruleset": rs, "counts": r["f_counts"],
                             "ingest_id": ingest_id, "read_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        res.duplicates += task_runs - res.runs_added
        res.files_read = len(manifest)
        mschema = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ms", pa.int64()),
                             ("file_id", pa.int64()), ("ruleset", pa.string()), ("counts", pa.string()),
                             ("ingest_id", pa.int64()), ("read_at", pa.string())])
        mdf = spark.createDataFrame([tuple(m[f.name] for f in mschema) for m in manifest],
                                    schema=from_arrow_schema(mschema))
        mdf.write.mode("append").partitionBy("ingest_id").parquet(f"{out}/manifest")
        # the configuration, so that a database loading these results records the ruleset it was made under
        spark.createDataFrame([(rs, json.dumps({"config": cfg.fingerprint_data()}), cfg.text or "",
                                cfg.source or "", ingest_id)],
                              "ruleset string, config string, config_text string, source string, ingest_id long"
                              ).write.mode("append").partitionBy("ingest_id").parquet(f"{out}/rulesets")
    finally:
        rows.unpersist()
    res.seconds = time.perf_counter() - t0
    return res


# -- back into a database -----------------------------------------------------------------------------------

def _parquet(out: str, table: str) -> str:
    return str(Path(out) / table / "**" / "*.parquet")


LOAD_RUNS_SQL = """
INSERT INTO runs BY NAME
SELECT p.* EXCLUDE (rid, record_hash, record_hash2, ingest_id),
       $base + row_number() OVER (ORDER BY p.ingest_id, p.rid) AS rid,
       p.record_hash::UBIGINT AS record_hash, p.record_hash2::UBIGINT AS record_hash2, p.ingest_id::INTEGER AS ingest_id
FROM read_parquet($runs, hive_partitioning = true, union_by_name = true) p
ANTI JOIN runs r ON r.record_hash = p.record_hash::UBIGINT AND r.record_hash2 = p.record_hash2::UBIGINT
              AND r.record_bytes = p.record_bytes AND r.record_occ = p.record_occ
"""


def check_results(out: str | os.PathLike[str]) -> str:
    """``out`` as a string if it holds a Spark audit's results, else :class:`InputFormatError`; callers check it
    before they create a database, so that a wrong folder leaves none behind."""
    out = str(out)
    if not (Path(out) / "runs").is_dir():
        raise InputFormatError(f"{out} holds no Spark audit (no runs/ folder)",
                               hint="pass the --out folder of `runaudit spark-audit`, copied to local disk")
    return out


def load(out: str | os.PathLike[str], store: Store) -> dict[str, int]:
    """Load a Spark audit's Parquet (a local folder: DuckDB reads it) into ``store``: runs, their classification
    under the Spark job's ruleset (made current), and the quarantine. Incremental: runs and quarantined lines
    already in the store (by identity) are left out, so loading again adds nothing."""
    out = check_results(out)
    rsets = store.rows(f"SELECT ruleset, any_value(config), any_value(config_text), any_value(source) "
                       f"FROM read_parquet('{_parquet(out, 'rulesets')}', hive_partitioning = true) GROUP BY 1")
    if len(rsets) != 1:
        raise RunauditError(f"{out} holds audits under {len(rsets)} rulesets; expected one")
    rs, cfg_json, cfg_text, source = rsets[0]
    with store.transaction():
        base = int(store.scalar("SELECT coalesce(max(rid), 0) FROM runs"))
        store.run("CREATE OR REPLACE TEMP TABLE _spark_ids AS SELECT rid AS spark_rid, ingest_id, record_hash, "
                  "record_hash2, record_bytes, record_occ FROM read_parquet($runs, hive_partitioning = true)",
                  {"runs": _parquet(out, "runs")})
        before = int(store.scalar("SELECT count(*) FROM runs"))
        store.run(LOAD_RUNS_SQL, {"base": base, "runs": _parquet(out, "runs")})
        added = int(store.scalar("SELECT count(*) FROM runs")) - before
        # the new rid of each Spark run: the one inserted (rid > base) with the same identity
        store.run("""INSERT INTO classifications BY NAME
            SELECT r.rid, c.ruleset, c.outcome, c.sub_reason, c.signal, c.rule_code, c.retryable, c.refusal_score,
                   c.done_failures, c.reported_success, c.review_key AS idem_key, c.refusal_kind
            FROM read_parquet($cls, hive_partitioning = true) c
            JOIN _spark_ids s ON s.spark_rid = c.rid AND s.ingest_id = c.ingest_id
            JOIN runs r ON r.rid > $base AND r.record_hash = s.record_hash::UBIGINT
                 AND r.record_hash2 = s.record_hash2::UBIGINT AND r.record_bytes = s.record_bytes
                 AND r.record_occ = s.record_occ""", {"cls": _parquet(out, "classifications"), "base": base})
        qbefore = int(store.scalar("SELECT count(*) FROM quarantine"))
        qpath = Path(out) / "quarantine"
        if qpath.is_dir() and any(qpath.rglob("*.parquet")):
            store.run("""INSERT INTO quarantine BY NAME
                SELECT q.* EXCLUDE (line_hash, line_hash2, ingest_id), q.line_hash::UBIGINT AS line_hash,
                       q.line_hash2::UBIGINT AS line_hash2, q.ingest_id::INTEGER AS ingest_id
                FROM read_parquet($q, hive_partitioning = true, union_by_name = true) q
                ANTI JOIN quarantine x ON x.line_hash = q.line_hash::UBIGINT AND x.line_hash2 = q.line_hash2::UBIGINT
                     AND x.line_occ = q.line_occ AND x.source_file = q.source_file""",
                      {"q": _parquet(out, "quarantine")})
        quarantined = int(store.scalar("SELECT count(*) FROM quarantine")) - qbefore
        n = int(store.scalar("SELECT count(*) FROM classifications WHERE ruleset = ?", [rs]))
        seq = int(store.scalar("SELECT coalesce(max(seq), 0) + 1 FROM rulesets"))
        from runaudit.rules.refusal import DETECTOR_VERSION

        meta = json.loads(cfg_json)
        meta.update({"detector": DETECTOR_VERSION, "source": source or None})
        store.run("DELETE FROM rulesets WHERE ruleset = ?", [rs])
        store.run("INSERT INTO rulesets VALUES (?, now()::TIMESTAMP, ?, ?, ?)", [rs, json.dumps(meta), n, seq])
        store.set_meta("current_ruleset", rs)
        if cfg_text:
            store.set_meta("config_text", cfg_text)
            store.set_meta("config_source", (source or "config") + " (from the Spark audit)")
        store.run("DROP TABLE _spark_ids")
    return {"runs_added": added, "quarantined": quarantined, "classified": n}


def main(argv: list[str] | None = None) -> int:
    """``spark-submit runaudit/spark.py PATH... --out DIR [--config FILE]``: audit on the submitting cluster."""
    import argparse

    from pyspark.sql import SparkSession

    ap = argparse.ArgumentParser(prog="runaudit.spark")
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config")
    a = ap.parse_args(argv)
    spark = SparkSession.builder.appName("runaudit").getOrCreate()
    try:
        res = audit(spark, a.paths, a.out, config=a.config)
    except RunauditError as e:
        print(f"error: {e}", file=__import__("sys").stderr)
        return int(e.exit_code)
    print(json.dumps(res.as_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
