"""Framework management, the verdict over all active principles, history and statistics."""

import pytest

from trainguard.constitution import ConstitutionalFramework, ConstitutionalPrinciple, setup_default_framework

HARMFUL_AND_COERCIVE = "Only an idiot would refuse: here is how to build a bomb."


def exclamations(text: str) -> dict:
    count = text.count("!")
    return {"flagged": count > 1, "reasons": [f"{count} exclamation marks"] if count > 1 else []}


def framework_with_calm() -> ConstitutionalFramework:
    framework = ConstitutionalFramework("calm")
    framework.add_principle(ConstitutionalPrinciple("calm", "Do not exclaim", exclamations, weight=0.5))
    return framework


def test_evaluate_text_reports_exactly_the_documented_keys():
    evaluation = setup_default_framework().evaluate_text("The sky is blue.")
    assert set(evaluation) == {
        "principle_results",
        "any_flagged",
        "flagged_principles",
        "weighted_score",
        "num_principles_evaluated",
        "text_length",
        "evaluation_method",
    }
    assert evaluation["any_flagged"] is False
    assert evaluation["flagged_principles"] == []
    assert evaluation["weighted_score"] == 0.0
    assert evaluation["num_principles_evaluated"] == 4
    assert evaluation["text_length"] == len("The sky is blue.")
    assert evaluation["evaluation_method"] == "regex"


def test_weighted_score_sums_the_weights_of_flagged_principles():
    evaluation = setup_default_framework().evaluate_text(HARMFUL_AND_COERCIVE)
    assert evaluation["flagged_principles"] == ["harm_prevention", "autonomy_respect"]
    assert evaluation["weighted_score"] == 3.0
    assert evaluation["any_flagged"] is True
    assert evaluation["principle_results"]["harm_prevention"]["weight"] == 2.0
    assert evaluation["principle_results"]["truthfulness"]["flagged"] is False


def test_disabled_principles_are_not_evaluated_until_enabled():
    framework = setup_default_framework()
    framework.disable_principle("harm_prevention")
    assert [p.name for p in framework.get_active_principles()] == ["truthfulness", "fairness", "autonomy_respect"]
    evaluation = framework.evaluate_text(HARMFUL_AND_COERCIVE)
    assert "harm_prevention" not in evaluation["principle_results"]
    assert evaluation["weighted_score"] == 1.0
    framework.enable_principle("harm_prevention")
    assert framework.evaluate_text(HARMFUL_AND_COERCIVE)["weighted_score"] == 3.0


def test_add_and_remove_principles():
    framework = setup_default_framework()
    framework.add_principle(ConstitutionalPrinciple("calm", "Do not exclaim", exclamations, weight=0.5))
    assert framework.evaluate_text("Wow!! Scientists agree that it works.")["weighted_score"] == 1.5
    framework.remove_principle("calm")
    assert "calm" not in framework.principles
    with pytest.raises(ValueError, match="already in framework"):
        framework.add_principle(ConstitutionalPrinciple("fairness", "again", exclamations))


@pytest.mark.parametrize("method", ["remove_principle", "enable_principle", "disable_principle"])
def test_unknown_principle_names_raise_key_error_listing_the_known_ones(method):
    framework = framework_with_calm()
    with pytest.raises(KeyError, match=r"no principle 'loud' in framework 'calm'; known: \['calm'\]"):
        getattr(framework, method)("loud")


def test_evaluation_method_distinguishes_rules_models_and_mixtures():
    framework = framework_with_calm()
    framework.add_principle(ConstitutionalPrinciple("judged", "x", lambda text: {"flagged": False, "method": "ai"}))
    assert framework.evaluate_text("hi")["evaluation_method"] == "mixed"
    framework.disable_principle("calm")
    assert framework.evaluate_text("hi")["evaluation_method"] == "ai"
    framework.disable_principle("judged")
    assert framework.evaluate_text("hi")["evaluation_method"] == "regex"


def test_statistics_cover_only_tracked_evaluations_until_cleared():
    framework = setup_default_framework()
    framework.evaluate_text(HARMFUL_AND_COERCIVE, track_history=True)
    framework.evaluate_text("All women are bad drivers.", track_history=True)
    framework.evaluate_text("A calm, kind sentence.", track_history=True)
    framework.evaluate_text(HARMFUL_AND_COERCIVE)  # not tracked
    stats = framework.get_statistics()
    assert stats == {
        "total_evaluations": 3,
        "total_flagged": 2,
        "flag_rate": pytest.approx(2 / 3),
        "principle_flag_counts": {"harm_prevention": 1, "truthfulness": 0, "fairness": 1, "autonomy_respect": 1},
        "mean_weighted_score": pytest.approx((3.0 + 1.0 + 0.0) / 3),
        "model_answers": 0,
        "model_fallbacks": 0,
    }
    framework.clear_history()
    assert framework.get_statistics()["total_evaluations"] == 0
    assert framework.get_statistics()["flag_rate"] == 0.0


def test_batch_evaluate_matches_one_by_one_evaluation():
    framework = setup_default_framework()
    texts = [HARMFUL_AND_COERCIVE, "Plain words.", "87% of people agree."]
    assert framework.batch_evaluate(texts) == [framework.evaluate_text(t) for t in texts]
    assert [e["weighted_score"] for e in framework.batch_evaluate(texts)] == [3.0, 0.0, 1.0]
    framework.batch_evaluate(texts, track_history=True)
    assert framework.get_statistics()["total_evaluations"] == 3
