"""Done-conditions (``DN01``–``DN07``): per-task checks on the deliverable, compiled to SQL.

Settings come from ``[done]`` (defaults for every task) and ``[done.tasks."GLOB"]`` (tasks whose ``task_id``
matches the glob). For each setting the first matching task table wins, then the defaults. Each failing
condition contributes its code to the run's ``done_failures`` list; any failure makes the run ``degraded``
(rule DN00) unless an earlier rule already decided it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from runaudit.config import Config, DoneSpec
from runaudit.rules.base import Compiled


@dataclass(frozen=True)
class DoneRule:
    """One done-condition kind."""

    code: str
    key: str
    description: str
    matches: str
    does_not_match: str


DONE_RULES: tuple[DoneRule, ...] = (
    DoneRule("DN01", "min_chars", "The deliverable has fewer characters than min_chars.",
             "min_chars = 200 and a 40-character reply", "a 500-character reply"),
    DoneRule("DN02", "max_chars", "The deliverable has more characters than max_chars.",
             "max_chars = 280 and a 1,000-character reply", "a 100-character reply"),
    DoneRule("DN03", "min_headings", "The deliverable has fewer Markdown headings (#..######) than min_headings.",
             "min_headings = 2 and a reply with one '## Summary'", "a reply with '## A' and '## B'"),
    DoneRule("DN04", "required_json_keys",
             "The deliverable is not a JSON object (bare or in a ```json fence) with all required_json_keys.",
             'required_json_keys = ["id"] and {"name": "x"}', '{"id": 1, "name": "x"}'),
    DoneRule("DN05", "json_schema",
             "The deliverable's JSON fails json_schema (supported: type object, required, properties.*.type).",
             'a schema requiring "total": {"type": "number"} and {"total": "12"}', '{"total": 12}'),
    DoneRule("DN06", "must_match", "The deliverable does not match every must_match regex (RE2 syntax).",
             'must_match = ["(?i)^## summary"] and a reply starting "Summary:"', "a reply starting '## Summary'"),
    DoneRule("DN07", "must_not_match", "The deliverable matches a must_not_match regex (RE2 syntax).",
             'must_not_match = ["TODO"] and a reply containing TODO', "a reply without it"),
)

_JSON_BODY = ("(CASE WHEN json_valid(trim(coalesce(response_text, ''))) THEN trim(response_text) "
              "ELSE nullif(regexp_extract(response_text, '```(?:json|JSON)?\\s*\\n([\\s\\S]*?)\\n?```', 1), '') END)")

_TYPE_MAP = {"string": ["VARCHAR"], "integer": ["BIGINT", "UBIGINT"], "number": ["BIGINT", "UBIGINT", "DOUBLE"],
             "boolean": ["BOOLEAN"], "array": ["ARRAY"], "object": ["OBJECT"], "null": ["NULL"]}


def _schema_sql(schema: dict[str, Any], params: list[Any]) -> str:
    """Boolean SQL that is true when the JSON body satisfies the supported schema subset."""
    checks = [f"json_valid({_JSON_BODY})", f"json_type({_JSON_BODY}) = 'OBJECT'"]
    for key in schema.get("required", []) or []:
        params.append(key)
        checks.append(f"list_contains(json_keys({_JSON_BODY}), $?)")
    for key, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict) or "type" not in prop:
            continue
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        allowed = sorted({t for ty in types for t in _TYPE_MAP.get(str(ty), [])})
        path = "$." + json.dumps(key)
        params.extend([path, allowed, path])
        checks.append(f"(json_type({_JSON_BODY}, $?) IS NULL"
                      f" OR list_contains($?::VARCHAR[], json_type({_JSON_BODY}, $?)))")
    return "(" + " AND ".join(checks) + ")"


def _effective(specs: list[DoneSpec], key: str) -> list[DoneSpec]:
    """Specs that set ``key``: task globs in file order, then the defaults (pattern ``*``) last."""
    tasks = [s for s in specs if s.pattern != "*" and key in s.rules]
    default = [s for s in specs if s.pattern == "*" and key in s.rules]
    return tasks + default


def done_failures_sql(cfg: Config) -> Compiled:
    """SQL for the ``done_failures`` list (VARCHAR[]) of a run, with its parameters in order."""
    if not cfg.done:
        return Compiled("[]::VARCHAR[]")
    params: list[Any] = []
    items: list[str] = []
    for rule in DONE_RULES:
        specs = _effective(cfg.done, rule.key)
        if not specs:
            continue
        whens: list[str] = []
        for spec in specs:
            v = spec.rules[rule.key]
            cond_params: list[Any] = []
            if rule.key == "min_chars":
                cond = "coalesce(text_chars, 0) < $?"
                cond_params.append(v)
            elif rule.key == "max_chars":
                cond = "coalesce(text_chars, 0) > $?"
                cond_params.append(v)
            elif rule.key == "min_headings":
                cond = "len(regexp_extract_all(coalesce(response_text, ''), '(?m)^#{1,6}\\s+\\S')) < $?"
                cond_params.append(v)
            elif rule.key == "required_json_keys":
                cond = (f"NOT coalesce(json_valid({_JSON_BODY}) AND json_type({_JSON_BODY}) = 'OBJECT' "
                        f"AND list_has_all(json_keys({_JSON_BODY}), $?::VARCHAR[]), false)")
                cond_params.append(list(v))
            elif rule.key == "json_schema":
                cond = f"NOT coalesce({_schema_sql(v, cond_params)}, false)"
            elif rule.key == "must_match":
                parts = []
                for pat in v:
                    parts.append("regexp_matches(coalesce(response_text, ''), $?)")
                    cond_params.append(pat)
                cond = "NOT (" + " AND ".join(parts) + ")"
            else:  # must_not_match
                parts = []
                for pat in v:
                    parts.append("regexp_matches(coalesce(response_text, ''), $?)")
                    cond_params.append(pat)
                cond = "(" + " OR ".join(parts) + ")"
            if spec.pattern == "*":
                whens.append(f"WHEN true THEN ({cond})")
                params.extend(cond_params)
            else:
                whens.append(f"WHEN task_id GLOB $? THEN ({cond})")
                params.append(spec.pattern)
                params.extend(cond_params)
        items.append(f"CASE WHEN (CASE {' '.join(whens)} ELSE false END) THEN '{rule.code}' END")
    return Compiled("list_filter([" + ", ".join(items) + "]::VARCHAR[], lambda x: x IS NOT NULL)", tuple(params))
