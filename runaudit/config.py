"""The TOML configuration: field mapping, classifier settings, done-conditions, topics, report thresholds.

Looked up as ``--config FILE``, else ``runaudit.toml`` in the working directory, else built-in defaults.
Unknown keys are rejected so that a typo never silently disables a rule.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runaudit.errors import RuleConfigError

DEFAULT_CONFIG_NAME = "runaudit.toml"

DEFAULT_SUCCESS_WORDS = ("success", "succeeded", "successful", "ok", "completed", "complete", "done", "true",
                         "passed", "pass", "finished")

MAPPABLE_FIELDS = ("run_id", "task_id", "ts", "prompt", "text", "http_status", "stop_reason", "status", "model",
                   "error", "latency_ms", "input_tokens", "output_tokens", "topic")

DONE_KEYS = ("min_chars", "max_chars", "min_headings", "required_json_keys", "json_schema", "must_match",
             "must_not_match")

_PATH_RE = re.compile(r"^\$?\.?([A-Za-z0-9_\-@]+|\[\d+\])(\.[A-Za-z0-9_\-@]+|\[\d+\])*$")


def json_path(spec: str) -> str:
    """Turn a user path like ``output.content`` or ``choices[0].text`` into a DuckDB JSON path."""
    s = spec.strip()
    if not s or not _PATH_RE.match(s):
        raise RuleConfigError(f"[ingest.map] path {spec!r} is not a dotted JSON path",
                              hint='use a form like "output.content" or "choices[0].message.content"')
    s = s.lstrip("$").lstrip(".")
    return "$." + s if not s.startswith("[") else "$" + s


@dataclass(frozen=True)
class DoneSpec:
    """Done-condition settings for tasks matching ``pattern`` (a glob on task_id; ``*`` for the defaults)."""

    pattern: str
    rules: dict[str, Any]


@dataclass
class Config:
    """A validated runaudit configuration."""

    source: str | None = None
    field_map: dict[str, str] = field(default_factory=dict)
    # Longer lines are quarantined (first 64 KiB kept): a record this size is not an LLM call, and holding it
    # would take several copies of it in memory.
    max_line_bytes: int = 32 * 1024 * 1024
    # A file modified less than this many seconds ago may still be being written: its unterminated last line and
    # a stream still open at its end are held back (not counted, not classified) until completed or quiet.
    settle_seconds: float = 300.0
    success_words: tuple[str, ...] = DEFAULT_SUCCESS_WORDS
    refusal_threshold: float = 0.5
    ambiguous_low: float = 0.25
    ambiguous_high: float = 0.75
    recitation_outcome: str = "declined"
    tool_use_final: str = "ok"
    done: list[DoneSpec] = field(default_factory=list)
    topics: dict[str, list[str]] = field(default_factory=dict)
    report_weeks: int = 8
    hand_threshold: float = 0.2
    hand_weeks: int = 3
    hand_min_runs: int = 5
    raw: dict[str, Any] = field(default_factory=dict)
    text: str | None = None  # the TOML text it was read from (remembered in the database)

    def fingerprint_data(self) -> dict[str, Any]:
        """What of the config changes classification (for the ruleset hash)."""
        return {
            "success_words": sorted(self.success_words),
            "refusal_threshold": self.refusal_threshold,
            "ambiguous": [self.ambiguous_low, self.ambiguous_high],
            "recitation": self.recitation_outcome,
            "tool_use_final": self.tool_use_final,
            "done": [[d.pattern, d.rules] for d in self.done],
        }

    def digest(self) -> str:
        """A short hash of the classification-relevant settings."""
        return hashlib.sha256(json.dumps(self.fingerprint_data(), sort_keys=True).encode()).hexdigest()[:12]


def _check_keys(section: str, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RuleConfigError(f"unknown key(s) in [{section}]: {', '.join(unknown)}",
                              hint=f"allowed: {', '.join(allowed)}")


def _regex_error(pat: str) -> str | None:
    """Why DuckDB (RE2, the engine that runs the rules) rejects ``pat``, or None. Python's ``re`` accepts
    look-arounds and back-references that RE2 refuses, so validating with it let bad patterns through."""
    import duckdb

    try:
        duckdb.connect(":memory:").execute("SELECT regexp_matches('', ?)", [pat]).fetchall()
    except duckdb.Error as e:
        return str(e).splitlines()[0]
    return None


def _check_done(section: str, rules: dict[str, Any]) -> dict[str, Any]:
    _check_keys(section, rules, DONE_KEYS)
    out: dict[str, Any] = {}
    for k, v in rules.items():
        if k in ("min_chars", "max_chars", "min_headings"):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise RuleConfigError(f"[{section}] {k} must be a non-negative integer, got {v!r}")
        elif k == "required_json_keys":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise RuleConfigError(f"[{section}] required_json_keys must be a list of strings")
        elif k == "json_schema":
            if isinstance(v, str):
                try:
                    v = json.loads(v)
                except json.JSONDecodeError as e:
                    raise RuleConfigError(f"[{section}] json_schema is not valid JSON: {e}") from e
            if not isinstance(v, dict):
                raise RuleConfigError(f"[{section}] json_schema must be a table or a JSON object string")
        elif k in ("must_match", "must_not_match"):
            pats = [v] if isinstance(v, str) else v
            if not isinstance(pats, list) or not all(isinstance(x, str) for x in pats):
                raise RuleConfigError(f"[{section}] {k} must be a regex string or a list of them")
            for pat in pats:
                err = _regex_error(pat)
                if err:
                    raise RuleConfigError(f"[{section}] {k} regex {pat!r} is invalid: {err}")
            v = pats
        out[k] = v
    return out


def _number(where: str, key: str, v: Any, lo: float, hi: float, *, integer: bool = False) -> float:
    """A finite number in [lo, hi] (an int when ``integer``), or a RuleConfigError naming the key."""
    kind = "a whole number" if integer else "a number"
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or v != v or not (lo <= v <= hi):
        raise RuleConfigError(f"[{where}] {key} must be {kind} from {lo:g} to {hi:g}, got {v!r}")
    return v


def parse_config(data: dict[str, Any], source: str | None = None) -> Config:
    """Validate a parsed TOML document into a :class:`Config`."""
    _check_keys("top level", data, ("ingest", "classify", "done", "topics", "report", "judge"))
    cfg = Config(source=source, raw=data)
    ing = data.get("ingest", {})
    _check_keys("ingest", ing, ("map", "max_line_bytes", "settle_seconds"))
    fmap = ing.get("map", {})
    _check_keys("ingest.map", fmap, MAPPABLE_FIELDS)
    for k, v in fmap.items():
        if not isinstance(v, str):
            raise RuleConfigError(f"[ingest.map] {k} must be a string path, got {v!r}")
        cfg.field_map[k] = json_path(v)
    if "max_line_bytes" in ing:
        cfg.max_line_bytes = int(_number("ingest", "max_line_bytes", ing["max_line_bytes"], 1024, 1 << 31,
                                         integer=True))
    if "settle_seconds" in ing:
        cfg.settle_seconds = float(_number("ingest", "settle_seconds", ing["settle_seconds"], 0, 1e9))
    cl = data.get("classify", {})
    _check_keys("classify", cl, ("success_words", "refusal_threshold", "ambiguous_band", "recitation",
                                 "tool_use_final"))
    if "success_words" in cl:
        words = cl["success_words"]
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise RuleConfigError("[classify] success_words must be a list of strings")
        cfg.success_words = tuple(w.lower() for w in words)
    if "refusal_threshold" in cl:
        cfg.refusal_threshold = float(_number("classify", "refusal_threshold", cl["refusal_threshold"], 0, 1))
    if "ambiguous_band" in cl:
        band = cl["ambiguous_band"]
        if not isinstance(band, list) or len(band) != 2:
            raise RuleConfigError(f"[classify] ambiguous_band must be two numbers [low, high], got {band!r}")
        lo, hi = (float(_number("classify", "ambiguous_band", b, 0, 1)) for b in band)
        if lo > hi:
            raise RuleConfigError(f"[classify] ambiguous_band must be [low, high] with low <= high, got {band!r}")
        cfg.ambiguous_low, cfg.ambiguous_high = lo, hi
    if "recitation" in cl:
        if cl["recitation"] not in ("declined", "degraded"):
            raise RuleConfigError("[classify] recitation must be \"declined\" or \"degraded\"")
        cfg.recitation_outcome = cl["recitation"]
    if "tool_use_final" in cl:
        if cl["tool_use_final"] not in ("ok", "degraded"):
            raise RuleConfigError("[classify] tool_use_final must be \"ok\" or \"degraded\"")
        cfg.tool_use_final = cl["tool_use_final"]
    done = dict(data.get("done", {}))
    tasks = done.pop("tasks", {})
    if done:
        cfg.done.append(DoneSpec("*", _check_done("done", done)))
    if not isinstance(tasks, dict):
        raise RuleConfigError("[done.tasks] must be a table of task globs")
    for pattern, rules in tasks.items():
        if not isinstance(rules, dict):
            raise RuleConfigError(f"[done.tasks.\"{pattern}\"] must be a table")
        cfg.done.append(DoneSpec(pattern, _check_done(f'done.tasks."{pattern}"', rules)))
    topics = data.get("topics", {})
    for name, kws in topics.items():
        kw = [kws] if isinstance(kws, str) else kws
        if not isinstance(kw, list) or not all(isinstance(x, str) for x in kw):
            raise RuleConfigError(f"[topics] {name} must be a list of keywords or regex:PATTERN strings")
        for k in kw:
            if k.startswith("regex:"):
                err = _regex_error(k[6:])
                if err:
                    raise RuleConfigError(f"[topics] {name}: bad regex {k[6:]!r}: {err}")
        cfg.topics[name] = kw
    rep = data.get("report", {})
    _check_keys("report", rep, ("weeks", "hand_threshold", "hand_weeks", "hand_min_runs"))
    cfg.report_weeks = int(_number("report", "weeks", rep.get("weeks", cfg.report_weeks), 1, 520, integer=True))
    cfg.hand_threshold = float(_number("report", "hand_threshold", rep.get("hand_threshold", cfg.hand_threshold),
                                       0, 1))
    cfg.hand_weeks = int(_number("report", "hand_weeks", rep.get("hand_weeks", cfg.hand_weeks), 1, 520,
                                 integer=True))
    cfg.hand_min_runs = int(_number("report", "hand_min_runs", rep.get("hand_min_runs", cfg.hand_min_runs), 0,
                                    1e9, integer=True))
    _check_keys("judge", data.get("judge", {}), ("model", "prompt_version"))
    return cfg


def find_config(path: str | Path | None = None, db: str | Path | None = None) -> Path | None:
    """The config file to use: ``path``, else ``./runaudit.toml``, else ``runaudit.toml`` beside the database."""
    if path is not None:
        return Path(path)
    for candidate in (Path(DEFAULT_CONFIG_NAME),
                      Path(db).absolute().parent / DEFAULT_CONFIG_NAME if db and str(db) != ":memory:" else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def config_for(store: Any, path: str | Path | None = None, db: str | Path | None = None) -> Config:
    """The configuration for a command on ``store``: a config file found by :func:`find_config` (remembered in the
    database, when it is writable, with its text), else the one last remembered there, else the defaults. So a
    command run without ``--config`` classifies exactly as the last one that had it: the numbers never change
    because a flag was left out."""
    found = find_config(path, db)
    if found is not None:
        cfg = load_config(found)
        if not getattr(store, "read_only", True):
            store.set_meta("config_text", cfg.text or "")
            store.set_meta("config_source", str(found.absolute()))
        return cfg
    text = store.get_meta("config_text")
    if text is None:
        return Config(source=None)
    src = store.get_meta("config_source") or "config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RuleConfigError(f"the config remembered in the database ({src}) is not valid TOML: {e}") from e
    cfg = parse_config(data, f"{src} (remembered in the database)")
    cfg.text = text
    return cfg


def describe(cfg: Config) -> str:
    """One short line naming the config used."""
    return cfg.source or "built-in defaults (no runaudit.toml found, none remembered)"


def load_config(path: str | Path | None = None) -> Config:
    """Load ``path``, else ``./runaudit.toml`` if present, else the defaults."""
    if path is None:
        default = Path(DEFAULT_CONFIG_NAME)
        if not default.exists():
            return Config()
        path = default
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError as e:
        raise RuleConfigError(f"config file {p} not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise RuleConfigError(f"cannot read config file {p}: {e}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RuleConfigError(f"config file {p} is not valid TOML: {e}") from e
    cfg = parse_config(data, str(p))
    cfg.text = text
    return cfg
