"""Added latency of the inline check per call, against a bare ``json.loads`` of the same response, in one run.

    python bench/inline_bench.py [--calls 200] [--batch 100]

Times ``runaudit.check`` (one call at a time) and ``runaudit.check_many`` (a batch, per call) on a mix of
responses (ok, text refusal, refusal stop, truncated, tool call, OpenAI refusal field, error body), after one
warm-up call, and ``json.loads`` of each response's JSON text as the baseline. Prints p50/p99 and the ratio,
and whether ``import runaudit`` loaded typer or matplotlib (the goal: p50 <= 2 ms added, neither imported).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESPONSES = [
    {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "end_turn",
     "content": [{"type": "text", "text": "Here is the weekly summary. Revenue rose 4% and churn fell to 2.1%. "
                                          "The three open incidents were closed on Tuesday."}],
     "usage": {"input_tokens": 120, "output_tokens": 40}},
    {"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "end_turn",
     "content": [{"type": "text", "text": "I can't help with that request, as it could be used to harm someone."}],
     "usage": {"input_tokens": 120, "output_tokens": 20}},
    {"id": "msg_3", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "refusal",
     "content": [], "usage": {"input_tokens": 120, "output_tokens": 0}},
    {"id": "msg_4", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "max_tokens",
     "content": [{"type": "text", "text": "The summary of the quarter begins with"}],
     "usage": {"input_tokens": 120, "output_tokens": 256}},
    {"id": "msg_5", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "tool_use",
     "content": [{"type": "tool_use", "id": "tu_1", "name": "record_invoice",
                  "input": {"invoice_number": "INV-2231", "total": 912.5, "currency": "EUR"}}],
     "usage": {"input_tokens": 120, "output_tokens": 30}},
    {"id": "chatcmpl-1", "object": "chat.completion", "created": 1780000000, "model": "gpt-5",
     "choices": [{"index": 0, "finish_reason": "stop",
                  "message": {"role": "assistant", "content": None, "refusal": "I'm sorry, I can't assist."}}]},
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100)
    a = ap.parse_args()

    out = subprocess.run([sys.executable, "-c", "import sys, runaudit; "
                          "print('typer' in sys.modules, 'matplotlib' in sys.modules)"],
                         capture_output=True, text=True, check=True, cwd=str(Path(__file__).resolve().parent.parent))
    typer_loaded, mpl_loaded = out.stdout.split()

    import runaudit

    texts = [json.dumps(r) for r in RESPONSES]
    runaudit.check(RESPONSES[0], task_id="bench", prompt="warm up")  # the engine's database is built once
    base, single = [], []
    for i in range(a.calls):
        t = texts[i % len(texts)]
        s = time.perf_counter()
        json.loads(t)
        base.append(time.perf_counter() - s)
        s = time.perf_counter()
        runaudit.check(t, task_id="bench", prompt=f"prompt {i % 13}")
        single.append(time.perf_counter() - s)
    calls = [{"response": texts[i % len(texts)], "task_id": "bench", "prompt": f"prompt {i % 13}"}
             for i in range(a.batch)]
    s = time.perf_counter()
    runaudit.check_many(calls)
    per_call_batch = (time.perf_counter() - s) / a.batch

    b50, b99 = _pct(base, 0.5), _pct(base, 0.99)
    c50, c99 = _pct(single, 0.5), _pct(single, 0.99)
    print(f"calls: {a.calls}   batch: {a.batch}")
    print(f"{'':34}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'json.loads (baseline)':34}{b50 * 1e3:>10.4f}{b99 * 1e3:>10.4f}")
    print(f"{'runaudit.check, one call':34}{c50 * 1e3:>10.1f}{c99 * 1e3:>10.1f}")
    print(f"{'added by check (p50 - baseline)':34}{(c50 - b50) * 1e3:>10.1f}")
    print(f"{'check_many, per call':34}{per_call_batch * 1e3:>10.2f}")
    print(f"ratio check / json.loads at p50: {c50 / b50:,.0f}x   mean check: {statistics.mean(single) * 1e3:.1f} ms")
    print(f"import runaudit loads typer: {typer_loaded}, matplotlib: {mpl_loaded}")
    print("goal: p50 added <= 2 ms; typer and matplotlib not imported")


if __name__ == "__main__":
    main()
