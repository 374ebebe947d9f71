"""The Affine rule per task, pairwise dominance and the Pareto frontier, on intervals recomputed from n and sum."""

import json

from trainguard.eval.pareto import Entry, check_result, compare, load_results, pareto_frontier, task_winner


def result(**tasks: tuple[int, float]) -> dict:
    """An evaluation result holding only what compare reads: each task's n and sum."""
    return {"tasks": {name: {"n": n, "sum": s} for name, (n, s) in tasks.items()}}


def test_an_earlier_model_keeps_a_task_while_the_intervals_overlap():
    # 5/10 -> [0.3099, 0.6901]; 7/10 -> lower 0.47 < 0.6901: the later model's better mean is not enough
    assert compare({"a": result(t=(10, 5)), "b": result(t=(10, 7))})["winners"] == {"t": "a"}


def test_a_later_model_takes_a_task_when_its_lower_bound_clears_the_holders_upper():
    # 150/200 -> lower 0.7091 > 0.6901, the upper bound of 5/10
    out = compare({"a": result(t=(10, 5)), "b": result(t=(200, 150))})
    assert out["winners"] == {"t": "b"}
    assert [round(x, 4) for x in out["intervals"]["b"]["t"]] == [0.7091, 0.7874]


def test_the_scan_compares_each_challenger_with_the_current_holder():
    entries = [Entry("a", 10, 0.31, 0.69), Entry("b", 10, 0.70, 0.80), Entry("c", 10, 0.75, 0.95)]
    assert task_winner(entries) == "b"  # c's 0.75 does not clear b's 0.80, though it clears a's 0.69
    entries[2] = Entry("c", 10, 0.81, 0.95)
    assert task_winner(entries) == "c"


def test_a_model_under_min_samples_loses_and_two_under_tie():
    a, b = result(t=(10, 5)), result(t=(200, 110))  # overlapping: a would keep the task
    assert compare({"a": a, "b": b})["winners"] == {"t": "a"}
    assert compare({"a": a, "b": b}, min_samples=50)["winners"] == {"t": "b"}
    assert compare({"a": a, "b": result(t=(20, 19))}, min_samples=50)["winners"] == {"t": "tie"}


def test_with_three_models_a_tie_means_none_has_min_samples():
    three = {"a": result(t=(10, 5)), "b": result(t=(20, 1)), "c": result(t=(30, 3))}
    assert compare(three, min_samples=31)["winners"] == {"t": "tie"}
    assert compare(three, min_samples=30)["winners"] == {"t": "c"}  # the only one eligible


def test_dominance_needs_a_win_and_no_loss():
    a, b = result(x=(200, 150), y=(200, 150)), result(x=(10, 5), y=(10, 5))
    out = compare({"b": b, "a": a})  # b is earlier, but a's lower bound clears b's upper on both tasks
    assert out["winners"] == {"x": "a", "y": "a"}
    assert out["dominance"] == [["a", "b"]] and out["frontier"] == ["a"]
    mixed = compare({"a": result(x=(200, 150), y=(10, 5)), "b": result(x=(10, 5), y=(200, 150))})
    assert mixed["winners"] == {"x": "a", "y": "b"}
    assert mixed["dominance"] == [] and mixed["frontier"] == ["a", "b"]


def test_n_zero_is_the_empty_interval():
    out = compare({"a": result(t=(0, 0)), "b": result(t=(10, 1))})
    assert out["intervals"]["a"]["t"] == [0.0, 0.0]
    assert out["winners"] == {"t": "b"}  # 1/10 has a lower bound above 0


def test_cyclic_dominance_empties_the_frontier_which_then_holds_everyone():
    # a: 90/200 -> [0.405, 0.495]; b: 1/2 -> [0.156, 0.844]; c: 130/200 -> [0.606, 0.692]
    # pairwise, the earlier keeps unless cleared: a keeps against b (0.156 < 0.495), b keeps against c
    # (0.606 < 0.844), but c clears a (0.606 > 0.495): a > b > c > a.
    out = compare({"a": result(t=(200, 90)), "b": result(t=(2, 1)), "c": result(t=(200, 130))})
    assert out["dominance"] == [["a", "b"], ["c", "a"], ["b", "c"]]
    assert out["frontier"] == ["a", "b", "c"]
    assert out["winners"] == {"t": "c"}  # the scan: a holds, b does not clear it, c does


def test_pareto_frontier_directly():
    assert pareto_frontier(["a", "b", "c"], [["a", "b"]]) == ["a", "c"]
    assert pareto_frontier(["a", "b"], [["a", "b"], ["b", "a"]]) == ["a", "b"]


def test_only_shared_tasks_are_compared_and_the_others_named():
    out = compare({"a": result(x=(10, 5), y=(10, 5)), "b": result(x=(10, 9), z=(10, 1))})
    assert out["shared"] == ["x"] and list(out["winners"]) == ["x"]
    assert out["unshared"] == {"a": ["y"], "b": ["z"]}
    assert set(out["intervals"]["a"]) == {"x"}


def test_a_result_without_n_or_sum_is_skipped_with_the_reason():
    bad = {"tasks": {"t": {"n": 3, "mean": 0.5}}}
    out = compare({"a": result(t=(10, 5)), "bad": bad, "b": result(t=(10, 5))})
    assert "sum" in out["skipped"]["bad"] and list(out["intervals"]) == ["a", "b"]
    assert check_result([1, 2]) == "not a JSON object"
    assert "n" in check_result({"tasks": {"t": {"sum": 1}}})
    assert "whole number" in check_result({"tasks": {"t": {"n": -1, "sum": 0}}})
    assert check_result(result(t=(10, 5))) is None


def test_load_results_names_files_by_stem_and_skips_the_unreadable(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for folder in ("x", "y"):
        (tmp_path / folder / "run.json").write_text(json.dumps(result(t=(10, 5))))
    (tmp_path / "junk.json").write_text("{not json")
    paths = [tmp_path / "x" / "run.json", tmp_path / "y" / "run.json", tmp_path / "junk.json", tmp_path / "gone.json"]
    results, problems = load_results(paths)
    assert list(results) == ["run", "y/run"]
    assert set(problems) == {str(tmp_path / "junk.json"), str(tmp_path / "gone.json")}
    assert problems[str(tmp_path / "junk.json")].startswith("not JSON")
    assert problems[str(tmp_path / "gone.json")].startswith("cannot be read")
