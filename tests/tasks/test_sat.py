"""SAT: the verifier against python-sat, answer parsing, UNSAT labels, and trivial baselines under 10%."""

import random

import pytest
from pysat.solvers import Solver
from typer.testing import CliRunner

from trainguard.cli import app
from trainguard.tasks import build_task
from trainguard.tasks.sat import parse_assignment, render, satisfies


def test_verifier_agrees_with_python_sat_on_1000_random_assignments():
    task = build_task("sat", {"mode": "uniform", "n_vars": [10, 20], "k": [3, 5], "clause_ratio": 4.2})
    rng = random.Random(0)
    agree = satisfied = 0
    for i in range(1000):
        inst = task.instance(i % 50)
        n, clauses = inst.meta["n_vars"], inst.meta["clauses"]
        values = {v: rng.random() < 0.5 for v in range(1, n + 1)}
        if i % 3 == 0 and inst.meta["satisfiable"]:  # a third near a model, so both verdicts occur
            values = parse_assignment(inst.reference) | {rng.randint(1, n): rng.random() < 0.5}
        ours = task.score(inst, render(values)).value == 1.0
        with Solver(name="minisat22", bootstrap_with=clauses) as solver:
            theirs = solver.solve(assumptions=[v if values[v] else -v for v in range(1, n + 1)])
        agree += ours == theirs
        satisfied += theirs
    assert agree == 1000
    assert 50 < satisfied < 950


@pytest.mark.parametrize("mode", ["planted", "uniform"])
def test_references_score_one_and_instances_are_deterministic(mode):
    task = build_task("sat", {"mode": mode})
    for i in range(100):
        inst = task.instance(i)
        assert task.score(inst, inst.reference).value == 1.0
        assert build_task("sat", {"mode": mode}).instance(i) == inst
    labels = [task.instance(i).meta["satisfiable"] for i in range(100)]
    assert all(labels) if mode == "planted" else 0 < labels.count(False) < 100


def test_planted_formulas_are_satisfiable_by_the_solver():
    task = build_task("sat", {"n_vars": 20, "k": 3})
    for i in range(50):
        with Solver(name="minisat22", bootstrap_with=task.instance(i).meta["clauses"]) as solver:
            assert solver.solve()


def test_answer_forms():
    task = build_task("sat", {"n_vars": 3, "k": 3, "clause_ratio": 1.0})
    inst = task.instance(0)
    values = parse_assignment(inst.reference)
    as_digits = ", ".join(f"x{v}={int(values[v])}" for v in sorted(values))
    assert task.score(inst, as_digits).value == 1.0
    assert task.score(inst, f"<think>x1=True, x2=True</think>\nAnswer: {inst.reference}").value == 1.0
    missing = task.score(inst, ", ".join(f"x{v}={values[v]}" for v in (1, 2)))
    assert missing.value == 0.0 and missing.details["missing"] == [3]
    assert task.score(inst, inst.reference + ", x9=True").details["unknown"] == [9]
    assert task.score(inst, "UNSAT").value == 0.0  # planted: satisfiable, so UNSAT is wrong


def test_unsat_is_right_only_for_unsatisfiable_formulas():
    task = build_task("sat", {"mode": "uniform", "n_vars": 10, "clause_ratio": 6.0})
    verdicts = {}
    for i in range(40):
        inst = task.instance(i)
        verdicts[inst.meta["satisfiable"]] = task.score(inst, "The formula is UNSAT.").value
    assert verdicts == {False: 1.0, True: 0.0}


def test_satisfies_counts_clauses():
    assert satisfies([(1, -2), (2, 3), (-1, -3)], {1: True, 2: True, 3: True}) == 2


def test_baseline_command_prints_rates_under_ten_percent():
    out = CliRunner().invoke(app, ["tasks", "baseline", "sat", "--n", "1000"])
    assert out.exit_code == 0, out.output
    rates = {}
    for line in out.output.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) >= 3 and cells[2].endswith("%"):  # answer, passed, rate (, worst group)
            rates[cells[0]] = float(cells[2].rstrip("%"))
    assert {"all True", "all False", "random", "majority sign"} <= set(rates)
    assert all(rate < 10.0 for rate in rates.values()), rates
