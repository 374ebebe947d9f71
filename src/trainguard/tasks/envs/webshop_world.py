"""The WebShop-lite world: a generated catalogue, a BM25 search index and WebShop's purchase reward.

Departures from Yao et al. 2022 ("WebShop"): products are generated from a seed instead of scraped from Amazon;
attribute and option matches are exact instead of fuzzy; r_type applies WebShop's rules (query, category and
title-noun matches) to noun lists declared per product type instead of spaCy noun parses of the titles.
"""

import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class ProductType:
    name: str  # "t-shirt": also the search query WebShop scraped the product with (its "query" field)
    category: tuple[str, ...]  # "clothing › tops › t-shirts", split into levels
    nouns: tuple[str, ...]  # the title's nouns, what WebShop's spaCy parse would keep
    attributes: tuple[str, ...]  # the pool a product draws 2-3 attributes from
    options: tuple[tuple[str, tuple[str, ...]], ...]  # (axis, values); values are unique within a type
    price_range: tuple[int, int]  # whole dollars


_COLORS = ("black", "white", "navy", "red", "grey")
_SIZES = ("small", "medium", "large", "x-large")
_CUPS = ("12 oz", "16 oz", "20 oz")

# Ordered so that the first four already hold both kinds of near miss: t-shirt/hoodie share a category but no noun
# (r_type 0), coffee mug/travel mug share a category and a noun (r_type 1, as lenient as WebShop).
PRODUCT_TYPES: tuple[ProductType, ...] = (
    ProductType(
        "t-shirt",
        ("clothing", "tops", "t-shirts"),
        ("t-shirt",),
        ("cotton", "slim fit", "long sleeve", "v-neck", "machine washable", "organic"),
        (("color", _COLORS), ("size", _SIZES)),
        (8, 30),
    ),
    ProductType(
        "coffee mug",
        ("home", "kitchen", "mugs"),
        ("coffee", "mug"),
        ("ceramic", "microwave safe", "dishwasher safe", "insulated", "handmade", "matte"),
        (("color", _COLORS), ("capacity", _CUPS)),
        (6, 25),
    ),
    ProductType(
        "hoodie",
        ("clothing", "tops", "hoodies"),
        ("hoodie",),
        ("fleece", "zip", "pullover", "cotton", "machine washable", "oversized"),
        (("color", _COLORS), ("size", _SIZES)),
        (20, 60),
    ),
    ProductType(
        "travel mug",
        ("home", "kitchen", "mugs"),
        ("travel", "mug"),
        ("stainless steel", "leak proof", "insulated", "dishwasher safe", "bpa free", "handle"),
        (("color", _COLORS), ("capacity", _CUPS)),
        (10, 35),
    ),
    ProductType(
        "running shoes",
        ("clothing", "shoes", "running"),
        ("shoes",),
        ("lightweight", "breathable", "non-slip", "memory foam", "waterproof", "wide"),
        (("color", _COLORS), ("size", ("7", "8", "9", "10", "11"))),
        (30, 120),
    ),
    ProductType(
        "water bottle",
        ("home", "kitchen", "bottles"),
        ("water", "bottle"),
        ("stainless steel", "bpa free", "leak proof", "insulated", "wide mouth", "straw lid"),
        (("color", _COLORS), ("capacity", ("500 ml", "750 ml", "1 l"))),
        (8, 40),
    ),
    ProductType(
        "jewelry box",
        ("home", "storage", "boxes"),
        ("jewelry", "box"),
        ("wooden", "velvet lined", "mirror", "lock", "3 tier", "travel size"),
        (("color", _COLORS), ("size", ("small", "medium", "large"))),
        (15, 60),
    ),
    ProductType(
        "phone case",
        ("electronics", "accessories", "cases"),
        ("phone", "case"),
        ("shockproof", "slim", "clear", "wallet", "magnetic", "kickstand"),
        (("color", _COLORS), ("model", ("model a", "model b", "model c"))),
        (5, 30),
    ),
)

BRANDS = ("orla", "kato", "brio", "vela", "nord", "zeno", "lumi", "tavi")


@dataclass(frozen=True)
class Product:
    asin: str  # "p042": the id shown on result pages and clicked, like WebShop's ASINs
    kind: ProductType
    title: str
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]  # (axis, values on offer)
    price: float

    def axis_of(self, value: str) -> str | None:
        """The option axis a clickable value belongs to on this product's page, None if it is not offered."""
        return next((axis for axis, values in self.options if value in values), None)


@dataclass(frozen=True)
class Goal:
    kind: ProductType  # the type of the product the goal was drawn from
    attributes: tuple[str, ...]  # U_att
    options: tuple[tuple[str, str], ...]  # U_opt as (axis, value)
    price_upper: float  # u_price
    target: str  # asin of the product the goal was drawn from: one purchase that earns 1.0
    instruction: str


TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-case words, keeping hyphenated ones whole ("t-shirt", "x-large") so they stay distinct terms."""
    return TOKEN.findall(text.lower())


class Bm25Index:
    """Okapi BM25 with Lucene's never-negative idf; k1=0.9, b=0.4 are the defaults of Pyserini, WebShop's engine."""

    def __init__(self, documents: Sequence[str], k1: float = 0.9, b: float = 0.4) -> None:
        self.k1, self.b = k1, b
        self.counts = [Counter(tokenize(d)) for d in documents]
        self.lengths = [sum(c.values()) for c in self.counts]
        self.avgdl = sum(self.lengths) / max(len(self.lengths), 1)
        n = len(self.counts)
        df = Counter(t for c in self.counts for t in c)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def score(self, query: str, doc: int) -> float:
        """Σ over distinct query terms of idf · tf·(k1+1) / (tf + k1·(1 − b + b·|D|/avgdl)); unknown terms add 0."""
        counts, norm = self.counts[doc], self.k1 * (1 - self.b + self.b * self.lengths[doc] / self.avgdl)
        total = 0.0
        for term in dict.fromkeys(tokenize(query)):
            tf = counts.get(term, 0)
            if tf:
                total += self.idf[term] * tf * (self.k1 + 1) / (tf + norm)
        return total

    def rank(self, query: str, limit: int) -> list[int]:
        """The best `limit` documents with a positive score, ties broken by catalogue order (deterministic)."""
        scored = [(-s, i) for i in range(len(self.counts)) if (s := self.score(query, i)) > 0]
        return [i for _, i in sorted(scored)[:limit]]


@dataclass(frozen=True)
class World:
    products: tuple[Product, ...]
    index: Bm25Index
    by_asin: dict[str, int]


def generate_catalogue(seed: int, n_products: int, n_types: int) -> tuple[Product, ...]:
    """`n_products` products spread evenly over the first `n_types` types, each with 2-3 attributes, 2 or more
    values on every option axis (never all of them) and a price in the type's range; the same for the same seed."""
    rng = random.Random(f"webshop-catalogue:{seed}")
    kinds = PRODUCT_TYPES[:n_types]
    numbers = rng.sample(range(1000), n_products)  # ids that do not give away the generation order
    products = []
    for i, number in enumerate(numbers):
        kind = kinds[i % n_types]
        chosen = set(rng.sample(kind.attributes, rng.randint(2, 3)))
        attributes = tuple(a for a in kind.attributes if a in chosen)  # declared order, so titles read the same
        options = []
        for axis, values in kind.options:
            offered = set(rng.sample(values, rng.randint(2, len(values) - 1)))
            options.append((axis, tuple(v for v in values if v in offered)))
        lo, hi = kind.price_range
        price = rng.randint(lo * 100, hi * 100) / 100
        title = f"{rng.choice(BRANDS)} {' '.join(attributes)} {kind.name}"
        products.append(Product(f"p{number:03d}", kind, title, attributes, tuple(options), price))
    return tuple(products)


@lru_cache(maxsize=8)
def build_world(seed: int, n_products: int, n_types: int) -> World:
    """The catalogue and its index, built once per setting (envs of many seeds share it)."""
    products = generate_catalogue(seed, n_products, n_types)
    documents = [f"{p.title} {' '.join(v for _, values in p.options for v in values)}" for p in products]
    return World(products, Bm25Index(documents), {p.asin: i for i, p in enumerate(products)})


def draw_goal(rng: random.Random, products: Sequence[Product], n_attributes: int, n_options: int) -> Goal:
    """A goal drawn from one product, as WebShop's were: some of its attributes, one offered value on some of its
    option axes, and a price bound (a multiple of 10) 5-50% above its price."""
    target = rng.choice(products)
    chosen = set(rng.sample(target.attributes, min(n_attributes, len(target.attributes))))
    attributes = tuple(a for a in target.attributes if a in chosen)
    axes = sorted(rng.sample(range(len(target.options)), min(n_options, len(target.options))))
    options = tuple((target.options[k][0], rng.choice(target.options[k][1])) for k in axes)
    price_upper = float(math.ceil(target.price * rng.uniform(1.05, 1.5) / 10) * 10)
    wanted = " ".join((*attributes, target.kind.name))
    asks = "".join(f", {axis} {value}" for axis, value in options)
    instruction = f"i need a {wanted}{asks}, and price lower than {price_upper:.2f} dollars"
    return Goal(target.kind, attributes, options, price_upper, target.asin, instruction)


def type_reward(wanted: ProductType, bought: ProductType) -> float:
    """WebShop's r_type: 1 when the query, two category levels or over 20% of the title nouns match, else 0.5;
    then 0.1 below 10% of the nouns and 0 with none (so a wrong noun costs everything despite a shared category)."""
    query_match = wanted.name == bought.name
    category_match = len(set(wanted.category) & set(bought.category)) >= 2
    title_score = len(set(wanted.nouns) & set(bought.nouns)) / len(wanted.nouns) if wanted.nouns else 0.2
    r_type = 1.0 if query_match or category_match or title_score > 0.2 else 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type


def purchase_reward(goal: Goal, product: Product, selected: dict[str, str]) -> float:
    """r = r_type · (|U_att ∩ Y_att| + |U_opt ∩ Y_opt| + 1[y_price ≤ u_price]) / (|U_att| + |U_opt| + 1), where
    Y_opt are the option values clicked before buying (as in WebShop, an option never clicked does not match)."""
    attribute_matches = len(set(goal.attributes) & set(product.attributes))
    option_matches = len({value for _, value in goal.options} & set(selected.values()))
    price_ok = int(product.price <= goal.price_upper)
    return type_reward(goal.kind, product.kind) * (
        (attribute_matches + option_matches + price_ok) / (len(goal.attributes) + len(goal.options) + 1)
    )
