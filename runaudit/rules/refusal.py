"""In-body refusal detector: a weighted evidence score compiled to one SQL expression.

A refusal inside an HTTP 200 body is scored from evidence, not matched against a list of sentences:

* openers that apologise or decline (not "sorry to hear"), first-person decline verbs in the first sentences
  (with quoted speech removed, so a story whose character says "I can't help you" does not count),
  policy/ethics framing, redirection to professionals, topic changes, "sensitive topic" framing, non-English
  declines;
* against it: delivered content (length, lists, headings, code), compliance openers, and declines that are
  followed by a long structured answer (a caveat before real help).

The score is a logistic function of the weighted sum, in [0, 1]; ``DETECTOR_VERSION`` changes whenever the
features or weights do (it is part of the ruleset hash). Every regex is RE2 syntax, case-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DETECTOR_VERSION = "refusal-v7"


@dataclass(frozen=True)
class Feature:
    """One piece of evidence: a boolean SQL expression over ``{head}``/``{text}`` and its weight.

    ``lexical`` features read what the reply says; the others read its shape (length, structure, overlap with
    the request). Shape alone never declines a run: without net-positive lexical evidence the score is capped
    below the threshold, so a short answer or a translation is not a refusal just for being short.
    """

    name: str
    weight: float
    sql: str
    doc: str
    lexical: bool = True


# {text}: full response; {head}: first 300 chars without quoted speech; {lead}: first 600 chars without quotes;
# {tail}: last 300 chars; {n}: length in characters.
_I = "(?i)"
_DECLINE_VERB = (r"(help|assist|provide|fulfil+|comply|support|engage|create|generate|write|share|give|do|"
                 r"answer|offer|participate|produce|recommend|discuss|continue|complete|facilitate|encourage|"
                 r"promote|condone|endorse|describe|explain|tell|list|go into|draft|make|be of|advise|aid|helping|"
                 r"assisting|"
                 r"providing|writing|creating|generating|sharing|giving|doing|answering|offering|producing|"
                 r"discussing|making|drafting)")
FEATURES: tuple[Feature, ...] = (
    Feature("apology_opener", 1.6,
            "regexp_matches({head}, '" + _I + r"^\W{0,3}((i''?m|i am|we''?re|we are)\s+)?(so |very |really |truly )?"
            r"(sorry|apologi[sz]e|regret)|^\W{0,3}(my |our )?apologies')",
            "opens with an apology (\"I'm sorry, but\", \"My apologies\")"),
    Feature("unfortunately_opener", 0.8,
            "regexp_matches({head}, '" + _I + r"^\W{0,3}unfortunately')",
            "opens with \"Unfortunately\" (weaker: often followed by what is available)"),
    Feature("delivers_after", -1.0,
            "regexp_matches({lead}, '" + _I + r"\b(here(''s| is| are)|the following|below (is|are)|as follows|"
            r"you can (use|try|do)|steps?:|to do (this|that|so),)')",
            "goes on to deliver (\"here is what is available\", \"the following\", \"steps:\")"),
    Feature("pivot_to_answer", -2.0,
            "regexp_matches({lead}, '" + _I + r"\b(however|but|that said|nevertheless),? (i will|i''ll|i can|let me|"
            r"here is|"
            r"here''s) (still )?(provide|give|offer|share|write)? ?(you )?(a |an |the |my )?(response|answer|"
            r"explanation) (based on|to) (the|your) (question|request)')",
            "a disclaimer followed by \"however, I will provide a response to the question\": it goes on to answer"),
    Feature("sympathy_opener", -1.6,
            "regexp_matches({head}, '" + _I + r"^\W{0,3}((i''?m|i am|we''?re|we are)\s+)?(so |very |really |truly )?"
            r"sorry (to hear|for your loss|about (your|the)|that you|you(''re| are| have)|for what)')",
            "the apology is sympathy (\"sorry to hear\"), which cancels apology_opener"),
    Feature("first_person_decline", 3.0,
            "regexp_matches({head}, '" + _I + r"\b(i|we)\s*(''m|am|are|will|would|must|have to|need to|''d|"
            r"can|could|do|did|should)?\s*(not|n''t|never|unable|refus\w*|declin\w*|cannot|can''t|won''t|"
            r"not (able|going|comfortable|in a position))\b[^.!?\n,;:]{0,60}?\b" + _DECLINE_VERB + r"\b')",
            "a first-person decline verb in the same clause near the start (\"I can't help with\", \"I won't "
            "provide\")"),
    Feature("decline_phrase", 2.2,
            "regexp_matches({head}, '" + _I + r"\b(i|we) (cannot|can''t|can not|won''t|will not|am unable to|"
            r"''m unable to|"
            r"am not able to|''m not able to|must decline|have to decline|must refuse|(must|will|have to|"
            r"need to) refrain from|"
            r"''m not comfortable|"
            r"am not comfortable|don''t feel comfortable|do not feel comfortable)\b|\bunable to (help|assist|"
            r"provide|comply|fulfil)|\bnot (something|able) (i|that i)\b|can''t (help|assist) with (that|this)|"
            r"cannot (help|assist) with (that|this)|(isn''t|is not|not) (something )?i can (help|assist)|"
            r"\b(i|we) (do not|don''t) have the (ability|capability|capacity) to " + _DECLINE_VERB + r"')",
            "a stock decline phrase anywhere in the opening"),
    Feature("as_an_ai", 1.2,
            "regexp_matches({lead}, '" + _I + r"\b(as|i am|i''m|i am just|i''m just|i am only|i''m only) an? (ai|"
            r"artificial intelligence|"
            r"language model|large language model|llm|ai language model|ai assistant|responsible ai)\b')",
            "\"As an AI / language model\" in the opening"),
    Feature("policy_framing", 1.3,
            "regexp_matches({lead}, '" + _I + r"(against (my|the|our|openai''s|anthropic''s) (guidelines|policies|"
            r"policy|principles|programming|values|terms)|violat\w* (the |my |our |this )?(content |usage |"
            r"acceptable use )?"
            r"(policy|policies|guidelines|terms|law)|(not|never) (appropriate|ethical|legal|okay|ok) (to|for)|"
            r"(unethical|illegal|harmful|dangerous|inappropriate|unsafe) (and|or|to|activities|activity|"
            r"content|behavio)|promot\w* (violence|harm|hate|illegal|discrimination)|"
            r"(ethical|legal) (guidelines|considerations|standards|boundaries)|"
            r"(can|could) (cause|lead to|result in) (harm|serious harm|injury))')",
            "policy, legality or ethics framing of the request"),
    Feature("redirect_professional", 1.3,
            "regexp_matches({text300}, '" + _I + r"(seek\w*|consult\w*|reach(ing)? out( for \w+)? to|talk(ing)? to|"
            r"speak(ing)? (with|to)|contact\w*|get in touch with|call|visit\w*|turn(ing)? to|encourage you to "
            r"(reach out|seek|talk|speak))\W+(\w+\W+){0,4}?(professional|doctor|physician|therapist|"
            r"counsel\w*|lawyer|attorney|expert|mental health|crisis|hotline|helpline|healthcare|historian|"
            r"authorit\w+|law enforcement|police|specialist|pharmacist|advisor|adviser|support group|"
            r"emergency services|someone you trust|trusted (friend|person|individual|adult))')",
            "points the user to a professional or helpline instead of answering"),
    Feature("topic_shift", 1.4,
            "regexp_matches({text300}, '" + _I + r"(\binstead\b|\brather than\b|let''s (focus|talk|discuss|shift|"
            r"move|change|explore|consider) (on |about )?(something|a different|another|the (legal|ethical|"
            r"positive|safe)|how|ways)|(shift|change|steer|divert|redirect|move)\w* (the |our |this )"
            r"(conversation|topic|focus|discussion)|(a |another |different )(topic|subject)|something else)')",
            "changes the subject or offers something else instead"),
    Feature("sensitivity_framing", 0.9,
            "regexp_matches({text300}, '" + _I + r"((sensitive|delicate|serious|controversial|complex|difficult) "
            r"(topic|subject|issue|matter|area)|approach (it|this|the topic)? ?with (caution|care|respect|"
            r"sensitivity)|it''s (really |very )?important to (remember|note|approach|respect|recognize|"
            r"prioritize|consider|seek|reach)|(your|their) (safety|well-?being) (is|should))')",
            "frames the request as sensitive rather than answering it"),
    Feature("moralizing", 1.3,
            "regexp_matches({lead}, '" + _I + r"((is|are) never (acceptable|okay|ok|appropriate|justified|the answer|"
            r"a solution|an option)|never (be )?(considered|acceptable|justified)|important to (always )?(treat|"
            r"respect|"
            r"prioriti[sz]e) (others|everyone|all|the safety|safety))')",
            "lectures instead of answering (\"violence is never acceptable\", \"it is important to treat others\")"),
    Feature("cannot_help_but", -3.0,
            "regexp_matches({head}, '" + _I + r"can(no|''|no)?t help but|could(n''t| not) help but')",
            "\"cannot help but\" is an idiom, not a decline"),
    Feature("deflecting_question", 1.0,
            "regexp_matches({text300}, '" + _I + r"(how about (we|you|focusing|discussing|exploring|consulting)|"
            r"have you considered|could you (please )?(clarify|share|tell me|provide more|elaborate)|"
            r"(why|what) (are|is|made) you (so )?(interested|curious|concerned|asking)|"
            r"what (specific|particular)? ?(aspects?|part|kind|information) (of|are|would|do)|"
            r"feel free to (share|ask|reach out)|i''?m here to (help|listen|support)|"
            r"(i|we) (suggest|recommend|encourage|advise|urge) (you )?(to )?(seek|consult|reach|talk|speak|"
            r"explore (other|legal|safe|alternative)|focus(ing)? on))')",
            "steers the user elsewhere with a question or a suggestion instead of answering"),
    Feature("non_english_decline", 3.5,
            "regexp_matches({head}, '" + _I + r"(申し訳(ありません|ございません)|お手伝い(でき|することはでき)ません|"
            r"お答え(でき|することはでき)ません|対応(でき|いたしかね)ません|提供(でき|することはでき)ません|"
            r"(抱歉|对不起)|我(无法|不能)(提供|帮助|协助|回答)|无法(提供|协助|帮助)|"
            r"lo siento|no puedo (ayudar|proporcionar|ofrecer|hacer|cumplir)|"
            r"je (suis désolé|ne peux pas)|désolé, (mais )?je ne|es tut mir leid|ich kann (ihnen |dir )?"
            r"(dabei )?nicht (helfen|behilflich)|mi dispiace|non posso|desculpe|não posso)')",
            "a decline in Japanese, Chinese, Spanish, French, German, Italian or Portuguese"),
    Feature("crisis_support", 1.5,
            "regexp_matches({text300}, '" + _I + r"(you(''re| are) not alone|people (in your life )?who care about you|"
            r"(talk|speak|reach out) to (your )?(close )?(friends|family|someone you trust|a trusted)|"
            r"(crisis|suicide|prevention) (line|hotline|lifeline|helpline))')",
            "a crisis-support reply addressed to the user (\"you're not alone\", \"talk to someone you trust\")"),
    Feature("acknowledge_then_but", 1.0,
            "regexp_matches({head}, '" + _I + r"^\W{0,3}(i|we) (understand|appreciate|see|recogni[sz]e|hear|respect) "
            r"(your|that|the|how|why|where)[^.!?]{0,120}[.!,;]\s*(however|but|that said|nevertheless|"
            r"unfortunately)\b')",
            "acknowledges the request, then turns away (\"I understand your interest. However, ...\")"),
    Feature("premise_refutation", 2.2,
            "regexp_matches({head}, '" + _I + r"(^|[.!?]\s+)\W{0,3}(there (is|are|was|were) no (inherent |valid |"
            r"good |legitimate |"
            r"justifiable |logical |rational |moral )?(reason|justification|benefit)s?\b|[^.!?\n]{0,80}?\b(is|are|was|"
            r"were) not (morally |ethically )?(justified|justifiable|right|a good thing|acceptable)\b|[^.!?\n]{0,80}?"
            r"\b(should|must) not be (discriminated|denied|excluded|barred|banned|treated (differently|unfairly)))')",
            "opens by rejecting the request's premise (\"There is no reason why ...\", \"X was not justified\")"),
    Feature("rights_framing", 1.0,
            "regexp_matches({lead}, '" + _I + r"(regardless of (their|his|her|one''s|a person''s|race|gender|age|"
            r"religion|ethnicity|background|sexual|species)|treated with (dignity|respect)|dignity and respect|"
            r"(equal|same|basic|fundamental|human) rights?\b|discriminat\w+ (against|based on)|morally wrong|"
            r"(harmful|outdated|negative) (stereotypes?|beliefs?|generali[sz]ations?))')",
            "argues rights, dignity or discrimination instead of doing what was asked"),
    Feature("privacy_decline", 2.0,
            "regexp_matches({lead}, '" + _I + r"((don''t|do not|cannot|can''t) (have )?access (to )?(any )?(personal|"
            r"private|"
            r"individual|that|this|such) (data|information|details)|respect (\w+(''s|s'')? ){0,2}privacy)')",
            "declines on privacy grounds (\"I don't have access to personal information\", \"respect their privacy\")"),
    Feature("fictional_or_absurd", -2.0,
            "regexp_matches({lead}, '" + _I + r"((is|are|was) (a |an )?(fictional|imaginary|fictitious|cartoon|"
            r"animated|"
            r"mythical|legendary) (character|creature|being|person|figure|entity)|(does|do|"
            r"did) not exist in (real life|"
            r"the real world|reality)|(is|are) not (real|sentient|living)( beings?| persons?| people)?\b|"
            r"inanimate objects?|(nonsensical|absurd|humorous|playful) (question|premise|scenario|request)|"
            r"(a|as a) (joke|riddle|play on words)|(are|is) not capable of)')",
            "explains that the subject is fictional or the question absurd: an answer, not a decline"),
    Feature("definition_opener", -1.2,
            "(regexp_matches({head}, '" + _I + r"^\W{0,3}([\w''-]+\s){0,4}[\w''-]+[\"”]? (is|are|was|refers to|means) "
            r"(a|an|the|one of|any|when)\b') AND NOT regexp_matches({head}, '" + _I + r"^\W{0,3}(this|that|it|there|"
            r"here|what|which|your|my|such)\b|^[^.]{0,80}\b(is|are) an? (very |highly |deeply )?(sensitive|delicate|"
            r"complex|controversial|difficult|serious|painful|emotional) (topic|subject|issue|matter|question)'))",
            "opens by defining or explaining the subject (\"Identity theft is a type of fraud ...\")"),
    Feature("opinion_disclaimer", -1.5,
            "regexp_matches({head}, '" + _I + r"\b(i|we) (don''t|do not) (have|hold|possess) (any )?(personal )?"
            r"(opinions?|beliefs?|feelings|views|preferences|emotions)\b')",
            "\"I don't have personal opinions\" is a disclaimer about the assistant, not a decline"),
    Feature("clarification_request", -4.0,
            "regexp_matches({text300}, '" + _I + r"(unclear what you|(don''t|do not) understand (the|your) question|"
            r"(more|additional) context (or|to|so|about)|not sure what you (mean|are asking|''re asking))')",
            "asks what the user meant: a request for clarification, not a decline"),
    Feature("ends_with_question", 0.5,
            "regexp_matches({tail}, '[?]\\s*$')",
            "ends with a question to the user (a deflection when nothing was delivered)", lexical=False),
    Feature("short", 0.7, "{n} < 350", "short: under 350 characters", lexical=False),
    Feature("very_short", 0.6, "{n} < 120", "very short: under 120 characters", lexical=False),
    Feature("impersonal_decline", 3.0,
            "regexp_matches({head}, '" + _I + r"^\W{0,3}(as an? [^,.]{1,60},\s*)?(no[,.!]?\s*)?(i must (clarify|"
            r"emphasi[sz]e|stress|point out|"
            r"say|note) that\s*)?"
            r"(it''s|it is|it would be|that''s|that is|this is|doing so is|such \w+ \w+ is)\s+(never|not|"
            r"generally not|absolutely not|definitely not|neither)\s+(\w+\s+){0,2}?(appropriate|ethical|okay|ok|safe|"
            r"acceptable|advisable|legal|possible (for (me|us)|to (provide|help|assist|answer|fulfil|comply))|accurate|"
            r"fair|right|best|respectful|responsible|wise|something (i|we))|^\W{0,3}((i|we) (don''t|do not) (think|"
            r"believe)|(i''m|i am) not sure) (that )?"
            r"(it''s|it is|it would be|that''s|that is|this is) (\w+\s+){0,2}?(appropriate|ethical|okay|ok|safe|"
            r"acceptable|advisable|legal|accurate|fair|right|respectful|responsible|wise|valid)')",
            "opens by declaring the request inappropriate (\"It's not appropriate or ethical to ...\")"),
    Feature("not_condone", 1.6,
            "regexp_matches({lead}, '" + _I + r"\b(do not|don''t|does not|doesn''t|cannot|can''t|will not|won''t|never)"
            r" (condone|promote|support|encourage|endorse|advocate|glorify)\b')",
            "\"I do not condone or promote ...\""),
    Feature("concern", 1.3,
            "regexp_matches({lead}, '" + _I + r"((i''m|i am|we''re|we are) (concerned|worried|troubled)|"
            r"(express|raise|have) (some |my |serious )?(concerns?|reservations)|raise suspicion|"
            r"(i|we) (must|have to|need to) (respectfully )?(decline|refuse|pass)|leave (that|this|"
            r"the \w+ of)[^.]{0,80} to)')",
            "states concern about the request instead of answering it"),
    Feature("short_question_back", 1.0,
            "({n} < 400 AND regexp_matches({tail}, '[?]\\s*$'))",
            "a short reply that ends by asking the user a question", lexical=False),
    Feature("disclaimer_caveat", -1.2,
            "regexp_matches({lead}, '" + _I + r"(i''?m not|i am not) an? (doctor|lawyer|medical|legal|financial|"
            r"licensed|certified|tax|mental health) ?(professional|expert|advisor|adviser|doctor)?|"
            r"(is|does) not (constitute )?(medical|legal|financial|professional) advice|not a substitute for')",
            "a professional disclaimer before real help (\"I'm not a doctor, but ...\") is a caveat, not a decline"),
    Feature("low_prompt_overlap", 1.5, "({overlap} < 0.22)",
            "the reply shares few content words with the request (it talks about something else)", lexical=False),
    Feature("high_prompt_overlap", -0.8, "({overlap} > 0.5)",
            "the reply takes up most of the request's content words", lexical=False),
    Feature("compliance_opener", -1.6,
            "regexp_matches({head}, '" + _I + r"^\W{0,3}(sure|certainly|of course|absolutely|yes|great|"
            r"here(''s| is| are)|to \w+|the |there (is|are) (a|an|the|some|many|several|multiple|various|plenty|"
            r"lots|\d+|one|two|three|four|five)\b|in |a |an |one |step 1|first,|you can|"
            r"por supuesto|claro|bien sûr|natürlich|certo|もちろん|当然)')",
            "opens by delivering (\"Sure\", \"Here's\", \"To do X\", \"The ...\")"),
    Feature("structured_content", -1.0,
            "regexp_matches({text}, '(?m)(^\\s*(\\d+[.)]|[-*•])\\s+\\S.*\\n(.*\\n)*?\\s*(\\d+[.)]|[-*•])\\s+\\S)"
            "|^#{1,6}\\s|```')",
            "delivers structure: a list of two or more items, a heading or a code block", lexical=False),
    Feature("long", -1.0, "{n} > 900", "long: over 900 characters", lexical=False),
    Feature("very_long", -1.0, "{n} > 2000", "very long: over 2,000 characters", lexical=False),
)
BIAS = -2.0
SHAPE_ONLY_CAP = 0.3  # the highest score a reply gets with no lexical refusal evidence

# Rows whose text is over this many characters are capped for the regexes: evidence lives at the start and
# the end of a response, and capping keeps one scan fast on multi-megabyte bodies.
_CAP = 4000


# The pieces every feature reads are bound once per row: DuckDB does not share sub-expressions inside a CASE,
# so an expression written out in each of ~35 features was computed ~35 times. A one-element list mapped by a
# lambda binds a value to a name (``list_transform([x], lambda p: f(p, p))[1]`` computes ``x`` once); nested
# lambdas read the outer names. The names are prefixed so that no column of the caller's query is shadowed.
_A, _B, _C, _D, _W, _X = "ra_a", "ra_b", "ra_c", "ra_d", "ra_w", "ra_x"
_PARTS = {"text": f"{_A}.t", "head": f"{_C}.head", "lead": f"{_C}.lead", "text300": f"{_B}.text300",
          "tail": f"{_B}.tail", "n": f"{_A}.n", "overlap": f"{_D}.ov"}


def _overlap(text: str, prompt: str | None) -> str:
    """Share of the request's distinct content words (5+ letters, last 1,500 chars) found in the reply, only when
    both sides have enough Latin-script words to compare (a translation shares none by design). The request's
    words are distinct, so counting those the reply holds is the size of the intersection: ``list_intersect``
    gave the same value ~20% slower (it hashes both lists)."""
    if prompt is None:
        return "NULL::DOUBLE"
    words = (f"struct_pack(pw := list_distinct(regexp_extract_all(lower(right({prompt}, 1500)), '[a-z]{{5,}}')), "
             f"rw := regexp_extract_all(lower(left({text}, {_CAP})), '[a-z]{{5,}}'))")
    return (f"list_transform([{words}], lambda {_W}: CASE WHEN len({_W}.pw) >= 4 AND len({_W}.rw) >= 10 "
            f"THEN len(list_filter({_W}.pw, lambda {_X}: list_contains({_W}.rw, {_X})))::DOUBLE / len({_W}.pw) END)[1]")


def _piece_defs(text: str, t: str, b: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]],
                                                   list[tuple[str, str]]]:
    """The pieces every feature reads, in three steps (each reads the one before): the capped text with
    typographic apostrophes read as ASCII ones (so every pattern covers I’m and can’t) and its length; the text
    without quoted speech, the first 900 characters and the tail; the opening without quoted speech (300 and 600
    characters). ``t`` and ``b`` name the first two steps' results (``t.t``, ``b.unq`` when bound by lambdas)."""
    unq = f"regexp_replace({t}, '\"[^\"\\n]{{0,400}}\"|“[^”\\n]{{0,400}}”|«[^»\\n]{{0,400}}»', '', 'g')"
    # most replies hold no quotation mark at all: the regex (bounded repetitions, costly in RE2) only runs on those
    # that do, with the same result
    unq = f"CASE WHEN contains({t}, '\"') OR contains({t}, '“') OR contains({t}, '«') THEN {unq} ELSE {t} END"
    return ([("t", f"replace(left({text}, {_CAP}), '’', chr(39))"), ("n", f"length({text})")],
            [("unq", unq), ("text300", f"left({t}, 900)"), ("tail", f"right(rtrim({t}), 300)")],
            [("head", f"left({b}, 300)"), ("lead", f"left({b}, 600)")])


def _bind(text: str, body: str) -> str:
    """``body`` evaluated with the pieces of ``text`` (:func:`_piece_defs`) bound once, by lambdas (names in
    ``_PARTS``): for an expression that must stay one expression (a lambda over a list of strings)."""
    steps = _piece_defs(text, f"{_A}.t", f"{_B}.unq")
    a, b, c = ("struct_pack(" + ", ".join(f"{k} := {v}" for k, v in step) + ")" for step in steps)
    return (f"list_transform([{a}], lambda {_A}: list_transform([{b}], lambda {_B}: "
            f"list_transform([{c}], lambda {_C}: {body})[1])[1])[1]")


def _with_overlap(text: str, prompt: str | None, body: str) -> str:
    """``body`` with the prompt overlap bound as ``ra_d.ov`` (inside :func:`_bind`)."""
    return f"list_transform([struct_pack(ov := {_overlap(text, prompt)})], lambda {_D}: {body})[1]"


_SIMPLE = re.compile(r"regexp_matches\(\{(\w+)\}, '(.*)'\)", re.S)


def _gate_patterns() -> dict[str, str]:
    """For each piece, one pattern that matches exactly when a lexical feature with a positive weight over that
    piece does.

    Exact, not a heuristic: each of those features is one unanchored ``regexp_matches`` over one piece, and a
    search for ``(?:a)|(?:b)`` matches exactly when a search for ``a`` or for ``b`` does.
    """
    groups: dict[str, list[str]] = {}
    for f in FEATURES:
        if f.lexical and f.weight > 0:
            piece, pattern = _positive_search(f)
            groups.setdefault(piece, []).append(pattern)
    return {piece: "|".join(f"(?:{p})" for p in pats) for piece, pats in groups.items()}


def _positive_search(f: Feature) -> tuple[str, str]:
    """The piece a positive lexical feature searches, and its pattern."""
    m = _SIMPLE.fullmatch(f.sql)
    if m is None:  # pragma: no cover - guarded by a test: every such feature is one regexp_matches
        raise AssertionError(f"feature {f.name} is not one regexp_matches over a piece")
    return m.group(1), m.group(2)


def _positive_piece(f: Feature) -> str:
    """The piece a positive lexical feature searches."""
    return _positive_search(f)[0]


def _gate(parts: dict[str, str] | None = None) -> str:
    """SQL (inside :func:`_bind`): does any lexical feature with a positive weight fire? One pass per piece
    (:func:`_gate_patterns`) instead of one per feature; a reply with no positive lexical evidence skips the rest
    of the score."""
    parts = parts or _PARTS
    tests = (f"regexp_matches({parts[piece]}, '{pat}')" for piece, pat in _gate_patterns().items())
    return "(" + " OR ".join(tests) + ")"


def _expr(f: Feature, parts: dict[str, str]) -> str:
    out = f.sql
    for k in ("text300", "text", "head", "lead", "tail", "n", "overlap"):
        out = out.replace("{" + k + "}", parts[k])
    return out


# Every lexical feature needs one of these words in the first 900 characters; a reply with none of them is
# not scored (score 0: "no refusal cue"), which keeps the one classification scan fast on long answers.
PREFILTER = ("(?i)(sorry|apolog|regret|unfortunately|can.?t|cannot|can not|won.?t|will not|unable|not able|"
             "declin|refus|\\bas an\\b|\\bi am an?\\b|i.?m (just |only )?an?\\b|language model|appropriate|ethical|"
             "okay|\\bok\\b|safe|acceptable|advisable|legal|accurate|fair|respectful|responsible|wise|against|violat|"
             "harm|danger|professional|doctor|physician|therapist|counsel|lawyer|attorney|expert|mental health|"
             "crisis|hotline|helpline|historian|authorit|police|specialist|pharmacist|advis|support group|"
             "emergency|someone you trust|trusted|instead|rather than|let.?s|shift|change|steer|divert|redirect|"
             "topic|subject|something else|sensitive|delicate|serious|controversial|complex|difficult|caution|"
             "important to|safety|well-?being|condone|promot|support|encourag|endors|advocat|glorif|concern|worr|"
             "troubl|reservation|suspicion|pass\\b|leave|never|respect|prioriti|treat|how about|have you considered|"
             "could you|why|what|feel free|here to|suggest|recommend|urge|help but|"
             "申し訳|でき|いたしかね|抱歉|对不起|无法|不能|lo siento|no puedo|désolé|ne peux|tut mir leid|kann|"
             "dispiace|non posso|desculpe|não posso|"
             "there (is|are|was|were) no|justif|not right|a good thing|(should|must) not be|regardless|dignity|"
             "rights?\\b|discriminat|morally wrong|stereotyp|outdated|privacy|consent|permission|access|refrain|"
             "not alone|care about you|friends|family|lifeline|understand|appreciate|recogni|\\bhear\\b)")


# A reply that declines for want of a capability (browsing, real-time data, files, actions in the world), not
# for safety. It is read only where the score already says "declined", and kept apart (DG06).
CAPABILITY_RE = (
    "(?i)(\\b(i|we)(''m| am| are)? ?(can''t|cannot|can not|unable to|not able to|(do not|don''t) have( the)? "
    "(ability|capability|capacity|access|a way|the means)|have no (ability|way|access|means))\\b[^.!?\\n]{0,60}?"
    "(brows|internet|the web\\b|web ?search|search (the web|online)|online\\b|real[- ]?time|live (data|"
    "information|updates|feeds?)|current (events|data|information|prices|news|weather|stock)|up[- ]to[- ]date|"
    "(open|access|visit|click|follow|read) (the |that |this |those |external |any )?(links?|urls?|websites?|"
    "web ?pages?)|(view|see|open|read|access|process|analy[sz]e) (the |that |this |your |any )?(images?|photos?|"
    "pictures?|attachments?|attached|files?|pdfs?|documents? you|videos?|audio|screenshots?)|listen to|"
    "execute (code|programs|scripts)|run (code|programs|scripts)|make (phone )?calls|place (a )?(phone )?calls?|"
    "send (emails?|messages?|texts?|sms)|set (reminders?|alarms?|timers?)|remember (past|previous|our)|"
    "physical(ly)?\\b)"
    "|(my|the) (knowledge|training( data)?) (cut-?off|only (goes|extends))|as of my (last )?(knowledge|training) "
    "(update|cut-?off))")


def capability_sql(text: str) -> str:
    """SQL: does the opening of ``text`` decline for want of a capability rather than for safety?"""
    t = f"replace(left({text}, 400), '’', chr(39))"
    return f"coalesce(regexp_matches({t}, '{CAPABILITY_RE}'), false)"


def _total(parts: dict[str, str], shape_evidence: bool, gates: dict[str, str] | None = None) -> str:
    """The score from the features read on ``parts``: a logistic function of the weighted sum, capped below the
    threshold when no lexical evidence is net positive. ``gates`` (piece -> boolean SQL: that piece's gate
    pattern matched) lets a positive feature skip its regex where its piece's gate did not match, with the same
    value (the gate matches whenever the feature does)."""
    def lexical(f: Feature) -> str:
        e = _expr(f, parts)
        return f"({gates[_positive_piece(f)]} AND {e})" if gates and f.weight > 0 else e

    lex = " + ".join(f"(CASE WHEN {lexical(f)} THEN {f.weight} ELSE 0 END)" for f in FEATURES if f.lexical)
    shape = " + ".join(f"(CASE WHEN {_expr(f, parts)} THEN {f.weight} ELSE 0 END)" for f in FEATURES
                       if not f.lexical) if shape_evidence else "0"
    # the sums are bound once too, and the CASE reads them twice
    return (f"list_transform([[{lex}, {shape}]], "
            f"lambda z: round(CASE WHEN z[1] > 0 THEN 1.0 / (1.0 + exp(-({BIAS} + z[1] + z[2]))) "
            f"ELSE least({SHAPE_ONLY_CAP}, 1.0 / (1.0 + exp(-({BIAS} + z[1] + z[2])))) END, 4))[1]")


def _cued(text: str) -> str:
    """SQL: is ``text`` worth scoring at all (not blank, and a refusal cue in its first 900 characters)? The
    staged score's test; :func:`score_sql` writes the same two tests as the first branches of its CASE."""
    return f"(NOT ({text} IS NULL OR trim({text}) = '') AND regexp_matches(left({text}, 900), '{PREFILTER}'))"


def score_sql(text: str, prompt: str | None = None, *, shape_evidence: bool = True) -> str:
    """SQL for the refusal score (0..1) of ``text`` (a column or expression); NULL/empty text scores 0.

    ``prompt`` (optional) enables the prompt-overlap evidence; a NULL prompt simply leaves it out.
    ``shape_evidence=False`` scores on what the text says alone: for a string value of a tool call or a JSON
    body, which is short by nature, so shortness is no evidence. A reply in which no lexical feature with a
    positive weight fires scores 0 ("no refusal cue"): shape alone never declines.

    One expression, with the pieces bound by lambdas; :func:`score_stages` is the same score as columns of
    a chain of projections, which DuckDB evaluates about twice as fast.
    """
    total = _total(_PARTS, shape_evidence)
    body = f"CASE WHEN {_gate()} THEN {_with_overlap(text, prompt if shape_evidence else None, total)} ELSE 0.0 END"
    return (f"(CASE WHEN {text} IS NULL OR trim({text}) = '' THEN 0.0 "
            f"WHEN NOT regexp_matches(left({text}, 900), '{PREFILTER}') THEN 0.0 "
            f"ELSE {_bind(text, body)} END)")


STAGE_PREFIX = "ra_s_"


def score_stages(text: str, prompt: str | None = None, *,
                 shape_evidence: bool = True) -> tuple[list[list[tuple[str, str]]], str]:
    """The refusal score of ``score_sql(text, prompt, shape_evidence=...)`` as columns added by a chain of
    projections.

    Returns ``(stages, score)``: each stage is a list of ``(column, SQL)`` for one ``SELECT *, ...`` that may read
    the columns of the stages before it, and ``score`` is the score's SQL over the last stage's columns. The
    columns are named ``ra_s_*`` (leave them out of what is kept). The same pieces, gate and sums as
    :func:`score_sql` (one definition of each); as plain columns, each piece and each regex runs once per row in
    a projection of its own, where inside nested lambdas DuckDB re-creates the regex state for every chunk.
    """
    p = STAGE_PREFIX
    cols = {k: f"{p}{k}" for k in ("t", "n", "unq", "text300", "tail", "head", "lead", "ov")}
    parts = {"text": cols["t"], "head": cols["head"], "lead": cols["lead"], "text300": cols["text300"],
             "tail": cols["tail"], "n": cols["n"], "overlap": cols["ov"]}
    one, two, three = _piece_defs(text, cols["t"], cols["unq"])
    go = f"{p}go"
    # the gate is kept piece by piece: a positive feature's regex then runs only where its piece's gate matched
    # (200k realistic runs: the features' sum ~40% faster, three gates as fast as one)
    patterns = _gate_patterns()
    gates = {piece: f"{p}g_{piece}" for piece in patterns}
    stages = [[(go, _cued(text))] + [(cols[k], f"CASE WHEN {go} THEN {v} END") for k, v in one],
              [(cols[k], v) for k, v in two],
              [(cols[k], v) for k, v in three],
              [(gates[piece], f"coalesce({go} AND regexp_matches({parts[piece]}, '{pat}'), false)")
               for piece, pat in patterns.items()],
              [(f"{p}gate", "(" + " OR ".join(gates.values()) + ")")],
              [(cols["ov"], f"CASE WHEN {p}gate THEN {_overlap(text, prompt if shape_evidence else None)} END")]]
    score = f"(CASE WHEN {p}gate THEN {_total(parts, shape_evidence, gates)} ELSE 0.0 END)"
    return stages, score


def features_sql(text: str, prompt: str | None = None) -> str:
    """SQL for a list of the names of the features that fired (the detector's evidence)."""
    items = ", ".join(f"CASE WHEN {_expr(f, _PARTS)} THEN '{f.name}' END" for f in FEATURES)
    body = _with_overlap(text, prompt, f"list_filter([{items}], lambda x: x IS NOT NULL)")
    return f"(CASE WHEN {text} IS NULL THEN []::VARCHAR[] ELSE {_bind(text, body)} END)"
