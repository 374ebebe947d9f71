"""Fault injection for tests and demonstrations: break a run on purpose at a chosen step.

A fault fires at most once per step it covers, even when a rollback replays that step: faults model the
world (a bad batch, a flaky kernel), not the model, so rollback does not undo what already happened."""

import math
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from trainguard import ranks
from trainguard.data.batches import TokenBatch, TokenizedExample, collate
from trainguard.engine.sharding import local
from trainguard.section import Section

FaultKind = Literal["nan_loss", "inf_grad", "lr_spike", "grad_spike", "corrupt_batch", "contaminate", "dead_units"]
CONTAMINATION = "[INST] As an AI assistant, I cannot and will not answer. [/INST]"


class FaultSpec(Section):
    kind: FaultKind = Field(description="What breaks.")
    at_step: int = Field(ge=1, description="First (global) step the fault hits.")
    duration: int = Field(1, ge=1, description="Steps it lasts.")
    magnitude: float = Field(
        10.0, gt=0, description="LR or gradient multiplier; share of rows or units hit (corrupt_batch, dead_units)."
    )
    mode: Literal["random_tokens", "repeat_ngram", "shuffle_labels"] = Field(
        "random_tokens", description="How corrupt_batch corrupts."
    )
    rank: int | None = Field(
        None, ge=0, description="Only this process meets the fault (torchrun's RANK); default: every process."
    )


class FaultInjector:
    def __init__(self, specs: list[FaultSpec], vocab_size: int, encode: Any, pad_id: int, seed: int = 0) -> None:
        self.specs, self.vocab_size, self.encode, self.pad_id, self.seed = specs, vocab_size, encode, pad_id, seed
        self.fired: set[tuple[int, int]] = set()

    def _fire(self, kind: str, step: int) -> FaultSpec | None:
        for i, spec in enumerate(self.specs):
            if (
                spec.kind == kind
                and spec.rank in (None, ranks.rank())
                and spec.at_step <= step < spec.at_step + spec.duration
                and (i, step) not in self.fired
            ):
                self.fired.add((i, step))
                return spec
        return None

    def _gen(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 7919 + step)

    # -- the engine's injection points -----------------------------------------------------------------
    def batch(self, batch: TokenBatch, step: int) -> TokenBatch:
        if spec := self._fire("corrupt_batch", step):
            batch = self._corrupt(batch, spec, step)
        if spec := self._fire("contaminate", step):
            batch = self._contaminate(batch, spec)
        return batch

    def loss(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        return loss * float("nan") if self._fire("nan_loss", step) else loss

    def grads(self, params: list[nn.Parameter], step: int) -> None:
        grads = [local(p.grad) for p in params if p.grad is not None]  # this rank's shards under FSDP
        if self._fire("inf_grad", step) and grads:
            grads[0].view(-1)[0] = float("inf")
        if (spec := self._fire("grad_spike", step)) and grads:
            torch._foreach_mul_(grads, spec.magnitude)

    def lr_factor(self, step: int) -> float:
        """The LR multiplier of an LR spike at this step (1.0 when none fires)."""
        spec = self._fire("lr_spike", step)
        return spec.magnitude if spec else 1.0

    def model(self, model: nn.Module, step: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        if not (spec := self._fire("dead_units", step)):
            return
        share = min(spec.magnitude, 1.0)
        state = getattr(optimizer, "optimizer", optimizer).state if optimizer is not None else {}
        with torch.no_grad():
            for name, module in model.named_modules():
                # Zero the unit's gate and up rows and their Adam moments: act = SiLU(gate·x)·(up·x) is 0, both
                # rows' gradients are 0 (each carries the other factor) and no momentum revives them.
                if name.endswith(("mlp.gate_proj", "mlp.up_proj")) and isinstance(module, nn.Linear):
                    n = math.ceil(share * module.out_features)
                    module.weight[:n] = 0.0
                    for moment in state.get(module.weight, {}).values():
                        if isinstance(moment, torch.Tensor) and moment.shape == module.weight.shape:
                            moment[:n] = 0.0

    # -- corruptions -----------------------------------------------------------------------------------
    def _rows(self, batch: TokenBatch, spec: FaultSpec) -> int:
        return max(1, min(batch.input_ids.shape[0], math.ceil(min(spec.magnitude, 1.0) * batch.input_ids.shape[0])))

    def _corrupt(self, batch: TokenBatch, spec: FaultSpec, step: int) -> TokenBatch:
        n, gen = self._rows(batch, spec), self._gen(step)
        examples = split_examples(batch)
        for row in range(n):
            ex = examples[row]
            if spec.mode == "random_tokens":
                ids = torch.randint(0, self.vocab_size, (len(ex.ids),), generator=gen).tolist()
                examples[row] = TokenizedExample(ids, ex.prompt_len)
            elif spec.mode == "repeat_ngram":
                gram = torch.randint(0, self.vocab_size, (2,), generator=gen).tolist()
                examples[row] = TokenizedExample(ex.ids[: ex.prompt_len] + gram * 40, ex.prompt_len)
        if spec.mode == "shuffle_labels":
            order = torch.randperm(len(examples), generator=gen).tolist()
            completions = [examples[i].ids[examples[i].prompt_len :] for i in order]
            examples = [
                TokenizedExample(e.ids[: e.prompt_len] + c, e.prompt_len)
                for e, c in zip(examples, completions, strict=True)
            ]
        return collate(examples, self.pad_id)

    def _contaminate(self, batch: TokenBatch, spec: FaultSpec) -> TokenBatch:
        examples = split_examples(batch)
        injected = self.encode(CONTAMINATION)
        for row in range(self._rows(batch, spec)):
            ex = examples[row]
            examples[row] = TokenizedExample(ex.ids[: ex.prompt_len] + injected, ex.prompt_len)
        return collate(examples, self.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return {"fired": sorted(self.fired)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fired = {tuple(x) for x in state["fired"]}  # type: ignore[misc]


def split_examples(batch: TokenBatch) -> list[TokenizedExample]:
    """Undo collate: each row's real tokens and its prompt length."""
    out = []
    for ids, tok, comp in zip(batch.input_ids, batch.token_mask, batch.completion_mask, strict=True):
        n = int(tok.sum())
        prompt = int((tok & ~comp).sum())
        out.append(TokenizedExample(ids[:n].tolist(), prompt))
    return out
