"""The constraint library: measured violations and differentiable surrogates for format (JSON, regex, grammar),
safety (rules or a cost model), plan fidelity (graph edit distance), skill reuse (entropy) and adapter L1.
Importing this package registers every kind in `CONSTRAINT_KINDS`."""

from trainguard.constraints.library.base import (
    CONSTRAINT_KINDS,
    Constraint,
    ConstraintConfig,
    build_constraint,
    hinge,
    structure_nll,
)
from trainguard.constraints.library.format import FormatConfig, FormatConstraint, complies_json
from trainguard.constraints.library.grammar import Grammar, GrammarError, load_grammar, parse_grammar, recognises
from trainguard.constraints.library.plan import (
    PlanConfig,
    PlanConstraint,
    PlanError,
    parse_plan,
    plan_distance,
    serialise_plan,
)
from trainguard.constraints.library.reuse import (
    ParamL1Config,
    ParamL1Constraint,
    ReuseConfig,
    ReuseConstraint,
    param_l1,
    selection_entropy,
)
from trainguard.constraints.library.safety import (
    SafetyConfig,
    SafetyConstraint,
    cost_hinge,
    cost_model_loss,
    rule_risk,
)

__all__ = [
    "CONSTRAINT_KINDS",
    "Constraint",
    "ConstraintConfig",
    "FormatConfig",
    "FormatConstraint",
    "Grammar",
    "GrammarError",
    "ParamL1Config",
    "ParamL1Constraint",
    "PlanConfig",
    "PlanConstraint",
    "PlanError",
    "ReuseConfig",
    "ReuseConstraint",
    "SafetyConfig",
    "SafetyConstraint",
    "build_constraint",
    "complies_json",
    "cost_hinge",
    "cost_model_loss",
    "hinge",
    "load_grammar",
    "param_l1",
    "parse_grammar",
    "parse_plan",
    "plan_distance",
    "recognises",
    "rule_risk",
    "selection_entropy",
    "serialise_plan",
    "structure_nll",
]
