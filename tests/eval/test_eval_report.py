"""The eval and compare tables, rendered as a terminal of 100 columns would show them."""

import io

from rich.console import Console

from trainguard.eval.pareto import compare
from trainguard.eval.report import compare_table, eval_table, skills_table
from trainguard.eval.stats import aggregate, summarise


def render(table) -> list[str]:
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().splitlines()


def as_result(**scores: list[float]) -> dict:
    tasks = {name: summarise(values) for name, values in scores.items()}
    return {"model": "m", "tasks": tasks, "aggregate": aggregate(tasks)}


def test_a_baseline_adds_a_delta_row_under_each_shared_task():
    new = as_result(t=[1.0, 1.0, 0.0, 0.0], u=[1.0])
    old = as_result(t=[1.0, 0.0, 0.0, 0.0])
    lines = render(eval_table(new, old))
    t_row = next(i for i, line in enumerate(lines) if line.lstrip("│ ").startswith("t "))
    delta = lines[t_row + 1]
    assert "Δ" in delta and "+0" in delta and "+25.0pp" in delta and "+0.250" in delta and "overlaps" in delta
    assert sum("Δ" in line and "pp" in line for line in lines) == 1  # u is new; the aggregates differ in tasks
    text = "\n".join(lines)
    assert "not in the baseline: u" in text and "the aggregate is not compared" in text


def test_an_interval_clearly_above_the_old_one_says_so():
    new, old = as_result(t=[1.0] * 150 + [0.0] * 50), as_result(t=[1.0] * 5 + [0.0] * 5)
    lines = render(eval_table(new, old))
    assert any("Δ" in line and "above" in line and "+25.0pp" in line for line in lines)  # 0.7091 > 0.6901


def test_compare_table_marks_models_under_min_samples():
    out = compare({"a": {"tasks": {"t": {"n": 10, "sum": 5}}}, "b": {"tasks": {"t": {"n": 200, "sum": 110}}}}, 50)
    text = "\n".join(render(compare_table(out)))
    assert "[0.310, 0.690] n=10*" in text and "n=200 " in text
    assert "dominance: b > a" in text and "frontier: b" in text and "fewer than 50 samples" in text


def test_the_skills_table_reads_each_task_and_metric_across_the_stages():
    points = [
        {"when": "before", "tasks": {"function_call": {"mean": 0.0, "json_valid": 0.1}}},
        {"when": "text", "tasks": {"function_call": {"mean": 0.25, "json_valid": 0.5}, "bash_command": {"mean": 0.5}}},
    ]
    lines = render(skills_table(points))
    row, metric, bash = ([c for c in line.split() if c not in "│"] for line in lines if "_" in line and "│" in line)
    assert row[-2:] == ["0.000", "0.250"] and metric[-2:] == ["0.100", "0.500"] and bash[-2:] == ["—", "0.500"]
