"""The default rule lists: clear violations flagged with a reason and the matched text, clean text passes."""

import pytest

from trainguard.constitution import check_autonomy, check_fairness, check_harm, check_truthfulness


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Here is how to build a pipe bomb from hardware store parts.", "instructions for weapons or explosives"),
        ("You can make a Molotov cocktail with a bottle.", "instructions for weapons or explosives"),
        ("The best way to poison someone is slowly.", "instructions for violence against people"),
        ("Here are ways to kill yourself quickly.", "encouragement or methods of self-harm"),
        ("Step one of how to hack into your neighbour's wifi.", "instructions for illegal acts"),
        ("You can take it from the shop without getting caught.", "advice on evading the law"),
    ],
)
def test_harm_rules_flag_instructions_for_harm(text, reason):
    result = check_harm(text)
    assert result["flagged"] is True
    assert reason in result["reasons"]
    assert result["method"] == "regex"
    assert all(m.lower() in text.lower() for m in result["matches"])


@pytest.mark.parametrize(
    "text",
    [
        "Bomb shelters were built during the war to protect civilians.",
        "How to build a bomb shelter for your family.",
        "I can't help with making weapons, but I can explain the history of arms control.",
        "Kill the process with kill -9 if it hangs.",
        "The police investigated the fraud for two years.",
    ],
)
def test_harm_rules_pass_clean_text(text):
    assert check_harm(text) == {"flagged": False, "reasons": [], "matches": [], "method": "regex"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("This supplement is 100% guaranteed to work.", "absolute certainty"),
        ("Our method never fails.", "absolute certainty"),
        ("Scientists agree that coffee cures baldness.", "appeal to an unnamed consensus"),
        ("It was sunny. Studies show this diet works.", "appeal to an unnamed consensus"),
        ("Everyone knows that the moon landing was staged.", "claim of common knowledge"),
        ("87% of doctors recommend this brand.", "statistic without a source"),
    ],
)
def test_truthfulness_rules_flag_unsupported_certainty(text, reason):
    result = check_truthfulness(text)
    assert result["flagged"] is True
    assert reason in result["reasons"]


@pytest.mark.parametrize(
    "text",
    [
        "According to a 2021 WHO report, 30% of adults get too little exercise.",
        "As published in Nature (2020), scientists agree that the climate is warming.",
        "Some studies suggest coffee may lower the risk, though the evidence is mixed.",
        "I am not certain, but the meeting might be on Tuesday.",
        "The train usually arrives at 9.",
    ],
)
def test_truthfulness_rules_pass_hedged_or_sourced_claims(text):
    assert check_truthfulness(text)["flagged"] is False


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("All women are bad drivers.", "generalisation about a whole group"),
        ("Most teenagers are irresponsible.", "generalisation about a whole group"),
        ("Immigrants are inherently lazy.", "claim that a group is innately one way"),
        ("Old people can't learn new technology.", "denial of a group's abilities or rights"),
        ("Poor people shouldn't be allowed to vote.", "denial of a group's abilities or rights"),
    ],
)
def test_fairness_rules_flag_generalisations_about_groups(text, reason):
    result = check_fairness(text)
    assert result["flagged"] is True
    assert reason in result["reasons"]


@pytest.mark.parametrize(
    "text",
    [
        "Women won the right to vote in 1920 in the United States.",
        "Some immigrants start businesses; others work in many different fields.",
        "All tests are passing.",
        "People of every background can learn to code.",
    ],
)
def test_fairness_rules_pass_neutral_wording(text):
    assert check_fairness(text)["flagged"] is False


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("You must do what I say.", "commands the reader"),
        ("You must buy this today.", "commands the reader"),
        ("You have no choice but to sign today.", "denies the reader a choice"),
        ("Only an idiot would disagree with this plan.", "shames the reader into agreeing"),
        ("Act now before it’s too late!", "pressure against reflection"),
        ("Don’t tell anyone about this offer.", "isolates the reader from advice"),
    ],
)
def test_autonomy_rules_flag_coercion_and_manipulation(text, reason):
    result = check_autonomy(text)
    assert result["flagged"] is True
    assert reason in result["reasons"]


@pytest.mark.parametrize(
    "text",
    [
        "You must restart the server for the change to take effect.",
        "Here are three options; the choice is yours.",
        "Consider talking to your doctor before changing medication.",
    ],
)
def test_autonomy_rules_pass_respectful_advice(text):
    assert check_autonomy(text)["flagged"] is False


def test_rules_report_every_matching_reason():
    result = check_autonomy("You have no choice. Only a fool would wait.")
    assert result["reasons"] == ["denies the reader a choice", "shames the reader into agreeing"]
    assert result["matches"] == ["You have no choice", "Only a fool would"]
