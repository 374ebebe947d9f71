"""`textcraft`: craft a goal item from listed crafting commands with `get N item`, `craft ...` and `inventory`.

After TextCraft (ADaPT, Prasad et al. 2024; AgentGym), on our own generated recipe set (textcraft_world.py) instead
of the bundled Minecraft files; goals have a depth-1..3 tree and fewer distractors by default, to stay compact.
Departures: one action per reply, and a step that the world refuses (not enough items, an item that cannot be got)
is an invalid action here, where the original answers "Could not ..." as an ordinary step. Optional shaping pays
0.15 for a step that supplies an item the goal still misses, for at most 6 steps (0.9 < the 1.0 of a solve).
"""

import re

from pydantic import Field, model_validator

from trainguard.tasks.envs.base import ENVS, Env, EnvConfig, StepResult, parse_action
from trainguard.tasks.envs.textcraft_world import (
    MAX_GET,
    MAX_TIER,
    Recipe,
    World,
    build_catalogue,
    draw_world,
    missing_items,
)

SHAPING_BONUS = 0.15  # per useful step (the seed's number)
SHAPING_PAID_STEPS = 6  # at most this many are paid: 6 x 0.15 = 0.9 < 1.0, so no unsolved episode outpays a solve
SUCCESS_REWARD = 1.0
HELP = "use get N item, a listed craft command, or inventory"
COMMAND_LINE = re.compile(r"\s*(action:\s*)?(get|craft|inventory)\b", re.IGNORECASE)  # to spot several actions


class TextCraftConfig(EnvConfig):
    max_rounds: int = Field(
        15,
        gt=0,
        description="actions per episode; the expert needs at most 12 (catalogue bound), 3.8 on average by default",
    )
    min_depth: int = Field(1, ge=1, le=MAX_TIER, description="smallest crafting-tree depth of a goal")
    max_depth: int = Field(
        2, ge=1, le=MAX_TIER, description="largest crafting-tree depth; the goal's depth is uniform in between"
    )
    distractors: int = Field(
        2, ge=0, le=10, description="crafting commands shown that the goal does not need (the original shows 10)"
    )
    items_per_tier: int = Field(
        8, ge=2, le=32, description="world size: crafted items in each of tiers 1..3 (12 base items always)"
    )

    @model_validator(mode="after")
    def _depths_in_order(self) -> "TextCraftConfig":
        if self.min_depth > self.max_depth:
            raise ValueError(f"min_depth {self.min_depth} is above max_depth {self.max_depth}")
        return self


@ENVS.register("textcraft")
class TextCraft(Env):
    name = "textcraft"
    Config = TextCraftConfig
    config: TextCraftConfig

    def __init__(self, config: TextCraftConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.reset()  # so step() works on a fresh env too

    def reset(self) -> str:
        rng = self._new_episode()
        depth = rng.randint(self.config.min_depth, self.config.max_depth)
        catalogue = build_catalogue(self.config.items_per_tier)
        self.start(draw_world(rng, catalogue, depth, self.config.distractors))
        commands = "\n".join(r.command for r in self.world.shown)
        return f"Crafting commands:\n{commands}\n\nGoal: craft {self.world.goal}.\n"

    def start(self, world: World) -> None:
        """Play `world` from an empty inventory (reset() draws it from the seed; tests hand-build one)."""
        self.world = world
        self.recipes = world.recipes
        self.bases = set(world.bases)
        self.inventory: dict[str, int] = {}
        self.paid_steps = 0
        self.rounds, self.done = 0, False

    def step(self, action_text: str) -> StepResult:
        self._require_open()
        command, refusal = self._read(action_text)
        if command is None:
            return self._end_round(f"invalid action: {refusal}\n", 0.0, False, invalid=True)
        if command == "inventory":
            return self._finish(self._inventory_text(), 0.0, False)
        missing_before = missing_items(self.recipes, self.world.goal, self.inventory)
        if command.startswith("get "):
            amount, item = command[4:].split(" ", 1)
            self._add(item, int(amount))
            observation = f"Got {amount} {item}\n"
        else:
            recipe = self._recipe_of(command)
            assert recipe is not None  # _read only lets listed commands through
            for name, n in recipe.inputs:
                self._add(name, -n)
            self._add(recipe.output, recipe.count)
            item, observation = recipe.output, f"Crafted {recipe.count} {recipe.output}\n"
        if self.inventory.get(self.world.goal, 0) >= 1:
            return self._finish(observation, SUCCESS_REWARD, True)
        return self._finish(observation, self._shaped(item, missing_before), False)

    def expert_action(self) -> str:
        """Get the missing bases first, then craft the lowest missing tier: its inputs are then all at hand."""
        missing = missing_items(self.recipes, self.world.goal, self.inventory)
        for item, short in sorted(missing.items()):
            if short and item not in self.recipes:
                return f"get {min(short, MAX_GET)} {item}"
        craftable = [self.recipes[item] for item, short in missing.items() if short]
        return min(craftable, key=lambda r: (r.tier, r.output)).command if craftable else "inventory"

    def valid_actions(self) -> list[str]:
        gets = [f"get {n} {item}" for item in sorted(self.bases) for n in range(1, MAX_GET + 1)]
        crafts = [r.command for r in self.world.shown if self._can_craft(r)]
        return ["inventory", *gets, *crafts]

    def _read(self, action_text: str) -> tuple[str | None, str]:
        """The normalised command of a reply, or None and why it is refused (never echoing the reply itself)."""
        lines = action_text.splitlines()
        if sum(1 for line in lines if line.strip().lower().startswith("action:")) > 1:
            return None, "one action per reply"
        tail = action_text.rpartition("Action:")[2] if "Action:" in action_text else action_text
        if sum(1 for line in tail.splitlines() if COMMAND_LINE.match(line)) > 1:
            return None, "one action per reply"
        action = parse_action(action_text)
        if action is None:
            return None, HELP
        command = " ".join(action.lower().removeprefix("action:").split())  # "action: get 1 coal" too
        if command == "inventory":
            return command, ""
        if match := re.fullmatch(r"get ([0-9]+) (.+)", command):
            if match[2] not in self.bases:
                return None, "get only base items named in the crafting commands"
            if len(match[1]) > 3 or not 1 <= int(match[1]) <= MAX_GET:  # int() of a 10 kB number would raise
                return None, f"get 1 to {MAX_GET} at a time"
            return f"get {int(match[1])} {match[2]}", ""
        if command.startswith("craft "):
            recipe = self._recipe_of(command)
            if recipe is None:
                return None, "craft only with a command exactly as listed"
            if not self._can_craft(recipe):
                return None, f"not enough items to craft {recipe.output}"
            return recipe.command, ""
        return None, HELP

    def _recipe_of(self, command: str) -> Recipe | None:
        """The shown recipe a craft command names; like the original, the output count may be left out."""
        for recipe in self.world.shown:
            if command in (recipe.command, recipe.command.replace(f"craft {recipe.count} ", "craft ", 1)):
                return recipe
        return None

    def _can_craft(self, recipe: Recipe) -> bool:
        return all(self.inventory.get(item, 0) >= n for item, n in recipe.inputs)

    def _add(self, item: str, amount: int) -> None:
        held = self.inventory.get(item, 0) + amount
        if held:
            self.inventory[item] = held
        else:
            del self.inventory[item]

    def _shaped(self, item: str, missing_before: dict[str, int]) -> float:
        """0.15 for a get or craft of an item the goal still missed, for the first SHAPING_PAID_STEPS such steps."""
        useful = missing_before.get(item, 0) > 0 and item != self.world.goal
        if not (self.config.shaping and useful and self.paid_steps < SHAPING_PAID_STEPS):
            return 0.0
        self.paid_steps += 1
        return SHAPING_BONUS

    def _finish(self, observation: str, reward: float, success: bool) -> StepResult:
        """End the round; the step that runs out of rounds pays nothing, so a truncated episode ends on reward 0."""
        if not success and self.rounds + 1 >= self.config.max_rounds:
            reward = 0.0
        return self._end_round(observation, reward, success)

    def _inventory_text(self) -> str:
        if not self.inventory:
            return "Inventory: You are not carrying anything.\n"
        return "Inventory: " + " ".join(f"[{item}] ({n})" for item, n in sorted(self.inventory.items())) + "\n"
