"""`function_call`: a request in words becomes one JSON call `{"name": …, "arguments": {…}}` to one of a few
functions whose signatures the prompt shows compactly; a generated catalogue of 20 functions with JSON-schema
signatures, and a small validator for the schema subset they use (no dependency)."""

import json
import random
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, model_validator

from trainguard.tasks.base import TASKS, Instance, Score, Task, TaskConfig, verified_wrong

TYPE_CODES = {"string": "str", "integer": "int", "number": "num", "boolean": "bool"}


@dataclass(frozen=True)
class Param:
    """One argument: its JSON-schema type (`enum` is a string from `pool`), the values requests use, and how a
    request says it (`phrase` for an optional one, `{v}` standing for the spoken value)."""

    name: str
    type: str  # string | integer | number | boolean | enum
    pool: tuple[Any, ...] = ()  # strings or enum options; for integers (low, high); for numbers (low, high)
    required: bool = True
    phrase: str = ""
    spoken: dict[Any, str] = field(default_factory=dict)  # value -> words, for booleans and enums

    def draw(self, rng: random.Random) -> Any:
        if self.type == "boolean":
            return rng.random() < 0.5
        if self.type == "integer":
            return rng.randint(*self.pool)
        if self.type == "number":
            value = round(rng.uniform(*self.pool), rng.choice((0, 1, 2)))
            return int(value) if value == int(value) else value
        return rng.choice(self.pool)

    def say(self, value: Any) -> str:
        return self.spoken.get(value, str(value))

    def schema(self) -> dict[str, Any]:
        if self.type == "enum":
            return {"type": "string", "enum": list(self.pool)}
        return {"type": self.type}

    def signature(self) -> str:
        kind = "|".join(self.pool) if self.type == "enum" else TYPE_CODES[self.type]
        return f"{self.name}{'' if self.required else '?'}:{kind}"


@dataclass(frozen=True)
class Function:
    name: str
    ask: str  # the request, with `{param}` for each required parameter
    params: tuple[Param, ...]

    def schema(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "parameters": {
                "type": "object",
                "properties": {p.name: p.schema() for p in self.params},
                "required": [p.name for p in self.params if p.required],
                "additionalProperties": False,
            },
        }

    def signature(self) -> str:
        return f"{self.name}({','.join(p.signature() for p in self.params)})"

    def request(self, arguments: dict[str, Any]) -> str:
        by_name = {p.name: p for p in self.params}
        text = self.ask.format(**{p.name: p.say(arguments[p.name]) for p in self.params if p.required})
        optional = [
            by_name[k].phrase.format(v=by_name[k].say(v)) for k, v in arguments.items() if not by_name[k].required
        ]
        return text + "".join(optional)


def string(name: str, pool: tuple[str, ...], phrase: str = "") -> Param:
    return Param(name, "string", pool, not phrase, phrase)


def integer(name: str, low: int, high: int, phrase: str = "") -> Param:
    return Param(name, "integer", (low, high), not phrase, phrase)


def number(name: str, low: float, high: float, phrase: str = "") -> Param:
    return Param(name, "number", (low, high), not phrase, phrase)


def boolean(name: str, yes: str, no: str, phrase: str = "") -> Param:
    return Param(name, "boolean", (), not phrase, phrase or "{v}", {True: yes, False: no})


def choice(name: str, spoken: dict[str, str], phrase: str = "") -> Param:
    return Param(name, "enum", tuple(spoken), not phrase, phrase, spoken)


CITIES = ("Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Delhi", "Berlin", "Madrid", "Dublin", "Vienna", "Seoul")
PEOPLE = ("Ann", "Ben", "Cleo", "Dan", "Eve", "Finn", "Gia", "Hugo", "Iris", "Jack", "Kim", "Leo")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD")
ROOMS = ("kitchen", "bedroom", "hall", "office", "garage", "bathroom")
TOPICS = ("sports", "science", "music", "travel", "food", "health", "games", "art")

CATALOGUE = (
    Function(
        "get_weather",
        "weather in {city}",
        (string("city", CITIES), choice("unit", {"C": "celsius", "F": "fahrenheit"}, " in {v}")),
    ),
    Function(
        "convert_currency",
        "convert {amount} {from} to {to}",
        (number("amount", 1, 500), string("from", CURRENCIES), string("to", CURRENCIES)),
    ),
    Function("set_alarm", "alarm at hour {hour}", (integer("hour", 0, 23), integer("minute", 0, 59, " minute {v}"))),
    Function(
        "send_email",
        "email {to} about {subject}",
        (
            string("to", PEOPLE),
            string("subject", ("lunch", "the report", "rent", "the trip", "a meeting")),
            boolean("urgent", ", urgent", ", not urgent", "{v}"),
        ),
    ),
    Function(
        "search_web",
        "search the web for {query}",
        (
            string("query", ("cheap flights", "bike repair", "rain boots", "tea shops", "chess tips")),
            integer("limit", 1, 20, ", top {v}"),
        ),
    ),
    Function(
        "play_music",
        "play {song}",
        (
            string("song", ("Blue Sky", "Red River", "Night Bus", "Old Road", "Sunrise")),
            integer("volume", 1, 10, " at volume {v}"),
        ),
    ),
    Function(
        "book_table",
        "table for {people} at {restaurant}",
        (
            string("restaurant", ("Nora", "Casa Sol", "Blue Fish", "Bistro 9")),
            integer("people", 1, 12),
            string("time", ("18:00", "19:30", "20:15", "21:00"), " at {v}"),
        ),
    ),
    Function(
        "get_stock", "price of {symbol} stock", (string("symbol", ("AAPL", "MSFT", "TSLA", "AMZN", "NVDA", "IBM")),)
    ),
    Function(
        "translate",
        "translate '{text}' into {lang}",
        (
            string("text", ("good morning", "thank you", "see you soon", "where is it")),
            choice("lang", {"fr": "French", "de": "German", "es": "Spanish", "it": "Italian"}),
        ),
    ),
    Function(
        "add_todo",
        "add {task} to my list",
        (
            string("task", ("milk", "call mom", "pay rent", "walk dog", "fix bike")),
            choice("priority", {"low": "low", "high": "high"}, " with {v} priority"),
        ),
    ),
    Function(
        "set_timer",
        "timer for {minutes} minutes",
        (integer("minutes", 1, 90), boolean("sound", " with sound", " without sound", "{v}")),
    ),
    Function("get_news", "news about {topic}", (string("topic", TOPICS), integer("count", 1, 10, ", max {v}"))),
    Function(
        "calc_tip", "tip on a {bill} bill", (number("bill", 5, 300), integer("percent", 5, 30, " at {v} percent"))
    ),
    Function("switch_light", "turn {on} the {room} light", (string("room", ROOMS), boolean("on", "on", "off"))),
    Function(
        "set_thermostat",
        "thermostat to {temp} degrees",
        (number("temp", 15, 28), choice("mode", {"heat": "heat", "cool": "cool"}, " in {v} mode")),
    ),
    Function(
        "order_food",
        "order {qty} {dish}",
        (string("dish", ("pizza", "soup", "salad", "tacos", "sushi", "noodles")), integer("qty", 1, 9)),
    ),
    Function(
        "find_route",
        "route from {start} to {end}",
        (
            string("start", CITIES),
            string("end", CITIES),
            choice("mode", {"car": "car", "walk": "foot", "bike": "bike"}, " by {v}"),
        ),
    ),
    Function("get_time", "time in {city}", (string("city", CITIES),)),
    Function(
        "call_contact", "call {name}", (string("name", PEOPLE), boolean("video", " on video", " audio only", "{v}"))
    ),
    Function(
        "rate_movie",
        "rate {title} {stars} stars",
        (string("title", ("Up", "Heat", "Jaws", "Alien", "Big", "Coco")), integer("stars", 1, 5)),
    ),
)
FUNCTIONS = {f.name: f for f in CATALOGUE}


def schema_errors(schema: dict[str, Any], value: Any, where: str = "arguments") -> list[str]:
    """What keeps `value` from matching `schema`, for the subset the catalogue uses: type (object, string,
    integer, number, boolean), enum, properties, required, additionalProperties: false. Booleans are not
    numbers; an integer may be written 3.0."""
    kind = schema.get("type")
    checks = {
        "object": isinstance(value, dict),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "integer": isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer(),
    }
    if kind is not None and not checks[kind]:
        return [f"{where}: not of type {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    if kind != "object":
        return []
    properties = schema.get("properties", {})
    errors = [f"{where}: missing required '{k}'" for k in schema.get("required", []) if k not in value]
    if schema.get("additionalProperties") is False:
        errors += [f"{where}: unexpected '{k}'" for k in value if k not in properties]
    for key, sub in properties.items():
        if key in value:
            errors += schema_errors(sub, value[key], f"{where}.{key}")
    return errors


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (2 == 2.0), but a boolean never equals a number; objects ignore key order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def draw_arguments(function: Function, rng: random.Random, optional_rate: float) -> dict[str, Any]:
    """Required parameters always, optional ones at `optional_rate`; redrawn while two strings agree (a route from
    Rome to Rome, USD to USD)."""
    while True:
        arguments = {p.name: p.draw(rng) for p in function.params if p.required or rng.random() < optional_rate}
        strings = [v for v in arguments.values() if isinstance(v, str)]
        if len(set(strings)) == len(strings):
            return arguments


def call_json(name: str, arguments: dict[str, Any]) -> str:
    return json.dumps({"name": name, "arguments": arguments}, separators=(",", ":"), ensure_ascii=False)


def parse_call(text: str) -> tuple[bool, Any]:
    """(parses as JSON, the value); malformed or absurdly nested text is (False, None), never an exception."""
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


class FunctionCallConfig(TaskConfig):
    candidates: tuple[int, int] = Field(
        (1, 3), description="[low, high] signatures shown in the prompt (the right one among them), drawn per instance."
    )
    optional_rate: float = Field(0.5, ge=0, le=1, description="Chance that a request sets each optional parameter.")
    max_prompt_chars: int = Field(
        160, ge=60, description="Other signatures are left out until the prompt fits (the right one always stays)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> "FunctionCallConfig":
        if not 1 <= self.candidates[0] <= self.candidates[1] <= len(CATALOGUE):
            raise ValueError(f"candidates must be [low, high] with 1 <= low <= high <= {len(CATALOGUE)}")
        return self


@TASKS.register("function_call")
class FunctionCallTask(Task):
    """Signatures + a request → `{"name": …, "arguments": {…}}` (the whole response, one JSON object). Scores 1
    iff the name and the arguments equal the reference's (key order free, numbers by value). Details:
    `json_valid` (parses), `format_ok` (an object of exactly name and arguments that validates against the
    named catalogue function's schema), `name_ok`, `arguments_ok`."""

    name = "function_call"
    Config = FunctionCallConfig
    config: FunctionCallConfig

    def instance(self, id: int) -> Instance:
        cfg, rng = self.config, self.rng(id)
        function = rng.choice(CATALOGUE)
        arguments = draw_arguments(function, rng, cfg.optional_rate)
        others = rng.sample([f for f in CATALOGUE if f is not function], rng.randint(*cfg.candidates) - 1)
        shown = [function, *others]
        rng.shuffle(shown)
        request = function.request(arguments)

        def prompt_of(fs: list[Function]) -> str:
            return f"tools: {'; '.join(f.signature() for f in fs)}\nask: {request}\n"

        while len(shown) > 1 and len(prompt_of(shown)) > cfg.max_prompt_chars:
            shown.remove(next(f for f in reversed(shown) if f is not function))
        meta = {"family": function.name, "call": {"name": function.name, "arguments": arguments}}
        meta["candidates"] = [f.name for f in shown]
        return Instance(id=id, prompt=prompt_of(shown), reference=call_json(function.name, arguments), meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        json_valid, call = parse_call(response.strip())
        want = instance.meta["call"]
        shaped = isinstance(call, dict) and call.keys() == {"name", "arguments"}
        name = call.get("name") if shaped else None
        arguments = call.get("arguments") if shaped else None
        function = FUNCTIONS.get(name) if isinstance(name, str) else None
        format_ok = function is not None and not schema_errors(function.schema()["parameters"], arguments)
        name_ok = name == want["name"]
        arguments_ok = isinstance(arguments, dict) and same_json(arguments, want["arguments"])
        details = {"json_valid": int(json_valid), "format_ok": int(format_ok), "name_ok": int(name_ok)}
        return Score(float(name_ok and arguments_ok), details | {"arguments_ok": int(arguments_ok)})

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        first = instance.meta["candidates"][0]
        request = instance.prompt.split("\nask: ", 1)[1].strip()
        return {
            "empty": "",
            "echo": instance.prompt,
            "empty object": "{}",
            "first tool, no arguments": call_json(first, {}),
            "request as search": call_json("search_web", {"query": request}),
            "constant weather": call_json("get_weather", {"city": "Paris"}),
            "constant time": call_json("get_time", {"city": "Paris"}),
        }

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """A near miss: one argument redrawn, dropped or added, or another function called with the same
        arguments; the caller keeps only answers the verifier scores 0 (the last resort always fails)."""
        want = instance.meta["call"]
        function, arguments = FUNCTIONS[want["name"]], dict(want["arguments"])

        def make() -> str:
            wrong, name = dict(arguments), function.name
            kind = rng.choice(["redraw", "drop", "add", "rename"])
            p = rng.choice(function.params)
            if kind == "rename":
                name = rng.choice([f.name for f in CATALOGUE if f is not function])
            elif kind == "drop" and p.name in wrong:
                del wrong[p.name]
            else:  # redraw it, or add it when missing
                wrong[p.name] = p.draw(rng)
            return call_json(name, wrong)

        return verified_wrong(self, instance, make, call_json(function.name, {}))
