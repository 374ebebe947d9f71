"""Reading "which response is better, A or B?" answers written the many ways models and people write them."""

import re
from typing import Literal

Choice = Literal["A", "B"]

# A bare "a" is a label only when nothing noun-like follows it: "A is better", "a.", "B, because" are labels;
# "a response like this" is the article. Prefixed ("Response A", "option b") or bracketed ("(A)") letters
# are labels wherever they stand.
_AFTER_BARE = (
    r"(?=\s*$|\s*[.,;:!?)\]]|'s\b|\s+(?:is|was|seems|looks|because|since|as|over|than|and|or|wins|would|does"
    r"|fits|follows|but|instead|here)\b)"
)
_LABEL = (
    r"(?:(?:response|option|choice|candidate|output)\s*[(\[]?\s*(?P<{g}1>[ab])\b[)\]]?"
    r"|[(\[]\s*(?P<{g}2>[ab])\s*[)\]]"
    r"|(?<![\w'])(?P<{g}3>[ab])" + _AFTER_BARE + ")"
)


def _label(group: str) -> str:
    return _LABEL.format(g=group)


_ANY_LABEL = re.compile(_label("x"))
_COMPARATIVE = re.compile(
    _label("x") + r"\s+(?:(?:is|seems|looks|was)\s+)?(?:much\s+|far\s+|slightly\s+|clearly\s+|definitely\s+)?"
    r"(?P<cmp>better|safer|preferable|superior|more\s+\w+|worse|inferior|less\s+\w+)\s+(?:than|to)\s+" + _label("y")
)
_VERDICT = re.compile(
    _label("x") + r"\s+(?:is|seems|looks)\s+(?:the\s+)?(?:clearly\s+)?(?P<cmp>better|best|preferable|safer|winner"
    r"|stronger|worse|worst|weaker)\b"
)
_CHOOSE = re.compile(
    r"\b(?:prefer|choose|chose|pick|picked|select|selected|go\s+with|going\s+with|vote\s+for|recommend|favou?r"
    r"|answer\s+is|answer\s*:|choice\s+is|choice\s*:|winner\s+is|(?:better|best)\s+(?:response|one|option|answer)"
    r"\s+is|i'd\s+say|i\s+would\s+say)\s+" + _label("x")
)
_NO_PREFERENCE = re.compile(
    r"^(?:neither|both|none|tie|equal)\b|\b(?:equally\s+(?:good|bad|fine|helpful|safe|harmful)|are\s+(?:equal|the\s+same)"
    r"|(?:it's|it\s+is)\s+a\s+tie|no\s+preference)\b"
)
_NEGATED = re.compile(r"\b(?:not|never|n't)\s*$")
_WORSE = ("worse", "worst", "weaker", "inferior", "less")


def _letter(match: re.Match[str], group: str) -> Choice:
    found = next(match.group(f"{group}{i}") for i in (1, 2, 3) if match.group(f"{group}{i}"))
    return "A" if found == "a" else "B"


def _other(choice: Choice) -> Choice:
    return "B" if choice == "A" else "A"


def _normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[*_`#]", "", text)
    return re.sub(r"\s+", " ", text).strip()


def _stated_preference(text: str) -> Choice | None:
    """A choice stated outright: "A is better than B", "B is the worse one", "I prefer A", "the answer is B"."""
    found = _COMPARATIVE.search(text)
    if found:
        first = _letter(found, "x")
        return _other(first) if found.group("cmp").startswith(_WORSE) else first
    found = _VERDICT.search(text)
    if found:
        first = _letter(found, "x")
        return _other(first) if found.group("cmp").startswith(_WORSE) else first
    for found in _CHOOSE.finditer(text):
        if not _NEGATED.search(text[: found.start()]):
            return _letter(found, "x")
    return None


def _refuses(text: str) -> bool:
    """No single choice: "Neither", "Both are fine", "equally good", or only a rejection ("I would not pick A")."""
    negated = any(_NEGATED.search(text[: m.start()]) for m in _CHOOSE.finditer(text))
    return negated or bool(_NO_PREFERENCE.search(text))


def parse_comparison(text: str) -> Choice | None:
    """The chosen response, "A" or "B"; None when the answer names no single one ("Neither", "Both", "").

    Order: an outright statement of preference; then a refusal; then an answer that opens with a label
    ("B, because A is rude"); then a single label named anywhere. Two labels with nothing to choose between
    them are None: guessing would put noise into preference data.
    """
    text = _normalise(text)
    if not text:
        return None
    stated = _stated_preference(text)
    if stated is not None:
        return stated
    if _refuses(text):
        return None
    labels = list(_ANY_LABEL.finditer(re.sub(r"^(?:final\s+)?answer\s*[:\-]\s*", "", text)))
    if labels and labels[0].start() == 0:
        return _letter(labels[0], "x")
    letters = {_letter(m, "x") for m in labels}
    return letters.pop() if len(letters) == 1 else None
