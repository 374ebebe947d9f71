"""The text layer of the BabyAI environment: what the agent sees, described from its own point of view, and the
high-level actions ("go to red ball", "pick up grey key 2", "open blue door") compiled into minigrid's primitives.

Only cells in the agent's current view count, for both the description and the paths (as in AgentGym's layer), so
the text never leaks what lies behind walls. Objects are named "<state> <colour> <type>", numbered by distance when
several share a name.
"""

from collections import deque
from dataclasses import dataclass
from typing import Any

# minigrid's primitive action numbers (minigrid.core.actions.Actions) and the text that stands for each.
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)
PRIMITIVE_TEXT = {LEFT: "turn left", RIGHT: "turn right", FORWARD: "move forward", PICKUP: "pick up", DROP: "drop"}
PRIMITIVE_TEXT[TOGGLE] = "toggle"
DIR_VECS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # minigrid's agent_dir 0..3: east, south, west, north


@dataclass(frozen=True)
class Seen:
    """One visible object: its name in the text, its grid cell and its offset from the agent (ahead, right)."""

    name: str
    pos: tuple[int, int]
    ahead: int
    right: int
    obj: Any  # the minigrid WorldObj


def _name(obj: Any) -> str:
    if obj.type == "door":
        state = "locked" if obj.is_locked else "open" if obj.is_open else "closed"
        return f"{state} {obj.color} door"
    return f"{obj.color} {obj.type}"


def visible(env: Any) -> tuple[list[Seen], set[tuple[int, int]]]:
    """The non-wall objects in view, nearest first, with their names numbered; and every visible cell."""
    _, vis_mask = env.gen_obs_grid()  # both (view, view), in the agent's frame
    view = env.agent_view_size
    (px, py), (fx, fy), (rx, ry) = tuple(env.agent_pos), tuple(env.dir_vec), tuple(env.right_vec)
    cells: set[tuple[int, int]] = set()
    found: list[tuple[int, int, int, Any, tuple[int, int]]] = []
    for j in range(view):
        for i in range(view):
            if not vis_mask[i, j]:
                continue
            ahead, right = view - 1 - j, i - view // 2
            x, y = px + fx * ahead + rx * right, py + fy * ahead + ry * right
            if not (0 <= x < env.width and 0 <= y < env.height):
                continue
            cells.add((x, y))
            obj = env.grid.get(x, y)
            if (ahead, right) != (0, 0) and obj is not None and obj.type not in ("wall", "empty", "floor"):
                found.append((ahead + abs(right), ahead, right, obj, (x, y)))
    found.sort(key=lambda f: (f[0], f[1], f[2]))
    counts: dict[str, int] = {}
    for *_, obj, _pos in found:
        counts[_name(obj)] = counts.get(_name(obj), 0) + 1
    seen, numbered = [], {}
    for _, ahead, right, obj, pos in found:
        name = _name(obj)
        numbered[name] = numbered.get(name, 0) + 1
        seen.append(Seen(f"{name} {numbered[name]}" if counts[name] > 1 else name, pos, ahead, right, obj))
    return seen, cells


def offset_text(ahead: int, right: int) -> str:
    """Where a thing is ("2 ahead 1 left"), counted in cells from the agent along its facing and to its side."""
    parts = [f"{ahead} ahead"] if ahead else []
    if right:
        parts.append(f"{abs(right)} {'right' if right > 0 else 'left'}")
    return " ".join(parts) or "here"


def _passable(env: Any, pos: tuple[int, int]) -> bool:
    obj = env.grid.get(*pos)
    return obj is None or obj.can_overlap()


def path_to_face(env: Any, target: tuple[int, int], cells: set[tuple[int, int]]) -> list[int] | None:
    """The fewest primitive moves (turns, forward) through visible passable cells that leave the agent facing
    `target`; [] when it already does, None when no such path exists."""
    start = (tuple(env.agent_pos), int(env.agent_dir))
    back: dict[tuple[tuple[int, int], int], tuple[tuple[tuple[int, int], int], int] | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        (x, y), d = state
        if (x + DIR_VECS[d][0], y + DIR_VECS[d][1]) == target:
            moves: list[int] = []
            while back[state] is not None:
                state, move = back[state]  # type: ignore[misc]
                moves.append(move)
            return moves[::-1]
        ahead = (x + DIR_VECS[d][0], y + DIR_VECS[d][1])
        successors = [(((x, y), (d - 1) % 4), LEFT), (((x, y), (d + 1) % 4), RIGHT)]
        if ahead in cells and _passable(env, ahead):
            successors.append(((ahead, d), FORWARD))
        for nxt, move in successors:
            if nxt not in back:
                back[nxt] = (state, move)
                queue.append(nxt)
    return None


def action_table(env: Any, macros: bool = True) -> tuple[list[Seen], dict[str, list[int]]]:
    """What is seen and every valid action text mapped to the primitives it compiles to, in a stable order.

    A primitive is valid only where it would do something (forward into a free cell, pick up a pickable thing,
    drop onto an empty cell, toggle a door or box); a high-level one only where a visible path leads there.
    """
    seen, cells = visible(env)
    front = env.grid.get(*env.front_pos)
    carrying = env.carrying
    table: dict[str, list[int]] = {"turn left": [LEFT], "turn right": [RIGHT]}
    if front is None or front.can_overlap():
        table["move forward"] = [FORWARD]
    if carrying is None and front is not None and front.can_pickup():
        table["pick up"] = [PICKUP]
    if carrying is not None and front is None:
        table["drop"] = [DROP]
    if front is not None and front.type in ("door", "box"):
        table["toggle"] = [TOGGLE]
    for thing in seen if macros else []:
        path = path_to_face(env, thing.pos, cells)
        if path is None:
            continue
        if path:
            table[f"go to {thing.name}"] = path
        if thing.obj.can_pickup() and carrying is None:
            table[f"pick up {thing.name}"] = [*path, PICKUP]
        door_opens = thing.obj.type == "door" and not thing.obj.is_open
        key_fits = carrying is not None and carrying.type == "key" and carrying.color == thing.obj.color
        if door_opens and (not thing.obj.is_locked or key_fits):
            table[f"open {thing.name}"] = [*path, TOGGLE]
    return seen, table


def describe(env: Any, seen: list[Seen], actions: list[str] | None) -> str:
    """The compact observation: objects in view, the cell in front, what is carried, and the valid actions."""
    things = ", ".join(f"{s.name} ({offset_text(s.ahead, s.right)})" for s in seen) or "nothing"
    front = env.grid.get(*env.front_pos)
    front_text = "nothing" if front is None else front.type if front.type == "wall" else _name(front)
    carrying = "nothing" if env.carrying is None else _name(env.carrying)
    text = f"You see: {things}.\nIn front: {front_text}. Carrying: {carrying}.\n"
    return text + (f"Actions: {', '.join(actions)}.\n" if actions is not None else "")
