"""Reliability and security: hostile input, crashes, concurrency, injection, migrations, masking.

Each test here is named in docs/reliability.md next to the fault it proves runaudit survives.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runaudit.classify import classify
from runaudit.config import Config
from runaudit.ingest import ingest
from runaudit.store import Store
from runaudit.store.schema import MIGRATIONS
from tests.conftest import PEAK_RSS_KB, flat, write_jsonl

PY = sys.executable


def _physical_lines(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _check_accounting(store: Store, path: Path, *, streams: bool = False) -> None:
    """Every line in one bucket; one run per ingested line, or with ``streams`` (event lines fold into one run
    per stream) one run per ``runs_added``."""
    data = path.read_bytes()
    res = ingest(store, [path])
    assert not res.errors, res.errors
    # a file just written may end in a line or a stream still being written: held back, not counted yet
    assert res.lines + res.held == _physical_lines(data)
    assert res.ingested + res.duplicates + res.blank + res.quarantined == res.lines
    # random lines can look like stream chunks (a bare "choices" list, no id): consecutive ones fold into one run
    folded = store.scalar("SELECT count(*) FROM runs WHERE list_contains(notes, 'assembled_from_stream')")
    if not streams and not folded:
        assert res.runs_added == res.ingested
    assert res.runs_added <= res.ingested
    assert store.scalar("SELECT count(*) FROM runs") == res.runs_added
    assert store.scalar("SELECT count(*) FROM quarantine") == res.quarantined
    classify(store, Config())
    assert store.scalar("SELECT count(*) FROM audit_runs") == res.runs_added


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
FIELDS = ["run_id", "task_id", "ts", "prompt", "text", "http_status", "status", "stop_reason", "finish_reason",
          "error", "usage", "model", "latency_ms", "request", "response", "result", "custom_id", "id", "type",
          "role", "content", "object", "choices", "candidates", "promptFeedback", "stopReason", "output"]
records = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)
raw_lines = st.binary(max_size=120).map(lambda b: b.replace(b"\n", b" "))
line = st.one_of(records.map(lambda d: json.dumps(d).encode()), raw_lines,
                 json_values.map(lambda v: json.dumps(v).encode()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(line, max_size=25), st.booleans())
def test_any_input_every_line_is_accounted_for(tmp_path: Path, lines: list[bytes], trailing: bool) -> None:
    p = tmp_path / f"h{random.random()}.jsonl"
    p.write_bytes(b"\n".join(lines) + (b"\n" if trailing and lines else b""))
    with Store.open(":memory:") as store:
        _check_accounting(store, p)


@pytest.mark.parametrize("payload", [
    pytest.param(('{"a":' * 100_000 + "1" + "}" * 100_000 + "\n").encode(), id="deeply-nested"),
    pytest.param(b'{"task_id": "t", "text": "a\x00b"}\n{"task_id": "t", "text": "x\\u0000y"}\n\x00\x00\n',
                 id="nul-bytes"),
    pytest.param(random.Random(1).randbytes(300_000), id="not-utf8-at-all"),
    pytest.param(b"\xef\xbb\xbf" + b"\r\n".join(json.dumps(flat(run_id=str(i))).encode() for i in range(5)),
                 id="bom-crlf"),
    pytest.param(b'{"task_id": "t", "text": "\\ud800 lone surrogate"}\n', id="lone-surrogate"),
    pytest.param(b'{"task_id": "t", "ts": 1e400, "http_status": [1], "usage": {"input_tokens": "many"}}\n',
                 id="odd-types"),
])
def test_hostile_files(tmp_path: Path, payload: bytes) -> None:
    p = tmp_path / "h.jsonl"
    p.write_bytes(payload)
    with Store.open(":memory:") as store:
        _check_accounting(store, p)


@pytest.mark.slow
def test_a_100mb_line(tmp_path: Path) -> None:
    p = tmp_path / "big.jsonl"
    with p.open("w") as f:
        f.write(json.dumps(flat(run_id="small")) + "\n")
        f.write(json.dumps(flat(run_id="huge", text="x" * 100_000_000)) + "\n")
        f.write(json.dumps(flat(run_id="five-mb", text="y" * 5_000_000)) + "\n")
    with Store.open(":memory:") as store:
        _check_accounting(store, p)
        assert store.rows("SELECT reason, source_line, raw_bytes > 100_000_000 FROM quarantine") == [
            ("line_too_long", 2, True)]
        assert store.scalar("SELECT length(response_text) FROM runs WHERE run_id = 'five-mb'") == 5_000_000


def test_symlink_loop_and_unreadable_files(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    write_jsonl(d / "good.jsonl", [flat(run_id="g")])
    (d / "loop").symlink_to(d, target_is_directory=True)
    (d / "dangling.jsonl").symlink_to(d / "missing.jsonl")
    locked = write_jsonl(d / "locked.jsonl", [flat(run_id="l")])
    locked.chmod(0)
    try:
        with Store.open(":memory:") as store:
            res = ingest(store, [d])
        errs = {Path(e["file"]).name for e in res.errors}
        assert "dangling.jsonl" in errs
        if os.geteuid() != 0:  # root reads anything; for everyone else the file is unreadable
            assert "locked.jsonl" in errs
        assert res.ingested >= 1 and all("Traceback" not in e["error"] for e in res.errors)
    finally:
        locked.chmod(0o644)


def test_user_filters_are_bound_parameters(invoke, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "a.duckdb"
    invoke(["audit", write_jsonl(tmp_path / "a.jsonl", [flat(run_id="1", stop_reason="refusal", text="")]),
            "--db", db])
    evil = "x'; DROP TABLE runs; --"
    invoke(["flags", "--db", db, "--task", evil], stdout_has="no falsely")
    invoke(["flags", "--db", db, "--task", "*' OR '1'='1"], stdout_has="no falsely")
    invoke(["report", "--db", db, "--since", "2026-01-01'; DROP TABLE runs; --", "--until", "2027-01-01",
            "--out", tmp_path / "r"], code=2, stderr_has="not a date")
    invoke(["review", "resolve", "abcdef'; DROP TABLE reviews; --", "--verdict", "confirmed", "--db", db], code=2)
    with Store.open(db, read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM runs") == 1
        assert s.scalar("SELECT count(*) FROM reviews") == 0


def test_review_files_mask_secrets(tmp_path: Path) -> None:
    from runaudit.review import export_queue

    key = "sk-ant-api03-REALKEYREALKEYREALKEY0001"
    with Store.open(":memory:") as store:
        ingest(store, [write_jsonl(tmp_path / "a.jsonl", [
            flat(prompt=f"use {key} and Bearer abcdefghijklmnop123", stop_reason="refusal", text="")])])
        classify(store, Config())
        export_queue(store, tmp_path / "q")
    text = "".join(p.read_text() for p in (tmp_path / "q").iterdir())
    assert key not in text and "abcdefghijklmnop123" not in text and "[MASKED]" in text


def test_migrations_from_the_first_released_schema(tmp_path: Path) -> None:
    p = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(p))
    con.execute("CREATE TABLE _runaudit_migrations (seq INTEGER, name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    name, fn = MIGRATIONS[0]
    fn(con)
    con.execute("INSERT INTO _runaudit_migrations VALUES (1, ?, now()::TIMESTAMP)", [name])
    # runs stored by the first schema: later migrations backfill what they derive from them
    con.execute("INSERT INTO runs (rid, record_hash, record_bytes, task_id, prompt, response_text, http_status) "
                "VALUES (1, 1, 10, 'digest', 'Summarise this', 'Done: café', 200), "
                "(2, 2, 10, 'digest', NULL, '   ', 200), (3, 3, 10, 'x', 'p', NULL, 503)")
    # a verdict on the key that prompt-less runs used to share: it must still hold for the run that had it
    old_key = hashlib.sha256(b"digest\n").hexdigest()[:16]
    con.execute("INSERT INTO reviews VALUES (?, 'false-positive', 'checked', 'ana', now()::TIMESTAMP)", [old_key])
    con.close()
    log = write_jsonl(tmp_path / "a.jsonl", [flat(run_id="new")])
    with Store.open(p) as s:
        assert s.scalar("SELECT count(*) FROM _runaudit_migrations") == len(MIGRATIONS)
        facts = s.rows("SELECT rid, idem_key, text_chars, text_blank FROM runs ORDER BY rid")
        assert facts == [(1, hashlib.sha256(b"digest\nSummarise this").hexdigest()[:16], 10, False),
                         (2, hashlib.sha256(b"digest\n\nrun:2").hexdigest()[:16], 3, True),
                         (3, hashlib.sha256(b"x\np").hexdigest()[:16], None, True)]
        assert s.rows("SELECT idem_key, verdict, note FROM reviews") == [(facts[1][1], "false-positive", "checked")]
        ingest(s, [log])
        classify(s, Config())
        assert s.scalar("SELECT count(*) FROM audit_runs") == 4
        assert s.scalar("SELECT outcome FROM audit_runs WHERE rid = 3") == "infra_error"


# -- crashes and concurrency (real subprocesses) -------------------------------------------------------------

def _big_log(path: Path, n: int, bad_every: int = 997) -> int:
    """n lines, every bad_every-th one not JSON; returns the number of bad lines."""
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
    rng = random.Random(3)
    bad = 0
    with path.open("w") as f:
        for i in range(n):
            if i % bad_every == 5:
                f.write(f"not json {i}\n")
                bad += 1
                continue
            f.write(json.dumps(flat(run_id=f"r{i}", prompt=" ".join(rng.choice(words) for _ in range(150)),
                                    text=" ".join(rng.choice(words) for _ in range(200)))) + "\n")
    return bad


def _runaudit(*args: object, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([PY, "-m", "runaudit", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)  # type: ignore[call-overload]


def _wait_until_locked(db: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    from runaudit.errors import StoreBusyError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            Store.open(db, read_only=True).close()
        except StoreBusyError:
            return
        except Exception:  # noqa: BLE001 - not created yet
            pass
        time.sleep(0.05)
    raise AssertionError("the first process never held the lock")


@pytest.mark.slow
def test_kill_9_during_ingest_then_rerun_is_exact(tmp_path: Path) -> None:
    small = write_jsonl(tmp_path / "a-small.jsonl", [flat(run_id=f"s{i}") for i in range(50)] + ["oops"])
    big = tmp_path / "b-big.jsonl"
    n = 60_000
    bad = _big_log(big, n)
    db = tmp_path / "crash.duckdb"
    proc = _runaudit("ingest", small, big, "--db", db, "--json")
    _wait_until_locked(db, proc)
    time.sleep(1.5)
    assert proc.poll() is None, "ingest finished before it could be killed; make the file bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Store.open(db) as s:  # the killed file left nothing; the small one is whole or absent, never partial
        assert s.scalar("SELECT count(*) FROM runs WHERE source_file LIKE '%b-big.jsonl'") == 0
        small_runs = s.scalar("SELECT count(*) FROM runs WHERE source_file LIKE '%a-small.jsonl'")
        # on a loaded machine the kill can come before the small file's commit: a time-based wait cannot tell
        assert small_runs in (0, 50)
        kept = small_runs == 50
        assert s.scalar("SELECT count(*) FROM quarantine") == (1 if kept else 0)
    out = subprocess.run([PY, "-m", "runaudit", "ingest", small, big, "--db", db, "--json"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    # a small file that was kept is unchanged: its 51 lines (50 runs, 1 quarantined) are duplicates now
    assert res == res | {"ingested": n - bad + (0 if kept else 50), "quarantined": bad + (0 if kept else 1),
                         "duplicates": 51 if kept else 0}
    with Store.open(db) as s:
        assert s.scalar("SELECT count(*) FROM runs") == n - bad + 50
        assert s.scalar("SELECT count(DISTINCT run_id) FROM runs") == n - bad + 50
        assert s.scalar("SELECT count(*) FROM quarantine") == bad + 1


@pytest.mark.slow
def test_kill_9_during_audit_keeps_a_readable_classification(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    _big_log(big, 40_000)
    db = tmp_path / "a.duckdb"
    assert subprocess.run([PY, "-m", "runaudit", "audit", big, "--db", db], capture_output=True).returncode == 0
    cfg = tmp_path / "strict.toml"
    for i, delay in enumerate((0.3, 0.8, 1.5)):
        cfg.write_text(f"[done]\nmin_chars = {100 + i}\n")
        proc = _runaudit("audit", "--db", db, "--config", cfg)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Store.open(db, read_only=True) as s:
            rs = s.get_meta("current_ruleset")
            assert s.scalar("SELECT count(*) FROM classifications WHERE ruleset = ?", [rs]) == \
                s.scalar("SELECT count(*) FROM runs")
            assert s.scalar("SELECT count(*) FROM audit_runs") == s.scalar("SELECT count(*) FROM runs")


@pytest.mark.slow
def test_two_writers_and_a_reader_during_ingest(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    _big_log(big, 60_000)
    small = write_jsonl(tmp_path / "small.jsonl", [flat(run_id="x")])
    db = tmp_path / "c.duckdb"
    first = _runaudit("ingest", big, "--db", db)
    _wait_until_locked(db, first)
    second = subprocess.run([PY, "-m", "runaudit", "ingest", small, "--db", db, "--wait", "1"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 4 and "in use by another runaudit process" in second.stderr
    assert "Traceback" not in second.stderr
    rep = subprocess.run([PY, "-m", "runaudit", "report", "--db", db, "--out", tmp_path / "r", "--wait", "0"],
                         capture_output=True, text=True, timeout=60)
    assert rep.returncode == 4 and "in use by another runaudit process" in rep.stderr
    assert "Traceback" not in rep.stderr
    # a reader that may wait says so, and gets the database once the writer is done
    reader = subprocess.run([PY, "-m", "runaudit", "review", "list", "--db", db, "--wait", "300"],
                            capture_output=True, text=True, timeout=600)
    assert "waiting up to 300 s" in reader.stderr and "is in use by another" not in reader.stderr
    assert "Traceback" not in reader.stderr
    # a writer that waits long enough gets its turn
    third = subprocess.run([PY, "-m", "runaudit", "ingest", small, "--db", db, "--wait", "300", "--json"],
                           capture_output=True, text=True, timeout=600)
    assert first.wait(timeout=600) == 0
    assert third.returncode == 0 and json.loads(third.stdout)["ingested"] == 1


@pytest.mark.slow
def test_ctrl_c_during_ingest_exits_130_and_leaves_a_readable_db(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    bad = _big_log(big, 120_000)
    db = tmp_path / "i.duckdb"
    for _ in range(3):
        proc = _runaudit("ingest", big, "--db", db)
        _wait_until_locked(db, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
        if proc.returncode == 0:
            continue  # the ingest finished before the signal landed: nothing to check this round
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "bug" not in err
    # whenever the signal landed (even during the first migration), a re-run finishes the file exactly
    again = subprocess.run([PY, "-m", "runaudit", "ingest", big, "--db", db, "--json"], capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    with Store.open(db, read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM runs") == 120_000 - bad
        assert s.scalar("SELECT count(*) FROM quarantine") == bad


def test_interrupts_wrapped_by_the_store_are_still_interrupts() -> None:
    from runaudit.errors import ExitCode, StoreError, exit_code_for

    class InterruptException(Exception):  # the name DuckDB gives its SIGINT error
        pass

    try:
        try:
            raise InterruptException("INTERRUPT Error: Interrupted!")
        except InterruptException as e:
            raise StoreError("query failed") from e
    except StoreError as wrapped:
        assert exit_code_for(wrapped) == ExitCode.INTERRUPT
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("cannot rollback") from None
    except RuntimeError as during:
        assert exit_code_for(during) == ExitCode.INTERRUPT


def test_truncated_and_read_only_databases_say_what_is_wrong(tmp_path: Path) -> None:
    import os

    from runaudit.errors import StoreError

    db = tmp_path / "t.duckdb"
    with Store.open(db) as s:
        ingest(s, [write_jsonl(tmp_path / "a.jsonl", [flat(run_id=str(i)) for i in range(50)])])
    data = db.read_bytes()
    cut = tmp_path / "cut.duckdb"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreError) as e:
        Store.open(cut).close()
    assert "keep a copy" in (e.value.hint or "")
    if os.geteuid() != 0:  # root ignores file permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        (ro / "r.duckdb").write_bytes(data)
        os.chmod(ro / "r.duckdb", 0o444)
        os.chmod(ro, 0o555)
        with pytest.raises(StoreError) as e2:
            Store.open(ro / "r.duckdb").close()
        assert "read-only" in (e2.value.hint or "")


@pytest.mark.slow
def test_memory_stays_bounded_on_blank_floods_and_container_bombs(tmp_path: Path) -> None:
    """32 MB of newlines (and the same gzipped), and a 12 MB line of 4 million empty arrays between records."""
    import gzip as gz

    blanks = tmp_path / "blanks.jsonl"
    with blanks.open("wb") as f:
        f.write(json.dumps(flat(run_id="first")).encode() + b"\n")
        f.write(b"\n" * (32 << 20))
        f.write(json.dumps(flat(run_id="last")).encode() + b"\n")
    (tmp_path / "blanks2.jsonl.gz").write_bytes(gz.compress(blanks.read_bytes(), 1))
    bomb = tmp_path / "bomb.jsonl"
    bomb.write_text(json.dumps(flat(run_id="a")) + "\n" + '{"task_id":"t","messages":[' + ",".join(["[]"] * 4_000_000)
                    + "]}\n" + json.dumps(flat(run_id="b")) + "\n")
    db = tmp_path / "m.duckdb"
    code = ("import json, resource, sys; from runaudit.store import Store; from runaudit.ingest import ingest; "
            "s = Store.open(sys.argv[1]); r = ingest(s, sys.argv[2:]); "
            "print(json.dumps({'r': r.as_dict(), 'rss_kb': " + PEAK_RSS_KB + "}))")
    out = subprocess.run([PY, "-c", code, str(db), str(blanks), str(tmp_path / "blanks2.jsonl.gz"), str(bomb)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    r = res["r"]
    assert r["lines"] == 2 * ((32 << 20) + 2) + 3
    assert r["blank"] == 2 * (32 << 20) and r["quarantined"] == 1 and r["ingested"] == 4 and r["duplicates"] == 2
    assert res["rss_kb"] < 2 * 1024 * 1024  # peak RSS under 2 GiB
    with Store.open(db, read_only=True) as s:
        assert s.scalar("SELECT reason FROM quarantine") == "too_complex"


def _audit_in_a_process(db: Path, log: Path) -> dict[str, object]:
    """Ingest and classify ``log`` in a fresh process with the default memory limits: the ingest result, the
    memory limit afterwards and the process's peak RSS. On Linux that is VmHWM, the peak of the process's own
    memory: ``ru_maxrss`` keeps the peak of the forked copy of the parent (the test run) from before the exec."""
    code = ("import json, resource, sys; from runaudit.store import Store; from runaudit.ingest import ingest; "
            "from runaudit.classify import classify; from runaudit.config import Config; "
            "s = Store.open(sys.argv[1]); r = ingest(s, sys.argv[2:]); classify(s, Config()); "
            "print(json.dumps({'r': r.as_dict(), 'limit': s.scalar(\"SELECT current_setting('memory_limit')\"), "
            "'rss_kb': " + PEAK_RSS_KB + "}))")
    env = {k: v for k, v in os.environ.items() if k != "RUNAUDIT_MEMORY_LIMIT"}
    out = subprocess.run([PY, "-c", code, str(db), str(log)], capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    res: dict[str, object] = json.loads(out.stdout)
    return res


def test_big_records_parse_within_memory_and_none_is_lost(tmp_path: Path) -> None:
    """Records of megabytes, as agent and vision pipelines log them: 16 requests of 2 MB with 2,000 turns each in
    one window, a 12 MB request holding a base64 image, a 20 MB reply of 100,000 content blocks. Each used to fail
    its whole file on DuckDB's memory limit (parsing holds tens of times a record's size, 2048 records at a time,
    and DuckDB counts the blocks its JSON functions reserve). Every one is a run now, the image is no prompt text,
    peak RSS stays under 2 GiB and the memory limit is back to its default afterwards."""
    import base64

    turns = [{"role": "user" if j % 2 == 0 else "assistant", "content": "lorem ipsum dolor sit amet " * 40}
             for j in range(2000)]
    reply = {"type": "message", "role": "assistant", "stop_reason": "end_turn",
             "content": [{"type": "text", "text": "Done."}]}
    lines = [json.dumps({"run_id": f"agent-{i}", "task_id": "agent", "request": {"model": "m", "messages": turns},
                         "response": reply}) for i in range(16)]
    image = base64.b64encode(random.Random(7).randbytes(9 << 20)).decode()
    lines.append(json.dumps({"run_id": "vision", "task_id": "vision", "request": {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": image}},
                                     {"type": "text", "text": "Describe this chart."}]}]}, "response": reply}))
    lines.append(json.dumps({"run_id": "blocks", "task_id": "agent", "response": {
        **reply, "content": [{"type": "text", "text": "x" * 200} for _ in range(100_000)]}}))
    log = tmp_path / "big.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = tmp_path / "big.duckdb"
    res = _audit_in_a_process(db, log)
    assert res["r"]["ingested"] == 18 and res["r"]["quarantined"] == 0
    assert res["rss_kb"] < 2 * 1024 * 1024
    assert res["limit"] in ("953.6 MiB", "1.0 GiB", "1GB")  # DuckDB prints 1GB as 953.6 MiB
    with Store.open(db, read_only=True) as s:
        assert s.scalar("SELECT prompt FROM runs WHERE run_id = 'vision'") == "Describe this chart."
        assert s.scalar("SELECT count(*) FROM runs r JOIN classifications c USING (rid) "
                        "WHERE c.outcome = 'ok' AND length(r.raw) > 2000000") == 18
    import runaudit

    assert runaudit.check_record(lines[16]).outcome == "ok"  # the inline check parses it within memory too


def test_an_otlp_export_of_512_spans_with_content_is_unfolded_within_memory(tmp_path: Path) -> None:
    """The collector's file exporter writes a batch of up to 512 spans per line; with content capture on, 12 MB.
    Unfolding it built one list of every span per line, which took more than DuckDB's 4 GB limit and failed the
    file; now each resource, scope and span is a row of its own: 512 runs, peak RSS under 2 GiB."""
    def attr(k: str, v: str) -> dict[str, object]:
        return {"key": k, "value": {"stringValue": v}}

    spans = [{"traceId": f"{i:032x}", "spanId": f"{i:016x}", "name": "chat gpt-4o-mini", "kind": 3,
              "startTimeUnixNano": "1780540260000000000", "endTimeUnixNano": "1780540261400000000",
              "attributes": [attr("gen_ai.operation.name", "chat"), attr("gen_ai.provider.name", "openai"),
                             attr("gen_ai.request.model", "gpt-4o-mini"),
                             attr("gen_ai.input.messages", json.dumps([{"role": "user", "parts": [
                                 {"type": "text", "content": "Summarise this ticket please. " * 600}]}])),
                             attr("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": [
                                 {"type": "text", "content": "The ticket is resolved. " * 150}],
                                 "finish_reason": "stop"}]))],
              "status": {"code": 0}} for i in range(512)]
    log = tmp_path / "traces.jsonl"
    log.write_text(json.dumps({"resourceSpans": [{"resource": {"attributes": [attr("service.name", "triage")]},
                                                  "scopeSpans": [{"scope": {"name": "s"}, "spans": spans}]}]})
                   + "\n", encoding="utf-8")
    assert log.stat().st_size > 10 << 20
    db = tmp_path / "t.duckdb"
    res = _audit_in_a_process(db, log)
    assert res["r"]["runs_added"] == 512 and res["r"]["quarantined"] == 0
    assert res["rss_kb"] < 2 * 1024 * 1024
    with Store.open(db, read_only=True) as s:
        assert s.scalar("SELECT count(DISTINCT run_id) FROM runs WHERE task_id = 'triage'") == 512


def test_many_otlp_exports_under_a_megabyte_are_unfolded_within_memory(tmp_path: Path) -> None:
    """Exports below the 1 MB that gets the parse headroom, many to a window: 24 lines of 150 spans with content
    (340 KB each). Both steps failed the file on the 1 GB limit: the unfolding (its JSON function beside an unnest
    kept 16 MB per chunk of spans) and the parse of the spans (2048 spans at a time took over 1 GB). Every span is
    a run with its text, numbered within its line, and its line is kept."""
    def attr(k: str, v: str) -> dict[str, object]:
        return {"key": k, "value": {"stringValue": v}}

    def export(n: int) -> str:
        spans = [{"traceId": f"{n:016x}{i:016x}", "spanId": f"{i:016x}", "name": "chat m", "kind": 3,
                  "startTimeUnixNano": "1780540260000000000", "endTimeUnixNano": "1780540261400000000",
                  "attributes": [attr("gen_ai.operation.name", "chat"), attr("gen_ai.request.model", "m"),
                                 attr("gen_ai.input.messages", json.dumps([{"role": "user", "parts": [
                                     {"type": "text", "content": f"question {n}.{i} " + "q " * 500}]}])),
                                 attr("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": [
                                     {"type": "text", "content": f"answer {n}.{i} " + "a " * 400}],
                                     "finish_reason": "stop"}]))]} for i in range(150)]
        return json.dumps({"resourceSpans": [{"resource": {"attributes": [attr("service.name", "svc")]},
                                              "scopeSpans": [{"scope": {"name": "s"}, "spans": spans}]}]})

    log = tmp_path / "traces.jsonl"
    log.write_text("".join(export(n) + "\n" for n in range(24)), encoding="utf-8")
    assert max(len(x) for x in log.read_text().splitlines()) < 1 << 20
    db = tmp_path / "t.duckdb"
    res = _audit_in_a_process(db, log)
    assert (res["r"]["lines"], res["r"]["runs_added"], res["r"]["quarantined"]) == (24, 24 * 150, 0)
    assert res["rss_kb"] < 2 * 1024 * 1024
    with Store.open(db, read_only=True) as s:
        rows = s.rows("SELECT source_line, run_id, response_text FROM runs")
    assert sorted((line, int(run, 16)) for line, run, _ in rows) == [(n + 1, i) for n in range(24) for i in range(150)]
    assert all(text == f"answer {line - 1}.{int(run, 16)} " + "a " * 400 for line, run, text in rows)


_Stream = Callable[[int], list[dict[str, object]]]


def _openai_stream(i: int) -> list[dict[str, object]]:
    base = {"id": f"chatcmpl-{i}", "object": "chat.completion.chunk", "created": 1780000000, "model": "gpt-5"}
    ev = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    ev += [{**base, "choices": [{"index": 0, "delta": {"content": f"{i}.{j} " + "word " * 40},
                                 "finish_reason": None}]} for j in range(200)]
    ev.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return ev


def _anthropic_stream(i: int) -> list[dict[str, object]]:
    ev: list[dict[str, object]] = [
        {"type": "message_start", "message": {"id": f"msg_{i}", "type": "message", "role": "assistant",
                                              "model": "claude", "content": [], "stop_reason": None,
                                              "usage": {"input_tokens": 10, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
    ev += [{"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": f"{i}.{j} " + "word " * 40}} for j in range(200)]
    ev += [{"type": "content_block_stop", "index": 0},
           {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 50}},
           {"type": "message_stop"}]
    return ev


@pytest.mark.parametrize("make, shape, prefix", [(_openai_stream, "openai_chat_stream", "chatcmpl-"),
                                                 (_anthropic_stream, "anthropic_stream", "msg_")])
def test_windows_full_of_stream_events_assemble_within_memory(tmp_path: Path, make: _Stream, shape: str,
                                                               prefix: str) -> None:
    """Two windows' worth of streams of 40 KB (OpenAI chat chunks, Anthropic events) ingest under the default 1 GB
    limit. The assembly made every stream of a window in one statement, and each JSON function held what it made
    for a whole chunk of 2048 streams (~1.6 MB a stream): 64 MB windows failed the file, 32 MB ones came within 5%
    of the limit. Streams are now assembled ~8 MB of events at a time and parsed from small record batches."""
    from runaudit.ingest.reader import WINDOW_BYTES

    log = tmp_path / "chunks.jsonl"
    with log.open("w", encoding="utf-8") as f:
        n = 0
        while f.tell() < 2 * WINDOW_BYTES:
            f.write("".join(json.dumps(e) + "\n" for e in make(n)))
            n += 1
    res = _audit_in_a_process(tmp_path / "s.duckdb", log)
    assert (res["r"]["runs_added"], res["r"]["quarantined"]) == (n, 0)
    with Store.open(tmp_path / "s.duckdb", read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM runs WHERE shape = ? AND starts_with(response_text, "
                        "run_id[? + 1:] || '.0 ') AND length(response_text) > 40000", [shape, len(prefix)]) == n


def test_other_big_shapes_parse_within_memory(tmp_path: Path) -> None:
    """More records of megabytes, each alone in its file: a Gemini stream logged as one JSON array of 20,000
    chunks, a Claude Code transcript with a 12 MB tool result, a Responses body of 20,000 output items."""
    chunks: list[dict[str, object]] = [{"candidates": [{"content": {"role": "model", "parts": [
        {"text": "word " * 100}]}, "index": 0}], "modelVersion": "gemini-2.5-pro"} for _ in range(20_000)]
    chunks[-1]["candidates"][0]["finishReason"] = "STOP"  # type: ignore[index]
    sid = "3b1f6c2e-7d4a-4e0b-9c8f-2a6d5e4f1b01"

    def turn(kind: str, uuid: str, content: object, **extra: object) -> dict[str, object]:
        return {"type": kind, "uuid": uuid, "sessionId": sid, "timestamp": "2026-06-21T02:00:00.000Z",
                "message": {"role": kind, "content": content, **extra}}

    transcript = [turn("user", "u1", "Read the log."),
                  turn("assistant", "a1", [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"f": "x"}}],
                       id="m1", type="message", model="claude", stop_reason="tool_use"),
                  turn("user", "u2", [{"type": "tool_result", "tool_use_id": "t1",
                                       "content": "log line\n" * 1_400_000}]),
                  turn("assistant", "a2", [{"type": "text", "text": "The log is fine."}], id="m2", type="message",
                       model="claude", stop_reason="end_turn")]
    outputs = [{"type": "message", "id": f"m{i}", "role": "assistant",
                "content": [{"type": "output_text", "text": "word " * 100}]} for i in range(20_000)]
    files = {"gemini.jsonl": [chunks], "claude-code.jsonl": transcript,
             "responses.jsonl": [{"run_id": "r", "task_id": "t", "response": {
                 "id": "resp_1", "object": "response", "status": "completed", "model": "gpt-5", "output": outputs}}]}
    for name, records in files.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        assert (tmp_path / name).stat().st_size > 10 << 20
    for name in files:
        res = _audit_in_a_process(tmp_path / f"{name}.duckdb", tmp_path / name)
        r = res["r"]
        assert isinstance(r, dict) and r["quarantined"] == 0 and r["runs_added"] >= 1, (name, r)
        assert isinstance(res["rss_kb"], int) and res["rss_kb"] < 2 * 1024 * 1024
        with Store.open(tmp_path / f"{name}.duckdb", read_only=True) as s:
            assert s.scalar("SELECT count(*) FROM classifications WHERE outcome = 'ok'") == r["runs_added"], name


def test_a_window_is_cut_into_record_batches_by_lines_and_bytes() -> None:
    """The reader's record batches hold at most 2048 lines and about BATCH_BYTES of text each, in order; a line
    longer than that shares a batch only with the lines that start before it in the same span of bytes."""
    import numpy as np
    import pyarrow as pa

    from runaudit.ingest import reader

    sizes = [10] * 5000 + [3 << 20] + [100] * 30 + [(1 << 20) - 5, 7] + [10] * 3
    t = pa.table({"line": ["x" * n for n in sizes], "i": list(range(len(sizes)))})
    out = reader._batched(t, np.array(sizes))
    batches = out.to_batches()
    assert out.column("i").to_pylist() == list(range(len(sizes)))
    assert all(0 < b.num_rows <= 2048 for b in batches)
    for b in batches:
        lens = [len(x) for x in b.column(0).to_pylist()]
        assert sum(lens[:-1]) <= reader.BATCH_BYTES  # all but the last line of a batch fit the span
    assert len(batches) >= 5000 // 2048 + 3


_SHAPE_KEYS = ["messageStart", "contentBlockDelta", "messageStop", "metadata", "throttlingException", "Error",
               "ResponseMetadata", "message", "candidates", "responseId", "promptFeedback", "usageMetadata", "choices",
               "id", "object", "model", "prompt_filter_results", "type", "sequence_number", "error", "code", "output",
               "status", "content", "stop_reason", "finishReason", "finish_reason", "task_id", "text", "tool_calls",
               "function", "arguments", "input", "delta", "index", "usage", "stopReason", "response", "custom_id"]
_SHAPE_VALUES = [None, True, 0, 1, 7, 1.5, "", "STOP", "10", "chat.completion.chunk", "response", "message", "error",
                 "tool_use", "refusal", "I'm sorry, I can't help.", '{"a": "I\'m sorry, but I can\'t do that."}',
                 "<think>x</think>no", "[1,", "\u202e\x1b[2J"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_objects_mixing_every_shapes_keys_never_crash(tmp_path: Path, seed: int) -> None:
    """Random objects built from the keys the shape detection and stream assembly read (Bedrock, Gemini, Azure,
    Responses, ClientError...), with values of every type, in plain, SSE and array lines: every line is
    accounted for and classification runs (a json_exists on a truncated line once stopped every ingest)."""
    rng = random.Random(seed)

    def val(d: int = 0) -> object:
        r = rng.random()
        if d > 3 or r < 0.3:
            return rng.choice(_SHAPE_VALUES)
        if r < 0.55:
            return [val(d + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(_SHAPE_KEYS): val(d + 1) for _ in range(rng.randint(0, 4))}

    lines = []
    for _ in range(60):
        r = rng.random()
        obj = {rng.choice(_SHAPE_KEYS): val() for _ in range(rng.randint(1, 5))}
        lines.append(json.dumps([val() for _ in range(3)]) if r < 0.05 else
                     "data: " + json.dumps(obj) if r < 0.1 else json.dumps(obj)[: -rng.randint(1, 5)] if r < 0.15
                     else json.dumps(obj))
    path = tmp_path / f"mix{seed}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with Store.open(":memory:") as s:
        _check_accounting(s, path, streams=True)
