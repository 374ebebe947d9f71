"""Plan fidelity: graph edit distance between a predicted plan graph and the target plan, normalised by the
target's size (nodes + edges) and clamped to [0, 1]; a prediction that does not parse as a plan scores 1.

A plan is `{"nodes": [{"id", "action", "preconditions": [...]}], "edges": [{"from", "to", "type"}]}`. Nodes
match on `action` and edges on `type`; preconditions are kept on the graph but not compared (a design choice:
they restate the edges). Exact GED is exponential, so plans are capped in size and the search in time.
"""

import json
from collections.abc import Mapping
from typing import Any, Literal

import networkx as nx
import torch
from pydantic import Field

from trainguard.constraints.library.base import (
    CONSTRAINT_KINDS,
    Constraint,
    ConstraintConfig,
    check_contexts,
    structure_nll,
)
from trainguard.constraints.library.format import json_depth


class PlanError(ValueError):
    """Text or data that is not a plan."""


class PlanConfig(ConstraintConfig):
    name: Literal["plan"] = Field("plan", description="Constraint kind: graph edit distance to a target plan.")
    target_key: str = Field("plan", description="The context key holding each sample's target plan (mapping or JSON).")
    timeout_s: float = Field(
        1.0, gt=0, description="Longest GED search per sample; the best distance found by then is used."
    )
    max_nodes: int = Field(32, gt=0, description="Predicted plans with more nodes count as violations (GED blows up).")
    max_chars: int = Field(20_000, gt=0, description="Longer predictions count as violations and are never parsed.")


def _load_plan_json(text: str) -> Any:
    """The JSON object in `text`: the whole text, or the span from its first `{` to its last `}` (a model may
    wrap the plan in prose)."""
    for candidate in (text, text[text.find("{") : text.rfind("}") + 1]):
        if candidate and json_depth(candidate) <= 8:  # a plan is 4 levels deep; deeper is not a plan
            try:
                return json.loads(candidate)
            except ValueError:
                pass
    raise PlanError("no JSON object found")


def _node_id(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PlanError(f"node id {value!r} is not a string or integer")
    return value


def parse_plan(plan: str | Mapping[str, Any], max_nodes: int = 32) -> nx.DiGraph:
    """A DiGraph with node attributes action/preconditions and edge attribute type; PlanError when malformed."""
    data = _load_plan_json(plan) if isinstance(plan, str) else plan
    if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list):
        raise PlanError("a plan is an object with a list of nodes")
    nodes, edges = data["nodes"], data.get("edges", [])
    if len(nodes) > max_nodes or not isinstance(edges, list) or len(edges) > max_nodes * max_nodes:
        raise PlanError(f"more than {max_nodes} nodes, or edges that are not a list")
    graph = nx.DiGraph()
    for node in nodes:
        if not isinstance(node, Mapping) or not isinstance(node.get("action"), str):
            raise PlanError(f"node {node!r} has no action")
        node_id, pre = _node_id(node.get("id")), node.get("preconditions", [])
        if node_id in graph or not isinstance(pre, list):
            raise PlanError(f"node {node_id!r} is repeated or its preconditions are not a list")
        graph.add_node(node_id, action=node["action"], preconditions=tuple(map(str, pre)))
    for edge in edges:
        if not isinstance(edge, Mapping):
            raise PlanError(f"edge {edge!r} is not an object")
        ends = _node_id(edge.get("from")), _node_id(edge.get("to"))
        if not all(end in graph for end in ends):
            raise PlanError(f"edge {edge!r} names a node that does not exist")
        graph.add_edge(*ends, type=str(edge.get("type", "")))
    return graph


def plan_size(graph: nx.DiGraph) -> int:
    return graph.number_of_nodes() + graph.number_of_edges()


def plan_distance(predicted: nx.DiGraph, target: nx.DiGraph, timeout_s: float = 1.0) -> float:
    """Unit-cost graph edit distance; node substitution is free when actions match, edge when types match."""
    distance = nx.graph_edit_distance(
        predicted,
        target,
        node_match=lambda a, b: a["action"] == b["action"],
        edge_match=lambda a, b: a["type"] == b["type"],
        timeout=timeout_s,
    )
    # No path found within the timeout: deleting everything and inserting the target is always an edit path.
    return float(distance) if distance is not None else float(plan_size(predicted) + plan_size(target))


def serialise_plan(plan: Mapping[str, Any]) -> str:
    """Canonical compact JSON of a plan: the text whose NLL is the plan surrogate."""
    return json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@CONSTRAINT_KINDS.register("plan")
class PlanConstraint(Constraint):
    """Normalised GED of each predicted plan to the target plan in its context."""

    Config = PlanConfig
    config: PlanConfig

    def _one(self, text: str, target: nx.DiGraph) -> float:
        if len(text) > self.config.max_chars:
            return 1.0
        try:
            predicted = parse_plan(text, self.config.max_nodes)
        except PlanError:
            return 1.0
        distance = plan_distance(predicted, target, self.config.timeout_s)
        return min(1.0, distance / max(1, plan_size(target)))

    def violation(self, texts: list[str], contexts: list[dict[str, Any]] | None = None) -> list[float]:
        out = []
        for i, (text, context) in enumerate(zip(texts, check_contexts(texts, contexts), strict=True)):
            if self.config.target_key not in context:
                raise ValueError(f"plan: context {i} has no target plan under {self.config.target_key!r}")
            target = parse_plan(context[self.config.target_key], max_nodes=1 << 16)  # a bad target is a bug: raise
            out.append(self._one(text, target))
        return out

    def surrogate(self, logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """NLL of the target plan's serialisation (`serialise_plan`), marked by mask; GED itself has no gradient."""
        return structure_nll(logits, input_ids, mask)
