"""Resumable state: the RNG bundle, the engine's counters, the knobs actions turn, and the registry that
saves and restores every stateful piece by name."""

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states, as tensors and ints so `weights_only` loads them."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RngBundle:
    """The process-wide generators as a stateful piece."""

    def state_dict(self) -> dict[str, Any]:
        return capture_rng()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_rng(state)


@dataclass
class TrainState:
    """Where the run is: counters the engine advances and the checkpoint restores."""

    global_step: int = 0
    stage_index: int = 0
    stage_step: int = 0
    tokens_seen: int = 0
    best_value: float | None = None  # of the stage's best-model metric

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in asdict(self):
            setattr(self, key, state[key])


@dataclass
class Knobs:
    """Values that actions turn (lower_lr halves `lr_scale`, diversify raises `temperature_scale` and
    `diversity`); kept across a rollback, so a lowered LR stays lowered. Open: a later action may add its own
    knob, which reads 1 until turned. A knob missing from an older checkpoint reads its default here, so
    resuming one never turns an additive knob such as `diversity` on."""

    #: Readers: the engine (lr_scale, clip_scale), the rollout source (temperature_scale multiplies the
    #: sampling temperature; diversity x the share of a group with the same response is taken off a reward).
    DEFAULTS: ClassVar[dict[str, float]] = {
        "lr_scale": 1.0,
        "clip_scale": 1.0,
        "temperature_scale": 1.0,
        "diversity": 0.0,
    }

    values: dict[str, float] = field(default_factory=lambda: dict(Knobs.DEFAULTS))

    def __getitem__(self, name: str) -> float:
        return self.values.get(name, self.DEFAULTS.get(name, 1.0))

    def scale(self, name: str, factor: float) -> float:
        return self.set(name, self[name] * factor)

    def set(self, name: str, value: float) -> float:
        self.values[name] = float(value)
        return self.values[name]

    def state_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = dict(state)


@dataclass
class WorldMemory:
    """What a rollback must not undo: how many rollbacks already happened."""

    rollbacks: int = 0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks = int(state["rollbacks"])


OnRollback = Literal["restore", "keep"]


def is_json(state: Any) -> bool:
    """Plain JSON that comes back equal (no tuples, no int keys, no tensors): else it goes to state.pt."""
    try:
        return json.loads(json.dumps(state, allow_nan=True)) == state
    except (TypeError, ValueError):
        return False


class StateRegistry:
    """Every resumable piece under a stable key, marked as restored by a rollback or kept across it (the
    world's memory). The checkpoint writes `state.json` (pieces whose state is plain JSON, readable) and
    `state.pt` (pieces holding tensors, loaded with weights_only); adding a piece never edits that code."""

    def __init__(self) -> None:
        self.pieces: dict[str, tuple[Stateful, OnRollback]] = {}

    def register(self, key: str, piece: Stateful, on_rollback: OnRollback = "restore") -> None:
        if key in self.pieces:
            raise ValueError(f"state key {key!r} is registered twice")
        self.pieces[key] = (piece, on_rollback)

    def state_dicts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(JSON pieces, tensor pieces) by key."""
        plain, tensors = {}, {}
        for key, (piece, _) in self.pieces.items():
            state = piece.state_dict()
            (plain if is_json(state) else tensors)[key] = state
        return plain, tensors

    def load(self, plain: dict[str, Any], tensors: dict[str, Any], rollback: bool = False) -> list[str]:
        """Restore every piece (or, for a rollback, those marked `restore`); returns keys missing from the
        checkpoint, which keep their current state."""
        missing = []
        for key, (piece, on_rollback) in self.pieces.items():
            if rollback and on_rollback == "keep":
                continue
            if key in plain:
                piece.load_state_dict(plain[key])
            elif key in tensors:
                piece.load_state_dict(tensors[key])
            else:
                missing.append(key)
        return missing
