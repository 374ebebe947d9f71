"""BuilderBrain's three data forms: loaders count every bad row with its line and reason, generators are
deterministic by seed and reload clean, converters give SFT records the tasks score 1, and `.lark` grammars in
the simple subset translate (others fail saying what is supported)."""

import json
from pathlib import Path

import pytest

from trainguard.constraints.library.grammar import GrammarError, load_grammar, recognises
from trainguard.constraints.library.lark_subset import lark_to_cfg, load_grammar_file
from trainguard.data.builderbrain import (
    form_to_sft,
    generate_grammar_examples,
    generate_plans,
    generate_structured,
    grammar_to_pairs,
    load_grammar_examples,
    load_plans,
    load_structured,
)
from trainguard.data.records import check_record, read_jsonl
from trainguard.errors import ConfigError, DataError
from trainguard.tasks import build_task
from trainguard.tasks.builder import PLAN_GRAMMAR_FILE


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_structured_loader_reports_each_bad_row_by_line(tmp_path):
    good = {"input": "state: have a\nwant: cut a\n", "structured_output": {"action": "cut", "params": ["a"]}}
    rows = [
        good,
        "{not json",
        {"input": "", "structured_output": {}},
        {"input": "x", "structured_output": {"action": "fly", "params": ["a"]}},
        {"input": "x", "structured_output": {"action": "cut", "params": ["a"], "plan": ["cut a"]}},
        "",
        {"input": "x", "structured_output": {"action": "cut", "params": ["a"], "plan": ["get a", "paint a"]}},
        {"input": "x", "structured_output": {"action": "join", "params": ["a", "b"], "plan": "join a b"}},
    ]
    loaded, report = load_structured(write_lines(tmp_path / "s.jsonl", rows))
    assert loaded == [good]
    assert (report.rows, report.usable) == (7, 1)
    assert report.bad_rows == {
        2: "malformed JSON",
        3: "missing or empty 'input'",
        4: "unknown action 'fly' (allowed: get, cut, paint, join)",
        5: "plan does not execute: step 1 'cut a' needs have:a",
        7: "plan ends with 'paint a', not the action 'cut a'",
        8: "'plan' is not a list of steps",
    }
    assert report.summary().startswith(f"{tmp_path / 's.jsonl'}: 1 of 7 rows usable; skipped 1 malformed JSON (first")


def test_a_file_without_usable_rows_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"no usable records: .*1 missing or empty 'input'"):
        load_structured(write_lines(tmp_path / "s.jsonl", [{"input": ""}]))
    with pytest.raises(DataError, match="does not exist"):
        load_structured(tmp_path / "missing.jsonl")


def test_grammar_loader_checks_outputs_against_the_named_grammar(tmp_path):
    (tmp_path / "steps.lark").write_text('start: VERB " " PART\nVERB: "get" | "cut"\nPART: /[a-e]/\n')
    (tmp_path / "loose.lark").write_text('%ignore " "\nstart: "get"\n')
    text = "cmd: fetch a\n"
    rows = [
        {"text": text, "grammar": "plan.cfg", "valid_outputs": ["get a"], "invalid_outputs": ["fetch a"]},
        {"text": text, "grammar": "plan.cfg", "valid_outputs": ["get a", "get  a"]},
        {"text": text, "grammar": "plan.cfg", "valid_outputs": ["get a"], "invalid_outputs": ["cut b"]},
        {"text": text, "grammar": "nope.cfg", "valid_outputs": ["get a"]},
        {"text": text, "grammar": "steps.lark", "valid_outputs": ["cut e"], "invalid_outputs": ["cut f"]},
        {"text": text, "grammar": "loose.lark", "valid_outputs": ["get"]},
        {"text": text, "grammar": "plan.txt", "valid_outputs": ["get a"]},
        {"text": text, "grammar": "plan.cfg", "valid_outputs": []},
    ]
    loaded, report = load_grammar_examples(write_lines(tmp_path / "g.jsonl", rows))
    assert loaded == [rows[0], rows[4]]
    assert report.bad_rows[2] == "valid_outputs[1] is not in plan.cfg"
    assert report.bad_rows[3] == "invalid_outputs[0] is in plan.cfg"
    assert report.bad_rows[4].startswith("grammar file 'nope.cfg' not found beside the data or in ")
    assert report.bad_rows[6].startswith(f"{tmp_path / 'loose.lark'}, line 1: %ignore is not supported; the supported")
    assert report.bad_rows[7] == "'grammar' is not a .cfg or .lark file name"
    assert report.bad_rows[8] == "'valid_outputs' is not a non-empty list of text"
    assert (report.rows, report.usable) == (8, 2)


PLANS_YAML = """\
plans:
- goal: [joined:a-b]
  nodes:
  - {id: 1, action: get a b, preconditions: []}
  - {id: 2, action: cut a b, preconditions: [have:a, have:b]}
  - {id: 3, action: join a b}
  edges:
  - {from: 1, to: 2, type: then}
  - {from: 2, to: 3, type: then}
- goal: [cut:a]
  nodes: [{id: s1, action: cut a}]
  edges: []
- goal: [glued:a]
  nodes: [{id: s1, action: get a}]
- goal: [cut:a]
  start: [have:a]
  nodes: [{id: s1, action: cut a}]
  edges: [{from: s1, to: s9, type: then}]
- just text
- goal: [cut:a]
  start: [have:a]
  nodes: [{id: s1, action: cut a}]
"""


def test_plan_loader_reports_bad_items_by_the_line_they_start_on(tmp_path):
    path = tmp_path / "plans.yaml"
    path.write_text(PLANS_YAML)
    rows, report = load_plans(path)
    assert [r["goal"] for r in rows] == [["joined:a-b"], ["cut:a"]]
    assert report.bad_rows == {
        10: "plan fails: step 1 'cut a' needs have:a",
        13: "'glued:a' is not a fact (have:x, cut:x, painted:x or joined:x-y)",
        15: "edge {'from': 's1', 'to': 's9', 'type': 'then'} names a node that does not exist",
        19: "not a mapping",
    }
    assert (report.rows, report.usable) == (6, 2)
    path.write_text(PLANS_YAML.removeprefix("plans:\n"))
    rows, report = load_plans(path)
    assert len(rows) == 2 and min(report.bad_rows) == 9  # a bare list works too
    path.write_text("plans: 3\n")
    with pytest.raises(DataError, match="expected a list of plans"):
        load_plans(path)


@pytest.mark.parametrize(
    ("generate", "load", "suffix"),
    [
        (generate_structured, load_structured, "jsonl"),
        (generate_grammar_examples, load_grammar_examples, "jsonl"),
        (generate_plans, load_plans, "yaml"),
    ],
)
def test_generators_are_deterministic_by_seed_and_reload_clean(tmp_path, generate, load, suffix):
    path = tmp_path / f"out.{suffix}"
    rows = generate(30, 3, path)
    assert rows == generate(30, 3) and rows != generate(30, 4)
    loaded, report = load(path)
    assert loaded == rows and report.usable == 30 and not report.bad
    with pytest.raises(ConfigError, match="0 <= seed < 100"):
        generate(1, 100)


def test_generated_structured_rows_carry_a_plan_that_ends_with_the_action():
    row = generate_structured(2, 0)[0]
    assert row["input"] == "state: cut b c\nwant: joined b-c\n"
    assert row["structured_output"] == {
        "action": "join",
        "params": ["b", "c"],
        "plan": ["get b c", "cut b c", "join b c"],
    }


def test_generated_grammar_rows_have_outputs_on_both_sides_of_the_grammar():
    grammar = load_grammar(PLAN_GRAMMAR_FILE)
    for row in generate_grammar_examples(40, 0):
        assert all(recognises(grammar, v) for v in row["valid_outputs"])
        assert not any(recognises(grammar, v) for v in row["invalid_outputs"])
    assert generate_grammar_examples(1, 0)[0]["invalid_outputs"] == [
        "glue d a e;coat d",
        "Join d a e;paint d",
        "join d a e,paint d",
    ]


@pytest.mark.parametrize(
    ("form", "generate", "task", "suffix"),
    [
        ("structured", generate_structured, "structured", "jsonl"),
        ("grammar", generate_grammar_examples, "grammar", "jsonl"),
        ("plans", generate_plans, "plan", "yaml"),
    ],
)
def test_each_form_converts_to_sft_records_a_run_reads_and_the_task_scores_one(tmp_path, form, generate, task, suffix):
    source, out = tmp_path / f"data.{suffix}", tmp_path / "sft.jsonl"
    generate(25, 0, source)
    records, report = form_to_sft(source, form, out)
    read, read_report = read_jsonl(out)
    assert read == records and read_report.usable == 25 == report.usable
    built = build_task(task)
    for id, record in enumerate(records):
        inst = built.instance(id)
        assert record["prompt"] == inst.prompt
        assert built.score(inst, record["completion"]).value == 1.0


def test_grammar_rows_make_preference_pairs():
    rows = [
        {
            "text": "cmd: fetch a\n",
            "grammar": "plan.cfg",
            "valid_outputs": ["get a"],
            "invalid_outputs": ["fetch a", "Get a"],
        }
    ]
    pairs = grammar_to_pairs(rows)
    assert [p["response_rejected"] for p in pairs] == ["fetch a", "Get a"]
    assert all(check_record(p) is None and p["response_chosen"] == "get a" for p in pairs)


def test_an_unknown_form_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown data form 'csv'; allowed: structured, grammar, plans"):
        form_to_sft(tmp_path / "x", "csv")


LARK = """\
// BuilderBrain steps in lark
?item: step
     | item ";" step   // more steps
start: item
step: VERB " " PARTS
VERB: "get" | "cut"
PARTS: /[a-e]+/
"""


def test_the_simple_lark_subset_translates_line_for_line_and_starts_at_start(tmp_path):
    cfg = lark_to_cfg(LARK, "steps.lark")
    assert cfg.splitlines() == [
        "",
        "item ::= step",
        '  | item ";" step',
        "start ::= item",
        'step ::= VERB " " PARTS',
        'VERB ::= "get" | "cut"',
        "PARTS ::= [a-e]+",
    ]
    (tmp_path / "steps.lark").write_text(LARK)
    grammar = load_grammar_file(tmp_path / "steps.lark")
    assert grammar.start == "start"
    assert recognises(grammar, "get ab;cut c") and not recognises(grammar, "get ab;")
    assert lark_to_cfg('start: "a *" x*\nx: "b"\n') == 'start ::= "a *" x*\nx ::= "b"\n'  # literals kept whole
    (tmp_path / "typo.lark").write_text("// header\nstart: item\n")
    with pytest.raises(GrammarError, match=r"typo.lark, line 2: rule 'item' is used but never defined"):
        load_grammar_file(tmp_path / "typo.lark")


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("%import common.WORD", "%import is not supported"),
        ('start: ("a" | "b")', "'(' is not supported"),
        ('start: ["a"] "b"', "'[' is not supported"),
        ('start: "a" -> alias', "'-' is not supported"),
        ('start: "a"i', 'case-insensitive literal "a"i is not supported'),
        (r"start: /\d+/", r"regex /\d+/ is not one [class]"),
    ],
)
def test_lark_beyond_the_subset_fails_naming_the_line_and_the_subset(line, what):
    with pytest.raises(GrammarError) as err:
        lark_to_cfg(f"// header\n{line}\n", "g.lark")
    assert str(err.value).startswith(f"g.lark, line 2: {what}")
    assert "supported .lark subset" in str(err.value) and "write a .cfg" in str(err.value)


@pytest.mark.slow
def test_sft_on_the_three_forms_makes_answers_grammatical(tmp_path):
    """60 SFT steps of the tiny preset on files in the three forms (converted to records) take grammar
    compliance from none to nearly all; the tasks themselves need far longer (see the scorecard)."""
    import torch
    from transformers import AutoModelForCausalLM

    from trainguard import api
    from trainguard.eval.scorecard import evaluate_builderbrain
    from trainguard.models.presets import preset_config
    from trainguard.models.tokenizer import byte_tokenizer

    sources = []
    for generate, form, suffix in (
        (generate_structured, "structured", "jsonl"),
        (generate_grammar_examples, "grammar", "jsonl"),
        (generate_plans, "plans", "yaml"),
    ):
        generate(400, 0, tmp_path / f"{form}.{suffix}")
        form_to_sft(tmp_path / f"{form}.{suffix}", form, tmp_path / f"sft_{form}.jsonl")
        sources.append({"path": str(tmp_path / f"sft_{form}.jsonl")})
    stage = {"name": "sft", "objective": "sft", "max_steps": 60, "batch_size": 32, "optimizer": {"lr": 3e-3}}
    cfg = {
        "run": {"name": "forms", "seed": 0, "out_dir": str(tmp_path / "runs"), "threads": 1},
        "model": {"preset": "tiny"},
        "tokenizer": {"max_length": 112},
        "data": {"sources": sources, "eval_fraction": 0.05},
        "stages": [stage | {"schedule": {"warmup_steps": 10}, "eval_every": 60, "save_every": 60}],
        "tracking": {"tensorboard": False, "progress": "off"},
    }
    model, tokenizer = api.load_model(api.run(cfg))
    after = evaluate_builderbrain(model, tokenizer, n=20, n_safety=0, max_new_tokens=44).parts["grammar_compliance"]
    tok = byte_tokenizer()
    torch.manual_seed(0)
    fresh = AutoModelForCausalLM.from_config(
        preset_config("tiny", len(tok), 112, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    )
    before = evaluate_builderbrain(fresh, tok, n=20, n_safety=0, max_new_tokens=44).parts["grammar_compliance"]
    assert (before.n, after.n) == (60, 60)
    assert before.successes == 0 and after.successes >= 48, (before, after)  # 57 of 60 here
