"""Generated ALFWorld-lite households: rooms of receptacles and objects, ALFWorld's action set and phrasing.

Departs from ALFWorld (Shridhar et al., 2021) where its game files would be needed: worlds come from small tables
below instead of ALFRED scenes, heating/cooling/cleaning need only the device (no open/close dance), `look` and
`examine` report contents and states instead of "Next to it, you see nothing", and each task has one goal phrasing.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, TypeVar, get_args

T = TypeVar("T")
TaskType = Literal[
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
]
TASK_TYPES: tuple[TaskType, ...] = get_args(TaskType)

# fmt: off
# room -> (receptacle kind -> most instances, object kinds); caps sum to >= 20, the largest world allowed
ROOMS: dict[str, tuple[dict[str, int], tuple[str, ...]]] = {
    "kitchen": (
        {"cabinet": 6, "coffeemachine": 1, "countertop": 3, "diningtable": 1, "drawer": 4, "fridge": 1,
         "garbagecan": 1, "microwave": 1, "shelf": 3, "sinkbasin": 1, "stoveburner": 4, "toaster": 1},
        ("apple", "bowl", "bread", "butterknife", "cup", "dishsponge", "egg", "fork", "knife", "lettuce", "mug",
         "pan", "peppershaker", "plate", "pot", "potato", "saltshaker", "soapbottle", "spatula", "spoon",
         "tomato", "winebottle"),
    ),
    "bedroom": (
        {"armchair": 1, "bed": 1, "desk": 2, "drawer": 6, "dresser": 1, "garbagecan": 1, "laundryhamper": 1,
         "safe": 1, "shelf": 6, "sidetable": 2},
        ("alarmclock", "book", "bowl", "cd", "cellphone", "creditcard", "keychain", "laptop", "mug", "pen",
         "pencil", "pillow", "remotecontrol"),
    ),
    "bathroom": (
        {"bathtubbasin": 1, "cabinet": 4, "countertop": 1, "drawer": 4, "garbagecan": 1, "handtowelholder": 1,
         "shelf": 3, "sinkbasin": 2, "toilet": 1, "toiletpaperhanger": 1, "towelholder": 1},
        ("candle", "cloth", "dishsponge", "handtowel", "plunger", "scrubbrush", "soapbar", "soapbottle",
         "spraybottle", "tissuebox", "toiletpaper", "towel"),
    ),
}
# fmt: on
OPENABLE = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe"})
DEVICES = {"microwave": ("heat", "hot"), "fridge": ("cool", "cool"), "sinkbasin": ("clean", "clean")}  # verb, state
LAMP, LAMP_HOLDERS = "desklamp", ("desk", "dresser", "sidetable")
HEATABLE = ("apple", "bread", "cup", "egg", "mug", "plate", "potato", "tomato")
CLEANABLE = (*HEATABLE, "bowl", "butterknife", "cloth", "dishsponge", "fork", "knife", "lettuce", "pan", "pot",
             "soapbar", "spatula", "spoon")  # fmt: skip
# task -> (rooms it happens in, the device it needs, target kinds (None: any of the room), goal template)
TASKS: dict[str, tuple[tuple[str, ...], str | None, tuple[str, ...] | None, str]] = {
    "pick_and_place_simple": (("kitchen", "bedroom", "bathroom"), None, None, "put a {obj} in {dest}."),
    "look_at_obj_in_light": (("bedroom",), None, None, "look at {obj} under the desklamp."),
    "pick_clean_then_place_in_recep": (("kitchen", "bathroom"), "sinkbasin", CLEANABLE, "put a clean {obj} in {dest}."),
    "pick_heat_then_place_in_recep": (("kitchen",), "microwave", HEATABLE, "put a hot {obj} in {dest}."),
    "pick_cool_then_place_in_recep": (("kitchen",), "fridge", (*HEATABLE, "lettuce", "pan", "pot", "winebottle"),
                                      "put a cool {obj} in {dest}."),
    "pick_two_obj_and_place": (("kitchen", "bedroom", "bathroom"), None, None, "put two {obj} in {dest}."),
}  # fmt: skip


@dataclass
class Receptacle:
    name: str
    kind: str
    is_open: bool = False  # openable ones start closed, as in ALFWorld
    contents: list[str] = field(default_factory=list)  # object names, in the order they arrived

    @property
    def openable(self) -> bool:
        return self.kind in OPENABLE

    @property
    def accessible(self) -> bool:
        return self.is_open or not self.openable


@dataclass
class Item:
    name: str
    kind: str
    states: set[str] = field(default_factory=set)  # of "hot", "cool", "clean"; the lamp uses "on"


@dataclass
class World:
    task_type: TaskType
    target: str  # object kind the goal names
    dest: str | None  # receptacle kind the goal names (None for look_at_obj_in_light)
    goal: str
    receptacles: dict[str, Receptacle]  # sorted by (kind, number): the order they are listed in
    items: dict[str, Item]
    location: str | None = None  # None: the middle of the room, where every episode starts
    holding: str | None = None  # one object at a time, as in ALFWorld

    # ---- what is seen ----
    def intro(self) -> str:
        seen = _listing([f"a {name}" for name in self.receptacles])
        room = f"You are in the middle of a room. Looking quickly around you, you see {seen}."
        return f"{room}\nYour task is to: {self.goal}"

    def describe(self, recep: Receptacle) -> str:
        if not recep.accessible:
            return f"The {recep.name} is closed."
        seen = _listing([f"a {name}" for name in recep.contents]) or "nothing"
        if recep.openable:
            return f"The {recep.name} is open. In it, you see {seen}."
        return f"On the {recep.name}, you see {seen}."

    # ---- what can be done: canonical action text -> effect returning the observation ----
    def actions(self) -> dict[str, Callable[[], str]]:
        acts: dict[str, Callable[[], str]] = {}
        for recep in self.receptacles.values():
            if recep.name != self.location:
                acts[f"go to {recep.name}"] = partial(self._go, recep)
        held = self.holding
        if self.location is not None:
            here = self.receptacles[self.location]
            if here.openable:
                verb = "close" if here.is_open else "open"
                acts[f"{verb} {here.name}"] = partial(self._open_or_close, here, not here.is_open)
            if here.accessible and held is None:
                for name in here.contents:
                    if self.items[name].kind != LAMP:
                        acts[f"take {name} from {here.name}"] = partial(self._take, here, name)
            if here.accessible and held is not None:
                acts[f"put {held} in/on {here.name}"] = partial(self._put, here, held)
            if held is not None and here.kind in DEVICES:
                verb, state = DEVICES[here.kind]
                acts[f"{verb} {held} with {here.name}"] = partial(self._treat, here, held, verb, state)
            for name in here.contents if here.accessible else []:
                if self.items[name].kind == LAMP and "on" not in self.items[name].states:
                    acts[f"use {name}"] = partial(self._use_lamp, name)
            acts[f"examine {here.name}"] = partial(self.describe, here)
        if held is not None:
            acts[f"examine {held}"] = partial(self._examine_item, held)
        acts["inventory"] = self._inventory
        acts["look"] = self._look
        return acts

    def _go(self, recep: Receptacle) -> str:
        self.location = recep.name
        return f"You arrive at {recep.name}. {self.describe(recep)}"

    def _open_or_close(self, recep: Receptacle, opening: bool) -> str:
        recep.is_open = opening
        return f"You open the {recep.name}. {self.describe(recep)}" if opening else f"You close the {recep.name}."

    def _take(self, recep: Receptacle, name: str) -> str:
        recep.contents.remove(name)
        self.holding = name
        return f"You pick up the {name} from the {recep.name}."

    def _put(self, recep: Receptacle, name: str) -> str:
        recep.contents.append(name)
        self.holding = None
        return f"You put the {name} in/on the {recep.name}."

    def _treat(self, recep: Receptacle, name: str, verb: str, state: str) -> str:
        states = self.items[name].states
        states.discard({"hot": "cool", "cool": "hot"}.get(state, ""))  # heating undoes cooling and back
        states.add(state)
        return f"You {verb} the {name} using the {recep.name}."

    def _use_lamp(self, name: str) -> str:
        self.items[name].states.add("on")
        return f"You turn on the {name}."

    def _examine_item(self, name: str) -> str:
        states = sorted(self.items[name].states)
        return f"The {name} is {' and '.join(states)}." if states else f"There's nothing special about {name}."

    def _inventory(self) -> str:
        return f"You are carrying: a {self.holding}." if self.holding else "You are not carrying anything."

    def _look(self) -> str:
        if self.location is None:
            return self.intro().split("\n")[0]
        here = self.receptacles[self.location]
        return f"You are facing the {here.name}. {self.describe(here)}"

    # ---- goal and progress ----
    @property
    def state_needed(self) -> str | None:
        device = TASKS[self.task_type][1]
        return DEVICES[device][1] if device else None

    def ready(self, name: str) -> bool:
        """An object that would count towards the goal once in place: the right kind, in the right state."""
        item = self.items[name]
        return item.kind == self.target and (self.state_needed is None or self.state_needed in item.states)

    def placed(self) -> int:
        """The most ready objects inside any one receptacle of the goal's kind."""
        counts = [sum(map(self.ready, r.contents)) for r in self.receptacles.values() if r.kind == self.dest]
        return max(counts, default=0)

    def lamp_at(self) -> tuple[str, bool]:
        """The receptacle holding the desk lamp and whether the lamp is on."""
        for recep in self.receptacles.values():
            for name in recep.contents:
                if self.items[name].kind == LAMP:
                    return recep.name, "on" in self.items[name].states
        raise ValueError("this world has no desk lamp")

    def holds_target(self) -> bool:
        return self.holding is not None and self.items[self.holding].kind == self.target

    def solved(self) -> bool:
        if self.task_type == "look_at_obj_in_light":
            lamp_recep, on = self.lamp_at()
            return on and self.holds_target() and self.location == lamp_recep
        return self.placed() >= (2 if self.task_type == "pick_two_obj_and_place" else 1)

    def milestones(self) -> set[str]:
        """Subgoals reached in the current state; shaping pays each once (at most 3 per task, see MILESTONES)."""
        reached = {"holding a target"} if self.holds_target() else set()
        if self.task_type == "look_at_obj_in_light" and self.lamp_at()[1]:
            reached.add("lamp on")
        state = self.state_needed
        if state and any(i.kind == self.target and state in i.states for i in self.items.values()):
            reached.add(f"target {state}")
        if self.task_type == "pick_two_obj_and_place" and self.placed() >= 1:
            reached.add("one placed")
            if self.holds_target():
                reached.add("holding a second target")
        return reached


MILESTONES = {  # every subgoal a task can pay for; their count times the bonus must stay below solving's 1.0
    "pick_and_place_simple": 1,
    "look_at_obj_in_light": 2,
    "pick_clean_then_place_in_recep": 2,
    "pick_heat_then_place_in_recep": 2,
    "pick_cool_then_place_in_recep": 2,
    "pick_two_obj_and_place": 3,
}


def _listing(phrases: list[str]) -> str:
    """ALFWorld's enumeration: "a x", "a x, and a y", "a x, a y, and a z"."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + f", and {phrases[-1]}"


def generate_world(rng: random.Random, task_type: TaskType, n_receptacles: int, n_objects: int) -> World:
    """Draw a room for the task: the device it needs, a destination and a source of another kind, then random
    receptacles up to n_receptacles; targets never start inside a receptacle of the destination's kind."""
    rooms, device, targets, template = TASKS[task_type]
    room = rng.choice(rooms)
    caps, object_kinds = ROOMS[room]
    kinds: list[str] = []
    if device:
        kinds.append(device)
    if task_type == "look_at_obj_in_light":
        kinds.append(rng.choice(LAMP_HOLDERS))
        dest = None
    else:
        dest = rng.choice([k for k in caps if k != device])
        kinds.append(dest)
        if not device:  # somewhere else for the target to start
            kinds.append(rng.choice([k for k in caps if k != dest]))
    while len(kinds) < n_receptacles:
        kinds.append(rng.choice([k for k, cap in caps.items() if kinds.count(k) < cap]))
    lamp_holder = f"{kinds[0]} 1" if task_type == "look_at_obj_in_light" else None
    receptacles = _numbered(kinds, lambda name, kind: Receptacle(name, kind))

    target = rng.choice([k for k in object_kinds if targets is None or k in targets])
    n_targets = 2 if task_type == "pick_two_obj_and_place" else rng.randint(1, 2)
    others = [k for k in object_kinds if k != target]
    object_kinds_drawn = [target] * n_targets + [rng.choice(others) for _ in range(n_objects - n_targets)]
    items = _numbered(object_kinds_drawn, lambda name, kind: Item(name, kind))
    sources = [r for r in receptacles.values() if r.kind != dest]
    for item in items.values():
        pool = sources if item.kind == target else list(receptacles.values())
        rng.choice(pool).contents.append(item.name)
    if lamp_holder:
        items[f"{LAMP} 1"] = Item(f"{LAMP} 1", LAMP)
        receptacles[lamp_holder].contents.insert(0, f"{LAMP} 1")
    goal = template.format(obj=target, dest=dest)
    return World(task_type, target, dest, goal, receptacles, items)


def _numbered(kinds: list[str], build: Callable[[str, str], T]) -> dict[str, T]:
    """Name each thing "<kind> <n>" counting per kind, keyed and ordered by (kind, n)."""
    seen: dict[str, int] = {}
    named = []
    for kind in kinds:
        seen[kind] = seen.get(kind, 0) + 1
        named.append((kind, seen[kind]))
    return {f"{k} {n}": build(f"{k} {n}", k) for k, n in sorted(named)}
