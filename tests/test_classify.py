"""Classification: one scan, evidence stored, rulesets versioned, diff, false successes, speed-ups kept honest."""

from __future__ import annotations

from pathlib import Path

from runaudit.audit import false_successes, ruleset_diff, summary
from runaudit.classify import classify, ruleset_hash
from runaudit.config import Config, parse_config
from runaudit.ingest import ingest
from runaudit.store import Store
from tests.conftest import flat, write_jsonl


def _setup(store: Store, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [
        flat(run_id="ok"),
        flat(run_id="refused", stop_reason="refusal", text=""),
        flat(run_id="short", text="tiny"),
        flat(run_id="fail", http_status=503, text=None, status="failed", error={"type": "api_error"}),
    ])
    ingest(store, [tmp_path / "a.jsonl"])


def test_summary_and_false_successes(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path)
    classify(store, Config())
    s = summary(store)
    assert s["runs"] == 4
    assert s["outcomes"] == {"ok": 2, "infra_error": 1, "declined": 1, "degraded": 0}
    assert s["false_success"] == 1 and s["reported_success_rate"] == 0.75 and s["true_success_rate"] == 0.5
    fs = false_successes(store)
    assert fs["run_id"].to_list() == ["refused"] and fs["signal"].to_list() == ["refusal"]


def test_ruleset_change_is_versioned_and_diffed(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path)
    r1 = classify(store, Config())
    cfg2 = parse_config({"done": {"min_chars": 10}})
    r2 = classify(store, cfg2)
    assert r1.ruleset != r2.ruleset and r2.reused_scores
    old, new, df = ruleset_diff(store)
    assert (old, new) == (r1.ruleset, r2.ruleset)
    assert df["run_id"].to_list() == ["short"]
    assert df.to_dicts()[0]["new_rule"] == "DN00"


def test_incremental_classification_only_adds_new_runs(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path)
    classify(store, Config())
    write_jsonl(tmp_path / "b.jsonl", [flat(run_id="later")])
    ingest(store, [tmp_path / "b.jsonl"])
    r = classify(store, Config())
    assert not r.full and r.classified == 1
    assert store.scalar("SELECT count(*) FROM audit_runs") == 5


def test_ruleset_hash_depends_on_config() -> None:
    assert ruleset_hash(Config()) == ruleset_hash(Config())
    assert ruleset_hash(Config()) != ruleset_hash(parse_config({"classify": {"refusal_threshold": 0.7}}))


def test_only_two_rulesets_are_kept(store: Store, tmp_path: Path) -> None:
    _setup(store, tmp_path)
    for n in (1, 2, 3):
        classify(store, parse_config({"done": {"min_chars": n}}))
    assert store.scalar("SELECT count(*) FROM rulesets") == 2
    assert store.scalar("SELECT count(DISTINCT ruleset) FROM classifications") == 2


def test_sample_logs_cover_every_outcome(sample_store: Store) -> None:
    s = summary(sample_store)
    assert all(v > 0 for v in s["outcomes"].values()), s
    assert s["false_success"] > 0 and s["quarantined"] >= 2


def test_reused_scores_give_the_same_classification_as_a_full_pass(sample_store: Store, tmp_path: Path) -> None:
    """A rule change reads reused scores and stored run facts instead of the text; the result must not differ."""
    late = write_jsonl(tmp_path / "late.jsonl", [
        flat(run_id="late-refusal", text="I'm sorry, but I can't help with that request."),
        flat(run_id="late-ok", text="## Summary\nRevenue grew 4% week over week on steady order volume."),
    ])
    ingest(sample_store, [late])  # ingested after the last classification: no score to reuse
    cols = "rid, outcome, sub_reason, signal, rule_code, retryable, refusal_score, done_failures, " \
           "reported_success, idem_key"

    def check(cfg2: Config) -> None:
        r = classify(sample_store, cfg2)
        assert r.reused_scores and r.full
        reused = sample_store.query(f"SELECT {cols} FROM classifications WHERE ruleset = ? ORDER BY rid",
                                    [r.ruleset])
        classify(sample_store, cfg2, force=True)
        full = sample_store.query(f"SELECT {cols} FROM classifications WHERE ruleset = ? ORDER BY rid",
                                  [r.ruleset])
        assert reused.height == full.height == sample_store.scalar("SELECT count(*) FROM runs")
        assert reused.equals(full)
        late_rows = dict(sample_store.rows(
            "SELECT r.run_id, c.outcome FROM runs r JOIN classifications c USING (rid) "
            "WHERE c.ruleset = ? AND r.run_id LIKE 'late-%'", [r.ruleset]))
        assert late_rows["late-refusal"] == "declined"

    for cfg2 in (parse_config({"done": {"min_chars": 120, "max_chars": 5000}}),
                 parse_config({"done": {"must_match": ["(?i)summary|total|\\{"], "min_headings": 0}}),
                 parse_config({"classify": {"refusal_threshold": 0.6}})):
        check(cfg2)
    # A previous ruleset with a gap (runaudit does not make one, but a user's SQL could) is not a prefix of the
    # runs: the split falls back to an anti-join and still scores the missing run.
    sample_store.execute("DELETE FROM classifications WHERE ruleset = (SELECT value FROM meta WHERE key = "
                         "'current_ruleset') AND rid = (SELECT min(rid) FROM runs)")
    check(parse_config({"done": {"min_chars": 60}}))
