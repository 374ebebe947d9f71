"""The Dragon Hatching text families: text_completion, chain_of_thought, function_call. References pass, near misses
and thoughtless answers fail, hand-written answers get the scores and details worked out by hand, and malformed
answers score 0 without raising."""

import random
import re
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from trainguard.errors import DataError
from trainguard.tasks.base import TASKS, Instance, build_task
from trainguard.tasks.function_call import CATALOGUE, FUNCTIONS, FunctionCallTask, same_json, schema_errors
from trainguard.tasks.stories import StoryTask, first_sentence
from trainguard.tasks.word_problems import RELATIONS, WordProblemTask

NAMES = ("text_completion", "chain_of_thought", "function_call")


def test_the_three_families_are_registered_under_their_curriculum_names():
    assert {name: TASKS.get(name) for name in NAMES} == {
        "text_completion": StoryTask,
        "chain_of_thought": WordProblemTask,
        "function_call": FunctionCallTask,
    }


@pytest.mark.parametrize("name", NAMES)
def test_references_pass_wrong_completions_fail_and_instances_are_deterministic(name):
    task, again, rng = build_task(name), build_task(name), random.Random(1)
    for i in range(300):
        inst = task.instance(i)
        assert inst == again.instance(i)
        assert task.score(inst, inst.reference).value == 1.0, (inst.prompt, inst.reference)
        wrong = task.wrong_completion(inst, rng)
        assert wrong != inst.reference and task.score(inst, wrong).value == 0.0, (inst.prompt, wrong)


@pytest.mark.parametrize(
    ("name", "bound"), [("text_completion", 0.01), ("chain_of_thought", 0.01), ("function_call", 0.01)]
)
def test_thoughtless_answers_pass_rarely(name, bound):
    task, rng, n = build_task(name), random.Random(0), 600
    passed: Counter = Counter()
    for i in range(n):
        inst = task.instance(i)
        for strategy, answer in task.baselines(inst, rng).items():
            passed[strategy] += task.score(inst, answer).value == 1.0
    assert len(passed) >= 7
    assert all(count < bound * n for count in passed.values()), passed
    assert passed["empty"] == passed["echo"] == 0


@pytest.mark.parametrize("name", NAMES)
def test_prompts_and_references_fit_a_byte_model(name):
    instances = [build_task(name).instance(i) for i in range(300)]
    assert max(len(i.prompt) for i in instances) <= 160
    assert max(len(i.reference) for i in instances) <= 120


def test_first_instances_are_fixed():
    story = build_task("text_completion").instance(0)
    assert story.prompt == "story: Gus was at the school. Gus went to the garden.\n"
    assert story.reference == "Gus went to the school."
    cot = build_task("chain_of_thought")  # answers 10 + 613·id mod 990: 10, 623, 246, 859 for ids 0-3
    assert cot.instance(0).prompt == (
        "Eve has 66 cups. She gives 61 away. She gets 3 more. She buys 2 bags of 2. She gives 2 away. How many now?\n"
    )
    assert cot.instance(0).reference == "66-61=5\n5+3=8\n2*2=4\n8+4=12\n12-2=10\nAnswer: 10"
    assert cot.instance(1).reference == "6*9=54\n580+54=634\n634-11=623\nAnswer: 623"
    puzzle = cot.instance(4)
    assert puzzle.prompt == (
        "Kim is younger than Jack. Kim is older than Cleo. Cleo is older than Dan. Jack is younger than Ann. "
        "List them youngest first.\n"
    )
    assert puzzle.reference == "Ann>Jack\nJack>Kim\nKim>Cleo\nCleo>Dan\nAnswer: Dan, Cleo, Kim, Jack, Ann"
    call = build_task("function_call").instance(0)
    tools = "tools: set_alarm(hour:int,minute?:int); calc_tip(bill:num,percent?:int)\n"
    assert call.prompt == tools + "ask: tip on a 31.1 bill at 19 percent\n"
    assert call.reference == '{"name":"calc_tip","arguments":{"bill":31.1,"percent":19}}'


# text_completion


def story(*sentences: str) -> Instance:
    return Instance(0, f"story: {' '.join(sentences)}\n", "", {"story": list(sentences)})


KITE = story("Mia lived near the park.", "Mia had a red kite.")


@pytest.mark.parametrize(
    ("response", "grammatical", "consistent"),
    [
        ("Mia played with the kite.", 1, 1),
        ("  Mia lost the kite at the park. Then she cried", 1, 1),  # only the first sentence counts
        ("Mia felt happy at the park.", 1, 1),
        ("Mia played with the ball.", 1, 0),  # the ball is not in the story
        ("Tom played with the kite.", 1, 0),  # nor is Tom
        ("Mia went to the park.", 1, 0),  # she is already there
        ("Mia went to the lake.", 1, 0),  # a new place
        ("Mia found the kite at the park.", 1, 0),  # she holds it: it is not lying there
        ("Mia felt happy at the lake.", 1, 0),  # she is not at the lake
        ("Mia had a red kite.", 1, 0),  # a repeat, and it introduces an object
        ("Mia had a big drum.", 1, 0),  # a continuation may not introduce
        ("Mia play with the kite.", 0, 0),
        ("mia played with the kite.", 0, 0),
        ("Mia played with the kite", 0, 0),  # no period
        ("", 0, 0),
    ],
)
def test_story_continuations_are_judged_by_the_grammar_and_the_story_state(response, grammatical, consistent):
    score = build_task("text_completion").score(KITE, response)
    assert score.details == {"grammatical": grammatical, "consistent": consistent}
    assert score.value == float(consistent)


def test_the_story_state_follows_losing_finding_and_giving():
    task = build_task("text_completion")
    lost = story("Mia lived near the park.", "Mia had a red kite.", "Mia lost the kite at the park.")
    assert task.score(lost, "Mia found the kite at the park.").value == 1.0
    assert task.score(lost, "Mia played with the kite.").value == 0.0  # she no longer holds it
    pair = story("Ben was at the lake.", "Ben met Zoe at the lake.", "Ben had a big drum.")
    assert task.score(pair, "Ben gave the drum to Zoe.").value == 1.0
    assert task.score(pair, "Zoe and Ben played at the lake.").value == 1.0
    assert task.score(pair, "Zoe gave the drum to Ben.").value == 0.0  # Zoe does not hold it
    assert task.score(pair, "Ben gave the drum to Ben.").value == 0.0
    apart = story("Ben was at the lake.", "Ben met Zoe at the lake.", "Ben went to the farm.")
    assert task.score(apart, "Ben and Zoe played at the farm.").value == 0.0  # Zoe stayed at the lake
    assert task.score(apart, "Ben went to the lake.").value == 1.0


def test_first_sentence_stops_at_the_first_end_mark_or_line():
    assert first_sentence("  Mia ran. Ben sat.") == "Mia ran."
    assert first_sentence("Who ran? Mia") == "Who ran?"
    assert first_sentence("no end mark\nnext") == "no end mark"


def test_a_text_file_is_continued_and_scored_by_ngram_overlap(tmp_path: Path):
    path = tmp_path / "text.txt"
    path.write_text("The cat sat on the mat. It was warm!\nThe dog barked at the cat.   Then it ran away?\n")
    task = build_task("text_completion", {"file": str(path), "sentences": [1, 1]})
    inst = task.instance(0)
    assert (inst.prompt, inst.reference) == ("story: The cat sat on the mat.\n", "It was warm!")
    assert task.instance(3).reference == "It was warm!"  # three targets (sentences 2-4), in a cycle
    # [the cat was warm] vs [it was warm]: unigrams 2·2/(4+3) = 4/7; bigrams (was warm) 2·1/(3+2) = 2/5
    score = task.score(inst, "The cat was warm. And more")
    assert score.details == pytest.approx({"overlap": (4 / 7 + 2 / 5) / 2, "unigram_f1": 4 / 7, "bigram_f1": 0.4})
    assert score.value == pytest.approx((4 / 7 + 2 / 5) / 2)
    assert task.score(inst, "It was warm!").value == 1.0
    assert task.score(inst, "").value == 0.0
    assert task.score(inst, task.wrong_completion(inst, random.Random(0))).value == 0.0


def test_story_config_errors_name_the_problem(tmp_path: Path):
    with pytest.raises(ValidationError, match="sentences"):
        build_task("text_completion", {"sentences": [3, 2]})
    with pytest.raises(DataError, match="cannot be read"):
        build_task("text_completion", {"file": str(tmp_path / "missing.txt")}).instance(0)
    (tmp_path / "one.txt").write_text("Only one sentence here.")
    with pytest.raises(DataError, match="needs at least 2"):
        build_task("text_completion", {"file": str(tmp_path / "one.txt")}).instance(0)


# chain_of_thought

ARITHMETIC = Instance(0, "", "", {"answer": "36"})


@pytest.mark.parametrize(
    ("response", "value", "details"),
    [
        ("4+6=10\n10+9=19\n19+2=21\n3*5=15\n21+15=36\nAnswer: 36", 1, {"has_answer": 1, "answer_ok": 1, "steps": 5}),
        ("4+6=10\n\n10+26=36\nAnswer: 36.0\nbye", 1, {"has_answer": 1, "answer_ok": 1, "steps": 2}),
        ("Answer: 35\nthink again\nAnswer: 36", 1, {"has_answer": 1, "answer_ok": 1, "steps": 2}),
        ("Answer: 36\nAnswer: 35", 0, {"has_answer": 1, "answer_ok": 0, "steps": 1}),  # only the last counts
        ("4+6=10\nAnswer: 35", 0, {"has_answer": 1, "answer_ok": 0, "steps": 1}),
        ("4+6=10\nso 36", 0, {"has_answer": 0, "answer_ok": 0, "steps": 2}),  # no Answer: line at all
        ("answer: 36", 0, {"has_answer": 0, "answer_ok": 0, "steps": 1}),
        ("Answer: thirty-six", 0, {"has_answer": 1, "answer_ok": 0, "steps": 0}),
        ("", 0, {"has_answer": 0, "answer_ok": 0, "steps": 0}),
    ],
)
def test_only_the_final_answer_line_counts(response, value, details):
    score = build_task("chain_of_thought").score(ARITHMETIC, response)
    assert (score.value, score.details) == (value, details)


def test_word_answers_compare_without_case_or_final_period():
    task = build_task("chain_of_thought")
    yes, name = Instance(0, "", "", {"answer": "yes"}), Instance(0, "", "", {"answer": "Ann"})
    assert [task.score(yes, f"Answer: {a}").value for a in ("Yes", "yes.", "no", "y")] == [1, 1, 0, 0]
    assert [task.score(name, f"Answer: {a}").value for a in ("ann", "Ann.", "Ben")] == [1, 1, 0]


def test_orders_compare_name_by_name_whatever_the_separators():
    task, order = build_task("chain_of_thought"), Instance(0, "", "", {"answer": "Eve, Ann, Ben, Dan, Kim"})
    same = ("Eve, Ann, Ben, Dan, Kim", "eve,ann,ben,dan,kim.", "Eve Ann  Ben, Dan Kim")
    wrong = ("Ann, Eve, Ben, Dan, Kim", "Eve, Ann, Ben, Dan", "Eve, Ann, Ben, Dan, Kim, Leo", "Eve")
    assert [task.score(order, f"Answer: {a}").value for a in same + wrong] == [1, 1, 1, 0, 0, 0, 0]


def test_every_arithmetic_line_is_true_and_the_last_result_is_the_answer():
    task = build_task("chain_of_thought", {"logic_share": 0})
    for i in range(300):
        inst = task.instance(i)
        *lines, answer = inst.reference.splitlines()
        assert 2 <= len(lines) <= 8 and answer == f"Answer: {lines[-1].split('=')[1]}"
        count = int(re.search(r"has (\d+)", inst.prompt).group(1))  # type: ignore[union-attr]
        for k, line in enumerate(lines):
            a, op, b, c = re.fullmatch(r"(\d+)([-+*/])(\d+)=(\d+)", line).groups()  # type: ignore[union-attr]
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b), "/": int(a) / int(b)}[op] == int(
                c
            )
            if op == "*" and lines[k + 1 :] and lines[k + 1].startswith(f"{count}+{c}="):
                continue  # a bag product, added to the count on the next line
            assert int(a) == count and 2 <= int(c) <= 999  # every change carries on from the last count
            count = int(c)
        assert str(count) == inst.meta["answer"]
        numbers = [int(n) for n in re.findall(r"\d+", inst.prompt)]
        assert count not in numbers and count != sum(numbers)  # copying or adding up the numbers never passes


def test_arithmetic_answers_take_every_value_once_in_each_run_of_990_ids():
    task = build_task("chain_of_thought", {"logic_share": 0})
    answers = [task.instance(i).meta["answer"] for i in range(990)]
    assert sorted(map(int, answers)) == list(range(10, 1000))
    assert answers[:4] == ["10", "623", "246", "859"]  # 10 + 613·id mod 990
    narrow = build_task("chain_of_thought", {"logic_share": 0, "answers": [20, 24]})
    assert [narrow.instance(i).meta["answer"] for i in range(6)] == ["20", "23", "21", "24", "22", "20"]  # stride 3


def test_thoughtless_answers_pass_under_one_percent_of_2000_word_problems():
    task, rng, n = build_task("chain_of_thought"), random.Random(0), 2000
    passed: Counter = Counter()
    any_passed = 0
    answers: Counter = Counter()
    for i in range(n):
        inst = task.instance(i)
        answers[inst.meta["answer"]] += 1
        hits = {strategy for strategy, answer in task.baselines(inst, rng).items() if task.score(inst, answer).value}
        passed.update(hits)
        any_passed += bool(hits)
    strategies = set(task.baselines(task.instance(0), rng))
    assert {"answer yes", "most common answer", "sum of numbers", "first name", "names as they appear"} <= strategies
    assert any_passed < 0.01 * n, passed  # even the best of all baselines, chosen per instance, stays under 1%
    assert answers.most_common(1)[0][1] <= 3  # at most ceil(2000 · 0.69 / 990) of any one answer value
    assert passed["answer yes"] == passed["answer no"] == passed["first name"] == passed["names as they appear"] == 0


def test_ordering_puzzles_answers_follow_from_the_stated_facts():
    task = build_task("chain_of_thought", {"logic_share": 1, "yes_no_share": 0.3, "extreme_share": 0.3})
    words = {w: (i, r) for r in RELATIONS for i, w in enumerate(r)}
    families: Counter = Counter()
    for i in range(300):
        inst = task.instance(i)
        families[inst.meta["family"]] += 1
        *facts, question = re.split(r"(?<=\.) ", inst.prompt.strip())
        above: dict[str, str] = {}  # person -> the one just below in the relation's first sense
        for fact in facts:
            a, word, b = re.fullmatch(r"(\w+) is (\w+) than (\w+)\.", fact).groups()  # type: ignore[union-attr]
            above[a if words[word][0] == 0 else b] = b if words[word][0] == 0 else a
        order = [next(p for p in above if p not in above.values())]
        while order[-1] in above:
            order.append(above[order[-1]])
        if question.startswith("List"):
            first = words[question.split()[2]][0] == 2
            expected = ", ".join(order if first else order[::-1])
            named = list(dict.fromkeys(re.findall(r"[A-Z][a-z]+", " ".join(facts))))
            assert named not in (order, order[::-1]) and sorted(order) not in (order, order[::-1]), inst.prompt
        elif question.startswith("Who"):
            expected = order[0] if words[question.split()[-1].rstrip("?")][0] == 2 else order[-1]
        else:
            x, word, y = re.fullmatch(r"Is (\w+) (\w+) than (\w+)\?", question).groups()  # type: ignore[union-attr]
            expected = "yes" if (order.index(x) < order.index(y)) == (words[word][0] == 0) else "no"
        assert len(order) == 5 and inst.meta["answer"] == expected, inst.prompt
    assert min(families["logic_yes_no"], families["logic_extreme"], families["logic_order"]) > 60, families


def test_by_default_no_puzzle_is_asked_as_yes_no_or_for_one_name():
    task = build_task("chain_of_thought")
    families = Counter(task.instance(i).meta["family"] for i in range(1000))
    assert set(families) == {"arithmetic", "logic_order"} and 250 <= families["logic_order"] <= 350


def test_word_problem_config_errors_name_the_problem():
    for params, field in (
        ({"answers": [5, 999]}, "answers"),
        ({"answers": [10, 1000]}, "answers"),
        ({"people": [2, 5]}, "people"),
        ({"yes_no_share": 0.6, "extreme_share": 0.6}, "extreme_share"),
    ):
        with pytest.raises(ValidationError, match=field):
            build_task("chain_of_thought", params)


# function_call

WEATHER = Instance(0, "", "", {"call": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}})
ALL = {"json_valid": 1, "format_ok": 1, "name_ok": 1, "arguments_ok": 1}
WRONG_ARGS = ALL | {"arguments_ok": 0}
NOT_JSON = {"json_valid": 0, "format_ok": 0, "name_ok": 0, "arguments_ok": 0}


@pytest.mark.parametrize(
    ("response", "details"),
    [
        ('{"name":"get_weather","arguments":{"city":"Paris","unit":"C"}}', ALL),
        (' {"arguments": {"unit": "C", "city": "Paris"}, "name": "get_weather"}\n', ALL),  # key order is free
        ('{"name":"get_weather","arguments":{"city":"Paris","unit":"F"}}', WRONG_ARGS),
        ('{"name":"get_weather","arguments":{"city":"Paris"}}', WRONG_ARGS),  # an optional one missing
        ('{"name":"get_weather","arguments":{"city":"Paris","unit":"K"}}', WRONG_ARGS | {"format_ok": 0}),
        ('{"name":"get_weather","arguments":{"unit":"C"}}', WRONG_ARGS | {"format_ok": 0}),  # required city
        ('{"name":"get_weather","arguments":{"city":"Paris","unit":"C","days":3}}', WRONG_ARGS | {"format_ok": 0}),
        ('{"name":"get_time","arguments":{"city":"Paris"}}', WRONG_ARGS | {"name_ok": 0}),
        ('{"name":"get_time","arguments":{"city":"Paris","unit":"C"}}', ALL | {"format_ok": 0, "name_ok": 0}),
        (
            '{"name":"get_weather","arguments":{"city":"Paris","unit":"C"},"id":1}',
            NOT_JSON | {"json_valid": 1},
        ),  # not a call
        ('{"name":"get_weather","arguments":{"city":"Paris","unit":"C"}', NOT_JSON),  # a brace short
        ('{"name":"get_weather","arguments":{"city":"Paris","unit":"C"}} trailing', NOT_JSON),
        ("", NOT_JSON),
        ("[" * 100_000, NOT_JSON),
        ("get_weather(city='Paris')", NOT_JSON),
        ("[1, 2]", NOT_JSON | {"json_valid": 1}),
        ('{"name": 3, "arguments": []}', NOT_JSON | {"json_valid": 1}),
    ],
)
def test_calls_are_scored_on_name_and_arguments_with_validity_and_format_apart(response, details):
    score = build_task("function_call").score(WEATHER, response)
    assert score.details == details
    assert score.value == float(details["name_ok"] and details["arguments_ok"])


def test_numbers_compare_by_value_but_booleans_are_not_numbers():
    task = build_task("function_call")
    tip = Instance(0, "", "", {"call": {"name": "calc_tip", "arguments": {"bill": 20, "percent": 15}}})
    assert task.score(tip, '{"name":"calc_tip","arguments":{"bill":20.0,"percent":15.0}}').details == ALL
    assert task.score(tip, '{"name":"calc_tip","arguments":{"bill":"20","percent":15}}').details == WRONG_ARGS | {
        "format_ok": 0
    }
    assert task.score(tip, '{"name":"calc_tip","arguments":{"bill":20,"percent":15.5}}').details == WRONG_ARGS | {
        "format_ok": 0
    }
    light = Instance(0, "", "", {"call": {"name": "switch_light", "arguments": {"room": "hall", "on": True}}})
    assert task.score(light, '{"name":"switch_light","arguments":{"room":"hall","on":true}}').value == 1
    assert task.score(light, '{"name":"switch_light","arguments":{"room":"hall","on":1}}').details == WRONG_ARGS | {
        "format_ok": 0
    }
    assert same_json({"a": [1, 2.0]}, {"a": [1.0, 2]}) and not same_json(True, 1) and not same_json(0, False)


def test_the_schema_validator_covers_the_subset_the_catalogue_uses():
    schema = FUNCTIONS["get_weather"].schema()
    assert schema == {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
    params = schema["parameters"]
    assert schema_errors(params, {"city": "Oslo"}) == []
    assert schema_errors(params, {"city": 3, "unit": "K", "x": 1}) == [
        "arguments: unexpected 'x'",
        "arguments.city: not of type string",
        "arguments.unit: 'K' is not one of ['C', 'F']",
    ]
    assert schema_errors(params, []) == ["arguments: not of type object"]
    assert schema_errors({"type": "integer"}, 3.0) == [] and schema_errors({"type": "integer"}, True) != []
    assert schema_errors({"type": "number"}, False) != [] and schema_errors({"type": "boolean"}, 0) != []


def test_the_catalogue_has_twenty_functions_with_compact_signatures_and_every_type():
    assert len(CATALOGUE) == len(FUNCTIONS) == 20
    assert FUNCTIONS["get_weather"].signature() == "get_weather(city:str,unit?:C|F)"
    assert FUNCTIONS["convert_currency"].signature() == "convert_currency(amount:num,from:str,to:str)"
    types = {p.type for f in CATALOGUE for p in f.params}
    assert types == {"string", "integer", "number", "boolean", "enum"}
    assert any(not p.required for f in CATALOGUE for p in f.params)


def test_every_prompt_shows_the_right_signature_and_every_reference_fits_its_schema():
    task = build_task("function_call")
    shown: Counter = Counter()
    for i in range(300):
        inst = task.instance(i)
        function = FUNCTIONS[inst.meta["call"]["name"]]
        assert function.signature() in inst.prompt
        assert schema_errors(function.schema()["parameters"], inst.meta["call"]["arguments"]) == []
        shown[len(inst.meta["candidates"])] += 1
    assert set(shown) == {1, 2, 3}
