"""The env interface as a specification: seeded episodes, an expert that always solves, safe handling of bad
replies, truncation, the AgentGym action format and JSON-ready episode records."""

import json

import pytest
from pydantic import ValidationError

from trainguard.tasks.envs import ENVS, make, parse_action, run_episode


def test_guess_is_registered_and_the_same_seed_hides_the_same_number():
    assert "guess" in ENVS.names()
    secrets = [make("guess", seed).secret for seed in range(20)]
    assert secrets == [make("guess", seed).secret for seed in range(20)]
    assert len(set(secrets)) >= 2 and all(1 <= s <= 8 for s in secrets)
    env = make("guess", 3)
    env.step("1")
    assert env.reset() == "Guess the number between 1 and 8.\n" and env.rounds == 0 and env.secret == secrets[3]


def test_the_expert_solves_every_seed_within_max_rounds():
    for seed in range(50):
        env = make("guess", seed)
        record = run_episode(env, lambda transcript, env=env: env.expert_action())
        assert record["success"] is True and record["return"] == 1.0, seed
        assert 1 <= len(record["turns"]) <= 4 and env.rounds == len(record["turns"])
        assert record["turns"][0]["observation"] == "Guess the number between 1 and 8.\n"


def test_feedback_says_higher_lower_or_correct():
    env = make("guess", 0)
    low, high = env.step(str(env.secret - 1)), env.step(str(env.secret + 1))
    if env.secret > 1:
        assert low.observation == "higher\n" and low.reward == 0.0 and not low.done
    if env.secret < 8:
        assert high.observation == "lower\n" and high.reward == 0.0
    right = make("guess", 0).step(f"Thought: it must be this.\nAction: {env.secret}")
    assert (right.observation, right.reward, right.done) == ("correct\n", 1.0, True)
    assert right.info == {"success": True, "invalid": False, "truncated": False}


@pytest.mark.parametrize("text", ["", "   ", "nine", "0", "9", "-3", "4.5", "Action:", "\x00\xff", "٥", "9" * 5000])
def test_invalid_text_never_raises_and_counts_a_round(text):
    env = make("guess", 1)
    result = env.step(text)
    assert result.observation == "invalid action: answer with a number between 1 and 8\n"
    assert (result.reward, result.done, env.rounds) == (0.0, False, 1)
    assert result.info["invalid"] is True and result.info["success"] is False


def test_the_episode_is_truncated_after_max_rounds():
    env = make("guess", 5, max_rounds=2)
    wrong = "1" if env.secret != 1 else "2"
    first = env.step(wrong)
    assert not first.done and first.info["truncated"] is False
    last = env.step("junk")
    assert last.done and last.info["truncated"] is True and last.info["success"] is False and env.rounds == 2
    with pytest.raises(RuntimeError, match="reset"):
        env.step(wrong)
    assert env.reset() and env.step(wrong).done is False  # reset starts over


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("Thought: the middle first.\nAction: 4", "4"),
        ("Thought: Action: is a word\nAction:  6 ", "6"),
        ("  5  ", "5"),
        ("Thought: hmm\nAction:   \n", None),
        ("", None),
        (" \n\t ", None),
        # Several actions, or text after the action, are not half-executed (the AgentGym issue's bad input):
        ("Thought: Action: is a word\nAction:  6 \nsome trailing chatter", None),
        ("7\nbecause it is lucky", None),
        ("Action: 3\nAction: 4", None),
        ("Thought: no action at all", None),
    ],
)
def test_parse_action_takes_one_action_line_or_one_bare_line(text, action):
    assert parse_action(text) == action


def test_make_names_the_allowed_envs_and_the_bad_field():
    with pytest.raises(KeyError, match=r"unknown environment 'maze'; allowed: .*guess"):
        make("maze", 0)
    with pytest.raises(ValidationError, match="unknown key 'size'; allowed: max_rounds, shaping, n"):
        make("guess", 0, size=8)
    with pytest.raises(ValidationError, match="max_rounds"):
        make("guess", 0, max_rounds=0)
    with pytest.raises(ValidationError, match="max_rounds must be at most 9 with shaping"):
        make("guess", 0, shaping=True, max_rounds=10)
    assert make("guess", 0, n=100, max_rounds=7).reset() == "Guess the number between 1 and 100.\n"


def test_shaping_pays_0_1_only_for_guesses_inside_the_still_possible_interval():
    env = make("guess", 0, n=8, shaping=True)
    env.secret = 5  # fix the number so the feedback below is known
    assert env.step("2").reward == pytest.approx(0.1)  # consistent: interval was 1..8, now 3..8
    assert env.step("1").reward == 0.0  # inconsistent: "higher" than 2 already ruled 1 out
    assert env.step("99").reward == 0.0  # invalid
    assert env.step("5").reward == 1.0  # solving pays the same with or without shaping
    plain = make("guess", 0, n=8)
    plain.secret = 5
    assert plain.step("2").reward == 0.0


def test_episode_records_round_trip_through_json():
    env = make("guess", 7, shaping=True, max_rounds=6)  # room for two wasted replies
    assert env.secret > 1  # so the first reply is a wrong but consistent guess
    replies = iter(["Thought: start low\nAction: 1", "oops"])
    seen: list[str] = []
    record = run_episode(env, lambda transcript: seen.append(transcript) or next(replies, None) or env.expert_action())
    assert json.loads(json.dumps(record)) == record
    assert record["env"] == "guess" and record["seed"] == 7 and record["success"] is True
    assert [t["action"] for t in record["turns"]][:2] == ["Thought: start low\nAction: 1", "oops"]
    assert [t["reward"] for t in record["turns"]][:2] == [0.1, 0.0] and record["turns"][1]["observation"] == "higher\n"
    assert seen[1] == "Guess the number between 1 and 8.\nThought: start low\nAction: 1\nhigher\n"
    assert record["return"] == pytest.approx(sum(t["reward"] for t in record["turns"]))
