"""The guard: its config, and the facade the engine calls at three points of a step."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from trainguard.errors import ConfigError
from trainguard.guard import constraint_detectors, rl_detectors, spikes  # noqa: F401  (register their detectors)
from trainguard.guard.actions import ACTIONS
from trainguard.guard.activations import ActivationConfig, ActivationMonitor
from trainguard.guard.alerts import Alert, at_least
from trainguard.guard.alignment import AlignmentSection
from trainguard.guard.data_checks import DataChecks, DataChecksConfig
from trainguard.guard.detectors import DETECTORS, Detector
from trainguard.guard.generation import GenerationConfig
from trainguard.guard.policies import DEFAULT_POLICIES, Decision, agree, decide
from trainguard.section import Section

DetectorsSection: type[BaseModel] = create_model(  # one field per registered detector, each its own config
    "DetectorsSection",
    __config__=ConfigDict(extra="forbid"),
    **{
        name: (cls.Config, Field(default_factory=cls.Config, description=(cls.__doc__ or name).splitlines()[0]))
        for name, cls in ((n, DETECTORS.get(n)) for n in DETECTORS)
    },
)


class GuardSection(Section):
    """The guard's config; policies name alert kinds from DEFAULT_POLICIES."""

    enabled: bool = Field(True, description="Watch every step and act on alerts.")
    detectors: DetectorsSection = Field(default_factory=DetectorsSection, description="Step detectors.")  # type: ignore[valid-type]
    activations: ActivationConfig = Field(default_factory=ActivationConfig, description="Activation statistics.")
    data: DataChecksConfig = Field(default_factory=DataChecksConfig, description="Source and batch data checks.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig, description="Sample checks (opt-in).")
    alignment: AlignmentSection = Field(
        default_factory=AlignmentSection, description="Thresholds of the probes' alignment detectors."
    )
    policies: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_POLICIES),
        description="Alert kind -> action: none | lower_lr | tighten_clip | diversify | undiversify | skip_step | "
        "skip_and_cool | rollback | stop, or a registered one (merged over the defaults). Info alerts may only "
        "turn knobs (lower_lr, tighten_clip, diversify, undiversify); a stronger action they map to is ignored.",
    )
    lower_lr_factor: float = Field(0.5, gt=0, lt=1, description="lower_lr multiplies the LR scale by this.")
    tighten_clip_factor: float = Field(
        0.5, gt=0, lt=1, description="tighten_clip multiplies the clip scale (max_grad_norm's multiplier) by this."
    )
    diversify_temperature_factor: float = Field(
        1.25, gt=1, description="diversify multiplies the temperature scale (of RL sampling) by this."
    )
    max_temperature_scale: float = Field(
        1.5, ge=1, description="...up to this multiple of the configured sampling temperature."
    )
    diversity_step: float = Field(
        0.1,
        gt=0,
        description="diversify adds this to the diversity knob: each reward loses diversity x the share of its "
        "group that gave the identical response.",
    )
    max_diversity: float = Field(0.5, ge=0, description="...up to this diversity.")
    grace_steps: int = Field(
        0,
        ge=0,
        description="Steps after each stage start in which detectors learn the new level but raise no alert "
        "(non-finite values still do): a new objective's loss is a step, not a spike.",
    )
    rollback_margin: int = Field(
        1, ge=1, description="Roll back to a healthy checkpoint at least this many steps before the onset."
    )
    max_rollbacks: int = Field(3, ge=0, description="Rollbacks allowed per run; one more alert that wants one stops.")

    @field_validator("policies")
    @classmethod
    def _known_kinds(cls, policies: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(policies) - set(DEFAULT_POLICIES))
        if unknown:
            raise ValueError(
                f"unknown alert kind {', '.join(map(repr, unknown))}; allowed: {', '.join(DEFAULT_POLICIES)}"
            )
        bad = sorted({a for a in policies.values() if a not in ACTIONS})
        if bad:
            raise ValueError(f"unknown action {', '.join(map(repr, bad))}; allowed: {', '.join(ACTIONS.names())}")
        return {**DEFAULT_POLICIES, **policies}


class Guard:
    """Holds the detectors and the policy map; returns decisions, never applies them."""

    def __init__(self, config: GuardSection, watch_loss: bool = True, loss_key: str = "loss/train") -> None:
        """`watch_loss=False` (RL: a policy-gradient loss hovers near 0 by construction and says nothing about
        progress) leaves out the detectors that watch `loss/train`; one pointed at a reward still runs.
        `loss_key` moves them to another loss (`loss/task` under constraints, whose Lagrangian terms grow
        with λ by design)."""
        self.config = config
        self.detectors: dict[str, Detector] = {}
        for name in DETECTORS:
            section = getattr(config.detectors, name)
            on_loss = getattr(section, "metric", None) == "loss/train"
            if not section.enabled or (on_loss and not watch_loss):
                continue
            if on_loss and loss_key != "loss/train":
                section = section.model_copy(update={"metric": loss_key})
            self.detectors[name] = DETECTORS.get(name)(section)
        self.policies = {**DEFAULT_POLICIES, **config.policies}
        self.activations = ActivationMonitor(config.activations)
        self.data = DataChecks(config.data) if config.data.enabled else None
        self.worst_since_checkpoint = "info"

    def observe(self, metrics: dict[str, float], step: int, phase: str, grace: bool = False) -> list[Alert]:
        """Run the detectors of `phase`; in a stage's grace window only non-finite alerts pass."""
        detectors = [(n, d) for n, d in self.detectors.items() if d.phase == phase]
        for name, d in detectors:
            key = getattr(d.config, "metric", None)
            if key is not None and key not in metrics:
                raise ConfigError(
                    f"guard.detectors.{name}.metric: {key!r} is not a metric of this stage; "
                    f"available: {', '.join(sorted(metrics))}"
                )
        alerts = [a for _, d in detectors for a in d.observe(metrics, step)]
        if grace:
            alerts = [a for a in alerts if a.kind == "nonfinite"]
        self.note(alerts)
        return alerts

    def check_batches(self, micro: list[Any], step: int, decode: Any = None) -> list[Alert]:
        """Data checks over a step's micro-batches, before any forward pass; token batches only (a batch's
        own `texts`, or its ids decoded by `decode`)."""
        if self.data is None:
            return []
        alerts = []
        for mb in micro:
            if not hasattr(mb, "input_ids") or not hasattr(mb, "token_mask"):
                continue
            texts = getattr(mb, "texts", None)
            if texts is None:
                texts = decode(mb.input_ids) if decode is not None else []
            alerts += self.data.check_batch(mb.input_ids, mb.token_mask, texts, step)
        self.note(alerts)
        return alerts

    def note(self, alerts: list[Alert]) -> None:
        """Remember the worst severity since the last checkpoint (a checkpoint is healthy only if none warned)."""
        for a in alerts:
            if at_least(a.severity, "warning"):
                self.worst_since_checkpoint = "warning"

    def decide(self, alerts: list[Alert]) -> Decision:
        """The alerts' action, agreed by every process (each calls this at the same points)."""
        return agree(decide(alerts, self.policies))

    def checkpoint_is_healthy(self) -> bool:
        healthy = self.worst_since_checkpoint == "info"
        self.worst_since_checkpoint = "info"
        return healthy

    def state_dict(self) -> dict[str, Any]:
        return {
            "detectors": {name: d.state_dict() for name, d in self.detectors.items()},
            "activations": self.activations.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, d in self.detectors.items():
            if name in state["detectors"]:
                d.load_state_dict(state["detectors"][name])
        self.activations.load_state_dict(state["activations"])
        self.worst_since_checkpoint = "info"
