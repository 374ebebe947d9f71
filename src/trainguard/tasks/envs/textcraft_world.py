"""TextCraft's world: an invented crafting catalogue built by our own code, a goal's recipe tree, and the plan.

It stands in for the Minecraft recipe files that the `textcraft` package bundles (data of unclear licence, and the
package needs gymnasium): same command format, but one recipe per item, no item tags, and a tier per item, so that
a goal of tier d needs a crafting tree of depth exactly d.
"""

import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from math import ceil

MAX_GET = 9  # `get N item` takes 1..9 at a time: one digit keeps actions short; the plan splits bigger needs
MAX_PLAN_ROUNDS = 12  # the catalogue redraws a recipe whose goal needs more get/craft actions than this from empty
MAX_TIER = 3

BASES = (
    "oak log", "birch log", "iron ore", "gold ore", "copper ore", "coal",
    "sand", "clay ball", "stone", "flint", "wool tuft", "bone",
)  # fmt: skip
MATERIALS = ("oak", "birch", "iron", "gold", "copper", "stone", "glass", "bone", "wool", "clay", "amber", "jade")
FORMS = {
    1: ("plank", "ingot", "brick", "thread", "dust", "pane", "nugget", "sheet"),
    2: ("rod", "plate", "gear", "rope", "tile", "lens", "hinge", "ring"),
    3: ("lantern", "shield", "compass", "drum", "anvil", "loom", "banner", "chest"),
}


@dataclass(frozen=True)
class Recipe:
    """`craft {count} {output} using {n} {item}, ...`: consumes exactly the inputs, adds `count` of the output."""

    output: str
    count: int
    inputs: tuple[tuple[str, int], ...]
    tier: int  # 1 + the highest tier among the inputs (bases are tier 0)

    @property
    def command(self) -> str:
        return f"craft {self.count} {self.output} using " + ", ".join(f"{n} {item}" for item, n in self.inputs)


@dataclass(frozen=True)
class Catalogue:
    """Every recipe of the world by output item; items without a recipe are bases, obtained with `get`."""

    recipes: Mapping[str, Recipe]

    def tier(self, item: str) -> int:
        recipe = self.recipes.get(item)
        return recipe.tier if recipe else 0

    def tree(self, goal: str) -> list[Recipe]:
        """The recipes needed to craft `goal` from bases, goal first, then by falling tier (a topological order)."""
        seen: dict[str, Recipe] = {}
        stack = [goal]
        while stack:
            item = stack.pop()
            if item in self.recipes and item not in seen:
                seen[item] = self.recipes[item]
                stack.extend(name for name, _ in seen[item].inputs)
        return sorted(seen.values(), key=lambda r: (-r.tier, r.output))


def missing_items(recipes: Mapping[str, Recipe], goal: str, held: Mapping[str, int]) -> dict[str, int]:
    """How many of each item of the goal's tree are still missing once what is held is used, goal first.

    Walking the tree from the goal down, an item's shortfall turns into ceil(short / count) crafts of its recipe,
    whose inputs add to what the lower tiers must supply; inputs always sit in a lower tier, so one pass suffices.
    """
    tree = Catalogue(recipes).tree(goal)
    bases = sorted({item for r in tree for item, _ in r.inputs if item not in recipes})
    required: dict[str, int] = {goal: 1}
    missing: dict[str, int] = {}
    for item in [r.output for r in tree] + bases:
        short = max(0, required.get(item, 0) - held.get(item, 0))
        missing[item] = short
        if short and item in recipes:
            crafts = ceil(short / recipes[item].count)
            for name, n in recipes[item].inputs:
                required[name] = required.get(name, 0) + crafts * n
    return missing


def plan_rounds(recipes: Mapping[str, Recipe], goal: str, held: Mapping[str, int]) -> int:
    """The number of get/craft actions the expert still needs: gets of at most MAX_GET plus one per craft."""
    missing = missing_items(recipes, goal, held)
    return sum(ceil(short / (recipes[item].count if item in recipes else MAX_GET)) for item, short in missing.items())


def _draw_recipe(rng: random.Random, output: str, tier: int, by_tier: dict[int, list[str]]) -> Recipe:
    """One recipe for an item of `tier`: a key input from the tier below plus maybe one more from any lower tier."""
    key = rng.choice(by_tier[tier - 1])
    inputs = [key]
    if rng.random() < 0.5:
        extra = rng.choice([item for t in range(tier) for item in by_tier[t] if item != key])
        inputs.append(extra)
    amounts = [rng.randint(1, 3) if item in BASES else rng.randint(1, 2) for item in inputs]
    count = rng.randint(1, 4) if tier == 1 else rng.randint(1, 2)
    return Recipe(output, count, tuple(zip(inputs, amounts, strict=True)), tier)


@lru_cache(maxsize=8)
def build_catalogue(items_per_tier: int) -> Catalogue:
    """The fixed recipe set for a world size: `items_per_tier` crafted items in each of tiers 1..3.

    Drawn from a constant seed, so every episode (and every machine) sees the same world for the same size.
    """
    rng = random.Random(f"textcraft-catalogue:{items_per_tier}")
    by_tier: dict[int, list[str]] = {0: list(BASES)}
    recipes: dict[str, Recipe] = {}
    for tier in range(1, MAX_TIER + 1):
        names = sorted(f"{m} {f}" for m in MATERIALS for f in FORMS[tier])
        by_tier[tier] = rng.sample(names, items_per_tier)
        for output in by_tier[tier]:
            for _ in range(1000):
                recipe = _draw_recipe(rng, output, tier, by_tier)
                if plan_rounds({**recipes, output: recipe}, output, {}) <= MAX_PLAN_ROUNDS:
                    break
            else:  # pragma: no cover - the constants above make this unreachable
                raise RuntimeError(f"no recipe for {output!r} fits {MAX_PLAN_ROUNDS} rounds")
            recipes[output] = recipe
    return Catalogue(recipes)


@dataclass(frozen=True)
class World:
    """One episode's world: the goal, the crafting commands shown (its tree and distractors, in shown order)."""

    goal: str
    shown: tuple[Recipe, ...]

    @property
    def recipes(self) -> dict[str, Recipe]:
        return {r.output: r for r in self.shown}

    @property
    def bases(self) -> list[str]:
        """The base items named in the shown commands: what `get` accepts."""
        return sorted({item for r in self.shown for item, _ in r.inputs if item in BASES})


def draw_world(rng: random.Random, catalogue: Catalogue, depth: int, distractors: int) -> World:
    """A goal of this tree depth, its recipes, and distractors that (where possible) share an input with the tree."""
    goal = rng.choice(sorted(item for item, r in catalogue.recipes.items() if r.tier == depth))
    tree = catalogue.tree(goal)
    in_tree = {r.output for r in tree}
    inputs = {item for r in tree for item, _ in r.inputs}
    others = sorted((r for r in catalogue.recipes.values() if r.output not in in_tree), key=lambda r: r.output)
    related = [r for r in others if any(item in inputs for item, _ in r.inputs)]
    extra = rng.sample(related, min(distractors, len(related)))
    unrelated = [r for r in others if r not in extra]
    extra += rng.sample(unrelated, min(distractors - len(extra), len(unrelated)))
    shown = tree + extra
    rng.shuffle(shown)
    return World(goal, tuple(shown))
