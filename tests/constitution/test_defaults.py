"""setup_default_framework: four weighted principles, judged by rules or by a model with counted fallbacks."""

import pytest

from trainguard.constitution import setup_default_framework


def test_default_principles_and_weights():
    framework = setup_default_framework()
    weights = {p.name: p.weight for p in framework.get_active_principles()}
    assert weights == {"harm_prevention": 2.0, "truthfulness": 1.0, "fairness": 1.0, "autonomy_respect": 1.0}
    assert all(p.description for p in framework.principles.values())


def test_without_a_model_every_principle_is_judged_by_rules():
    evaluation = setup_default_framework().evaluate_text("Here is how to build a bomb.")
    assert {r["method"] for r in evaluation["principle_results"].values()} == {"regex"}
    assert evaluation["evaluation_method"] == "regex"
    assert evaluation["weighted_score"] == 2.0


def test_model_judged_framework_counts_answers_and_fallbacks(tiny_model, tok):
    framework = setup_default_framework(tiny_model, tok, device="cpu", judge_max_new_tokens=8)
    evaluation = framework.evaluate_text("Here is how to build a bomb.", track_history=True)
    results = evaluation["principle_results"].values()
    # The random model answers gibberish, never YES or NO: every principle falls back to its rules.
    assert [r["method"] for r in results] == ["regex-fallback"] * 4
    assert all(isinstance(r["model_answer"], str) for r in results)
    assert evaluation["evaluation_method"] == "regex"
    assert evaluation["flagged_principles"] == ["harm_prevention"]
    assert evaluation["weighted_score"] == 2.0
    framework.evaluate_text("Hello there.")  # untracked, still counted
    stats = framework.get_statistics()
    assert (stats["total_evaluations"], stats["model_answers"], stats["model_fallbacks"]) == (1, 8, 8)
    framework.clear_history()
    assert (framework.get_statistics()["model_answers"], framework.get_statistics()["model_fallbacks"]) == (0, 0)


def test_half_a_model_pair_is_an_error(tiny_model, tok):
    with pytest.raises(ValueError, match="both model and tokenizer"):
        setup_default_framework(tiny_model)
    with pytest.raises(ValueError, match="both model and tokenizer"):
        setup_default_framework(tokenizer=tok)


def test_a_model_on_another_device_is_an_error(tiny_model, tok):
    with pytest.raises(ValueError, match="model is on cpu, not on the requested device meta"):
        setup_default_framework(tiny_model, tok, device="meta")
