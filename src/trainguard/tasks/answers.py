"""Where the answer sits in a model's response: after its thinking, in the last tagged or fenced block."""

import re

THINKING = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
CODE_BLOCK = re.compile(r"```python[ \t]*\n(.*?)```", re.DOTALL)


def strip_thinking(text: str) -> str:
    """The response without `<think>…</think>` spans (an unclosed one runs to the end)."""
    return THINKING.sub("", text)


def last_tagged(text: str, tag: str) -> str | None:
    """Content of the last `<tag>…</tag>` outside thinking, without the newlines that frame it."""
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", strip_thinking(text), re.DOTALL)
    return found[-1].strip("\n") if found else None


def last_python_block(text: str) -> str | None:
    """The last ```python fenced block outside thinking."""
    found = CODE_BLOCK.findall(strip_thinking(text))
    return found[-1] if found else None


def normalise_whitespace(text: str) -> str:
    return " ".join(text.split())
