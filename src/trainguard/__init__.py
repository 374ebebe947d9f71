"""trainguard: train language models through multi-stage pipelines that watch themselves.

The Python API (trainguard/api.py) is re-exported here; importing it loads neither torch nor transformers."""

from trainguard.api import (
    Interrupted,
    RunResult,
    alerts,
    events,
    load_config,
    load_model,
    metrics,
    resume,
    run,
)
from trainguard.track.summary import StageSummary

__version__ = "0.1.0"

__all__ = [
    "Interrupted",
    "RunResult",
    "StageSummary",
    "__version__",
    "alerts",
    "events",
    "load_config",
    "load_model",
    "metrics",
    "resume",
    "run",
]
