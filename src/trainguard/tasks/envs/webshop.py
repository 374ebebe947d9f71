"""`webshop`: WebShop-lite, shop for the product an instruction describes: search, page through results, open an
item, click its options, buy; scored with WebShop's reward (attributes, options, price, times a type match).

Departures from Yao et al. 2022: a generated catalogue (webshop_world.py) instead of the scraped one; compact pages
(the instruction only on the search page, the title carrying the attributes instead of Description/Features/Reviews
sub-pages); three results per page instead of ten. Success is a purchase that scores 1.0.
"""

import re

from pydantic import Field, model_validator

from trainguard.tasks.envs.base import ENVS, Env, EnvConfig, StepResult, parse_action
from trainguard.tasks.envs.webshop_world import (
    PRODUCT_TYPES,
    Goal,
    Product,
    build_world,
    draw_goal,
    purchase_reward,
    type_reward,
)

SEARCH_BONUS = 0.1  # shaping: the first search of an episode
CLICK_BONUS = 0.3  # shaping: the first item page opened of a product of the wanted type (r_type 1)
MAX_ACTION_CHARS = 200  # longer replies are refused before any matching (a query longer than this is no query)

ACTION = re.compile(r"(search|click)\[([^\[\]]+)\]")
ACTION_START = re.compile(r"(?:search|click)\[", re.IGNORECASE)
BACK, PREV, NEXT, BUY = "back to search", "< prev", "next >", "buy now"
LABELS = {BACK: "Back to Search", PREV: "< Prev", NEXT: "Next >", BUY: "Buy Now"}


class WebShopConfig(EnvConfig):
    max_rounds: int = Field(10, gt=0, description="actions per episode; the expert needs 4-6 at the defaults")
    n_products: int = Field(300, ge=1, le=1000, description="catalogue size (a few hundred, as the issue asks)")
    n_types: int = Field(
        4, ge=1, le=len(PRODUCT_TYPES), description="product types in the catalogue, from t-shirt, coffee mug, ..."
    )
    goal_attributes: int = Field(1, ge=0, le=2, description="attributes the instruction asks for (|U_att|)")
    goal_options: int = Field(1, ge=0, le=2, description="option values the instruction asks for (|U_opt|)")
    results_per_page: int = Field(3, ge=1, le=10, description="results shown per page (WebShop: 10)")
    max_results: int = Field(9, ge=1, le=50, description="results a search returns in all (WebShop: 50)")
    catalogue_seed: int = Field(0, description="seed of the generated catalogue; the episode seed draws the goal")

    @model_validator(mode="after")
    def _enough_products(self) -> "WebShopConfig":
        if self.n_products < self.n_types:
            raise ValueError(f"n_products ({self.n_products}) must be at least n_types ({self.n_types})")
        return self


def _button(label: str, clicked: bool = False) -> str:
    tag = "clicked button" if clicked else "button"
    return f"[{tag}] {label} [{tag}_]"


@ENVS.register("webshop")
class WebShop(Env):
    name = "webshop"
    Config = WebShopConfig
    config: WebShopConfig

    def __init__(self, config: WebShopConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.world = build_world(config.catalogue_seed, config.n_products, config.n_types)
        self.reset()

    def reset(self) -> str:
        rng = self._new_episode()
        c = self.config
        self.goal: Goal = draw_goal(rng, self.world.products, c.goal_attributes, c.goal_options)
        self.page = "search"  # "search" | "results" | "item"
        self.results: list[int] = []  # catalogue indices of the last search, best first
        self.page_no = 0
        self.item: Product | None = None
        self.selected: dict[str, str] = {}  # axis -> clicked value on the open item (cleared on opening another)
        self.searches = 0
        self.rewarded_click = False
        # Purchases that earn 1.0 (wanted type, attributes, price, the goal's option values on offer): the expert's map.
        self.perfect = {
            i
            for i, p in enumerate(self.world.products)
            if all(p.axis_of(v) == axis for axis, v in self.goal.options)
            and purchase_reward(self.goal, p, dict(self.goal.options)) == 1.0
        }
        return self._render()

    # ---- pages -------------------------------------------------------------------------------------------------

    def _clickables(self) -> list[str]:
        """The buttons of the current page in lower case (how they are clicked), in the order shown."""
        if self.page == "results":
            first = self.page_no * self.config.results_per_page
            shown = self.results[first : first + self.config.results_per_page]
            more = first + self.config.results_per_page < len(self.results)
            return [
                BACK,
                *([PREV] if self.page_no else []),
                *([NEXT] if more else []),
                *(self.world.products[i].asin for i in shown),
            ]
        if self.page == "item" and self.item is not None:
            return [BACK, PREV, *(v for _, values in self.item.options for v in values), BUY]
        return []

    def _render(self) -> str:
        if self.page == "search":
            return f"Instruction: {self.goal.instruction}\n{_button('Search')}\n"
        if self.page == "results":
            lines = [_button(LABELS[BACK]), f"Page {self.page_no + 1} (Total results: {len(self.results)})"]
            for click in self._clickables()[1:]:
                if click in LABELS:
                    lines.append(_button(LABELS[click]))
                else:
                    product = self.world.products[self.world.by_asin[click]]
                    lines.append(f"{_button(click)} {product.title} ${product.price:.2f}")
            return "\n".join(lines) + "\n"
        assert self.item is not None
        lines = [_button(LABELS[BACK]), _button(LABELS[PREV])]
        for axis, values in self.item.options:
            buttons = " ".join(_button(v, self.selected.get(axis) == v) for v in values)
            lines.append(f"{axis}: {buttons}")
        lines += [self.item.title, f"Price: ${self.item.price:.2f}", _button(LABELS[BUY])]
        return "\n".join(lines) + "\n"

    # ---- acting ------------------------------------------------------------------------------------------------

    def _parse(self, text: str) -> tuple[str, str] | None:
        """(verb, argument) of a well-formed reply that is valid on this page, else None (never raises)."""
        action = parse_action(text)
        if action is None or len(action) > MAX_ACTION_CHARS or not (action.isascii() and action.isprintable()):
            return None
        if len(ACTION_START.findall(text.rpartition("Action:")[2])) > 1:
            return None  # several actions in one reply: refuse rather than guess which was meant
        match = ACTION.fullmatch(action.lower())
        if match is None:
            return None
        verb, argument = match[1], " ".join(match[2].split())
        if verb == "search":
            return (verb, argument) if self.page == "search" and argument else None
        return (verb, argument) if argument in self._clickables() else None

    def step(self, action_text: str) -> StepResult:
        self._require_open()
        parsed = self._parse(action_text)
        if parsed is None:
            hint = "search[your query]" if self.page == "search" else "click[a button on this page]"
            return self._finish(f"invalid action: reply {hint}\n", 0.0, invalid=True)
        verb, argument = parsed
        shaped = 0.0
        if verb == "search":
            shaped = SEARCH_BONUS if self.searches == 0 else 0.0
            self.searches += 1
            self.results = self.world.index.rank(argument, self.config.max_results)
            self.page, self.page_no = "results", 0
        elif argument == BACK:
            self.page = "search"
        elif argument == BUY:
            return self._buy()
        elif self.page == "item":
            if argument == PREV:
                self.page = "results"
            else:
                assert self.item is not None
                self.selected[self.item.axis_of(argument) or ""] = argument
        elif argument in (PREV, NEXT):
            self.page_no += 1 if argument == NEXT else -1
        else:  # a product id on the results page
            self.item = self.world.products[self.world.by_asin[argument]]
            self.page, self.selected = "item", {}
            if not self.rewarded_click and type_reward(self.goal.kind, self.item.kind) == 1.0:
                shaped, self.rewarded_click = CLICK_BONUS, True
        return self._finish(self._render(), shaped if self.config.shaping else 0.0)

    def _finish(self, observation: str, reward: float, invalid: bool = False) -> StepResult:
        """Count the round; the round that hits max_rounds ends the episode with reward 0 (no shaping either)."""
        result = self._end_round(observation, reward, False, invalid)
        if result.info["truncated"]:
            result.reward = 0.0
        return result

    def _buy(self) -> StepResult:
        """Buying ends the episode with WebShop's reward, whatever round it is; only 1.0 counts as success."""
        assert self.item is not None
        reward = purchase_reward(self.goal, self.item, self.selected)
        observation = f"Thank you for shopping with us!\nYour score (min 0.0, max 1.0): {reward:.2f}\n"
        result = self._end_round(observation, reward, reward == 1.0)
        result.done, self.done = True, True
        result.info.update(truncated=False, purchase_reward=reward, asin=self.item.asin)
        return result

    # ---- expert and baseline -----------------------------------------------------------------------------------

    def expert_action(self) -> str:
        """Search the instruction (the target's title if that found nothing perfect), page to the first perfect
        result, open it, click the asked option values, buy."""
        if self.page == "search":
            if self.searches == 0:
                return f"search[{self.goal.instruction}]"
            return f"search[{self.world.products[self.world.by_asin[self.goal.target]].title}]"
        if self.page == "results":
            ranks = [k for k, i in enumerate(self.results) if i in self.perfect]
            if not ranks:
                return f"click[{BACK}]"
            page = ranks[0] // self.config.results_per_page
            if page != self.page_no:
                return f"click[{NEXT if page > self.page_no else PREV}]"
            return f"click[{self.world.products[self.results[ranks[0]]].asin}]"
        assert self.item is not None
        if self.world.by_asin[self.item.asin] not in self.perfect:
            return f"click[{PREV}]"
        missing = [value for axis, value in self.goal.options if self.selected.get(axis) != value]
        return f"click[{missing[0] if missing else BUY}]"

    def valid_actions(self) -> list[str]:
        """The page's buttons; on the search page the one search offered is the instruction itself (WebShop's
        rule baseline), since free text has no finite list."""
        if self.page == "search":
            return [f"search[{self.goal.instruction}]"]
        return [f"click[{c}]" for c in self._clickables()]
