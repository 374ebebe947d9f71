"""The guard's constraint detector: a satisfaction rate under 95% over the window warns (once per cooldown); a
NaN measurement warns; and a run file with a bad constraint exits 2 naming the field."""

from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.guard.constraint_detectors import ConstraintSatisfactionConfig, ConstraintSatisfactionDetector


def step(rate, updates=60.0, nan=0.0):
    return {"constraint/fmt/satisfaction": rate, "constraint/fmt/updates": updates, "constraint/fmt/nan_events": nan}


def test_low_satisfaction_warns_once_per_cooldown_after_the_window_fills():
    d = ConstraintSatisfactionDetector(ConstraintSatisfactionConfig(cooldown=5))
    assert d.observe(step(0.5, updates=10), 1) == []  # too few updates to judge
    kinds = [(i, a.kind) for i in range(2, 12) for a in d.observe(step(0.9), i)]
    assert kinds == [(2, "constraint_unsatisfied"), (7, "constraint_unsatisfied")]
    assert d.observe(step(0.96), 12) == []


def test_a_nan_measurement_warns_when_the_count_grows():
    d = ConstraintSatisfactionDetector(ConstraintSatisfactionConfig())
    assert d.observe(step(1.0, nan=0), 1) == []
    assert [a.kind for a in d.observe(step(1.0, nan=1), 2)] == ["constraint_nan"]
    assert d.observe(step(1.0, nan=1), 3) == []
    assert d.observe({"loss/train": 1.0}, 4) == []  # a stage without constraints


def test_a_bad_constraint_in_a_run_file_exits_2_naming_the_field(tmp_path):
    bad = {
        "name": "constraints",
        "constraints": [
            {"name": "fmt", "target": -0.1, "measure": {"name": "format", "kind": "regex", "pattern": "[a-z]+"}}
        ],
    }
    cfg = tiny_config(tmp_path / "runs")
    cfg["stages"][0]["plugins"] = [bad]
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "bad.yaml", cfg))])
    assert result.exit_code == 2
    assert "constraints.0.target" in result.output
    unsorted = {
        "name": "constraints",
        "constraints": [{"name": "fmt", "target": 0.1, "measure": {"name": "format", "kind": "json"}}],
        "schedule": [[10, {"fmt": 0.1}], [0, {"fmt": 0.2}]],
    }
    cfg["stages"][0]["plugins"] = [unsorted]
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "bad2.yaml", cfg))])
    assert result.exit_code == 2 and "schedule" in result.output


def test_a_grammar_file_that_does_not_parse_or_a_plan_in_a_stage_exits_2(tmp_path):
    grammar = tmp_path / "bad.bnf"
    grammar.write_text('answer ::= "a" | word\nword ::= [a-z\n')
    cfg = tiny_config(tmp_path / "runs")
    fmt = {"name": "format", "kind": "grammar", "grammar_file": str(grammar)}
    cfg["stages"][0]["plugins"] = [
        {"name": "constraints", "constraints": [{"name": "g", "target": 0.1, "measure": fmt}]}
    ]
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "g.yaml", cfg))])
    assert result.exit_code == 2 and "bad.bnf, line 2" in result.output
    plan = {"name": "p", "target": 0.1, "measure": {"name": "plan"}}
    cfg["stages"][0]["plugins"] = [{"name": "constraints", "constraints": [plan]}]
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "p.yaml", cfg))])
    assert result.exit_code == 2 and "target plan per sample" in result.output
