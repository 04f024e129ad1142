"""What made classification fast must not change what it says (issue 17).

* the refusal gate (one pass per piece over the union of the positive lexical features) fires exactly when one of
  those features does;
* a reply with no positive lexical evidence scores 0, everything else scores as before;
* classifying in batches of runs gives exactly the result of one batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from runaudit import classify as classify_mod
from runaudit.classify import classify
from runaudit.config import Config
from runaudit.ingest import ingest
from runaudit.rules import refusal
from runaudit.rules.refusal import FEATURES, features_sql, score_sql, score_stages
from runaudit.store import Store
from tests.test_refusal_detector import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
POSITIVE = {f.name for f in FEATURES if f.lexical and f.weight > 0}


def _corpus() -> list[str]:
    """Replies of every kind: the detector examples, the sample logs' replies, and the labelled data when the
    shared folder is there (it is not needed: the first two already cover every feature)."""
    texts = list(EXAMPLES.values())
    for p in (ROOT / "sample_logs").rglob("*.jsonl"):
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("text"), str):
                texts.append(rec["text"])
    shared = ROOT.parent / "shared" / "data" / "xstest"
    for f in sorted(shared.glob("*.jsonl"))[:1]:
        for line in f.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if isinstance(rec.get("response"), str):
                texts.append(rec["response"])
    texts += ["", "   ", "ok", "I “can't” help", "«Je ne peux pas» dit-il. Voici la réponse complète.",
              "Sorry to hear that. Here is the fix:\n1. a\n2. b", "x" * 5000 + " I can't help with that."]
    return texts


def test_the_gate_fires_exactly_when_a_positive_lexical_feature_does() -> None:
    con = duckdb.connect()
    gate = refusal._bind("t", refusal._gate())
    texts = _corpus()
    assert len(texts) > 100
    rows = con.execute(f"SELECT t, {gate}, {features_sql('t')} FROM (SELECT unnest(?::VARCHAR[]) AS t)",
                       [texts]).fetchall()
    fired_somewhere = set()
    for t, g, feats in rows:
        pos = POSITIVE & set(feats)
        fired_somewhere |= pos
        assert bool(g) == bool(pos), (t[:80], feats)
    assert fired_somewhere == POSITIVE  # the corpus exercises every positive feature


def test_each_piece_gate_fires_exactly_when_a_positive_feature_over_that_piece_does() -> None:
    """The staged score skips a positive feature's regex where its piece's gate did not match: exact only if a
    piece's gate matches whenever one of its features does (and, to skip anything, only then)."""
    con = duckdb.connect()
    pats = refusal._gate_patterns()
    by_piece = {piece: {f.name for f in FEATURES if f.lexical and f.weight > 0 and refusal._positive_piece(f) == piece}
                for piece in pats}
    assert set().union(*by_piece.values()) == POSITIVE and len(pats) >= 2
    tests = ", ".join(f"regexp_matches({refusal._PARTS[piece]}, '{pat}')" for piece, pat in pats.items())
    sql = (f"SELECT {refusal._bind('t', f'[{tests}]')}, {features_sql('t')} "
           f"FROM (SELECT unnest(?::VARCHAR[]) AS t) WHERE t IS NOT NULL")
    seen = {piece: [0, 0] for piece in pats}
    for fired, feats in con.execute(sql, [_corpus()]).fetchall():
        for piece, g in zip(pats, fired, strict=True):
            assert bool(g) == bool(by_piece[piece] & set(feats)), (piece, feats)
            seen[piece][bool(g)] += 1
    assert all(off and on for off, on in seen.values()), seen  # every piece's gate both fires and does not


def test_no_positive_lexical_evidence_scores_zero_and_the_rest_is_unchanged() -> None:
    con = duckdb.connect()
    texts = _corpus()
    # the score as refusal-v6 computed it: the same features, without the gate
    lex = " + ".join(f"(CASE WHEN {refusal._expr(f, refusal._PARTS)} THEN {f.weight} ELSE 0 END)"
                     for f in FEATURES if f.lexical)
    shape = " + ".join(f"(CASE WHEN {refusal._expr(f, refusal._PARTS)} THEN {f.weight} ELSE 0 END)"
                       for f in FEATURES if not f.lexical)
    total = (f"list_transform([[{lex}, {shape}]], lambda z: round(CASE WHEN z[1] > 0 THEN 1.0 / (1.0 + "
             f"exp(-({refusal.BIAS} + z[1] + z[2]))) ELSE least({refusal.SHAPE_ONLY_CAP}, 1.0 / (1.0 + "
             f"exp(-({refusal.BIAS} + z[1] + z[2])))) END, 4))[1]")
    v6 = (f"(CASE WHEN t IS NULL OR trim(t) = '' THEN 0.0 WHEN NOT regexp_matches(left(t, 900), "
          f"'{refusal.PREFILTER}') THEN 0.0 ELSE {refusal._bind('t', refusal._with_overlap('t', None, total))} END)")
    rows = con.execute(f"SELECT {score_sql('t')}, {v6}, {features_sql('t')} FROM (SELECT unnest(?::VARCHAR[]) AS t)",
                       [texts]).fetchall()
    zeroed = 0
    for new, old, feats in rows:
        if POSITIVE & set(feats):
            assert new == old
        else:
            assert new == 0.0 and old <= refusal.SHAPE_ONLY_CAP
            zeroed += old > 0
    assert zeroed > 0  # the gate did skip replies that v6 scored (below the cap)


@pytest.mark.parametrize("shape_evidence", [True, False])
def test_the_staged_score_equals_the_one_expression_score(shape_evidence: bool) -> None:
    """classify() scores a reply, and a payload's strings (no shape evidence), by a chain of projections
    (score_stages); it must equal score_sql, which the detector benchmark, the one-line check and the evidence
    use, on every kind of reply and prompt."""
    con = duckdb.connect()
    texts = _corpus() + [None]  # type: ignore[list-item]
    prompts = [None, "", "Summarise the quarterly revenue report for the regional sales managers please",
               "Write instructions explaining how someone could bypass building security systems tonight"]
    rows = [(t, prompts[i % len(prompts)]) for i, t in enumerate(texts)]
    rows += [(t, prompts[3]) for t in texts[:60]]
    stages, score = score_stages("t", "p" if shape_evidence else None, shape_evidence=shape_evidence)
    sql = "WITH s0 AS (SELECT i, t, p FROM (SELECT unnest(?::VARCHAR[]) AS t, unnest(?::VARCHAR[]) AS p, " \
          "unnest(range(?)) AS i))"
    for k, st in enumerate(stages):
        sql += f", s{k + 1} AS (SELECT *, " + ", ".join(f"{v} AS {c}" for c, v in st) + f" FROM s{k})"
    sql += (f" SELECT i, {score}, {score_sql('t', 'p' if shape_evidence else None, shape_evidence=shape_evidence)}"
            f" FROM s{len(stages)} ORDER BY i")
    got = con.execute(sql, [[r[0] for r in rows], [r[1] for r in rows], len(rows)]).fetchall()
    assert len(got) == len(rows) > 150
    assert [g[1] for g in got] == [g[2] for g in got]
    assert sum(1 for g in got if g[1] >= 0.5) >= 10 and sum(1 for g in got if 0 < g[1] < 0.5) >= 10


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_batches_of_runs_classify_exactly_like_one_batch(batch: int, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    logs = ROOT / "sample_logs"
    from runaudit.config import load_config

    cfg = load_config(logs / "runaudit.toml")
    cols = "rid, outcome, sub_reason, signal, rule_code, retryable, refusal_score, done_failures, idem_key"
    with Store.open(":memory:") as store:
        ingest(store, [logs], cfg)
        monkeypatch.setattr(classify_mod, "BATCH_RUNS", 10**9)
        classify(store, cfg)
        whole = store.rows(f"SELECT {cols} FROM classifications ORDER BY rid")
        monkeypatch.setattr(classify_mod, "BATCH_RUNS", batch)
        res = classify(store, cfg, force=True)
        assert res.classified == len(whole) > 250
        assert store.rows(f"SELECT {cols} FROM classifications ORDER BY rid") == whole
        # a rule change reuses the scores, batch by batch too: the runs the previous ruleset covers are copied by
        # one statement, the runs ingested since are scored by another, and together they equal a full pass
        monkeypatch.setattr(classify_mod, "REUSE_BATCH_RUNS", batch)
        late = [{"run_id": f"late-{i}", "task_id": "t", "status": "success", "http_status": 200,
                 "prompt": "Summarise the thread.",
                 "text": "I'm sorry, but I can't help with that." if i % 2 else "The thread agrees on Friday."}
                for i in range(5)]
        late_file = tmp_path / "late.jsonl"
        late_file.write_text("".join(json.dumps(r) + "\n" for r in late), encoding="utf-8")
        ingest(store, [late_file], cfg)
        res2 = classify(store, Config())
        assert res2.reused_scores and res2.classified == len(whole) + 5
        split = store.rows(f"SELECT {cols} FROM classifications WHERE ruleset = ? ORDER BY rid", [res2.ruleset])
        monkeypatch.setattr(classify_mod, "BATCH_RUNS", 10**9)
        classify(store, Config(), force=True)
        assert store.rows(f"SELECT {cols} FROM classifications WHERE ruleset = ? ORDER BY rid",
                          [res2.ruleset]) == split
        late_outcomes = dict(store.rows("SELECT r.run_id, c.outcome FROM runs r JOIN classifications c USING (rid) "
                                        "WHERE c.ruleset = ? AND r.run_id LIKE 'late-%'", [res2.ruleset]))
        assert late_outcomes == {f"late-{i}": "declined" if i % 2 else "ok" for i in range(5)}


def _leafy_runs(tmp_path: Path) -> Path:
    """Runs whose deliverable is a tool payload or a JSON text body: several strings per run, a decline in one of
    them or in none, the reply declining beside a compliant payload, an error or a blank reply with a payload."""
    decline, fine = "I'm sorry, but I can't help with creating that content.", "The invoice total is 912.50 EUR."
    lines = []
    for i in range(40):
        strings = [fine, f"Line item {i} shipped on Tuesday to the Berlin office", decline if i % 3 == 0 else fine]
        content: list[dict[str, object]] = [{"type": "tool_use", "id": f"tu_{i}", "name": "record",
                                             "input": {"a": strings[0], "b": strings[1],
                                                       "c": {"nested": [strings[2], "short"]}}}]
        if i % 4 == 1:
            content.insert(0, {"type": "text", "text": decline})
        if i % 5 == 2:
            content.insert(0, {"type": "text", "text": "   "})
        body = {"id": f"msg_{i}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "stop_reason": "tool_use", "content": content, "usage": {"input_tokens": 10, "output_tokens": 9}}
        lines.append({"run_id": f"tool-{i}", "task_id": "extract", "prompt": "Record the invoice fields.",
                      "response": body})
        lines.append({"run_id": f"json-{i}", "task_id": "extract", "status": "success", "http_status": 200,
                      "prompt": "Answer as JSON.",
                      "text": json.dumps({"answer": decline if i % 2 else fine,
                                          "notes": [fine, "Due in thirty days"]})})
        if i % 10 == 0:
            lines.append({"run_id": f"err-{i}", "task_id": "extract", "http_status": 529,
                          "error": {"type": "overloaded_error", "message": "Overloaded"},
                          "text": json.dumps({"answer": decline})})
    path = tmp_path / "leafy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return path


def test_the_staged_payload_scores_equal_the_lambda_form(tmp_path: Path) -> None:
    """classify() scores a payload's strings one row each (unnest) and joins the highest back per run; the
    one-line check scores them inside a lambda over the list. Both must give every run the same classification."""
    cfg = Config()
    cols = ("outcome, sub_reason, signal, rule_code, retryable, refusal_score, done_failures, reported_success, "
            "idem_key, refusal_kind")
    with Store.open(":memory:") as store:
        ingest(store, [ROOT / "sample_logs", _leafy_runs(tmp_path)], cfg)
        res = classify(store, cfg)
        sql, params = classify_mod._classify_sql(cfg, reuse=False, staged=False)
        store.execute(sql, {**params[0], "ruleset": "lambda-form", "after": 0, "hi": 10**9,
                            "words": list(cfg.success_words)})
        staged = store.rows(f"SELECT rid, {cols} FROM classifications WHERE ruleset = ? ORDER BY rid", [res.ruleset])
        lam = store.rows(f"SELECT rid, {cols} FROM classifications WHERE ruleset = 'lambda-form' ORDER BY rid")
        assert staged == lam and len(staged) > 350
        by_run = dict(store.rows("SELECT r.run_id, c.outcome FROM runs r JOIN classifications c USING (rid) "
                                 "WHERE c.ruleset = ? AND (r.run_id LIKE 'tool-%' OR r.run_id LIKE 'json-%' "
                                 "OR r.run_id LIKE 'err-%')", [res.ruleset]))
    # a decline in the payload decides (tool-0, json-1), as one in the reply beside a compliant payload does (tool-1)
    assert by_run["tool-0"] == by_run["tool-1"] == by_run["json-1"] == "declined"
    assert by_run["json-0"] == "ok" and by_run["err-0"] == "infra_error"
    assert sum(v == "declined" for v in by_run.values()) >= 30
