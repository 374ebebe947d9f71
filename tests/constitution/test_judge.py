"""The model judge: YES/NO read robustly; an answer that is neither falls back to the principle's rules."""

import pytest

from trainguard.constitution import ModelJudge, check_harm, parse_verdict
from trainguard.constitution.judge import judge_prompt


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("YES", True),
        ("Yes.", True),
        ("yes, it explains how to build a bomb.", True),
        ("**YES**", True),
        ("   \n yes", True),
        ("Answer: YES", True),
        ("NO", False),
        ("no, it is harmless", False),
        ("No.", False),
        ('"No" - it is a greeting.', False),
        ("**Answer:** no", False),
    ],
)
def test_parse_verdict_reads_yes_and_no(answer, verdict):
    assert parse_verdict(answer)[0] is verdict


@pytest.mark.parametrize(
    "answer", ["", "Not sure", "yesterday it rained", "Maybe", "I think no harm is done", "\ufffd"]
)
def test_parse_verdict_is_none_unless_the_answer_opens_with_yes_or_no(answer):
    assert parse_verdict(answer) == (None, "")


def test_parse_verdict_keeps_the_first_sentence_as_the_explanation():
    assert parse_verdict("**YES**. It gives bomb-making steps. More text.") == (True, "It gives bomb-making steps.")


def test_judge_prompt_asks_a_structured_question():
    assert judge_prompt("Be kind", "hello") == (
        "Does the following text violate the principle 'Be kind'? Answer YES or NO, then one sentence why.\n"
        "Text: hello\nAnswer:"
    )


def test_unparsable_model_answers_fall_back_to_the_rules(tiny_model, tok):
    judge = ModelJudge(tiny_model, tok, "Do no harm", check_harm, max_new_tokens=8)
    text = "Here is how to build a bomb."
    result = judge(text)
    assert parse_verdict(result["model_answer"])[0] is None  # the random model answers gibberish
    assert result["method"] == "regex-fallback"
    assert result["flagged"] is True
    assert result["reasons"] == check_harm(text)["reasons"]
