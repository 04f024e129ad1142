"""One runner for the YAML rule cases in tests/rules/cases/*.yml.

Each file holds named cases: ``records`` (JSON objects or raw lines, ingested as one JSONL file), optional
``config`` (TOML text), and ``expect``: a list (one per record, in order) of {outcome, rule, signal,
sub_reason, done_failures} — only the keys given are checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from runaudit.classify import classify
from runaudit.config import Config, parse_config
from runaudit.ingest import ingest
from runaudit.store import Store

CASES_DIR = Path(__file__).parent / "cases"


def _load() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in sorted(CASES_DIR.glob("*.yml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        for name, case in data.items():
            out.append((f"{f.stem}::{name}", case))
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "rule_case" in metafunc.fixturenames:
        cases = _load()
        metafunc.parametrize("rule_case", [c for _, c in cases], ids=[n for n, _ in cases])


def test_rule_case(rule_case: dict[str, Any], tmp_path: Path) -> None:
    import tomllib

    cfg = parse_config(tomllib.loads(rule_case["config"])) if "config" in rule_case else Config()
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rule_case["records"]]
    log = tmp_path / "case.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Store.open(":memory:") as store:
        res = ingest(store, [log], cfg)
        assert res.ingested == len(lines), res.as_dict()
        classify(store, cfg)
        got = store.query("SELECT outcome, rule_code AS rule, signal, sub_reason, done_failures, retryable "
                          "FROM audit_runs ORDER BY source_line").to_dicts()
    assert len(got) == len(rule_case["expect"])
    for i, (g, want) in enumerate(zip(got, rule_case["expect"], strict=True)):
        for k, v in want.items():
            assert g[k] == v, f"record {i}: {k} = {g[k]!r}, expected {v!r} (got {g})"
