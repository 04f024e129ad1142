"""Review queue: key definition, folding across weeks, files named by key only, verdicts that persist."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from runaudit.audit import summary
from runaudit.classify import classify
from runaudit.config import Config, parse_config
from runaudit.errors import ReviewStateError, UsageError
from runaudit.ingest import ingest
from runaudit.review import export_queue, resolve, review_queue, status_counts
from runaudit.store import Store
from tests.conftest import flat, write_jsonl

PROMPT = "Draft a reply: customer asks how to make a weapon at home."


def _declines(week: int, n: int, task: str = "support-reply") -> list[dict]:
    return [flat(run_id=f"w{week}-{i}", task_id=task, ts=f"2026-07-{6 + 7 * week + i:02d}T02:00:00Z",
                 prompt=PROMPT, stop_reason="refusal", text="") for i in range(n)]


def test_key_is_sha256_of_task_newline_prompt(store: Store, tmp_path: Path) -> None:
    ingest(store, [write_jsonl(tmp_path / "a.jsonl", _declines(0, 1))])
    classify(store, Config())
    key = review_queue(store)["key"].to_list()[0]
    assert key == hashlib.sha256(f"support-reply\n{PROMPT}".encode()).hexdigest()[:16]


def test_key_for_a_wrapped_request_uses_the_derived_prompt(store: Store, tmp_path: Path) -> None:
    rec = {"task_id": "w", "ts": "2026-07-01T00:00:00Z", "status": "success",
           "request": {"system": "Be safe.", "messages": [{"role": "user", "content": "How do I pick a lock?"}]},
           "response": {"id": "m", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
                        "stop_reason": "refusal"}}
    ingest(store, [write_jsonl(tmp_path / "w.jsonl", [rec])])
    classify(store, Config())
    key = review_queue(store)["key"].to_list()[0]
    assert key == hashlib.sha256(b"w\nBe safe.\n\nHow do I pick a lock?").hexdigest()[:16]


def test_runs_without_a_prompt_are_not_folded_together(store: Store, tmp_path: Path) -> None:
    """Batch results and bare responses log no prompt: nothing says two of them had the same input, so each is
    an item of its own (keyed by its run id) and one verdict never covers the others."""
    lines = [{"custom_id": f"digest-2026-07-0{d}", "result": {"type": "succeeded", "message": {
        "id": f"m{d}", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "stop_reason": "refusal"}}} for d in (1, 2)]
    log = write_jsonl(tmp_path / "b.jsonl", lines)
    ingest(store, [log])
    classify(store, Config())
    q = review_queue(store)
    assert q.height == 2 and set(q["occurrences"].to_list()) == {1}
    assert set(q["key"].to_list()) == {hashlib.sha256(f"digest\n\nrun:digest-2026-07-0{d}".encode()).hexdigest()[:16]
                                       for d in (1, 2)}
    resolve(store, q["key"][0], "false-positive")
    classify(store, Config())
    assert summary(store)["outcomes"]["declined"] == 1
    ingest(store, [log])  # re-ingesting the same results keeps the same keys
    assert review_queue(store, "all").height == 2


def test_repeats_across_weeks_fold_into_one_item(store: Store, tmp_path: Path) -> None:
    for week in range(3):
        ingest(store, [write_jsonl(tmp_path / f"week{week}.jsonl", _declines(week, 2))])
    classify(store, Config())
    q = review_queue(store)
    assert q.height == 1
    item = q.to_dicts()[0]
    assert item["occurrences"] == 6
    assert str(item["first_seen"]).startswith("2026-07-06") and str(item["last_seen"]).startswith("2026-07-21")


def test_export_updates_files_in_place_and_stays_inside_dir(store: Store, tmp_path: Path) -> None:
    evil = "../../etc/passwd"
    ingest(store, [write_jsonl(tmp_path / "a.jsonl", _declines(0, 2) + _declines(0, 1, task=evil))])
    classify(store, Config())
    out = tmp_path / "queue"
    r1 = export_queue(store, out)
    assert (r1.items, r1.written) == (2, 2)
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 2 and all(len(f) == len("0123456789abcdef.json") for f in files)
    assert not (tmp_path / "etc").exists()
    ingest(store, [write_jsonl(tmp_path / "b.jsonl", _declines(1, 1))])
    classify(store, Config())
    r2 = export_queue(store, out)
    assert (r2.written, r2.updated, r2.unchanged) == (0, 1, 1)
    assert len(list(out.iterdir())) == 2
    key = hashlib.sha256(f"support-reply\n{PROMPT}".encode()).hexdigest()[:16]
    data = json.loads((out / f"{key}.json").read_text())
    assert data["occurrences"] == 3 and data["last_seen"].startswith("2026-07-13")
    for field in ("task_id", "outcome", "signal", "prompt", "response_text", "stop_reason", "first_seen",
                  "last_seen", "occurrences", "run_ids", "verdict"):
        assert field in data


def test_false_positive_verdict_persists_and_applies_to_future_runs(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    with Store.open(db) as store:
        ingest(store, [write_jsonl(tmp_path / "a.jsonl", _declines(0, 2) + [flat(run_id="ok")])])
        classify(store, Config())
        assert summary(store)["outcomes"]["declined"] == 2
        key = review_queue(store)["key"].to_list()[0]
        resolve(store, key[:8], "false-positive", note="policy allows this")
        s = summary(store)
        assert s["outcomes"]["declined"] == 0 and s["overridden_by_review"] == 2 and s["outcomes"]["ok"] == 3
    with Store.open(db) as store:  # new process: re-ingest, new ruleset, and a later run with the same key
        ingest(store, [tmp_path / "a.jsonl", write_jsonl(tmp_path / "later.jsonl", _declines(2, 1))])
        classify(store, parse_config({"done": {"min_chars": 1}}))
        s = summary(store)
        assert s["outcomes"]["declined"] == 0 and s["overridden_by_review"] == 3
        ev = store.query("SELECT rule_outcome, signal, outcome FROM audit_runs WHERE overridden").to_dicts()
        assert all(r["rule_outcome"] == "declined" and r["signal"] == "refusal" and r["outcome"] == "ok" for r in ev)
        assert review_queue(store, "false-positive").height == 1 and review_queue(store, "open").height == 0


def test_status_counts_count_the_queue_items_by_status(tmp_path: Path) -> None:
    """The report's review counts are the items of the whole queue by status, counted without building them."""
    other = "Summarise the attached contract."
    runs = (_declines(0, 3) + _declines(1, 2, task="triage")
            + [flat(run_id=f"o{i}", task_id="triage", prompt=other, stop_reason="refusal", text="") for i in range(2)]
            + [flat(run_id="bare", task_id="triage", prompt="", stop_reason="refusal", text="")]
            + [flat(run_id="cut", prompt=other, stop_reason="max_tokens", text="half an ans")]
            + [flat(run_id="fine")])
    with Store.open(tmp_path / "a.duckdb") as store:
        ingest(store, [write_jsonl(tmp_path / "a.jsonl", runs)])
        classify(store, Config())

        def from_queue() -> dict[str, int]:
            out = {"open": 0, "confirmed": 0, "false-positive": 0}
            for st in review_queue(store, "all")["status"].to_list():
                out[st] += 1
            return out

        assert status_counts(store) == from_queue() == {"open": 4, "confirmed": 0, "false-positive": 0}
        keys = review_queue(store, "all")["key"].to_list()
        resolve(store, keys[0], "confirmed")
        resolve(store, keys[1], "false-positive")
        assert status_counts(store) == from_queue() == {"open": 2, "confirmed": 1, "false-positive": 1}


def test_resolve_rejects_unknown_keys_and_verdicts(store: Store, tmp_path: Path) -> None:
    ingest(store, [write_jsonl(tmp_path / "a.jsonl", _declines(0, 1))])
    classify(store, Config())
    with pytest.raises(ReviewStateError, match="no queued run"):
        resolve(store, "ffffffffffffffff", "confirmed")
    with pytest.raises(UsageError, match="verdict"):
        resolve(store, review_queue(store)["key"][0], "maybe")
    with pytest.raises(UsageError, match="not a review key"):
        resolve(store, "abc", "confirmed")
    key = review_queue(store)["key"][0]
    assert resolve(store, key[:4], "confirmed") == key  # a unique 4-character prefix is enough


def test_cli_review_flow(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "a.duckdb"
    log = write_jsonl(tmp_path / "a.jsonl", _declines(0, 2))
    invoke(["audit", log, "--db", db])
    items = json.loads(invoke(["review", "list", "--db", db, "--json"]).stdout)
    assert len(items) == 1
    invoke(["review", "resolve", items[0]["key"], "--verdict", "confirmed", "--db", db], stdout_has="confirmed")
    assert "no open review items" in invoke(["review", "list", "--db", db]).stdout
    invoke(["review", "resolve", "zzz", "--verdict", "confirmed", "--db", db], code=2, stderr_has="not a review key")
    invoke(["review", "export", "--db", db, "--dir", tmp_path / "q"], stdout_has="1 item(s)")


def test_review_list_has_a_header_columns_and_what_was_returned(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import SAMPLE_LOGS

    db = tmp_path / "r.duckdb"
    out = invoke(["audit", SAMPLE_LOGS, "--db", db, "--config", SAMPLE_LOGS / "runaudit.toml"]).stdout
    assert "run(s) in " in out and "review item(s)" in out  # runs and items, both said
    lines = invoke(["review", "list", "--db", db]).stdout.splitlines()
    assert lines[0].split()[:4] == ["KEY", "STATUS", "TASK", "RUNS"]
    pos = lines[0].index("SEEN")
    assert all(x[pos:pos + 4] == "2026" for x in lines[1:-1])  # aligned columns
    assert any("I'm very sorry, but I can't assist with that." in x for x in lines)  # the refusal text is shown
    assert lines[-1].endswith("run(s)")
