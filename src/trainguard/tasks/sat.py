"""Random k-SAT: find a satisfying assignment, or say UNSAT when (and only when) there is none.

`planted` formulas are 2-hidden (Achlioptas, Jia & Moore 2005): every clause is satisfied by a hidden assignment
and by its complement, so literal signs carry no hint of either (plain planting lets a majority vote of signs
recover the answer). `uniform` formulas are labelled by a CDCL solver from python-sat.
"""

import random
import re
from typing import Literal

from pydantic import Field, field_validator

from trainguard.tasks.answers import strip_thinking
from trainguard.tasks.base import TASKS, Instance, Score, Task, TaskConfig

Clause = tuple[int, ...]  # DIMACS literals: 3 is x3, -3 is not x3
ASSIGNMENT = re.compile(r"\bx(\d+)\s*[=:]\s*(true|false|1|0)\b", re.IGNORECASE)
UNSAT = re.compile(r"\bunsat(isfiable)?\b", re.IGNORECASE)


def as_range(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class SatConfig(TaskConfig):
    n_vars: int | tuple[int, int] = Field(
        (10, 20), description="Variables per formula: a number, or [low, high] drawn uniformly per instance."
    )
    k: int | tuple[int, int] = Field(3, description="Literals per clause (3–5 typical), or [low, high].")
    clause_ratio: float = Field(
        4.26, gt=0, le=30, description="Clauses per variable; 4.26 is the 3-SAT satisfiability threshold."
    )
    mode: Literal["planted", "uniform"] = Field(
        "planted", description="planted: always satisfiable; uniform: random signs, labelled by a SAT solver."
    )

    @field_validator("n_vars", "k")
    @classmethod
    def _ordered(cls, value: int | tuple[int, int]) -> int | tuple[int, int]:
        low, high = as_range(value)
        if not 1 <= low <= high:
            raise ValueError(f"need 1 <= low <= high, got {value}")
        return value


def satisfies(clauses: list[Clause], values: dict[int, bool]) -> int:
    """How many clauses `values` satisfies."""
    return sum(any(values[abs(lit)] == (lit > 0) for lit in clause) for clause in clauses)


def solve(clauses: list[Clause]) -> list[int] | None:
    """A model from python-sat's CaDiCaL, or None when the formula is unsatisfiable."""
    from pysat.solvers import Solver

    with Solver(name="cadical153", bootstrap_with=clauses) as solver:
        return solver.get_model() if solver.solve() else None


def parse_assignment(text: str) -> dict[int, bool]:
    """`x1=True, x2=0, …` → {1: True, 2: False}; a variable named twice keeps its last value."""
    return {int(var): val.lower() in ("true", "1") for var, val in ASSIGNMENT.findall(text)}


def majority_signs(n: int, clauses: list[list[int]]) -> dict[int, bool]:
    """Each variable set to the sign it appears with most: recovers plain planted assignments, not 2-hidden ones."""
    votes = dict.fromkeys(range(1, n + 1), 0)
    for clause in clauses:
        for lit in clause:
            votes[abs(lit)] += 1 if lit > 0 else -1
    return {v: votes[v] > 0 for v in votes}


def render(values: dict[int, bool]) -> str:
    return ", ".join(f"x{v}={values[v]}" for v in sorted(values))


@TASKS.register("sat")
class SatTask(Task):
    """Random k-SAT near the threshold, scored by checking every clause."""

    name = "sat"
    Config = SatConfig
    config: SatConfig

    def formula(self, id: int) -> tuple[int, list[Clause], dict[int, bool] | None]:
        rng = self.rng(id)
        n = rng.randint(*as_range(self.config.n_vars))
        k = min(rng.randint(*as_range(self.config.k)), n)
        m = max(1, round(self.config.clause_ratio * n))
        hidden = {v: rng.random() < 0.5 for v in range(1, n + 1)} if self.config.mode == "planted" else None
        clauses = [self.clause(rng, n, k, hidden) for _ in range(m)]
        return n, clauses, hidden

    @staticmethod
    def clause(rng: random.Random, n: int, k: int, hidden: dict[int, bool] | None) -> Clause:
        variables = rng.sample(range(1, n + 1), k)
        while True:
            lits = tuple(v if rng.random() < 0.5 else -v for v in variables)
            if hidden is None or k == 1:
                return lits
            agree = sum(hidden[abs(lit)] == (lit > 0) for lit in lits)
            if 0 < agree < k:  # satisfied by the hidden assignment and by its complement
                return lits

    def instance(self, id: int) -> Instance:
        n, clauses, hidden = self.formula(id)
        model = solve(clauses) if hidden is None else None
        if hidden is not None:
            reference = render(hidden)
        elif model is None:
            reference = "UNSAT"
        else:
            reference = render({abs(lit): lit > 0 for lit in model})
        text = " & ".join("(" + " | ".join(f"x{lit}" if lit > 0 else f"~x{-lit}" for lit in c) + ")" for c in clauses)
        prompt = (
            f"Assign True or False to x1..x{n} so that every clause holds (| is or, ~ is not), "
            f"or answer UNSAT if that is impossible.\n{text}\nAnswer: "
        )
        meta = {"n_vars": n, "clauses": [list(c) for c in clauses], "satisfiable": reference != "UNSAT"}
        return Instance(id=id, prompt=prompt, reference=reference, meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        answer = strip_thinking(response)
        n, clauses = instance.meta["n_vars"], [tuple(c) for c in instance.meta["clauses"]]
        values = parse_assignment(answer)
        if not values:
            claims_unsat = bool(UNSAT.search(answer))
            right = claims_unsat and not instance.meta["satisfiable"]
            return Score(float(right), {"answer": "UNSAT" if claims_unsat else "none"})
        missing = [v for v in range(1, n + 1) if v not in values]
        unknown = sorted(v for v in values if not 1 <= v <= n)
        if missing or unknown:
            return Score(0.0, {"answer": "assignment", "missing": missing, "unknown": unknown})
        held = satisfies(clauses, values)
        return Score(float(held == len(clauses)), {"answer": "assignment", "satisfied": held, "clauses": len(clauses)})

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        n = instance.meta["n_vars"]
        return {
            "all True": render(dict.fromkeys(range(1, n + 1), True)),
            "all False": render(dict.fromkeys(range(1, n + 1), False)),
            "random": render({v: rng.random() < 0.5 for v in range(1, n + 1)}),
            "majority sign": render(majority_signs(n, instance.meta["clauses"])),
            "UNSAT": "UNSAT",
        }

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """A near miss: the reference with one variable flipped where that breaks a clause, else UNSAT."""
        n = instance.meta["n_vars"]
        if not instance.meta["satisfiable"]:
            return render({v: rng.random() < 0.5 for v in range(1, n + 1)})
        values = parse_assignment(instance.reference)
        clauses = [tuple(c) for c in instance.meta["clauses"]]
        for var in rng.sample(range(1, n + 1), n):
            flipped = values | {var: not values[var]}
            if satisfies(clauses, flipped) < len(clauses):
                return render(flipped)
        return "UNSAT"
