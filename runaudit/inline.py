"""Check one call as it happens, with the same rules as the audit.

``check(response, task_id=..., prompt=...)`` turns any response runaudit can read (an ``anthropic`` or ``openai``
SDK object or exception, or a provider body as a dict or JSON text) into the log record runaudit would read,
runs that record through the engine (:mod:`runaudit.engine`: the ingest window's SQL, then the classifier's, on
an in-memory DuckDB) and returns a :class:`Verdict`. The verdict is the one ``runaudit audit`` gives when the same
record is logged (``log_call``) and audited later: the same line, the same SQL, the same config, the same
ruleset hash.

``handle(...)`` acts on it: ``ok`` returns the deliverable, ``infra_error`` raises :class:`CallInfraError` (with the
provider's ``retry-after``), ``degraded`` raises :class:`DoneConditionError` naming what failed, ``declined``
holds the run: it is written to the review queue folder under its review key, in the format of
``runaudit review export``, and returned as :class:`Held`. runaudit never rewords or resends a request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from runaudit.config import Config, load_config
from runaudit.errors import RunauditError, UsageError

_FIELDS = ("outcome", "sub_reason", "rule_code", "signal", "retryable", "refusal_score", "done_failures",
           "review_key", "refusal_kind", "reported_success", "ruleset")


@dataclass
class Verdict:
    """What the rules say about one call, with the evidence, and the exact record they read.

    ``outcome`` is one of ``ok``, ``infra_error``, ``declined``, ``degraded``; ``review_key`` is the review queue's
    idempotency key (set for declined and degraded runs, as in the audit); ``line`` is the JSON line that
    :func:`log_call` writes, so the audit of that log reads the same data.
    """

    outcome: str
    sub_reason: str | None
    rule_code: str
    signal: str | None
    retryable: bool
    refusal_score: float | None
    done_failures: list[str]
    review_key: str | None
    refusal_kind: str | None
    reported_success: bool | None
    ruleset: str
    record: dict[str, Any]
    line: str
    run: dict[str, Any] = field(repr=False, default_factory=dict)  # the normalised run (runs columns)
    retry_after: float | None = None  # seconds, from the provider's retry-after header when present
    config: Config | None = field(repr=False, default=None)  # the configuration the rules ran under

    @property
    def text(self) -> str | None:
        """The delivered text, as the rules read it."""
        return self.run.get("response_text")

    @property
    def tool_payload(self) -> Any:
        """What the model sent to its tools (``[{"name", "input"}]``), or None."""
        raw = self.run.get("tool_payload")
        if raw in (None, "[]"):
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    @property
    def deliverable(self) -> Any:
        """What the call delivered: the text, else the tool payload (a forced tool call or a schema answer)."""
        text = self.text
        return text if text is not None and text.strip() else self.tool_payload

    def as_dict(self) -> dict[str, Any]:
        """The verdict's fields (JSON-ready), without the record."""
        d = {k: getattr(self, k) for k in _FIELDS}
        d["retry_after"] = self.retry_after
        return d


class CallError(RunauditError):
    """A checked call that did not deliver; ``verdict`` holds the evidence."""

    def __init__(self, message: str, verdict: Verdict) -> None:
        super().__init__(message)
        self.verdict = verdict


class CallInfraError(CallError):
    """The call failed in the infrastructure (rate limit, overload, timeout, server or client error).

    ``retryable`` says whether sending the same request again may succeed (False for client errors such as a
    bad request or an exhausted quota); ``retry_after`` is the provider's retry-after in seconds, when sent.
    """

    def __init__(self, message: str, verdict: Verdict) -> None:
        super().__init__(message, verdict)
        self.retryable = verdict.retryable
        self.retry_after = verdict.retry_after


class DoneConditionError(CallError):
    """The call came back but does not meet a done-condition (empty, truncated, missing its structure)."""

    def __init__(self, message: str, verdict: Verdict) -> None:
        super().__init__(message, verdict)
        self.failed = list(verdict.done_failures) or [verdict.sub_reason or verdict.rule_code]


@dataclass
class Held:
    """A declined call, held for a person: written to the review queue, never retried or reworded."""

    verdict: Verdict
    review_file: Path | None

    @property
    def review_key(self) -> str | None:
        return self.verdict.review_key


# -- records ---------------------------------------------------------------------------------------------

def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _retry_after(headers: Any) -> float | None:
    """Seconds from a ``retry-after-ms`` or ``retry-after`` header (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(float(ms) / 1000.0, 0.0)
        v = headers.get("retry-after")
    except (AttributeError, TypeError, ValueError):
        return None
    if v is None:
        return None
    try:
        return max(float(v), 0.0)
    except ValueError:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            when = parsedate_to_datetime(str(v))
            return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)
    return None


def _dump(obj: Any) -> Any:
    """An SDK object as plain JSON data (pydantic ``model_dump``, proto-plus ``to_dict``, dataclasses)."""
    if isinstance(obj, (dict, list, str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "model_dump"):
        # warnings=False: a parsed response's ``parsed`` field (the caller's own model) is dumped as its plain data
        # without pydantic printing a serializer warning into the pipeline's output
        return obj.model_dump(mode="json", warnings=False)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise UsageError(f"runaudit cannot read a {type(obj).__name__}: pass an SDK response or exception, a dict, "
                     "or the response's JSON text")


def _error_fields(status: Any, body: Any, kind: str, message: str,
                  headers: Any) -> tuple[dict[str, Any], float | None]:
    """The flat-record fields of a failed call: HTTP status, the provider's error object (``body``'s ``error``, or
    ``body`` itself, with ``message`` when it has none; else ``{"type": kind, "message": message}``), and
    retry-after from ``headers``."""
    err: Any = None
    if isinstance(body, dict):
        inner = body.get("error")
        err = inner if isinstance(inner, dict) else body
    if not isinstance(err, dict) or not err:
        err = {"type": kind, "message": message}
    else:
        err = dict(err)
        err.setdefault("message", message)
    fields: dict[str, Any] = {"error": err}
    if isinstance(status, int) and not isinstance(status, bool):
        fields["http_status"] = status
    return fields, _retry_after(headers)


def _exception_fields(exc: BaseException) -> tuple[dict[str, Any], float | None]:
    """The flat-record fields of an SDK exception: HTTP status, the provider's error object, retry-after."""
    response = getattr(exc, "response", None)
    message = getattr(exc, "message", None) or str(exc)
    return _error_fields(getattr(exc, "status_code", None), getattr(exc, "body", None), type(exc).__name__, message,
                         getattr(response, "headers", None))


def _http_response(obj: Any) -> Any:
    """The HTTP response ``obj`` is or wraps (an ``httpx``/``requests`` response, or an SDK's
    ``with_raw_response`` result, whose ``http_response`` it is), else None."""
    if isinstance(obj, (dict, list, str, bytes, bytearray)) or obj is None:
        return None
    if hasattr(obj, "http_response") and callable(getattr(obj, "parse", None)):
        obj = obj.http_response
    status = getattr(obj, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool) and hasattr(obj, "headers") and hasattr(obj, "text"):
        return obj
    return None


def _http_fields(resp: Any) -> tuple[dict[str, Any], float | None]:
    """A 2xx HTTP response as ``{"response": body}``; any other as the flat fields of a failed call (its status,
    the provider's error object from its body, or the body's text as the message, and retry-after)."""
    status = int(resp.status_code)
    try:
        text = resp.text
    except (UnicodeDecodeError, LookupError) as e:
        raise UsageError(f"the HTTP {status} response's body is not text: {e}") from e
    except RuntimeError as e:  # httpx: a streamed response whose body was not read
        raise UsageError(f"the HTTP {status} response's body was not read: read it (or pass its events to "
                         f"check_record) first ({e})") from e
    text = text if isinstance(text, str) else str(text)
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if 200 <= status < 300:
        if not isinstance(body, dict):
            raise UsageError(f"the HTTP {status} response's body is not a JSON object: pass the provider's "
                             "response body (a stream's events go to check_record)")
        return {"response": body}, None
    return _error_fields(status, body, "http_error", text, getattr(resp, "headers", None))


def to_record(response: Any, *, task_id: str | None = None, prompt: str | None = None, run_id: str | None = None,
              ts: str | dt.datetime | None = None, status: str | None = None) -> tuple[dict[str, Any], float | None]:
    """The log record for one call, as :func:`log_call` writes it, and the retry-after seconds if any.

    A response body becomes ``{"run_id", "task_id", "ts", "prompt", "response": body}`` (the wrapped shape); an
    exception becomes a flat record with ``http_status`` and the provider's ``error`` object. ``run_id`` defaults
    to a new UUID, so that a call without a prompt has a review key of its own; ``status`` is what the pipeline
    itself reports (it decides the audit's "reported success"), omitted when not given.
    """
    when = ts.isoformat() if isinstance(ts, dt.datetime) else (ts or _now())
    rec: dict[str, Any] = {"run_id": run_id or uuid.uuid4().hex, "task_id": task_id, "ts": when}
    if prompt is not None:
        rec["prompt"] = prompt
    retry_after = None
    if isinstance(response, BaseException):
        fields, retry_after = _exception_fields(response)
        rec.update(fields)
    elif (http := _http_response(response)) is not None:
        fields, retry_after = _http_fields(http)
        rec.update(fields)
    else:
        body = response
        if isinstance(body, (bytes, bytearray)):
            body = body.decode("utf-8", errors="replace")
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except ValueError as e:
                raise UsageError("the response text is not JSON: pass the provider's response body") from e
        body = _dump(body)
        if not isinstance(body, dict):
            raise UsageError(f"a response body is a JSON object; this one is of type {type(body).__name__}"
                             " (a list of stream events goes to check_record)")
        rec["response"] = body
    if status is not None:
        rec["status"] = status
    if retry_after is not None:
        rec["retry_after_s"] = retry_after
    return {k: v for k, v in rec.items() if v is not None}, retry_after


def record_line(record: dict[str, Any]) -> str:
    """The one JSON line a record is logged as (no newline inside it: JSON escapes every control character).

    A record holding a lone UTF-16 surrogate (text no UTF-8 file can hold) is written with every non-ASCII
    character escaped, as ``json.dumps`` does by default; the audit reads such an escape as U+FFFD."""
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str)
    return line


# -- config ----------------------------------------------------------------------------------------------

_CFG_CACHE: dict[tuple[str, int, int], Config] = {}
_CFG_LOCK = threading.Lock()


def _config(config: str | os.PathLike[str] | Config | None) -> Config:
    """A Config as given, else the file named (read again only when it changes), else ./runaudit.toml or the
    defaults: the same resolution as the command line without --config."""
    if isinstance(config, Config):
        return config
    p = Path(config) if config is not None else Path("runaudit.toml")
    if config is None and not p.is_file():
        return Config()
    try:
        st = p.stat()
    except OSError:
        return load_config(p)  # raises the clear error
    key = (str(p.absolute()), st.st_mtime_ns, st.st_size)
    with _CFG_LOCK:
        cfg = _CFG_CACHE.get(key)
        if cfg is None:
            cfg = _CFG_CACHE[key] = load_config(p)
        return cfg


# -- the check -------------------------------------------------------------------------------------------

def _verdict(run: dict[str, Any], record: dict[str, Any], line: str, retry_after: float | None) -> Verdict:
    return Verdict(outcome=run["outcome"], sub_reason=run["sub_reason"], rule_code=run["rule_code"],
                   signal=run["signal"], retryable=bool(run["retryable"]), refusal_score=run["refusal_score"],
                   done_failures=list(run["done_failures"] or []), review_key=run["review_key"],
                   refusal_kind=run["refusal_kind"], reported_success=run["reported_success"],
                   ruleset=run["ruleset"], record=record, line=line, run=run, retry_after=retry_after)


def _run(lines: list[str], config: str | os.PathLike[str] | Config | None,
         source: str) -> tuple[list[Verdict], list[dict[str, Any]]]:
    from runaudit.engine import engine_for

    cfg = _config(config)
    batch = engine_for(cfg).run_lines(lines, source=source)
    out = []
    for run in batch.runs.to_pylist():
        try:
            rec = json.loads(run["raw"])
        except (TypeError, ValueError):
            rec = {}
        v = _verdict(run, rec if isinstance(rec, dict) else {}, run["raw"], None)
        v.config = cfg
        out.append(v)
    return out, batch.quarantine.to_pylist()


def check_lines(lines: list[str], *, config: str | os.PathLike[str] | Config | None = None,
                source: str = "<inline>") -> list[Verdict]:
    """Verdicts for log lines as a file would hold them, one per run (a stream's events make one run), in order.
    Lines that are not records runaudit can read make no verdict: the audit would quarantine them."""
    return _run(lines, config, source)[0]


def _one(lines: list[str], config: str | os.PathLike[str] | Config | None) -> Verdict:
    verdicts, quarantined = _run(lines, config, "<inline>")
    if quarantined and not verdicts:
        q = quarantined[0]
        raise UsageError(f"not a record runaudit can read: {q['reason']} ({q['detail']})")
    if len(verdicts) != 1:
        raise UsageError(f"the record holds {len(verdicts)} calls, not one: use check_lines")
    return verdicts[0]


def check_record(record: dict[str, Any] | str | list[Any], *,
                 config: str | os.PathLike[str] | Config | None = None) -> Verdict:
    """The verdict for one record as logged: a dict or JSON line of any shape runaudit ingests (a flat pipeline
    record, a provider body, a batch line, an agent result), or a list of a stream's events."""
    items = record if isinstance(record, list) else [record]
    return _one([x if isinstance(x, str) else record_line(_dump(x)) for x in items], config)


def check(response: Any, *, task_id: str | None = None, prompt: str | None = None, run_id: str | None = None,
          ts: str | dt.datetime | None = None, status: str | None = None,
          config: str | os.PathLike[str] | Config | None = None) -> Verdict:
    """Classify one call with the audit's rules.

    Args:
        response: an ``anthropic``/``openai`` SDK response or exception (``RateLimitError``, ``APIStatusError``,
            ``APITimeoutError``, ...), an SDK ``with_raw_response`` result, an ``httpx`` or ``requests``
            response (a 2xx is its JSON body; any other status is a failed call with the provider's error object
            and ``retry-after``), or a provider response body as a dict or JSON text. A dict that holds no
            provider body but is a whole record of a shape the audit reads (a batch result line, an agent's
            result, a flat pipeline record) is read as that record, with ``task_id`` etc. added where it has none.
        task_id: the job this call belongs to (the audit's task; done-conditions apply by task glob).
        prompt: the prompt text (the review key is ``sha256(task_id + "\\n" + prompt)``, as in the audit).
        run_id, ts, status: as the log would record them; ``run_id`` and ``ts`` default to a new id and now.
        config: a :class:`Config`, a ``runaudit.toml`` path, or None for ./runaudit.toml or the defaults.

    Returns:
        The :class:`Verdict`, whose ``line`` is what :func:`log_call` writes.
    """
    record, retry_after = to_record(response, task_id=task_id, prompt=prompt, run_id=run_id, ts=ts, status=status)
    line = record_line(record)
    v = _one([line], config)
    v.record, v.line, v.retry_after = record, line, retry_after
    return _as_itself(v, dict(task_id=task_id, prompt=prompt, run_id=run_id, ts=ts, status=status), config) or v


def _as_itself(v: Verdict, given: dict[str, Any], config: str | os.PathLike[str] | Config | None) -> Verdict | None:
    """The verdict for a dict passed as a response that the rules found no provider body in (a whole log record:
    a batch line, an agent's result, a flat record), read as the record it is, with the fields the caller gave
    added where it has none; None when it is a body after all, or no record runaudit reads either."""
    body = v.record.get("response")
    if v.run.get("shape") != "wrapped" or v.run.get("provider") != "unknown" or not isinstance(body, dict):
        return None
    own = dict(body)
    for k, value in given.items():
        if value is not None and own.get(k) is None:
            own[k] = value.isoformat() if isinstance(value, dt.datetime) else value
    line = record_line(own)
    try:
        mine = _one([line], config)
    except UsageError:
        return None
    mine.record, mine.line = own, line
    return mine


def check_many(calls: list[dict[str, Any]], *,
               config: str | os.PathLike[str] | Config | None = None) -> list[Verdict]:
    """Verdicts for many calls in one pass: ``calls`` holds dicts of :func:`check`'s arguments (``response``,
    ``task_id``, ``prompt``, ...). The window's statements and the classifier run once for the whole batch (about
    a tenth of a single check's cost per call in a batch of 100); each verdict is the one :func:`check` gives for
    that call alone."""
    built = [to_record(c["response"], **{k: c.get(k) for k in ("task_id", "prompt", "run_id", "ts", "status")})
             for c in calls]
    lines = [record_line(rec) for rec, _ in built]
    verdicts, quarantined = _run(lines, config, "<inline>")
    if len(verdicts) != len(calls):
        why = f": {quarantined[0]['reason']} ({quarantined[0]['detail']})" if quarantined else ""
        raise UsageError(f"{len(calls) - len(verdicts)} of {len(calls)} calls are not records runaudit can read"
                         + why)
    for v, (rec, retry_after), line in zip(verdicts, built, lines, strict=True):
        v.record, v.line, v.retry_after = rec, line, retry_after
    return [_as_itself(v, {k: c.get(k) for k in ("task_id", "prompt", "run_id", "ts", "status")}, config) or v
            for v, c in zip(verdicts, calls, strict=True)]


# -- acting on it ----------------------------------------------------------------------------------------

def _lock(fd: int) -> None:
    with contextlib.suppress(ImportError, OSError):
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)


def log_call(path: str | os.PathLike[str], verdict_or_record: Verdict | dict[str, Any] | str) -> None:
    """Append one call to a JSONL log as one line, in one write, under an exclusive lock, flushed to the disk.

    Safe for concurrent writers (threads and processes): each line lands whole. Pass the :class:`Verdict` (its
    ``line`` is exactly what the check read), a record dict, or a JSON line.
    """
    if isinstance(verdict_or_record, Verdict):
        line = verdict_or_record.line
    elif isinstance(verdict_or_record, dict):
        line = record_line(verdict_or_record)
    else:
        line = str(verdict_or_record)
    if "\n" in line or "\r" in line:
        raise UsageError("a log line cannot hold a line break")
    data = (line + "\n").encode("utf-8")
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _lock(fd)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def _merge_item(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A queue item held again: the new run added to the runs of the item already in the folder."""
    seen = {r.get("run_id") for r in old.get("runs", [])}
    if new["runs"] and new["runs"][0]["run_id"] in seen:
        return old
    merged = dict(new)
    merged["runs"] = list(old.get("runs", [])) + new["runs"]
    merged["run_ids"] = list(old.get("run_ids", [])) + new["run_ids"]
    merged["occurrences"] = int(old.get("occurrences", 0)) + new["occurrences"]
    firsts = [x for x in (old.get("first_seen"), new["first_seen"]) if x]
    merged["first_seen"] = min(firsts) if firsts else None
    merged["verdict"] = old.get("verdict")
    return merged


def hold(verdict: Verdict, review_dir: str | os.PathLike[str] = "review_queue") -> Path | None:
    """Write a declined (or degraded) call into the review queue folder as ``<review_key>.json``, in the format
    of ``runaudit review export`` (a later export of the audited log updates the same file)."""
    from runaudit.engine import engine_for
    from runaudit.outputs import write_atomic
    from runaudit.review import _item_json, _safe_target

    if verdict.review_key is None:
        return None
    d = Path(review_dir)
    d.mkdir(parents=True, exist_ok=True)
    # the item as the export would write it: the queue's SQL over the run, in the engine's database
    row = engine_for(verdict.config or Config()).queue_item(verdict.run)
    if row is None:
        return None
    item = _item_json(row)
    target = _safe_target(d, verdict.review_key)
    lock_fd = os.open(os.fspath(d / ".hold.lock"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        _lock(lock_fd)
        if target.exists():
            with contextlib.suppress(ValueError, OSError):
                old = json.loads(target.read_text(encoding="utf-8"))
                if isinstance(old, dict) and old.get("key") == verdict.review_key:
                    item = _merge_item(old, item)
        write_atomic(target, json.dumps(item, indent=2, ensure_ascii=False, default=str) + "\n")
    finally:
        os.close(lock_fd)
    return target


def handle(response: Any, *, task_id: str | None = None, prompt: str | None = None, run_id: str | None = None,
           ts: str | dt.datetime | None = None, status: str | None = None,
           config: str | os.PathLike[str] | Config | None = None, log: str | os.PathLike[str] | None = None,
           review_dir: str | os.PathLike[str] = "review_queue") -> Any:
    """Check one call and act on the verdict, as an unattended job should.

    * ``ok``: returns the deliverable (the delivered text, else the tool payload);
    * ``infra_error``: raises :class:`CallInfraError` (``.retryable``, ``.retry_after`` seconds);
    * ``degraded``: raises :class:`DoneConditionError` naming the failed condition;
    * ``declined``: writes the run to ``review_dir`` (``<review_key>.json``) and returns :class:`Held`. It is never
      retried or reworded: a person decides.

    With ``log``, the call is first appended to that JSONL file (:func:`log_call`), so the audit sees it too.
    """
    cfg = _config(config)
    v = check(response, task_id=task_id, prompt=prompt, run_id=run_id, ts=ts, status=status, config=cfg)
    if log is not None:
        log_call(log, v)
    if v.outcome == "ok":
        return v.deliverable
    if v.outcome == "infra_error":
        what = v.sub_reason or v.rule_code
        raise CallInfraError(f"call failed ({what}, rule {v.rule_code}); "
                             + ("retry it" + (f" after {v.retry_after:g} s" if v.retry_after is not None else "")
                                if v.retryable else "not retryable: fix the request or the account"), v)
    if v.outcome == "degraded":
        failed = ", ".join(v.done_failures) or (v.sub_reason or v.rule_code)
        raise DoneConditionError(f"call came back degraded: {failed} (rule {v.rule_code})", v)
    return Held(v, hold(v, review_dir))
