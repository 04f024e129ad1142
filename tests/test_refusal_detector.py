"""The in-body refusal detector: every piece of evidence can fire, and the prefilter never hides it."""

from __future__ import annotations

import duckdb
import pytest

from runaudit.rules.refusal import FEATURES, features_sql, score_sql

# One reply per positive lexical feature. A reply that fires a feature must also get past the prefilter (which
# skips replies with no cue word at all): otherwise the feature could never count in classification.
EXAMPLES = {
    "apology_opener": "My apologies, that is outside what this assistant does.",
    "unfortunately_opener": "Unfortunately that report is not something this service produces.",
    "first_person_decline": "I won't be writing instructions for that.",
    "decline_phrase": "I must decline this request.",
    "as_an_ai": "As an AI language model, my answer has to stay general here.",
    "policy_framing": "Writing that would violate the usage policy of this service.",
    "redirect_professional": "For a question like this, please consult a licensed pharmacist near you.",
    "topic_shift": "Let's focus on something else for this week's newsletter.",
    "sensitivity_framing": "Grief is a delicate topic for many families.",
    "moralizing": "Violence is never acceptable in a workplace.",
    "deflecting_question": "Why are you so interested in the guard's schedule?",
    "non_english_decline": "申し訳ありませんが、そのご依頼にはお手伝いできません。",
    "crisis_support": "Please remember you're not alone in this.",
    "acknowledge_then_but": "We understand your frustration with the delay, however this request is closed.",
    "premise_refutation": "There is no reason why tall people should be refused a library card.",
    "rights_framing": "Everyone deserves to be treated with dignity at the counter.",
    "privacy_decline": "We have to respect your colleague's privacy on this one.",
    "impersonal_decline": "It's not appropriate to write that review.",
    "not_condone": "This assistant does not condone cheating in exams.",
    "concern": "I'm concerned about where this request is heading.",
}


def _eval(text: str) -> tuple[float, list[str]]:
    con = duckdb.connect()
    score, feats = con.execute(f"SELECT {score_sql('t')}, {features_sql('t')} FROM (SELECT ?::VARCHAR AS t)",
                               [text]).fetchone()  # type: ignore[misc]
    return score, feats


def test_every_positive_lexical_feature_has_an_example() -> None:
    positive = {f.name for f in FEATURES if f.lexical and f.weight > 0}
    assert positive == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_feature_fires_and_passes_the_prefilter(name: str) -> None:
    score, feats = _eval(EXAMPLES[name])
    assert name in feats
    assert score > 0.0, f"{name} fired but the prefilter scored the reply 0"


def test_no_cue_scores_zero_and_blank_scores_zero() -> None:
    assert _eval("Revenue rose 4% on higher order volume; churn was flat.")[0] == 0.0
    assert _eval("")[0] == 0.0
