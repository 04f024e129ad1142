"""The audit on Apache Spark gives the local audit's answers: a real SparkSession (local[2]), real files.

Parity on sample_logs plus a generated set of over 20,000 runs of every shape the rule cases and the sample logs
hold, with French, Portuguese, Japanese and Chinese declines in a CRLF file and whole files duplicated across
folders (shards): outcomes, rule codes, scores, review keys, counts, the quarantine and the ruleset identical.
Then a second Spark run reads only the file that grew.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from runaudit.audit import summary
from runaudit.classify import classify, ruleset_hash
from runaudit.config import load_config
from runaudit.ingest import ingest
from runaudit.store import Store

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"
pytestmark = pytest.mark.slow

COLS = ("replace(source_file, 'file:', '') AS f, source_line, outcome, rule_code, sub_reason, signal, refusal_score, "
        "done_failures, idem_key, reported_success, ruleset, shape, task_id, ts")


@pytest.fixture(scope="module")
def spark() -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("pyspark is not installed (pip install '.[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        if os.environ.get("CI"):
            raise RuntimeError("Java is not installed: .ci/run installs openjdk-17-jre-headless")
        pytest.skip("Java is not installed")
    session = (SparkSession.builder.master("local[2]").appName("runaudit-tests")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "4").config("spark.driver.memory", "1g").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _templates() -> list[str]:
    lines: list[str] = []
    for f in sorted((ROOT / "tests" / "rules" / "cases").glob("*.yml")):
        for case in yaml.safe_load(f.read_text(encoding="utf-8")).values():
            if "config" not in case:
                lines += [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in case["records"]]
    for f in sorted(SAMPLE.rglob("*.jsonl")):
        lines += [x for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
    return lines


def _variant(line: str, v: int) -> str:
    """The same record made a different line (a key no reader knows), so that each variant is a run of its own."""
    try:
        rec = json.loads(line)
    except ValueError:
        return line
    if not isinstance(rec, dict):
        return line
    return json.dumps({**rec, "_variant": v}, ensure_ascii=False)


def _corpus(base: Path) -> list[Path]:
    shutil.copytree(SAMPLE, base / "sample", ignore=shutil.ignore_patterns("runaudit.toml"))
    gen = base / "generated"
    gen.mkdir()
    tpl = _templates()
    for v in range(52):
        (gen / f"variant-{v:02d}.jsonl").write_text("\n".join(_variant(x, v) for x in tpl) + "\n", encoding="utf-8")
    intl = [
        ("Je ne peux pas vous aider avec cette demande.", "fr-decline"),
        ("Désolé, mais je ne peux pas fournir ces informations.", "fr-decline"),
        ("Não posso ajudar com isso, desculpe.", "pt-decline"),
        ("申し訳ありませんが、そのご依頼にはお手伝いできません。", "ja-decline"),
        ("抱歉，我无法提供这方面的帮助。", "zh-decline"),
        ("Voici le résumé de la semaine : les ventes ont augmenté de 4 %.", "fr-ok"),
        ("O relatório está pronto e foi enviado à equipe. 👍", "pt-ok"),
        ("今週の売上は前週比で4％増加しました。", "ja-ok"),
    ]
    rows = [json.dumps({"run_id": f"intl-{i}-{k}", "task_id": tag, "ts": f"2026-06-{10 + k % 15:02d}T03:00:00Z",
                        "status": "success", "http_status": 200, "text": text, "prompt": "Traduire / traduzir"},
                       ensure_ascii=False)
            for k in range(40) for i, (text, tag) in enumerate(intl)]
    (base / "generated" / "intl-crlf.jsonl").write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-8"))
    shard = base / "shard-b"  # the same files again in another folder: every line a duplicate
    shard.mkdir()
    for name in ("variant-03.jsonl", "variant-17.jsonl", "intl-crlf.jsonl"):
        shutil.copy(gen / name, shard / name)
    return [base]


def _local(paths: list[Path], cfg: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, Any]]:
    with Store.open(":memory:") as s:
        ingest(s, paths, cfg)
        classify(s, cfg)
        return _snapshot(s)


def _snapshot(s: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, Any]]:
    runs = s.rows(f"SELECT {COLS} FROM audit_runs ORDER BY f, source_line, rule_code, refusal_score, idem_key")
    quar = s.rows("SELECT replace(source_file, 'file:', ''), source_line, reason, raw_bytes FROM quarantine "
                  "ORDER BY 1, 2")
    return runs, quar, summary(s)


def test_the_spark_audit_equals_the_local_audit(spark: Any, tmp_path: Path) -> None:
    from runaudit import spark as ra_spark

    cfg = load_config(SAMPLE / "runaudit.toml")
    paths = _corpus(tmp_path / "logs")
    local_runs, local_q, local_sum = _local(paths, cfg)
    assert local_sum["runs"] >= 20_000
    assert {r[3] for r in local_runs} >= {"DE01", "DE02", "DE10", "IN01", "IN02", "DG01", "DG02", "OK00"}

    out = str(tmp_path / "out")
    res = ra_spark.audit(spark, [str(p) for p in paths], out, config=cfg)
    assert not res.errors and res.ruleset == ruleset_hash(cfg) == local_sum["ruleset"]
    assert res.runs_added == local_sum["runs"] and res.quarantined == len(local_q)
    with Store.open(tmp_path / "from-spark.duckdb") as s:
        loaded = ra_spark.load(out, s)
        assert loaded["runs_added"] == local_sum["runs"]
        spark_runs, spark_q, spark_sum = _snapshot(s)
        assert ra_spark.load(out, s)["runs_added"] == 0  # loading again adds nothing
    assert spark_q == local_q
    assert len(spark_runs) == len(local_runs)
    assert spark_runs == local_runs
    assert {k: v for k, v in spark_sum.items()} == local_sum

    # the intl declines are declined on both paths (a regex that folded only ASCII would pass them as ok)
    intl = [r for r in local_runs if r[0].endswith("intl-crlf.jsonl") and "/shard-b/" not in r[0]]
    assert {r[2] for r in intl if r[12].endswith("-decline")} == {"declined"}
    assert {r[2] for r in intl if r[12].endswith("-ok")} == {"ok"}

    # incremental: unchanged files are skipped; a grown file is read again and only its new line is a new run
    grown = tmp_path / "logs" / "generated" / "variant-05.jsonl"
    with open(grown, "a", encoding="utf-8") as f:
        f.write(json.dumps({"run_id": "late-1", "task_id": "digest", "status": "success", "http_status": 200,
                            "text": "I can't help with that request."}) + "\n")
    res2 = ra_spark.audit(spark, [str(p) for p in paths], out, config=cfg)
    assert res2.files_read == 1 and res2.files_unchanged == res.files - 1 and res2.runs_added == 1
    with Store.open(tmp_path / "from-spark.duckdb") as s:
        assert ra_spark.load(out, s)["runs_added"] == 1
        assert s.scalar("SELECT rule_outcome FROM audit_runs WHERE run_id = 'late-1'") == "declined"


def test_the_cli_reads_a_spark_audit_like_a_local_one(spark: Any, tmp_path: Path, invoke: Any) -> None:
    """report, flags and review work on the loaded results; a changed config is refused with a clear error."""
    from runaudit import spark as ra_spark
    from runaudit.errors import UsageError

    out = str(tmp_path / "out")
    ra_spark.audit(spark, [str(SAMPLE)], out, config=SAMPLE / "runaudit.toml")
    db = str(tmp_path / "x.duckdb")
    invoke(["spark-load", out, "--db", db, "--json"])
    got = json.loads(invoke(["audit", "--db", db, "--json"]).stdout)
    with Store.open(":memory:") as s:
        ingest(s, [SAMPLE], load_config(SAMPLE / "runaudit.toml"))
        classify(s, load_config(SAMPLE / "runaudit.toml"))
        want = summary(s)
    assert got["outcomes"] == want["outcomes"] and got["ruleset"] == want["ruleset"]
    for cmd in (["flags", "--json"], ["review", "list", "--json"], ["report", "--out", str(tmp_path / "rep")]):
        invoke([*cmd, "--db", db])
    assert (tmp_path / "rep" / "report.html").is_file()
    with pytest.raises(UsageError, match="the config changed"):
        ra_spark.audit(spark, [str(SAMPLE)], out, config=None)
