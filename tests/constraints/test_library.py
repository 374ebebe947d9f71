"""Format constraints: JSON, regex and grammar compliance on hand cases, hostile inputs, config errors, and the
NLL / bad-mass surrogates against hand-computed values."""

import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from trainguard.constraints.library import (
    FormatConfig,
    FormatConstraint,
    GrammarError,
    build_constraint,
    parse_grammar,
    recognises,
    structure_nll,
)
from trainguard.constraints.library.format import JSON_GRAMMAR

PLAN_GRAMMAR = """\
# steps separated by semicolons
plan ::= step | plan ";" ws step
step ::= "do " word   # a verb
word ::= [a-z]+
ws   ::= " "*
"""


def fmt(**kwargs) -> FormatConstraint:
    return FormatConstraint(FormatConfig(**kwargs))


def test_json_compliance_on_hand_cases() -> None:
    texts = ['{"a": 1}', "[1, 2.5e3, null]", ' "x" ', "{'a': 1}", "", "{", "NaN", '{"a": 1} trailing']
    assert fmt(kind="json").violation(texts) == [0, 0, 0, 1, 1, 1, 1, 1]


def test_json_required_keys() -> None:
    c = fmt(kind="json", required_keys=["answer", "steps"])
    assert c.violation(['{"answer": 1, "steps": []}', '{"answer": 1}', "[1]"]) == [0, 1, 1]
    assert c.value(['{"answer": 1, "steps": []}', '{"answer": 1}']) == 0.5


def test_hostile_json_counts_as_violation_without_crashing() -> None:
    deep = "[" * 5000 + "]" * 5000
    assert fmt(kind="json").violation([deep, "[" * 64 + "]" * 64, "[" * 65 + "]" * 65]) == [1, 0, 1]
    # Past the depth pre-check, json's own recursion limit is caught, not raised.
    very_deep = "[" * 100_000 + "]" * 100_000
    assert fmt(kind="json", max_depth=10**6, max_chars=10**6).violation([very_deep]) == [1]
    assert fmt(kind="json").violation(['"' + "a" * 30_000 + '"']) == [1]  # over max_chars


def test_regex_fullmatch_and_runaway_patterns() -> None:
    c = fmt(kind="regex", pattern=r"[a-z]+@[a-z]+\.com")
    assert c.violation(["bob@example.com", "bob@example.com!", "", "x" * 30_000]) == [0, 1, 1, 1]
    runaway = fmt(kind="regex", pattern=r"(a|aa)+b", timeout_s=0.01)
    assert runaway.violation(["a" * 60]) == [1]


def test_bad_regex_is_a_validation_error_naming_the_pattern() -> None:
    with pytest.raises(ValidationError, match=r"pattern '\(ab' does not compile"):
        FormatConfig(kind="regex", pattern="(ab")


def test_kind_fields_must_match_the_kind() -> None:
    with pytest.raises(ValidationError, match="pattern is required with kind regex"):
        FormatConfig(kind="regex")
    with pytest.raises(ValidationError, match="pattern is only used with kind regex"):
        FormatConfig(kind="json", pattern="x")
    with pytest.raises(ValidationError, match="unknown key 'patern'"):
        FormatConfig(kind="json", patern="x")


def test_grammar_file_compliance(tmp_path: Path) -> None:
    path = tmp_path / "plan.bnf"
    path.write_text(PLAN_GRAMMAR)
    c = build_constraint({"name": "format", "kind": "grammar", "grammar_file": str(path)})
    texts = ["do walk", "do walk; do run;do x", "", "do ", "do Walk", "do a;", "do a" + ";do a" * 5000]
    assert c.violation(texts) == [0, 0, 1, 1, 1, 1, 1]  # the last one is over max_chars


def test_grammar_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.bnf"
    path.write_text('plan ::= step\n\nstep ::= "do  word\n')
    with pytest.raises(ValidationError, match=r"broken\.bnf, line 3: unterminated quoted string"):
        FormatConfig(kind="grammar", grammar_file=path)
    path.write_text("plan ::= step\nstep ::= word\n")
    with pytest.raises(ValidationError, match=r"broken\.bnf, line 2: rule 'word' is used but never defined"):
        FormatConfig(kind="grammar", grammar_file=path)
    path.write_text("plan ::= step\nthis is not a rule\n")
    with pytest.raises(ValidationError, match=r"broken\.bnf, line 2: expected `name ::= \.\.\.`"):
        FormatConfig(kind="grammar", grammar_file=path)
    with pytest.raises(ValidationError, match=r"missing\.bnf: cannot read grammar file"):
        FormatConfig(kind="grammar", grammar_file=tmp_path / "missing.bnf")


def test_grammar_errors_name_the_line_directly() -> None:
    with pytest.raises(GrammarError, match=r"g, line 2: bad character class \[z-a\]"):
        parse_grammar('a ::= "x"\nb ::= [z-a]\n', "g")
    with pytest.raises(GrammarError, match=r"g, line 1: '\*' must follow a symbol"):
        parse_grammar("a ::= * b\n", "g")
    with pytest.raises(GrammarError, match="defined twice"):
        parse_grammar('a ::= "x"\na ::= "y"\n', "g")


def test_earley_handles_nullable_ambiguous_and_left_recursive_rules() -> None:
    g = parse_grammar('s ::= s s | "a" | ""\n')  # ambiguous, left recursive and nullable at once
    assert [recognises(g, t) for t in ["", "a", "aaaa", "ab"]] == [True, True, True, False]
    g = parse_grammar('s ::= "(" s ")" s\n  | ""\n')  # balanced parentheses, with a continuation line
    assert [recognises(g, t) for t in ["", "()", "(()())()", "(()", ")("]] == [True, True, True, False, False]
    g = parse_grammar('n ::= "-"? [0-9]+ "ab"?\n')  # operators on a class and a multi-character literal
    assert [recognises(g, t) for t in ["7", "-12ab", "12a", "-"]] == [True, True, False, False]


def test_json_grammar_agrees_with_json_loads() -> None:
    c = fmt(kind="json")
    texts = ['{"a": [1, -0.5e+3, true, null, "\\u00e9\\n"]}', "[]", " { } ", "01", "[1,]", '"\t"', "1.", "-", "tru"]
    assert [not recognises(JSON_GRAMMAR, t) for t in texts] == [bool(v) for v in c.violation(texts)]


def test_structure_nll_equals_hand_cross_entropy_and_has_gradients() -> None:
    logits = torch.zeros(1, 3, 3)
    logits[0, 0, 2] = math.log(2)  # softmax [1/4, 1/4, 1/2]; row 1 is uniform (1/3 each)
    logits.requires_grad_(True)
    input_ids = torch.tensor([[0, 2, 1]])
    mask = torch.tensor([[False, True, True]])
    nll = structure_nll(logits, input_ids, mask)
    assert nll.item() == pytest.approx((math.log(2) + math.log(3)) / 2)
    nll.backward()
    # d(-log softmax_y)/dz = p - onehot(y), halved by the mean over two positions.
    assert logits.grad[0, 0].tolist() == pytest.approx([0.125, 0.125, -0.25])
    assert logits.grad[0, 2].abs().sum().item() == 0.0  # the last position predicts nothing
    assert fmt(kind="json").surrogate(logits, input_ids, mask).item() == pytest.approx(nll.item())


def byte_batch(text: str, vocab: int = 259) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """<bos> + the bytes of `text`, uniform logits, and a mask over the text."""
    ids = torch.tensor([[257, *text.encode()]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, 0] = False
    return torch.zeros(1, ids.shape[1], vocab, requires_grad=True), ids, mask


def test_bad_mass_regex_against_hand_value() -> None:
    c = fmt(kind="regex", pattern="ab", surrogate_form="bad_mass")
    logits, ids, mask = byte_batch("ab")
    # Uniform over 259 ids; after "" only "a" and after "a" only "b" keep the match possible: 127 bad ASCII bytes.
    mass = c.surrogate(logits, ids, mask)
    assert mass.item() == pytest.approx(127 / 259)
    mass.backward()
    assert logits.grad.abs().sum() > 0


def test_bad_mass_json_viable_sets_and_confident_model() -> None:
    c = fmt(kind="json", surrogate_form="bad_mass")
    allowed = c.viable_next('{"a"')
    assert allowed[0] == set(' \t\n\r{["-0123456789tfn')
    assert allowed[1] == set(' \t\n\r"}')
    assert ":" in allowed[4] and "}" not in allowed[4]
    assert c.viable_next("}x")[1:] == [set(), set()]  # a dead prefix stays dead
    logits, ids, mask = byte_batch('{"a":1}')
    with torch.no_grad():  # a model sure of every next byte of a valid object puts no mass on bad bytes
        logits[0, torch.arange(ids.shape[1] - 1), ids[0, 1:]] = 30.0
    assert c.bad_mass(logits, ids, mask).item() < 1e-9
    uniform, ids, mask = byte_batch('{"a":1}')
    assert 0.3 < c.bad_mass(uniform, ids, mask).item() < 128 / 259


def test_bad_mass_grammar_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "plan.bnf"
    path.write_text(PLAN_GRAMMAR)
    c = fmt(kind="grammar", grammar_file=path)
    logits, ids, mask = byte_batch("do")
    assert c.bad_mass(logits, ids, mask).item() == pytest.approx(127 / 259)  # only "d", then only "o"
    with pytest.raises(ValueError, match="byte-level vocabulary"):
        c.bad_mass(torch.zeros(1, 3, 100), ids, mask)
    mask[0, 0] = True  # <bos> is not a byte
    with pytest.raises(ValueError, match="special token"):
        c.bad_mass(logits, ids, mask)
