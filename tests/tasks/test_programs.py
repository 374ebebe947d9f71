"""ABD and DED: references pass in the sandbox, answers are found where the issue says, files work too."""

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainguard.tasks import build_task, problems
from trainguard.tasks.answers import last_python_block, last_tagged


def test_answer_extraction_skips_thinking_and_takes_the_last_block():
    text = "<think><INPUT>1</INPUT> ```python\nx\n```</think>\n<INPUT>2</INPUT>\n<INPUT>\n3 4\n</INPUT>"
    assert last_tagged(text, "INPUT") == "3 4"
    assert last_tagged("<think>unclosed <INPUT>5</INPUT>", "INPUT") is None
    assert last_python_block("```python\na\n```\ntext\n```python\nb = 1\n```") == "b = 1\n"


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_abduction_references_score_one_at_every_difficulty(difficulty):
    task = build_task("abd", {"difficulty": difficulty})
    for i in range(12):
        inst = task.instance(i)
        assert inst.meta["difficulty"] == difficulty
        assert task.score(inst, inst.reference).value == 1.0, inst.meta["program"]
    if difficulty >= 3:
        assert any(word in task.instance(0).meta["program"] for word in ("for ", "if ", " else "))


def test_abduction_accepts_any_input_that_works_and_rejects_others(tmp_path):
    (tmp_path / "abs.jsonl").write_text(json.dumps({"program": "print(abs(int(input())))", "input": 5, "output": 5}))
    task = build_task("abd", {"path": str(tmp_path / "abs.jsonl")})
    inst = task.instance(0)
    assert task.score(inst, "<INPUT>-5</INPUT>").value == 1.0  # not the stored input, but it works
    assert task.score(inst, "<INPUT>\n  5  \n</INPUT>").value == 1.0
    assert task.score(inst, "<INPUT>6</INPUT>").value == 0.0
    assert task.score(inst, "<INPUT>five</INPUT>").details["status"] == "error"
    assert task.score(inst, "no block here").details["error"] == "no <INPUT> block"
    generated = build_task("abd")
    for i in range(20):
        inst = generated.instance(i)
        assert generated.score(inst, "I think\n" + inst.reference + "\n").value == 1.0
        assert generated.wrong_completion(inst, random.Random(i)) != inst.reference


def test_every_deduction_family_reference_passes_its_hidden_tests():
    task = build_task("ded", {"tests": 6})
    seen = set()
    for i in range(120):
        inst = task.instance(i)
        seen.add(inst.meta["family"])
        if len(seen) == len(problems.FAMILIES) and i > 40:
            break
        score = task.score(inst, "Here it is:\n" + inst.reference)
        assert score.value == 1.0 and score.details["passed"] == 1.0, (inst.meta["family"], score.details)
    assert seen == {f.name for f in problems.FAMILIES}


def test_deduction_reports_the_fraction_passed():
    task = build_task("ded")
    inst = next(task.instance(i) for i in range(200) if task.instance(i).meta["family"] == "balanced_parens")
    always_yes = "```python\ninput()\nprint('YES')\n```"
    score = task.score(inst, always_yes)
    expected = sum(out == "YES" for _, out in inst.meta["tests"]) / len(inst.meta["tests"])
    assert score.details["passed"] == pytest.approx(expected)
    assert score.value == float(expected == 1.0)
    assert task.score(inst, "no code").value == 0.0


def write_rows(path, rows):
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_tasks_read_local_files(tmp_path, suffix):
    abd_rows = [{"program": "print(int(input()) + 1)", "input": "41", "output": "42"}, {"program": "x"}]
    write_rows(tmp_path / f"abd{suffix}", abd_rows)
    abd = build_task("abd", {"path": str(tmp_path / f"abd{suffix}")})
    assert len(abd.rows) == 1  # the row without input/output is skipped (and counted by the reader)
    inst = abd.instance(7)
    assert "42" in inst.prompt and abd.score(inst, "<INPUT>41</INPUT>").value == 1.0
    assert abd.score(inst, "<INPUT>40</INPUT>").value == 0.0
    ded_rows = [
        {
            "statement": "Print the double of n.",
            "tests": [{"input": "2", "output": "4"}, {"input": "5", "output": "10"}],
            "solution": "print(2 * int(input()))",
        }
    ]
    write_rows(tmp_path / f"ded{suffix}", ded_rows)
    ded = build_task("ded", {"path": str(tmp_path / f"ded{suffix}")})
    inst = ded.instance(0)
    assert ded.score(inst, inst.reference).value == 1.0
    assert ded.score(inst, "```python\nprint(4)\n```").details["passed"] == 0.5
