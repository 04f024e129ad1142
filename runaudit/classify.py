"""Reclassify every run under the current rules in one scan, recording the evidence for each.

``classify(store, cfg)`` compiles the enabled outcome rules into one ``CASE WHEN`` (priority order), computes
the in-body refusal score and the done-condition failures in the same ``SELECT``, and writes one
``classifications`` row per run under the ruleset hash (rules + config + detector version). Classifying is
incremental: runs already classified under the current ruleset are kept, new runs are added; a changed
ruleset reclassifies everything, reusing the stored refusal scores when the detector itself did not change
(the score depends only on the text and the prompt). The two most recent rulesets are kept for ``diff``.
Everything happens in one transaction, so an interrupted classification leaves the previous one readable.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from runaudit.config import Config
from runaudit.rules.deliverable import delivered_sql, structured_sql
from runaudit.rules.done import done_failures_sql
from runaudit.rules.outcome import RULES
from runaudit.rules.refusal import DETECTOR_VERSION, STAGE_PREFIX, capability_sql, score_sql, score_stages
from runaudit.store import Store

KEEP_RULESETS = 2
# Runs classified per statement: one statement over every run built its whole intermediate result at once and
# spilled to disk past a few hundred thousand runs (35 s at 400k against 13.8 s at 200k); batches by rid range
# keep the working set flat. The batches run in one transaction, so a reader sees all of them or none. A thread
# scans whole row groups, so a batch spans two row groups per thread: batches of 100k runs (one row group) left
# the other core idle (1M realistic runs: 29.9 s in batches of 100k, 17.2 s of 250k, 16.9 s in one; peak RSS
# 340-380 MB in each case). None: that size; an int (tests) fixes it.
BATCH_RUNS: int | None = None
ROW_GROUP_ROWS = 122_880  # DuckDB's row group size
# Runs per statement when their scores are copied from the previous ruleset: no text is scored, so the working
# set is a few narrow columns (plus the reply when a done-condition reads it); each statement costs ~0.1 s to plan.
REUSE_BATCH_RUNS = 500_000


def ruleset_hash(cfg: Config) -> str:
    """A short hash of everything that decides outcomes: rule codes and SQL, config, detector version."""
    parts: list[Any] = [DETECTOR_VERSION, cfg.fingerprint_data()]
    for r in RULES:
        comp = r.predicate(cfg)
        parts.append([r.code, r.outcome_for(cfg), r.sub_reason_sql, comp.sql if comp else None,
                      list(comp.params) if comp else None])
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _compile(cfg: Config) -> tuple[str, list[Any], str, list[Any]]:
    whens: list[str] = []
    params: list[Any] = []
    for r in RULES:
        comp = r.predicate(cfg)
        if comp is None:
            continue
        whens.append(f"WHEN {comp.sql} THEN '{r.code}'")
        params.extend(comp.params)
    case = "CASE " + " ".join(whens) + " ELSE 'OK00' END"
    meta_rows = ", ".join(f"('{r.code}', '{r.outcome_for(cfg)}', '{r.signal}', {str(r.retryable).lower()})"
                          for r in RULES)
    sub = "CASE rule_code " + " ".join(f"WHEN '{r.code}' THEN ({r.sub_reason_sql})" for r in RULES) + " END"
    return case, params, meta_rows, sub


# Columns every rule may read; the text columns are added only where they are needed (see _classify_sql).
_BASE_COLS = """r.rid, r.task_id, r.http_status AS hs,
       lower(coalesce(r.error_type, '')) AS et, lower(coalesce(r.error_message, '')) AS em,
       r.stop_reason, r.stop_reason_raw, r.refusal_text, r.refusal_category, r.block_reason,
       r.batch_result, r.shape, r.provider, r.tool_calls, r.reported_status, r.idem_key, r.text_chars,
       r.text_blank AS blank_text, j.verdict AS judge,
       coalesce(r.error_type, '') <> '' OR coalesce(r.error_message, '') <> ''
           OR coalesce(r.http_status NOT BETWEEN 200 AND 299, false) OR r.batch_result IS NOT NULL AS has_err"""
_JUDGE_JOIN = """LEFT JOIN (SELECT jr.rid, arg_max(jv.verdict, jv.judged_at) AS verdict
                   FROM judge_runs jr JOIN judge_verdicts jv USING (content_hash)
                   WHERE jv.verdict IN ('refusal', 'partial', 'compliance') GROUP BY jr.rid) j ON j.rid = r.rid"""
_PREV = ("(SELECT rid, refusal_score AS prev_score, refusal_kind AS prev_kind FROM classifications "
         "WHERE ruleset = $prev)")


def _classify_sql(cfg: Config, reuse: bool, prefix: bool = False,
                  part: str = "both", staged: bool = True) -> tuple[str, list[Any]]:
    """The INSERT of one batch of classifications (rows with ``$after < rid <= $hi``).

    ``part`` picks the runs a statement reads when the previous scores are reused over a prefix of rids:
    ``"reused"`` only runs up to ``$prev_max`` (their scores copied; no score expression to plan), ``"fresh"``
    only runs after it (scored), ``"both"`` a statement that holds both scans. ``staged`` scores the reply by a
    chain of projections (:func:`score_stages`, faster over many rows); ``staged=False`` by the one expression
    (:func:`score_sql`, the same score), whose lambdas DuckDB sets up only for the rows that reach them, which
    makes a statement executed for one row cheaper (the one-line check).
    """
    if part not in ("both", "fresh", "reused") or (part != "both" and not (reuse and prefix)):
        raise ValueError(f"part={part!r} needs reuse over a prefix")
    case, case_params, meta_rows, sub = _compile(cfg)
    done = done_failures_sql(cfg)
    # The delivered text (reasoning left out) is scored, and so is each string value of a tool payload or a
    # JSON body, one by one (a forced tool call or a schema answer is the deliverable); the highest score counts.
    # The reply's score is computed by a chain of projections (score_stages) unless staged=False, and so are a
    # payload's strings, one row per string (unnest), the highest score per run joined back: inside a lambda over
    # the list, DuckDB set up the score's ~40 regexes again for every chunk holding a payload (1.4 s of 3.6 s at
    # 200k realistic runs, 7% of them with a payload). staged=False scores both by the one-expression form.
    stages: list[list[tuple[str, str]]] = []
    leaf_stages: list[list[tuple[str, str]]] = []
    score = f"{STAGE_PREFIX}score"
    if staged:
        stages, score_cols = score_stages("response_text", "prompt")
        stages = [*stages, [(score, score_cols)]]
        leaf_stages, leaf_cols = score_stages("v", shape_evidence=False)
        leaf_stages = [*leaf_stages, [(score, leaf_cols)]]
        leaf_score = "lm.leaf_score"
    else:
        score = score_sql("response_text", "prompt")
        leaf_score = f"list_max(list_transform(leaves, lambda v: {score_sql('v', shape_evidence=False)}))"
    # Only answers that came back (no error) are scored; the CASE is evaluated lazily on the rows that reach it.
    score_expr = f"""CASE WHEN et <> '' OR (hs IS NOT NULL AND hs NOT BETWEEN 200 AND 299) THEN NULL
        WHEN leaves IS NULL THEN CASE WHEN blank_text THEN NULL ELSE {score} END
        ELSE greatest(CASE WHEN blank_text THEN NULL ELSE {score} END, {leaf_score}) END"""
    # Whether the decline is about a capability ("I can't browse the web"), not safety: read on the same texts.
    kind_expr = f"""CASE WHEN refusal_score >= 0.3 AND ({capability_sql('response_text')}
        OR coalesce(list_bool_or(list_transform(leaves, lambda v: {capability_sql('v')})), false))
        THEN 'capability' END"""
    # The score depends only on the run, so a rule change reuses the previous ruleset's scores. Those runs are
    # read in a scan of their own that leaves out the prompt, and the reply too unless a done-condition reads
    # it: decompressing the text columns is most of the cost of a reclassification.
    delivered = delivered_sql("r.response_text")
    text_col = f"{delivered} AS response_text" if "response_text" in done.sql else "NULL::VARCHAR AS response_text"
    fresh_from, fresh_where, reused_where = "runs r", "r.rid > $after AND r.rid <= $hi", ""
    if reuse:
        if prefix:
            # The previous ruleset covers every run up to $prev_max: a range on rid splits the two scans, and
            # the fresh one skips whole row groups by their min/max statistics.
            fresh_where = "r.rid > greatest($after, $prev_max) AND r.rid <= $hi"
            reused_where = "r.rid > $after AND r.rid <= least($prev_max, $hi)"
        else:
            fresh_from = f"runs r ANTI JOIN {_PREV} pc ON pc.rid = r.rid"
            reused_where = "r.rid > $after AND r.rid <= $hi"
    reused_sel = f"""SELECT {_BASE_COLS}, {text_col}, pc.prev_score AS refusal_score, pc.prev_kind AS refusal_kind
        FROM runs r JOIN {_PREV} pc ON pc.rid = r.rid {_JUDGE_JOIN}
        WHERE {reused_where}"""
    stage_ctes = _stage_ctes("_s", "fresh", stages)
    stage_from = f"_s{len(stages)}" if stages else "fresh"
    stage_drop = " EXCLUDE (" + ", ".join(k for st in stages for k, _ in st) + ")" if stages else ""
    leaf_ctes, leaf_join = "", ""
    if leaf_stages:
        # fresh is read twice, inlined each time (the leaves' copy keeps only rid and the payload columns):
        # materialised, it would hold a batch's prompts and replies in memory. No `WHERE leaves IS NOT NULL`: a
        # NULL list unnests to no row anyway, and the filter computed every run's leaves a second time.
        leaf_ctes = (f"_l0 AS (SELECT rid, unnest(leaves) AS v FROM fresh), "
                     f"{_stage_ctes('_l', '_l0', leaf_stages)}"
                     f"_lmax AS (SELECT rid, max({score}) AS leaf_score FROM _l{len(leaf_stages)} GROUP BY rid), ")
        leaf_join = f" LEFT JOIN _lmax lm ON lm.rid = {stage_from}.rid"
    fresh_ctes = f"""fresh AS NOT MATERIALIZED (
        SELECT {_BASE_COLS}, r.prompt, {delivered} AS response_text,
               {structured_sql("r.response_text", "r.tool_payload")} AS leaves
        FROM {fresh_from} {_JUDGE_JOIN}
        WHERE {fresh_where}
    ), {stage_ctes}{leaf_ctes}scored0 AS (
        SELECT {stage_from}.*{stage_drop}, {score_expr} AS refusal_score FROM {stage_from}{leaf_join}
    ), """
    if part == "reused":
        scored = f"scored AS ({reused_sel})"
        fresh_ctes = ""
    else:
        union = f"\n        UNION ALL BY NAME\n        {reused_sel}" if reuse and part == "both" else ""
        scored = (f"scored AS (\n        SELECT * EXCLUDE (prompt, leaves), {kind_expr} AS refusal_kind "
                  f"FROM scored0{union})")
    sql = f"""
    INSERT INTO classifications
    WITH {fresh_ctes}{scored}, dn AS (
        -- a reply that was not logged (an OTel span without content capture: blank_text unknown) fails none
        SELECT *, CASE WHEN blank_text IS NULL AND text_chars IS NULL THEN []::VARCHAR[] ELSE {done.sql} END
                  AS done_failures FROM scored
    ), d AS (
        SELECT *, {case} AS rule_code FROM dn
    )
    SELECT d.rid, $ruleset, m.outcome, {sub}, m.signal, d.rule_code, m.retryable, d.refusal_score,
           d.done_failures,
           CASE WHEN d.reported_status IS NOT NULL
                THEN list_contains($words, lower(trim(d.reported_status)))
                ELSE (d.hs BETWEEN 200 AND 299) OR (d.hs IS NULL AND d.et = '' AND d.em = '') END,
           CASE WHEN m.outcome IN ('declined', 'degraded') THEN d.idem_key END,
           d.refusal_kind
    FROM d JOIN (VALUES {meta_rows}) m(code, outcome, signal, retryable) ON m.code = d.rule_code
    """
    named: list[Any] = list(done.params) + case_params
    pieces = sql.split("$?")
    if len(pieces) - 1 != len(named):
        raise AssertionError(f"placeholder count {len(pieces) - 1} != parameters {len(named)}")
    out = pieces[0]
    pmap: dict[str, Any] = {}
    for i, piece in enumerate(pieces[1:]):
        pmap[f"p{i}"] = named[i]
        out += f"$p{i}" + piece
    return out, [pmap]


def _stage_ctes(name: str, source: str, stages: list[list[tuple[str, str]]]) -> str:
    """CTEs ``{name}1`` .. ``{name}N``: each adds one stage's columns to the one before (the first to ``source``)."""
    return "".join(f"{name}{i + 1} AS (SELECT *, " + ", ".join(f"{v} AS {k}" for k, v in st)
                   + f" FROM {source if i == 0 else f'{name}{i}'}), " for i, st in enumerate(stages))


@dataclass
class ClassifyResult:
    """What a classification pass did."""

    ruleset: str
    classified: int
    reused_scores: bool
    full: bool
    seconds: float


def current_ruleset(store: Store) -> str | None:
    """The ruleset of the most recent classification."""
    return store.get_meta("current_ruleset")


def _batch_size(store: Store) -> int:
    """Runs per scored batch: two row groups for each of DuckDB's threads."""
    threads = int(store.scalar("SELECT current_setting('threads')") or 1)
    return 2 * max(1, threads) * ROW_GROUP_ROWS


def _batches(store: Store, cfg: Config, p: dict[str, Any], lo: int, top: int, reuse: bool, prefix: bool,
             part: str) -> None:
    """Insert the classifications of the runs with ``lo < rid <= top``, a batch of rids per statement."""
    if lo >= top:
        return
    size = REUSE_BATCH_RUNS if part == "reused" else BATCH_RUNS or _batch_size(store)
    sql, params = _classify_sql(cfg, reuse, prefix, part)
    named = set(re.findall(r"\$(\w+)", sql))
    used = {k: v for k, v in {**p, **params[0]}.items() if k in named}
    while lo < top:
        hi = min(lo + size, top)
        store.execute(sql, {**used, "after": lo, "hi": hi})
        lo = hi


def classify(store: Store, cfg: Config, *, force: bool = False) -> ClassifyResult:
    """Classify the runs not yet classified under the current ruleset (all of them if it changed)."""
    t0 = time.perf_counter()
    rs = ruleset_hash(cfg)
    prev = current_ruleset(store)
    exists = store.scalar("SELECT count(*) FROM rulesets WHERE ruleset = ?", [rs])
    full = force or not exists or prev != rs
    prev_detector = None
    if prev:
        prev_detector = store.scalar("SELECT json_extract_string(config, '$.detector') FROM rulesets WHERE ruleset = ?",
                                     [prev])
    reuse = bool(full and prev and prev != rs and prev_detector == DETECTOR_VERSION)
    with store.transaction():
        if full:
            if prev != rs or force:
                store.execute("DELETE FROM classifications WHERE ruleset = ?", [rs])
            after = 0
        else:
            after = int(store.scalar("SELECT coalesce(max(rid), 0) FROM classifications WHERE ruleset = ?", [rs]))
        prefix = False
        p: dict[str, Any] = {"ruleset": rs, "after": after, "words": list(cfg.success_words)}
        if reuse:
            p["prev"] = prev
            # Does the previous ruleset hold exactly the runs with rid <= its highest rid (the usual case)?
            n_prev, prev_max = store.rows("SELECT count(*), coalesce(max(rid), 0) FROM classifications "
                                          "WHERE ruleset = ?", [prev])[0]
            prefix = n_prev == store.scalar("SELECT count(*) FROM runs WHERE rid <= ?", [prev_max])
            if prefix:
                p["prev_max"] = prev_max
        before = int(store.scalar("SELECT count(*) FROM classifications WHERE ruleset = ?", [rs]))
        top = int(store.scalar("SELECT coalesce(max(rid), 0) FROM runs"))
        if prefix:
            # Two statements: the copied scores need no score expression, whose planning (~0.3 s) would
            # otherwise be paid again for every batch of a reclassification.
            prev_max = int(p["prev_max"])
            _batches(store, cfg, p, after, min(prev_max, top), reuse, prefix, "reused")
            _batches(store, cfg, p, max(after, prev_max), top, reuse, prefix, "fresh")
        else:
            _batches(store, cfg, p, after, top, reuse, prefix, "both")
        n = int(store.scalar("SELECT count(*) FROM classifications WHERE ruleset = ?", [rs])) - before
        seq = int(store.scalar("SELECT coalesce(max(seq), 0) + 1 FROM rulesets"))
        cfg_json = json.dumps({"detector": DETECTOR_VERSION, "config": cfg.fingerprint_data(),
                               "source": cfg.source})
        if exists and not full:
            store.execute("UPDATE rulesets SET runs = runs + ? WHERE ruleset = ?", [n, rs])
        else:
            store.execute("DELETE FROM rulesets WHERE ruleset = ?", [rs])
            store.execute("INSERT INTO rulesets VALUES (?, now()::TIMESTAMP, ?, ?, ?)", [rs, cfg_json, n, seq])
        # keep the newest KEEP_RULESETS rulesets (for diff); drop older classifications
        old = [r[0] for r in store.rows("SELECT ruleset FROM rulesets ORDER BY seq DESC OFFSET ?", [KEEP_RULESETS])]
        for o in old:
            store.execute("DELETE FROM classifications WHERE ruleset = ?", [o])
            store.execute("DELETE FROM rulesets WHERE ruleset = ?", [o])
        store.set_meta("current_ruleset", rs)
    return ClassifyResult(rs, n, reuse, full, time.perf_counter() - t0)
