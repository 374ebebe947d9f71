"""parse_comparison reads the many ways an A-or-B answer is written, and never mistakes the article "a"."""

import pytest

from trainguard.constitution import parse_comparison


@pytest.mark.parametrize(
    ("answer", "choice"),
    [
        ("A", "A"),
        ("B", "B"),
        ("a", "A"),
        ("b.", "B"),
        ("(A)", "A"),
        ("[B]", "B"),
        ("Response A", "A"),
        ("response b is better", "B"),
        ("I prefer B", "B"),
        ("The answer is A.", "A"),
        ("**B**", "B"),
        ("  **Answer:** A", "A"),
        ("Answer: (B)", "B"),
        ("Option A", "A"),
        ("I choose option b", "B"),
        ("A is better than B", "A"),
        ("A is worse than B", "B"),
        ("Response B is better than response A", "B"),
        ("Response A is more helpful than response B.", "A"),
        ("B is the better response", "B"),
        ("B is worse", "A"),
        ("The better response is B", "B"),
        ("B, because it is kinder", "B"),
        ("B, because A is rude", "B"),
        ("Option B, since it avoids harm", "B"),
        ("I'd say A", "A"),
        ("Response A's tone is kinder", "A"),
        ("Both are fine, but I prefer B", "B"),
        ("A better answer would be B", "B"),
    ],
)
def test_answers_that_name_one_response(answer, choice):
    assert parse_comparison(answer) == choice


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   ",
        "Neither",
        "Both",
        "Neither A nor B",
        "Both A and B are fine",
        "A and B are equally good",
        "I think a response like this is fine",
        "A response that is polite is better.",
        "I'd go with a safer option",
        "I would not choose A",
        "\ufffd\ufffd x7",
    ],
)
def test_answers_without_a_single_choice_are_none(answer):
    assert parse_comparison(answer) is None
