"""The engine's checkpoints and its way back: save every stateful piece, load them, and roll back to the newest
healthy checkpoint before a fault (moving the source past the window that led to it). A part of `Engine`,
kept apart so the step's file reads as the step."""

from typing import Any

from trainguard.engine.checkpoint import Checkpoint, load_trainables, trainable_tensors
from trainguard.engine.sharding import is_sharded
from trainguard.guard.policies import Decision


class Recovery:
    """Mixed into `Engine`, whose pieces it reads (state, registry, source, guard, hooks, services)."""

    state: Any
    registry: Any
    source: Any
    guard: Any
    hooks: Any
    services: Any
    pieces: Any
    stage: Any
    result: Any
    _post: Any
    # and the Engine's unwrapped() and flush_post()

    def rollback(self, decision: Decision, onset: int | None = None) -> bool:
        """Reload the newest healthy checkpoint of this stage at least `rollback_margin` steps before the
        onset (default: the step being taken) and move the source past everything seen since (PaLM); False
        when none can be had."""
        assert self.guard is not None
        cfg, world = self.guard.config, self.services.world
        onset = self.state.global_step + 1 if onset is None else onset
        if world.rollbacks >= cfg.max_rollbacks:
            refused = f"rollback refused: {world.rollbacks} already (max_rollbacks)"
            self.hooks.event("action", refused, severity="critical", action="rollback")
            return False
        index = self.pieces.index
        target = self.services.checkpointer.latest(
            where=lambda c: c.healthy and c.step <= onset - cfg.rollback_margin and c.manifest["stage_index"] == index
        )
        if target is None:
            impossible = "rollback impossible: no healthy checkpoint before the onset"
            self.hooks.event("action", impossible, severity="critical", action="rollback")
            return False
        position = self.source.state_dict()
        self._post = None
        self.load(target, rollback=True)
        skipped = self.source.skip_past(position)  # never train on the window that led to the fault
        world.rollbacks += 1
        dropped = self.hooks.forget_after(target.step)
        self.result.actions["rollback"] = self.result.actions.get("rollback", 0) + 1
        message = f"rollback to {target.path.name} at step {onset} ({decision.reason}); skipped {skipped} samples"
        details = {"target": target.step, "onset": onset, "skipped_samples": skipped, "dropped_rows": dropped}
        self.hooks.event("action", message, action="rollback", severity="warning", at=onset, **details)
        return True

    def save(self, healthy: bool | None = None) -> Checkpoint:
        self.flush_post()
        self.services.sinks.flush()  # metrics up to this step are durable before the checkpoint exists
        if healthy is None:
            healthy = self.guard.checkpoint_is_healthy() if self.guard is not None else True
        plain, tensors = self.registry.state_dicts()
        modules = self.unwrapped()
        ckpt = self.services.checkpointer.save(
            self.state.global_step,
            tensors=trainable_tensors(modules),
            objects={"state": tensors},
            jsons={"state": plain},
            meta={"stage": self.stage.name, "stage_index": self.pieces.index, **self.services.checkpoint_meta},
            healthy=healthy,
            per_rank=frozenset(key for key, module in modules.items() if is_sharded(module)),
        )
        note = "" if healthy else " (not healthy)"
        self.hooks.event("checkpoint", f"saved {ckpt.path.name}{note}", path=str(ckpt.path), healthy=healthy)
        return ckpt

    def load(self, ckpt: Checkpoint, rollback: bool = False) -> None:
        """Restore every stateful piece from `ckpt` (of this stage); a rollback keeps what it must not undo
        (the rollback count, faults already fired, the knobs actions turned)."""
        load_trainables(ckpt, self.unwrapped())
        missing = self.registry.load(*ckpt.rank_state(), rollback=rollback)
        if missing:
            note = f"{ckpt.path.name} has no state for {', '.join(missing)}"
            self.hooks.event("checkpoint", note, severity="warning")
