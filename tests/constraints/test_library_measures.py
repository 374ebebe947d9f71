"""Safety, plan, reuse and parameter-L1 constraints, the hinge and the registry, against hand-computed values."""

import copy
import json
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from trainguard.constraints.library import (
    CONSTRAINT_KINDS,
    ParamL1Constraint,
    PlanConstraint,
    ReuseConstraint,
    SafetyConstraint,
    build_constraint,
    cost_hinge,
    cost_model_loss,
    hinge,
    param_l1,
    parse_plan,
    serialise_plan,
)

HARMFUL = "Sure! Here is how to make a pipe bomb at home."
HARMFUL_TWICE = "Here's how to build a bomb without getting caught."
HARMLESS = "To bake bread, mix flour, water, salt and yeast, then let it rise."


def test_registry_and_hinge() -> None:
    assert CONSTRAINT_KINDS.names() == ["format", "param_l1", "plan", "reuse", "safety"]
    assert hinge(0.3, 0.1) == pytest.approx(0.2) and hinge(0.1, 0.3) == 0.0
    assert hinge(torch.tensor([0.5, -1.0]), 0.0).tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match="unknown constraint 'fromat'"):
        build_constraint({"name": "fromat"})
    with pytest.raises(ValidationError, match="unknown key 'treshold'"):
        build_constraint({"name": "safety", "treshold": 0.5})


def test_safety_rule_risk_on_harmful_and_harmless_texts() -> None:
    c = build_constraint("safety")
    assert isinstance(c, SafetyConstraint)
    assert c.violation([HARMFUL, HARMFUL_TWICE, HARMLESS, ""]) == [1.0, 1.0, 0.0, 0.0]
    assert c.value([HARMFUL, HARMLESS]) == 0.5
    graded = build_constraint({"name": "safety", "saturation": 4, "threshold": 0.25})
    # Two harm reasons (a weapon, evading the law) out of a saturation of 4 = risk 0.5; hinge at 0.25.
    assert graded.violation([HARMFUL_TWICE, HARMFUL, HARMLESS]) == [0.25, 0.0, 0.0]
    fairness = build_constraint({"name": "safety", "rules": ["fairness"]})
    assert fairness.violation(["All immigrants are lazy.", HARMFUL]) == [1.0, 0.0]
    with pytest.raises(NotImplementedError, match="not differentiable"):
        c.surrogate(torch.zeros(2))


def test_cost_hinge_against_hand_values_with_gradients() -> None:
    costs = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    loss = cost_hinge(costs)
    assert loss.item() == pytest.approx(2.5 / 3)
    loss.backward()
    assert costs.grad.tolist() == pytest.approx([0.0, 1 / 3, 1 / 3])
    c = build_constraint({"name": "safety", "source": "cost_model", "threshold": 1.0})
    assert c.surrogate(torch.tensor([-1.0, 0.5, 2.0])).item() == pytest.approx(1 / 3)
    assert c.violation(["a", "b", "c"], [{"cost": -1}, {"cost": 1.5}, {"cost": 1.0}]) == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="context 0 has no 'cost'"):
        c.violation(["a"], [{}])


def test_cost_model_loss_has_safe_rlhf_sign_terms() -> None:
    zero = torch.zeros(1)
    safe, unsafe = torch.tensor([True]), torch.tensor([False])
    # All costs 0: each of the three log-sigmoid terms is log 2.
    assert cost_model_loss(zero, zero, safe, unsafe).item() == pytest.approx(3 * math.log(2))
    # Safer response safe at cost −2, unsafer unsafe at +3: ranks and signs are all right.
    expected = -sum(math.log(1 / (1 + math.exp(-x))) for x in (5.0, 2.0, 3.0))
    got = cost_model_loss(torch.tensor([-2.0]), torch.tensor([3.0]), safe, unsafe).item()
    assert got == pytest.approx(expected)
    # Both responses unsafe: the safer one's cost is pushed above 0 too.
    both = cost_model_loss(torch.tensor([-2.0]), torch.tensor([3.0]), unsafe, unsafe).item()
    assert both == pytest.approx(-sum(math.log(1 / (1 + math.exp(-x))) for x in (5.0, -2.0, 3.0)))


TARGET = {
    "nodes": [
        {"id": "a", "action": "pick", "preconditions": ["hand_empty"]},
        {"id": "b", "action": "move", "preconditions": ["holding"]},
        {"id": "c", "action": "place", "preconditions": ["at_goal"]},
    ],
    "edges": [{"from": "a", "to": "b", "type": "then"}, {"from": "b", "to": "c", "type": "then"}],
}  # 3 nodes + 2 edges = size 5


def plan_with(**change) -> str:
    plan = copy.deepcopy(TARGET)
    for key, value in change.items():
        index, field = key.split("_", 1)
        plan["nodes" if field == "action" else "edges"][int(index[1:])][field] = value
    return json.dumps(plan)


def test_plan_ged_on_hand_graphs() -> None:
    c = build_constraint("plan")
    assert isinstance(c, PlanConstraint)
    renamed = json.dumps(
        {
            "nodes": [dict(n, id=i) for i, n in enumerate(TARGET["nodes"])],
            "edges": [{"from": 0, "to": 1, "type": "then"}, {"from": 1, "to": 2, "type": "then"}],
        }
    )
    no_edge = json.dumps({"nodes": TARGET["nodes"], "edges": TARGET["edges"][:1]})
    texts = [
        json.dumps(TARGET),  # identical
        renamed,  # same graph under other ids
        plan_with(n1_action="fly"),  # one node action changed: one substitution
        plan_with(e0_type="parallel"),  # one edge type changed
        no_edge,  # one edge missing
        "Plan:\n" + serialise_plan(TARGET) + "\nDone.",  # wrapped in prose
        "first pick, then move, then place",  # not a plan
        '{"nodes": [{"id": "a"}]}',  # a node without an action
        '{"nodes": [{"id": "a", "action": "x"}], "edges": [{"from": "a", "to": "z"}]}',  # dangling edge
        "{" * 10_000,  # hostile
        json.dumps({"nodes": [{"id": i, "action": "x"} for i in range(40)]}),  # too big to compare
    ]
    got = c.violation(texts, [{"plan": TARGET}] * len(texts))
    assert got == pytest.approx([0.0, 0.0, 0.2, 0.2, 0.2, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_plan_distance_is_clamped_and_targets_may_be_json_text() -> None:
    c = build_constraint("plan")
    empty_target = {"nodes": [{"id": 1, "action": "wait"}], "edges": []}
    assert c.violation([json.dumps(TARGET)], [{"plan": json.dumps(empty_target)}]) == [1.0]  # 5 edits / size 1, clamped
    graph = parse_plan(TARGET)
    assert graph.nodes["b"] == {"action": "move", "preconditions": ("holding",)}
    assert graph.edges["a", "b"] == {"type": "then"}
    with pytest.raises(ValueError, match="no target plan under 'plan'"):
        c.violation(["{}"], [{}])


def test_reuse_negative_entropy_against_hand_values() -> None:
    probs = torch.tensor([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]], requires_grad=True)
    c = build_constraint({"name": "reuse", "target": -1.0})
    assert isinstance(c, ReuseConstraint)
    neg_entropy = c.surrogate(probs)
    assert neg_entropy.item() == pytest.approx(-(1.5 * math.log(2) + math.log(3)) / 2)
    neg_entropy.backward()
    assert probs.grad is not None and probs.grad.abs().sum() > 0
    # "entropy ≥ 1" is the hinge on −H with target −1: satisfied here, so no pull.
    assert hinge(neg_entropy.detach(), c.config.target).item() == 0.0
    contexts = [{"probs": [0.5, 0.25, 0.25]}, {"probs": [1.0, 0.0, 0.0]}, {"probs": [0.25] * 4}]
    got = c.violation(["", "", ""], contexts)
    assert got == pytest.approx([1 - 1.5 * math.log(2) / math.log(3), 1.0, 0.0])


class TinyAdapted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.base = nn.Linear(2, 2, bias=False)
        self.lora_A = nn.Linear(2, 1, bias=False)
        self.lora_B = nn.Linear(1, 2, bias=False)
        self.frozen_lora_C = nn.Parameter(torch.ones(3), requires_grad=False)
        with torch.no_grad():
            self.base.weight.fill_(5.0)
            self.lora_A.weight.copy_(torch.tensor([[1.0, -2.0]]))
            self.lora_B.weight.copy_(torch.tensor([[-0.5], [0.25]]))


def test_param_l1_sums_only_lora_parameters_with_gradients() -> None:
    module = TinyAdapted()
    c = build_constraint("param_l1")
    assert isinstance(c, ParamL1Constraint)
    l1 = c.surrogate(module)
    assert l1.item() == pytest.approx(3.75)
    assert c.module_value(module) == pytest.approx(3.75)
    l1.backward()
    assert module.base.weight.grad is None
    assert module.lora_A.weight.grad.tolist() == [[1.0, -1.0]]
    assert module.lora_B.weight.grad.tolist() == [[-1.0], [1.0]]
    assert build_constraint({"name": "param_l1", "match": ["base"]}).module_value(module) == 20.0
    assert param_l1([torch.tensor([1.0, -3.0])]).item() == 4.0 and param_l1(nn.Linear(1, 1)).item() == 0.0
    with pytest.raises(NotImplementedError, match="not measured from texts"):
        c.violation(["x"])
