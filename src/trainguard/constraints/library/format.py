"""Format compliance: JSON, a regular expression, or a small context-free grammar (see `grammar.py` for its file
syntax). Violation = 0/1 non-compliance per sample; hostile inputs (too long, too deep, a regex that runs away)
count as violations instead of crashing or hanging.

Surrogates: `nll` (mean NLL of the tokens of a compliant reference) and `bad_mass` (the probability mass the
model puts on next bytes that make the prefix impossible to complete). `bad_mass` assumes trainguard's byte-level
tokenizer (id = byte value), judges the 128 ASCII bytes only (other bytes and special tokens count as neither
good nor bad), ignores JSON's required keys, and does not ask for EOS where the structure is complete.
"""

import json
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal

import regex
import torch
from pydantic import Field, PrivateAttr, model_validator

from trainguard.constraints.library.base import CONSTRAINT_KINDS, Constraint, ConstraintConfig, structure_nll
from trainguard.constraints.library.grammar import Grammar, load_grammar, parse_grammar, recognises, viable_next

SHIPPED_GRAMMARS = Path(__file__).parents[2] / "tasks" / "grammars"  # plan.cfg, action.cfg (tasks/builder.py)
JSON_GRAMMAR = parse_grammar(
    r"""
json     ::= ws value ws
value    ::= object | array | string | number | "true" | "false" | "null"
object   ::= "{" ws "}" | "{" members "}"
members  ::= member | members "," member
member   ::= ws string ws ":" ws value ws
array    ::= "[" ws "]" | "[" items "]"
items    ::= item | items "," item
item     ::= ws value ws
string   ::= "\"" char* "\""
char     ::= [^"\\\x00-\x1f] | "\\" escape
escape   ::= ["\\/bfnrt] | "u" hex hex hex hex
hex      ::= [0-9a-fA-F]
number   ::= "-"? int frac? exp?
int      ::= "0" | [1-9] [0-9]*
frac     ::= "." [0-9]+
exp      ::= [eE] [+\-]? [0-9]+
ws       ::= [ \t\n\r]*
""",
    "<json grammar>",
)
"""RFC 8259 JSON, for prefix checks only (compliance itself uses `json.loads`, which agrees on this language)."""

ASCII = "".join(map(chr, range(128)))


class FormatConfig(ConstraintConfig):
    name: Literal["format"] = Field("format", description="Constraint kind: JSON, regex or grammar compliance.")
    kind: Literal["json", "regex", "grammar"] = Field(
        "json", description="What a compliant sample is: valid JSON, a regex's full match, or a grammar's sentence."
    )
    required_keys: list[str] = Field(
        default_factory=list, description="kind json: the value must be an object holding these keys."
    )
    pattern: str | None = Field(None, description="kind regex: the whole sample must match it (`regex` syntax).")
    grammar_file: Path | None = Field(
        None,
        description="kind grammar: a BNF-like file (syntax in constraints/library/grammar.py), parsed at load; a "
        "relative path is read from the working folder, then from trainguard's shipped grammars (plan.cfg: "
        "BuilderBrain's compact plans, action.cfg: its structured actions).",
    )
    max_chars: int = Field(20_000, gt=0, description="Longer samples count as violations and are never parsed.")
    max_depth: int = Field(64, gt=0, description="kind json: deeper nesting counts as a violation (never parsed).")
    timeout_s: float = Field(0.1, gt=0, description="kind regex: a match that runs longer counts as a violation.")
    surrogate_form: Literal["nll", "bad_mass"] = Field(
        "nll", description="Differentiable term: NLL of a compliant reference, or mass on structure-breaking bytes."
    )
    _regex: Any = PrivateAttr(None)
    _grammar: Grammar | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _compile(self) -> "FormatConfig":
        needs = {"regex": "pattern", "grammar": "grammar_file"}
        for kind, key in needs.items():
            given = getattr(self, key) is not None
            if given != (self.kind == kind):
                raise ValueError(f"{key} is {'required' if not given else 'only used'} with kind {kind}")
        if self.required_keys and self.kind != "json":
            raise ValueError("required_keys is only used with kind json")
        if self.pattern is not None:
            try:
                self._regex = regex.compile(self.pattern)
            except regex.error as err:
                raise ValueError(f"pattern {self.pattern!r} does not compile: {err}") from None
        if self.grammar_file is not None:
            shipped = SHIPPED_GRAMMARS / self.grammar_file
            if not self.grammar_file.is_file() and not self.grammar_file.is_absolute() and shipped.is_file():
                self.grammar_file = shipped
            self._grammar = load_grammar(self.grammar_file)  # GrammarError names the file and line
        return self


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def json_depth(text: str) -> int:
    """Deepest nesting of [ and { outside strings, found without parsing (so no recursion to blow up)."""
    bare = regex.sub(r'"(?:[^"\\]|\\.)*"?', "", text)
    return max(accumulate((c in "[{") - (c in "]}") for c in bare), default=0)


def complies_json(text: str, required_keys: list[str], max_depth: int) -> bool:
    if json_depth(text) > max_depth:
        return False
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    return not required_keys or (isinstance(value, dict) and all(k in value for k in required_keys))


@CONSTRAINT_KINDS.register("format")
class FormatConstraint(Constraint):
    """Share of samples that break the required format."""

    Config = FormatConfig
    config: FormatConfig

    def complies(self, text: str) -> bool:
        cfg = self.config
        if len(text) > cfg.max_chars:
            return False
        if cfg.kind == "json":
            return complies_json(text, cfg.required_keys, cfg.max_depth)
        if cfg.kind == "regex":
            try:
                return cfg._regex.fullmatch(text, timeout=cfg.timeout_s) is not None
            except TimeoutError:
                return False
        assert cfg._grammar is not None
        return recognises(cfg._grammar, text)

    def violation(self, texts: list[str], contexts: list[dict[str, Any]] | None = None) -> list[float]:
        return [0.0 if self.complies(text) else 1.0 for text in texts]

    def viable_next(self, text: str) -> list[set[str]]:
        """For each prefix text[:i], the ASCII characters that keep it completable."""
        cfg = self.config
        if cfg.kind != "regex":
            return viable_next(cfg._grammar or JSON_GRAMMAR, text, ASCII)
        out: list[set[str]] = []
        for i in range(len(text) + 1):
            out.append({c for c in ASCII if self._regex_viable(text[:i] + c)})
        return out

    def _regex_viable(self, prefix: str) -> bool:
        try:
            return self.config._regex.fullmatch(prefix, partial=True, timeout=self.config.timeout_s) is not None
        except TimeoutError:
            return True  # undecided: not counted as bad

    def bad_mass(self, logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over masked positions t of the probability, predicted at t−1, of ASCII bytes that no valid
        completion of the structure prefix (the masked bytes before t) can follow. logits (B, T, V ≥ 256)."""
        if logits.shape[-1] < 256:
            raise ValueError("bad_mass needs a byte-level vocabulary (ids 0-255 are bytes)")
        bad = torch.zeros(logits.shape[0], logits.shape[1] - 1, logits.shape[-1], dtype=torch.bool)  # (B, T-1, V)
        for row in range(logits.shape[0]):
            positions = mask[row].nonzero().flatten().tolist()
            ids = input_ids[row, positions].tolist()
            if any(i >= 256 for i in ids):
                raise ValueError("bad_mass: the masked structure holds a special token; mask bytes only")
            allowed = self.viable_next(bytes(ids).decode("latin-1"))
            for j, t in enumerate(positions):
                if t > 0:
                    bad[row, t - 1, :128] = torch.tensor([c not in allowed[j] for c in ASCII])
        probs = logits[:, :-1].float().softmax(-1)  # (B, T-1, V)
        targets = mask[:, 1:].bool()  # (B, T-1)
        per_position = (probs * bad.to(probs.device)).sum(-1)  # (B, T-1)
        return per_position[targets].sum() / targets.sum().clamp_min(1)

    def surrogate(self, logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The configured differentiable term (`surrogate_form`); mask marks the tokens of a compliant reference."""
        if self.config.surrogate_form == "bad_mass":
            return self.bad_mass(logits, input_ids, mask)
        return structure_nll(logits, input_ids, mask)
