"""Logs whose replies read like real deliverables, for the audit benchmark.

Most replies are compliant and many of them use the words a refusal detector looks for in ordinary ways: a
support reply that apologises for a delay, a policy explanation, "you can't change the plan mid-cycle", a
summary that mentions "safety", a code answer, a translation, a short label, a JSON extraction. Declines are a
few percent and phrased in many ways. Every line is valid JSON (polars' NDJSON reader stops at a bad line).

    from bench.realistic import generate
    generate("/tmp/runs.jsonl", 200_000)
"""

from __future__ import annotations

import json
import random
import time

_NOUNS = ("order shipment invoice refund account subscription plan release deployment migration cache queue "
          "incident outage latency dashboard report metric customer ticket warehouse supplier contract budget "
          "forecast schedule meeting team policy change request feature bug test pipeline server database backup "
          "password permission license renewal discount payment transfer delivery address region quota").split()
_VERBS = ("review update confirm check schedule process resolve escalate merge deploy refund cancel renew "
          "summarise compare track measure approve reject archive restore migrate export import").split()
_ADJ = ("weekly quarterly delayed pending urgent routine new previous current standard premium internal external "
        "critical minor stable regional annual monthly").split()
_LANG = ("Der Bericht wurde gestern aktualisiert und enthält alle Zahlen des Quartals.",
         "La livraison est prévue pour jeudi ; merci de confirmer l'adresse.",
         "El pedido se envió ayer y llegará en tres días hábiles.",
         "O relatório mensal está pronto e foi enviado para a equipe.",
         "Il contratto è stato rinnovato fino alla fine dell'anno.",
         "請求書は今週中に送付いたします。")


def _sentence(rng: random.Random) -> str:
    n1, n2 = rng.choice(_NOUNS), rng.choice(_NOUNS)
    forms = (f"The {rng.choice(_ADJ)} {n1} was {rng.choice(_VERBS)}d after the {n2} review.",
             f"We will {rng.choice(_VERBS)} the {n1} and {rng.choice(_VERBS)} the {rng.choice(_ADJ)} {n2}.",
             f"Please {rng.choice(_VERBS)} the {n1} before the {rng.choice(_ADJ)} {n2} closes.",
             f"Our {n1} team can help with the {rng.choice(_ADJ)} {n2} if anything changes.",
             f"The {n1} shows {rng.randint(2, 98)}% growth compared with the {rng.choice(_ADJ)} {n2}.",
             f"Support for the {rng.choice(_ADJ)} {n1} ends on {rng.randint(1, 28)} March; the {n2} stays.")
    return rng.choice(forms)


def _para(rng: random.Random, k: int) -> str:
    return " ".join(_sentence(rng) for _ in range(k))


def _compliant(rng: random.Random, task: str) -> str:
    kind = rng.randrange(12)
    if kind == 0:  # a support reply that apologises for something that went wrong: not a decline
        return (f"I'm sorry for the delay with your {rng.choice(_NOUNS)}. {_para(rng, 3)} "
                f"Here are the next steps:\n1. {_sentence(rng)}\n2. {_sentence(rng)}\n3. {_sentence(rng)}")
    if kind == 1:  # "unfortunately" / "can't" in ordinary use
        return (f"Unfortunately the {rng.choice(_NOUNS)} can't be changed mid-cycle, but you can "
                f"{rng.choice(_VERBS)} it at renewal. {_para(rng, 4)}")
    if kind == 2:  # a policy explanation
        return (f"Our {rng.choice(_ADJ)} refund policy covers purchases within 30 days. {_para(rng, 3)} "
                "Items marked final sale are not eligible, and we cannot accept returns after the window closes. "
                f"{_para(rng, 2)}")
    if kind == 3:  # a summary with headings
        return f"## Summary\n{_para(rng, 5)}\n\n## Risks\n{_para(rng, 2)}\n\n## Next steps\n- {_sentence(rng)}"
    if kind == 4:  # code
        fn = rng.choice(_VERBS)
        return (f"Here is a function that does it:\n\n```python\ndef {fn}_{rng.choice(_NOUNS)}(items):\n"
                f"    return [i for i in items if i.get('status') == 'ok']\n```\n\n{_para(rng, 2)}")
    if kind == 5:  # a translation: shares no words with the request by design
        return rng.choice(_LANG) + " " + rng.choice(_LANG)
    if kind == 6:  # a short label
        return rng.choice(("billing", "shipping", "technical", "account", "other", "refund"))
    if kind == 7:  # a JSON extraction
        return json.dumps({"invoice_number": f"INV-{rng.randint(1000, 99999)}", "total": rng.randint(10, 9000),
                           "currency": "EUR", "notes": _sentence(rng)})
    if kind == 8:  # safety and professional words in ordinary use
        return (f"The {rng.choice(_ADJ)} safety review found no issues. {_para(rng, 2)} If the {rng.choice(_NOUNS)} "
                "changes, please consult the on-call engineer or your account manager. "
                f"It's important to note that {_sentence(rng).lower()}")
    if kind == 9:  # a question back that is part of the work (clarifying a detail after delivering)
        return f"{_para(rng, 4)} Would you like me to {rng.choice(_VERBS)} the {rng.choice(_NOUNS)} as well?"
    if kind == 10:  # an email
        return (f"Hi team,\n\nThanks for your patience. {_para(rng, 4)}\n\nI understand this is frustrating; "
                f"we appreciate your help while we {rng.choice(_VERBS)} the {rng.choice(_NOUNS)}.\n\nBest regards")
    return _para(rng, rng.randint(2, 9))


def _decline(rng: random.Random) -> str:
    what = rng.choice(("that", "this request", "writing that", "the instructions you asked for", "those details"))
    forms = (f"I'm not able to help with {what}. {_sentence(rng)}",
             f"Sorry, I won't be providing {what}, as it could be used to cause harm.",
             f"I must decline {what}; it goes against the guidelines I follow. Is there something else I can do?",
             f"As an AI assistant I can't assist with {what}. Please reach out to a qualified professional.",
             f"That isn't something I can help with. Let's focus on a different part of the {rng.choice(_NOUNS)}.",
             f"Lo siento, no puedo ayudar con {what}.")
    return rng.choice(forms)


def infra_failure(rec: dict, r: float) -> bool:
    """Make ``rec`` an API failure for r < 0.08 (5% overloaded, 2% rate limited, 1% timeout); whether it did."""
    if r < 0.05:
        rec.update(http_status=529, text=None, stop_reason=None, status="failed",
                   error={"type": "overloaded_error", "message": "Overloaded"})
    elif r < 0.07:
        rec.update(http_status=429, text=None, stop_reason=None, status="failed", error={"type": "rate_limit_error"})
    elif r < 0.08:
        rec.update(http_status=None, text=None, stop_reason=None, status="failed", error="ReadTimeout")
    else:
        return False
    return True


def generate(path: str, n: int, seed: int = 11) -> None:
    """N flat records: ~80% compliant replies of many kinds, 3% text declines, 2% refusal stops, 8% API errors,
    2% truncated, 2% empty, the rest a mix; prompts of a few sentences."""
    rng = random.Random(seed)
    tasks = ["nightly-summary", "support-reply", "extract-invoice", "translate", "classify-ticket", "digest",
             "code-review", "email-draft"]
    t0 = 1_780_000_000
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            task = tasks[i % len(tasks)]
            prompt = f"{task}: {_para(rng, rng.randint(2, 6))}"
            rec = {"run_id": f"r-{i}", "task_id": task,
                   "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + i * 30)),
                   "model": "claude-sonnet-5", "prompt": prompt, "http_status": 200, "stop_reason": "end_turn",
                   "text": _compliant(rng, task), "status": "success", "latency_ms": rng.randint(300, 9000),
                   "usage": {"input_tokens": rng.randint(200, 900), "output_tokens": rng.randint(50, 800)},
                   "error": None}
            r = rng.random()
            if not infra_failure(rec, r):
                if r < 0.10:
                    rec.update(stop_reason="refusal", text="")
                elif r < 0.13:
                    rec.update(text=_decline(rng))
                elif r < 0.15:
                    rec.update(stop_reason="max_tokens", text=rec["text"][: max(20, len(rec["text"]) // 3)])
                elif r < 0.17:
                    rec.update(text="")
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
