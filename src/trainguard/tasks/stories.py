"""`text_completion`: continue a short story by one sentence. Stories come from a small probabilistic grammar of our
own (characters, places, objects, past-tense sentences) that also keeps the story's state, so coherence is decided
by the generator itself; or, with `file:`, from a local text file, where coherence becomes n-gram overlap.
"""

import functools
import itertools
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, model_validator

from trainguard.errors import DataError
from trainguard.tasks.base import TASKS, Instance, Score, Task, TaskConfig, verified_wrong

NAMES = (
    "Ann", "Ben", "Cam", "Dan", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim", "Lea", "Max", "Ned", "Oli", "Pam",
    "Quin", "Rex", "Sue", "Tom", "Uma", "Vic", "Wes", "Zoe", "Ada", "Bea", "Cleo", "Dora", "Eli", "Finn", "Gia",
    "Hugo", "Iris", "Jack", "Kai", "Lily", "Mia", "Noah", "Otto", "Pia",
)  # fmt: skip
PLACES = ("park", "lake", "forest", "beach", "garden", "shop", "farm", "hill", "river", "school", "market", "barn")
OBJECTS = ("kite", "ball", "book", "hat", "drum", "boat", "map", "cup", "lamp", "key", "bell", "doll", "box", "shell")
ADJECTIVES = ("red", "blue", "green", "small", "big", "new", "shiny", "tiny")  # none needs "an"
FEELINGS = ("happy", "sad", "glad", "tired", "calm", "proud")

# The grammar: one sentence form per kind. Slots: C, D characters; P place; O object; A adjective; F feeling.
PRODUCTIONS = {
    "lives": "{C} lived near the {P}.",
    "visits": "{C} was at the {P}.",
    "has": "{C} had a {A} {O}.",
    "meets": "{C} met {D} at the {P}.",
    "goes": "{C} went to the {P}.",
    "gives": "{C} gave the {O} to {D}.",
    "plays_with": "{C} played with the {O}.",
    "loses": "{C} lost the {O} at the {P}.",
    "finds": "{C} found the {O} at the {P}.",
    "feels": "{C} felt {F} at the {P}.",
    "play_together": "{C} and {D} played at the {P}.",
}
# The slot whose entity each introducing sentence brings into the story.
INTRODUCES = {"lives": "C", "visits": "C", "meets": "D", "has": "O"}
SLOT_WORDS = {"C": NAMES, "D": NAMES, "P": PLACES, "O": OBJECTS, "A": ADJECTIVES, "F": FEELINGS}
# How likely each kind is where it applies: the story's start favours introductions, the continuation events.
START_WEIGHTS = {"has": 4, "meets": 3, "visits": 1, "goes": 2, "gives": 1, "plays_with": 1, "loses": 1}
START_WEIGHTS |= {"finds": 1, "feels": 1}
NEXT_WEIGHTS = {"goes": 2, "gives": 3, "plays_with": 2, "loses": 2, "finds": 3, "feels": 1, "play_together": 2}

Binding = dict[str, str]


def _pattern(template: str) -> re.Pattern[str]:
    """The template as a regex whose named groups accept only words of the slot's category."""
    parts = re.split(r"\{(\w)\}", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
    regex = "".join(part if i % 2 == 0 else f"(?P<{part}>{'|'.join(SLOT_WORDS[part])})" for i, part in enumerate(parts))
    return re.compile(regex)


PATTERNS = {kind: _pattern(template) for kind, template in PRODUCTIONS.items()}


def render(kind: str, binding: Binding) -> str:
    return PRODUCTIONS[kind].format(**binding)


def parse(sentence: str) -> tuple[str, Binding] | None:
    """(kind, binding) when the sentence is one of the grammar's (exact words, spacing and final period)."""
    for kind, pattern in PATTERNS.items():
        match = pattern.fullmatch(sentence)
        if match:
            return kind, match.groupdict()
    return None


def first_sentence(text: str) -> str:
    """The response's first sentence: up to its first `.`, `!` or `?` (or its first line if it has none)."""
    text = text.lstrip()
    match = re.match(r"[^\n.!?]*[.!?]", text)
    return match.group(0) if match else text.split("\n", 1)[0]


@dataclass
class StoryState:
    """Who is where, who holds what, where lost things lie, and what has been said."""

    where: dict[str, str] = field(default_factory=dict)  # character -> place
    holder: dict[str, str | None] = field(default_factory=dict)  # object -> character (None: lying somewhere)
    lying: dict[str, str] = field(default_factory=dict)  # object -> place, while nobody holds it
    places: list[str] = field(default_factory=list)
    said: set[str] = field(default_factory=set)

    def known(self, slot: str, word: str) -> bool:
        if slot in ("C", "D"):
            return word in self.where
        if slot == "O":
            return word in self.holder
        return slot != "P" or word in self.places

    def problem(self, kind: str, b: Binding, closed: bool) -> str | None:
        """Why the sentence cannot come next (None when it can). `closed`: a continuation, which may mention only
        characters, objects and places already in the story; a story's start may bring in new ones."""
        if closed and kind in INTRODUCES:
            return "it brings a new character or object into the story"
        for slot, word in b.items():
            if slot == INTRODUCES.get(kind):
                if self.known(slot, word):
                    return f"{word} is already in the story"
            elif not self.known(slot, word) and not (
                slot == "P" and not closed and kind in ("lives", "visits", "goes")
            ):
                return f"{word} is not in the story"
        c, d, o, p = b.get("C", ""), b.get("D"), b.get("O", ""), b.get("P")
        if d == c:
            return f"{c} cannot do that with {c}"
        if kind == "goes" and self.where.get(c) == p:
            return f"{c} is already at the {p}"
        if kind in ("gives", "plays_with", "loses") and self.holder.get(o) != c:
            return f"{c} does not have the {o}"
        if kind in ("meets", "loses", "finds", "feels", "play_together") and self.where.get(c) != p:
            return f"{c} is not at the {p}"
        if kind in ("gives", "play_together") and d is not None and self.where.get(d) != self.where.get(c):
            return f"{d} is not with {c}"
        if kind == "finds" and (self.holder.get(o) is not None or self.lying.get(o) != p):
            return f"the {o} is not lying at the {p}"
        if render(kind, b) in self.said:
            return "it repeats a sentence of the story"
        return None

    def apply(self, kind: str, b: Binding) -> None:
        c, o, p = b.get("C", ""), b.get("O", ""), b.get("P", "")
        if kind in ("lives", "visits", "goes"):
            self.where[c] = p
        elif kind == "meets":
            self.where[b["D"]] = p
        elif kind in ("has", "finds"):
            self.holder[o] = c
            self.lying.pop(o, None)
        elif kind == "gives":
            self.holder[o] = b["D"]
        elif kind == "loses":
            self.holder[o], self.lying[o] = None, p
        if p and p not in self.places:
            self.places.append(p)
        self.said.add(render(kind, b))

    def candidates(self, rng: random.Random, closed: bool) -> dict[str, list[Binding]]:
        """Every sentence that may come next, by kind; outside `closed`, with one fresh name, place and object."""

        def words(pool: tuple[str, ...], known: list[str]) -> list[str]:
            fresh = [w for w in pool if w not in known]
            return known + ([] if closed or not fresh else [rng.choice(fresh)])

        values = {
            "C": words(NAMES, list(self.where)),
            "P": words(PLACES, self.places),
            "O": words(OBJECTS, list(self.holder)),
            "A": [rng.choice(ADJECTIVES)],
            "F": list(FEELINGS),
        }
        values["D"] = values["C"]
        out: dict[str, list[Binding]] = {}
        for kind, template in PRODUCTIONS.items():
            slots = re.findall(r"\{(\w)\}", template)
            bindings = [
                dict(zip(slots, combo, strict=True)) for combo in itertools.product(*(values[s] for s in slots))
            ]
            fitting = [b for b in bindings if self.problem(kind, b, closed) is None]
            if fitting:
                out[kind] = fitting
        return out


def replay(story: list[str]) -> StoryState:
    """The state after the story's sentences (each one of the grammar's, as the generator wrote them)."""
    state = StoryState()
    for sentence in story:
        parsed = parse(sentence)
        assert parsed is not None, f"not a sentence of the grammar: {sentence!r}"
        state.apply(*parsed)
    return state


def continuation_problem(story: list[str], sentence: str) -> tuple[bool, str | None]:
    """(grammatical, why the sentence cannot continue the story or None)."""
    parsed = parse(sentence)
    if parsed is None:
        return False, "not a sentence of the grammar"
    return True, replay(story).problem(*parsed, closed=True)


def generate_story(rng: random.Random, start_sentences: int) -> list[str]:
    """`start_sentences` opening sentences (the first one brings in the first character), then one continuation."""
    state, story = StoryState(), []
    for i in range(start_sentences + 1):
        closed = i == start_sentences
        weights = NEXT_WEIGHTS if closed else START_WEIGHTS if i else {"lives": 1, "visits": 1}
        options = state.candidates(rng, closed)
        kinds = [k for k in weights if k in options]
        kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
        binding = rng.choice(options[kind])
        state.apply(kind, binding)
        story.append(render(kind, binding))
    return story


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def ngram_f1(response: list[str], reference: list[str], n: int) -> float:
    """F1 of clipped n-gram counts (BLEU's clipping): shared n-grams over the mean of both counts."""
    got = Counter(zip(*(response[i:] for i in range(n)), strict=False))
    want = Counter(zip(*(reference[i:] for i in range(n)), strict=False))
    total = sum(got.values()) + sum(want.values())
    return 2 * sum((got & want).values()) / total if total else 0.0


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]


class StoryConfig(TaskConfig):
    sentences: tuple[int, int] = Field(
        (2, 3), description="[low, high] sentences of the story the prompt shows, drawn per instance."
    )
    file: str | None = Field(
        None,
        description="Local text file whose sentences to continue instead of generated stories; the score is then "
        "n-gram overlap with the file's next sentence.",
    )
    max_prompt_chars: int = Field(
        160, ge=20, description="With `file`, earlier sentences are dropped until the prompt fits (one always stays)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> "StoryConfig":
        if not 1 <= self.sentences[0] <= self.sentences[1] <= 6:
            raise ValueError(f"sentences must be [low, high] with 1 <= low <= high <= 6, got {list(self.sentences)}")
        return self


@TASKS.register("text_completion")
class StoryTask(Task):
    """Story start → its next sentence. Only the response's first sentence is judged.

    Generated stories: it scores 1 when it is `grammatical` (exactly one of the grammar's sentence forms, with
    its words) AND `consistent` with the story: it mentions only characters, objects and places already in it
    (no new ones), respects the story's state (a character gives, plays with or loses only what it holds, finds
    only what lies where it is, goes only where it is not, feels, plays and meets only where it is, and gives to
    or plays with only someone there), and repeats no sentence of the story.

    With `file:`: the score is the n-gram overlap with the next sentence of the file: the mean of the clipped
    unigram and bigram F1 on lower-cased words (unigrams alone for a one-word reference)."""

    name = "text_completion"
    Config = StoryConfig
    config: StoryConfig

    @functools.cached_property
    def file_sentences(self) -> list[str]:
        assert self.config.file is not None
        path = Path(self.config.file)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise DataError(f"text_completion file {path} cannot be read ({err.strerror or err})") from None
        found = split_sentences(text)
        if len(found) < 2:
            raise DataError(f"text_completion file {path} has {len(found)} sentence(s); it needs at least 2")
        return found

    def instance(self, id: int) -> Instance:
        rng = self.rng(id)
        k = rng.randint(*self.config.sentences)
        if self.config.file is None:
            story = generate_story(rng, k)
            start, reference = story[:-1], story[-1]
            kind, _ = parse(reference) or ("", {})
            meta = {"family": kind, "story": start}
        else:
            sentences = self.file_sentences
            target = 1 + id % (len(sentences) - 1)
            start, reference = sentences[max(0, target - k) : target], sentences[target]
            while len(start) > 1 and len(" ".join(start)) + 8 > self.config.max_prompt_chars:
                start = start[1:]
            meta = {"family": "file", "story": start, "line": target}
        return Instance(id=id, prompt=f"story: {' '.join(start)}\n", reference=reference, meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        sentence = first_sentence(response)
        if self.config.file is not None:
            got, want = words(sentence), words(instance.reference)
            unigram, bigram = ngram_f1(got, want, 1), ngram_f1(got, want, 2)
            overlap = unigram if len(want) < 2 else (unigram + bigram) / 2
            return Score(overlap, {"overlap": overlap, "unigram_f1": unigram, "bigram_f1": bigram})
        grammatical, problem = continuation_problem(instance.meta["story"], sentence)
        consistent = grammatical and problem is None
        return Score(float(consistent), {"grammatical": int(grammatical), "consistent": int(consistent)})

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        story = instance.meta["story"]
        return {
            "empty": "",
            "echo": instance.prompt,
            "first sentence": story[0],
            "last sentence": story[-1],
            "constant feels": "Mia felt happy at the park.",
            "constant goes": "Tom went to the lake.",
            "constant plays": "Ann played with the ball.",
        }

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """Generated stories: the reference with a character or object swapped for one not in the story, or the
        last sentence repeated (grammatical, inconsistent). File: another sentence of the file that shares no
        word with the reference, else the empty answer."""
        if self.config.file is not None:
            return verified_wrong(self, instance, lambda: rng.choice(self.file_sentences), "")
        kind, binding = parse(instance.reference)  # type: ignore[misc]
        state = replay(instance.meta["story"])
        slot = rng.choice([s for s in ("C", "D", "O") if s in binding] + ["repeat"])
        if slot == "repeat":
            return str(instance.meta["story"][-1])
        pool, known = (OBJECTS, state.holder) if slot == "O" else (NAMES, state.where)
        return render(kind, binding | {slot: rng.choice([w for w in pool if w not in known])})
