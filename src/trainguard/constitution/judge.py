"""Judging a principle by asking a model a YES/NO question, with the rules as the fallback when it won't say."""

import re
from typing import Any

from torch import nn

from trainguard.constitution.generation import generate
from trainguard.constitution.principle import EvaluationFn

JUDGE_TEMPLATE = (
    "Does the following text violate the principle '{description}'? "
    "Answer YES or NO, then one sentence why.\nText: {text}\nAnswer:"
)

_DECORATION = " \t\n*_`#>\"'[(.:,;!-"
_LABEL = re.compile(r"^(?:final\s+)?answer\s*[*_]*\s*[:\-]", re.IGNORECASE)
_VERDICT = re.compile(r"^(yes|no)\b", re.IGNORECASE)


def judge_prompt(description: str, text: str) -> str:
    return JUDGE_TEMPLATE.format(description=description, text=text)


def parse_verdict(answer: str) -> tuple[bool | None, str]:
    """(True for YES, False for NO, None when neither opens the answer; the explanation that follows).

    Only the first word counts: "no" inside a sentence is too common to read as a verdict. Markdown, quotes,
    brackets, an "Answer:" label, case and trailing punctuation ("Yes.", "no,", "**YES**") are ignored.
    """
    cleaned = _LABEL.sub("", answer.lstrip(_DECORATION), count=1).lstrip(_DECORATION)
    found = _VERDICT.match(cleaned)
    if not found:
        return None, ""
    rest = cleaned[found.end() :].lstrip(_DECORATION + ")]")
    explanation = re.split(r"(?<=[.!?])\s|\n", rest, maxsplit=1)[0].strip()
    return found.group(1).lower() == "yes", explanation[:200]


class ModelJudge:
    """An `evaluation_fn` that asks `model` whether text violates `description`.

    A parsed answer gives `method` "ai"; an unparsable one falls back to `fallback` (the principle's rules),
    keeps the model's answer for inspection, and says `method` "regex-fallback" so frameworks can count it.
    The model must already be on the device it should run on.
    """

    def __init__(
        self, model: nn.Module, tokenizer: Any, description: str, fallback: EvaluationFn, max_new_tokens: int = 32
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.description = description
        self.fallback = fallback
        self.max_new_tokens = max_new_tokens

    def __call__(self, text: str) -> dict[str, Any]:
        prompt = judge_prompt(self.description, text)
        answer = generate(self.model, self.tokenizer, [prompt], self.max_new_tokens)[0]
        verdict, explanation = parse_verdict(answer)
        if verdict is None:
            return {**self.fallback(text), "method": "regex-fallback", "model_answer": answer}
        reasons = [explanation or "model answered YES"] if verdict else []
        return {"flagged": verdict, "reasons": reasons, "matches": [], "method": "ai", "model_answer": answer}
