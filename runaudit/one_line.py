"""One log line through the ingest window and the classifier as one prepared statement.

The inline check classifies one call at a time, and almost all the cost of running it through
:meth:`runaudit.engine.Engine.load_lines` is DuckDB planning the same ~80k characters of SQL for every call (a
prepared statement that reads a table is bound again at each execution). This module composes the very
statements the window and the classifier run (:func:`runaudit.ingest.window.compile_insert_sql`, ``KEYS_SQL``,
``INSERT_RUNS_SQL``, :func:`runaudit.classify._classify_sql`, ``RESULT_SQL``) into one ``SELECT`` over common
table expressions named like the tables they stand for (``_chunk``, ``_final``, ``_keys``, ``runs``,
``classifications``), so the statement reads no table and DuckDB plans it once (``PREPARE``); each call is an
``EXECUTE`` with the line. The configuration's parameters are written into the text as literals once.

DuckDB binds and optimises again at every ``EXECUTE`` a statement that casts text to ``TIMESTAMPTZ`` (its result
depends on the session's time zone), and the window reads a logged time that way. So the statement is given the
run's time (``$4``), parsed by a small statement with the window's own expression
(:func:`runaudit.ingest.window.ts_parse_sql`) from a guess at the logged time text (:func:`guess_ts_text`), and returns
the text the window actually read (``_ts_raw``): when the guess was wrong, the caller parses that text and runs
the statement again, so the time is always the window's.

Each regex call of the statement is written inside a lambda (:func:`lazy_regexes`): DuckDB compiles a regex
for every execution wherever it stands, but a lambda's only when a row reaches it.

It covers the line that makes one run with no more work than the window's statements (a flat record, a wrapped
or raw provider body, a batch line, an agent result, an error body). A line that is a stream event or an OTLP
export, or that the window would quarantine, is sent back to the general path (the statement says which in its
``_special`` column, or returns no run), so the answer is always the window's own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runaudit.config import Config
    from runaudit.store import Store

# A string literal, a quoted identifier, a comment, a named parameter or a positional one: literals and comments
# are kept as they are, so a "$" or "?" inside them is never taken for a parameter.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\$[A-Za-z_][A-Za-z0-9_]*|\?")
# The statement's own parameters: the line, the time a run without a logged time takes, the source name, the
# run's logged time (see below). DuckDB binds and plans a prepared statement again at each EXECUTE (seconds for
# this one) when a parameter is read twice, is read without a cast, or is given a value of another type: so each
# is read once, cast, in the one-row ``_args``, and EXECUTE passes values of those types; the statements read
# them from there.
_PER_CALL = {"mtime": "(SELECT a_mtime FROM _args)", "file": "(SELECT a_file FROM _args)"}
_TS_FROM_ARGS = "(SELECT a_ts FROM _args)"
_ARGS_CTE = """WITH _args AS (SELECT $1::VARCHAR AS a_line, $2::TIMESTAMP AS a_mtime, $3::VARCHAR AS a_file,
                      $4::TIMESTAMP AS a_ts
), _chunk AS (
  SELECT 1::BIGINT AS line_no, 0::BIGINT AS byte_offset, a_line AS line, false AS bad_utf8,
         false AS too_long, strlen(a_line)::BIGINT AS orig_len, false AS padded, NULL::UBIGINT AS dg_h,
         NULL::UBIGINT AS dg_h2
  FROM _args
)"""


def literal(v: Any) -> str:
    """A SQL literal for a parameter value (str, int, float, bool, None, or a list of them)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return f"'{v}'::DOUBLE"
        return repr(v) + "::DOUBLE"
    if isinstance(v, str):
        if "\x00" in v:
            raise ValueError("a NUL character cannot be written as a SQL literal")
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, (list, tuple)):
        items = ", ".join(literal(x) for x in v)
        if all(isinstance(x, str) for x in v):
            return f"[{items}]::VARCHAR[]"
        return f"[{items}]"
    raise TypeError(f"no SQL literal for a {type(v).__name__}")


def inline_params(sql: str, named: dict[str, Any], positional: list[Any] | None = None,
                  keep: dict[str, str] | None = None) -> str:
    """``sql`` with its ``$name`` and ``?`` parameters written as literals; names in ``keep`` are renamed to the
    placeholder given instead. A parameter that is not given is an error, as it would be for DuckDB."""
    pos = list(positional or [])
    keep = keep or {}
    used = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal used
        t = m.group(0)
        if t[0] in "'\"-":
            return t
        if t == "?":
            if used >= len(pos):
                raise KeyError("more ? placeholders than parameters")
            used += 1
            return literal(pos[used - 1])
        name = t[1:]
        if name in keep:
            return keep[name]
        if name not in named:
            raise KeyError(f"parameter ${name} is not given")
        return literal(named[name])

    out = _TOKEN.sub(sub, sql)
    if used != len(pos):
        raise KeyError(f"{len(pos)} positional parameters for {used} ? placeholders")
    return out


# The regex functions whose first argument is the text searched and whose pattern is a constant (see lazy_regexes)
_REGEX_CALL = re.compile(r"(?<![A-Za-z0-9_.])(regexp_matches|regexp_full_match|regexp_replace|regexp_extract_all|"
                         r"regexp_extract)\s*\(", re.I)


def _skip(sql: str, i: int) -> int:
    """The index after the string literal, quoted identifier or comment starting at ``i`` (``i`` if none does)."""
    if sql[i] not in "'\"-":
        return i
    m = _TOKEN.match(sql, i)
    return i if m is None or m.group(0)[0] not in "'\"-" else m.end()


def _code(sql: str, start: int) -> Iterator[tuple[int, str, int]]:
    """Each character of ``sql`` from ``start`` that is not in a string literal, quoted identifier or comment: its
    index, the character, and the depth of brackets after it (counted from ``start``)."""
    depth, p = 0, start
    while p < len(sql):
        q = _skip(sql, p)
        if q != p:
            p = q
            continue
        ch = sql[p]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        yield p, ch, depth
        p += 1


def _call_args(sql: str, open_at: int) -> tuple[int, int]:
    """For the call whose ``(`` is at ``open_at``: the index of its first top-level comma (-1 if none) and of its
    closing parenthesis."""
    comma = -1
    for p, ch, depth in _code(sql, open_at):
        if ch in ")]}" and depth == 0:
            return comma, p
        if ch == "," and depth == 1 and comma < 0:
            comma = p
    raise ValueError("unbalanced parentheses in SQL")


def _rewrite(sql: str, pattern: re.Pattern[str], on_match: Callable[[str, re.Match[str]], tuple[str, int]]) -> str:
    """``sql`` with each match of ``pattern`` outside literals and comments replaced by what ``on_match(sql, m)``
    gives: the text put in its place and the index to go on from."""
    out: list[str] = []
    i = 0
    while i < len(sql):
        j = _skip(sql, i)
        if j != i:  # a literal or comment, kept as it is
            out.append(sql[i:j])
            i = j
            continue
        m = pattern.match(sql, i)
        if m is None:
            out.append(sql[i])
            i += 1
            continue
        text, i = on_match(sql, m)
        out.append(text)
    return "".join(out)


def lazy_regexes(sql: str) -> str:
    """``sql`` with each regex call ``regexp_f(text, pattern, ...)`` written as
    ``list_transform([text], lambda ra_rxN: regexp_f(ra_rxN, pattern, ...))[1]``: the same value, NULL included.

    DuckDB compiles a constant pattern again for every execution of a statement (in each expression's state,
    set up whether or not a row reaches it), but sets up a lambda's body only when the lambda runs. The one-line
    statement holds ~190 regex calls, most in a branch that the line does not reach (the shapes it is not, the
    score of a reply with no refusal cue); written this way, p50 of one execution went from 35.2 to 31.1 ms and
    p99 from 55.7 to 46.3 ms (303 lines: the bench's mix and sample_logs/, identical results). Only for the
    one-line statement: over many rows, a lambda sets its regexes up again for every chunk.
    """
    n = 0

    def call(s: str, m: re.Match[str]) -> tuple[str, int]:
        nonlocal n
        open_at = m.end() - 1
        comma, close = _call_args(s, open_at)
        if comma < 0:  # not a call of the form f(text, pattern, ...): its arguments are read as they are
            return s[m.start():open_at + 1], open_at + 1
        first, rest = walk(s[open_at + 1:comma]), walk(s[comma + 1:close])
        n += 1
        return f"list_transform([{first}], lambda ra_rx{n}: {m.group(1)}(ra_rx{n},{rest}))[1]", close + 1

    def walk(s: str) -> str:
        return _rewrite(s, _REGEX_CALL, call)

    return walk(sql)


# CASE's keywords, as words (not part of a name, a qualified name or a quoted identifier)
_CASE_WORD = re.compile(r"(?<![A-Za-z0-9_.$\"])(CASE|WHEN|THEN|ELSE|END)(?![A-Za-z0-9_$\"])", re.I)
# what a lambda's body cannot hold: a subquery, a window, an aggregate (names given by the caller, see below)
_NOT_IN_LAMBDA = re.compile(r"(?<![A-Za-z0-9_.])(SELECT|OVER|EXISTS)(?![A-Za-z0-9_])", re.I)


def _case_parts(sql: str, start: int) -> tuple[list[tuple[str, str]], int]:
    """For the CASE whose keyword ends at ``start``: its parts as (keyword, text), the first keyed ``""`` (the
    operand of a simple CASE, usually blank), and the index after its ``END``."""
    parts: list[tuple[str, str]] = []
    kw, begin, nested = "", start, 0
    for p, ch, depth in _code(sql, start):
        m = _CASE_WORD.match(sql, p) if ch.isalpha() else None
        if m is None:
            continue
        word = m.group(1).upper()
        if word == "CASE":
            nested += 1
        elif word == "END" and nested:
            nested -= 1
        elif depth == 0 and not nested:
            parts.append((kw, sql[begin:p]))
            if word == "END":
                return parts, m.end()
            kw, begin = word, m.end()
    raise ValueError("a CASE without its END in SQL")


def lazy_branches(sql: str, aggregates: frozenset[str] = frozenset()) -> str:
    """``sql`` with each ``THEN``/``ELSE`` result of a ``CASE`` that calls a function written as
    ``list_transform([0], lambda ra_csN: (result))[1]``: the same value, NULL included.

    DuckDB sets up the state of every expression of a statement at each execution (an intermediate vector of
    2,048 values per function argument), but a lambda's body only when a row reaches it, and a ``CASE`` result
    runs only for the rows its ``WHEN`` takes. The one-line statement's results for the shapes a line is not,
    and for the outcomes it does not have, are most of its ``CASE`` results. A result holding a subquery, a window
    or an aggregate (``aggregates``: lower-case function names) is left as it is: a lambda cannot hold it.

    Only the outermost such result is wrapped: the CASEs inside a wrapped result are left as they are (they are
    set up only when the lambda runs anyway). Lambdas inside lambdas made PREPARE of the one-line statement
    peak at ~980 MB and keep ~560 MB (measured; outer results only: 244 and 184 MB), for no speed.
    """
    n = 0
    agg = re.compile(r"(?<![A-Za-z0-9_.])(" + "|".join(sorted(map(re.escape, aggregates))) + r")\s*\(", re.I) \
        if aggregates else None

    def can_wrap(expr: str) -> bool:
        bare = _TOKEN.sub(lambda m: "''" if m.group(0)[0] in "'\"" else " " if m.group(0)[0] == "-" else m.group(0),
                          expr)
        return "(" in bare and not _NOT_IN_LAMBDA.search(bare) and not (agg is not None and agg.search(bare))

    def case(s: str, m: re.Match[str]) -> tuple[str, int]:
        nonlocal n
        if m.group(1).upper() != "CASE":
            return m.group(0), m.end()
        parts, end = _case_parts(s, m.end())
        pieces = [m.group(0)]
        for kw, text in parts:
            if kw in ("THEN", "ELSE") and can_wrap(text):
                n += 1
                pieces.append(f"{kw}  list_transform([0], lambda ra_cs{n}: ({text}))[1]  ")
            else:
                pieces.append(f"{kw} {walk(text)} ")
        return "".join(pieces) + "END", end

    def walk(s: str) -> str:
        return _rewrite(s, _CASE_WORD, case)

    return walk(sql)


def _body(sql: str, prefix: str) -> str:
    """A statement's query after its ``CREATE ... AS`` / ``INSERT INTO ...`` head (``prefix``, a regex)."""
    m = re.match(r"\s*" + prefix, sql, flags=re.S)
    if not m:
        raise AssertionError(f"statement does not start with {prefix!r}")
    return sql[m.end():]


def _columns(store: Store, table: str) -> list[tuple[str, str]]:
    """``table``'s columns and their types, in the table's order."""
    return store.rows("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                      "AND schema_name = 'main' ORDER BY column_index", [table])


def _typed(store: Store, table: str, source: str, columns: list[str] | None = None) -> str:
    """``source``'s columns (named ``columns``, in order; default the table's own) as a relation with ``table``'s
    columns and types, in the table's order: what an ``INSERT INTO table (columns)`` of ``source`` would store."""
    types = _columns(store, table)
    columns = columns or [c for c, _ in types]
    given = set(columns)
    cols = ", ".join(f"CAST(t.{c} AS {ty}) AS {c}" if c in given else f"NULL::{ty} AS {c}" for c, ty in types)
    return f"SELECT {cols} FROM ({source}) t({', '.join(columns)})"


def _final_body(cfg: Config) -> str:
    from runaudit.ingest.window import insert_sql

    final_sql, map_params = insert_sql(cfg, ts_expr=_TS_FROM_ARGS)
    return inline_params(_body(final_sql, r"CREATE OR REPLACE TEMP TABLE _final AS"), {}, map_params)


def guess_ts_text(line: str) -> str | None:
    """The logged time text the window most likely reads from ``line``: its top-level ``ts``, as text (the field
    a flat or wrapped record, and :func:`runaudit.inline.log_call`, log the time in). Only a guess: the
    statement reports the text it read and a wrong guess costs a second run, never a wrong time."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    v = rec.get("ts") if isinstance(rec, dict) else None
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return json.dumps(v)
    return None


def compile_ts_parse_sql() -> str:
    """The run's time from a logged time text (``$1``), with the window's own expression."""
    from runaudit.ingest.window import ts_parse_sql

    return f"SELECT {ts_parse_sql('ts_raw')} FROM (SELECT $1::VARCHAR AS ts_raw)"


def compile_one_line_sql(store: Store, cfg: Config, ruleset: str) -> str:
    """The one-line statement for ``cfg`` (parameters ``$1`` line, ``$2`` fallback time, ``$3`` source, ``$4`` the
    run's logged time as read by :func:`compile_ts_parse_sql`), over the schema of ``store`` (a migrated runaudit
    database)."""
    from runaudit.classify import _classify_sql
    from runaudit.engine import RESULT_SQL
    from runaudit.ingest.window import FRESH_SQL, INSERT_RUNS_SQL, KEYS_SQL, RUN_COLUMNS

    final = _final_body(cfg)
    keys = _body(KEYS_SQL, r"CREATE OR REPLACE TEMP TABLE _keys AS")
    if "ANTI JOIN runs r" not in FRESH_SQL:
        raise AssertionError("FRESH_SQL no longer reads the runs it skips as `runs r`")
    fresh = inline_params(_body(FRESH_SQL, r"CREATE OR REPLACE TEMP TABLE _fresh AS").replace(
        "ANTI JOIN runs r", "ANTI JOIN _no_runs r"), {"next_rid": 0, "rid0": 0})
    new = inline_params(_body(INSERT_RUNS_SQL, r"INSERT INTO runs \([^)]*\)"), {"ingest_id": 1}, keep=_PER_CALL)
    run_cols = [c.strip() for c in RUN_COLUMNS.split(",")] + ["record_hash2", "record_occ"]
    cls_sql, cls_params = _classify_sql(cfg, reuse=False, staged=False)
    cls = inline_params(_body(cls_sql, r"INSERT INTO classifications"),
                        {**cls_params[0], "ruleset": ruleset, "after": 0, "hi": 1, "words": list(cfg.success_words)})
    result = inline_params(RESULT_SQL, {"ruleset": ruleset})
    aggregates = frozenset(r[0].lower() for r in store.rows(
        "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'aggregate'"))
    return lazy_branches(lazy_regexes(f"""
{_ARGS_CTE}, _final AS ({final}
), _occ AS (SELECT NULL::UBIGINT AS h, NULL::UBIGINT AS h2, NULL::BIGINT AS n WHERE false
), _keys AS ({keys}
), _no_runs AS (SELECT NULL::BIGINT AS rid, NULL::UBIGINT AS record_hash, NULL::UBIGINT AS record_hash2,
                       NULL::INTEGER AS record_bytes, NULL::INTEGER AS record_occ WHERE false
), _fresh AS ({fresh}
), runs AS ({_typed(store, "runs", new, run_cols)}
), judge_runs AS (SELECT NULL::BIGINT AS rid, NULL::VARCHAR AS content_hash WHERE false
), judge_verdicts AS (SELECT NULL::VARCHAR AS content_hash, NULL::VARCHAR AS verdict, NULL::TIMESTAMP AS judged_at
                      WHERE false
), classifications AS ({_typed(store, "classifications", cls)}
), _special AS (
  -- what the window does more for a line than parse, key and insert it: assemble a stream, unfold OTLP spans
  SELECT count(*) FILTER (WHERE (ev_type IS NOT NULL AND ev_type <> 'error') OR shape = 'otlp') AS _special,
         max(ts_raw) AS _ts_raw
  FROM _final
)
SELECT _special.*, res.* FROM _special LEFT JOIN ({result}) res ON true
"""), aggregates)
