"""What a run delivered, as the rules read it: reasoning left out, string values of structured output found.

* Reasoning is not the deliverable (a model that reasons about refusing and then answers did not refuse):
  ``<think>…</think>``, ``<thinking>``, ``<reasoning>`` spans, a closing tag without its opening (the output began
  inside the reasoning), an unclosed opening tag (all of the output was reasoning), and gpt-oss harmony text, of
  which only the ``final`` channel is delivered. Thinking blocks and reasoning items of the provider APIs never
  reach ``response_text`` (the normaliser takes only text parts).
* A job that forces the answer through a tool or a JSON schema gets its refusal inside a string value. The
  string *values* (never keys) of the tool payload and of a JSON text body are scored one by one; short
  enum-like tokens and ids are left out.

Everything is SQL over a column or expression, shared by ingest (``text_blank``) and classification (the score).
"""

from __future__ import annotations

# Only texts holding a tag-like marker pay for the regexes.
_HAS_MARK = "(contains({t}, '</') OR contains({t}, '<|') OR regexp_matches({t}, '<(think|thinking|reasoning)>'))"
_TAGS = "(think|thinking|reasoning)"
_STRIP = (
    "(CASE WHEN contains({t}, '<|channel|>') THEN "
    # harmony: the final channel's message, without the closing token
    "regexp_replace(regexp_extract({t}, '(?s)<\\|channel\\|>final<\\|message\\|>(.*)$', 1), "
    "'(?s)<\\|(return|end|call)\\|>.*$', '') "
    "ELSE regexp_replace(regexp_replace(regexp_replace({t}, "
    "'(?s)<" + _TAGS + ">.*?</" + _TAGS + ">', '', 'g'), "
    "'(?s)^.*</" + _TAGS + ">', ''), "
    "'(?s)<" + _TAGS + ">.*$', '') END)"
)


def delivered_sql(text: str) -> str:
    """SQL for the delivered part of ``text`` (reasoning spans removed); NULL stays NULL."""
    t = f"({text})"
    return f"(CASE WHEN {_HAS_MARK.format(t=t)} THEN {_STRIP.format(t=t)} ELSE {t} END)"


# A JSON string value is a quoted string followed by , } or ] (a key is followed by a colon). Read as text so that
# truncated JSON still gives up its complete values.
_LEAF_RE = '"((?:[^"\\\\]|\\\\.)*)"\\s*[,}\\]]'
MAX_LEAVES = 12
# a value worth scoring: at least 12 characters and two words (not an id, an enum or a number)
_LEAF_MIN = 12


def leaves_sql(json_text: str) -> str:
    """SQL for the list of string values (unescaped) of the JSON text ``json_text`` worth scoring."""
    j = f"({json_text})"
    vals = (f"list_transform(regexp_extract_all({j}, '{_LEAF_RE}', 1), "
            f"lambda s: try(json_extract_string('\"' || s || '\"', '$')))")
    return (f"list_filter({vals}, lambda v: v IS NOT NULL AND length(v) >= {_LEAF_MIN} "
            f"AND regexp_matches(v, '\\S\\s+\\S'))[1:{MAX_LEAVES}]")


def structured_sql(text: str, tool_payload: str) -> str:
    """SQL for the string values to score: the tool payload's, then a JSON text body's (object or array)."""
    body = (f"(CASE WHEN regexp_matches(left(ltrim({text}), 1), '[{{\\[]') THEN {text} END)")
    return (f"(CASE WHEN {tool_payload} IS NULL AND NOT coalesce(regexp_matches(left(ltrim({text}), 1), "
            f"'[{{\\[]'), false) THEN NULL "
            f"ELSE nullif(list_concat(coalesce({leaves_sql(tool_payload)}, []), "
            f"coalesce({leaves_sql(body)}, [])), []) END)")
