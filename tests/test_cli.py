"""The command line: help for every command, exit codes, JSON output, errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_LOGS, flat, write_jsonl

COMMANDS = [["ingest"], ["audit"], ["flags"], ["diff"], ["rules"], ["rules", "list"], ["rules", "explain"],
            ["review"], ["review", "export"], ["review", "list"], ["review", "resolve"], ["review", "serve"],
            ["report"], ["judge"],
            ["quarantine"], ["spark-audit"], ["spark-load"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help(invoke, cmd: list[str]) -> None:  # type: ignore[no-untyped-def]
    res = invoke([*cmd, "--help"])
    assert "Usage" in res.stdout
    # flags read as flags (no "<bool>"), and bracketed config sections survive (no markup eaten)
    assert "<bool>" not in res.stdout


def test_ingest_json_counts(invoke, tmp_path: Path, db_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = write_jsonl(tmp_path / "a.jsonl", [flat(run_id="1"), "", "bad"])
    res = invoke(["ingest", log, "--db", db_path, "--json"])
    out = json.loads(res.stdout)
    assert {k: out[k] for k in ("files", "lines", "ingested", "duplicates", "blank", "quarantined")} == {
        "files": 1, "lines": 3, "ingested": 1, "duplicates": 0, "blank": 1, "quarantined": 1}


def test_audit_json_and_fail_on(invoke, db_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = invoke(["audit", SAMPLE_LOGS, "--db", db_path, "--json"])
    out = json.loads(res.stdout)
    for key in ("runs", "outcomes", "false_success", "reported_success_rate", "true_success_rate", "quarantined",
                "ruleset"):
        assert key in out
    assert set(out["outcomes"]) == {"ok", "infra_error", "declined", "degraded"}
    assert sum(out["outcomes"].values()) == out["runs"]
    invoke(["audit", "--db", db_path, "--fail-on", "false-success"], code=1)
    invoke(["audit", "--db", db_path, "--fail-on", "bogus"], code=2, stderr_has="--fail-on")


def test_flags_csv_and_json(invoke, db_path: Path) -> None:  # type: ignore[no-untyped-def]
    invoke(["audit", SAMPLE_LOGS, "--db", db_path])
    csv_out = invoke(["flags", "--db", db_path, "--csv"]).stdout
    assert csv_out.splitlines()[0].startswith("run_id,task_id,ts,reported_status,outcome")
    rows = json.loads(invoke(["flags", "--db", db_path, "--json"]).stdout)
    assert rows and all(r["outcome"] != "ok" for r in rows)


def test_errors_have_no_traceback(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    invoke(["ingest", tmp_path / "missing", "--db", tmp_path / "x.duckdb"], code=3, stderr_has="does not exist")
    invoke(["flags", "--db", tmp_path / "none.duckdb"], code=4, stderr_has="no runaudit database")
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"junk" * 1000)
    invoke(["audit", "--db", bad], code=4, stderr_has=str(bad))
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[classify]\nnot_a_key = 1\n")
    invoke(["audit", SAMPLE_LOGS, "--db", tmp_path / "y.duckdb", "--config", cfg], code=3, stderr_has="not_a_key")
    invoke(["audit", SAMPLE_LOGS, "--db", tmp_path / "no" / "such" / "x.duckdb"], code=4, stderr_has="does not exist")


def test_unwritable_outputs_are_named_with_their_own_exit_code(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "o.duckdb"
    invoke(["audit", SAMPLE_LOGS, "--db", db])
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder is needed")
    # a folder under a regular file can never be created, whoever runs the test (root ignores permissions)
    invoke(["report", "--db", db, "--out", blocker / "r"], code=6, stderr_has=str(blocker))
    invoke(["review", "export", "--db", db, "--dir", blocker / "q"], code=6, stderr_has=str(blocker))
    invoke(["flags", "--db", db, "--json", "--csv"], code=2, stderr_has="alternatives")


def test_rules_list_and_explain(invoke) -> None:  # type: ignore[no-untyped-def]
    out = invoke(["rules", "list"]).stdout
    for code in ("IN01", "DE01", "DE10", "DG01", "DN04", "OK00", "CL01"):
        assert code in out
    assert "Matches" in invoke(["rules", "explain", "DE10"]).stdout
    invoke(["rules", "explain", "ZZ99"], code=2, stderr_has="no rule")


def test_every_command_is_documented(invoke) -> None:  # type: ignore[no-untyped-def]
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for cmd in ("ingest", "audit", "flags", "diff", "rules", "review", "report", "judge"):
        assert f"runaudit {cmd}" in readme


def test_flags_borderline_lists_uncertain_runs(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "b.duckdb"
    log = write_jsonl(tmp_path / "b.jsonl", [
        flat(run_id="edge", text="That is a delicate subject. Your neighbour owns the shed, so ask them when they "
                                 "are home; most people are happy to hand back a borrowed ladder."),
        flat(run_id="clear")])
    invoke(["audit", log, "--db", db])
    rows = json.loads(invoke(["flags", "--db", db, "--borderline", "--json"]).stdout)
    assert [r["run_id"] for r in rows] == ["edge"] and 0.25 <= rows[0]["refusal_score"] <= 0.75


def test_empty_folder_is_an_input_error(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty").mkdir()
    invoke(["ingest", tmp_path / "empty", "--db", tmp_path / "x.duckdb"], code=3, stderr_has="no log files")


@pytest.mark.parametrize("toml, key", [
    ('[ingest]\nmax_line_bytes = "abc"\n', "max_line_bytes"),
    ("[ingest]\nmax_line_bytes = 0\n", "max_line_bytes"),
    ('[classify]\nrefusal_threshold = "high"\n', "refusal_threshold"),
    ("[classify]\nrefusal_threshold = nan\n", "refusal_threshold"),
    ("[classify]\nambiguous_band = [1]\n", "ambiguous_band"),
    ("[classify]\nambiguous_band = [0.9, 0.1]\n", "ambiguous_band"),
    ("[report]\nweeks = -2\n", "weeks"),
    ('[done]\nmust_match = "(?=x)"\n', "must_match"),
    ('[done]\nmust_not_match = "(a)\\\\1"\n', "must_not_match"),
    ('[topics]\nx = ["regex:(?<=a)b"]\n', "topics"),
])
def test_bad_config_values_are_named(invoke, tmp_path: Path, toml: str, key: str) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    log = write_jsonl(tmp_path / "a.jsonl", [flat(run_id="1")])
    res = invoke(["audit", log, "--db", tmp_path / "x.duckdb", "--config", cfg], code=3, stderr_has=key)
    assert "Traceback" not in res.stderr


def test_the_config_is_remembered_and_named(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A plain `audit` after `audit --config` classifies under the same config: no silent ruleset change."""
    db = tmp_path / "c.duckdb"
    first = json.loads(invoke(["audit", SAMPLE_LOGS, "--db", db, "--config", SAMPLE_LOGS / "runaudit.toml",
                               "--json"]).stdout)
    assert first["config"] == str((SAMPLE_LOGS / "runaudit.toml").absolute())
    again = json.loads(invoke(["audit", "--db", db, "--json"]).stdout)
    assert again["ruleset"] == first["ruleset"] and again["outcomes"] == first["outcomes"]
    assert again["false_success"] == first["false_success"] and again["classified_now"] == 0
    assert "remembered in the database" in again["config"]
    assert "config: " in invoke(["audit", "--db", db]).stdout
    # a config file beside the database is found too, and is then the one remembered
    (tmp_path / "runaudit.toml").write_text("[classify]\nrefusal_threshold = 0.6\n")
    third = json.loads(invoke(["audit", "--db", db, "--json"]).stdout)
    assert third["config"] == str((tmp_path / "runaudit.toml").absolute()) and third["ruleset"] != first["ruleset"]
    # every reading command names the ruleset and config it shows (stderr: stdout stays JSON/CSV/text as promised)
    line = f"ruleset: {third['ruleset']}   config: {third['config']}"
    for cmd in (["flags"], ["flags", "--csv"], ["review", "list"], ["quarantine"], ["diff"]):
        assert line in invoke([*cmd, "--db", db]).stderr, cmd
    q = json.loads(invoke(["quarantine", "--db", db, "--json"]).stdout)
    d = json.loads(invoke(["diff", "--db", db, "--json"]).stdout)
    assert q["ruleset"] == third["ruleset"] and q["config"] == third["config"] == d["config"]


def test_new_user_walk_states_and_inputs(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "t.duckdb"
    empty = tmp_path / "empty"
    empty.mkdir()
    invoke(["audit", empty, "--db", db], code=3, stderr_has=f"no log files under {empty}")
    invoke(["audit", tmp_path / "nonexistent", "--db", db], code=3, stderr_has="does not exist")
    assert not db.exists()  # a failed first audit leaves no empty database behind
    invoke(["spark-load", empty, "--db", db], code=3, stderr_has="holds no Spark audit")
    assert not db.exists()
    log = write_jsonl(tmp_path / "a.jsonl", [flat(run_id="1"), "not json at all"])
    invoke(["audit", "--db", log], code=4, stderr_has="not a DuckDB database: it looks like a log file")
    assert log.read_text().startswith("{")  # untouched
    invoke(["flags", "--db", db], code=4)  # no database yet
    invoke(["ingest", log, "--db", db])
    invoke(["flags", "--db", db], code=7, stderr_has="no classification yet")
    invoke(["audit", "--db", db], stdout_has="runaudit quarantine")
    invoke(["diff", "--db", db], code=7, stderr_has="nothing to compare")
    out = invoke(["quarantine", "--db", db]).stdout
    assert "a.jsonl:2  not_json" in out and "not json at all" in out and "1 quarantined line(s)" in out
    assert json.loads(invoke(["quarantine", "--db", db, "--json"]).stdout)["total"] == 1
    explain = invoke(["rules", "explain", "DE01"]).stdout
    assert "``" not in explain and "**" not in explain and "Matches:" in explain
